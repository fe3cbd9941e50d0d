"""Faults of the outside world while lemi works, end to end.

* a `lemi serve` process SIGKILLed in the middle of a rollout and started again: the
  rollout's watch resumes (it watches the ECS deployment the deploy started, nothing
  updates the service again) and is reported once; two processes on one queue never run
  a job, nor watch a rollout, twice in parallel;
* GitHub slow: webhooks are still answered at once; the work completes later;
* GitHub 5xx and secondary rate limits in the middle of a push deploy;
* AWS ThrottlingException: a few are absorbed by the SDK's (adaptive) retry; a
  persistent one is retried by the queue with backoff, then reported as failed;
* the queue's database cannot be written at accept time: 503 (never a 2xx), and
  GitHub's redelivery of the same delivery, once it can, is accepted and processed.

The real `lemi serve` processes reach moto (in this process, so ecs_sim's patches of
its ECS backend apply) and the GitHub fake over loopback HTTP.
"""

from __future__ import annotations

import json
import resource
import signal
import sqlite3
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import aws_world
import ecs_sim
import httpx
import pytest
from aiobotocore.retries.adaptive import AsyncClientRateLimiter
from app_harness import RunningApp, running_app
from aws_world import CLUSTER, SERVICE
from botocore.retries.standard import ExponentialBackoff
from fakes.github import serving
from fakes.webhooks import ZERO_SHA, example, for_push
from lemi_process import LOOPBACK, db_jobs, wait_until
from lemi_process import Server as LemiServe
from moto.core.exceptions import JsonRESTError
from moto.ecs.models import EC2ContainerServiceBackend

import bot.aws.clients as clients_module
from bot.aws.ecs import revision_of

REPO = "acme/demo-service"
ENV = "staging"
FAMILY = "demo-service-staging"
CHECK = "lemi / deploy (staging)"
URL = "https://demo-service-internal.staging.lemon"
SERVICE_FILES = aws_world.SERVICE_FILES
lemi_yml = aws_world.lemi_yml  # no wait for the image: it is pushed before the commit is
pytestmark = pytest.mark.usefixtures("shared_api_models")


# ---- fixtures --------------------------------------------------------------------------------


@dataclass
class Ecs:
    """Every call moto's ECS backend got (after ecs_sim), and ThrottlingExceptions on demand."""

    calls: Counter[str] = field(default_factory=Counter)
    throttled: Counter[str] = field(default_factory=Counter)
    throttled_at: list[float] = field(default_factory=list)
    throttle: dict[str, int] = field(default_factory=dict)  # operation -> answers left (-1: forever)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def take(self, operation: str) -> bool:
        with self.lock:
            self.calls[operation] += 1
            left = self.throttle.get(operation, 0)
            if left == 0:
                return False
            if left > 0:
                self.throttle[operation] = left - 1
            self.throttled[operation] += 1
            self.throttled_at.append(time.monotonic())
            return True


@pytest.fixture
def ecs(sim: ecs_sim.Sim, monkeypatch: pytest.MonkeyPatch) -> Ecs:
    """Wraps moto's ECS backend (on top of ecs_sim): counts calls, throttles on demand. The
    throttle is raised before ecs_sim's step, so a throttled DescribeServices plays nothing."""
    state = Ecs()
    for operation in ("describe_services", "register_task_definition", "update_service"):
        original = getattr(EC2ContainerServiceBackend, operation)

        def wrapped(self: Any, *args: Any, _op: str = operation, _original: Any = original, **kwargs: Any) -> Any:
            if self is sim.backend and state.take(_op):
                raise JsonRESTError("ThrottlingException", "Rate exceeded")
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(EC2ContainerServiceBackend, operation, wrapped)
    return state


# ---- helpers ---------------------------------------------------------------------------------


def deploy_job(db: Path) -> dict[str, Any] | None:
    return next((j for j in db_jobs(db) if j["kind"] == "deploy"), None)


