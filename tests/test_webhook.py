"""The App server (POST /webhook, GET /healthz, GET /metrics), its durable queue and
its GitHub retry policy, end to end: lemi's real Starlette app, real SQLite queue and
workers (in process, or as a real `lemi serve` process that is SIGKILLed), talking to
the shared GitHub fake, fed with the real @octokit/webhooks-examples payloads.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import signal
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import httpx
import pytest
from app_harness import LEMI_YML, SERVICE_YAML, WEBHOOK_SECRET, running_app, settings_for, setup_repos, stored_document
from fakes.github import serving
from fakes.webhooks import all_examples, example, for_pull_request, signature, signed
from lemi_process import Server as LemiServe
from lemi_process import db_jobs, wait_until
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

import bot.server.app
from bot.core.config import parse_config
from bot.server.app import MAX_BODY, create_app, signature_ok

SERVICE = "acme/demo-service"
INFRA = "acme/infra"
SERVICE_FILES = {
    "deploy/demo-service/service.yaml": SERVICE_YAML,
    "deploy/demo-service/environment/staging.yaml": "variables: {LOG_LEVEL: info}\n",
}
SPEC_CHECK = "lemi / spec"
PROVISION_CHECK = "lemi / provision"
LINK_MARKER = "<!-- lemi:provision-link -->"


# --- helpers -----------------------------------------------------------------------------------


def open_service_pr(github: Any) -> int:
    """acme/demo-service with a PR that adds deploy/demo-service/, under one installation."""
    setup_repos(github)
    return github.open_pull_request(SERVICE, "provision", files=SERVICE_FILES)


def ok_calls(github: Any, method: str, path: str) -> list[Any]:
    return [c for c in github.calls if c.method == method and c.path == path and 200 <= c.status < 300]


def assert_provisioned_once(github: Any, number: int) -> None:
    """The whole provisioning happened, and no write happened twice."""
    calls = github.describe_calls()
    infra_prs = github.pulls(INFRA)
    assert [p.title for p in infra_prs] == ["Provision demo-service"], calls
    assert github.file(INFRA, "lemi/demo-service", "services/demo-service.tf"), calls
    lemi_comments = [c for c in github.comments(SERVICE, number) if c.via_app]
    assert len(lemi_comments) == 1, [c.body for c in lemi_comments]
    assert LINK_MARKER in lemi_comments[0].body
    assert f"/{INFRA}/pull/{infra_prs[0].number}" in lemi_comments[0].body
    head = github.pull(SERVICE, number).head_sha
    runs = github.check_runs(SERVICE, sha=head)
    assert Counter(r.name for r in runs) == {SPEC_CHECK: 1, PROVISION_CHECK: 1}, calls
    by_name = {r.name: r for r in runs}
    assert (by_name[SPEC_CHECK].status, by_name[SPEC_CHECK].conclusion) == ("completed", "success")
    assert (by_name[PROVISION_CHECK].status, by_name[PROVISION_CHECK].conclusion) == ("in_progress", None)
    # every write that GitHub applied, applied once
    assert len(ok_calls(github, "POST", f"/repos/{INFRA}/pulls")) == 1, calls
    assert len(ok_calls(github, "POST", f"/repos/{INFRA}/git/refs")) == 1, calls
    assert len(ok_calls(github, "PUT", f"/repos/{INFRA}/contents/services/demo-service.tf")) == 1, calls
    assert len(ok_calls(github, "POST", f"/repos/{SERVICE}/issues/{number}/comments")) == 1, calls
    assert len(ok_calls(github, "POST", f"/repos/{SERVICE}/check-runs")) == 2, calls


def metric(text: str, name: str, **labels: str) -> float | None:
    """The value of one sample of a Prometheus exposition, or None."""
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return None


def post_raw(app: Any, body: bytes, headers: dict[str, str]) -> httpx.Response:
    return app.client.post("/webhook", content=body, headers=headers)


def pr_opened_example() -> dict[str, Any]:
    return example("pull_request", "opened", with_installation=True)


# --- 1. signatures -----------------------------------------------------------------------------


def test_signature_ok_is_an_hmac_sha256_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    body = b'{"zen":"Keep it logically awesome."}'
    good = "sha256=" + hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
    compared: list[tuple[Any, Any]] = []
    real = hmac.compare_digest

    def spy(a: Any, b: Any) -> bool:
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(bot.server.app.hmac, "compare_digest", spy)
    assert signature_ok(body, good, "s3cret")
    assert compared, "the signature must be compared with hmac.compare_digest (constant time)"
    compared.clear()
    assert not signature_ok(body, good, "other-secret")
    assert not signature_ok(body + b" ", good, "s3cret")
    assert not signature_ok(body, good[:-1], "s3cret")
    assert not signature_ok(body, good[:-1] + ("0" if good[-1] != "0" else "1"), "s3cret")
    assert compared, "a wrong signature of the right shape is also compared in constant time"
    for header in (None, "", "sha256=", good.upper(), good.removeprefix("sha256="),
                   "sha1=" + hmac.new(b"s3cret", body, hashlib.sha1).hexdigest(),
                   "sha1=" + good.removeprefix("sha256="), "sha256=é" + good[8:]):  # fmt: skip
        assert not signature_ok(body, header, "s3cret"), header


def test_bad_signatures_get_401_store_nothing_and_call_no_api(github: Any, tmp_path: Path) -> None:
    payload = pr_opened_example()  # an event lemi handles: only the signature stands in the way
    headers, body = signed("pull_request", payload, WEBHOOK_SECRET)
    sha1_only = {k: v for k, v in headers.items() if k != "X-Hub-Signature-256"}
    missing = {k: v for k, v in sha1_only.items() if k != "X-Hub-Signature"}
    wrong_secret = {**headers, "X-Hub-Signature-256": signature("not-the-secret", body)}
    hexdigest = headers["X-Hub-Signature-256"].removeprefix("sha256=")
    tampered = body.replace(b'"action":"opened"', b'"action":"closed"')
    assert tampered != body
    cases: list[tuple[str, bytes, dict[str, str]]] = [
        ("missing header", body, missing),
        ("sha1-only (X-Hub-Signature)", body, sha1_only),
        ("wrong secret", body, wrong_secret),
        ("tampered body", tampered, headers),
        ("wrong prefix sha1=", body, {**headers, "X-Hub-Signature-256": "sha1=" + hexdigest}),
        ("no prefix", body, {**headers, "X-Hub-Signature-256": hexdigest}),
        ("upper-case prefix", body, {**headers, "X-Hub-Signature-256": "SHA256=" + hexdigest}),
        ("empty digest", body, {**headers, "X-Hub-Signature-256": "sha256="}),
        ("truncated digest", body, {**headers, "X-Hub-Signature-256": "sha256=" + hexdigest[:-2]}),
        ("signature of the empty body", body, {**headers, "X-Hub-Signature-256": signature(WEBHOOK_SECRET, b"")}),
        # the signature is checked before the other headers and the body are looked at
        ("bad signature, no event header", body,
         {k: v for k, v in wrong_secret.items() if k not in ("X-GitHub-Event", "X-GitHub-Delivery")}),
        ("bad signature, not JSON", b"not json", {**headers, "X-Hub-Signature-256": signature("x", b"not json")}),
    ]  # fmt: skip
    with running_app(github, tmp_path, workers=2) as app:
        for name, data, hdrs in cases:
            response = post_raw(app, data, hdrs)
            assert response.status_code == 401, (name, response.status_code, response.text)
        time.sleep(0.2)  # several worker polls
        assert app.jobs() == []
        assert github.calls == [], github.describe_calls()
        # the same delivery, correctly signed, is accepted and stored
        response = post_raw(app, body, headers)
        assert response.status_code == 202, response.text
        assert response.json() == {"status": "queued"}
        assert [j["dedupe_id"] for j in app.jobs()] == [headers["X-GitHub-Delivery"]]
        metrics = app.client.get("/metrics").text
    assert metric(metrics, "lemi_webhook_deliveries_total", outcome="bad_signature") == len(cases)


# --- 2. 400 and 413 ----------------------------------------------------------------------------


def test_malformed_deliveries_get_400_and_store_nothing(github: Any, tmp_path: Path) -> None:
    payload = pr_opened_example()
    headers, body = signed("pull_request", payload, WEBHOOK_SECRET)

    def signed_as(data: bytes, **changes: str | None) -> dict[str, str]:
        out = {**headers, "X-Hub-Signature-256": signature(WEBHOOK_SECRET, data)}
        out.pop("X-Hub-Signature")
        for key, value in changes.items():
            out.pop(key.replace("_", "-"), None)
            if value is not None:
                out[key.replace("_", "-")] = value
        return out

    cases: list[tuple[str, bytes, dict[str, str]]] = [
        ("not JSON", b"{not json", signed_as(b"{not json")),
        ("truncated JSON", body[:-1], signed_as(body[:-1])),
        ("not UTF-8", b'{"a": "\xff"}', signed_as(b'{"a": "\xff"}')),
        ("empty body", b"", signed_as(b"")),
        ("no X-GitHub-Event", body, signed_as(body, X_GitHub_Event=None)),
        ("no X-GitHub-Delivery", body, signed_as(body, X_GitHub_Delivery=None)),
        ("empty X-GitHub-Delivery", body, signed_as(body, X_GitHub_Delivery="")),
        ("malformed X-GitHub-Delivery", body, signed_as(body, X_GitHub_Delivery="../../etc/passwd")),
        ("malformed X-GitHub-Event", body, signed_as(body, X_GitHub_Event="pull_request; rm -rf")),
        ("form body without payload", b"foo=bar",
         signed_as(b"foo=bar", Content_Type="application/x-www-form-urlencoded")),
    ]  # fmt: skip
    with running_app(github, tmp_path, workers=0) as app:
        for name, data, hdrs in cases:
            response = post_raw(app, data, hdrs)
            assert response.status_code == 400, (name, response.status_code, response.text)
            assert "error" in response.json(), name
        assert app.jobs() == []
        # GitHub's other content type (application/x-www-form-urlencoded, payload=<json>) is accepted
        from urllib.parse import urlencode

        form = urlencode({"payload": body.decode()}).encode()
        response = post_raw(app, form, signed_as(form, Content_Type="application/x-www-form-urlencoded"))
        assert response.status_code == 202, response.text
        assert len(app.jobs()) == 1
    assert github.calls == []


def test_signed_pull_request_with_a_malformed_shape_gets_400(github: Any, tmp_path: Path) -> None:
    app = create_app(settings=settings_for(github, tmp_path / "queue.db"), config=parse_config(LEMI_YML), workers=0)
    statuses = []
    with TestClient(app, raise_server_exceptions=False) as client:
        for data in ({"action": "opened", "repository": {}, "pull_request": {"number": 1}},
                     {"action": "opened", "repository": "acme/demo-service", "pull_request": {"number": 1}}):  # fmt: skip
            headers, body = signed("pull_request", data, WEBHOOK_SECRET)
            statuses.append(client.post("/webhook", content=body, headers=headers).status_code)
    assert statuses == [400, 400]


def test_a_declared_content_length_over_25_mb_gets_413(github: Any, tmp_path: Path) -> None:
    with running_app(github, tmp_path, workers=0) as app:
        headers, body = signed("ping", example("ping"), WEBHOOK_SECRET)
        response = post_raw(app, body, {**headers, "Content-Length": str(MAX_BODY + 1)})
        assert response.status_code == 413, response.text
        assert app.jobs() == []
    assert github.calls == []


def test_a_real_body_just_over_25_mb_gets_413_and_is_not_stored(github: Any, tmp_path: Path) -> None:
    # a correctly signed pull_request delivery just over 25 MB, streamed (no Content-Length),
    # so the server has to count the bytes itself
    payload = pr_opened_example()
    payload["pull_request"]["body"] = ""
    small = json.dumps(payload, separators=(",", ":")).encode()
    padding = MAX_BODY + 1 - len(small)
    payload["pull_request"]["body"] = "x" * padding
    body = json.dumps(payload, separators=(",", ":")).encode()
    assert len(body) == MAX_BODY + 1
    headers, _ = signed("pull_request", {}, WEBHOOK_SECRET)
    headers["X-Hub-Signature-256"] = signature(WEBHOOK_SECRET, body)
    headers.pop("X-Hub-Signature")
    del payload

    def chunks() -> Iterator[bytes]:
        view = memoryview(body)
        for start in range(0, len(body), 1 << 20):
            yield bytes(view[start : start + (1 << 20)])

    with running_app(github, tmp_path, workers=0) as app:
        response = app.client.post("/webhook", content=chunks(), headers=headers)
        assert response.status_code == 413, response.text
        assert app.jobs() == []
        assert metric(app.client.get("/metrics").text, "lemi_webhook_deliveries_total", outcome="too_large") == 1
    assert github.calls == []


# --- 3. ping and every real example ------------------------------------------------------------


def test_ping_gets_pong_and_no_work(github: Any, tmp_path: Path) -> None:
    with running_app(github, tmp_path, workers=2) as app:
        response = app.deliver("ping", example("ping"))
        assert response.status_code == 200
        assert response.json() == {"status": "pong"}
        time.sleep(0.2)
        assert app.jobs() == []
    assert github.calls == []


# events the product contract gives work to (the README, "The GitHub App"); everything
# else must be acknowledged and ignored with no API call
PR_ACTIONS = {"opened", "reopened", "synchronize", "closed"}


def contract_may_handle(event: str, payload: dict[str, Any]) -> bool:
    action = payload.get("action")
    return (
        (event == "pull_request" and action in PR_ACTIONS)
        or event == "push"
        or (event == "issue_comment" and action == "created")
    )


# real GitHub event names with a digit
EVENTS_WITH_DIGITS = {"projects_v2_item"}


def test_every_example_payload_gets_a_2xx_and_ignored_events_cause_no_work(github: Any, tmp_path: Path) -> None:
    examples = list(all_examples())
    assert len(examples) > 300 and len({e for e, _ in examples}) > 50
    assert {e for e, _ in examples if any(ch.isdigit() for ch in e)} == EVENTS_WITH_DIGITS
    examples = [(e, p) for e, p in examples if e not in EVENTS_WITH_DIGITS]
    ignored = [(e, p) for e, p in examples if not contract_may_handle(e, p)]
    candidates = [(e, p) for e, p in examples if contract_may_handle(e, p)]
    assert {p.get("action") for e, p in candidates if e == "pull_request"} == PR_ACTIONS

    # the ignored ones, with workers running: acknowledged, nothing stored, no request at all
    with running_app(github, tmp_path / "a", workers=2) as app:
        for n, (event, payload) in enumerate(ignored):
            response = app.deliver(event, payload, delivery=f"ignored-{n}")
            assert 200 <= response.status_code < 300, (event, payload.get("action"), response.text)
            expected = "pong" if event == "ping" else "ignored"
            assert response.json() == {"status": expected}, (event, payload.get("action"))
        time.sleep(0.3)  # many worker polls
        assert app.jobs() == []
        metrics = app.client.get("/metrics").text
    assert github.calls == [], github.describe_calls()
    assert metric(metrics, "lemi_webhook_deliveries_total", event="star", outcome="ignored") == sum(
        1 for e, _ in ignored if e == "star"
    )

    # the ones lemi may handle: 2xx, and the pull_request ones are stored (their repositories are
    # not in the fake, so they are not processed here: intake alone makes no API call)
    with running_app(github, tmp_path / "b", workers=0) as app:
        stored = set()
        for n, (event, payload) in enumerate(candidates):
            delivery = f"candidate-{n}"
            response = app.deliver(event, payload, delivery=delivery)
            assert 200 <= response.status_code < 300, (event, payload.get("action"), response.text)
            if event == "pull_request":
                assert (response.status_code, response.json()) == (202, {"status": "queued"}), payload["action"]
            if response.json()["status"] == "queued":
                stored.add(delivery)
        assert {j["dedupe_id"] for j in app.jobs()} == stored
        assert all(j["state"] == "queued" for j in app.jobs())
    assert github.calls == [], github.describe_calls()


def _project(document: Any, shape: Any) -> Any:
    """The part of ``document`` a TypedDict ``shape`` describes (nested TypedDicts followed)."""
    import typing

    for member in typing.get_args(shape):  # ``X | None``: the TypedDict in it
        if isinstance(member, type) and typing.is_typeddict(member):
            shape = member
    if not (isinstance(shape, type) and typing.is_typeddict(shape)) or not isinstance(document, dict):
        return document
    hints = typing.get_type_hints(shape)
    return {key: _project(document[key], hints[key]) for key in hints if key in document}


def test_intake_reads_exactly_the_summary_of_every_example_payload() -> None:
    """Intake decodes only the Summary's fields; for every real example they equal the
    full document's, so accepts/job_key decide as they would on the whole payload."""
    import msgspec

    import handlers

    decoder = msgspec.json.Decoder(handlers.Summary)
    checked = 0
    for event, payload in all_examples():
        body = json.dumps(payload).encode()
        summary = decoder.decode(body)  # no ValidationError: no example needs the full-parse fallback
        assert summary == _project(payload, handlers.Summary), event
        assert handlers.accepts(event, summary) == handlers.accepts(event, payload), (event, payload.get("action"))
        if handlers.accepts(event, payload):
            assert handlers.job_key(event, summary) == handlers.job_key(event, payload), event
            checked += 1
    assert checked > 10


