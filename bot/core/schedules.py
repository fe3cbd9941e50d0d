"""A service's schedules as EventBridge Scheduler schedules (pure: values in, values out).

``spec.schedules`` of the deployed commit become one schedule each in the group
``<service>-<env>`` (:func:`bot.core.conventions.schedule_group`): the task's command as a
container override on the service's container, the deployed task-definition revision, and the
ECS service's own network configuration and launch type (or capacity provider strategy).
:func:`desired` makes their CreateSchedule/UpdateSchedule parameters, :func:`plan_sync` decides
what to create, update (only what differs) and delete, and :func:`update_to` keeps a schedule as it
is but for the revision it runs (a rollback). bot/aws/schedules.py makes the calls.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from bot.core.conventions import MANAGED_BY, schedule_group
from bot.core.shapes import project
from bot.core.tasks import Schedule

# a scheduled run that cannot start is tried again twice within the hour, then dropped
RETRY_POLICY = {"MaximumEventAgeInSeconds": 3600, "MaximumRetryAttempts": 2}
DESCRIPTION_PREFIX = "lemi: task "
# what UpdateSchedule takes (it replaces the schedule: every field it should keep is sent again)
UPDATE_FIELDS = (
    "Name", "GroupName", "Description", "ScheduleExpression", "ScheduleExpressionTimezone", "State",
    "FlexibleTimeWindow", "Target", "StartDate", "EndDate", "KmsKeyArn", "ActionAfterCompletion",
)  # fmt: skip
TARGET_FIELDS = ("Arn", "RoleArn", "Input", "RetryPolicy", "EcsParameters", "DeadLetterConfig")


@dataclass(frozen=True)
class ScheduledTask:
    """One schedule of the deployed service file, with its task's command (what a watch carries)."""

    task: str
    command: list[str]
    cron: str  # six-field AWS form, without ``cron(...)``
    timezone: str
    enabled: bool = True


def scheduled_tasks(tasks: Mapping[str, list[str]], schedules: Mapping[str, Schedule]) -> dict[str, ScheduledTask]:
    """``spec.schedules`` with each schedule's command (the spec checked that every task exists)."""
    return {
        name: ScheduledTask(s.task, list(tasks[s.task]), s.cron, s.timezone, s.enabled)
        for name, s in sorted(schedules.items())
    }


@dataclass(frozen=True)
class Placement:
    """Where the ECS service runs its tasks, as DescribeServices says (the schedules run there too)."""

    cluster_arn: str
    network: Mapping[str, Any] | None = None  # the service's networkConfiguration
    launch_type: str | None = None
    capacity_providers: tuple[Mapping[str, Any], ...] = ()
    platform_version: str | None = None

    @classmethod
    def of(cls, service: Mapping[str, Any]) -> Placement:
        strategy = tuple(service.get("capacityProviderStrategy") or ())
        return cls(
            str(service["clusterArn"]), service.get("networkConfiguration"),
            None if strategy else str(service.get("launchType") or "FARGATE"), strategy,
            service.get("platformVersion") or None,
        )  # fmt: skip


def _network(network: Mapping[str, Any] | None) -> dict[str, Any] | None:
    vpc = (network or {}).get("awsvpcConfiguration")
    if not vpc:
        return None
    out: dict[str, Any] = {"Subnets": list(vpc.get("subnets", []))}
    if vpc.get("securityGroups"):
        out["SecurityGroups"] = list(vpc["securityGroups"])
    if vpc.get("assignPublicIp"):
        out["AssignPublicIp"] = vpc["assignPublicIp"]
    return {"awsvpcConfiguration": out}


def _strategy(item: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"capacityProvider": item["capacityProvider"]}
    for key in ("weight", "base"):
        if item.get(key) is not None:
            out[key] = int(item[key])
    return out


def container_input(container: str, command: list[str]) -> str:
    """The RunTask overrides EventBridge Scheduler passes: the command on the service's container."""
    overrides = {"containerOverrides": [{"name": container, "command": list(command)}]}
    return json.dumps(overrides, separators=(",", ":"), sort_keys=True)


def desired(
    service: str, env_name: str, schedules: Mapping[str, ScheduledTask], *, task_definition: str,
    placement: Placement, role_arn: str,
) -> dict[str, dict[str, Any]]:  # fmt: skip
    """The CreateSchedule parameters of every schedule, by name (deterministic)."""
    group = schedule_group(service, env_name)
    ecs: dict[str, Any] = {"TaskDefinitionArn": task_definition, "TaskCount": 1}
    if placement.capacity_providers:
        ecs["CapacityProviderStrategy"] = [_strategy(i) for i in placement.capacity_providers]
    else:
        ecs["LaunchType"] = placement.launch_type or "FARGATE"
    if placement.platform_version:
        ecs["PlatformVersion"] = placement.platform_version
    network = _network(placement.network)
    if network is not None:
        ecs["NetworkConfiguration"] = network
    # the task carries the task definition's tags (managed-by, service, environment, owner)
    ecs.update({"EnableECSManagedTags": True, "PropagateTags": "TASK_DEFINITION"})
    wanted: dict[str, dict[str, Any]] = {}
    for name, s in sorted(schedules.items()):
        wanted[name] = {
            "Name": name,
            "GroupName": group,
            "Description": f"{DESCRIPTION_PREFIX}{s.task} of {service} ({env_name}), managed by {MANAGED_BY}",
            "ScheduleExpression": f"cron({s.cron})",
            "ScheduleExpressionTimezone": s.timezone,
            "State": "ENABLED" if s.enabled else "DISABLED",
            "FlexibleTimeWindow": {"Mode": "OFF"},
            "Target": {
                "Arn": placement.cluster_arn,
                "RoleArn": role_arn,
                "Input": container_input(service, s.command),
                "RetryPolicy": dict(RETRY_POLICY),
                "EcsParameters": dict(ecs),
            },
        }
    return wanted