def db_watches(db: Path) -> list[dict[str, Any]]:
    """The rollouts being watched (bot/store/watches.py), read straight from SQLite."""
    conn = sqlite3.connect(db, timeout=5)
    conn.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in conn.execute("SELECT id, owner, lease_until, replaced_by, note FROM watches")]
    except sqlite3.OperationalError:
        return []
    finally:
        conn.close()


def settled(db: Path) -> bool:
    """The deploy job is done and its rollout reported (no watch left)."""
    return (deploy_job(db) or {}).get("state") == "done" and not db_watches(db)


def states(deployment: Any) -> list[str]:
    return [s.state for s in deployment.statuses]


def primary_of(sim: ecs_sim.Sim) -> dict[str, Any]:
    return next(d for d in sim.service(CLUSTER, SERVICE).deployments if d["status"] == "PRIMARY")


def revisions(world: aws_world.World) -> list[str]:
    arns = world.ecs().list_task_definitions(familyPrefix=FAMILY, status="ACTIVE")["taskDefinitionArns"]
    return sorted((revision_of(a) for a in arns), key=lambda r: int(r.rsplit(":", 1)[1]))


def assert_deployed_once(github: Any, world: aws_world.World, sim: ecs_sim.Sim, ecs: Ecs, sha: str) -> None:
    """One Deployment that ended success exactly once, one successful check run, one
    registration and one UpdateService: nothing of the deploy happened twice."""
    calls = github.describe_calls()
    (deployment,) = github.deployments(REPO)
    assert deployment.sha == sha
    assert states(deployment).count("success") == 1, deployment.statuses
    assert deployment.state == "success", deployment.statuses
    assert deployment.statuses[-1].environment_url == URL
    assert not {"failure", "error", "inactive"} & set(states(deployment)), deployment.statuses
    (run,) = github.check_runs(REPO, sha=sha)
    assert (run.name, run.status, run.conclusion) == (CHECK, "completed", "success"), calls
    assert ecs.calls["update_service"] == 1, ecs.calls
    assert sim.updates == 1
    assert ecs.calls["register_task_definition"] == 1, ecs.calls
    assert revisions(world) == [f"{FAMILY}:1", f"{FAMILY}:2"]
    assert revision_of(sim.service(CLUSTER, SERVICE).task_definition) == f"{FAMILY}:2"
    assert primary_of(sim)["rolloutState"] == "COMPLETED"


class Server(LemiServe):
    """`lemi serve` with these tests' settings: one worker, 1 s leases, quick rollout polling."""

    def __init__(self, github: Any, tmp_path: Path, db: Path, **env: str) -> None:
        quick = {"LEMI_WORKERS": "1", "LEMI_LEASE_SECONDS": "1", "LEMI_DEPLOY_POLL_SECONDS": "0.05",
                 "LEMI_DEPLOY_TIMEOUT_SECONDS": "60"}  # fmt: skip
        super().__init__(github, tmp_path, db, lemi_yml=lemi_yml(), **{**quick, **env})


def kill_all(*servers: Server) -> None:
    for server in servers:
        server.kill()


# ---- 1. SIGKILL in the middle of a rollout ---------------------------------------------------


def kill_mid_rollout(
    github: Any, sim: ecs_sim.Sim, ecs: Ecs, server: Server, sha: str, db: Path
) -> tuple[str, int]:  # fmt: skip
    """Start ``server``, push ``sha`` to develop, SIGKILL the server while lemi watches the
    rollout it started (UpdateService done, the deploy job done and its Deployment and check
    run recorded on the watch, two polls seen, still IN_PROGRESS).
    Returns the ECS deployment id and how many DescribeServices polls it had seen."""
    sim.stuck()  # the rollout stays IN_PROGRESS until the test moves it on
    server.start()
    response = server.deliver("push", for_push(github, REPO, "develop", ZERO_SHA, sha), str(uuid.uuid4()))
    assert (response.status_code, response.json()) == (202, {"status": "queued"})
    wait_until(lambda: ecs.calls["update_service"] == 1, 20, "UpdateService", server.output)
    started = primary_of(sim)["id"]
    wait_until(lambda: (deploy_job(db) or {}).get("state") == "done" and [w for w in db_watches(db) if w["note"]],
               10, "the deploy handed its rollout to the watcher", server.output)  # fmt: skip
    wait_until(lambda: sim.ticks.get(started, 0) >= 2, 10, "rollout polled", server.output)
    server.kill()
    assert server.proc is not None and server.proc.returncode == -signal.SIGKILL
    return started, sim.ticks[started]