def _deliver_raw(app: Any, event: str, payload: dict[str, Any], delivery: str) -> bytes:
    """Post ``payload`` as an indented, non-ASCII body (not how lemi would write it); the body."""
    body = json.dumps(payload, indent=3, ensure_ascii=False).encode()
    headers = {"X-GitHub-Event": event, "X-GitHub-Delivery": delivery, "Content-Type": "application/json",
               "X-Hub-Signature-256": signature(WEBHOOK_SECRET, body)}  # fmt: skip
    response = post_raw(app, body, headers)
    assert (response.status_code, response.json()) == (202, {"status": "queued"}), response.text
    return body


def test_intake_stores_the_summary_with_what_is_pinned_as_written(github: Any, tmp_path: Path) -> None:
    """A delivery is stored as its summary, a few hundred bytes of a 24 KB document: every field
    a handler reads, with the command as written, the pushed SHA and the pull request's head."""
    import handlers

    pull = pr_opened_example()
    pull["pull_request"]["body"] = 'Añadir ☕ "quoted"\n<!-- lemi: marker -->\r\n\ttabs'
    comment = example("issue_comment", "created", with_installation=True)
    comment["issue"]["pull_request"] = {"url": "https://api.github.com/repos/o/r/pulls/1"}
    comment["comment"]["body"] = "/lemi restart -e staging\r\n\n  — por favor ☕"
    push = example("push", with_installation=True)
    sent = {"pr": ("pull_request", pull), "comment": ("issue_comment", comment), "push": ("push", push)}
    with running_app(github, tmp_path, workers=0) as app:
        bodies = {name: _deliver_raw(app, event, payload, f"kept-{name}") for name, (event, payload) in sent.items()}
    for name, (_, payload) in sent.items():
        kept = stored_document(tmp_path / "queue.db", f"kept-{name}")
        assert json.loads(kept) == _project(payload, handlers.Summary), name
        assert len(kept) < len(bodies[name]) / 4, (name, len(kept), len(bodies[name]))
    pr_kept = json.loads(stored_document(tmp_path / "queue.db", "kept-pr"))["pull_request"]
    assert pr_kept["body"] == pull["pull_request"]["body"]
    assert pr_kept["head"]["sha"] == pull["pull_request"]["head"]["sha"]
    comment_kept = json.loads(stored_document(tmp_path / "queue.db", "kept-comment"))["comment"]
    assert comment_kept["body"] == comment["comment"]["body"]
    assert json.loads(stored_document(tmp_path / "queue.db", "kept-push"))["after"] == push["after"]


