"""One-off tasks: a task of ``spec.tasks`` run as an ECS task, and the truth about how it ended.

A task runs as an ECS task of the service's task definition (a ``preDeploy`` task: the revision
about to be deployed; ``lemi run``: the running one) with the command overridden on the
service's container, in the ECS service's own network configuration and launch type or
capacity provider strategy, ``startedBy`` ``lemi`` and group ``lemi-task:<name>``.

:func:`judge` is pure and strict: a task succeeded only when the service's container *ran*
(the task has ``startedAt``) and stopped with exit code 0 because it exited (``stopCode``
``EssentialContainerExited``). Anything else is a failure that says why:

* it went from PENDING to STOPPED between two looks without ever running (image pull,
  resources, secrets): "never started", with ECS's reason;
* it was stopped by someone else (``UserInitiated``) or by ECS (spot interruption, the
  scheduler): "stopped by ...", whatever its exit code;
* it ran past its bound: lemi stops it (:data:`OVERDUE_REASON`) and says so;
* ECS no longer knows it.

A caller that waits holds nothing: the App's watcher (bot/flows/task_poll.py) looks at every
running task in one DescribeTasks per environment; the CLI waits in-process (:func:`wait`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from bot.aws.ecs import Ecs, task_id
from bot.aws.errors import OperationError

if TYPE_CHECKING:  # the stubs are a development dependency
    from types_aiobotocore_ecs.type_defs import ServiceTypeDef, TaskTypeDef

STARTED_BY = "lemi"
GROUP_PREFIX = "lemi-task:"
DESCRIBE_BATCH = 100  # tasks per DescribeTasks call (ECS's limit)
OVERDUE_REASON = "lemi: the task ran past its bound"
DEFAULT_TIMEOUT = 3600.0
DEFAULT_POLL = 6.0


@dataclass(frozen=True, slots=True)
class TaskEnd:
    """How a task ended. ``reason`` is one readable line: "exited with code 3",
    "never started: CannotPullContainerError: ...", "stopped by someone else: ..."."""

    succeeded: bool
    reason: str
    exit_code: int | None = None
    overdue: bool = False  # still running past its bound: the caller stops it

    def as_dict(self) -> dict[str, Any]:
        return {"succeeded": self.succeeded, "reason": self.reason, "exit_code": self.exit_code}


@dataclass(frozen=True, slots=True)
class Started:
    """A task that ECS accepted."""

    arn: str
    revision: str

    @property
    def id(self) -> str:
        return task_id(self.arn)


def run_parameters(
    cluster: str, service: ServiceTypeDef, revision: str, container: str, name: str, command: Sequence[str],
    client_token: str | None = None,
) -> dict[str, Any]:  # fmt: skip
    """RunTask's parameters for task ``name`` of ``service`` in ``revision``: the service's own
    network configuration and launch type (or capacity provider strategy), the command on its
    container; ``client_token``: ECS's idempotency token (the SDK's own retries of one RunTask
    start one task). Pure."""
    network = service.get("networkConfiguration")
    if not network:
        raise OperationError(
            f"the ECS service {service.get('serviceName', '?')} has no network configuration to run a task in",
            "a Fargate service needs awsvpc subnets and security groups; check the service's Terraform",
        )
    params: dict[str, Any] = {
        "cluster": cluster,
        "taskDefinition": revision,
        "count": 1,
        "startedBy": STARTED_BY,
        "group": GROUP_PREFIX + name,
        "networkConfiguration": network,
        "overrides": {"containerOverrides": [{"name": container, "command": list(command)}]},
    }
    if client_token:
        params["clientToken"] = client_token
    strategy = service.get("capacityProviderStrategy")
    if strategy:
        params["capacityProviderStrategy"] = strategy
    else:
        params["launchType"] = service.get("launchType") or "FARGATE"
    if service.get("platformVersion"):
        params["platformVersion"] = service["platformVersion"]
    return params


async def start(
    ecs: Ecs, service: ServiceTypeDef, revision: str, container: str, name: str, command: Sequence[str],
    client_token: str | None = None,
) -> Started:  # fmt: skip
    """RunTask; an :class:`OperationError` naming ECS's reason when it starts nothing."""
    params = run_parameters(ecs.cluster, service, revision, container, name, command, client_token)
    response = await ecs.client.run_task(**params)
    tasks = response.get("tasks", [])
    if not tasks:
        failures = response.get("failures", [])
        why = "; ".join(f"{f.get('reason', '?')}" + (f" ({f['detail']})" if f.get("detail") else "") for f in failures)
        raise OperationError(
            f"ECS did not start task {name!r}: {why or 'no task and no reason given'}",
            "check the cluster's capacity and the task's size, then run it again",
        )
    return Started(tasks[0]["taskArn"], revision)


