"""Operating a running service on moto: status, tasks, stop-task, diff, prune, exec,
operating errors, and the README's deployer IAM policy checked against every AWS call.

Each behaviour is checked through the CLI (bot.cli.main in a git checkout of
acme/demo-service) and, where the core has more to say, through bot.aws.operate.

moto is made to behave like ECS where lemi relies on ECS behaviour moto lacks
(fixture ``ecs_like``): ListTasks filters by serviceName, a task stays RUNNING
until it is stopped (moto moves it towards STOPPED on every DescribeTasks), and
a service created with enableExecuteCommand says so in DescribeServices.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import sys
from collections.abc import Iterator
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

import aws_world
import ecs_sim
import ecs_tasks
import pytest
from aiobotocore.session import AioSession
from aiobotocore.session import get_session as aio_get_session
from aws_world import CLUSTER, SERVICE
from botocore.loaders import create_loader
from checkout import make_checkout, write
from moto.ecs.models import EC2ContainerServiceBackend
from moto.moto_api import state_manager

import bot.aws.clients as clients_module
from bot.aws import logs as app_logs
from bot.aws import operate, schedules
from bot.aws import tasks as task_runs
from bot.aws.clients import AwsClients
from bot.aws.ecs import Ecs, revision_of
from bot.aws.env_checks import environment_checks
from bot.aws.exec import PLUGIN, open_session
from bot.aws.rollout import RolloutRequest, Wait, deploy
from bot.aws.verify import verify_provisioned
from bot.cli import main
from bot.core.compile import compile_for
from bot.core.config import parse_config
from bot.core.conventions import scheduler_role_arn
from bot.core.schedules import ScheduledTask

ENV = "staging"
FAMILY = "demo-service-staging"
POLL = "0.01"
TIMEOUT = 5.0  # never reached by a scenario that ends; keeps a broken test from hanging
WAIT = Wait(TIMEOUT, float(POLL))
OTHER = "other"
README = Path(__file__).parent.parent / "README.md"


# ---- fixtures and helpers ----------------------------------------------------------------


@pytest.fixture
def ecs_like(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """moto's ECS, corrected where it differs from ECS in ways lemi depends on."""
    original_list = EC2ContainerServiceBackend.list_tasks

    def list_tasks(self: EC2ContainerServiceBackend, cluster_str: Any = None, container_instance: Any = None,
                   family: Any = None, started_by: Any = None, service_name: Any = None,
                   desiredStatus: Any = None) -> Any:  # fmt: skip
        tasks = original_list(self, cluster_str, container_instance, family, started_by, service_name, desiredStatus)
        if service_name:  # moto ignores serviceName ("TODO" in moto); ECS lists that service's tasks only
            tasks = [t for t in tasks if t.group == f"service:{service_name.rsplit('/', 1)[-1]}"]
        return tasks

    monkeypatch.setattr(EC2ContainerServiceBackend, "list_tasks", list_tasks)
    # moto advances a task RUNNING -> DEACTIVATING -> ... -> STOPPED one step per DescribeTasks
    state_manager.set_transition(model_name="ecs::task", transition={"progression": "manual", "times": 10**9})
    try:
        yield
    finally:
        state_manager.unset_transition(model_name="ecs::task")


_LOADER = create_loader()