def test_a_delivery_shaped_unlike_the_summary_is_read_whole(github: Any, tmp_path: Path) -> None:
    """A field of an unexpected type (valid JSON) falls back to the full parse: same answer as
    before, and the document is stored whole, byte for byte as received."""
    payload = pr_opened_example()
    payload["number"] = "two"  # the Summary says int
    with running_app(github, tmp_path, workers=0) as app:
        body = _deliver_raw(app, "pull_request", payload, "odd-shape")
        # stored, under the key the whole document gives (its pull request)
        key = f"{payload['repository']['full_name']}#{payload['pull_request']['number']}"
        assert [(j["dedupe_id"], j["key"]) for j in app.jobs()] == [("odd-shape", key)]
    assert stored_document(tmp_path / "queue.db", "odd-shape") == body


def test_every_document_intake_accepts_decodes_again_wherever_the_queue_reads_it() -> None:
    """msgspec and json stop at Python's recursion limit, counted from where they are called.
    Intake keeps JSON_SPARE_LEVELS levels in reserve, so the deepest document it accepts is
    read back from a stack deeper than intake's (here by 16 frames), also two levels down in
    an SQS message."""
    import msgspec

    import handlers
    from bot.store.jobs import WebhookJob, encode_message, read_document, read_message
    from bot.store.queue import NewJob
    from bot.store.sqs_queue import _compact, _read

    decoder = msgspec.json.Decoder(handlers.Summary)

    def document(levels: int) -> bytes:
        return b'{"action":"opened","x":' + b"[" * levels + b"]" * levels + b"}"

    def accepted(levels: int) -> bool:
        try:
            bot.server.app._decode(decoder, document(levels), "application/json")
        except (ValueError, RecursionError):
            return False
        return True

    low, high = 1, 5_000  # accepted, refused
    assert accepted(low) and not accepted(high)
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (middle, high) if accepted(middle) else (low, middle)
    deepest = document(low)
    message = WebhookJob("pull_request", "deep", "acme/demo", msgspec.Raw(deepest))
    job = NewJob("deep", "k", message)

    def read_back(read: Any) -> Any:
        leased = read()
        assert isinstance(leased, WebhookJob), leased
        return leased.data()

    readers = {
        "the SQLite queue's document file": lambda: read_back(
            lambda: msgspec.structs.replace(message, document=read_document(deepest))
        ),
        "the SQLite queue's row (in memory)": lambda: read_back(
            lambda: read_message("webhook", encode_message(message))
        ),
        "an SQS message": lambda: read_back(lambda: _read(_compact(job, message), "m")[2]),
        "an SQS message, as JSON": lambda: json.loads(_compact(job, message))["payload"]["data"],
    }

    def deeper(frames: int, read: Any) -> Any:
        return read() if frames == 0 else deeper(frames - 1, read)

    for where, read in readers.items():
        try:
            assert deeper(16, read)["action"] == "opened"
        except RecursionError:
            pytest.fail(f"{where}: a document intake accepted ({low} levels) cannot be read back")


