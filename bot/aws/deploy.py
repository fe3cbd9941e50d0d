"""Register, update, and wait for a rollout -- truthfully.

A deploy succeeds only when the PRIMARY deployment that *this* update
created reaches ``rolloutState`` COMPLETED with running = desired. A
circuit-breaker rollback (our deployment FAILED, or replaced by another
PRIMARY), a FAILED rollout or a timeout is a failure, reported with the
reason, the service's recent events and the ``stoppedReason`` of the tasks
of our deployment that stopped.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, Literal

from bot.aws.clients import AwsClients
from bot.aws.errors import OperationError

DEFAULT_TIMEOUT = 900.0
DEFAULT_POLL = 5.0
# how long to look for the deployment an update created before calling it lost
FIND_DEPLOYMENT_TIMEOUT = 60.0

Outcome = Literal["completed", "failed", "timeout"]


@dataclass(frozen=True, slots=True)
class StoppedTask:
    task_id: str
    stopped_reason: str
    containers: list[str] = field(default_factory=list)  # "name: exit 1 (reason)"


@dataclass(frozen=True, slots=True)
class Progress:
    """One observation of the rollout, for live display."""

    deployment_id: str
    rollout_state: str
    running: int
    desired: int
    pending: int
    failed: int
    elapsed: float


@dataclass
class Rollout:
    outcome: Outcome
    service: str
    environment: str
    cluster: str
    task_definition: str
    deployment_id: str | None
    reason: str
    running: int = 0
    desired: int = 0
    elapsed: float = 0.0
    events: list[str] = field(default_factory=list)
    stopped_tasks: list[StoppedTask] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.outcome == "completed"

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["ok"] = self.ok
        return data


def revision_of(task_definition_arn: str) -> str:
    """'arn:...:task-definition/demo-service-staging:7' -> 'demo-service-staging:7'."""
    return task_definition_arn.rsplit("/", 1)[-1]


def family_of(task_definition_arn: str) -> str:
    """'arn:...:task-definition/demo-service-staging:7' -> 'demo-service-staging'."""
    return revision_of(task_definition_arn).rsplit(":", 1)[0]


def revision_number(task_definition_arn: str) -> int:
    """'arn:...:task-definition/demo-service-staging:7' -> 7."""
    return int(task_definition_arn.rsplit(":", 1)[1])


def task_id(task_arn: str) -> str:
    """'arn:...:task/cluster/0123abcd' (or the id itself) -> '0123abcd'."""
    return task_arn.rsplit("/", 1)[-1]


def _project(actual: Any, wanted: Any) -> Any:
    """``actual`` restricted to the shape of ``wanted`` (AWS adds defaults we never set)."""
    if isinstance(wanted, dict) and isinstance(actual, dict):
        return {k: _project(actual[k], v) for k, v in wanted.items() if k in actual}
    if isinstance(wanted, list) and isinstance(actual, list) and len(wanted) == len(actual):
        return [_project(a, w) for a, w in zip(actual, wanted, strict=True)]
    return actual


def comparable(described: dict[str, Any], tags: list[dict[str, str]], wanted: dict[str, Any]) -> dict[str, Any]:
    """A described task definition in the shape of a compiled one, for equality and diffs."""
    merged = dict(described)
    if tags:
        merged["tags"] = sorted(tags, key=lambda t: t["key"])
    return _project(merged, wanted)


async def describe_task_definition(
    aws: AwsClients, env_name: str, arn: str
) -> tuple[dict[str, Any], list[dict[str, str]]]:
    ecs = await aws.client(env_name, "ecs")
    response = await ecs.describe_task_definition(taskDefinition=arn, include=["TAGS"])
    return response["taskDefinition"], response.get("tags", [])


async def describe_service(aws: AwsClients, env_name: str, service: str) -> dict[str, Any]:
    env = aws.environment(env_name)
    ecs = await aws.client(env_name, "ecs")
    response = await ecs.describe_services(cluster=env.cluster, services=[service])
    for item in response.get("services", []):
        if item.get("serviceName") == service and item.get("status") == "ACTIVE":
            return dict(item)
    raise OperationError(
        f"there is no active ECS service {service!r} in cluster {env.cluster} ({env_name})",
        "check -s and -e, or provision the service first (merge its infra pull request)",
    )


async def register(aws: AwsClients, env_name: str, task_definition: dict[str, Any]) -> tuple[str, bool]:
    """Register ``task_definition`` unless the family's newest revision is identical.

    Returns the ARN to deploy and whether an existing revision was reused.
    """
    ecs = await aws.client(env_name, "ecs")
    family = task_definition["family"]
    listed = await ecs.list_task_definitions(familyPrefix=family, status="ACTIVE", sort="DESC", maxResults=1)
    for arn in listed.get("taskDefinitionArns", []):
        if family_of(arn) != family:
            continue
        described, tags = await describe_task_definition(aws, env_name, arn)
        if comparable(described, tags, task_definition) == task_definition:
            return arn, True
    response = await ecs.register_task_definition(**task_definition)
    return response["taskDefinition"]["taskDefinitionArn"], False


async def update_service(
    aws: AwsClients,
    env_name: str,
    service: str,
    *,
    task_definition: str | None = None,
    desired_count: int | None = None,
    force_new_deployment: bool = False,
) -> dict[str, Any]:
    env = aws.environment(env_name)
    ecs = await aws.client(env_name, "ecs")
    kwargs: dict[str, Any] = {"cluster": env.cluster, "service": service}
    if task_definition is not None:
        kwargs["taskDefinition"] = task_definition
    if desired_count is not None:
        kwargs["desiredCount"] = desired_count
    if force_new_deployment:
        kwargs["forceNewDeployment"] = True
    response = await ecs.update_service(**kwargs)
    return dict(response["service"])


def _ours(deployments: list[dict[str, Any]], before_ids: set[str], task_definition: str) -> dict[str, Any] | None:
    for deployment in deployments:
        if deployment["id"] not in before_ids and deployment.get("taskDefinition") == task_definition:
            return deployment
    return None


def event_ids(service: dict[str, Any]) -> set[str]:
    return {str(e.get("id")) for e in service.get("events", [])}


def _event_lines(service: dict[str, Any], seen: set[str], limit: int = 10) -> list[str]:
    """Service events that appeared since the update (ids not seen before), oldest first."""
    lines = []
    for event in service.get("events", []):
        if str(event.get("id")) in seen:
            continue
        created = event.get("createdAt")
        stamp = created.strftime("%H:%M:%S") if isinstance(created, datetime) else ""
        lines.append(f"{stamp} {event.get('message', '')}".strip())
    return list(reversed(lines[:limit]))  # ECS lists newest first; show in order


async def stopped_tasks(aws: AwsClients, env_name: str, deployment_id: str, limit: int = 10) -> list[StoppedTask]:
    """Tasks of a deployment that stopped, with why."""
    env = aws.environment(env_name)
    ecs = await aws.client(env_name, "ecs")
    listed = await ecs.list_tasks(cluster=env.cluster, startedBy=deployment_id, desiredStatus="STOPPED")
    arns = listed.get("taskArns", [])[:limit]
    if not arns:
        return []
    described = await ecs.describe_tasks(cluster=env.cluster, tasks=arns)
    result = []
    for task in described.get("tasks", []):
        containers = []
        for container in task.get("containers", []):
            bits = [container.get("name", "?") + ":"]
            if container.get("exitCode") is not None:
                bits.append(f"exit {container['exitCode']}")
            if container.get("reason"):
                bits.append(f"({container['reason']})")
            if len(bits) > 1:
                containers.append(" ".join(bits))
        result.append(
            StoppedTask(task_id(task["taskArn"]), task.get("stoppedReason") or "(no reason given)", containers)
        )
    return result


async def wait_for_rollout(
    aws: AwsClients,
    env_name: str,
    service: str,
    *,
    before_ids: set[str],
    task_definition: str,
    deployment_id: str | None = None,
    seen_events: set[str] | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    poll: float = DEFAULT_POLL,
    on_progress: Callable[[Progress], None] | None = None,
) -> Rollout:
    env = aws.environment(env_name)
    started = time.monotonic()
    seen = seen_events or set()
    last: dict[str, Any] = {}
    current: dict[str, Any] = {}

    def result(outcome: Outcome, reason: str) -> Rollout:
        return Rollout(
            outcome,
            service,
            env_name,
            env.cluster,
            task_definition,
            deployment_id,
            reason,
            running=int(last.get("runningCount", 0)),
            desired=int(last.get("desiredCount", 0)),
            elapsed=round(time.monotonic() - started, 1),
            events=_event_lines(current, seen),
        )

    while True:
        elapsed = time.monotonic() - started
        current = await describe_service(aws, env_name, service)
        deployments = current.get("deployments", [])
        if deployment_id is None:
            mine = _ours(deployments, before_ids, task_definition)
            if mine is not None:
                deployment_id = mine["id"]
            elif elapsed > min(FIND_DEPLOYMENT_TIMEOUT, timeout):
                return await _finish(aws, env_name, result("failed", "ECS never started a deployment for this update"))
        if deployment_id is not None:
            mine = next((d for d in deployments if d["id"] == deployment_id), None)
            if mine is None:
                return await _finish(
                    aws, env_name, result("failed", "the deployment was replaced before it completed (rolled back?)")
                )
            last = mine
            state = mine.get("rolloutState", "")
            if on_progress is not None:
                on_progress(
                    Progress(
                        deployment_id,
                        state or "UNKNOWN",
                        int(mine.get("runningCount", 0)),
                        int(mine.get("desiredCount", 0)),
                        int(mine.get("pendingCount", 0)),
                        int(mine.get("failedTasks", 0)),
                        round(elapsed, 1),
                    )
                )
            if state == "FAILED":
                return await _finish(
                    aws, env_name, result("failed", mine.get("rolloutStateReason") or "the rollout failed")
                )
            if mine.get("status") != "PRIMARY":
                primary = next((d for d in deployments if d.get("status") == "PRIMARY"), {})
                reason = f"deployment {deployment_id} is no longer PRIMARY"
                if primary.get("taskDefinition"):
                    reason += f"; the service is rolling back to {revision_of(primary['taskDefinition'])}"
                return await _finish(aws, env_name, result("failed", reason))
            running, desired = int(mine.get("runningCount", 0)), int(mine.get("desiredCount", 0))
            completed = state == "COMPLETED" or (not state and len(deployments) == 1)
            if completed and running == desired:
                return result("completed", mine.get("rolloutStateReason") or "the rollout completed")
        if elapsed >= timeout:
            waiting = f"running {last.get('runningCount', 0)}/{last.get('desiredCount', 0)}" if last else "not started"
            return await _finish(aws, env_name, result("timeout", f"timed out after {timeout:g} s ({waiting})"))
        await asyncio.sleep(min(poll, max(0.0, timeout - elapsed)) or poll)


async def _finish(aws: AwsClients, env_name: str, rollout: Rollout) -> Rollout:
    if rollout.deployment_id:
        rollout.stopped_tasks = await stopped_tasks(aws, env_name, rollout.deployment_id)
    return rollout


@dataclass
class DeployResult:
    service: str
    environment: str
    task_definition: str
    reused: bool
    rollout: Rollout | None  # None when not waiting
    deregistered: list[str] = field(default_factory=list)  # revisions removed by --keep

    @property
    def ok(self) -> bool:
        return self.rollout is None or self.rollout.ok

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "service": self.service,
            "environment": self.environment,
            "task_definition": self.task_definition,
            "revision": revision_of(self.task_definition),
            "reused": self.reused,
            "rollout": self.rollout.as_dict() if self.rollout else None,
            "deregistered": self.deregistered,
        }


async def deploy(
    aws: AwsClients,
    env_name: str,
    task_definition: dict[str, Any],
    *,
    service: str,
    desired_count: int | None = None,
    wait: bool = True,
    timeout: float = DEFAULT_TIMEOUT,
    poll: float = DEFAULT_POLL,
    on_progress: Callable[[Progress], None] | None = None,
    watch_only: bool = False,
    current: dict[str, Any] | None = None,
    unchanged: bool = False,
) -> DeployResult:
    """``watch_only``: an earlier attempt already sent the update (lemi was restarted
    mid-rollout); watch it to its end, or report what became of it, but never send it again.
    ``current``: the service as the caller just described it; ``unchanged``: the caller
    compared it and it runs exactly ``task_definition`` (nothing to register)."""
    if current is None:
        current = await describe_service(aws, env_name, service)  # fail before registering anything
    if unchanged:
        arn, reused = current["taskDefinition"], True
    else:
        arn, reused = await register(aws, env_name, task_definition)
    return await roll_out(
        aws,
        env_name,
        service,
        arn,
        reused=reused,
        desired_count=desired_count,
        wait=wait,
        timeout=timeout,
        poll=poll,
        on_progress=on_progress,
        watch_only=watch_only,
        current=current,
    )


async def roll_out(
    aws: AwsClients,
    env_name: str,
    service: str,
    task_definition_arn: str,
    *,
    reused: bool = False,
    desired_count: int | None = None,
    force_new_deployment: bool = False,
    wait: bool = True,
    timeout: float = DEFAULT_TIMEOUT,
    poll: float = DEFAULT_POLL,
    on_progress: Callable[[Progress], None] | None = None,
    watch_only: bool = False,
    current: dict[str, Any] | None = None,
) -> DeployResult:
    """Point the service at a registered revision and (optionally) wait for it.
    ``current``: the service as just described by the caller (saves a DescribeServices).

    When the service already runs this revision and nothing else changes, ECS
    starts no new deployment: then the current PRIMARY deployment is the one
    to watch, and no update is sent at all.
    """
    if current is None:
        current = await describe_service(aws, env_name, service)
    deployments = current.get("deployments", [])
    ids = {d["id"] for d in deployments}
    primary = next((d for d in deployments if d.get("status") == "PRIMARY"), None)
    same_revision = current.get("taskDefinition") == task_definition_arn and not force_new_deployment
    if same_revision and primary is not None and primary.get("rolloutState") == "FAILED":
        force_new_deployment, same_revision = True, False  # try the failed revision again, do not re-report
    watch: str | None = None
    if watch_only and current.get("taskDefinition") != task_definition_arn:
        # the rollout lemi started ended while it was not watching
        failed_ours = next(
            (
                d
                for d in deployments
                if d.get("taskDefinition") == task_definition_arn and d.get("rolloutState") == "FAILED"
            ),
            None,
        )
        if failed_ours is not None:  # ECS failed it (and rolled back): report that deployment
            rollout = await wait_for_rollout(
                aws, env_name, service, before_ids=ids, task_definition=task_definition_arn,
                deployment_id=failed_ours["id"], seen_events=set(), timeout=timeout, poll=poll, on_progress=on_progress,
            )  # fmt: skip
        else:
            reason = (
                f"while lemi was not watching, the rollout of {revision_of(task_definition_arn)} ended and the service "
                f"now runs {revision_of(str(current.get('taskDefinition', '')))} (rolled back or replaced)"
            )
            rollout = Rollout("failed", service, env_name, aws.environment(env_name).cluster, task_definition_arn, None,
                              reason, events=_event_lines(current, set()))  # fmt: skip
        return DeployResult(service, env_name, task_definition_arn, reused, rollout)
    if watch_only:
        same_revision = True  # watch the PRIMARY of this revision, whatever its state
        force_new_deployment = False
    if same_revision and (watch_only or desired_count in (None, current.get("desiredCount"))):
        watch = primary["id"] if primary else None  # nothing changes: ECS starts nothing; watch the current one
    else:
        updated = await update_service(
            aws,
            env_name,
            service,
            task_definition=task_definition_arn,
            desired_count=desired_count,
            force_new_deployment=force_new_deployment,
        )
        new = next((d for d in updated.get("deployments", []) if d.get("status") == "PRIMARY"), None)
        if new is not None and (new["id"] not in ids or same_revision):
            watch = new["id"]  # ECS names the deployment this update created in its answer
    before_ids = ids - {primary["id"]} if same_revision and primary else ids
    rollout = None
    if wait:
        rollout = await wait_for_rollout(
            aws,
            env_name,
            service,
            before_ids=before_ids,
            task_definition=task_definition_arn,
            deployment_id=watch,
            seen_events=event_ids(current),
            timeout=timeout,
            poll=poll,
            on_progress=on_progress,
        )
    return DeployResult(service, env_name, task_definition_arn, reused, rollout)
