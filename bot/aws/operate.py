"""Operating a running service: status, tasks, restart, stop a task,
rollback, diff against the compiled definition, and revision clean-up.

Every function returns data (dataclasses with ``as_dict``); the CLI renders
tables, the App renders comments.
"""

from __future__ import annotations

import difflib
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from bot.aws.clients import AwsClients
from bot.aws.deploy import (
    DEFAULT_POLL,
    DEFAULT_TIMEOUT,
    DeployResult,
    comparable,
    describe_service,
    describe_task_definition,
    family_of,
    revision_number,
    revision_of,
    roll_out,
    task_id,
)
from bot.aws.errors import OperationError
from bot.core.compile import render
from bot.core.conventions import family


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

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _service_image(task_definition: dict[str, Any], service: str) -> str:
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
    current = await describe_service(aws, env_name, service)
    described, _ = await describe_task_definition(aws, env_name, current["taskDefinition"])
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
        aws.environment(env_name).cluster,
        current.get("status", ""),
        int(current.get("desiredCount", 0)),
        int(current.get("runningCount", 0)),
        int(current.get("pendingCount", 0)),
        revision_of(current["taskDefinition"]),
        image,
        _tag_of(image),
        deployments,
        [f"{_when(e.get('createdAt'))} {e.get('message', '')}" for e in current.get("events", [])[:events]],
    )


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
    await describe_service(aws, env_name, service)
    env = aws.environment(env_name)
    ecs = await aws.client(env_name, "ecs")
    listed = await ecs.list_tasks(
        cluster=env.cluster, serviceName=service, desiredStatus="STOPPED" if stopped else "RUNNING"
    )
    arns = listed.get("taskArns", [])
    if not arns:
        return []
    tasks: list[dict[str, Any]] = []
    for i in range(0, len(arns), 100):  # DescribeTasks takes at most 100
        described = await ecs.describe_tasks(cluster=env.cluster, tasks=arns[i : i + 100])
        tasks.extend(described.get("tasks", []))
    return sorted((_task_info(t, _when(t.get("startedAt") or t.get("createdAt"))) for t in tasks),
                  key=lambda t: (t.started, t.task_id))  # fmt: skip


def _task_info(t: dict[str, Any], started: str, stopped_reason: str = "") -> TaskInfo:
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
    env = aws.environment(env_name)
    ecs = await aws.client(env_name, "ecs")
    wanted = task_id(task)
    described = await ecs.describe_tasks(cluster=env.cluster, tasks=[wanted])
    found = described.get("tasks", [])
    if not found:
        raise OperationError(
            f"there is no task {wanted} in cluster {env.cluster} ({env_name})",
            "list the service's tasks with `lemi service list-tasks`",
        )
    if found[0].get("group") != f"service:{service}":
        raise OperationError(
            f"task {wanted} does not belong to service {service}",
            "you can only stop tasks of the service you operate; list them with `lemi service list-tasks`",
        )
    stopped = await ecs.stop_task(cluster=env.cluster, task=found[0]["taskArn"], reason=reason[:255])
    return _task_info(stopped["task"], _when(stopped["task"].get("startedAt")), reason)


async def restart(
    aws: AwsClients, env_name: str, service: str, *, wait: bool = True, timeout: float = DEFAULT_TIMEOUT,
    poll: float = DEFAULT_POLL, on_progress: Any = None,
) -> DeployResult:  # fmt: skip
    """Replace every task with a fresh one of the same revision (a forced new deployment)."""
    current = await describe_service(aws, env_name, service)
    return await roll_out(
        aws, env_name, service, current["taskDefinition"], force_new_deployment=True,
        wait=wait, timeout=timeout, poll=poll, on_progress=on_progress, current=current,
    )  # fmt: skip


async def _revisions(aws: AwsClients, env_name: str, family_name: str) -> list[str]:
    """ACTIVE revisions of a family, newest first."""
    ecs = await aws.client(env_name, "ecs")
    arns: list[str] = []
    token: str | None = None
    while True:
        kwargs: dict[str, Any] = {"familyPrefix": family_name, "status": "ACTIVE", "sort": "DESC"}
        if token:
            kwargs["nextToken"] = token
        page = await ecs.list_task_definitions(**kwargs)
        arns += [a for a in page.get("taskDefinitionArns", []) if family_of(a) == family_name]
        token = page.get("nextToken")
        if not token:
            return sorted(arns, key=revision_number, reverse=True)


async def previous_revision(aws: AwsClients, env_name: str, service: str) -> tuple[str, str]:
    """(current ARN, the newest ACTIVE revision older than it)."""
    current, previous = await _previous(aws, env_name, service)
    return current["taskDefinition"], previous


async def _previous(aws: AwsClients, env_name: str, service: str) -> tuple[dict[str, Any], str]:
    """(the service as described, the newest ACTIVE revision older than the one it runs)."""
    current = await describe_service(aws, env_name, service)
    current_arn = current["taskDefinition"]
    number = revision_number(current_arn)
    older = [a for a in await _revisions(aws, env_name, family_of(current_arn)) if revision_number(a) < number]
    if not older:
        raise OperationError(
            f"{revision_of(current_arn)} has no earlier active revision to roll back to",
            "deploy a known good image tag instead: lemi deploy -t <tag>",
        )
    return current, older[0]


async def rollback(
    aws: AwsClients, env_name: str, service: str, *, wait: bool = True, timeout: float = DEFAULT_TIMEOUT,
    poll: float = DEFAULT_POLL, on_progress: Any = None,
) -> DeployResult:  # fmt: skip
    current, previous = await _previous(aws, env_name, service)
    return await roll_out(
        aws, env_name, service, previous, wait=wait, timeout=timeout, poll=poll, on_progress=on_progress,
        current=current,
    )  # fmt: skip


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


async def diff(
    aws: AwsClients, env_name: str, service: str, compiled: dict[str, Any], *, current: dict[str, Any] | None = None
) -> Diff:
    """The running task definition against a compiled one, as a unified diff.
    ``current``: the service as just described by the caller (saves a DescribeServices)."""
    if current is None:
        current = await describe_service(aws, env_name, service)
    described, tags = await describe_task_definition(aws, env_name, current["taskDefinition"])
    running = comparable(described, tags, compiled)
    revision = revision_of(current["taskDefinition"])
    lines = difflib.unified_diff(
        render(running).splitlines(keepends=True),
        render(compiled).splitlines(keepends=True),
        fromfile=f"running ({revision})",
        tofile="compiled",
    )
    return Diff(service, env_name, revision, "".join(lines))


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
    current = await describe_service(aws, env_name, service)
    in_use = {d.get("taskDefinition") for d in current.get("deployments", [])} | {current["taskDefinition"]}
    revisions = await _revisions(aws, env_name, family(service, env_name))
    kept = revisions[:keep] + [a for a in revisions[keep:] if a in in_use]
    ecs = await aws.client(env_name, "ecs")
    gone = []
    for arn in revisions[keep:]:
        if arn in in_use:
            continue
        await ecs.deregister_task_definition(taskDefinition=arn)
        gone.append(revision_of(arn))
    return Pruned([revision_of(a) for a in kept], gone)