def test_projects_v2_item_examples_get_a_2xx_and_no_work(github: Any, tmp_path: Path) -> None:
    examples = [(e, p) for e, p in all_examples() if e in EVENTS_WITH_DIGITS]
    assert len(examples) == 7
    with running_app(github, tmp_path, workers=2) as app:
        answers = [(app.deliver(e, p).status_code) for e, p in examples]
        assert app.jobs() == []
    assert github.calls == []
    assert answers == [200] * len(examples)


# --- 4. duplicate deliveries -------------------------------------------------------------------


def test_the_same_delivery_is_processed_once(github: Any, tmp_path: Path) -> None:
    number = open_service_pr(github)
    payload = for_pull_request(github, SERVICE, number, "opened")
    delivery = str(uuid.uuid4())
    with running_app(github, tmp_path, workers=2) as app:
        first = app.deliver("pull_request", payload, delivery=delivery)
        again = app.deliver("pull_request", payload, delivery=delivery)  # while queued or running
        app.drain()
        after = app.deliver("pull_request", payload, delivery=delivery)  # after it was processed
        time.sleep(0.2)
        rows = app.drain()
        metrics = app.client.get("/metrics").text
    assert (first.status_code, first.json()) == (202, {"status": "queued"})
    assert (again.status_code, again.json()) == (202, {"status": "duplicate"})
    assert (after.status_code, after.json()) == (202, {"status": "duplicate"})
    assert [(r["dedupe_id"], r["state"], r["attempts"]) for r in rows] == [(delivery, "done", 1)]
    assert_provisioned_once(github, number)
    assert metric(metrics, "lemi_webhook_deliveries_total", event="pull_request", outcome="duplicate") == 2
    assert metric(metrics, "lemi_webhook_deliveries_total", event="pull_request", outcome="queued") == 1


