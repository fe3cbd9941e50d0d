"""Schedules on EventBridge Scheduler (the README, "Schedules"): what lemi writes (pure), and
deploys, rollbacks and status on moto's server through the CLI.

moto's scheduler keeps schedules as it is told and runs nothing: these tests check what lemi
asked for (the group, each schedule's expression, time zone, state, target, revision, network
configuration and command), never that a task ran. ECS rollouts are driven by ecs_sim.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aws_world
import ecs_sim
import msgspec
import pytest
from aws_world import ACCOUNT, CLUSTER, REGION, SERVICE
from checkout import lemi_here, service_checkout, write
from moto.core.exceptions import JsonRESTError
from moto.scheduler.models import EventBridgeSchedulerBackend

from bot.core.schedules import (
    Placement,
    ScheduledTask,
    desired,
    plan_sync,
    schedule_info,
    scheduled_tasks,
    update_to,
)
from bot.core.spec import parse_service

ENV = "staging"
FAMILY = "demo-service-staging"
GROUP = "demo-service-staging"
POLL = "0.01"
CLUSTER_ARN = f"arn:aws:ecs:{REGION}:{ACCOUNT}:cluster/{CLUSTER}"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/demo-service-staging-scheduler"
NETWORK = {"awsvpcConfiguration": {"subnets": ["subnet-a", "subnet-b"], "securityGroups": ["sg-1"],
                                   "assignPublicIp": "DISABLED"}}  # fmt: skip
TD = f"arn:aws:ecs:{REGION}:{ACCOUNT}:task-definition/{FAMILY}"

SERVICE_YAML = (
    aws_world.SERVICE_YAML
    + """\
  tasks:
    report: ["bin/report", "--daily"]
    cleanup: ["bin/cleanup"]
    digest: ["bin/digest"]
  schedules:
    nightly-report: {task: report, cron: "0 3 * * ? *", timezone: Europe/Paris}
    hourly-cleanup: {task: cleanup, cron: "0 * * * ? *"}
"""
)
# nightly-report moves, hourly-cleanup goes, weekly-digest comes (paused)
CHANGED_YAML = (
    aws_world.SERVICE_YAML
    + """\
  tasks:
    report: ["bin/report", "--daily"]
    digest: ["bin/digest"]
  schedules:
    nightly-report: {task: report, cron: "30 4 * * ? *", timezone: Europe/Paris}
    weekly-digest: {task: digest, cron: "0 8 ? * MON *", enabled: false}
