"""preDeploy tasks in the App: a push registers the revision, runs each preDeploy task in order in
it -- each left to the watcher, no worker held -- and only then sends UpdateService. A failed
task stops the deploy before UpdateService; a newer push waits for running migrations, and the
older deploy is then superseded before its UpdateService.

Through POST /webhook with real push payloads, the GitHub fake and moto; rollouts by
tests/ecs_sim.py, tasks by tests/ecs_tasks.py (exit codes driven, never moto's "exit 0").
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aws_world
import ecs_sim
import ecs_tasks
import pytest
from app_harness import RunningApp, running_app
from aws_world import CLUSTER, SERVICE
from fakes.webhooks import ZERO_SHA, for_push

from bot.aws.ecs import revision_of

REPO = "acme/demo-service"
CHECK = "lemi / deploy (staging)"
FILES = {
    **aws_world.SERVICE_FILES,
    "deploy/demo-service/service.yaml": aws_world.SERVICE_YAML
    + '  tasks:\n    migrate: ["bin/migrate", "--apply"]\n    seed: ["bin/seed"]\n  preDeploy: [migrate, seed]\n',
}
pytestmark = pytest.mark.usefixtures("shared_api_models")


def app_for(github: Any, tmp_path: Path, **settings: Any) -> Any:
    # minutes of deploys compressed into seconds: GitHub's one-minute window of content-creating
    # requests would hold the results back (the writer's pacing is tested in test_writer.py)
    return running_app(github, tmp_path, lemi_yml=aws_world.lemi_yml(0), deploy_poll_seconds=0.01,
                       deploy_timeout_seconds=10.0, github_writes_per_minute=400, **settings)  # fmt: skip


def push(app: RunningApp, github: Any, before: str, after: str) -> None:
    response = app.deliver("push", for_push(github, REPO, "develop", before, after), delivery=str(uuid.uuid4()))
    assert response.status_code == 202, response.text


def until(condition: Callable[[], Any], what: str, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def running(sim: ecs_sim.Sim) -> str:
    return revision_of(sim.service(CLUSTER, SERVICE).task_definition)


def run_of(github: Any, sha: str) -> Any:
    (run,) = github.check_runs(REPO, sha=sha, name=CHECK)
    return run


def deployment_of(github: Any, sha: str) -> Any:
    (deployment,) = [d for d in github.deployments(REPO) if d.sha == sha]
    return deployment


def commit(github: Any, world: aws_world.World, files: dict[str, str] = FILES) -> str:
    sha = str(github.commit(REPO, "develop", files))
    aws_world.push_image(world.endpoint, sha)
    return sha


def test_a_push_runs_its_tasks_in_order_without_holding_a_worker_then_updates_the_service(
    github: Any, repos: int, world: aws_world.World, sim: ecs_sim.Sim, tasks: ecs_tasks.TaskSim, tmp_path: Path
) -> None:
    updates_at_run: list[int] = []
    tasks.on_run = lambda run: updates_at_run.append(sim.updates)
    tasks.script("migrate", ecs_tasks.forever())
    sha = commit(github, world)
    with app_for(github, tmp_path) as app:
        push(app, github, ZERO_SHA, sha)
        until(lambda: tasks.named("migrate") and tasks.named("migrate")[0].looks >= 2, "migrate running")
        # the migration runs; no job is queued or running: the watcher carries it
        assert all(j["state"] == "done" for j in app.jobs()), app.jobs()
        assert [w["id"].split(":")[1] for w in app.watches()] == ["predeploy"]
        assert sim.updates == 0
        run = run_of(github, sha)
        assert run.status == "in_progress" and "preDeploy task migrate (1/2)" in run.output["title"]
        tasks.named("migrate")[0].script = ecs_tasks.exits(0, after=0)  # it ends now, exit 0
        app.drain(60.0)
    assert [r.name for r in tasks.runs] == ["migrate", "seed"]
    assert updates_at_run == [0, 0] and sim.updates == 1
    new = running(sim)
    assert new == "demo-service-staging:2" and all(revision_of(r.revision) == new for r in tasks.runs)
    run = run_of(github, sha)
    assert (run.status, run.conclusion) == ("completed", "success")
    summary = run.output["summary"]
    assert "preDeploy tasks:" in summary and "| migrate | ok | 0 |" in summary and "| seed | ok | 0 |" in summary
    assert deployment_of(github, sha).statuses[-1].state == "success"


def test_a_migration_exiting_3_blocks_the_deploy_before_update_service(
    github: Any, repos: int, world: aws_world.World, sim: ecs_sim.Sim, tasks: ecs_tasks.TaskSim, tmp_path: Path
) -> None:
    tasks.script("migrate", ecs_tasks.exits(3, after=2))
    sha = commit(github, world)
    with app_for(github, tmp_path) as app:
        push(app, github, ZERO_SHA, sha)
        app.drain(60.0)
    assert [r.name for r in tasks.runs] == ["migrate"]  # seed never ran
    assert sim.updates == 0 and running(sim) == "demo-service-staging:1"
    run = run_of(github, sha)
    assert (run.status, run.conclusion) == ("completed", "failure")
    assert run.output["title"] == "preDeploy task migrate failed: exited with code 3"
    summary = run.output["summary"]
    assert "**migrate** failed" in summary and "exit code: 3" in summary and "was not updated" in summary
    final = deployment_of(github, sha).statuses[-1]
    assert final.state == "failure" and "migrate" in final.description and "code 3" in final.description


@pytest.mark.parametrize(
    ("script", "reason"),
    [
        (ecs_tasks.never_starts("CannotPullContainerError: not found"), "never started: CannotPullContainerError"),
        (ecs_tasks.stopped_by_someone(after=1, reason="Task stopped by alice"), "stopped by someone else"),
        (ecs_tasks.moto_default(), "never started"),
    ],
)
def test_every_truth_trap_fails_the_deploy_with_its_reason(
    github: Any, repos: int, world: aws_world.World, sim: ecs_sim.Sim, tasks: ecs_tasks.TaskSim, tmp_path: Path,
    script: ecs_tasks.Script, reason: str,
) -> None:  # fmt: skip
    tasks.script("migrate", script)
    sha = commit(github, world)
    with app_for(github, tmp_path) as app:
        push(app, github, ZERO_SHA, sha)
        app.drain(60.0)
    run = run_of(github, sha)
    assert run.conclusion == "failure" and reason in run.output["title"], run.output["title"]
    assert sim.updates == 0


def test_a_newer_push_waits_for_running_migrations_and_the_older_deploy_is_superseded(
    github: Any, repos: int, world: aws_world.World, sim: ecs_sim.Sim, tasks: ecs_tasks.TaskSim, tmp_path: Path
) -> None:
    tasks.script("migrate", ecs_tasks.forever())
    first = commit(github, world)
    second = commit(github, world, {**FILES, "README.md": "second\n"})
    with app_for(github, tmp_path) as app:
        push(app, github, ZERO_SHA, first)
        until(lambda: started(tasks, "migrate"), "the first migration running")
        push(app, github, first, second)
        until(lambda: run_of_or_none(github, second, "queued"), "the second deploy waiting")
        until(lambda: "waiting" in deployment_of(github, second).statuses[-1].description, "the Deployment waiting")
        assert len(tasks.named("migrate")) == 1  # never two migrations at once
        tasks.named("migrate")[0].script = ecs_tasks.exits(0, after=0)
        app.drain(60.0)
    # the first deploy's migration ran to its end; superseded, it ran nothing more; then the second's tasks
    assert [r.name for r in tasks.runs] == ["migrate", "migrate", "seed"]
    second_runs = tasks.runs[1:]
    assert sim.updates == 1  # only the second deploy updated the service
    assert running(sim) == revision_of(second_runs[0].revision)
    old = run_of(github, first)
    assert old.conclusion == "cancelled" and "superseded" in old.output["title"]
    assert deployment_of(github, first).statuses[-1].state == "inactive"
    assert run_of(github, second).conclusion == "success"


def started(tasks: ecs_tasks.TaskSim, name: str) -> bool:
    """The task runs and the watcher has seen it running (a script changed before then would make
    a task that never started)."""
    runs = tasks.named(name)
    return bool(runs) and runs[0].looks >= 1


def run_of_or_none(github: Any, sha: str, status: str) -> Any:
    runs = github.check_runs(REPO, sha=sha, name=CHECK)
    return runs and runs[0].status == status


def test_where_logs_go_to_cloudwatch_a_failed_migration_shows_its_last_lines(
    github: Any, repos: int, world: aws_world.World, sim: ecs_sim.Sim, tasks: ecs_tasks.TaskSim, tmp_path: Path
) -> None:
    from test_app_logs import app_stream, write_lines

    tasks.script("migrate", ecs_tasks.exits(3, after=1))
    tasks.on_run = lambda run: write_lines(
        world, app_stream(run.task.id), "applying 0042_add_index", "ERROR: lock timeout"
    )
    sha = commit(github, world)
    cloudwatch = aws_world.lemi_yml(0).replace("    image_wait_seconds", "    logs: cloudwatch\n    image_wait_seconds")
    with running_app(github, tmp_path, lemi_yml=cloudwatch, deploy_poll_seconds=0.01, deploy_timeout_seconds=10.0,
                     github_writes_per_minute=400) as app:  # fmt: skip
        push(app, github, ZERO_SHA, sha)
        app.drain(60.0)
    summary = run_of(github, sha).output["summary"]
    assert "Last output lines of **migrate**" in summary
    assert summary.index("applying 0042_add_index") < summary.index("ERROR: lock timeout")


def _newer_push_waiting_on_migrations(app: RunningApp, github: Any, tasks: ecs_tasks.TaskSim, first: str,
                                      second: str) -> None:  # fmt: skip
    push(app, github, ZERO_SHA, first)
    until(lambda: started(tasks, "migrate"), "the first migration running")
    push(app, github, first, second)
    until(lambda: run_of_or_none(github, second, "queued"), "the second deploy waiting")
    until(lambda: "waiting" in deployment_of(github, second).statuses[-1].description, "the Deployment waiting")
    tasks.named("migrate")[0].script = ecs_tasks.exits(0, after=0)


def _after_predeploy(app: RunningApp) -> dict[str, Any]:
    (job,) = [j for j in app.jobs() if ":after-predeploy:" in j["dedupe_id"]]
    return job


@pytest.mark.parametrize("failing", ["queuing the waiting deploy", "removing the watch"])
def test_lemi_failing_as_the_migrations_end_loses_no_waiting_deploy(
    github: Any, repos: int, world: aws_world.World, sim: ecs_sim.Sim, tasks: ecs_tasks.TaskSim, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, failing: str,
) -> None:  # fmt: skip
    """The waiting deploy is queued before the watch that holds it is removed: a failure at either
    step (lemi stopping, a store unreachable) is acted on again by the watcher, and the deploy runs."""
    from bot.store import sqlite_queue, watches

    failures: list[str] = []
    real_put, real_take = sqlite_queue.SQLiteQueue.put, watches.SQLiteWatches.take

    async def put(self: Any, job: Any) -> bool:
        if failing == "queuing the waiting deploy" and ":after-predeploy:" in job.dedupe_id and not failures:
            failures.append(job.dedupe_id)
            raise OSError("the queue went away")
        return await real_put(self, job)

    async def take(self: Any, watch: Any, owner: str) -> bytes | None:
        if failing == "removing the watch" and watch.id.startswith("task:predeploy:") and not failures:
            failures.append(watch.id)
            raise OSError("the watch store went away")
        return await real_take(self, watch, owner)

    monkeypatch.setattr(sqlite_queue.SQLiteQueue, "put", put)
    monkeypatch.setattr(watches.SQLiteWatches, "take", take)
    tasks.script("migrate", ecs_tasks.forever())
    first = commit(github, world)
    second = commit(github, world, {**FILES, "README.md": "second\n"})
    # the watcher acts on a failed end again 2 s later; the job's retries, as in production, last longer
    with app_for(github, tmp_path, retry_delays=(0.5, 1.0, 2.0, 4.0)) as app:
        _newer_push_waiting_on_migrations(app, github, tasks, first, second)
        until(lambda: run_of_or_none(github, second, "completed"), "the second deploy's end")
        app.drain(60.0)
    assert failures, f"{failing} never failed: the test tested nothing"
    assert [r.name for r in tasks.runs] == ["migrate", "migrate", "seed"]
    assert sim.updates == 1
    assert run_of(github, first).conclusion == "cancelled"
    assert run_of(github, second).conclusion == "success"


@pytest.mark.parametrize(("wait", "attempts"), [(None, 1), (0.05, 2)], ids=["waits-a-moment", "tried-again"])
def test_the_waiting_deploy_queued_before_the_watch_is_removed_never_parks_on_it_again(
    github: Any, repos: int, world: aws_world.World, sim: ecs_sim.Sim, tasks: ecs_tasks.TaskSim, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, wait: float | None, attempts: int,
) -> None:  # fmt: skip
    """If a worker runs the deploy queued again before the watch is gone, it must not wait on that
    watch's note once more (the note goes with the watch): it waits a moment for the watch to go,
    and past that moment it is tried again (the worker's retries)."""
    from bot.flows import predeploy
    from bot.store import watches as store

    if wait is not None:
        monkeypatch.setattr(predeploy, "CHAIN_END_WAIT", wait)
    real_take = store.SQLiteWatches.take

    async def slow_take(self: Any, watch: Any, owner: str) -> bytes | None:
        if watch.id.startswith("task:predeploy:"):
            await asyncio.sleep(0.3)  # a worker leases the queued deploy meanwhile
        return await real_take(self, watch, owner)

    monkeypatch.setattr(store.SQLiteWatches, "take", slow_take)
    tasks.script("migrate", ecs_tasks.forever())
    first = commit(github, world)
    second = commit(github, world, {**FILES, "README.md": "second\n"})
    with app_for(github, tmp_path, retry_delays=(0.5, 1.0, 2.0)) as app:
        _newer_push_waiting_on_migrations(app, github, tasks, first, second)
        until(lambda: run_of_or_none(github, second, "completed"), "the second deploy's end")
        app.drain(60.0)
        job = _after_predeploy(app)
    assert job["state"] == "done" and job["attempts"] == attempts, job
    assert [r.name for r in tasks.runs] == ["migrate", "migrate", "seed"]
    assert sim.updates == 1
    assert run_of(github, second).conclusion == "success"