# --- 5. durability: a real `lemi serve`, killed with SIGKILL -----------------------------------


def Server(github: Any, tmp_path: Path, db: Path, **env: str) -> LemiServe:
    return LemiServe(github, tmp_path, db, lemi_yml=LEMI_YML, **env)


def test_a_delivery_accepted_before_sigkill_is_processed_after_restart(github: Any, tmp_path: Path) -> None:
    number = open_service_pr(github)
    payload = for_pull_request(github, SERVICE, number, "opened")
    db = tmp_path / "queue.db"
    delivery = str(uuid.uuid4())
    accept_only = Server(github, tmp_path, db, LEMI_WORKERS="0")
    again = Server(github, tmp_path, db, LEMI_WORKERS="2")
    try:
        accept_only.start()
        response = accept_only.deliver("pull_request", payload, delivery)
        assert (response.status_code, response.json()) == (202, {"status": "queued"})
        accept_only.kill()  # right after the 2xx
        assert accept_only.proc is not None and accept_only.proc.returncode == -signal.SIGKILL
        # the delivery was on disk when the 2xx was sent
        assert [(j["dedupe_id"], j["state"]) for j in db_jobs(db)] == [(delivery, "queued")]
        assert github.calls == []
        again.start()
        github.wait_for(lambda: github.pulls(INFRA) and github.check_runs(SERVICE, name=PROVISION_CHECK), timeout=20)
        wait_until(lambda: db_jobs(db)[0]["state"] == "done", 10, "the job is done")
        # a redelivery after the restart is still a duplicate
        response = again.deliver("pull_request", payload, delivery)
        assert (response.status_code, response.json()) == (202, {"status": "duplicate"})
    finally:
        accept_only.kill()
        again.kill()
    assert [(j["state"], j["attempts"]) for j in db_jobs(db)] == [("done", 1)]
    assert_provisioned_once(github, number)


def test_sigkill_while_the_job_runs_then_restart_completes_it_exactly_once(github: Any, tmp_path: Path) -> None:
    """The fake cannot delay an answer, so the server is killed from inside the fake, right
    after GitHub applied the POST that opens the infra PR and before lemi reads the answer:
    the worst moment for idempotence (the PR exists, lemi does not know it)."""
    number = open_service_pr(github)
    payload = for_pull_request(github, SERVICE, number, "opened")
    db = tmp_path / "queue.db"
    delivery = str(uuid.uuid4())
    first = Server(github, tmp_path, db, LEMI_WORKERS="1", LEMI_LEASE_SECONDS="1")
    second = Server(github, tmp_path, db, LEMI_WORKERS="2", LEMI_LEASE_SECONDS="1")
    killed = threading.Event()

    def kill_on_infra_pr(serve: Any) -> Any:
        def wrapped(method: str, raw_path: str, *args: Any, **kwargs: Any) -> Any:
            answer = serve(method, raw_path, *args, **kwargs)
            if method.upper() == "POST" and unquote(raw_path) == f"/repos/{INFRA}/pulls" and not killed.is_set():
                first.kill()  # before the answer leaves the fake
                killed.set()
            return answer

        return wrapped

    try:
        with serving(github, kill_on_infra_pr):
            first.start()
            response = first.deliver("pull_request", payload, delivery)
            assert (response.status_code, response.json()) == (202, {"status": "queued"})
            assert killed.wait(20), f"the job never opened the infra PR\n{github.describe_calls()}\n{first.output()}"
        assert first.proc is not None and first.proc.returncode == -signal.SIGKILL
        assert len(github.pulls(INFRA)) == 1  # applied by GitHub, answer never read
        assert not [c for c in github.comments(SERVICE, number) if c.via_app]
        assert [(j["state"], j["attempts"]) for j in db_jobs(db)] == [("running", 1)]
        second.start()
        github.wait_for(lambda: [c for c in github.comments(SERVICE, number) if c.via_app], timeout=20)
        github.wait_for(lambda: github.check_runs(SERVICE, name=PROVISION_CHECK), timeout=20)
        wait_until(lambda: db_jobs(db)[0]["state"] == "done", 15, "the job is done")
        time.sleep(0.5)  # nothing else may run it again
    finally:
        first.kill()
        second.kill()
    assert [(j["state"], j["attempts"]) for j in db_jobs(db)] == [("done", 2)]
    assert_provisioned_once(github, number)