"""
)


def spec_schedules(text: str) -> dict[str, ScheduledTask]:
    spec = parse_service(text, "service.yaml").spec
    return scheduled_tasks(spec.tasks, spec.schedules)


# ---- pure: what lemi writes --------------------------------------------------------------------


def test_desired_schedules_run_the_task_on_the_service_container_where_the_service_runs() -> None:
    placement = Placement.of({"clusterArn": CLUSTER_ARN, "networkConfiguration": NETWORK, "launchType": "FARGATE",
                              "platformVersion": "LATEST"})  # fmt: skip
    wanted = desired(SERVICE, ENV, spec_schedules(SERVICE_YAML), task_definition=f"{TD}:7", placement=placement,
                     role_arn=ROLE)  # fmt: skip
    assert list(wanted) == ["hourly-cleanup", "nightly-report"]
    nightly = wanted["nightly-report"]
    assert nightly["GroupName"] == GROUP and nightly["Name"] == "nightly-report"
    assert nightly["ScheduleExpression"] == "cron(0 3 * * ? *)"
    assert nightly["ScheduleExpressionTimezone"] == "Europe/Paris"
    assert nightly["State"] == "ENABLED" and nightly["FlexibleTimeWindow"] == {"Mode": "OFF"}
    target = nightly["Target"]
    assert target["Arn"] == CLUSTER_ARN and target["RoleArn"] == ROLE
    assert json.loads(target["Input"]) == {
        "containerOverrides": [{"name": SERVICE, "command": ["bin/report", "--daily"]}]
    }
    assert target["RetryPolicy"]["MaximumRetryAttempts"] >= 1
    assert target["EcsParameters"] == {
        "TaskDefinitionArn": f"{TD}:7", "TaskCount": 1, "LaunchType": "FARGATE", "PlatformVersion": "LATEST",
        "NetworkConfiguration": {"awsvpcConfiguration": {"Subnets": ["subnet-a", "subnet-b"],
                                                         "SecurityGroups": ["sg-1"], "AssignPublicIp": "DISABLED"}},
        "EnableECSManagedTags": True, "PropagateTags": "TASK_DEFINITION",
    }  # fmt: skip
    assert wanted["hourly-cleanup"]["ScheduleExpressionTimezone"] == "UTC"
    # deterministic: the same input gives the same parameters, byte for byte
    again = desired(SERVICE, ENV, spec_schedules(SERVICE_YAML), task_definition=f"{TD}:7", placement=placement,
                    role_arn=ROLE)  # fmt: skip
    assert json.dumps(again) == json.dumps(wanted)


def test_a_capacity_provider_strategy_replaces_the_launch_type() -> None:
    strategy = [{"capacityProvider": "FARGATE_SPOT", "weight": 3, "base": 0}, {"capacityProvider": "FARGATE",
                                                                                "weight": 1, "base": 1}]  # fmt: skip
    placement = Placement.of({"clusterArn": CLUSTER_ARN, "capacityProviderStrategy": strategy, "launchType": ""})
    ecs = desired(SERVICE, ENV, spec_schedules(SERVICE_YAML), task_definition=f"{TD}:7", placement=placement,
                  role_arn=ROLE)["nightly-report"]["Target"]["EcsParameters"]  # fmt: skip
    assert "LaunchType" not in ecs and "NetworkConfiguration" not in ecs
    assert ecs["CapacityProviderStrategy"] == strategy


def test_the_plan_creates_updates_only_what_differs_and_deletes_what_the_file_dropped() -> None:
    placement = Placement.of({"clusterArn": CLUSTER_ARN, "networkConfiguration": NETWORK, "launchType": "FARGATE"})
    before = desired(SERVICE, ENV, spec_schedules(SERVICE_YAML), task_definition=f"{TD}:2", placement=placement,
                     role_arn=ROLE)  # fmt: skip
    # as GetSchedule describes them: AWS adds fields lemi never set
    current = {n: {**p, "Arn": f"arn:sched/{n}", "CreationDate": 1, "ActionAfterCompletion": "NONE",
                   "Target": {**p["Target"], "EcsParameters": {**p["Target"]["EcsParameters"], "Group": "x"}}}
               for n, p in before.items()}  # fmt: skip
    assert plan_sync(GROUP, before, current).writes is False
    assert plan_sync(GROUP, before, current).unchanged == ["hourly-cleanup", "nightly-report"]
    after = desired(SERVICE, ENV, spec_schedules(CHANGED_YAML), task_definition=f"{TD}:2", placement=placement,
                    role_arn=ROLE)  # fmt: skip
    plan = plan_sync(GROUP, after, current)
    assert [p["Name"] for p in plan.create] == ["weekly-digest"]
    assert plan.create[0]["State"] == "DISABLED"
    assert [p["Name"] for p in plan.update] == ["nightly-report"]
    assert plan.update[0]["ScheduleExpression"] == "cron(30 4 * * ? *)"
    assert plan.delete == ["hourly-cleanup"] and plan.unchanged == []
    # a new revision alone is an update of every schedule
    newer = desired(SERVICE, ENV, spec_schedules(SERVICE_YAML), task_definition=f"{TD}:3", placement=placement,
                    role_arn=ROLE)  # fmt: skip
    assert [p["Name"] for p in plan_sync(GROUP, newer, current).update] == ["hourly-cleanup", "nightly-report"]


def test_a_rollback_changes_only_the_revision() -> None:
    placement = Placement.of({"clusterArn": CLUSTER_ARN, "networkConfiguration": NETWORK, "launchType": "FARGATE"})
    params = desired(SERVICE, ENV, spec_schedules(SERVICE_YAML), task_definition=f"{TD}:3", placement=placement,
                     role_arn=ROLE)["nightly-report"]  # fmt: skip
    current = {**params, "Arn": "arn:sched/nightly-report", "CreationDate": 1, "State": "DISABLED"}
    update = update_to(current, f"{TD}:2")
    assert update is not None
    assert update["Target"]["EcsParameters"] == {**params["Target"]["EcsParameters"], "TaskDefinitionArn": f"{TD}:2"}
    assert {k: v for k, v in update.items() if k != "Target"} == {
        k: v for k, v in current.items() if k not in ("Target", "Arn", "CreationDate")
    }  # the state someone paused it in is kept
    assert update_to(current, f"{TD}:3") is None  # already there: no write
    info = schedule_info(current, SERVICE)
    assert (info.name, info.expression, info.timezone, info.task, info.command, info.state, info.revision) == (
        "nightly-report", "0 3 * * ? *", "Europe/Paris", "report", ["bin/report", "--daily"], "DISABLED",
        f"{FAMILY}:3",
    )  # fmt: skip


# ---- on moto, through the CLI ------------------------------------------------------------------


@pytest.fixture
def checkout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    return service_checkout(
        tmp_path,
        monkeypatch,
        service_yaml=SERVICE_YAML,
        staging_yaml=aws_world.STAGING_YAML,
        lemi_yml=aws_world.LEMI_YML,
        repo="acme/demo-service",
    )


@pytest.fixture
def writes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every write moto's scheduler received, in order ("CreateSchedule nightly-report", ...)."""
    seen: list[str] = []
    for method, label in (("create_schedule", "CreateSchedule"), ("update_schedule", "UpdateSchedule"),
                          ("delete_schedule", "DeleteSchedule"), ("create_schedule_group", "CreateScheduleGroup"),
                          ("delete_schedule_group", "DeleteScheduleGroup")):  # fmt: skip
        original = getattr(EventBridgeSchedulerBackend, method)

        def recording(self: Any, *args: Any, _original: Any = original, _label: str = label, **kwargs: Any) -> Any:
            seen.append(f"{_label} {kwargs.get('name', args[-1] if args else '')}".strip())
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(EventBridgeSchedulerBackend, method, recording)
    return seen


