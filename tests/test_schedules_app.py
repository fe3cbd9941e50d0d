"""Schedules through the App: a push deploy (its rollout ended by the watcher) makes them match the
pushed commit's file, a failed one leaves them, a sync AWS refuses is reported beside the
success; ``/lemi rollback`` points them at the revision it restored and ``/lemi status`` lists them.

Real webhooks into lemi's app, queue, workers and watcher, the GitHub fake, moto's server (ECS
rollouts by ecs_sim; moto's scheduler only stores what it is told).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aws_world
import ecs_sim
import pytest
from aws_world import CLUSTER, SERVICE
from fakes.webhooks import ZERO_SHA
from moto.core.exceptions import JsonRESTError
from moto.scheduler.models import EventBridgeSchedulerBackend
from slash_world import Env
from test_push_deploy import CHECK, REPO, app_for, push
from test_schedules import CHANGED_YAML, NETWORK, SERVICE_YAML, spec_schedules

from bot.core.compile import compile_for
from bot.core.conventions import scheduler_role_arn
from bot.core.schedules import Placement, desired

GROUP = "demo-service-staging"
FAMILY = "demo-service-staging"
pytestmark = pytest.mark.usefixtures("shared_api_models")


def files(service_yaml: str) -> dict[str, str]:
    return {**aws_world.SERVICE_FILES, "deploy/demo-service/service.yaml": service_yaml}


def scheduler(world: aws_world.World) -> Any:
    return aws_world.client("scheduler", world.endpoint)


def group_schedules(world: aws_world.World) -> dict[str, dict[str, Any]]:
    client = scheduler(world)
    try:
        listed = client.list_schedules(GroupName=GROUP)["Schedules"]
    except client.exceptions.ResourceNotFoundException:
        return {}
    return {s["Name"]: client.get_schedule(GroupName=GROUP, Name=s["Name"]) for s in listed
            if s["GroupName"] == GROUP}  # fmt: skip


def revision(schedule: dict[str, Any]) -> str:
    return str(schedule["Target"]["EcsParameters"]["TaskDefinitionArn"]).rsplit("/", 1)[-1]


def final_run(github: Any, sha: str) -> Any:
    (run,) = [r for r in github.check_runs(REPO, sha=sha) if r.name == CHECK]
    return run


def test_push_deploys_make_the_schedules_match_the_pushed_file(
    github: Any, repos: int, world: aws_world.World, sim: ecs_sim.Sim, tmp_path: Path
) -> None:
    sim.service(CLUSTER, SERVICE).network_configuration = NETWORK
    first = github.commit(REPO, "develop", files(SERVICE_YAML))
    aws_world.push_image(world.endpoint, first)
    with app_for(github, tmp_path) as app:
        push(app, github, "develop", ZERO_SHA, first)
        run = final_run(github, first)
        assert (run.status, run.conclusion) == ("completed", "success")
        assert "Schedules: created `hourly-cleanup`, `nightly-report`." in run.output["summary"]
        found = group_schedules(world)
        assert sorted(found) == ["hourly-cleanup", "nightly-report"]
        assert {revision(s) for s in found.values()} == {f"{FAMILY}:2"}
        nightly = found["nightly-report"]
        assert nightly["ScheduleExpressionTimezone"] == "Europe/Paris"
        assert nightly["Target"]["EcsParameters"]["NetworkConfiguration"]["awsvpcConfiguration"]["Subnets"] == [
            "subnet-a", "subnet-b"]  # fmt: skip
        assert json.loads(nightly["Target"]["Input"])["containerOverrides"][0]["command"] == ["bin/report", "--daily"]

        second = github.commit(REPO, "develop", files(CHANGED_YAML))
        aws_world.push_image(world.endpoint, second)
        push(app, github, "develop", first, second)
        summary = final_run(github, second).output["summary"]
        assert "Schedules: created `weekly-digest`; updated `nightly-report`; deleted `hourly-cleanup`." in summary
        found = group_schedules(world)
        assert sorted(found) == ["nightly-report", "weekly-digest"]
        assert {revision(s) for s in found.values()} == {f"{FAMILY}:3"}
        assert found["nightly-report"]["ScheduleExpression"] == "cron(30 4 * * ? *)"


def test_a_failed_push_deploy_leaves_the_schedules(
    github: Any, repos: int, world: aws_world.World, sim: ecs_sim.Sim, tmp_path: Path
) -> None:
    sha = github.commit(REPO, "develop", files(SERVICE_YAML))
    aws_world.push_image(world.endpoint, sha)
    sim.circuit_breaker(after=1)
    with app_for(github, tmp_path) as app:
        push(app, github, "develop", ZERO_SHA, sha)
    run = final_run(github, sha)
    assert run.conclusion == "failure" and "Schedules" not in run.output["summary"]
    assert scheduler(world).list_schedule_groups(NamePrefix=GROUP)["ScheduleGroups"] == []


def test_a_sync_aws_refuses_leaves_the_deploy_succeeded_and_says_why(
    github: Any, repos: int, world: aws_world.World, sim: ecs_sim.Sim, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    def denied(self: Any, *args: Any, **kwargs: Any) -> Any:
        raise JsonRESTError("AccessDeniedException", "User is not authorized to perform: scheduler:CreateSchedule")

    monkeypatch.setattr(EventBridgeSchedulerBackend, "create_schedule", denied)
    sha = github.commit(REPO, "develop", files(SERVICE_YAML))
    aws_world.push_image(world.endpoint, sha)
    with app_for(github, tmp_path) as app:
        push(app, github, "develop", ZERO_SHA, sha)
    (deployment,) = github.deployments(REPO)
    final = deployment.statuses[-1]
    assert final.state == "success"
    assert "the schedules could not be updated" in final.description
    run = final_run(github, sha)
    assert run.conclusion == "success" and "the schedules could not be updated" in run.output["title"]
    summary = run.output["summary"]
    assert "**The schedules could not be updated**" in summary
    assert "AccessDeniedException" in summary and "iam:PassRole on demo-service-staging-scheduler" in summary
    assert "Traceback" not in summary
    assert "could not update the schedules of demo-service in staging" in capsys.readouterr().err  # logged


# ---- slash commands ------------------------------------------------------------------------------


def seed_schedules(env: Env, task_definition: str) -> None:
    """What an earlier deploy of a file with one schedule left (made with lemi's own parameters)."""
    described = env.world.ecs().describe_services(cluster=CLUSTER, services=[SERVICE])["services"][0]
    role = scheduler_role_arn(SERVICE, "staging", env.world.config.environment("staging"))
    wanted = spec_schedules(aws_world.SERVICE_YAML + '  tasks: {report: ["bin/report"]}\n'
                            '  schedules: {nightly: {task: report, cron: "0 3 * * ? *"}}\n')  # fmt: skip
    client = scheduler(env.world)
    client.create_schedule_group(Name=GROUP)
    for params in desired(SERVICE, "staging", wanted, task_definition=task_definition,
                          placement=Placement.of(described), role_arn=role).values():  # fmt: skip
        client.create_schedule(**params)


def test_a_slash_rollback_points_the_schedules_at_the_restored_revision_and_status_lists_them(
    start: Callable[..., Env],
) -> None:
    env = start()
    ecs = env.world.ecs()
    arns = {}
    for tag in ("v2", "v3"):
        aws_world.push_image(env.world.endpoint, tag)
        td = compile_for(env.world.config, env.world.files, "staging", tag).task_definition
        arns[tag] = ecs.register_task_definition(**td)["taskDefinition"]["taskDefinitionArn"]
        ecs.update_service(cluster=CLUSTER, service=SERVICE, taskDefinition=arns[tag])
        ecs.describe_services(cluster=CLUSTER, services=[SERVICE])  # rolled out
        env.world.deployed(arns[tag])  # as lemi marks a completed rollout: the rollback's history
    seed_schedules(env, arns["v3"])
    env.sim.complete(after=1)
    env.comment("/lemi rollback", user="alice")
    reply = env.replies()[-1]
    assert "rollout completed" in reply, reply
    assert "Schedules: updated `nightly`." in reply
    assert [revision(s) for s in group_schedules(env.world).values()] == [f"{FAMILY}:2"]

    env.comment("/lemi restart", user="alice")  # the same revision: the schedules are left alone
    assert "Schedules" not in env.replies()[-1]

    env.comment("/lemi status", user="alice")
    status = env.replies()[-1]
    assert f"| `nightly` | `0 3 * * ? *` | UTC | report | ENABLED | `{FAMILY}:2` |" in status, status