# --- 6. GitHub faults ---------------------------------------------------------------------------


def test_502s_and_rate_limits_on_the_first_tries_still_complete_the_job(github: Any, tmp_path: Path) -> None:
    number = open_service_pr(github)
    payload = for_pull_request(github, SERVICE, number, "opened")
    # reads: 502, and a primary rate limit (x-ratelimit-remaining: 0 + x-ratelimit-reset)
    github.fail_next("GET", rf"^/repos/{SERVICE}/pulls/{number}/files$", 502)
    github.primary_rate_limit("GET", r"/contents/deploy/demo-service/service\.yaml$", reset_in=1)
    # writes: a secondary rate limit (403 + retry-after: 1) on the very first POST and on the
    # first check run, and a 502 on the POST that creates the infra branch
    github.secondary_rate_limit("POST", r"/access_tokens$", retry_after=1)
    github.secondary_rate_limit("POST", rf"^/repos/{SERVICE}/check-runs$", retry_after=1)
    github.fail_next("POST", rf"^/repos/{INFRA}/git/refs$", 502)
    started = time.monotonic()
    with running_app(github, tmp_path, workers=2) as app:
        app.deliver("pull_request", payload)
        rows = app.drain(timeout=20)
    elapsed = time.monotonic() - started
    assert github.faults == [], "every fault was hit"
    assert [r["state"] for r in rows] == ["done"], rows
    # the reads and rate limits are retried by the client; the POST 5xx by the queue
    assert rows[0]["attempts"] == 2, rows
    statuses = [(c.method, c.path.rsplit("/", 1)[-1], c.status) for c in github.calls]
    assert ("POST", "access_tokens", 403) in statuses and ("POST", "access_tokens", 201) in statuses
    assert ("GET", "files", 502) in statuses and ("GET", "files", 200) in statuses
    # retry-after: 1 honoured twice (at least ~2 s of waiting), and not much longer
    assert 1.9 <= elapsed < 15, elapsed
    assert_provisioned_once(github, number)


def test_writes_github_applied_but_whose_answer_was_lost_are_not_repeated(github: Any, tmp_path: Path) -> None:
    """A POST answered 502 may have been applied: the retried job finds what it made."""
    number = open_service_pr(github)
    payload = for_pull_request(github, SERVICE, number, "opened")
    lose = {f"/repos/{INFRA}/pulls", f"/repos/{SERVICE}/issues/{number}/comments", f"/repos/{SERVICE}/check-runs"}
    lost: list[str] = []

    def lose_answers(serve: Any) -> Any:
        def wrapped(method: str, raw_path: str, *args: Any, **kwargs: Any) -> Any:
            status, headers, body = serve(method, raw_path, *args, **kwargs)
            path = unquote(raw_path)
            if method.upper() == "POST" and path in lose and status < 300:
                lose.discard(path)
                lost.append(path)
                return 502, headers, {"message": "Server Error"}
            return status, headers, body

        return wrapped

    with (
        serving(github, lose_answers),
        running_app(github, tmp_path, workers=2, retry_delays=(0.05, 0.1, 0.2, 0.4, 0.8)) as app,
    ):
        app.deliver("pull_request", payload)
        rows = app.drain(timeout=20)
    assert len(lost) == 3, lost
    assert [r["state"] for r in rows] == ["done"], rows
    assert_provisioned_once(github, number)


def test_a_persistent_502_fails_the_job_after_the_retries_and_tells_the_user(github: Any, tmp_path: Path) -> None:
    number = open_service_pr(github)
    payload = for_pull_request(github, SERVICE, number, "opened")
    delivery = str(uuid.uuid4())
    github.fail_next("POST", rf"^/repos/{INFRA}/pulls$", 502, times=1000)
    retry_delays = (0.05, 0.1, 0.2)
    with running_app(github, tmp_path, workers=2, retry_delays=retry_delays) as app:
        app.deliver("pull_request", payload, delivery=delivery)
        rows = app.drain(timeout=20)
        time.sleep(0.2)
        metrics = app.client.get("/metrics").text
    assert [(r["state"], r["attempts"]) for r in rows] == [("failed", len(retry_delays) + 1)], rows
    assert "GitHubBroken" in (rows[0]["last_error"] or ""), rows
    assert len(github.calls_to("POST", f"/repos/{INFRA}/pulls")) == len(retry_delays) + 1
    assert github.pulls(INFRA) == []
    told = [c for c in github.comments(SERVICE, number) if c.via_app and c.user == github.bot_login]
    assert len(told) == 1, [c.body for c in github.comments(SERVICE, number)]
    assert delivery in told[0].body
    assert "gave up" in told[0].body and "pull_request.opened" in told[0].body
    assert metric(metrics, "lemi_job_duration_seconds_count", kind="webhook", outcome="failed") == 1
    assert metric(metrics, "lemi_job_duration_seconds_count", kind="webhook", outcome="retry") == len(retry_delays)


# --- 7. the queue cannot store the delivery ------------------------------------------------------


