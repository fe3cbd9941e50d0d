"""One-off tasks on moto's ECS (bot/aws/tasks.py): how a task is started, and the truth about
how it ended -- each of ECS's ways for a task to fail is reported as a failure with its reason.

Tasks follow scripts (tests/ecs_tasks.py), never moto's own "STOPPED, exit code 0".
"""

from __future__ import annotations

import aws_world
import ecs_tasks
import pytest
from aws_world import CLUSTER, SERVICE

from bot.aws import tasks as task_runs
from bot.aws.clients import AwsClients
from bot.aws.ecs import Ecs

ENV = "staging"
FAST = task_runs.TaskWait(timeout=5.0, poll=0.01)
MIGRATE = ["bin/migrate", "--apply"]


async def run(world: aws_world.World, how: task_runs.TaskWait = FAST, name: str = "migrate") -> task_runs.TaskEnd:
    async with AwsClients(world.config) as aws:
        ecs = await Ecs.open(aws, ENV)
        service = await ecs.describe_service(SERVICE)
        started = await task_runs.start(ecs, service, service["taskDefinition"], SERVICE, name, MIGRATE)
        return await task_runs.wait(ecs, started.arn, SERVICE, how)


async def test_a_task_runs_in_the_services_revision_network_and_launch_type(
    world: aws_world.World, tasks: ecs_tasks.TaskSim
) -> None:
    end = await run(world)
    assert end.succeeded and end.exit_code == 0
    (one,) = tasks.runs
    service = world.ecs().describe_services(cluster=CLUSTER, services=[SERVICE])["services"][0]
    assert one.name == "migrate" and one.command == MIGRATE
    assert one.revision == service["taskDefinition"]
    assert one.params["launch_type"] == "FARGATE"
    assert one.params["networking_configuration"] == service["networkConfiguration"]
    assert one.task.started_by == "lemi"
    # the override is on the service's container: ECS reports it so
    described = world.ecs().describe_tasks(cluster=CLUSTER, tasks=[one.task.task_arn])["tasks"][0]
    assert described["overrides"]["containerOverrides"] == [{"name": SERVICE, "command": MIGRATE}]


async def test_a_migration_that_exits_3_fails_with_its_code(world: aws_world.World, tasks: ecs_tasks.TaskSim) -> None:
    tasks.script("migrate", ecs_tasks.exits(3, after=2))
    end = await run(world)
    assert (end.succeeded, end.exit_code, end.reason) == (False, 3, "exited with code 3")


async def test_pending_to_stopped_between_two_looks_is_judged_by_its_exit_code(
    world: aws_world.World, tasks: ecs_tasks.TaskSim
) -> None:
    tasks.script("migrate", ecs_tasks.quick_exit(0), ecs_tasks.quick_exit(2))
    assert (await run(world)).succeeded
    end = await run(world)
    assert (end.succeeded, end.exit_code) == (False, 2)


async def test_a_task_that_never_starts_fails_with_ecs_reason(world: aws_world.World, tasks: ecs_tasks.TaskSim) -> None:
    tasks.script("migrate", ecs_tasks.never_starts("CannotPullContainerError: manifest unknown"))
    end = await run(world)
    assert not end.succeeded and end.exit_code is None
    assert end.reason == "never started: CannotPullContainerError: manifest unknown"


async def test_mottos_stopped_with_exit_0_though_nothing_ran_is_a_failure(
    world: aws_world.World, tasks: ecs_tasks.TaskSim
) -> None:
    tasks.script("migrate", ecs_tasks.moto_default())
    end = await run(world)
    assert not end.succeeded and end.reason.startswith("never started")


async def test_a_task_stopped_by_someone_else_fails_saying_so(world: aws_world.World, tasks: ecs_tasks.TaskSim) -> None:
    tasks.script("migrate", ecs_tasks.stopped_by_someone(after=1, reason="Task stopped by alice"))
    end = await run(world)
    assert not end.succeeded and end.reason == "stopped by someone else: Task stopped by alice"