async def describe(ecs: Ecs, arns: Sequence[str]) -> dict[str, TaskTypeDef]:
    """The tasks ECS knows among ``arns``, by ARN, 100 to a DescribeTasks call."""
    found: dict[str, TaskTypeDef] = {}
    unique = list(dict.fromkeys(arns))
    for first in range(0, len(unique), DESCRIBE_BATCH):
        response = await ecs.client.describe_tasks(cluster=ecs.cluster, tasks=unique[first : first + DESCRIBE_BATCH])
        for task in response.get("tasks", []):
            found[task["taskArn"]] = task
    return found


async def stop_overdue(ecs: Ecs, arn: str) -> None:
    await ecs.client.stop_task(cluster=ecs.cluster, task=arn, reason=OVERDUE_REASON)


def _bound(timeout: float) -> str:
    minutes, seconds = divmod(int(timeout), 60)
    return f"{minutes} min" + (f" {seconds} s" if seconds else "") if minutes else f"{seconds} s"


def judge(task: Mapping[str, Any] | None, container: str, *, elapsed: float, timeout: float) -> TaskEnd | None:
    """How the task ended, or None while it runs. Pure; see the module's rules."""
    if task is None:
        return TaskEnd(False, "ECS no longer knows the task (it stopped long ago, or was never there)")
    if task.get("lastStatus") != "STOPPED":
        if elapsed > timeout:
            return TaskEnd(False, f"ran past its bound of {_bound(timeout)}; lemi stopped it", overdue=True)
        return None
    reason = str(task.get("stoppedReason") or "").strip()
    stop_code = str(task.get("stopCode") or "")
    mine = next((c for c in task.get("containers", []) if c.get("name") == container), None)
    exit_code = mine.get("exitCode") if mine is not None else None
    container_reason = str((mine or {}).get("reason") or "").strip()
    if reason.startswith(OVERDUE_REASON):
        return TaskEnd(False, f"ran past its bound of {_bound(timeout)}; lemi stopped it", exit_code)
    if stop_code == "UserInitiated":
        return TaskEnd(False, "stopped by someone else" + (f": {reason}" if reason else ""), exit_code)
    ran = task.get("startedAt") is not None and mine is not None
    if stop_code == "TaskFailedToStart" or not ran:
        why = container_reason or reason or "ECS gave no reason"
        return TaskEnd(False, f"never started: {why}", None)
    if exit_code is None:
        return TaskEnd(False, f"stopped by ECS without an exit code: {container_reason or reason or stop_code}")
    if stop_code and stop_code != "EssentialContainerExited":
        return TaskEnd(False, f"stopped by ECS ({stop_code}): {reason or container_reason}", int(exit_code))
    if int(exit_code) != 0:
        detail = f" ({container_reason})" if container_reason else ""
        return TaskEnd(False, f"exited with code {exit_code}{detail}", int(exit_code))
    return TaskEnd(True, "exited with code 0", 0)


def status_line(task: Mapping[str, Any] | None) -> str:
    """'RUNNING since 12:03:04' -- for progress."""
    if task is None:
        return "unknown"
    status = str(task.get("lastStatus") or "PENDING")
    started = task.get("startedAt")
    if isinstance(started, datetime):
        return f"{status} since {started.strftime('%H:%M:%S')} UTC"
    return status


@dataclass(frozen=True, slots=True)
class TaskWait:
    timeout: float = DEFAULT_TIMEOUT
    poll: float = DEFAULT_POLL
    on_progress: Callable[[str], None] | None = None


async def wait(
    ecs: Ecs, arn: str, container: str, how: TaskWait, *, clock: Callable[[], float] = time.monotonic
) -> TaskEnd:
    """Wait in this process for the task to end (the CLI); the App's watcher waits without a worker."""
    began = clock()
    last = ""
    while True:
        found = (await describe(ecs, [arn])).get(arn)
        end = judge(found, container, elapsed=clock() - began, timeout=how.timeout)
        if end is not None:
            if end.overdue:
                await stop_overdue(ecs, arn)
            return end
        line = status_line(found)
        if how.on_progress is not None and line != last:
            how.on_progress(line)
        last = line
        await asyncio.sleep(how.poll)