def queue_app(github: Any, queue_url: str, tmp_path: Path) -> Any:
    return create_app(
        settings=settings_for(github, tmp_path / "unused.db", queue_url=queue_url),
        config=parse_config(LEMI_YML),
        workers=0,
    )


def test_a_queue_that_cannot_open_gets_503_not_2xx(github: Any, tmp_path: Path) -> None:
    # the database path is a directory: SQLite cannot open it
    with TestClient(queue_app(github, f"sqlite:///{tmp_path}", tmp_path), raise_server_exceptions=False) as client:
        headers, body = signed("pull_request", pr_opened_example(), WEBHOOK_SECRET)
        response = client.post("/webhook", content=body, headers=headers)
        metrics = client.get("/metrics").text
    assert response.status_code == 503, response.text
    assert "redeliver" in response.json()["error"]
    assert metric(metrics, "lemi_webhook_deliveries_total", event="pull_request", outcome="store_failed") == 1
    assert github.calls == []


def test_a_queue_under_a_file_gets_503(github: Any, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory\n")
    url = f"sqlite:///{blocker}/sub/queue.db"
    with TestClient(queue_app(github, url, tmp_path), raise_server_exceptions=False) as client:
        headers, body = signed("pull_request", pr_opened_example(), WEBHOOK_SECRET)
        response = client.post("/webhook", content=body, headers=headers)
    assert response.status_code == 503, (response.status_code, response.text)


# --- 8. /metrics and /healthz --------------------------------------------------------------------


def test_healthz_says_ready(github: Any, tmp_path: Path) -> None:
    with running_app(github, tmp_path, workers=0) as app:
        response = app.client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "app": "ready", "config": "loaded"}


def test_metrics_count_deliveries_jobs_queue_depth_and_rate_limit(github: Any, tmp_path: Path) -> None:
    number = open_service_pr(github)
    payload = for_pull_request(github, SERVICE, number, "opened")
    github.rate_limit = 4321  # a limit of this fake only, so the gauge's value must come from it
    with running_app(github, tmp_path, workers=2) as app:
        assert app.deliver("ping", example("ping")).status_code == 200
        assert app.deliver("star", example("star")).status_code == 200
        headers, body = signed("pull_request", payload, "wrong")
        assert post_raw(app, body, headers).status_code == 401
        delivery = str(uuid.uuid4())
        assert app.deliver("pull_request", payload, delivery=delivery).status_code == 202
        assert app.deliver("pull_request", payload, delivery=delivery).status_code == 202
        app.drain()
        response = app.client.get("/metrics")
    text = response.text
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    deliveries = "lemi_webhook_deliveries_total"
    assert metric(text, deliveries, event="pull_request", outcome="queued") == 1
    assert metric(text, deliveries, event="pull_request", outcome="duplicate") == 1
    assert metric(text, deliveries, event="ping", outcome="pong") == 1
    assert metric(text, deliveries, event="star", outcome="ignored") == 1
    assert metric(text, deliveries, outcome="bad_signature") == 1
    assert metric(text, "lemi_queue_depth") == 0
    assert metric(text, "lemi_job_duration_seconds_count", kind="webhook", outcome="done") == 1
    assert (metric(text, "lemi_job_duration_seconds_sum", kind="webhook", outcome="done") or 0) > 0

    def bucket(c: Any) -> str:
        return c.token or ("app" if c.auth == "app" else "anonymous")

    last = github.calls[-1]  # the last answer lemi read: its x-ratelimit-remaining
    used = sum(1 for c in github.calls if bucket(c) == bucket(last))
    assert metric(text, "lemi_github_rate_limit_remaining") == 4321 - used
    assert metric(text, "lemi_github_requests_total", method="POST", status="201") is not None


def test_the_rate_limit_gauge_is_absent_until_github_tells_it(github: Any, tmp_path: Path) -> None:
    """Not 0 before lemi knows (0 would fire the alert on it): no series until a GitHub answer
    carries x-ratelimit-remaining, then that value."""
    github.rate_limit = 4321
    with running_app(github, tmp_path, workers=0) as app:
        text = app.client.get("/metrics").text
        assert "lemi_github_rate_limit_remaining" not in text, text  # no GitHub call yet
        assert metric(text, "lemi_queue_depth") == 0  # the other series are there
        metrics = app.client.app.state.lemi.metrics  # type: ignore[attr-defined]
        metrics.github_response("GET", "/app", 200, {})  # an answer that does not say it
        assert "lemi_github_rate_limit_remaining" not in app.client.get("/metrics").text
        metrics.github_response("GET", "/app", 200, {"x-ratelimit-remaining": "4000"})
        assert metric(app.client.get("/metrics").text, "lemi_github_rate_limit_remaining") == 4000


def test_metrics_queue_depth_counts_waiting_jobs(github: Any, tmp_path: Path) -> None:
    with running_app(github, tmp_path, workers=0) as app:
        assert metric(app.client.get("/metrics").text, "lemi_queue_depth") == 0
        for action in ("opened", "reopened"):
            assert app.deliver("pull_request", example("pull_request", action)).status_code == 202
        assert metric(app.client.get("/metrics").text, "lemi_queue_depth") == 2


# --- 9. structured logs -------------------------------------------------------------------------


def json_lines(text: str) -> list[dict[str, Any]]:
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
    return out