async def test_a_task_past_its_bound_is_stopped_and_fails(world: aws_world.World, tasks: ecs_tasks.TaskSim) -> None:
    tasks.script("migrate", ecs_tasks.forever())
    end = await run(world, task_runs.TaskWait(timeout=0.05, poll=0.01))
    assert not end.succeeded and end.reason.startswith("ran past its bound")
    (one,) = tasks.runs
    assert one.task.last_status == "STOPPED" and one.task.stopped_reason == task_runs.OVERDUE_REASON


async def test_a_service_without_network_configuration_cannot_run_a_task() -> None:
    service = {"serviceName": SERVICE, "launchType": "FARGATE"}
    with pytest.raises(task_runs.OperationError, match="no network configuration"):
        task_runs.run_parameters(CLUSTER, service, "arn:td:1", SERVICE, "migrate", MIGRATE)  # type: ignore[arg-type]


def test_a_capacity_provider_strategy_is_kept_instead_of_a_launch_type() -> None:
    service = {"serviceName": SERVICE, "networkConfiguration": {"awsvpcConfiguration": {"subnets": ["s"]}},
               "capacityProviderStrategy": [{"capacityProvider": "FARGATE_SPOT", "weight": 1}], "platformVersion": "1.4.0"}  # fmt: skip
    params = task_runs.run_parameters(CLUSTER, service, "arn:td:1", SERVICE, "migrate", MIGRATE)  # type: ignore[arg-type]
    assert "launchType" not in params and params["capacityProviderStrategy"][0]["capacityProvider"] == "FARGATE_SPOT"
    assert params["platformVersion"] == "1.4.0" and params["group"] == "lemi-task:migrate"


@pytest.mark.parametrize(
    ("task", "succeeded", "reason"),
    [
        (
            {
                "lastStatus": "STOPPED",
                "stopCode": "SpotInterruption",
                "startedAt": 1,
                "stoppedReason": "spot",
                "containers": [{"name": SERVICE, "exitCode": 0}],
            },
            False,
            "stopped by ECS (SpotInterruption): spot",
        ),  # fmt: skip
        (
            {
                "lastStatus": "STOPPED",
                "stopCode": "EssentialContainerExited",
                "startedAt": 1,
                "containers": [{"name": SERVICE, "exitCode": 137, "reason": "OutOfMemoryError"}],
            },
            False,
            "exited with code 137 (OutOfMemoryError)",
        ),  # fmt: skip
        (
            {
                "lastStatus": "STOPPED",
                "stopCode": "EssentialContainerExited",
                "startedAt": 1,
                "containers": [{"name": "datadog-agent", "exitCode": 0}, {"name": SERVICE, "exitCode": 0}],
            },
            True,
            "exited with code 0",
        ),  # fmt: skip
        (
            {"lastStatus": "STOPPED", "startedAt": 1, "containers": [{"name": "datadog-agent", "exitCode": 0}]},
            False,
            "never started: ECS gave no reason",
        ),  # fmt: skip
        (None, False, "ECS no longer knows the task (it stopped long ago, or was never there)"),
    ],
)
def test_judge(task: dict[str, object] | None, succeeded: bool, reason: str) -> None:
    end = task_runs.judge(task, SERVICE, elapsed=1.0, timeout=60.0)
    assert end is not None and (end.succeeded, end.reason) == (succeeded, reason)


def test_a_running_task_has_no_verdict_until_its_bound() -> None:
    running = {"lastStatus": "RUNNING", "startedAt": 1}
    assert task_runs.judge(running, SERVICE, elapsed=59.0, timeout=60.0) is None
    overdue = task_runs.judge(running, SERVICE, elapsed=61.0, timeout=60.0)
    assert overdue is not None and overdue.overdue and overdue.reason == "ran past its bound of 1 min; lemi stopped it"