def test_sigkill_mid_rollout_then_restart_resumes_and_reports_once(
    github: Any, repos: int, world: aws_world.World, sim: ecs_sim.Sim, ecs: Ecs, tmp_path: Path
) -> None:
    sha = github.commit(REPO, "develop", SERVICE_FILES)
    aws_world.push_image(world.endpoint, sha)
    db = tmp_path / "queue.db"
    first = Server(github, tmp_path, db)
    again = Server(github, tmp_path, db)
    try:
        started, polled_before_kill = kill_mid_rollout(github, sim, ecs, first, sha, db)

        # killed mid-rollout: the Deployment says "rolling out", the check run is in progress;
        # the deploy job is done, its rollout is a watch on disk, held by the killed process
        (deployment,) = github.deployments(REPO)
        assert deployment.state == "in_progress" and "rolling out" in deployment.statuses[-1].description
        (run,) = github.check_runs(REPO, sha=sha)
        assert (run.status, run.conclusion) == ("in_progress", None)
        job = deploy_job(db)
        assert job is not None and (job["state"], job["attempts"]) == ("done", 1), db_jobs(db)
        (watch,) = db_watches(db)
        assert str(first.pid) in watch["owner"], watch
        assert primary_of(sim)["rolloutState"] == "IN_PROGRESS"

        # the rollout goes on without lemi; it completes a few polls after lemi is back
        sim.complete(after=polled_before_kill + 6)
        again.start()
        wait_until(lambda: settled(db), 20, "the resumed watch", again.output)
        time.sleep(0.3)  # nothing else may happen after it
    finally:
        kill_all(first, again)

    rows = db_jobs(db)
    assert [(r["kind"], r["state"], r["attempts"]) for r in rows] == [("webhook", "done", 1), ("deploy", "done", 1)]
    assert "rollout of demo-service ended: completed" in again.output(), again.output()
    # the restarted process watched the deployment the first process started, to the end
    assert primary_of(sim)["id"] == started
    assert sim.ticks[started] >= polled_before_kill + 6
    assert_deployed_once(github, world, sim, ecs, sha)


def test_a_rollout_that_failed_while_lemi_was_down_is_reported_not_rolled_out_again(
    github: Any, repos: int, world: aws_world.World, sim: ecs_sim.Sim, ecs: Ecs, tmp_path: Path
) -> None:
    sha = github.commit(REPO, "develop", SERVICE_FILES)
    aws_world.push_image(world.endpoint, sha)
    db = tmp_path / "queue.db"
    first = Server(github, tmp_path, db)
    again = Server(github, tmp_path, db)
    try:
        started, _ = kill_mid_rollout(github, sim, ecs, first, sha, db)
        # while lemi is down, the circuit breaker fails the rollout and ECS rolls back to revision 1
        sim.circuit_breaker(after=0)
        world.ecs().describe_services(cluster=CLUSTER, services=[SERVICE])
        ours = next(d for d in sim.service(CLUSTER, SERVICE).deployments if d["id"] == started)
        assert (ours["status"], ours["rolloutState"]) == ("ACTIVE", "FAILED")
        assert revision_of(sim.service(CLUSTER, SERVICE).task_definition) == f"{FAMILY}:1"
        again.start()
        wait_until(lambda: settled(db), 20, "the resumed watch", again.output)
        time.sleep(0.3)
    finally:
        kill_all(first, again)
    (deployment,) = github.deployments(REPO)
    (run,) = github.check_runs(REPO, sha=sha)
    assert (run.status, run.conclusion) == ("completed", "failure"), run
    assert deployment.state == "failure" and "circuit breaker" in deployment.statuses[-1].description
    # reported, not rolled out again: the bad revision got one rollout, ECS's rollback stands
    assert (ecs.calls["update_service"], sim.updates) == (1, 1), ecs.calls
    assert revision_of(sim.service(CLUSTER, SERVICE).task_definition) == f"{FAMILY}:1"