def differs(current: Mapping[str, Any], wanted: Mapping[str, Any]) -> bool:
    """Does the schedule as GetSchedule describes it differ from ``wanted`` in what lemi sets?"""
    projected: dict[str, Any] = project(dict(current), dict(wanted))
    return projected != dict(wanted)


@dataclass(frozen=True)
class SyncPlan:
    group: str
    create: list[dict[str, Any]] = field(default_factory=list)
    update: list[dict[str, Any]] = field(default_factory=list)
    delete: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)

    @property
    def writes(self) -> bool:
        return bool(self.create or self.update or self.delete)


def plan_sync(group: str, wanted: Mapping[str, dict[str, Any]], current: Mapping[str, Mapping[str, Any]]) -> SyncPlan:
    """What makes the group's schedules (``current``: GetSchedule answers by name) match ``wanted``."""
    plan = SyncPlan(group)
    for name in sorted(wanted):
        if name not in current:
            plan.create.append(wanted[name])
        elif differs(current[name], wanted[name]):
            plan.update.append(wanted[name])
        else:
            plan.unchanged.append(name)
    plan.delete.extend(sorted(set(current) - set(wanted)))
    return plan


def update_to(current: Mapping[str, Any], task_definition: str) -> dict[str, Any] | None:
    """UpdateSchedule parameters that keep the schedule as it is but run ``task_definition``
    (None: it runs that revision already, or it is not an ECS schedule)."""
    target = current.get("Target") or {}
    ecs = target.get("EcsParameters")
    if not ecs or ecs.get("TaskDefinitionArn") == task_definition:
        return None
    update = {k: current[k] for k in UPDATE_FIELDS if current.get(k) is not None}
    update["Target"] = {k: target[k] for k in TARGET_FIELDS if target.get(k) is not None}
    update["Target"]["EcsParameters"] = {**ecs, "TaskDefinitionArn": task_definition}
    return update


@dataclass
class SyncReport:
    """What a sync did (names), or why it could not (``error``: one line with what to do)."""

    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    error: str = ""

    @property
    def ok(self) -> bool:
        return not self.error

    @property
    def changed(self) -> bool:
        return bool(self.created or self.updated or self.deleted)

    def summary(self) -> str:
        """One line: what changed, or that nothing did; the error when it failed."""
        if self.error:
            return f"schedules not updated: {self.error}"
        parts = [f"{verb} {', '.join(names)}" for verb, names in
                 (("created", self.created), ("updated", self.updated), ("deleted", self.deleted)) if names]  # fmt: skip
        if parts:
            return "schedules " + "; ".join(parts)
        return f"schedules unchanged ({len(self.unchanged)})" if self.unchanged else "no schedules"


@dataclass(frozen=True)
class ScheduleInfo:
    """One schedule of the group, for ``lemi service status``."""

    name: str
    expression: str
    timezone: str
    task: str
    command: list[str]
    state: str
    revision: str


def schedule_info(described: Mapping[str, Any], container: str) -> ScheduleInfo:
    """A GetSchedule answer as status shows it: the task from lemi's description, the command from
    the container override in its input."""
    target = described.get("Target") or {}
    command: list[str] = []
    try:
        overrides = json.loads(target.get("Input") or "{}").get("containerOverrides", [])
        command = next((list(o.get("command", [])) for o in overrides if o.get("name") == container), [])
    except (ValueError, AttributeError):
        pass
    description = str(described.get("Description") or "")
    task = description[len(DESCRIPTION_PREFIX) :].split(" ", 1)[0] if description.startswith(DESCRIPTION_PREFIX) else ""
    expression = str(described.get("ScheduleExpression", ""))
    if expression.startswith("cron(") and expression.endswith(")"):
        expression = expression[5:-1]
    arn = str((target.get("EcsParameters") or {}).get("TaskDefinitionArn", ""))
    return ScheduleInfo(
        str(described.get("Name", "")), expression, str(described.get("ScheduleExpressionTimezone") or "UTC"),
        task, command, str(described.get("State", "")), arn.rsplit("/", 1)[-1],
    )  # fmt: skip
