"""GitHub's secondary limits: the fake enforces them as GitHub does, and the App's writer
(bot/github/writer.py) keeps every installation within them, the urgent writes first.

Time is a :class:`fakes.github.Clock` shared by the fake and the writer: minutes pass, nobody
waits."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Awaitable
from typing import Any, cast

import aiohttp
import pytest
from fakes.github import SECONDARY_MESSAGE, Clock, FakeGitHub

from bot.core import logs
from bot.core.settings import Settings
from bot.github import writer
from bot.github.auth import AppAuth
from bot.github.client import GitHub
from bot.github.errors import GitHubRateLimited
from bot.github.schedule import Limits
from bot.github.writer import Writers
from bot.server.context import Context

REPO = "acme/demo"


def serve(github: FakeGitHub, method: str, path: str, token: str, body: Any = None) -> tuple[int, dict[str, str]]:
    headers = {"authorization": f"token {token}", "user-agent": "lemi-test", "content-type": "application/json"}
    status, out, _ = github.serve(method, path, [], json.dumps(body).encode() if body is not None else b"", headers)
    return status, out


# ---- the fake enforces GitHub's limits -------------------------------------------------------------


def test_the_fake_refuses_the_81st_write_in_a_minute_as_github_does(github: FakeGitHub) -> None:
    clock = Clock()
    github.clock = clock.now
    installation = github.add_installation("acme", [REPO])
    other = github.add_installation("octo", ["octo/app"])
    number = github.open_pull_request(REPO, "feature", {"a": "a"})
    token = github.installation_token(installation)
    comments = f"/repos/{REPO}/issues/{number}/comments"
    for i in range(80):
        assert serve(github, "POST", comments, token, {"body": str(i)})[0] == 201
        clock.advance(0.5)  # 80 in 40 s
    status, headers = serve(github, "POST", comments, token, {"body": "one too many"})
    assert status == 403 and headers["retry-after"] == "20"  # when the first leaves the minute
    refused = github.calls[-1]
    assert refused.limited and refused.response["message"] == SECONDARY_MESSAGE
    assert "secondary rate limit" in refused.response["message"]
    assert len(github.comments(REPO, number)) == 80  # the refused one was not applied
    # the limit is the installation's: a new token of it is refused too; reads still go
    assert serve(github, "POST", comments, github.installation_token(installation), {"body": "x"})[0] == 403
    assert serve(github, "GET", f"/repos/{REPO}", token)[0] == 200
    # another installation, and a person's own token, have their own limits
    theirs = github.open_pull_request("octo/app", "feature", {"a": "a"})
    assert serve(github, "POST", f"/repos/octo/app/issues/{theirs}/comments", github.installation_token(other),
                 {"body": "theirs"})[0] == 201  # fmt: skip
    github.set_permission(REPO, "octocat", "write")
    assert serve(github, "POST", comments, github.add_user_token("ghp_person", "octocat"), {"body": "me"})[0] == 201
    clock.advance(19.9)
    assert serve(github, "POST", comments, token, {"body": "still"})[0] == 403
    clock.advance(0.1)  # the first write is a minute old
    assert serve(github, "POST", comments, token, {"body": "now"})[0] == 201
    assert len(github.secondary_limited()) == 3


def test_the_fake_refuses_the_501st_write_in_an_hour(github: FakeGitHub) -> None:
    clock = Clock()
    github.clock = clock.now
    installation = github.add_installation("acme", [REPO])
    number = github.open_pull_request(REPO, "feature", {"a": "a"})
    token = github.installation_token(installation)
    start = clock.now()
    sent = 0
    while sent < 500:
        for _ in range(min(80, 500 - sent)):
            assert serve(github, "POST", f"/repos/{REPO}/issues/{number}/comments", token, {"body": "x"})[0] == 201
            sent += 1
        clock.advance(61)  # a fresh minute every time
    status, headers = serve(github, "POST", f"/repos/{REPO}/issues/{number}/comments", token, {"body": "x"})
    assert status == 403 and int(headers["retry-after"]) == pytest.approx(start + 3600 - clock.now(), abs=1)
    assert github.calls[-1].limited
    clock.time = start + 3600  # the first minute's writes leave the hour
    assert serve(github, "POST", f"/repos/{REPO}/issues/{number}/comments", token, {"body": "x"})[0] == 201


# ---- the App's writer keeps within them -------------------------------------------------------------


@pytest.fixture
async def app(github: FakeGitHub) -> AsyncIterator[tuple[AppAuth, Clock, int]]:
    clock = Clock()
    github.clock = clock.now
    installation = github.add_installation("acme", [REPO])
    async with aiohttp.ClientSession() as session:
        auth = AppAuth(
            session,
            app_id=str(github.app_id),
            private_key=github.private_key_pem,
            base_url=github.url,
            writers=Writers(clock=clock.now, sleep=clock.sleep),
        )
        yield auth, clock, installation


def comment(gh: GitHub, number: int, body: str) -> Awaitable[Any]:
    return gh.post("/repos/{owner}/{repo}/issues/{number}/comments", {"owner": "acme", "repo": "demo", "number": number},
                   data={"body": body})  # fmt: skip


def writes(github: FakeGitHub) -> list[Any]:
    return [c for c in github.calls if c.method != "GET" and c.path.startswith("/repos/")]


async def test_210_writes_of_one_installation_never_trip_githubs_limit(
    github: FakeGitHub, app: tuple[AppAuth, Clock, int]
) -> None:
    auth, clock, installation = app
    number = github.open_pull_request(REPO, "feature", {"a": "a"})
    clients = [await auth.for_installation(installation) for _ in range(4)]  # four jobs, one installation
    assert len({id(gh.writer) for gh in clients}) == 1
    await asyncio.gather(*(comment(clients[i % 4], number, f"c{i}") for i in range(210)))
    assert github.secondary_limited() == []
    assert len(github.comments(REPO, number)) == 210
    # 80 at once, 80 a minute later, 50 a minute after that: GitHub's pace, not ours
    assert clock.slept == pytest.approx(120.0)


async def test_without_the_budget_the_fake_refuses_and_the_writer_waits_out_each_refusal(
    github: FakeGitHub, app: tuple[AppAuth, Clock, int]
) -> None:
    """The fake would catch a writer that ignored the limits; a refusal pauses the whole
    installation, so each minute costs one refusal, not one per waiting write."""
    auth, clock, installation = app
    auth.writers.use(Limits(per_minute=1000, per_hour=5000))
    number = github.open_pull_request(REPO, "feature", {"a": "a"})
    gh = await auth.for_installation(installation)
    await asyncio.gather(*(comment(gh, number, f"c{i}") for i in range(210)))
    assert len(github.secondary_limited()) == 2  # the 81st and the 161st, each once
    assert len(github.comments(REPO, number)) == 210
    assert clock.slept == pytest.approx(120.0)  # retry-after: 60, twice


async def test_a_slash_command_reply_queued_behind_100_progress_updates_is_sent_first(
    github: FakeGitHub, app: tuple[AppAuth, Clock, int]
) -> None:
    auth, clock, installation = app
    number = github.open_pull_request(REPO, "feature", {"a": "a"})
    sha = github.pull(REPO, number).head_sha
    gh = await auth.for_installation(installation)
    run = await gh.post(f"/repos/{REPO}/check-runs", data={"name": "lemi / deploy (staging)", "head_sha": sha})
    before = len(writes(github))

    async def progress(i: int) -> None:
        with writer.progress(key=f"service-{i}"):  # a hundred services, one update each
            await gh.patch(f"/repos/{REPO}/check-runs/{run['id']}",
                           data={"status": "in_progress", "output": {"title": f"{i}", "summary": "rolling out"}})  # fmt: skip

    updates = [asyncio.ensure_future(progress(i)) for i in range(100)]
    while gh.writer.waiting < 99:  # all queued (one may be on its way already)
        await asyncio.sleep(0)
    reply = await comment(await auth.for_installation(installation), number, "/lemi status: 3 services rolling out")
    assert reply["body"].startswith("/lemi status")
    await asyncio.gather(*updates)
    sent = writes(github)[before:]
    assert len(sent) == 101
    position = next(i for i, c in enumerate(sent) if c.method == "POST")
    assert position <= 1, [str(c) for c in sent[:3]]  # at most the update already on its way went first
    assert github.secondary_limited() == []
    # 100 progress updates use at most 28 of each minute (35 %), at most 10 in any 20 s (the pace):
    # the rest is kept for replies and results. 28 a minute for 3 minutes, then the last 16 paced
    # (10 at 180 s, 6 at 200 s)
    assert clock.slept == pytest.approx(200.0)


async def test_a_reply_made_while_progress_waits_for_the_budget_goes_without_waiting(
    github: FakeGitHub, app: tuple[AppAuth, Clock, int]
) -> None:
    auth, clock, installation = app
    clock.auto = False  # time moves only when the test moves it
    number = github.open_pull_request(REPO, "feature", {"a": "a"})
    gh = await auth.for_installation(installation)

    async def status(i: int) -> None:
        with writer.progress(key=f"update-{i}"):
            await comment(gh, number, f"progress {i}")

    updates = [asyncio.ensure_future(status(i)) for i in range(38)]
    await github.await_for(lambda: len(github.comments(REPO, number)) == 10)
    await asyncio.sleep(0.05)
    assert len(github.comments(REPO, number)) == 10 and gh.writer.waiting == 28  # progress's pace is used
    start = clock.now()
    await comment(gh, number, "the reply")  # the writer was waiting for the pace: it wakes for this
    assert clock.now() == start and github.comments(REPO, number)[-1].body == "the reply"
    steps = 0
    while not all(u.done() for u in updates):  # the rest: at most 10 progress writes in each 20 s
        before = len(github.comments(REPO, number))
        clock.advance(20)
        await asyncio.sleep(0.05)
        assert len(github.comments(REPO, number)) - before <= 10
        steps += 1
        assert steps < 20
    await asyncio.gather(*updates)
    assert len(github.comments(REPO, number)) == 39 and github.secondary_limited() == []


async def test_a_progress_update_replaced_before_it_was_sent_is_never_sent(
    github: FakeGitHub, app: tuple[AppAuth, Clock, int]
) -> None:
    auth, clock, installation = app
    clock.auto = False
    auth.writers.use(Limits(per_minute=1, per_hour=500))
    number = github.open_pull_request(REPO, "feature", {"a": "a"})
    sha = github.pull(REPO, number).head_sha
    gh = await auth.for_installation(installation)
    run = await gh.post(f"/repos/{REPO}/check-runs", data={"name": "lemi / deploy (staging)", "head_sha": sha})
    url = f"/repos/{REPO}/check-runs/{run['id']}"

    async def update(percent: int) -> Any:
        with writer.progress():  # the key is the check run's URL
            return await gh.patch(
                url, data={"status": "in_progress", "output": {"title": f"{percent}%", "summary": "."}}
            )

    updates = [asyncio.ensure_future(update(p)) for p in range(10, 100, 10)]
    await asyncio.sleep(0.05)  # all nine queued (nothing to wait for before that)
    assert gh.writer.waiting == 1  # as one
    assert len(github.calls_to("PATCH", url)) == 0  # the minute's one write was the check run
    clock.advance(60)
    answers = await asyncio.gather(*updates)
    patches = github.calls_to("PATCH", url)
    assert len(patches) == 1 and patches[0].body["output"]["title"] == "90%"
    assert {a["output"]["title"] for a in answers} == {"90%"}  # every caller got the answer sent for it


async def test_a_secondary_limit_answer_pauses_the_installation_for_the_time_github_asks(
    github: FakeGitHub, app: tuple[AppAuth, Clock, int]
) -> None:
    auth, clock, installation = app
    number = github.open_pull_request(REPO, "feature", {"a": "a"})
    github.secondary_rate_limit("POST", r"/issues/\d+/comments$", retry_after=30)
    clients = [await auth.for_installation(installation) for _ in range(5)]
    await asyncio.gather(*(comment(gh, number, f"c{i}") for i, gh in enumerate(clients)))
    # one refusal; nothing else was sent during the pause; the refused write went again after it
    assert [c.status for c in writes(github)] == [403, 201, 201, 201, 201, 201]
    assert clock.slept == pytest.approx(30.0)
    assert len(github.comments(REPO, number)) == 5


async def test_a_pause_longer_than_lemi_waits_gives_every_write_back_to_its_job(
    github: FakeGitHub, app: tuple[AppAuth, Clock, int]
) -> None:
    auth, clock, installation = app
    clock.auto = False
    number = github.open_pull_request(REPO, "feature", {"a": "a"})
    github.secondary_rate_limit("POST", r"/issues/\d+/comments$", retry_after=120)
    gh = await auth.for_installation(installation)
    results = await asyncio.gather(*(comment(gh, number, f"c{i}") for i in range(3)), return_exceptions=True)
    assert all(isinstance(r, GitHubRateLimited) for r in results), results
    assert cast(GitHubRateLimited, results[0]).retry_after == 120.0
    assert len(writes(github)) == 1  # the two waiting writes never reached GitHub
    with pytest.raises(GitHubRateLimited, match="pause its writes"):
        await comment(gh, number, "during the pause")  # no worker waits two minutes
    assert (await gh.getitem(f"/repos/{REPO}"))["full_name"] == REPO  # reads are not paused
    clock.advance(120)
    await comment(gh, number, "after")
    assert [c.body for c in github.comments(REPO, number)] == ["after"]


async def test_a_write_whose_caller_stopped_waiting_is_not_sent(
    github: FakeGitHub, app: tuple[AppAuth, Clock, int]
) -> None:
    auth, clock, installation = app
    clock.auto = False
    auth.writers.use(Limits(per_minute=1, per_hour=500))
    number = github.open_pull_request(REPO, "feature", {"a": "a"})
    gh = await auth.for_installation(installation)
    await comment(gh, number, "first")
    cancelled = asyncio.ensure_future(comment(gh, number, "never"))
    while gh.writer.waiting < 1:
        await asyncio.sleep(0)
    cancelled.cancel()
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    assert gh.writer.waiting == 0
    clock.advance(60)
    await comment(gh, number, "second")
    assert [c.body for c in github.comments(REPO, number)] == ["first", "second"]


# ---- wiring --------------------------------------------------------------------------------------


async def test_the_apps_clients_of_one_installation_share_one_writer_with_the_settings_budget(
    github: FakeGitHub,
) -> None:
    installation = github.add_installation("acme", [REPO])
    other = github.add_installation("octo", ["octo/app"])
    settings = Settings(github_writes_per_minute=40, github_writes_per_hour=300)
    async with aiohttp.ClientSession() as session:
        auth = AppAuth(session, app_id=str(github.app_id), private_key=github.private_key_pem, base_url=github.url)
        ctx = Context(cast(Any, None), settings, auth, cast(Any, None), cast(Any, None))
        one = await ctx.github_for_installation(installation, REPO)
        two = await ctx.github({"installation": {"id": installation}, "repository": {"full_name": REPO}})
        three = await ctx.github_for_repo(REPO)
        theirs = await ctx.github_for_installation(other, "octo/app")
        assert one.writer is two.writer is three.writer
        assert theirs.writer is not one.writer and auth.app.writer not in (one.writer, theirs.writer)
        assert one.writer.limits == theirs.writer.limits == Limits(40, 300)
        # a client of its own (the CLI's personal token) keeps its own writer, GitHub's limits
        mine = GitHub(session, base_url=github.url, oauth_token="ghp_x")
        assert mine.writer is not one.writer and mine.writer.limits == Limits(80, 500)


# ---- the writer alone ----------------------------------------------------------------------------


async def test_a_write_that_got_no_answer_fails_for_its_caller_alone() -> None:
    clock = Clock()
    w = writer.Writer(clock=clock.now, sleep=clock.sleep)

    async def cut() -> writer.Response:
        raise aiohttp.ServerDisconnectedError()

    async def fine() -> writer.Response:
        return 201, {}, b"{}"

    lost, sent = await asyncio.gather(
        w.send("POST", f"https://api.github.com/repos/{REPO}/issues/1/comments", b"{}", cut),
        w.send("POST", f"https://api.github.com/repos/{REPO}/issues/2/comments", b"{}", fine),
        return_exceptions=True,
    )
    assert isinstance(lost, aiohttp.ServerDisconnectedError)  # the client retries it, or not (a POST)
    assert sent == (201, {}, b"{}")


async def test_writes_waiting_when_the_writer_stops_are_cancelled_not_left_waiting() -> None:
    clock = Clock(auto=False)
    w = writer.Writer(Limits(per_minute=1, per_hour=500), clock=clock.now, sleep=clock.sleep)

    async def fine() -> writer.Response:
        return 201, {}, b"{}"

    await w.send("POST", f"https://api.github.com/repos/{REPO}/issues/1/comments", b"{}", fine)
    waiting = asyncio.ensure_future(
        w.send("POST", f"https://api.github.com/repos/{REPO}/issues/2/comments", b"{}", fine)
    )
    while w.waiting < 1:
        await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert w._task is not None
    w._task.cancel()  # the loop shuts down
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert w.waiting == 0


async def test_a_reply_that_waited_for_its_turn_is_logged_with_its_jobs_fields(
    github: FakeGitHub, app: tuple[AppAuth, Clock, int], caplog: pytest.LogCaptureFixture
) -> None:
    auth, clock, installation = app
    auth.writers.use(Limits(per_minute=1, per_hour=500))
    number = github.open_pull_request(REPO, "feature", {"a": "a"})
    gh = await auth.for_installation(installation)
    with caplog.at_level(logging.INFO, logger="lemi.github"), logs.bind(delivery="d-1"):
        await comment(gh, number, "first")  # sent at once: not logged
        assert not caplog.records
        await comment(gh, number, "second")  # waits for the minute
        (record,) = caplog.records
        assert "interactive) waited 60.00 s" in record.getMessage()
        assert '"delivery":"d-1"' in logs.JsonFormatter().format(record)  # as lemi's handler formats it, at once