def test_two_processes_on_one_queue_never_run_the_deploy_in_parallel(
    github: Any, repos: int, world: aws_world.World, sim: ecs_sim.Sim, ecs: Ecs, tmp_path: Path
) -> None:
    sha = github.commit(REPO, "develop", SERVICE_FILES)
    aws_world.push_image(world.endpoint, sha)
    sim.stuck()
    db = tmp_path / "queue.db"
    one = Server(github, tmp_path, db)
    two = Server(github, tmp_path, db)
    try:
        one.start()
        two.start()
        response = one.deliver("push", for_push(github, REPO, "develop", ZERO_SHA, sha), str(uuid.uuid4()))
        assert response.status_code == 202, response.text
        wait_until(lambda: ecs.calls["update_service"] == 1, 20, "UpdateService", lambda: one.output() + two.output())
        wait_until(lambda: (deploy_job(db) or {}).get("state") == "done" and db_watches(db), 10, "the watch",
                   lambda: one.output() + two.output())  # fmt: skip
        (holder,) = db_watches(db)
        # more than two leases long: the watcher that holds the rollout keeps claiming it, the
        # other process's watcher never takes it over
        deadline = time.monotonic() + 2.5
        while time.monotonic() < deadline:
            (watch,) = db_watches(db)
            assert watch["owner"] == holder["owner"], (holder, watch)
            time.sleep(0.05)
        assert (ecs.calls["update_service"], ecs.calls["register_task_definition"]) == (1, 1), ecs.calls
        assert len(github.calls_to("POST", f"/repos/{REPO}/deployments")) == 1
        sim.complete(after=sim.ticks[primary_of(sim)["id"]] + 2)
        wait_until(lambda: settled(db), 15, "the deploy", one.output)
        time.sleep(0.3)
        assert one.alive() and two.alive()
    finally:
        kill_all(one, two)

    job = deploy_job(db)
    assert job is not None and job["attempts"] == 1, job
    (deployment,) = github.deployments(REPO)
    verifying = [s for s in deployment.statuses if s.description.startswith("verifying")]
    assert len(verifying) == 1, deployment.statuses  # one run of the deploy, one set of statuses
    assert_deployed_once(github, world, sim, ecs, sha)


# ---- 2. GitHub slow, GitHub 5xx and secondary rate limits ------------------------------------


def app_for(github: Any, tmp_path: Path, **kwargs: Any) -> Any:
    kwargs.setdefault("deploy_poll_seconds", 0.01)
    kwargs.setdefault("deploy_timeout_seconds", 10.0)
    return running_app(github, tmp_path, lemi_yml=lemi_yml(), **kwargs)


def timed_delivery(app: RunningApp, event: str, payload: dict[str, Any], delivery: str) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = app.deliver(event, payload, delivery=delivery)
    return response, time.monotonic() - started


