"""Running a task by hand: ``lemi run`` and ``/lemi run``.

The CLI reads the task's command from the checkout's service file, runs it in the service's
running revision and exits with its exit code. The slash command goes through the queue like
restart; its job ends once RunTask is sent and the watcher (bot/flows/task_poll.py) answers when
the task ends -- no worker waits. Tasks follow scripts (tests/ecs_tasks.py), never moto's
"STOPPED, exit code 0": every way a task fails is replied as a failure with its reason.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import aws_world
import ecs_sim
import ecs_tasks
import pytest
from app_harness import running_app, setup_repos
from aws_world import CLUSTER, SERVICE
from checkout import lemi_here, service_checkout
from slash_world import LEMI, REPO, ROLES, Env, reply_head

from bot.store.watches import SQLiteWatches

ENV = "staging"
MIGRATE = ["bin/migrate", "--apply"]
TASKS = """\
  tasks:
    migrate: ["bin/migrate", "--apply"]
    report: ["bin/report"]
"""
WITH_TASKS = aws_world.SERVICE_YAML + TASKS
FILES = {
    "deploy/demo-service/service.yaml": WITH_TASKS,
    "deploy/demo-service/environment/staging.yaml": aws_world.STAGING_YAML,
}


def wait_for(what: Callable[[], Any], timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = what()
        if value:
            return value
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


# ---- lemi run ---------------------------------------------------------------------------------


@pytest.fixture
def checkout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, world: aws_world.World) -> Path:
    return service_checkout(
        tmp_path,
        monkeypatch,
        service_yaml=WITH_TASKS,
        staging_yaml=aws_world.STAGING_YAML,
        lemi_yml=aws_world.LEMI_YML,
        repo=REPO,
    )


def lemi(*argv: str) -> int:
    return lemi_here("run", *argv, "-e", ENV, "--poll", "0.01")


def test_lemi_run_runs_the_task_in_the_running_revision_and_exits_0(
    checkout: Path, world: aws_world.World, tasks: ecs_tasks.TaskSim, capsys: pytest.CaptureFixture[str]
) -> None:
    tasks.script("migrate", ecs_tasks.exits(0, after=2))
    assert lemi("migrate") == 0
    out, err = capsys.readouterr()
    (one,) = tasks.runs
    running = world.ecs().describe_services(cluster=CLUSTER, services=[SERVICE])["services"][0]["taskDefinition"]
    assert one.command == MIGRATE and one.revision == running
    task = one.task.task_arn.rsplit("/", 1)[-1]
    assert "task ran migrate of demo-service in staging (demo-service-staging:1): exit code 0" in out
    assert f"task {task}; output: in Datadog (service:demo-service env:staging)" in out  # lemi.yml's logs: datadog
    assert "RUNNING since" in err and f"started task {task}" in err


def test_lemi_run_exits_with_the_tasks_exit_code(
    checkout: Path, tasks: ecs_tasks.TaskSim, capsys: pytest.CaptureFixture[str]
) -> None:
    tasks.script("migrate", ecs_tasks.exits(3, after=1))
    assert lemi("migrate") == 3
    out = capsys.readouterr().out
    assert "task failed migrate" in out and "exit code 3" in out and "reason: exited with code 3" in out


def test_lemi_run_a_task_that_never_starts_exits_1_with_the_reason(
    checkout: Path, tasks: ecs_tasks.TaskSim, capsys: pytest.CaptureFixture[str]
) -> None:
    tasks.script("migrate", ecs_tasks.never_starts("CannotPullContainerError: manifest unknown"))
    assert lemi("migrate") == 1
    out = capsys.readouterr().out
    assert "no exit code" in out and "reason: never started: CannotPullContainerError: manifest unknown" in out


def test_lemi_run_an_unknown_task_exits_2_with_did_you_mean(
    checkout: Path, tasks: ecs_tasks.TaskSim, capsys: pytest.CaptureFixture[str]
) -> None:
    assert lemi("migrat") == 2
    err = capsys.readouterr().err
    assert "deploy/demo-service/service.yaml has no task 'migrat': did you mean `migrate`?" in err
    assert "tasks in this file: migrate, report" in err
    assert lemi("rm;x") == 2  # not even a task name
    assert tasks.runs == []


def test_lemi_run_json(checkout: Path, tasks: ecs_tasks.TaskSim, capsys: pytest.CaptureFixture[str]) -> None:
    tasks.script("report", ecs_tasks.exits(4, after=1))
    assert lemi("report", "--output", "json") == 4
    out, err = capsys.readouterr()
    result = json.loads(out)
    assert set(result) == {"ok", "task", "service", "environment", "task_arn", "revision", "exit_code", "reason",
                           "duration", "lines", "logs_in_datadog"}  # fmt: skip
    (one,) = tasks.runs
    assert result["ok"] is False and result["exit_code"] == 4 and result["reason"] == "exited with code 4"
    assert (result["task"], result["service"], result["environment"]) == ("report", SERVICE, ENV)
    assert result["task_arn"] == one.task.task_arn and result["revision"] == one.revision
    assert isinstance(result["duration"], float) and err == ""


def test_lemi_run_past_its_bound_is_stopped_and_exits_1(
    checkout: Path, tasks: ecs_tasks.TaskSim, capsys: pytest.CaptureFixture[str]
) -> None:
    tasks.script("migrate", ecs_tasks.forever())
    assert lemi("migrate", "--timeout", "1") == 1
    assert "reason: ran past its bound of 1 s; lemi stopped it" in capsys.readouterr().out
    assert tasks.runs[0].task.last_status == "STOPPED"


# ---- /lemi run --------------------------------------------------------------------------------


@contextmanager
def app_world(
    github: Any, moto_reset: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, aws_calls: list[str],
    lemi_yml: str = LEMI, pr_files: dict[str, str] | None = None, **settings: Any,
) -> Iterator[tuple[Env, ecs_tasks.TaskSim]]:  # fmt: skip
    world = aws_world.build(moto_reset)
    sim = ecs_sim.install(monkeypatch)
    sim_tasks = ecs_tasks.install(monkeypatch)
    setup_repos(github)
    for login, role in ROLES.items():
        github.set_permission(REPO, login, role)
    number = github.open_pull_request(REPO, "feature", files=pr_files or FILES, user="alice")
    settings.setdefault("deploy_poll_seconds", 0.01)
    with running_app(github, tmp_path, lemi_yml=lemi_yml, **settings) as app:
        yield Env(github, app, world, sim, number, aws_calls), sim_tasks


@pytest.fixture
def make(
    github: Any, moto_reset: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, aws_calls: list[str]
) -> Iterator[Callable[..., tuple[Env, ecs_tasks.TaskSim]]]:
    from contextlib import ExitStack

    with ExitStack() as stack:

        def start(**kwargs: Any) -> tuple[Env, ecs_tasks.TaskSim]:
            return stack.enter_context(app_world(github, moto_reset, monkeypatch, tmp_path, aws_calls, **kwargs))

        yield start


def test_a_writer_runs_a_task_and_is_answered_when_it_ends_with_no_worker_held(make: Callable[..., Any]) -> None:
    env, tasks = make()
    tasks.script("migrate", ecs_tasks.forever())
    cid = env.comment("/lemi run migrate", "alice", drain=False)
    (run,) = wait_for(lambda: tasks.runs)
    # the job ended once RunTask was sent: no worker waits while the task runs
    rows = env.app.drain(watches=False)
    assert [r["state"] for r in rows if r["kind"] == "command"] == ["done"]
    (watch,) = env.app.watches()
    assert watch["id"].startswith("task:run:") and watch["key"] == "task:acme/demo-service:demo-service:staging"
    wait_for(lambda: run.looks >= 2)  # the watcher looks at it
    assert env.replies() == [] and env.reactions(cid) == ["eyes"]
    assert run.command == MIGRATE and run.revision.endswith("demo-service-staging:1")

    run.script = ecs_tasks.exits(0, after=0)  # it exits at the next look
    env.app.drain()
    (reply,) = env.replies()
    task = run.task.task_arn.rsplit("/", 1)[-1]
    assert reply.startswith(reply_head("/lemi run migrate", "alice") + " · `demo-service` in `staging`")
    assert "✅ Task `migrate` in `demo-service-staging:1`: **exit code 0** ·" in reply
    assert f"output: in the service's logs, task `{task}`" in reply
    assert env.reactions(cid) == ["eyes", "rocket"]
    assert len(tasks.runs) == 1 and env.app.watches() == []


def test_where_logs_go_to_cloudwatch_the_reply_shows_the_tasks_last_lines(make: Callable[..., Any]) -> None:
    from test_app_logs import app_stream, write_lines

    env, tasks = make(lemi_yml=LEMI.replace("    cluster:", "    logs: cloudwatch\n    cluster:"))
    tasks.script("migrate", ecs_tasks.exits(3, after=1))
    tasks.on_run = lambda run: write_lines(env.world, app_stream(run.task.id), "migrating", "ERROR: duplicate key")
    env.comment("/lemi run migrate", "alice", drain=False)
    env.app.drain()
    (reply,) = env.replies()
    assert "**exit code 3**" in reply and "Failed: exited with code 3" in reply
    assert reply.index("migrating") < reply.index("ERROR: duplicate key")
    assert "output: in the service's logs" not in reply


def test_where_logs_go_to_cloudwatch_lemi_run_prints_the_tasks_last_lines(
    checkout: Path, world: aws_world.World, tasks: ecs_tasks.TaskSim, capsys: pytest.CaptureFixture[str]
) -> None:
    from test_app_logs import CLOUDWATCH_YML, app_stream, write_lines

    (checkout.parent / "lemi.yml").write_text(CLOUDWATCH_YML)
    tasks.on_run = lambda run: write_lines(world, app_stream(run.task.id), "applied 3 migrations")
    assert lemi("migrate") == 0
    out = capsys.readouterr().out
    assert "its last output lines:" in out and "    applied 3 migrations" in out


TRAPS = {
    "exits 3": (ecs_tasks.exits(3, after=1), "**exit code 3**", "Failed: exited with code 3"),
    "PENDING to STOPPED between two looks": (ecs_tasks.quick_exit(2), "**exit code 2**", "Failed: exited with code 2"),
    "never starts": (
        ecs_tasks.never_starts("CannotPullContainerError: manifest unknown"),
        "**no exit code**",
        "Failed: never started: CannotPullContainerError: manifest unknown",
    ),  # fmt: skip
    "moto's STOPPED with exit 0": (ecs_tasks.moto_default(), "**no exit code**", "Failed: never started"),
    "stopped by someone else": (
        ecs_tasks.stopped_by_someone(after=1, reason="Task stopped by @bob"),
        "**exit code 143**",
        "Failed: stopped by someone else: Task stopped by @\u200bbob",
    ),  # fmt: skip
    "runs past its bound": (
        ecs_tasks.forever(),
        "**no exit code**",
        "Failed: ran past its bound of 1 s; lemi stopped it",
    ),
}


@pytest.mark.parametrize("trap", list(TRAPS))
def test_every_truth_trap_is_a_failure_reply_with_its_reason(make: Callable[..., Any], trap: str) -> None:
    script, code, reason = TRAPS[trap]
    env, tasks = make(lemi_yml=LEMI.replace("    image_wait_seconds: 0\n", "    image_wait_seconds: 0\n"
                                                                          "    task_timeout_seconds: 1\n", 1))  # fmt: skip
    tasks.script("migrate", script)
    cid = env.comment("/lemi run migrate", "alice")
    (reply,) = env.replies()
    assert "❌ Task `migrate`" in reply and code in reply and reason in reply, reply
    assert env.reactions(cid) == ["eyes", "confused"]
    assert len(tasks.runs) == 1


def test_a_reader_is_refused_and_nothing_runs(make: Callable[..., Any]) -> None:
    env, tasks = make()
    cid = env.comment("/lemi run migrate", "rita")
    assert (
        "❌ Not done: @rita has `read` permission on acme/demo-service; operating `staging` needs `write`"
        in (env.replies()[-1])
    )
    assert env.reactions(cid) == ["eyes", "confused"]
    assert tasks.runs == [] and env.command_jobs() == [] and env.aws_calls == []


def test_a_protected_environment_needs_maintain_and_runs_the_branchs_command(make: Callable[..., Any]) -> None:
    # the pull request changes migrate; prod runs the command of its branch (main), reviewed and merged
    changed = WITH_TASKS.replace('["bin/migrate", "--apply"]', '["bin/evil"]')
    env, tasks = make(pr_files={**FILES, "deploy/demo-service/service.yaml": changed})
    env.github.commit(REPO, "main", FILES)
    cid = env.comment("/lemi run migrate -e prod", "alice")
    assert "operating the protected environment `prod` needs `maintain` or higher" in env.replies()[-1]
    assert env.reactions(cid) == ["eyes", "confused"] and tasks.runs == []

    cid = env.comment("/lemi run migrate -e prod", "mia")
    assert env.reactions(cid) == ["eyes", "rocket"]
    (run,) = tasks.runs
    assert run.command == MIGRATE
    assert "service files of `main` at" in env.replies()[-1]

    cid = env.comment("/lemi run migrate", "alice")  # staging: the pull request's files
    assert tasks.runs[-1].command == ["bin/evil"] and env.reactions(cid) == ["eyes", "rocket"]


def test_an_unknown_task_or_a_name_with_shell_characters_is_refused_without_any_aws_call(
    make: Callable[..., Any],
) -> None:
    env, tasks = make()
    cid = env.comment("/lemi run migrat", "alice")
    reply = env.replies()[-1]
    assert "has no task 'migrat': did you mean `migrate`? tasks in this file: migrate, report" in reply, reply
    assert env.reactions(cid) == ["eyes", "confused"]
    for body in ("/lemi run migrate;rm", "/lemi run $(id)", "/lemi run `whoami`@everyone", "/lemi run ../x"):
        cid = env.comment(body, "alice")
        assert "is not a valid task name" in env.replies()[-1] and env.reactions(cid) == ["eyes", "confused"]
    assert tasks.runs == [] and env.aws_calls == []
    assert len(env.command_jobs()) == 1  # the unknown name's, answered from the file


async def _no_release(self: SQLiteWatches, owner: str) -> None:
    """A watcher that dies: its watches are not handed over, their lease runs out."""


def test_a_task_watch_resumes_on_a_new_watcher_after_the_lease(
    github: Any, moto_reset: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, aws_calls: list[str]
) -> None:
    with monkeypatch.context() as dying:
        dying.setattr(SQLiteWatches, "release", _no_release)
        with app_world(github, moto_reset, monkeypatch, tmp_path, aws_calls, lease_seconds=1.0) as (env, tasks):
            tasks.script("migrate", ecs_tasks.forever())
            env.comment("/lemi run migrate", "alice", drain=False)
            (run,) = wait_for(lambda: tasks.runs)
            env.app.drain(watches=False)
            wait_for(lambda: run.looks >= 1)
    (watch,) = env.app.watches()
    assert watch["owner"] != "" and env.replies() == []
    run.script = ecs_tasks.exits(7, after=0)
    with running_app(github, tmp_path, lemi_yml=LEMI, deploy_poll_seconds=0.01, lease_seconds=1.0) as app:
        app.drain(timeout=20)
    (reply,) = env.replies()
    assert "**exit code 7**" in reply and "Failed: exited with code 7" in reply
    assert len(tasks.runs) == 1  # watched, never started again


# ---- starting a task watch: a retried job never starts a second task -------------------------


def _job() -> Any:
    from bot.core.command_parser import Command
    from bot.store.jobs import CommandJob, Invocation, Target

    inv = Invocation(REPO, 1, 42, "alice", "b" * 40, Command("run", argument="migrate"), 7, "delivery-1")
    return CommandJob(inv, Target(SERVICE, ENV, "b" * 40))


async def _start(world: aws_world.World, watches: SQLiteWatches, service: dict[str, Any] | None = None) -> Any:
    from bot.aws.clients import AwsClients
    from bot.aws.ecs import Ecs
    from bot.flows.task_watch import ReplyRun, run_watch_id, start_task_watch, task_key

    job = _job()
    async with AwsClients(world.config) as aws:
        ecs = await Ecs.open(aws, ENV)
        described = service or await ecs.describe_service(SERVICE)
        return await start_task_watch(
            watches, lambda: None, ecs, described, described["taskDefinition"], SERVICE, "migrate", MIGRATE,  # type: ignore[arg-type]
            ident=run_watch_id(job), key=task_key(REPO, SERVICE, ENV), then=ReplyRun(job), timeout=60.0, poll=0.5,
            clock=time.time,
        )  # fmt: skip


async def test_a_retried_job_finds_its_task_watch_and_starts_nothing(
    world: aws_world.World, tasks: ecs_tasks.TaskSim, tmp_path: Path
) -> None:
    from bot.flows.task_watch import decode

    watches = SQLiteWatches(tmp_path / "w.db")
    try:
        first = await _start(world, watches)
        again = await _start(world, watches)
        assert len(tasks.runs) == 1 and first.arn == again.arn == tasks.runs[0].task.task_arn
        (stored,) = await watches.claim("w", time.time() + 1, 5.0)
        assert stored.id == "task:run:acme/demo-service:demo-service:staging:42" and stored.group == ENV
        assert decode(stored.body).arn == first.arn and stored.key != "acme/demo-service:demo-service:staging"
    finally:
        await watches.close()


async def test_a_task_lemi_cannot_tell_started_is_answered_as_unknown_not_run_again(
    world: aws_world.World, tasks: ecs_tasks.TaskSim, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bot.aws import tasks as task_runs
    from bot.flows.task_watch import decode

    watches = SQLiteWatches(tmp_path / "w.db")
    original = task_runs.start

    async def dies_after_run_task(*args: Any) -> Any:
        await original(*args)
        raise TimeoutError  # RunTask's answer never came: lemi cannot tell whether ECS started it

    try:
        with monkeypatch.context() as patched, pytest.raises(TimeoutError):
            patched.setattr(task_runs, "start", dies_after_run_task)
            await _start(world, watches)
        (left,) = await watches.claim("w", time.time() + 3600, 5.0)
        assert decode(left.body).arn == "" and left.due > time.time() + 60  # not due before its bound
        await watches.release("w")
        again = await _start(world, watches)  # the retried job
        assert len(tasks.runs) == 1
        assert again.ended is not None and not again.ended.succeeded
        assert "whether it ran is unknown" in again.ended.reason
        (due,) = await watches.claim("w", time.time() + 1, 5.0)  # due at once: the watcher answers now
        assert decode(due.body).ended == again.ended
    finally:
        await watches.close()


async def test_a_task_ecs_cannot_start_leaves_no_watch(
    world: aws_world.World, tasks: ecs_tasks.TaskSim, tmp_path: Path
) -> None:
    from bot.aws.errors import OperationError

    watches = SQLiteWatches(tmp_path / "w.db")
    try:
        broken = {"serviceName": SERVICE, "taskDefinition": "demo-service-staging:1", "launchType": "FARGATE"}
        with pytest.raises(OperationError, match="no network configuration"):
            await _start(world, watches, broken)
        assert await watches.count() == 0 and tasks.runs == []
    finally:
        await watches.close()


def test_a_lock_holds_runs_of_others(make: Callable[..., Any]) -> None:
    env, tasks = make()
    env.comment("/lemi lock", "alice")
    cid = env.comment("/lemi run migrate", "bob")
    assert "❌ Not done: `staging` is locked by @alice" in env.replies()[-1]
    assert env.reactions(cid) == ["eyes", "confused"] and tasks.runs == []
    cid = env.comment("/lemi run migrate", "alice")  # the holder's own run goes
    assert env.reactions(cid) == ["eyes", "rocket"] and len(tasks.runs) == 1


# ---- the watcher's task round -----------------------------------------------------------------


class _Runtime:
    """What poll_tasks uses of the runtime: the watches and the AWS clients."""

    def __init__(self, watches: SQLiteWatches, aws: Any) -> None:
        self.watches = watches
        self._aws = aws

    def aws(self) -> Any:
        return self._aws


async def test_an_unreadable_task_watch_is_dropped_and_a_refused_report_is_tried_again(
    world: aws_world.World, tasks: ecs_tasks.TaskSim, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    from bot.aws.clients import AwsClients
    from bot.flows import task_poll
    from bot.flows.task_watch import decode
    from bot.github.errors import GitHubUnreachable

    watches = SQLiteWatches(tmp_path / "w.db")
    reports: list[str] = []

    async def refused(rt: Any, watch: Any, body: Any) -> None:
        reports.append(body.ended.reason)
        raise GitHubUnreachable("GitHub could not be reached")

    monkeypatch.setattr(task_poll, "finish_task", refused)
    try:
        tasks.script("migrate", ecs_tasks.exits(5, after=1))
        started = await _start(world, watches)
        await watches.add("task:run:garbage", "task:x", ENV, b"{not json", 0.0)
        async with AwsClients(world.config) as aws:
            rt = _Runtime(watches, aws)
            await task_poll.poll_tasks(rt, "w", await watches.claim("w", time.time() + 120, 5.0))  # type: ignore[arg-type]
            running = await watches.get(f"task:run:{REPO}:{SERVICE}:{ENV}:42")
            assert running is not None and decode(running.body).status.startswith("RUNNING since")
            assert reports == []
            for attempt in range(1, task_poll.REPORT_ATTEMPTS + 1):
                claimed = await watches.claim("w", time.time() + 120, 5.0)
                await task_poll.poll_tasks(rt, "w", claimed)  # type: ignore[arg-type]
                left = await watches.get(f"task:run:{REPO}:{SERVICE}:{ENV}:42")
                if attempt == 1:
                    assert await watches.get("task:run:garbage") is None
                    assert "dropping task watch task:run:garbage" in caplog.text
                if attempt < task_poll.REPORT_ATTEMPTS:
                    assert left is not None and decode(left.body).report_attempts == attempt
                else:
                    assert left is None  # given up after REPORT_ATTEMPTS, with an error log
        assert reports == ["exited with code 5"] * task_poll.REPORT_ATTEMPTS
        assert tasks.runs[0].looks == 2 and tasks.runs[0].task.task_arn == started.arn  # judged once, kept
    finally:
        await watches.close()


def test_a_slash_deploy_runs_the_pre_deploy_tasks_first_and_a_failure_is_its_answer(make: Callable[..., Any]) -> None:
    """`/lemi deploy` runs preDeploy tasks as a push does: a migration exiting 3 stops it before
    UpdateService, and the reply says which task failed and why."""
    pr_files = {**FILES, "deploy/demo-service/service.yaml": WITH_TASKS + "  preDeploy: [migrate]\n"}
    env, tasks = make(pr_files=pr_files)
    aws_world.push_image(env.world.endpoint, "v2")
    tasks.script("migrate", ecs_tasks.exits(3, after=1))
    env.comment("/lemi deploy v2", "alice")
    (run,) = tasks.runs
    assert run.name == "migrate" and run.revision.endswith("demo-service-staging:2")  # the revision to deploy
    assert env.sim.updates == 0
    (reply,) = env.replies()
    assert "Deploy failure." in reply and "The preDeploy task **migrate** failed" in reply
    assert "exit code: 3" in reply and "was not updated" in reply