@pytest.fixture(autouse=True)
def shared_botocore_models(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every lemi session reads AWS's service models through one loader: parsed once, not per command (speed)."""

    def get_session() -> AioSession:
        session = aio_get_session()
        session.register_component("data_loader", _LOADER)
        return session

    monkeypatch.setattr(clients_module, "get_session", get_session)


@pytest.fixture
def world(moto_reset: str, ecs_like: None) -> aws_world.World:
    return aws_world.build(moto_reset)


def enable_exec(sim: ecs_sim.Sim, name: str = SERVICE) -> None:
    """What build(exec_enabled=True) means on ECS: moto drops enableExecuteCommand, so set it on its model."""
    sim.service(CLUSTER, name).enable_execute_command = True


@pytest.fixture
def checkout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A git checkout of acme/demo-service with its deploy files; the CWD for CLI tests."""
    monkeypatch.delenv("LEMI_CONFIG", raising=False)
    monkeypatch.delenv("LEMI_DEBUG", raising=False)
    monkeypatch.setenv("COLUMNS", "200")  # a wide terminal: tables unabridged (see the 120-column test)
    root = make_checkout(tmp_path / "demo-service", "acme/demo-service")
    write(root, "deploy/demo-service/service.yaml", aws_world.SERVICE_YAML)
    write(root, "deploy/demo-service/environment/staging.yaml", aws_world.STAGING_YAML)
    write(tmp_path, "lemi.yml", aws_world.LEMI_YML)
    monkeypatch.chdir(root)
    return root


def lemi(*argv: str) -> int:
    """``lemi --config <lemi.yml> ARGV`` in the checkout (the CWD)."""
    return main(["--config", str(Path.cwd().parent / "lemi.yml"), *argv])


def compiled(world: aws_world.World, tag: str) -> Any:
    return compile_for(world.config, world.files, ENV, tag)


def described(world: aws_world.World, name: str = SERVICE) -> dict[str, Any]:
    return world.ecs().describe_services(cluster=CLUSTER, services=[name])["services"][0]


def revisions(world: aws_world.World, status: str = "ACTIVE") -> list[str]:
    arns = world.ecs().list_task_definitions(familyPrefix=FAMILY, status=status)["taskDefinitionArns"]
    return sorted((revision_of(a) for a in arns), key=lambda r: int(r.rsplit(":", 1)[1]))


def cli_deploy(world: aws_world.World, sim: ecs_sim.Sim, tag: str) -> None:
    aws_world.push_image(world.endpoint, tag)
    sim.complete(after=1)
    assert lemi("deploy", "-e", ENV, "-t", tag, "--poll", POLL, "--timeout", "5", "--output", "json") == 0


def run_tasks(sim: ecs_sim.Sim, count: int, name: str = SERVICE) -> list[Any]:
    """``count`` RUNNING tasks of the service's PRIMARY deployment, as ECS would start them."""
    service = sim.service(CLUSTER, name)
    return sim.add_tasks(service, service.deployments[0], count)


def other_service(world: aws_world.World, sim: ecs_sim.Sim, tasks: int = 1) -> list[Any]:
    """A second ECS service in the same cluster, with its own running tasks."""
    ecs = world.ecs()
    arn = ecs.register_task_definition(
        family=f"{OTHER}-staging", networkMode="awsvpc", requiresCompatibilities=["FARGATE"], cpu="256",
        memory="512", containerDefinitions=[{"name": OTHER, "image": "nginx:1", "essential": True}],
    )["taskDefinition"]["taskDefinitionArn"]  # fmt: skip
    ecs.create_service(cluster=CLUSTER, serviceName=OTHER, taskDefinition=arn, desiredCount=tasks, launchType="FARGATE")
    return run_tasks(sim, tasks, OTHER)


def task_ids(tasks: list[Any]) -> set[str]:
    return {t.id for t in tasks}


def described_task(world: aws_world.World, task_id: str) -> dict[str, Any]:
    return world.ecs().describe_tasks(cluster=CLUSTER, tasks=[task_id])["tasks"][0]


def no_traceback(out: str, err: str) -> None:
    assert "Traceback" not in out + err
    assert "lemi: internal error" not in err and "bug in lemi" not in err


# ---- 1. status ---------------------------------------------------------------------------


def test_cli_status_text_of_a_fresh_service(
    world: aws_world.World, sim: ecs_sim.Sim, checkout: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sim.event(sim.service(CLUSTER, SERVICE), "(service demo-service) was unable to place a task.")
    assert lemi("service", "status", "-e", ENV) == 0
    out, err = capsys.readouterr()
    no_traceback(out, err)
    deployment = described(world)["deployments"][0]
    assert f"{SERVICE} in {ENV} ({CLUSTER}): ACTIVE, running 0/2, pending 2; {FAMILY}:1, image tag v1" in out
    # the deployments table: a header row and the one deployment, with its rollout state
    header = next(line for line in out.splitlines() if "deployment" in line and "rollout" in line)
    for column in ("status", "revision", "running", "pending", "failed", "created"):
        assert column in header
    row = next(line for line in out.splitlines() if deployment["id"] in line)
    assert "PRIMARY" in row and "IN_PROGRESS" in row and f"{FAMILY}:1" in row and "0/2" in row
    assert "recent events:" in out and "was unable to place a task." in out


def test_cli_status_after_a_deploy_shows_the_new_revision_and_tag(
    world: aws_world.World, sim: ecs_sim.Sim, checkout: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cli_deploy(world, sim, "v2")
    capsys.readouterr()
    assert lemi("service", "status", "-e", ENV) == 0
    out, err = capsys.readouterr()
    no_traceback(out, err)
    assert f"running 2/2, pending 0; {FAMILY}:2, image tag v2" in out
    deployment = described(world)["deployments"][0]
    row = next(line for line in out.splitlines() if deployment["id"] in line)
    assert "PRIMARY" in row and "COMPLETED" in row and f"{FAMILY}:2" in row and "2/2" in row
    assert "has reached a steady state." in out

    assert lemi("service", "status", "-e", ENV, "--output", "json") == 0
    out, _ = capsys.readouterr()
    data = json.loads(out)
    assert data["service"] == SERVICE and data["environment"] == ENV and data["cluster"] == CLUSTER
    assert (data["status"], data["desired"], data["running"], data["pending"]) == ("ACTIVE", 2, 2, 0)
    assert data["revision"] == f"{FAMILY}:2"
    assert data["image"] == f"{aws_world.ACCOUNT}.dkr.ecr.{aws_world.REGION}.amazonaws.com/{SERVICE}:v2"
    assert data["image_tag"] == "v2"
    assert len(data["deployments"]) == 1
    d = data["deployments"][0]
    assert d["id"] == deployment["id"] and d["status"] == "PRIMARY" and d["rollout_state"] == "COMPLETED"
    assert (d["revision"], d["desired"], d["running"], d["pending"], d["failed"]) == (f"{FAMILY}:2", 2, 2, 0, 0)
    assert d["created"]
    assert any("has reached a steady state." in e for e in data["events"])
    assert len(data["events"]) <= 10


def test_cli_status_shows_the_ten_most_recent_events(
    world: aws_world.World, sim: ecs_sim.Sim, checkout: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    service = sim.service(CLUSTER, SERVICE)
    for n in range(15):
        sim.event(service, f"event number {n}.")
    assert lemi("service", "status", "-e", ENV, "--output", "json") == 0
    events = json.loads(capsys.readouterr().out)["events"]
    assert [e.split(" ", 1)[1] for e in events] == [f"event number {n}." for n in range(14, 4, -1)]


def test_cli_status_during_a_rollout_lists_both_deployments(
    world: aws_world.World, sim: ecs_sim.Sim, checkout: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    aws_world.push_image(world.endpoint, "v2")
    sim.stuck()
    assert lemi("deploy", "-e", ENV, "-t", "v2", "--no-wait") == 0
    capsys.readouterr()
    assert lemi("service", "status", "-e", ENV, "--output", "json") == 0
    data = json.loads(capsys.readouterr().out)
    states = {(d["status"], d["rollout_state"], d["revision"]) for d in data["deployments"]}
    assert ("PRIMARY", "IN_PROGRESS", f"{FAMILY}:2") in states
    assert any(status == "ACTIVE" and revision == f"{FAMILY}:1" for status, _, revision in states)
    assert data["revision"] == f"{FAMILY}:2" and data["image_tag"] == "v2"


# ---- 2. list-tasks -----------------------------------------------------------------------


def test_cli_list_tasks_shows_the_service_tasks_only(
    world: aws_world.World, sim: ecs_sim.Sim, checkout: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    mine = run_tasks(sim, 2)
    others = other_service(world, sim, tasks=2)
    assert lemi("service", "list-tasks", "-e", ENV) == 0
    out, err = capsys.readouterr()
    no_traceback(out, err)
    header = next(line for line in out.splitlines() if "task" in line and "revision" in line)
    for column in ("status", "desired", "health", "started", "stopped reason"):
        assert column in header
    for task_id in task_ids(mine):
        row = next(line for line in out.splitlines() if task_id in line)
        assert "RUNNING" in row and f"{FAMILY}:1" in row
    for task_id in task_ids(others):
        assert task_id not in out

    assert lemi("service", "list-tasks", "-e", ENV, "--output", "json") == 0
    data = json.loads(capsys.readouterr().out)
    assert data["service"] == SERVICE and data["environment"] == ENV
    assert {t["task_id"] for t in data["tasks"]} == task_ids(mine)
    for t in data["tasks"]:
        assert (t["last_status"], t["desired_status"], t["revision"]) == ("RUNNING", "RUNNING", f"{FAMILY}:1")
        assert t["stopped_reason"] == ""


def test_cli_list_tasks_stopped_shows_the_stop_reason(
    world: aws_world.World, sim: ecs_sim.Sim, checkout: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    running, gone = run_tasks(sim, 2)
    other_gone = other_service(world, sim)[0]
    ecs = world.ecs()
    ecs.stop_task(cluster=CLUSTER, task=gone.task_arn, reason="Essential container in task exited")
    ecs.stop_task(cluster=CLUSTER, task=other_gone.task_arn, reason="other service's task")

    assert lemi("service", "list-tasks", "-e", ENV, "--stopped") == 0
    out, err = capsys.readouterr()
    no_traceback(out, err)
    row = next(line for line in out.splitlines() if gone.id in line)
    assert "STOPPED" in row and "Essential container in task exited" in row
    assert running.id not in out and other_gone.id not in out

    assert lemi("service", "list-tasks", "-e", ENV, "--stopped", "--output", "json") == 0
    data = json.loads(capsys.readouterr().out)
    assert [(t["task_id"], t["desired_status"], t["stopped_reason"]) for t in data["tasks"]] == [
        (gone.id, "STOPPED", "Essential container in task exited")
    ]

    assert lemi("service", "list-tasks", "-e", ENV, "--output", "json") == 0
    assert [t["task_id"] for t in json.loads(capsys.readouterr().out)["tasks"]] == [running.id]


def test_cli_list_tasks_of_a_service_without_tasks(
    world: aws_world.World, sim: ecs_sim.Sim, checkout: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other_service(world, sim)
    assert lemi("service", "list-tasks", "-e", ENV) == 0
    out, err = capsys.readouterr()
    assert f"{SERVICE} has no tasks to show in {ENV}" in out
    no_traceback(out, err)
    assert lemi("service", "list-tasks", "-e", ENV, "--output", "json") == 0
    assert json.loads(capsys.readouterr().out)["tasks"] == []


def test_cli_tables_show_ids_in_full_on_a_120_column_terminal(
    world: aws_world.World, sim: ecs_sim.Sim, checkout: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    monkeypatch.setenv("COLUMNS", "120")
    mine = run_tasks(sim, 2)
    assert lemi("service", "list-tasks", "-e", ENV) == 0
    out = capsys.readouterr().out
    assert all(task_id in out for task_id in task_ids(mine)), out
    assert lemi("service", "status", "-e", ENV) == 0
    out = capsys.readouterr().out
    assert described(world)["deployments"][0]["id"] in out, out
    assert out.count(f"{FAMILY}:1") == 2, out  # the summary line and the deployment's row


async def test_list_tasks_describes_more_than_100_tasks_in_batches(world: aws_world.World, sim: ecs_sim.Sim) -> None:
    mine = run_tasks(sim, 105)
    async with AwsClients(world.config) as aws:
        tasks = await operate.list_tasks(aws, ENV, SERVICE)
    assert {t.task_id for t in tasks} == task_ids(mine)


# ---- 3. stop-task ------------------------------------------------------------------------


def test_cli_stop_task_stops_a_task_of_the_service(
    world: aws_world.World, sim: ecs_sim.Sim, checkout: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target, spared = run_tasks(sim, 2)
    code = lemi("service", "stop-task", "-e", ENV, "--task-id", target.id, "--reason", "stuck on a lock")
    out, err = capsys.readouterr()
    assert code == 0, err
    assert f"stopped task {target.id} of {SERVICE} in {ENV}; ECS will start a replacement" in out
    no_traceback(out, err)
    task = described_task(world, target.id)
    assert task["desiredStatus"] == "STOPPED" and task["lastStatus"] == "STOPPED"
    assert task["stoppedReason"] == "stuck on a lock"
    assert described_task(world, spared.id)["desiredStatus"] == "RUNNING"


def test_cli_stop_task_by_arn_with_the_default_reason_as_json(
    world: aws_world.World, sim: ecs_sim.Sim, checkout: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (target,) = run_tasks(sim, 1)
    assert lemi("service", "stop-task", "-e", ENV, "--task-id", target.task_arn, "--output", "json") == 0
    data = json.loads(capsys.readouterr().out)
    assert data["task_id"] == target.id and data["desired_status"] == "STOPPED"
    assert data["stopped_reason"] == "stopped with lemi"
    assert described_task(world, target.id)["stoppedReason"] == "stopped with lemi"


def test_cli_stop_task_refuses_a_task_of_another_service(
    world: aws_world.World, sim: ecs_sim.Sim, checkout: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_tasks(sim, 1)
    (foreign,) = other_service(world, sim)
    code = lemi("service", "stop-task", "-e", ENV, "--task-id", foreign.id)
    out, err = capsys.readouterr()
    assert code == 1
    assert f"task {foreign.id} does not belong to service {SERVICE}" in err
    assert "hint:" in err and "list-tasks" in err
    no_traceback(out, err)
    task = described_task(world, foreign.id)
    assert task["desiredStatus"] == "RUNNING" and task["lastStatus"] == "RUNNING" and not task["stoppedReason"]


def test_cli_stop_task_of_an_unknown_task_is_a_clear_error(
    world: aws_world.World, sim: ecs_sim.Sim, checkout: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (task,) = run_tasks(sim, 1)
    unknown = "0123456789abcdef0123456789abcdef"
    code = lemi("service", "stop-task", "-e", ENV, "--task-id", unknown)
    out, err = capsys.readouterr()
    assert code == 1
    assert f"there is no task {unknown} in cluster {CLUSTER} ({ENV})" in err
    assert "lemi service list-tasks" in err
    no_traceback(out, err)
    assert described_task(world, task.id)["desiredStatus"] == "RUNNING"


# ---- 4. diff -----------------------------------------------------------------------------


def test_cli_diff_right_after_a_deploy_of_the_same_tag_is_no_difference(
    world: aws_world.World, sim: ecs_sim.Sim, checkout: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cli_deploy(world, sim, "v2")
    capsys.readouterr()
    assert lemi("diff", "-e", ENV, "-t", "v2") == 0
    out, err = capsys.readouterr()
    assert f"no difference: {SERVICE} in {ENV} runs {FAMILY}:2, identical to the compiled definition" in out
    no_traceback(out, err)
    assert lemi("diff", "-e", ENV, "-t", "v2", "--output", "json") == 0
    data = json.loads(capsys.readouterr().out)
    assert data["different"] is False and data["text"] == "" and data["running"] == f"{FAMILY}:2"
    assert data["service"] == SERVICE and data["environment"] == ENV


def test_cli_diff_shows_an_added_variable(
    world: aws_world.World, sim: ecs_sim.Sim, checkout: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with_flag = aws_world.STAGING_YAML.replace("  LOG_LEVEL: info\n", "  LOG_LEVEL: info\n  NEW_FLAG: enabled\n")
    write(checkout, "deploy/demo-service/environment/staging.yaml", with_flag)
    assert lemi("diff", "-e", ENV, "-t", "v1") == 1
    out, err = capsys.readouterr()
    no_traceback(out, err)
    lines = out.splitlines()
    assert lines[0] == f"--- running ({FAMILY}:1)"
    assert lines[1] == "+++ compiled"
    added = [line for line in lines[2:] if line.startswith("+")]
    removed = [line for line in lines[2:] if line.startswith("-")]
    assert any('"NEW_FLAG"' in line for line in added), out
    assert any('"enabled"' in line for line in added), out
    assert not removed, out  # only an addition: nothing AWS added by itself shows as a difference
    assert revisions(world) == [f"{FAMILY}:1"]  # diff registers nothing

    assert lemi("diff", "-e", ENV, "-t", "v1", "--output", "json") == 1
    data = json.loads(capsys.readouterr().out)
    assert data["different"] is True and data["running"] == f"{FAMILY}:1"
    assert data["text"] == out


def test_cli_diff_shows_a_removed_variable_and_a_new_tag(
    world: aws_world.World, sim: ecs_sim.Sim, checkout: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    without = aws_world.STAGING_YAML.replace("variables:\n  LOG_LEVEL: info\n", "")
    write(checkout, "deploy/demo-service/environment/staging.yaml", without)
    assert lemi("diff", "-e", ENV, "-t", "v2") == 1
    out, err = capsys.readouterr()
    no_traceback(out, err)
    changed = [line for line in out.splitlines()[2:] if line[:1] in "+-" and line[1:].strip() not in "{},"]
    assert any(line.startswith("-") and '"LOG_LEVEL"' in line for line in changed), out
    assert any(line.startswith("+") and f"{SERVICE}:v2" in line for line in changed), out
    # every changed line is about the variable or the tag, not AWS's own defaults
    assert all(re.search(r"LOG_LEVEL|info|v1|v2", line) for line in changed), out


# ---- 5. prune ----------------------------------------------------------------------------


def test_cli_prune_keeps_the_newest_revisions(
    world: aws_world.World, sim: ecs_sim.Sim, checkout: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for tag in ("v2", "v3", "v4"):
        cli_deploy(world, sim, tag)
    capsys.readouterr()
    assert revisions(world) == [f"{FAMILY}:{n}" for n in (1, 2, 3, 4)]
    assert lemi("service", "prune", "-e", ENV, "--keep", "2") == 0
    out, err = capsys.readouterr()
    no_traceback(out, err)
    assert f"kept {FAMILY}:4, {FAMILY}:3" in out
    assert f"deregistered {FAMILY}:2, {FAMILY}:1" in out
    assert revisions(world) == [f"{FAMILY}:3", f"{FAMILY}:4"]
    assert revisions(world, "INACTIVE") == [f"{FAMILY}:1", f"{FAMILY}:2"]
    assert described(world)["taskDefinition"].endswith(f"{FAMILY}:4")

    assert lemi("service", "prune", "-e", ENV, "--keep", "2") == 0  # nothing left to do
    out, _ = capsys.readouterr()
    assert "deregistered none" in out


def test_cli_prune_keeps_the_revision_in_use(
    world: aws_world.World, sim: ecs_sim.Sim, checkout: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cli_deploy(world, sim, "v2")
    for tag in ("v3", "v4", "v5"):  # registered, never deployed
        world.ecs().register_task_definition(**compiled(world, tag).task_definition)
    capsys.readouterr()
    assert lemi("service", "prune", "-e", ENV, "--keep", "2", "--output", "json") == 0
    data = json.loads(capsys.readouterr().out)
    assert data["kept"] == [f"{FAMILY}:5", f"{FAMILY}:4", f"{FAMILY}:2"]  # the newest 2, and the one in use
    assert data["deregistered"] == [f"{FAMILY}:3", f"{FAMILY}:1"]
    assert revisions(world) == [f"{FAMILY}:2", f"{FAMILY}:4", f"{FAMILY}:5"]
    assert revisions(world, "INACTIVE") == [f"{FAMILY}:1", f"{FAMILY}:3"]


def test_cli_prune_keeps_the_revisions_of_a_rollout_in_progress(
    world: aws_world.World, sim: ecs_sim.Sim, checkout: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    aws_world.push_image(world.endpoint, "v2")
    sim.stuck()
    assert lemi("deploy", "-e", ENV, "-t", "v2", "--no-wait") == 0  # :1 still ACTIVE, :2 PRIMARY
    for tag in ("v3", "v4"):
        world.ecs().register_task_definition(**compiled(world, tag).task_definition)
    capsys.readouterr()
    assert lemi("service", "prune", "-e", ENV, "--keep", "1", "--output", "json") == 0
    data = json.loads(capsys.readouterr().out)
    assert data["deregistered"] == [f"{FAMILY}:3"]
    assert sorted(data["kept"]) == [f"{FAMILY}:1", f"{FAMILY}:2", f"{FAMILY}:4"]
    assert revisions(world, "INACTIVE") == [f"{FAMILY}:3"]


@pytest.mark.parametrize("keep", ["0", "-1"])
def test_cli_prune_refuses_to_keep_nothing(
    keep: str, world: aws_world.World, sim: ecs_sim.Sim, checkout: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    world.ecs().register_task_definition(**compiled(world, "v2").task_definition)
    code = lemi("service", "prune", "-e", ENV, f"--keep={keep}")
    out, err = capsys.readouterr()
    assert code in (1, 2)
    assert "--keep" in err and "at least 1" in err
    no_traceback(out, err)
    assert revisions(world) == [f"{FAMILY}:1", f"{FAMILY}:2"]
    assert revisions(world, "INACTIVE") == []


async def test_prune_leaves_other_families_alone(world: aws_world.World, sim: ecs_sim.Sim) -> None:
    ecs = world.ecs()
    base = compiled(world, "v1").task_definition
    # families whose names extend or resemble the service's own are not the service's revisions
    ecs.register_task_definition(**{**base, "family": f"{FAMILY}-canary"})
    ecs.register_task_definition(**{**base, "family": "demo-service-prod"})
    for tag in ("v2", "v3"):
        ecs.register_task_definition(**compiled(world, tag).task_definition)
    async with AwsClients(world.config) as aws:
        pruned = await operate.prune(aws, ENV, SERVICE, keep=1)
    assert pruned.deregistered == [f"{FAMILY}:2"]
    active = world.ecs().list_task_definitions(status="ACTIVE")["taskDefinitionArns"]
    assert {revision_of(a) for a in active} >= {f"{FAMILY}-canary:1", "demo-service-prod:1"}


# ---- 6. exec -----------------------------------------------------------------------------

SESSION = {"sessionId": "ecs-execute-command-0123", "streamUrl": "wss://ssmmessages.example/s", "tokenValue": "tok"}


def fake_plugin(directory: Path) -> Path:
    """A session-manager-plugin that records its argv (to $FAKE_PLUGIN_LOG) and exits $FAKE_PLUGIN_EXIT."""
    directory.mkdir(parents=True, exist_ok=True)
    plugin = directory / PLUGIN
    plugin.write_text(
        f"#!{sys.executable}\n"
        "import json, os, sys\n"
        "open(os.environ['FAKE_PLUGIN_LOG'], 'w').write(json.dumps(sys.argv))\n"
        "sys.exit(int(os.environ.get('FAKE_PLUGIN_EXIT', '0')))\n",
        encoding="utf-8",
    )
    plugin.chmod(0o755)
    return plugin


@pytest.fixture
def plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = fake_plugin(tmp_path / "bin")
    monkeypatch.setenv("PATH", f"{path.parent}{os.pathsep}{os.environ.get('PATH', '')}")
    monkeypatch.setenv("FAKE_PLUGIN_LOG", str(tmp_path / "plugin-argv.json"))
    monkeypatch.delenv("FAKE_PLUGIN_EXIT", raising=False)
    return path


def plugin_argv(tmp_path: Path) -> list[str] | None:
    log = tmp_path / "plugin-argv.json"
    return json.loads(log.read_text(encoding="utf-8")) if log.exists() else None


@pytest.fixture
def execute_command(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """ECS clients whose ExecuteCommand answers like ECS (moto does not implement it); returns the calls."""
    calls: list[dict[str, Any]] = []

    class Ecs:
        def __init__(self, inner: Any) -> None:
            self._inner = inner

        def __getattr__(self, name: str) -> Any:
            return getattr(self._inner, name)

        async def execute_command(self, **kwargs: Any) -> dict[str, Any]:
            calls.append(kwargs)
            return {"clusterArn": f"arn:aws:ecs:{aws_world.REGION}:{aws_world.ACCOUNT}:cluster/{CLUSTER}",
                    "containerName": kwargs["container"], "interactive": True, "session": dict(SESSION),
                    "taskArn": kwargs["task"]}  # fmt: skip

    original = AwsClients.client

    async def client(self: AwsClients, env_name: str, service: str) -> Any:
        made = await original(self, env_name, service)
        return Ecs(made) if service == "ecs" else made

    monkeypatch.setattr(AwsClients, "client", client)
    return calls


def expected_argv(plugin: Path, task: Any) -> list[str]:
    target = {"Target": f"ecs:{CLUSTER}_{task.id}_{task.id}-{SERVICE}"}  # runtimeId from ecs_sim.add_tasks
    return [str(plugin), json.dumps(SESSION), aws_world.REGION, "StartSession", "", json.dumps(target),
            f"https://ssm.{aws_world.REGION}.amazonaws.com"]  # fmt: skip


def test_cli_exec_without_the_plugin_says_how_to_install_it_and_calls_no_aws(
    tmp_path: Path, checkout: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # no moto, no credentials: if lemi called AWS it could not get the plugin message out
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # and nothing could leave the machine
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "absent"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "absent"))
    clients: list[tuple[str, str]] = []

    async def no_client(self: AwsClients, env_name: str, service: str) -> Any:
        clients.append((env_name, service))
        raise AssertionError("no AWS client may be made without the plugin")

    monkeypatch.setattr(AwsClients, "client", no_client)
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    code = lemi("service", "exec", "-s", SERVICE, "-e", ENV)
    out, err = capsys.readouterr()
    assert code == 1
    assert PLUGIN in err and "not installed" in err
    assert "hint: install AWS's Session Manager plugin" in err
    assert "session-manager-plugin-install" in err or "install-plugin" in err  # the AWS docs page
    no_traceback(out, err)
    assert clients == []


def test_cli_exec_on_a_service_without_ecs_exec_says_how_to_enable_it(
    world: aws_world.World, sim: ecs_sim.Sim, checkout: Path, plugin: Path, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    run_tasks(sim, 1)
    code = lemi("service", "exec", "-e", ENV)
    out, err = capsys.readouterr()
    assert code == 1
    assert f"ECS Exec is not enabled on service {SERVICE} ({ENV})" in err
    assert "hint: enable ECS Exec" in err and "enable_execute_command = true" in err and "restart" in err
    no_traceback(out, err)
    assert plugin_argv(tmp_path) is None


def exec_against_moto(
    sim: ecs_sim.Sim, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> tuple[int, str, str]:
    """`lemi service exec` where ECS (moto) answers ExecuteCommand with HTTP 500: it does not implement it."""
    # one attempt, not five with backoff
    monkeypatch.setattr(
        clients_module, "CLIENT_CONFIG",
        clients_module.CLIENT_CONFIG.merge(clients_module.AioConfig(retries={"mode": "standard", "max_attempts": 1})),
    )  # fmt: skip
    enable_exec(sim)
    run_tasks(sim, 1)
    code = lemi("service", "exec", "-e", ENV)
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_exec_where_ecs_answers_execute_command_with_an_error(
    world: aws_world.World, sim: ecs_sim.Sim, checkout: Path, plugin: Path, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    code, out, err = exec_against_moto(sim, monkeypatch, capsys)
    assert code == 1
    assert err.startswith("error: AWS refused ExecuteCommand: 500")
    no_traceback(out, err)
    assert plugin_argv(tmp_path) is None  # no session, no plugin


def test_cli_exec_aws_server_error_is_one_readable_line(
    world: aws_world.World, sim: ecs_sim.Sim, checkout: Path, plugin: Path, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    code, out, err = exec_against_moto(sim, monkeypatch, capsys)
    assert code == 1
    lines = [line for line in err.splitlines() if line.strip() and not line.startswith("    hint:")]
    assert len(lines) == 1 and "ExecuteCommand" in lines[0], err
    assert "<html" not in err.lower() and "<!doctype" not in err.lower()


def test_cli_exec_hands_the_session_to_the_plugin(
    world: aws_world.World, sim: ecs_sim.Sim, checkout: Path, plugin: Path, tmp_path: Path,
    execute_command: list[dict[str, Any]], capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    enable_exec(sim)
    (task,) = run_tasks(sim, 1)
    other_service(world, sim)
    code = lemi("service", "exec", "-e", ENV, "--", "/bin/bash")
    out, err = capsys.readouterr()
    assert code == 0
    assert f"connecting to task {task.id} ({SERVICE})" in err
    no_traceback(out, err)
    assert plugin_argv(tmp_path) == expected_argv(plugin, task)
    assert len(execute_command) == 1
    call = execute_command[0]
    assert call["cluster"] == CLUSTER and call["task"] == task.task_arn and call["container"] == SERVICE
    assert call["interactive"] is True and call["command"] == "/bin/bash"


def lemi_exit_code(*argv: str) -> int:
    """What the shell sees: main()'s return value, or the code of a SystemExit escaping it."""
    try:
        return lemi(*argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 1


def test_cli_exec_exits_with_the_plugin_exit_code(
    world: aws_world.World, sim: ecs_sim.Sim, checkout: Path, plugin: Path, tmp_path: Path,
    execute_command: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    enable_exec(sim)
    run_tasks(sim, 1)
    monkeypatch.setenv("FAKE_PLUGIN_EXIT", "3")
    assert lemi_exit_code("service", "exec", "-e", ENV) == 3
    assert plugin_argv(tmp_path) is not None


def test_cli_main_returns_the_plugin_exit_code(
    world: aws_world.World, sim: ecs_sim.Sim, checkout: Path, plugin: Path, tmp_path: Path,
    execute_command: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    enable_exec(sim)
    run_tasks(sim, 1)
    monkeypatch.setenv("FAKE_PLUGIN_EXIT", "3")
    assert lemi("service", "exec", "-e", ENV) == 3


def test_cli_exec_default_command_is_a_shell(
    world: aws_world.World, sim: ecs_sim.Sim, checkout: Path, plugin: Path, tmp_path: Path,
    execute_command: list[dict[str, Any]], capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    enable_exec(sim)
    run_tasks(sim, 1)
    assert lemi("service", "exec", "-e", ENV) == 0
    assert [c["command"] for c in execute_command] == ["/bin/sh"]


def test_cli_exec_keeps_the_arguments_of_the_command(
    world: aws_world.World, sim: ecs_sim.Sim, checkout: Path, plugin: Path, tmp_path: Path,
    execute_command: list[dict[str, Any]], capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    enable_exec(sim)
    run_tasks(sim, 1)
    assert lemi("service", "exec", "-e", ENV, "--", "sh", "-c", "echo a b") == 0
    (call,) = execute_command
    assert shlex.split(call["command"]) == ["sh", "-c", "echo a b"]


def test_cli_exec_refuses_a_task_of_another_service(
    world: aws_world.World, sim: ecs_sim.Sim, checkout: Path, plugin: Path, tmp_path: Path,
    execute_command: list[dict[str, Any]], capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    enable_exec(sim)
    run_tasks(sim, 1)
    (foreign,) = other_service(world, sim)
    code = lemi("service", "exec", "-e", ENV, "--task", foreign.id)
    out, err = capsys.readouterr()
    assert code == 1
    assert f"is not a task of service {SERVICE}" in err
    no_traceback(out, err)
    assert execute_command == [] and plugin_argv(tmp_path) is None


def test_cli_exec_without_running_tasks(
    world: aws_world.World, sim: ecs_sim.Sim, checkout: Path, plugin: Path, tmp_path: Path,
    execute_command: list[dict[str, Any]], capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    enable_exec(sim)
    other_service(world, sim)
    code = lemi("service", "exec", "-e", ENV)
    out, err = capsys.readouterr()
    assert code == 1
    assert f"service {SERVICE} has no running task in {ENV}" in err
    no_traceback(out, err)
    assert execute_command == []


async def test_open_session_builds_the_plugin_command_line(
    world: aws_world.World, sim: ecs_sim.Sim, plugin: Path, execute_command: list[dict[str, Any]]
) -> None:
    enable_exec(sim)
    first, second = run_tasks(sim, 2)
    async with AwsClients(world.config) as aws:
        session = await open_session(aws, ENV, SERVICE, command="ls -la '/tmp/a b'", task=second.id)
    assert session.task_id == second.id and session.container == SERVICE
    assert session.argv == expected_argv(plugin, second)
    (call,) = execute_command
    assert call == {"cluster": CLUSTER, "task": second.task_arn, "container": SERVICE, "interactive": True,
                    "command": "ls -la '/tmp/a b'"}  # fmt: skip


async def test_open_session_refuses_a_task_started_without_exec(
    world: aws_world.World, sim: ecs_sim.Sim, plugin: Path, execute_command: list[dict[str, Any]]
) -> None:
    (old,) = run_tasks(sim, 1)  # started before ECS Exec was enabled
    enable_exec(sim)
    async with AwsClients(world.config) as aws:
        with pytest.raises(operate.OperationError) as caught:
            await open_session(aws, ENV, SERVICE, command="/bin/sh")
    assert f"task {old.id} was started without ECS Exec" in caught.value.message
    assert "restart" in caught.value.hint
    assert execute_command == []


# ---- 7. errors ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        ["service", "status"],
        ["service", "list-tasks"],
        ["service", "list-tasks", "--stopped"],
        ["service", "restart", "--poll", POLL, "--timeout", "5"],
        ["service", "rollback", "--poll", POLL, "--timeout", "5"],
        ["service", "prune", "--keep", "3"],
        ["service", "exec"],
    ],
    ids=lambda argv: "-".join(a for a in argv if not a.startswith("-") and not a[0].isdigit()),
)
def test_cli_operating_a_missing_service_is_a_clear_error(
    argv: list[str], world: aws_world.World, sim: ecs_sim.Sim, checkout: Path, plugin: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    world.ecs().register_task_definition(**compiled(world, "v2").task_definition)
    code = lemi(*argv[:2], "-s", "ghost", "-e", ENV, *argv[2:])
    out, err = capsys.readouterr()
    assert code == 1
    assert f"there is no active ECS service 'ghost' in cluster {CLUSTER} ({ENV})" in err
    assert "hint: check -s and -e, or provision the service first" in err
    no_traceback(out, err)
    assert sim.updates == 0
    assert revisions(world, "INACTIVE") == []


def test_cli_diff_of_a_missing_service_is_a_clear_error(
    world: aws_world.World, sim: ecs_sim.Sim, checkout: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    world.ecs().delete_service(cluster=CLUSTER, service=SERVICE, force=True)
    code = lemi("diff", "-e", ENV, "-t", "v1")
    out, err = capsys.readouterr()
    assert code == 1
    assert f"there is no active ECS service '{SERVICE}' in cluster {CLUSTER} ({ENV})" in err
    no_traceback(out, err)


@pytest.mark.parametrize(
    "argv",
    [
        ["service", "status"],
        ["service", "list-tasks"],
        ["service", "stop-task", "--task-id", "abc"],
        ["service", "prune", "--keep", "3"],
        ["service", "exec"],
        ["diff", "-t", "v1"],
    ],
    ids=lambda argv: argv[1] if argv[0] == "service" else argv[0],
)
def test_cli_unknown_environment_is_a_usage_error(
    argv: list[str], checkout: Path, plugin: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = lemi(*argv, "-e", "qa")
    out, err = capsys.readouterr()
    assert code == 2
    assert "no environment 'qa' in lemi.yml (environments: staging, prod)" in err
    no_traceback(out, err)


def test_cli_default_environment_is_staging_not_prod(
    world: aws_world.World, sim: ecs_sim.Sim, checkout: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert lemi("service", "status", "--output", "json") == 0
    assert json.loads(capsys.readouterr().out)["environment"] == "staging"
    # listed first, prod is still never the default: it is protected
    prod_first = aws_world.LEMI_YML.split("  staging:\n")
    staging_block, prod_block = prod_first[1].split("  prod:\n")
    write(checkout.parent, "lemi.yml", f"{prod_first[0]}  prod:\n{prod_block}  staging:\n{staging_block}")
    assert lemi("service", "status", "--output", "json") == 0
    assert json.loads(capsys.readouterr().out)["environment"] == "staging"
    assert lemi("service", "list-tasks", "--output", "json") == 0
    assert json.loads(capsys.readouterr().out)["environment"] == "staging"


def test_cli_with_only_protected_environments_prod_must_be_named(
    world: aws_world.World, sim: ecs_sim.Sim, checkout: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    only_prod = aws_world.LEMI_YML.split("  staging:\n")[0] + "  prod:\n" + aws_world.LEMI_YML.split("  prod:\n")[1]
    write(checkout.parent, "lemi.yml", only_prod)
    for argv in (["service", "status"], ["service", "restart", "--poll", POLL], ["service", "prune", "--keep", "1"]):
        code = lemi(*argv)
        out, err = capsys.readouterr()
        assert code == 2, argv
        assert "every environment is protected; name one with -e (prod)" in err
        no_traceback(out, err)
    assert sim.updates == 0 and revisions(world, "INACTIVE") == []


# ---- 8. the README's deployer IAM policy -------------------------------------------------

# Permissions AWS checks without an API call of their own, so on_call cannot observe them:
EXTRA = {
    "iam:PassRole",  # RegisterTaskDefinition and RunTask pass the task roles to ECS; CreateSchedule the scheduler role
    "scheduler:TagResource",  # CreateScheduleGroup with tags needs it (tag-on-create authorization)
    "ecs:ExecuteCommand",  # `lemi service exec`: an API call, but moto does not implement it
    "kms:Decrypt",  # GetSecretValue of a secret encrypted with a customer-managed KMS key
}
# Calls AWS allows every identity, so the policy does not name them:
NO_PERMISSION = {
    "sts:GetCallerIdentity",  # `lemi doctor`: who lemi acts as in each environment
}


def readme_policy() -> dict[str, Any]:
    text = README.read_text(encoding="utf-8")
    section = re.search(r"^## Deployer IAM policy\n(.*?)(?=^## |\Z)", text, re.S | re.M)
    assert section, "README.md has no '## Deployer IAM policy' section"
    block = re.search(r"^```json\n(.*?)^```", section.group(1), re.S | re.M)
    assert block, "the '## Deployer IAM policy' section has no ```json block"
    return json.loads(block.group(1))


def allowed_actions(policy: dict[str, Any]) -> set[str]:
    statements = policy["Statement"]
    statements = [statements] if isinstance(statements, dict) else statements
    actions: set[str] = set()
    for statement in statements:
        assert statement["Effect"] == "Allow", statement
        assert "NotAction" not in statement and "NotResource" not in statement, statement
        action = statement["Action"]
        actions |= {action} if isinstance(action, str) else set(action)
    return actions


async def test_restart_and_rollback_describe_the_service_once_before_updating_it(
    world: aws_world.World, sim: ecs_sim.Sim
) -> None:
    world.deployed(world.first_revision)  # rollback has a revision lemi deployed to go back to
    aws_world.push_image(world.endpoint, "v2")
    sim.complete(after=1)
    calls: list[str] = []
    async with AwsClients(world.config) as aws:
        c = compiled(world, "v2")
        assert (await deploy(await Ecs.open(aws, ENV), RolloutRequest(SERVICE, c.task_definition), WAIT)).ok
        aws.on_call(lambda service, operation: calls.append(operation))
        for run in (operate.restart, operate.rollback):
            calls.clear()
            assert (await run(aws, ENV, SERVICE, wait=WAIT)).ok
            before_update = calls[: calls.index("UpdateService")]
            assert before_update.count("DescribeServices") == 1, (run.__name__, calls)


async def test_readme_policy_allows_exactly_what_lemi_calls(
    world: aws_world.World, sim: ecs_sim.Sim, tasks: ecs_tasks.TaskSim
) -> None:
    policy = readme_policy()
    assert policy["Version"] == "2012-10-17"
    calls: set[tuple[str, str]] = set()
    world.deployed(world.first_revision)  # rollback has a revision lemi deployed to go back to
    aws_world.push_image(world.endpoint, "v2")
    sim.complete(after=1)
    async with AwsClients(world.config) as aws:
        aws.on_call(lambda service, operation: calls.add((service, operation)))
        assert await verify_provisioned(aws, ENV, world.files, tag="v2") == []  # DB_USER is a json-key secret
        c = compiled(world, "v2")
        request = RolloutRequest(SERVICE, c.task_definition, desired_count=c.desired_count)
        result = await deploy(await Ecs.open(aws, ENV), request, WAIT)
        assert result.ok and not result.reused
        # the schedules: created with their group, changed and dropped, pointed back, and none left
        wanted = {n: ScheduledTask("report", ["bin/report"], "0 3 * * ? *", "UTC") for n in ("nightly", "weekly")}
        synced = await schedules.sync(aws, ENV, SERVICE, wanted, result.task_definition)
        assert synced.created == ["nightly", "weekly"]
        changed = {"nightly": ScheduledTask("report", ["bin/report"], "0 4 * * ? *", "UTC")}
        assert (await schedules.sync(aws, ENV, SERVICE, changed, result.task_definition)).deleted == ["weekly"]
        assert (await operate.restart(aws, ENV, SERVICE, wait=WAIT)).ok
        assert (await operate.rollback(aws, ENV, SERVICE, wait=WAIT)).ok
        assert (await schedules.repoint(aws, ENV, SERVICE, world.first_revision)).updated == ["nightly"]
        status = await operate.status(aws, ENV, SERVICE)
        assert status.revision == f"{FAMILY}:1" and [s.revision for s in status.schedules] == [f"{FAMILY}:1"]
        assert (await schedules.sync(aws, ENV, SERVICE, {}, world.first_revision)).deleted == ["nightly"]
        assert all(check.ok for check in await environment_checks(aws))  # lemi doctor, every environment
        running = await operate.list_tasks(aws, ENV, SERVICE)
        await operate.stop_task(aws, ENV, SERVICE, running[0].task_id, reason="iam test")
        assert await operate.list_tasks(aws, ENV, SERVICE, stopped=True)
        assert (await operate.diff(aws, ENV, SERVICE, compiled(world, "v1").task_definition)).different is False
        world.ecs().register_task_definition(**compiled(world, "v3").task_definition)
        assert (await operate.prune(aws, ENV, SERVICE, keep=1)).deregistered == [f"{FAMILY}:2"]
        # a one-off task (lemi run): RunTask, DescribeTasks until it ends, StopTask past its bound
        ecs = await Ecs.open(aws, ENV)
        service = await ecs.describe_service(SERVICE)
        tasks.script("migrate", ecs_tasks.forever())
        started = await task_runs.start(ecs, service, service["taskDefinition"], SERVICE, "migrate", ["bin/migrate"])
        end = await task_runs.wait(ecs, started.arn, SERVICE, task_runs.TaskWait(timeout=0.05, poll=0.01))
        assert end.reason.startswith("ran past its bound")
    # `lemi logs` and a failed rollout's last lines, where an environment logs to CloudWatch
    logs_client = aws_world.client("logs", world.endpoint)
    logs_client.create_log_group(logGroupName=f"/ecs/{FAMILY}")
    cloudwatch = parse_config(aws_world.LEMI_YML.replace("    cluster:", "    logs: cloudwatch\n    cluster:"))
    async with AwsClients(cloudwatch) as aws:
        aws.on_call(lambda service, operation: calls.add((service, operation)))
        assert await app_logs.last_lines(aws, ENV, SERVICE) == []
    observed = {f"{service}:{operation}" for service, operation in calls}
    assert NO_PERMISSION <= observed, "a NO_PERMISSION call is no longer made: drop it from NO_PERMISSION"
    observed -= NO_PERMISSION
    # the hook saw the operations that matter (a hook that records nothing must not pass)
    assert {"ecs:RegisterTaskDefinition", "ecs:UpdateService", "ecs:StopTask", "ecs:DeregisterTaskDefinition",
            "ecs:RunTask", "ecs:TagResource", "ecs:ListTagsForResource",  # the deploy history
            "secretsmanager:GetSecretValue", "ssm:GetParameters", "ecr:DescribeImages",
            "logs:FilterLogEvents", "scheduler:CreateSchedule",
            "scheduler:UpdateSchedule", "scheduler:DeleteScheduleGroup"} <= observed  # fmt: skip
    allowed = allowed_actions(policy)
    assert not {a for a in allowed if "*" in a}, "no wildcard actions in a least-privilege policy"
    assert not EXTRA & observed, "an EXTRA permission is now an observed call: drop it from EXTRA"
    assert allowed - (observed | EXTRA) == set(), "the policy allows actions lemi never needs"
    assert (observed | EXTRA) - allowed == set(), "lemi needs actions the policy does not allow"


def test_readme_policy_lets_ecs_have_the_roles_lemi_passes(world: aws_world.World) -> None:
    policy = readme_policy()
    passing = [s for s in policy["Statement"] if "iam:PassRole" in allowed_actions({"Statement": [s]})]
    to = {s["Condition"]["StringEquals"]["iam:PassedToService"]: s for s in passing}
    assert sorted(to) == ["ecs-tasks.amazonaws.com", "scheduler.amazonaws.com"] and len(passing) == 2
    td = compiled(world, "v1").task_definition
    env = world.config.environment(ENV)
    for role, service in ((td["taskRoleArn"], "ecs-tasks.amazonaws.com"), (td["executionRoleArn"], "ecs-tasks.amazonaws.com"),
                          (scheduler_role_arn(SERVICE, ENV, env), "scheduler.amazonaws.com")):  # fmt: skip
        resource = to[service]["Resource"]
        resources = [resource] if isinstance(resource, str) else resource
        mine = role.replace(aws_world.ACCOUNT, "111111111111")  # the README's placeholder account
        assert any(fnmatch(mine, pattern) for pattern in resources), (role, resources)
        others = [
            r
            for s, st in to.items()
            if s != service
            for r in ([st["Resource"]] if isinstance(st["Resource"], str) else st["Resource"])
        ]
        assert not any(fnmatch(mine, pattern) for pattern in others), (role, others)  # each role to its service only