def test_webhooks_are_answered_at_once_while_github_is_slow(
    github: Any, repos: int, world: aws_world.World, sim: ecs_sim.Sim, ecs: Ecs, tmp_path: Path
) -> None:
    sha = github.commit(REPO, "develop", SERVICE_FILES)
    aws_world.push_image(world.endpoint, sha)
    stall = 4.0  # seconds GitHub takes to answer the first request lemi sends
    entered, opened = threading.Event(), threading.Event()

    def slow(serve: Any) -> Any:
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            if not opened.is_set():
                entered.set()
                opened.wait(timeout=stall + 5)  # bounded even if the test goes wrong
            return serve(*args, **kwargs)

        return wrapped

    payload = for_push(github, REPO, "develop", ZERO_SHA, sha)
    delivery = str(uuid.uuid4())
    answers: list[tuple[str, int, Any, float]] = []
    try:
        with serving(github, slow), app_for(github, tmp_path, workers=2) as app:
            response, took = timed_delivery(app, "push", payload, delivery)
            answers.append(("push", response.status_code, response.json(), took))
            assert entered.wait(5), "no worker called GitHub"
            stalled_at, served = time.monotonic(), len(github.calls)
            # while a worker waits for GitHub: the same delivery again, another push, a ping
            for name, event, body, guid in (
                ("redelivery", "push", payload, delivery),
                ("feature push", "push", for_push(github, REPO, "feature/x", ZERO_SHA, sha), str(uuid.uuid4())),
                ("ping", "ping", example("ping"), str(uuid.uuid4())),
            ):
                response, took = timed_delivery(app, event, body, guid)
                answers.append((name, response.status_code, response.json(), took))
            assert not opened.is_set(), "GitHub was still answering nothing while they were answered"
            assert len(github.calls) == served, "a GitHub request got through the stall"
            time.sleep(max(0.0, stall - (time.monotonic() - stalled_at)))
            opened.set()
            rows = app.drain(timeout=20)
    finally:
        opened.set()
    assert [(name, status, body) for name, status, body, _ in answers] == [
        ("push", 202, {"status": "queued"}),
        ("redelivery", 202, {"status": "duplicate"}),
        ("feature push", 202, {"status": "queued"}),
        ("ping", 200, {"status": "pong"}),
    ]
    assert all(took < 2.0 for *_, took in answers), answers  # GitHub's limit is 10 s
    assert all(r["state"] == "done" for r in rows), rows
    assert_deployed_once(github, world, sim, ecs, sha)


def test_github_5xx_and_secondary_rate_limits_during_a_push_deploy(
    github: Any, repos: int, world: aws_world.World, sim: ecs_sim.Sim, ecs: Ecs, tmp_path: Path
) -> None:
    sha = github.commit(REPO, "develop", SERVICE_FILES)
    aws_world.push_image(world.endpoint, sha)
    # a read answered 502 (retried by the client), a secondary rate limit on creating the
    # Deployment (waited out in place), and a 502 on the final "success" status, which GitHub
    # did not apply: the watcher reports the rollout's end again
    github.fail_next("GET", r"/contents/deploy/demo-service/service\.yaml$", 502)
    github.secondary_rate_limit("POST", rf"^/repos/{REPO}/deployments$", retry_after=1)
    failed: list[str] = []

    def fail_success_status(serve: Any) -> Any:
        def wrapped(method: str, raw_path: str, query: Any, body: bytes, headers: Any) -> Any:
            if not failed and method.upper() == "POST" and unquote(raw_path).endswith("/statuses"):
                if json.loads(body or b"{}").get("state") == "success":
                    failed.append(unquote(raw_path))
                    return 502, {}, {"message": "Server Error"}
            return serve(method, raw_path, query, body, headers)

        return wrapped

    started = time.monotonic()
    with serving(github, fail_success_status), app_for(github, tmp_path, workers=2) as app:
        response = app.deliver("push", for_push(github, REPO, "develop", ZERO_SHA, sha))
        assert response.status_code == 202, response.text
        rows = app.drain(timeout=20)
    elapsed = time.monotonic() - started
    assert github.faults == [] and len(failed) == 1, (github.faults, failed)
    assert [(r["kind"], r["state"], r["attempts"]) for r in rows] == [("webhook", "done", 1), ("deploy", "done", 1)]
    # the refused "success" status was sent again by the watcher, and applied once (below)
    statuses = [(c.method, c.path.rsplit("/", 1)[-1], c.status) for c in github.calls]
    assert ("POST", "deployments", 403) in statuses and ("POST", "deployments", 201) in statuses
    assert ("GET", "service.yaml", 502) in statuses and ("GET", "service.yaml", 200) in statuses
    assert 1.0 <= elapsed < 15, elapsed  # retry-after: 1 was honoured
    assert_deployed_once(github, world, sim, ecs, sha)


