"""Operating a running service: status, tasks, restart, stop a task,
rollback, diff against the compiled definition, and revision clean-up.

Every function returns data (dataclasses with ``as_dict``); the CLI renders
tables, the App renders comments.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from bot.aws import schedules
from bot.aws.clients import AwsClients
from bot.aws.ecs import Ecs, revision_of, task_id
from bot.aws.errors import AwsError, OperationError
from bot.aws.history import rollback_target
from bot.aws.rollout import DeployResult, RolloutRequest, Situation, Wait, deploy, execute, plan
from bot.core.compile import render
from bot.core.conventions import family
from bot.core.schedules import ScheduleInfo

if TYPE_CHECKING:  # the stubs are a development dependency
    from types_aiobotocore_ecs.type_defs import ServiceTypeDef, TaskDefinitionTypeDef, TaskTypeDef

DEFAULT_WAIT = Wait()


def _when(value: Any) -> str:
    return value.isoformat(timespec="seconds") if isinstance(value, datetime) else str(value or "")


@dataclass
class DeploymentInfo:
    id: str
    status: str
    rollout_state: str
    revision: str
    desired: int
    running: int
    pending: int
    failed: int
    created: str


@dataclass
class ServiceStatus:
    service: str
    environment: str
    cluster: str
    status: str
    desired: int
    running: int
    pending: int
    revision: str
    image: str
    image_tag: str
    deployments: list[DeploymentInfo] = field(default_factory=list)
    events: list[str] = field(default_factory=list)
    schedules: list[ScheduleInfo] = field(default_factory=list)  # EventBridge Scheduler, bot/aws/schedules.py
    schedules_error: str = ""  # why they could not be read

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _service_image(task_definition: TaskDefinitionTypeDef, service: str) -> str:
    for container in task_definition.get("containerDefinitions", []):
        if container.get("name") == service:
            return str(container.get("image", ""))
    containers = task_definition.get("containerDefinitions", [])
    return str(containers[0].get("image", "")) if containers else ""


def _tag_of(image: str) -> str:
    if "@" in image:
        return image.rsplit("@", 1)[1]
    last = image.rsplit("/", 1)[-1]
    return last.rsplit(":", 1)[1] if ":" in last else "latest"


async def status(aws: AwsClients, env_name: str, service: str, *, events: int = 10) -> ServiceStatus:
    ecs = await Ecs.open(aws, env_name)
    current = await ecs.describe_service(service)
    described, _ = await ecs.describe_task_definition(current["taskDefinition"])
    image = _service_image(described, service)
    deployments = [
        DeploymentInfo(
            d["id"],
            d.get("status", ""),
            d.get("rolloutState", ""),
            revision_of(d.get("taskDefinition", "")),
            int(d.get("desiredCount", 0)),
            int(d.get("runningCount", 0)),
            int(d.get("pendingCount", 0)),
            int(d.get("failedTasks", 0)),
            _when(d.get("createdAt")),
        )
        for d in current.get("deployments", [])
    ]
    return ServiceStatus(
        service,
        env_name,
        ecs.cluster,
        current.get("status", ""),
        int(current.get("desiredCount", 0)),
        int(current.get("runningCount", 0)),
        int(current.get("pendingCount", 0)),
        revision_of(current["taskDefinition"]),
        image,
        _tag_of(image),
        deployments,
        [f"{_when(e.get('createdAt'))} {e.get('message', '')}" for e in current.get("events", [])[:events]],
        *await _schedules(aws, env_name, service),
    )


async def _schedules(aws: AwsClients, env_name: str, service: str) -> tuple[list[ScheduleInfo], str]:
    try:
        return await schedules.listed(aws, env_name, service), ""
    except AwsError as exc:  # the rest of the status is still worth showing
        return [], str(exc).replace("\n    hint: ", " — ")


@dataclass
class TaskInfo:
    task_id: str
    last_status: str
    desired_status: str
    revision: str
    health: str
    started: str
    stopped_reason: str
    availability_zone: str


async def list_tasks(aws: AwsClients, env_name: str, service: str, *, stopped: bool = False) -> list[TaskInfo]:
    ecs = await Ecs.open(aws, env_name)
    await ecs.describe_service(service)
    listed = await ecs.client.list_tasks(
        cluster=ecs.cluster, serviceName=service, desiredStatus="STOPPED" if stopped else "RUNNING"
    )
    arns = listed.get("taskArns", [])
    if not arns:
        return []
    tasks: list[TaskTypeDef] = []
    for i in range(0, len(arns), 100):  # DescribeTasks takes at most 100
        described = await ecs.client.describe_tasks(cluster=ecs.cluster, tasks=arns[i : i + 100])
        tasks.extend(described.get("tasks", []))
    return sorted((_task_info(t, _when(t.get("startedAt") or t.get("createdAt"))) for t in tasks),
                  key=lambda t: (t.started, t.task_id))  # fmt: skip


def _task_info(t: TaskTypeDef, started: str, stopped_reason: str = "") -> TaskInfo:
    return TaskInfo(
        task_id(t["taskArn"]),
        t.get("lastStatus", ""),
        t.get("desiredStatus", ""),
        revision_of(t.get("taskDefinitionArn", "")),
        t.get("healthStatus", "UNKNOWN"),
        started,
        t.get("stoppedReason", stopped_reason),
        t.get("availabilityZone", ""),
    )


async def stop_task(aws: AwsClients, env_name: str, service: str, task: str, *, reason: str) -> TaskInfo:
    """Stop one task of ``service``; a task of another service is refused."""
    ecs = await Ecs.open(aws, env_name)
    wanted = task_id(task)
    described = await ecs.client.describe_tasks(cluster=ecs.cluster, tasks=[wanted])
    found = described.get("tasks", [])
    if not found:
        raise OperationError(
            f"there is no task {wanted} in cluster {ecs.cluster} ({env_name})",
            "list the service's tasks with `lemi service list-tasks`",
        )
    if found[0].get("group") != f"service:{service}":
        raise OperationError(
            f"task {wanted} does not belong to service {service}",
            "you can only stop tasks of the service you operate; list them with `lemi service list-tasks`",
        )
    stopped = await ecs.client.stop_task(cluster=ecs.cluster, task=found[0]["taskArn"], reason=reason[:255])
    return _task_info(stopped["task"], _when(stopped["task"].get("startedAt")), reason)


async def restart(aws: AwsClients, env_name: str, service: str, *, wait: Wait | None = DEFAULT_WAIT) -> DeployResult:
    """Replace every task with a fresh one of the same revision (a forced new deployment)."""
    ecs = await Ecs.open(aws, env_name)
    return await deploy(ecs, RolloutRequest(service, force_new_deployment=True), wait)


async def previous_revision(aws: AwsClients, env_name: str, service: str) -> tuple[str, str]:
    """(current ARN, the revision a rollback returns to: bot/aws/history.py)."""
    current, previous = await _previous(await Ecs.open(aws, env_name), service)
    return current["taskDefinition"], previous


async def _previous(ecs: Ecs, service: str) -> tuple[ServiceTypeDef, str]:
    """(the service as described, the revision lemi deployed successfully before the one it runs)."""
    current = await ecs.describe_service(service)
    return current, await rollback_target(ecs, current["taskDefinition"])


async def rollback(
    aws: AwsClients, env_name: str, service: str, *, to: str | None = None, wait: Wait | None = DEFAULT_WAIT
) -> DeployResult:
    """Roll back to the revision lemi deployed successfully before the running one (the newest
    ``lemi:deployed-at`` below it: bot/core/history.py), or to ``to`` (an ARN chosen earlier)."""
    ecs = await Ecs.open(aws, env_name)
    if to is not None:
        return await deploy(ecs, RolloutRequest(service, to), wait)
    current, previous = await _previous(ecs, service)  # the service described once: it is the situation
    request = RolloutRequest(service, previous)
    return await execute(ecs, plan(request, Situation(current, previous)), wait)


@dataclass
class Diff:
    service: str
    environment: str
    running: str  # revision
    text: str  # unified diff, empty when identical

    @property
    def different(self) -> bool:
        return bool(self.text)

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "different": self.different}


async def diff(aws: AwsClients, env_name: str, service: str, compiled: dict[str, Any]) -> Diff:
    """The running task definition against a compiled one, as a unified diff."""
    ecs = await Ecs.open(aws, env_name)
    current = await ecs.describe_service(service)
    running = await ecs.running_definition(current, compiled)
    revision = revision_of(current["taskDefinition"])
    return Diff(service, env_name, revision, definition_diff(running, compiled, revision))


def definition_diff(running: Mapping[str, Any], compiled: Mapping[str, Any], revision: str) -> str:
    """The unified diff of ``running`` (revision ``revision``, in the compiled shape) against
    ``compiled``; empty when they are identical."""
    lines = difflib.unified_diff(
        render(dict(running)).splitlines(keepends=True),
        render(dict(compiled)).splitlines(keepends=True),
        fromfile=f"running ({revision})",
        tofile="compiled",
    )
    return "".join(lines)


@dataclass
class Pruned:
    kept: list[str]
    deregistered: list[str]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


async def prune(aws: AwsClients, env_name: str, service: str, *, keep: int) -> Pruned:
    """Deregister all but the newest ``keep`` revisions; never one a deployment uses."""
    if keep < 1:
        raise OperationError("--keep must be at least 1", "keep the running revision and a few to roll back to")
    ecs = await Ecs.open(aws, env_name)
    current = await ecs.describe_service(service)
    in_use = {d.get("taskDefinition") for d in current.get("deployments", [])} | {current["taskDefinition"]}
    revisions = await ecs.revisions(family(service, env_name))
    kept = revisions[:keep] + [a for a in revisions[keep:] if a in in_use]
    gone = []
    for arn in revisions[keep:]:
        if arn in in_use:
            continue
        await ecs.client.deregister_task_definition(taskDefinition=arn)
        gone.append(revision_of(arn))
    return Pruned([revision_of(a) for a in kept], gone)