@pytest.fixture
def placed(world: aws_world.World, sim: ecs_sim.Sim) -> aws_world.World:
    """The ECS service in subnets and a security group, as the example module makes it."""
    sim.service(CLUSTER, SERVICE).network_configuration = NETWORK
    return world


def lemi(*argv: str) -> int:
    return lemi_here(*argv)


def deploy(world: aws_world.World, sim: ecs_sim.Sim, tag: str, capsys: pytest.CaptureFixture[str],
           *, code: int = 0, push: bool = True) -> dict[str, Any]:  # fmt: skip
    if push:
        aws_world.push_image(world.endpoint, tag)
    assert lemi("deploy", "-e", ENV, "-t", tag, "--poll", POLL, "--timeout", "5", "--output", "json") == code
    out: dict[str, Any] = json.loads(capsys.readouterr().out)
    return out


def scheduler(world: aws_world.World) -> Any:
    return aws_world.client("scheduler", world.endpoint)


def group_schedules(world: aws_world.World) -> dict[str, dict[str, Any]]:
    client = scheduler(world)
    listed = client.list_schedules(GroupName=GROUP)["Schedules"]
    return {s["Name"]: client.get_schedule(GroupName=GROUP, Name=s["Name"]) for s in listed
            if s["GroupName"] == GROUP}  # fmt: skip


def revision(schedule: dict[str, Any]) -> str:
    return str(schedule["Target"]["EcsParameters"]["TaskDefinitionArn"]).rsplit("/", 1)[-1]