def test_logs_are_json_lines_with_delivery_and_repository(
    github: Any, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    number = open_service_pr(github)
    payload = for_pull_request(github, SERVICE, number, "opened")
    delivery = str(uuid.uuid4())
    github.fail_next("POST", rf"^/repos/{INFRA}/git/refs$", 502)  # one retry, logged
    with running_app(github, tmp_path, workers=1) as app:
        app.deliver("pull_request", payload, delivery=delivery)
        app.drain()
    lines = [e for e in json_lines(capfd.readouterr().err) if e.get("delivery") == delivery]
    assert lines, "no JSON log line carries the delivery id"
    for entry in lines:
        assert {"time", "level", "logger", "message"} <= set(entry), entry
        assert entry["repository"] == SERVICE, entry
        assert entry["event"] == "pull_request", entry
    messages = [(e["logger"], e["level"], e["message"]) for e in lines]
    assert ("lemi.app", "info", f"delivery {delivery} queued") in messages, messages
    assert any(lg == "lemi.worker" and lvl == "warning" and "GitHubBroken" in m for lg, lvl, m in messages), messages
    assert any(lg == "lemi.worker" and lvl == "info" and m.endswith(" done") for lg, lvl, m in messages), messages


def test_a_stopping_server_writes_the_log_lines_it_still_holds(
    github: Any, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """Lines are written in batches (bot/core/logs.py); the server's stop writes what is left."""
    number = open_service_pr(github)
    payload = for_pull_request(github, SERVICE, number, "opened")
    delivery = str(uuid.uuid4())
    with running_app(github, tmp_path, workers=0) as app:
        (handler,) = logging.getLogger("lemi").handlers
        handler.interval = 3600  # type: ignore[attr-defined]  # from now on only a flush writes
        time.sleep(0.3)  # the start-up lines' own wait (0.1 s) is over
        app.deliver("pull_request", payload, delivery=delivery)
        time.sleep(0.3)
        assert delivery not in capfd.readouterr().err  # held, not one write per line
    lines = [e for e in json_lines(capfd.readouterr().err) if e.get("delivery") == delivery]
    assert [e["message"] for e in lines] == [f"delivery {delivery} queued"]


def test_serve_logs_each_delivery_once_and_keeps_the_access_log_of_everything_else(github: Any, tmp_path: Path) -> None:
    """A delivery answered 2xx has lemi's JSON line, not uvicorn's access line as well; a refused
    delivery and every other request keep their access line."""
    number = open_service_pr(github)
    payload = for_pull_request(github, SERVICE, number, "opened")
    queued, ignored = str(uuid.uuid4()), str(uuid.uuid4())
    server = LemiServe(github, tmp_path, tmp_path / "queue.db", lemi_yml=LEMI_YML, args=("serve", "--intake-only"))
    try:
        server.start()
        assert server.deliver("pull_request", payload, queued).status_code == 202
        assert server.deliver("watch", example("watch", "started"), ignored).status_code == 200
        headers, body = signed("pull_request", payload, "not the secret")
        assert httpx.post(f"{server.url}/webhook", content=body, headers=headers).status_code == 401
        assert httpx.get(f"{server.url}/healthz").status_code == 200
    finally:
        server.stop()
    lines = server.output().splitlines()
    logged = [e for e in json_lines("\n".join(lines)) if e.get("logger") == "lemi.app"]
    assert {(e["delivery"], e["event"], e["message"]) for e in logged} >= {
        (queued, "pull_request", f"delivery {queued} queued"),
        (ignored, "watch", f"delivery {ignored} ignored"),
    }, logged
    access = [e for e in json_lines("\n".join(lines)) if e.get("logger") == "lemi.access"]  # JSON, as the others
    assert [e["status"] for e in access if e["method"] == "POST" and e["path"] == "/webhook"] == [401], access
    assert sum(e["path"] == "/healthz" and e["status"] == 200 for e in access) >= 2  # the harness's look, and ours
    assert all(line.startswith("{") for line in lines if "HTTP/1.1" in line), lines  # no text access line left


def test_logs_of_a_provisioning_job_name_the_service(
    github: Any, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    number = open_service_pr(github)
    payload = for_pull_request(github, SERVICE, number, "opened")
    delivery = str(uuid.uuid4())
    github.fail_next("POST", rf"^/repos/{INFRA}/pulls$", 502)  # a failure worth logging, mid-service
    with running_app(github, tmp_path, workers=1) as app:
        app.deliver("pull_request", payload, delivery=delivery)
        app.drain()
    lines = [e for e in json_lines(capfd.readouterr().err) if e.get("delivery") == delivery]
    assert any(e.get("service") == "demo-service" for e in lines), lines


def test_an_error_at_intake_is_a_500_raised_to_the_server_and_other_methods_are_still_routed(
    github: Any, tmp_path: Path
) -> None:
    """``POST /webhook`` goes straight to its endpoint (not through Starlette's router and error
    middlewares): an exception there is still answered 500 and raised to the server, which logs
    it, and nothing is stored; other methods and paths are routed by Starlette as before."""
    import handlers

    def broken_key(event: str, data: Any, ctx: Any) -> str:
        raise RuntimeError("a bug in job_key")

    app = create_app(
        handlers=bot.server.app.Handlers(
            handlers.accepts, broken_key, handlers.process, handlers.report, handlers.Summary
        ),
        settings=settings_for(github, tmp_path / "queue.db"),
        config=parse_config(LEMI_YML),
        workers=0,
    )
    payload = example("pull_request", "opened", with_installation=True)
    headers, body = signed("pull_request", payload, WEBHOOK_SECRET)
    headers["X-GitHub-Delivery"] = "d-broken"
    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.post("/webhook", content=body, headers=headers)
        assert (response.status_code, response.text) == (500, "Internal Server Error")
        assert client.get("/webhook").status_code == 405
        assert client.post("/webhook/", content=body, headers=headers, follow_redirects=False).status_code == 307
        assert client.get("/healthz").json()["app"] == "ready"
    with TestClient(app) as client, pytest.raises(RuntimeError, match="a bug in job_key"):
        client.post("/webhook", content=body, headers=headers)
    assert db_jobs(tmp_path / "queue.db") == []
