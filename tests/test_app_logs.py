"""A service's application logs: lemi.yml's ``logs``, bot/aws/logs.py on moto's CloudWatch Logs,
`lemi logs` (recent lines, --since, --follow in a real process stopped with Ctrl-C, the
Datadog message), and the last lines of the stopped tasks in a failed rollout's reports.

The log group ``/ecs/demo-service-staging`` holds the service container's streams
``demo-service/demo-service/<task-id>`` and, beside them, the Datadog agent's
``datadog-agent/datadog-agent/<task-id>``: lemi reads the service's lines only.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import types
from pathlib import Path
from typing import Any

import aws_world
import ecs_sim
import pytest
from aws_world import CLUSTER, SERVICE
from checkout import lemi_here, service_checkout, write

from bot.aws import logs
from bot.aws.clients import AwsClients
from bot.aws.ecs import Ecs, StoppedTask, revision_of
from bot.aws.errors import AwsRefused, OperationError
from bot.aws.rollout import DeployResult, Rollout, RolloutRequest, Wait, deploy
from bot.core.compile import compile_for
from bot.core.config import parse_config
from bot.core.markdown import tail
from bot.core.templating import render
from bot.flows.answers import RolledOut

pytestmark = pytest.mark.usefixtures("shared_api_models")

ENV = "staging"
GROUP = f"/ecs/{SERVICE}-{ENV}"
TASK_A, TASK_B = "a" * 32, "b" * 32
CLOUDWATCH_YML = aws_world.LEMI_YML.replace(
    f"    cluster: {CLUSTER}\n", f"    cluster: {CLUSTER}\n    logs: cloudwatch\n"
)
CLOUDWATCH = parse_config(CLOUDWATCH_YML)
CB_REASON = "Essential container in task exited"


# ---- helpers -------------------------------------------------------------------------------


def now_ms() -> int:
    return int(time.time() * 1000)


def client(world: aws_world.World) -> Any:
    return aws_world.client("logs", world.endpoint)


def write_lines(world: aws_world.World, stream: str, *lines: str, at: int | None = None) -> None:
    """Lines in ``stream`` of the group (created as needed), one millisecond apart, ending at ``at``."""
    logs_client = client(world)
    if not logs_client.describe_log_groups(logGroupNamePrefix=GROUP)["logGroups"]:
        logs_client.create_log_group(logGroupName=GROUP)
    if not logs_client.describe_log_streams(logGroupName=GROUP, logStreamNamePrefix=stream)["logStreams"]:
        logs_client.create_log_stream(logGroupName=GROUP, logStreamName=stream)
    end = at if at is not None else now_ms()
    events = [{"timestamp": end - len(lines) + 1 + i, "message": line} for i, line in enumerate(lines)]
    logs_client.put_log_events(logGroupName=GROUP, logStreamName=stream, logEvents=events)


def app_stream(task: str) -> str:
    return f"{SERVICE}/{SERVICE}/{task}"


@pytest.fixture
def checkout(world: aws_world.World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """acme/demo-service with staging logging to CloudWatch; the CWD for CLI tests."""
    return service_checkout(
        tmp_path,
        monkeypatch,
        service_yaml=aws_world.SERVICE_YAML,
        staging_yaml=aws_world.STAGING_YAML,
        lemi_yml=CLOUDWATCH_YML,
        repo="acme/demo-service",
    )


def lemi(*argv: str) -> int:
    return lemi_here(*argv)


def no_traceback(out: str, err: str) -> None:
    assert "Traceback" not in out + err and "internal error" not in err


# ---- the bound of a report (pure) ----------------------------------------------------------


def test_tail_keeps_the_newest_twenty_lines() -> None:
    assert tail([f"line {i}" for i in range(50)]) == [f"line {i}" for i in range(30, 50)]


def test_tail_keeps_at_most_4_kb() -> None:
    kept = tail(["x" * 1000] * 10)
    assert len(kept) == 4 and len("\n".join(kept).encode()) <= 4096
    (cut,) = tail(["y" * 10_000])
    assert cut.startswith("…") and cut.endswith("y") and len(cut.encode()) <= 4096


def test_tail_makes_each_line_one_plain_line() -> None:
    assert tail(["\x1b[31mred\x1b[0m\x07 done\r\nnext", "ok  "]) == ["red  done  next", "ok"]


# ---- bot/aws/logs.py -----------------------------------------------------------------------


async def test_last_lines_are_the_service_containers_newest_oldest_first(world: aws_world.World) -> None:
    write_lines(world, app_stream(TASK_A), *(f"a{i}" for i in range(30)), at=now_ms() - 1000)
    write_lines(world, app_stream(TASK_B), "b0", "b1")
    write_lines(world, f"datadog-agent/datadog-agent/{TASK_A}", "agent line")
    async with AwsClients(CLOUDWATCH) as aws:
        assert await logs.last_lines(aws, ENV, SERVICE) == [*(f"a{i}" for i in range(12, 30)), "b0", "b1"]
        assert await logs.last_lines(aws, ENV, SERVICE, limit=3) == ["a29", "b0", "b1"]
        assert await logs.last_lines(aws, ENV, SERVICE, task_id=TASK_A, limit=2) == ["a28", "a29"]
        assert await logs.last_lines(aws, ENV, SERVICE, task_id="c" * 32) == []  # a task that wrote nothing
        recent = await logs.recent(aws, ENV, SERVICE, limit=1)
    assert [(line.task_id, line.message) for line in recent] == [(TASK_B, "b1")]


async def test_last_lines_with_since(world: aws_world.World) -> None:
    write_lines(world, app_stream(TASK_A), "two hours ago", at=now_ms() - 2 * 3600 * 1000)
    write_lines(world, app_stream(TASK_A), "a minute ago", at=now_ms() - 60 * 1000)
    async with AwsClients(CLOUDWATCH) as aws:
        assert await logs.last_lines(aws, ENV, SERVICE, since=600) == ["a minute ago"]
        assert await logs.last_lines(aws, ENV, SERVICE, since=3 * 3600) == ["two hours ago", "a minute ago"]
        assert await logs.last_lines(aws, ENV, SERVICE) == ["a minute ago"]  # the last hour
        assert await logs.last_lines(aws, ENV, SERVICE, task_id=TASK_A) == ["two hours ago", "a minute ago"]


async def test_last_lines_where_logs_go_to_datadog_is_nothing(world: aws_world.World) -> None:
    write_lines(world, app_stream(TASK_A), "in cloudwatch anyway")
    calls: list[str] = []
    async with AwsClients(world.config) as aws:  # staging: logs: datadog, the default
        aws.on_call(lambda service, operation: calls.append(operation))
        assert logs.in_datadog(aws, ENV)
        assert await logs.last_lines(aws, ENV, SERVICE) == []
    assert calls == []


async def test_a_missing_log_group_is_a_clear_error(world: aws_world.World) -> None:
    async with AwsClients(CLOUDWATCH) as aws:
        with pytest.raises(OperationError) as info:
            await logs.last_lines(aws, ENV, SERVICE)
    assert f"the log group {GROUP} does not exist in {ENV}" in str(info.value)
    assert info.value.hint


async def test_follow_yields_each_line_once_and_picks_up_new_ones(world: aws_world.World) -> None:
    write_lines(world, app_stream(TASK_A), "first", "second")
    seen: list[str] = []
    async with AwsClients(CLOUDWATCH) as aws:
        lines = logs.follow(aws, ENV, SERVICE, since=60, poll=0.01)
        async for line in lines:
            seen.append(line.message)
            if line.message == "second":
                write_lines(world, app_stream(TASK_B), "third")
            if line.message == "third":
                break
        await lines.aclose()  # type: ignore[attr-defined]
    assert seen == ["first", "second", "third"]


# ---- lemi logs -----------------------------------------------------------------------------


def test_cli_prints_the_recent_lines(
    world: aws_world.World, checkout: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_lines(world, app_stream(TASK_A), "GET /health 200", "POST /pay 500")
    write_lines(world, f"datadog-agent/datadog-agent/{TASK_A}", "agent: started")
    assert lemi("logs", "-e", ENV) == 0
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert [line.split(" ", 2)[1:] for line in lines] == [[TASK_A, "GET /health 200"], [TASK_A, "POST /pay 500"]]
    assert lines[0].split(" ")[0].endswith("Z")  # the time, UTC
    no_traceback(out, err)

    assert lemi("logs", "-s", SERVICE, "-e", ENV, "--output", "json") == 0
    doc = json.loads(capsys.readouterr().out)
    assert (doc["destination"], doc["log_group"]) == ("cloudwatch", GROUP)
    assert [(line["task_id"], line["message"]) for line in doc["lines"]] == [
        (TASK_A, "GET /health 200"), (TASK_A, "POST /pay 500")]  # fmt: skip


def test_cli_since_filters(world: aws_world.World, checkout: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_lines(world, app_stream(TASK_A), "an hour and a half ago", at=now_ms() - 90 * 60 * 1000)
    write_lines(world, app_stream(TASK_A), "five minutes ago", at=now_ms() - 5 * 60 * 1000)
    write_lines(world, app_stream(TASK_A), "just now")
    for since, expected in (("30s", ["just now"]), ("10m", ["five minutes ago", "just now"]),
                            ("2h", ["an hour and a half ago", "five minutes ago", "just now"])):  # fmt: skip
        assert lemi("logs", "-e", ENV, "--since", since) == 0, since
        assert [line.split(" ", 2)[2] for line in capsys.readouterr().out.splitlines()] == expected, since
    assert lemi("logs", "-e", ENV, "--since", "1d", "--task-id", "b" * 32) == 0
    out, err = capsys.readouterr()
    assert out == "" and f"no lines in {GROUP} in the last 1d" in err


@pytest.mark.parametrize("since", ["10", "5x", "-1m", "0s", "1.5h", "m"])
def test_cli_a_bad_since_is_a_usage_error(
    world: aws_world.World, checkout: Path, capsys: pytest.CaptureFixture[str], since: str
) -> None:
    assert lemi("logs", "-e", ENV, "--since", since) == 2
    out, err = capsys.readouterr()
    assert f"Invalid value for '--since': {since!r} is not a duration" in err
    assert "30s, 10m, 2h, 1d" in err
    no_traceback(out, err)


def test_cli_where_logs_go_to_datadog_says_where_to_search(
    world: aws_world.World, checkout: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write(checkout.parent, "lemi.yml", aws_world.LEMI_YML)  # logs: datadog, the default
    assert lemi("logs", "-e", ENV) == 0
    out, err = capsys.readouterr()
    assert f"the logs of {SERVICE} in {ENV} are in Datadog" in out
    assert f"search service:{SERVICE} env:{ENV}" in out
    assert lemi("logs", "-e", ENV, "--output", "json") == 0
    assert json.loads(capsys.readouterr().out) == {
        "service": SERVICE, "environment": ENV, "destination": "datadog",
        "datadog_query": f"service:{SERVICE} env:{ENV}"}  # fmt: skip


def test_cli_a_missing_log_group_is_one_clear_line(
    world: aws_world.World, checkout: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert lemi("logs", "-e", ENV) == 1
    out, err = capsys.readouterr()
    assert f"error: the log group {GROUP} does not exist in {ENV}" in err
    no_traceback(out, err)


def test_cli_follow_prints_a_line_written_after_it_started_and_stops_cleanly_on_ctrl_c(
    world: aws_world.World, checkout: Path
) -> None:
    write_lines(world, app_stream(TASK_A), "before")
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEMI_")}
    argv = [sys.executable, "-c", "import sys; from bot.cli import main; sys.exit(main())",
            "--config", str(checkout.parent / "lemi.yml"), "logs", "-e", ENV, "--follow", "--poll", "0.05"]  # fmt: skip
    process = subprocess.Popen(argv, cwd=checkout, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out: list[str] = []
    try:
        assert process.stdout is not None
        out.append(process.stdout.readline())  # blocks until the first line: bounded by the timeout below
        assert out[0].rstrip().endswith(f"{TASK_A} before"), out
        write_lines(world, app_stream(TASK_B), "after")
        out.append(process.stdout.readline())
        assert out[1].rstrip().endswith(f"{TASK_B} after"), out
        process.send_signal(signal.SIGINT)
        code = process.wait(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    err = process.stderr.read() if process.stderr else ""
    assert code == 0, err
    no_traceback("".join(out), err)


@pytest.fixture(autouse=True)
def _bounded(request: pytest.FixtureRequest) -> Any:
    """No test here may hang: the follow test reads a pipe (SIGALRM interrupts it after 60 s)."""

    def expire(*_: Any) -> None:
        raise TimeoutError("the test took more than 60 s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(60)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


# ---- a failed rollout's report -------------------------------------------------------------


def crash_with_logs(sim: ecs_sim.Sim, world: aws_world.World, lines: list[str], after: int = 2) -> None:
    """The circuit breaker, after each stopped task of the deployment wrote ``lines`` to its stream."""

    def step(self: ecs_sim.Sim, service: Any, d: dict[str, Any]) -> None:
        self._circuit_breaker(service, d)
        for task in self.backend.tasks[service.cluster_name].values():
            if task.started_by == d["id"]:
                write_lines(world, app_stream(task.id), *lines)

    sim._crash = types.MethodType(step, sim)  # type: ignore[attr-defined]
    sim.scenario = ecs_sim.Scenario("crash", after, stop_reason=CB_REASON)


CRASH = [f"boot step {i}" for i in range(25)] + ["Traceback: KeyError 'DATABASE_URL' @admins ``` #12"]


async def test_a_failed_rollout_has_the_stopped_tasks_last_lines(world: aws_world.World, sim: ecs_sim.Sim) -> None:
    aws_world.push_image(world.endpoint, "v2")
    crash_with_logs(sim, world, CRASH)
    td = compile_for(CLOUDWATCH, world.files, ENV, "v2").task_definition
    async with AwsClients(CLOUDWATCH) as aws:
        result = await deploy(await Ecs.open(aws, ENV), RolloutRequest(SERVICE, td), Wait(5.0, 0.01))
    assert result.rollout is not None and not result.ok
    first, second = result.rollout.stopped_tasks
    assert first.lines == CRASH[-20:]  # at most 20 lines in all: the first task's take them
    assert second.lines == []

    summary = render("checks/deploy.md.j2", req=types.SimpleNamespace(service=SERVICE, environment=ENV),
                     conclusion="failure", revision=revision_of(result.task_definition), image="img",
                     rollout=result.rollout, changes="", url="")  # fmt: skip
    assert "Its last log lines (CloudWatch Logs):" in summary
    block = summary.split("Its last log lines (CloudWatch Logs):")[1]
    assert "  ````\n  boot step 6\n" in block  # a fence no backtick run in the lines can close
    assert "  Traceback: KeyError 'DATABASE_URL' @admins ``` #12\n  ````" in block


async def test_reading_the_lines_never_fails_a_report(
    world: aws_world.World, sim: ecs_sim.Sim, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    tasks = [StoppedTask(TASK_A, CB_REASON)]
    async with AwsClients(CLOUDWATCH) as aws:
        assert await logs.stopped_task_lines(aws, ENV, SERVICE, tasks, timeout=1e-9) == tasks  # too slow

        async def refused(*args: Any, **kwargs: Any) -> list[str]:
            raise AwsRefused("AWS refused FilterLogEvents: AccessDeniedException: no", code="AccessDeniedException")

        monkeypatch.setattr(logs, "last_lines", refused)
        assert await logs.stopped_task_lines(aws, ENV, SERVICE, tasks) == tasks
        assert "could not read the last log lines" in caplog.text

        aws_world.push_image(world.endpoint, "v2")
        crash_with_logs(sim, world, ["never read"])
        td = compile_for(CLOUDWATCH, world.files, ENV, "v2").task_definition
        result = await deploy(await Ecs.open(aws, ENV), RolloutRequest(SERVICE, td), Wait(5.0, 0.01))
    assert result.rollout is not None and result.rollout.outcome == "failed"
    assert [t.stopped_reason for t in result.rollout.stopped_tasks] == [CB_REASON] * 2
    assert all(t.lines == [] for t in result.rollout.stopped_tasks)


def test_cli_deploy_failure_shows_the_last_lines(
    world: aws_world.World, sim: ecs_sim.Sim, checkout: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    aws_world.push_image(world.endpoint, "v2")
    crash_with_logs(sim, world, ["starting", "KeyError: 'DATABASE_URL'"])
    assert lemi("deploy", "-e", ENV, "-t", "v2", "--poll", "0.01", "--timeout", "5") == 1
    out, err = capsys.readouterr()
    assert "its last log lines:" in out
    assert "        starting\n        KeyError: 'DATABASE_URL'\n" in out
    no_traceback(out, err)


def test_a_failed_restart_or_rollback_reply_shows_the_last_lines() -> None:
    task = StoppedTask(TASK_A, CB_REASON, [f"{SERVICE}: exit 1"], ["booting", "panic: `x` @oncall"])
    rollout = Rollout("failed", SERVICE, ENV, CLUSTER, f"arn:aws:ecs:r:1:task-definition/{SERVICE}-{ENV}:3", "ecs-svc/1",
                      "ECS deployment circuit breaker: tasks failed to start.", stopped_tasks=[task])  # fmt: skip
    answer = RolledOut(DeployResult(SERVICE, ENV, rollout.task_definition, False, rollout))
    reply = types.SimpleNamespace(answer=answer, files_at=None, heading="/lemi restart", target=None,
                                  inv=types.SimpleNamespace(user="alice"))  # fmt: skip
    body = render("comments/command.md.j2", reply=reply)
    assert f"- `{TASK_A}`: {CB_REASON}\n\n  Its last log lines (CloudWatch Logs):\n\n  ```\n  booting\n" in body
    assert "  panic: `x` @oncall\n  ```\n" in body
