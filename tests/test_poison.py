"""Poison input through the whole App: it becomes a clear error, never a retry storm or a 500.

* a service file YAML cannot build (an impossible date) is a failing ``lemi / spec`` check
  with an annotation on its line, after one attempt of the job;
* webhook JSON nested too deeply is a 400 and nothing is stored;
* a job whose failure cannot be reported (GitHub keeps failing) still ends.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from app_harness import SERVICE_YAML, WEBHOOK_SECRET, running_app, setup_repos
from fakes.webhooks import for_pull_request, signature
from prometheus_client.parser import text_string_to_metric_families

import bot.github.client as github_client
from bot.server.worker import REPORT_ATTEMPTS

SERVICE = "acme/demo-service"
SPEC = "lemi / spec"
SERVICE_FILE = "deploy/demo-service/service.yaml"


def test_an_impossible_date_in_service_yaml_fails_the_spec_check_after_one_attempt(github: Any, tmp_path: Path) -> None:
    setup_repos(github)
    poisoned = SERVICE_YAML.replace("owner: infra\n", "owner: 2024-02-30\n")
    assert poisoned.splitlines()[1] == "owner: 2024-02-30"
    n = github.open_pull_request(SERVICE, "feature/poison", {SERVICE_FILE: poisoned})
    with running_app(github, tmp_path) as app:
        response = app.deliver("pull_request", for_pull_request(github, SERVICE, n, "opened"), delivery="poison-date")
        assert (response.status_code, response.json()) == (202, {"status": "queued"})
        rows = app.drain()
    # done at the first attempt: no retries holding the pull request's queue key
    assert [(r["dedupe_id"], r["state"], r["attempts"]) for r in rows] == [("poison-date", "done", 1)], rows
    (spec,) = github.check_runs(SERVICE, sha=github.pull(SERVICE, n).head_sha, name=SPEC)
    assert (spec.status, spec.conclusion) == ("completed", "failure")
    (annotation,) = spec.annotations
    assert (annotation["path"], annotation["start_line"], annotation["title"]) == (SERVICE_FILE, 2, "owner")
    assert "'2024-02-30' is read by YAML as a date, but it is not a valid one" in annotation["message"]
    assert 'hint: quote it: "2024-02-30"' in annotation["message"]
    assert [c for c in github.comments(SERVICE, n) if c.via_app] == []  # the check says it all


def metric(text: str, name: str, **labels: str) -> float | None:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return None


def deep(levels: int) -> bytes:
    return b"[" * levels + b"]" * levels


DEEP = 100_000
SUMMARY_SHAPED = b'{"action":"opened","repository":{"full_name":"acme/demo-service"},"x":' + deep(DEEP) + b"}"
DEEP_BODIES = {
    # the summary decoder skips the deep field (and recurses while it does)
    "summary": (SUMMARY_SHAPED, "application/json"),
    # a field unlike the summary ("action" is not a string): the whole-document fallback
    "fallback": (b'{"action":1,"x":' + deep(DEEP) + b"}", "application/json"),
    "array": (deep(DEEP), "application/json"),
    "form": (urlencode({"payload": SUMMARY_SHAPED.decode()}).encode(), "application/x-www-form-urlencoded"),
}


@pytest.mark.parametrize("shape", list(DEEP_BODIES))
def test_json_nested_too_deeply_gets_400_and_nothing_is_stored(github: Any, tmp_path: Path, shape: str) -> None:
    body, content_type = DEEP_BODIES[shape]
    headers = {"X-GitHub-Event": "pull_request", "X-GitHub-Delivery": str(uuid.uuid4()),
               "Content-Type": content_type, "X-Hub-Signature-256": signature(WEBHOOK_SECRET, body)}  # fmt: skip
    with running_app(github, tmp_path, workers=0) as app:
        response = app.client.post("/webhook", content=body, headers=headers)
        assert (response.status_code, response.json()) == (400, {"error": "malformed payload: nested too deeply"})
        assert app.jobs() == []
        metrics = app.client.get("/metrics").text
    assert metric(metrics, "lemi_webhook_deliveries_total", event="pull_request", outcome="bad_request") == 1
    assert github.calls == []


def test_a_job_whose_failure_cannot_be_reported_still_ends(
    github: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """GitHub answers 502 to everything about the service repository: the job fails after
    its retries, telling the user fails too, and the job ends unreported (not retried forever)."""
    # the client's own retries of each 502 (tested in test_github_auth.py) are made quick here:
    # this test is about the job's attempts and its report
    monkeypatch.setattr(github_client, "backoff", lambda attempt, base=0.5, cap=8.0: 0.01)
    setup_repos(github, service_files={SERVICE_FILE: SERVICE_YAML})
    n = github.open_pull_request(SERVICE, "feature/unreachable", {SERVICE_FILE: SERVICE_YAML.replace("1024", "2048")})
    payload = for_pull_request(github, SERVICE, n, "opened")
    github.fail_next("*", rf"^/repos/{SERVICE}/", 502, times=10_000)
    retry_delays = (0.05, 0.1, 0.2)
    with running_app(github, tmp_path, retry_delays=retry_delays) as app:
        app.deliver("pull_request", payload, delivery="unreportable")
        rows = app.drain(timeout=30)
        metrics = app.client.get("/metrics").text
    assert [(r["state"], r["attempts"]) for r in rows] == [("failed", len(retry_delays) + 1)], rows
    assert "not reported" in (rows[0]["last_error"] or "")
    assert metric(metrics, "lemi_job_duration_seconds_count", kind="webhook", outcome="unreported") == 1
    assert metric(metrics, "lemi_job_duration_seconds_count", kind="webhook", outcome="failed") is None
    comment_calls = [c for c in github.calls if "/comments" in c.path]
    assert comment_calls and all(c.status == 502 for c in comment_calls)
    assert REPORT_ATTEMPTS <= len(comment_calls)