def test_the_first_deploy_creates_the_group_and_schedules_running_the_deployed_revision(
    placed: aws_world.World, sim: ecs_sim.Sim, checkout: Path, writes: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    sim.complete(after=1)
    out = deploy(placed, sim, "v2", capsys)
    assert out["ok"] is True
    assert out["schedules"] == {"created": ["hourly-cleanup", "nightly-report"], "updated": [], "deleted": [],
                                "unchanged": [], "error": ""}  # fmt: skip
    group = scheduler(placed).get_schedule_group(Name=GROUP)
    tags = scheduler(placed).list_tags_for_resource(ResourceArn=group["Arn"])["Tags"]
    assert {t["Key"]: t["Value"] for t in tags} == {"managed-by": "lemi", "service": SERVICE, "environment": ENV}
    found = group_schedules(placed)
    assert sorted(found) == ["hourly-cleanup", "nightly-report"]
    nightly = found["nightly-report"]
    assert nightly["ScheduleExpression"] == "cron(0 3 * * ? *)"
    assert nightly["ScheduleExpressionTimezone"] == "Europe/Paris"
    assert nightly["State"] == "ENABLED"
    target = nightly["Target"]
    assert target["Arn"] == CLUSTER_ARN and target["RoleArn"] == ROLE
    assert revision(nightly) == f"{FAMILY}:2" == out["revision"]
    ecs = target["EcsParameters"]
    assert ecs["LaunchType"] == "FARGATE" and ecs["TaskCount"] == 1
    assert ecs["NetworkConfiguration"]["awsvpcConfiguration"] == {
        "Subnets": ["subnet-a", "subnet-b"], "SecurityGroups": ["sg-1"], "AssignPublicIp": "DISABLED"}  # fmt: skip
    assert json.loads(target["Input"])["containerOverrides"] == [{"name": SERVICE,
                                                                  "command": ["bin/report", "--daily"]}]  # fmt: skip
    assert writes[0] == f"CreateScheduleGroup {GROUP}"


def test_a_later_deploy_updates_deletes_and_creates_and_an_unchanged_one_writes_nothing(
    placed: aws_world.World, sim: ecs_sim.Sim, checkout: Path, writes: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    sim.complete(after=1)
    deploy(placed, sim, "v2", capsys)
    write(checkout, "deploy/demo-service/service.yaml", CHANGED_YAML)
    writes.clear()
    out = deploy(placed, sim, "v3", capsys)
    assert out["schedules"] == {"created": ["weekly-digest"], "updated": ["nightly-report"],
                                "deleted": ["hourly-cleanup"], "unchanged": [], "error": ""}  # fmt: skip
    assert sorted(writes) == ["CreateSchedule weekly-digest", "DeleteSchedule hourly-cleanup",
                              "UpdateSchedule nightly-report"]  # fmt: skip
    found = group_schedules(placed)
    assert sorted(found) == ["nightly-report", "weekly-digest"]
    assert found["nightly-report"]["ScheduleExpression"] == "cron(30 4 * * ? *)"
    assert found["weekly-digest"]["State"] == "DISABLED"
    assert {revision(s) for s in found.values()} == {f"{FAMILY}:3"}
    # the same deploy again: nothing differs, nothing is written
    writes.clear()
    out = deploy(placed, sim, "v3", capsys, push=False)
    assert out["ok"] is True and out["schedules"]["unchanged"] == ["nightly-report", "weekly-digest"]
    assert writes == []


def test_a_failed_rollout_leaves_the_schedules_alone(
    placed: aws_world.World, sim: ecs_sim.Sim, checkout: Path, writes: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    sim.complete(after=1)
    deploy(placed, sim, "v2", capsys)
    write(checkout, "deploy/demo-service/service.yaml", CHANGED_YAML)
    writes.clear()
    sim.circuit_breaker(after=1)
    out = deploy(placed, sim, "v3", capsys, code=1)
    assert out["ok"] is False and out["schedules"] is None
    assert writes == []
    found = group_schedules(placed)
    assert sorted(found) == ["hourly-cleanup", "nightly-report"]
    assert {revision(s) for s in found.values()} == {f"{FAMILY}:2"}


def test_a_deploy_without_wait_says_who_updates_the_schedules(
    placed: aws_world.World, sim: ecs_sim.Sim, checkout: Path, writes: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    aws_world.push_image(placed.endpoint, "v2")
    assert lemi("deploy", "-e", ENV, "-t", "v2", "--no-wait") == 0
    out = capsys.readouterr().out
    assert "schedules are updated once a rollout completes: by `lemi deploy --wait`, or by the App" in out
    assert writes == []


def test_a_rollback_points_the_schedules_at_the_restored_revision_and_a_restart_leaves_them(
    placed: aws_world.World, sim: ecs_sim.Sim, checkout: Path, writes: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    sim.complete(after=1)
    placed.deployed(placed.first_revision)  # an earlier good deploy: the second rollback's target
    deploy(placed, sim, "v2", capsys)
    deploy(placed, sim, "v3", capsys)
    assert {revision(s) for s in group_schedules(placed).values()} == {f"{FAMILY}:3"}
    writes.clear()
    assert lemi("service", "restart", "-e", ENV, "--poll", POLL, "--output", "json") == 0
    assert json.loads(capsys.readouterr().out)["schedules"] is None
    assert writes == []
    assert lemi("service", "rollback", "-e", ENV, "--poll", POLL, "--output", "json") == 0
    out = json.loads(capsys.readouterr().out)
    assert out["revision"] == f"{FAMILY}:2"
    assert out["schedules"]["updated"] == ["hourly-cleanup", "nightly-report"]
    found = group_schedules(placed)
    assert {revision(s) for s in found.values()} == {f"{FAMILY}:2"}
    # only the revision changed
    assert found["nightly-report"]["ScheduleExpression"] == "cron(0 3 * * ? *)"
    assert sorted(writes) == ["UpdateSchedule hourly-cleanup", "UpdateSchedule nightly-report"]
    assert lemi("service", "rollback", "-e", ENV, "--poll", POLL) == 0
    assert "schedules updated hourly-cleanup, nightly-report" in capsys.readouterr().out


def test_status_lists_the_schedules(
    placed: aws_world.World, sim: ecs_sim.Sim, checkout: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sim.complete(after=1)
    deploy(placed, sim, "v2", capsys)
    assert lemi("service", "status", "-e", ENV, "--output", "json") == 0
    listed = json.loads(capsys.readouterr().out)["schedules"]
    assert listed == [
        {"name": "hourly-cleanup", "expression": "0 * * * ? *", "timezone": "UTC", "task": "cleanup",
         "command": ["bin/cleanup"], "state": "ENABLED", "revision": f"{FAMILY}:2"},
        {"name": "nightly-report", "expression": "0 3 * * ? *", "timezone": "Europe/Paris", "task": "report",
         "command": ["bin/report", "--daily"], "state": "ENABLED", "revision": f"{FAMILY}:2"},
    ]  # fmt: skip
    assert lemi("service", "status", "-e", ENV) == 0
    table = capsys.readouterr().out
    for row in (("hourly-cleanup", "0 * * * ? *", "UTC", "cleanup", "ENABLED", f"{FAMILY}:2"),
                ("nightly-report", "0 3 * * ? *", "Europe/Paris", "report", "ENABLED", f"{FAMILY}:2")):  # fmt: skip
        line = next(line for line in table.splitlines() if row[0] in line)
        for cell in row:
            assert cell in line, (cell, line)


def test_a_file_without_schedules_leaves_no_group(
    placed: aws_world.World, sim: ecs_sim.Sim, checkout: Path, writes: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    sim.complete(after=1)
    deploy(placed, sim, "v2", capsys)
    write(checkout, "deploy/demo-service/service.yaml", aws_world.SERVICE_YAML)
    out = deploy(placed, sim, "v3", capsys)
    assert out["schedules"]["deleted"] == ["hourly-cleanup", "nightly-report"]
    assert scheduler(placed).list_schedule_groups(NamePrefix=GROUP)["ScheduleGroups"] == []
    writes.clear()
    assert deploy(placed, sim, "v4", capsys)["schedules"] == {"created": [], "updated": [], "deleted": [],
                                                               "unchanged": [], "error": ""}  # fmt: skip
    assert writes == []  # no group is made for nothing


def deny_create(monkeypatch: pytest.MonkeyPatch) -> None:
    def denied(self: Any, *args: Any, **kwargs: Any) -> Any:
        raise JsonRESTError("AccessDeniedException", "User is not authorized to perform: scheduler:CreateSchedule")

    monkeypatch.setattr(EventBridgeSchedulerBackend, "create_schedule", denied)


def test_a_failed_sync_leaves_the_deploy_succeeded_and_says_why(
    placed: aws_world.World, sim: ecs_sim.Sim, checkout: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    sim.complete(after=1)
    deny_create(monkeypatch)
    out = deploy(placed, sim, "v2", capsys)
    assert out["ok"] is True and out["rollout"]["outcome"] == "completed"
    error = out["schedules"]["error"]
    assert "AccessDeniedException" in error and "scheduler:CreateSchedule" in error
    assert "iam:PassRole on demo-service-staging-scheduler" in error  # what to fix
    aws_world.push_image(placed.endpoint, "v3")
    assert lemi("deploy", "-e", ENV, "-t", "v3", "--poll", POLL, "--timeout", "5") == 0
    text = capsys.readouterr().out
    assert "deployed demo-service to staging" in text
    assert "the schedules could not be updated: AWS refused CreateSchedule: AccessDeniedException" in text
    assert "Traceback" not in text


def test_a_watch_stored_before_schedules_still_decodes_and_leaves_them_alone() -> None:
    from bot.flows.watching import Ended, ReportDeploy, RolloutWatch, WatchState, decode, encode
    from bot.store.jobs import DeployRequest

    req = DeployRequest("acme/demo-service", SERVICE, ENV, "a" * 40, "v2", "octocat")
    body = RolloutWatch(ReportDeploy(req, "img", ""), SERVICE, ENV, f"{TD}:2", False, WatchState(f"{TD}:2", [], []),
                        0.0, 60.0, 1.0, ended=Ended("completed", "done", 1, 1, 2.0, "d"))  # fmt: skip
    old = json.loads(encode(body))
    del old["then"]["schedules"], old["ended"]["schedules"]  # what an earlier lemi stored
    decoded = decode(json.dumps(old).encode())
    assert isinstance(decoded.then, ReportDeploy) and decoded.then.schedules is None
    assert decoded.ended is not None and decoded.ended.schedules is None
    # and one stored now keeps the schedules it carries
    carried = spec_schedules(SERVICE_YAML)
    now = decode(encode(msgspec.structs.replace(body, then=ReportDeploy(req, "img", "", None, carried))))
    assert isinstance(now.then, ReportDeploy) and now.then.schedules == carried


def test_an_identity_without_the_scheduler_calls_deploys_a_file_without_schedules_quietly(
    world: aws_world.World, sim: ecs_sim.Sim, checkout: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    def denied(self: Any, *args: Any, **kwargs: Any) -> Any:
        raise JsonRESTError("AccessDeniedException", "User is not authorized to perform: scheduler:GetScheduleGroup")

    monkeypatch.setattr(EventBridgeSchedulerBackend, "get_schedule_group", denied)
    write(checkout, "deploy/demo-service/service.yaml", aws_world.SERVICE_YAML)
    sim.complete(after=1)
    world.deployed(world.first_revision)  # an earlier good deploy: the rollback's target
    assert deploy(world, sim, "v2", capsys)["schedules"]["error"] == ""  # it never could have made a group
    assert lemi("service", "rollback", "-e", ENV, "--poll", POLL, "--output", "json") == 0
    assert json.loads(capsys.readouterr().out)["schedules"]["error"] == ""
    # a file with schedules is another matter: it says why they are not there
    write(checkout, "deploy/demo-service/service.yaml", SERVICE_YAML)
    error = deploy(world, sim, "v3", capsys)["schedules"]["error"]
    assert "AccessDeniedException" in error and "scheduler:GetScheduleGroup" in error