# ---- 3. AWS ThrottlingException ---------------------------------------------------------------


def test_a_few_aws_throttles_are_absorbed_by_the_sdk_retry(
    github: Any, repos: int, world: aws_world.World, sim: ecs_sim.Sim, ecs: Ecs, tmp_path: Path
) -> None:
    sha = github.commit(REPO, "develop", SERVICE_FILES)
    aws_world.push_image(world.endpoint, sha)
    ecs.throttle.update(describe_services=2, register_task_definition=2)
    with app_for(github, tmp_path, workers=2) as app:
        response = app.deliver("push", for_push(github, REPO, "develop", ZERO_SHA, sha))
        assert response.status_code == 202, response.text
        rows = app.drain(timeout=20)
    assert ecs.throttled == {"describe_services": 2, "register_task_definition": 2}
    assert ecs.calls["register_task_definition"] == 3  # two throttled, then registered
    # botocore's standard retry mode absorbed them: the job ran once
    assert [(r["kind"], r["state"], r["attempts"]) for r in rows] == [("webhook", "done", 1), ("deploy", "done", 1)]
    (deployment,) = github.deployments(REPO)
    assert states(deployment) == ["in_progress", "in_progress", "success"], deployment.statuses
    (run,) = github.check_runs(REPO, sha=sha)
    assert run.conclusion == "success"
    assert sim.updates == 1 and ecs.calls["update_service"] == 1
    assert revisions(world) == [f"{FAMILY}:1", f"{FAMILY}:2"]


