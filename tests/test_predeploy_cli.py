"""preDeploy tasks from the CLI (``lemi deploy``): register the revision, run each task in order in
it, then UpdateService; a task that fails stops the deploy before UpdateService.

ECS on moto: rollouts by tests/ecs_sim.py, one-off tasks by tests/ecs_tasks.py (never moto's own
"STOPPED with exit code 0").
"""

from __future__ import annotations

import json
from pathlib import Path

import aws_world
import ecs_sim
import ecs_tasks
import pytest
from aws_world import CLUSTER, SERVICE
from checkout import lemi_here, service_checkout

ENV = "staging"
WITH_TASKS = (
    aws_world.SERVICE_YAML
    + """\
  tasks:
    migrate: ["bin/migrate", "--apply"]
    seed: ["bin/seed"]
  preDeploy: [migrate, seed]
"""
)


@pytest.fixture
def checkout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    return service_checkout(
        tmp_path,
        monkeypatch,
        service_yaml=WITH_TASKS,
        staging_yaml=aws_world.STAGING_YAML,
        lemi_yml=aws_world.LEMI_YML,
        repo="acme/demo-service",
    )


def lemi(*argv: str) -> int:
    return lemi_here(*argv)


def running_revision(world: aws_world.World) -> str:
    return str(world.ecs().describe_services(cluster=CLUSTER, services=[SERVICE])["services"][0]["taskDefinition"])


def deploy(world: aws_world.World, tag: str, *extra: str, push: bool = True) -> int:
    if push:
        aws_world.push_image(world.endpoint, tag)
    return lemi("deploy", "-e", ENV, "-t", tag, "--poll", "0.01", "--timeout", "5", *extra)


def test_tasks_run_in_order_in_the_new_revision_before_update_service(
    world: aws_world.World, sim: ecs_sim.Sim, tasks: ecs_tasks.TaskSim, checkout: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    updates_when_run: list[int] = []
    tasks.on_run = lambda run: updates_when_run.append(sim.updates)
    assert deploy(world, "v2") == 0
    out = capsys.readouterr().out
    assert [r.name for r in tasks.runs] == ["migrate", "seed"]
    assert [r.command for r in tasks.runs] == [["bin/migrate", "--apply"], ["bin/seed"]]
    assert updates_when_run == [0, 0]  # both ran before UpdateService
    assert sim.updates == 1
    new = running_revision(world)
    assert new != world.first_revision and all(r.revision == new for r in tasks.runs)
    assert "preDeploy task migrate ok" in out and "preDeploy task seed ok" in out and "deployed" in out


def test_a_migration_exiting_3_blocks_the_deploy(
    world: aws_world.World, sim: ecs_sim.Sim, tasks: ecs_tasks.TaskSim, checkout: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    tasks.script("migrate", ecs_tasks.exits(3, after=2))
    assert deploy(world, "v2") == 1
    out = capsys.readouterr().out
    assert sim.updates == 0 and running_revision(world) == world.first_revision
    assert [r.name for r in tasks.runs] == ["migrate"]  # seed never ran
    assert "deploy failed (preDeploy): task migrate exited with code 3" in " ".join(out.split())
    assert "not updated" in out


def test_the_json_result_names_the_failed_task(
    world: aws_world.World, sim: ecs_sim.Sim, tasks: ecs_tasks.TaskSim, checkout: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    tasks.script("seed", ecs_tasks.never_starts("CannotPullContainerError: no such image"))
    assert deploy(world, "v2", "--output", "json") == 1
    result = json.loads(capsys.readouterr().out)
    assert result["ok"] is False and result["rollout"] is None
    migrate, seed = result["pre_deploy"]
    assert migrate["succeeded"] and migrate["exit_code"] == 0
    assert not seed["succeeded"] and seed["reason"] == "never started: CannotPullContainerError: no such image"
    assert seed["revision"] == result["revision"]


def test_no_wait_still_waits_for_the_tasks(
    world: aws_world.World, sim: ecs_sim.Sim, tasks: ecs_tasks.TaskSim, checkout: Path
) -> None:
    tasks.script("migrate", ecs_tasks.exits(0, after=3))
    assert deploy(world, "v2", "--no-wait") == 0
    assert [r.task.last_status for r in tasks.runs] == ["STOPPED", "STOPPED"]
    assert sim.updates == 1


def test_a_deploy_that_changes_nothing_runs_no_task(
    world: aws_world.World, sim: ecs_sim.Sim, tasks: ecs_tasks.TaskSim, checkout: Path
) -> None:
    assert deploy(world, "v2") == 0
    assert len(tasks.runs) == 2
    assert deploy(world, "v2", push=False) == 0  # the same revision: nothing rolls out, no migration runs again
    assert len(tasks.runs) == 2


def test_restart_and_rollback_run_no_task(
    world: aws_world.World, sim: ecs_sim.Sim, tasks: ecs_tasks.TaskSim, checkout: Path
) -> None:
    assert deploy(world, "v2") == 0
    assert lemi("service", "restart", "-e", ENV, "--poll", "0.01", "--timeout", "5") == 0
    assert len(tasks.runs) == 2


def test_where_logs_go_to_cloudwatch_the_cli_prints_a_failed_tasks_last_lines(
    world: aws_world.World, sim: ecs_sim.Sim, tasks: ecs_tasks.TaskSim, checkout: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    from test_app_logs import CLOUDWATCH_YML, app_stream, write_lines

    (checkout.parent / "lemi.yml").write_text(CLOUDWATCH_YML)
    tasks.script("migrate", ecs_tasks.exits(3, after=1))
    tasks.on_run = lambda run: write_lines(world, app_stream(run.task.id), "ERROR: relation exists")
    assert deploy(world, "v2", "--output", "json") == 1
    (migrate,) = json.loads(capsys.readouterr().out)["pre_deploy"]
    assert migrate["lines"] == ["ERROR: relation exists"]
