"""Missed deliveries are redelivered, once (bot/server/redeliver.py).

The decision (``to_redeliver``) table-driven; one check (``recover``) and the
record of what lemi asked for against the GitHub fake's delivery log; and the
whole loop in the running app: a pull_request.opened that never reached lemi
is redelivered by GitHub, and provisioning happens.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from app_harness import WEBHOOK_SECRET, running_app, setup_repos
from fakes.webhooks import for_pull_request, signed
from job_harness import webhook_job

from bot.core.settings import SettingsError, load_settings
from bot.github.client import GitHub
from bot.server.redeliver import GITHUB_WINDOW, OVERLAP, WINDOW, Redeliverer, RedeliveryState, recover, to_redeliver
from bot.store.sqlite_queue import SQLiteQueue

NOW = 1_700_000_000.0
DAY = 24 * 3600.0


def iso(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def entry(id: int, guid: str, ago: float, status: int = 200, redelivery: bool = False) -> dict[str, Any]:
    """One log entry as GET /app/hook/deliveries lists it, ``ago`` seconds before NOW."""
    return {
        "id": id,
        "guid": guid,
        "delivered_at": iso(NOW - ago),
        "redelivery": redelivery,
        "duration": 0.1,
        "status": "OK" if 200 <= status < 300 else f"Invalid HTTP Response: {status}",
        "status_code": status,
        "event": "pull_request",
        "action": "opened",
        "installation_id": 1,
        "repository_id": 1,
    }


# --- 1. the decision ------------------------------------------------------------------------------

CASES: list[tuple[str, list[dict[str, Any]], float | None, set[str], list[int]]] = [
    ("nothing logged", [], None, set(), []),
    ("success", [entry(1, "a", 60)], None, set(), []),
    ("one failure: redeliver it", [entry(1, "a", 60, 500)], None, set(), [1]),
    ("timed out (status 0)", [entry(1, "a", 60, 0)], None, set(), [1]),
    ("3xx is not a success", [entry(1, "a", 60, 302)], None, set(), [1]),
    ("success after a failure (redelivered by someone)",
     [entry(1, "a", 600, 503), entry(2, "a", 60, 200, redelivery=True)], None, set(), []),
    ("success after a failure, same entry kind",
     [entry(1, "a", 600, 503), entry(2, "a", 60, 200)], None, set(), []),
    ("only failures: the latest attempt, once",
     [entry(1, "a", 600, 500), entry(2, "a", 60, 502)], None, set(), [2]),
    ("already redelivered, and that failed too: not again",
     [entry(1, "a", 600, 500), entry(2, "a", 60, 502, redelivery=True)], None, set(), []),
    ("a redelivery lemi asked for, not listed yet: not again", [entry(1, "a", 600, 500)], None, {"a"}, []),
    ("a redelivery of a success whose first attempt is older than what was read",
     [entry(7, "a", 60, 500, redelivery=True)], None, set(), []),
    ("two days old: still in the window", [entry(1, "a", 2 * DAY, 500)], None, set(), [1]),
    ("on the edge of GitHub's 3 days: skipped (margin)", [entry(1, "a", GITHUB_WINDOW - 60, 500)], None, set(), []),
    ("four days old: outside the window", [entry(1, "a", 4 * DAY, 500)], None, set(), []),
    ("older than the last check: judged then", [entry(1, "a", 3600 + OVERLAP + 60, 500)], NOW - 3600, set(), []),
    ("logged just before the last check: read again (overlap)", [entry(1, "a", 3600 + 60, 500)], NOW - 3600, set(), [1]),
    ("newer than the last check", [entry(1, "a", 60, 500)], NOW - 3600, set(), [1]),
    ("several: each missed guid, newest first",
     [entry(1, "a", 900, 500), entry(2, "b", 800), entry(3, "c", 700, 500), entry(4, "a", 600, 500, redelivery=True),
      entry(5, "d", 500, 404), entry(6, "c", 400, 500)], None, set(), [6, 5]),
]  # fmt: skip


@pytest.mark.parametrize(
    ("entries", "since", "requested", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_to_redeliver(
    entries: list[dict[str, Any]], since: float | None, requested: set[str], expected: list[int]
) -> None:
    chosen = to_redeliver(entries, since=since, now=NOW, window=WINDOW, requested=requested)
    assert [e["id"] for e in chosen] == expected
    # the order of the log does not matter
    assert [e["id"] for e in to_redeliver(entries[::-1], since=since, now=NOW, requested=requested)] == expected


def test_the_setting() -> None:
    assert load_settings({}).redeliver_interval_seconds == 300.0
    assert load_settings({"LEMI_REDELIVER_INTERVAL_SECONDS": "0"}).redeliver_interval_seconds == 0.0
    assert load_settings({"LEMI_REDELIVER_INTERVAL_SECONDS": "60"}).redeliver_interval_seconds == 60.0
    for bad in ("-1", "soon"):
        with pytest.raises(SettingsError, match="LEMI_REDELIVER_INTERVAL_SECONDS"):
            load_settings({"LEMI_REDELIVER_INTERVAL_SECONDS": bad})


# --- 2. one check against the fake's delivery log ---------------------------------------------------


@pytest.fixture
async def app_client(github: Any) -> AsyncIterator[GitHub]:
    async with aiohttp.ClientSession() as session:
        yield GitHub(session, base_url=github.url, app_id=str(github.app_id), private_key=github.private_key_pem)


@pytest.fixture
async def queue(tmp_path: Path) -> AsyncIterator[SQLiteQueue]:
    q = SQLiteQueue(tmp_path / "queue.db")
    yield q
    await q.close()


def ago(seconds: float) -> str:
    return iso(time.time() - seconds)


def listing_calls(github: Any) -> int:
    return len(github.calls_to("GET", "/app/hook/deliveries"))


async def test_a_failed_delivery_is_redelivered_once_across_checks_and_a_restart(
    github: Any, app_client: GitHub, queue: SQLiteQueue, tmp_path: Path
) -> None:
    ok = github.add_delivery("push", guid="ok-guid", delivered_at=ago(120))
    failed = github.add_delivery("pull_request", "opened", guid="failed-guid", status_code=503, delivered_at=ago(60))
    github.redelivery_status_code = 502  # and the redelivery fails as well
    state = RedeliveryState(tmp_path / "queue.db")
    report = await recover(app_client, queue, state)
    assert (report.listed, report.missed, report.requested) == (2, 1, 1), report
    assert [d.guid for d in github.redelivered] == ["failed-guid"]
    assert (
        github.calls_to("POST", "/app/hook/deliveries/*/attempts")[0].path == f"/app/hook/deliveries/{failed}/attempts"
    )
    assert not github.calls_to("POST", f"/app/hook/deliveries/{ok}/attempts")
    assert state.since is not None and state.requested == {"failed-guid"}

    report = await recover(app_client, queue, state)
    assert report.requested == 0 and len(github.redelivered) == 1, report
    await state.close()

    # a restart, before GitHub lists the redelivery lemi asked for: the record in the database holds
    github.deliveries[:] = [d for d in github.deliveries if not d.redelivery]
    restarted = RedeliveryState(tmp_path / "queue.db")
    report = await recover(app_client, queue, restarted)
    assert report.requested == 0 and len(github.redelivered) == 1, report
    assert restarted.requested == {"failed-guid"}
    await restarted.close()
    # (without the record, that guid would be asked for again)
    forgetful = RedeliveryState()
    listed = [e async for e in app_client.getiter("/app/hook/deliveries?per_page=100")]
    assert [e["guid"] for e in to_redeliver(listed, since=None, now=time.time(), requested=forgetful.requested)] == [
        "failed-guid"
    ]


async def test_many_pages_are_read_and_each_failure_is_asked_for(
    github: Any, app_client: GitHub, queue: SQLiteQueue
) -> None:
    failed = set()
    for i in range(230):
        guid = f"guid-{i}"
        github.add_delivery("push", guid=guid, status_code=500 if i % 50 == 7 else 200, delivered_at=ago(3000 - i))
        if i % 50 == 7:
            failed.add(guid)
    report = await recover(app_client, queue, RedeliveryState())
    assert report.listed == 230 and report.requested == len(failed) == 5, report
    assert {d.guid for d in github.redelivered} == failed
    assert listing_calls(github) == 3  # 100 + 100 + 30, following the Link headers


async def test_paging_stops_at_the_last_check(github: Any, app_client: GitHub, queue: SQLiteQueue) -> None:
    for i in range(150):
        github.add_delivery("push", guid=f"old-{i}", status_code=500, delivered_at=ago(4 * 3600 + i))
    for i in range(5):
        github.add_delivery("push", guid=f"new-{i}", status_code=500 if i == 2 else 200, delivered_at=ago(30))
    state = RedeliveryState()
    state.since = time.time() - 3600  # the last check was an hour ago
    report = await recover(app_client, queue, state)
    assert [d.guid for d in github.redelivered] == ["new-2"]
    assert listing_calls(github) == 1, github.describe_calls()  # the first page reaches entries already judged
    assert report.listed == 6 and report.requested == 1, report


async def test_outside_the_window_and_already_stored_are_skipped(
    github: Any, app_client: GitHub, queue: SQLiteQueue
) -> None:
    github.add_delivery("push", guid="too-old", status_code=500, delivered_at=ago(4 * 24 * 3600))
    github.add_delivery("push", guid="stored", status_code=0, delivered_at=ago(60))  # lemi stored it, GitHub timed out
    github.add_delivery("push", guid="fine", delivered_at=ago(30))
    await queue.put(webhook_job("stored", "acme/svc", {}))
    report = await recover(app_client, queue, RedeliveryState())
    assert (report.missed, report.stored, report.requested) == (1, 1, 0), report
    assert github.redelivered == [] and not github.calls_to("POST", "*")


async def test_a_request_that_fails_is_tried_again_a_refused_one_is_not(
    github: Any, app_client: GitHub, queue: SQLiteQueue, tmp_path: Path
) -> None:
    github.add_delivery("push", guid="flaky", status_code=500, delivered_at=ago(60))
    github.fail_next("POST", r"/attempts$", status=502)
    state = RedeliveryState(tmp_path / "queue.db")
    report = await recover(app_client, queue, state)
    assert (report.failed, report.complete, state.since, github.redelivered) == (1, False, None, []), report
    report = await recover(app_client, queue, state)
    assert report.requested == 1 and [d.guid for d in github.redelivered] == ["flaky"], report

    github.add_delivery("push", guid="refused", status_code=500, delivered_at=ago(30))
    github.fail_next("POST", r"/attempts$", status=422, body={"message": "Validation Failed"})
    report = await recover(app_client, queue, state)
    assert (report.refused, report.complete) == (1, True), report
    report = await recover(app_client, queue, state)
    assert report.missed == 0 and [d.guid for d in github.redelivered] == ["flaky"], report
    await state.close()


# --- 3. the loop --------------------------------------------------------------------------------------


class BrokenClient:
    def __init__(self) -> None:
        self.calls = 0

    async def getiter(self, url: str) -> AsyncIterator[Any]:
        self.calls += 1
        raise ConnectionError("GitHub is unreachable")
        yield  # pragma: no cover - an async generator


async def test_the_loop_logs_errors_keeps_going_and_stops(queue: SQLiteQueue, caplog: pytest.LogCaptureFixture) -> None:
    client = BrokenClient()
    loop = Redeliverer(client, queue, RedeliveryState(), interval=0.05)
    loop.start()
    for _ in range(100):
        if client.calls >= 3:
            break
        await asyncio.sleep(0.02)
    await loop.stop()
    assert client.calls >= 3
    assert "redelivery check failed" in caplog.text
    calls = client.calls
    await asyncio.sleep(0.1)
    assert client.calls == calls  # stopped

    off = Redeliverer(client, queue, RedeliveryState(), interval=0)
    off.start()
    await asyncio.sleep(0.05)
    await off.stop()
    assert client.calls == calls


# --- 4. end to end: the running app gets the missed work done ------------------------------------------

SERVICE = "acme/demo-service"
SERVICE_YAML = (
    "name: demo-service\nowner: infra\nspec:\n  desiredCount: 1\n  image: demo-service\n"
    "  resource:\n    cpu: 512\n    memory: 1024\n"
)


def test_a_missed_pull_request_is_redelivered_and_provisioned(github: Any, tmp_path: Path) -> None:
    installation = setup_repos(github)
    number = github.open_pull_request(SERVICE, "feature/provision", {"deploy/demo-service/service.yaml": SERVICE_YAML})
    payload = for_pull_request(github, SERVICE, number, "opened")
    guid = str(uuid.uuid4())
    # GitHub sent it while lemi was down, and logged the failure
    github.add_delivery(
        "pull_request", "opened", guid=guid, status_code=502, installation_id=installation, repository=SERVICE,
        payload=payload, delivered_at=ago(120),
    )  # fmt: skip
    github.add_delivery("push", guid=str(uuid.uuid4()), installation_id=installation, delivered_at=ago(100))
    holder: dict[str, Any] = {}
    ready = threading.Event()
    answers: list[int] = []

    def redeliver(delivery: Any) -> None:  # GitHub sends the delivery again, same guid
        assert ready.wait(10)
        headers, body = signed(delivery.event, delivery.payload, WEBHOOK_SECRET, delivery=delivery.guid)
        answers.append(holder["app"].client.post("/webhook", content=body, headers=headers).status_code)

    github.on_redelivery = redeliver
    with running_app(github, tmp_path, redeliver_interval_seconds=0.2) as app:
        holder["app"] = app
        ready.set()
        github.wait_for(lambda: github.pulls("acme/infra"), timeout=10)
        rows = app.drain()
        assert [(r["dedupe_id"], r["state"]) for r in rows] == [(guid, "done")], github.describe_calls()
        time.sleep(0.5)  # a few more checks
        assert listing_calls(github) >= 2
        metrics = app.client.get("/metrics").text
    assert answers == [202]
    assert [d.guid for d in github.redelivered] == [guid]  # once, though the loop ran again
    assert len(github.pulls("acme/infra")) == 1
    assert 'lemi_redeliveries_total{outcome="requested"} 1.0' in metrics