def test_a_persistent_aws_throttle_is_retried_by_the_queue_then_reported(
    github: Any, repos: int, world: aws_world.World, sim: ecs_sim.Sim, ecs: Ecs, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    sha = github.commit(REPO, "develop", SERVICE_FILES)
    aws_world.push_image(world.endpoint, sha)
    ecs.throttle["describe_services"] = -1
    # speed only: botocore's jitter between its own 5 attempts (up to 1+2+4+8 s) made short;
    # the attempts themselves and lemi's queue delays are unchanged
    monkeypatch.setattr(ExponentialBackoff, "delay_amount", lambda self, context: 0.01)
    # and the adaptive mode's client-side rate, which slows the calls down under throttling, made
    # instant (the calls and their number are unchanged)
    monkeypatch.setattr(AsyncClientRateLimiter, "on_sending_request", _no_wait)
    retry_delays = (0.3, 0.6)
    with app_for(github, tmp_path, workers=2, retry_delays=retry_delays) as app:
        response = app.deliver("push", for_push(github, REPO, "develop", ZERO_SHA, sha))
        assert response.status_code == 202, response.text
        rows = app.drain(timeout=20)
    attempts = len(retry_delays) + 1
    (job,) = [r for r in rows if r["kind"] == "deploy"]
    assert (job["state"], job["attempts"]) == ("failed", attempts), rows
    assert "ThrottlingException" in (job["last_error"] or ""), job
    # per job attempt, the SDK's bounded retries (botocore's max_attempts counts the retries:
    # 1 + 8 calls; it rewrites the config to total_max_attempts once a client is made);
    # between job attempts, the queue's delays
    retries = clients_module.CLIENT_CONFIG.retries
    per_job = retries.get("total_max_attempts") or 1 + retries["max_attempts"]
    assert per_job == 9, retries
    assert ecs.throttled["describe_services"] == per_job * attempts, ecs.throttled
    gaps = [b - a for a, b in zip(ecs.throttled_at, ecs.throttled_at[1:], strict=False)]
    between_jobs = [gaps[per_job * n - 1] for n in range(1, attempts)]
    assert all(gap >= delay * 0.9 for gap, delay in zip(between_jobs, retry_delays, strict=False)), between_jobs
    # reported, not dropped: the Deployment and the check run say lemi gave up, and why
    (deployment,) = github.deployments(REPO)
    assert deployment.state in ("error", "failure"), deployment.statuses
    assert "ThrottlingException" in deployment.statuses[-1].description
    assert "success" not in states(deployment)
    (run,) = github.check_runs(REPO, sha=sha)
    assert (run.status, run.conclusion) == ("completed", "failure")
    assert "ThrottlingException" in run.output["summary"]
    assert sim.updates == 0 and ecs.calls["update_service"] == 0
    assert revisions(world) == [f"{FAMILY}:1"]


async def _no_wait(self: Any, request: Any, **kwargs: Any) -> None:
    return None


# ---- 4. the queue cannot store the delivery --------------------------------------------------


def metric_line(text: str, *parts: str) -> str | None:
    return next((line for line in text.splitlines() if all(p in line for p in parts)), None)


def test_an_unwritable_queue_at_accept_time_gets_503_and_the_redelivery_is_processed(
    github: Any, repos: int, world: aws_world.World, sim: ecs_sim.Sim, ecs: Ecs, tmp_path: Path
) -> None:
    """The queue's disk refuses writes after start (a file-size limit of 0 on the server
    process: every write to a regular file fails with EFBIG, as on a full disk), then
    accepts them again; GitHub redelivers the same delivery."""
    sha = github.commit(REPO, "develop", SERVICE_FILES)
    aws_world.push_image(world.endpoint, sha)
    db = tmp_path / "queue.db"
    server = Server(github, tmp_path, db)
    payload = for_push(github, REPO, "develop", ZERO_SHA, sha)
    delivery = str(uuid.uuid4())
    try:
        server.start()
        limits = resource.prlimit(server.pid, resource.RLIMIT_FSIZE)
        resource.prlimit(server.pid, resource.RLIMIT_FSIZE, (0, limits[1]))
        try:
            started = time.monotonic()
            refused = server.deliver("push", payload, delivery)
            took = time.monotonic() - started
            metrics = LOOPBACK.get(f"{server.url}/metrics").text
            time.sleep(0.6)  # a worker poll: nothing to do
            assert db_jobs(db) == [], db_jobs(db)
        finally:
            resource.prlimit(server.pid, resource.RLIMIT_FSIZE, limits)
        assert refused.status_code == 503, (refused.status_code, refused.text, server.output())
        assert "redeliver" in refused.json()["error"]
        assert took < 5.0, took  # answered at once, well inside GitHub's 10 s (not a speed assertion)
        assert metric_line(metrics, "lemi_webhook_deliveries_total", 'outcome="store_failed"', " 1.0"), metrics
        # no GitHub work for a delivery that was not stored
        assert not [c for c in github.calls if c.path.startswith(("/repos/", "/app/installations"))], (
            github.describe_calls())  # fmt: skip
        # the disk is back: GitHub's redelivery (same X-GitHub-Delivery) is stored and processed
        again = server.deliver("push", payload, delivery)
        assert (again.status_code, again.json()) == (202, {"status": "queued"}), again.text
        wait_until(lambda: settled(db), 20, "the deploy", server.output)
        assert server.alive()
    finally:
        server.kill()
    rows = db_jobs(db)
    assert [(r["dedupe_id"], r["state"], r["attempts"]) for r in rows][0] == (delivery, "done", 1), rows
    assert_deployed_once(github, world, sim, ecs, sha)
