"""A service's EventBridge Scheduler schedules: read, made to match the deployed file, pointed at
a rolled-back revision, listed for status.

One group per service and environment (``<service>-<env>``, tagged managed-by, service and
environment) holds them. :func:`sync` runs after a deploy's rollout completed: it creates the
group when there is none, then creates, updates (only what differs) and deletes schedules so the
group matches the deployed commit's ``spec.schedules``; a file without schedules leaves no group
behind. :func:`repoint` runs after a rollback completed: the group's schedules keep everything but
the revision they run. What to write is decided in bot/core/schedules.py.

A failed sync never fails the rollout it follows: :func:`sync_report` and :func:`repoint_report`
return a :class:`~bot.core.schedules.SyncReport` that says what went wrong, and log it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from bot.aws.clients import AwsClients
from bot.aws.ecs import describe_service
from bot.aws.errors import AwsError
from bot.core.conventions import MANAGED_BY, schedule_group, scheduler_role_arn
from bot.core.errors import UserError
from bot.core.schedules import (
    Placement,
    ScheduledTask,
    ScheduleInfo,
    SyncReport,
    desired,
    plan_sync,
    schedule_info,
    update_to,
)

if TYPE_CHECKING:  # the stubs are a development dependency
    from types_aiobotocore_ecs.type_defs import ServiceTypeDef
    from types_aiobotocore_scheduler import EventBridgeSchedulerClient

log = logging.getLogger("lemi.schedules")

NOT_FOUND = "ResourceNotFoundException"
ACCESS_DENIED = frozenset({"AccessDenied", "AccessDeniedException"})


async def _client(aws: AwsClients, env_name: str) -> EventBridgeSchedulerClient:
    client: EventBridgeSchedulerClient = await aws.client(env_name, "scheduler")
    return client


async def _group_exists(client: EventBridgeSchedulerClient, group: str) -> bool:
    try:
        await client.get_schedule_group(Name=group)
    except AwsError as exc:
        if exc.code == NOT_FOUND:
            return False
        raise
    return True


async def read_group(client: EventBridgeSchedulerClient, group: str) -> dict[str, dict[str, Any]] | None:
    """The group's schedules as GetSchedule describes them, by name; None: there is no group."""
    if not await _group_exists(client, group):
        return None
    names: list[str] = []
    token: str | None = None
    while True:
        kwargs: dict[str, Any] = {"GroupName": group}
        if token:
            kwargs["NextToken"] = token
        page = await client.list_schedules(**kwargs)
        names += [s["Name"] for s in page.get("Schedules", []) if s.get("GroupName", group) == group]
        token = page.get("NextToken")
        if not token:
            break
    found: dict[str, dict[str, Any]] = {}
    for name in sorted(set(names)):
        try:
            found[name] = dict(await client.get_schedule(GroupName=group, Name=name))
        except AwsError as exc:
            if exc.code != NOT_FOUND:  # deleted since it was listed
                raise
    return found


async def sync(
    aws: AwsClients, env_name: str, service: str, schedules: Mapping[str, ScheduledTask], task_definition: str,
    described: ServiceTypeDef | None = None,
) -> SyncReport:  # fmt: skip
    """Make the group match ``schedules``, running ``task_definition`` where the ECS service runs
    its tasks (``described``: its DescribeServices answer, described again when None)."""
    env = aws.environment(env_name)
    client = await _client(aws, env_name)
    group = schedule_group(service, env_name)
    try:
        current = await read_group(client, group)
    except AwsError as exc:
        if schedules or exc.code not in ACCESS_DENIED:
            raise
        # a file without schedules, deployed by an identity without the scheduler calls: it could
        # never have made a group, so there is nothing to delete
        return SyncReport()
    if not schedules and current is None:
        return SyncReport()
    if described is None:
        described = await describe_service(aws, env_name, service)
    wanted = desired(
        service, env_name, schedules, task_definition=task_definition, placement=Placement.of(described),
        role_arn=scheduler_role_arn(service, env_name, env),
    )  # fmt: skip
    plan = plan_sync(group, wanted, current or {})
    if current is None:
        tags = [{"Key": "managed-by", "Value": MANAGED_BY}, {"Key": "service", "Value": service},
                {"Key": "environment", "Value": env_name}]  # fmt: skip
        await client.create_schedule_group(Name=group, Tags=tags)  # type: ignore[arg-type]
    for name in plan.delete:
        await _delete(client, group, name)
    for params in plan.update:
        await client.update_schedule(**params)
    for params in plan.create:
        await client.create_schedule(**params)
    if not schedules:  # the file has none left: no group either
        await client.delete_schedule_group(Name=group)
    report = SyncReport(
        [p["Name"] for p in plan.create], [p["Name"] for p in plan.update], list(plan.delete), list(plan.unchanged)
    )
    if report.changed:
        log.info("schedules of %s in %s: %s", service, env_name, report.summary())
    return report


async def _delete(client: EventBridgeSchedulerClient, group: str, name: str) -> None:
    try:
        await client.delete_schedule(GroupName=group, Name=name)
    except AwsError as exc:
        if exc.code != NOT_FOUND:
            raise


async def repoint(aws: AwsClients, env_name: str, service: str, task_definition: str) -> SyncReport:
    """Point the group's schedules at ``task_definition`` (a rollback's revision); nothing else changes."""
    client = await _client(aws, env_name)
    group = schedule_group(service, env_name)
    report = SyncReport()
    try:
        found = await read_group(client, group)
    except AwsError as exc:
        if exc.code not in ACCESS_DENIED:
            raise
        return report  # an identity without the scheduler calls never made a group to point back
    for name, current in sorted((found or {}).items()):
        update = update_to(current, task_definition)
        if update is None:
            report.unchanged.append(name)
            continue
        await client.update_schedule(**update)
        report.updated.append(name)
    if report.changed:
        log.info("schedules of %s in %s: %s", service, env_name, report.summary())
    return report


def _failed(service: str, env_name: str, exc: Exception) -> SyncReport:
    message, _, hint = str(exc).partition("\n    hint: ")
    if isinstance(exc, AwsError) and exc.code in ACCESS_DENIED:
        hint = (f"the identity lemi runs as needs the scheduler calls on {schedule_group(service, env_name)} "
                f"and iam:PassRole on {service}-{env_name}-scheduler (README, Deployer IAM policy)")  # fmt: skip
    text = f"{message} — {hint}" if hint else message
    log.warning("could not update the schedules of %s in %s: %s", service, env_name, text)
    return SyncReport(error=text)


async def sync_report(
    aws: AwsClients, env_name: str, service: str, schedules: Mapping[str, ScheduledTask], task_definition: str,
    described: ServiceTypeDef | None = None,
) -> SyncReport:  # fmt: skip
    """:func:`sync`, with a failure as the report's ``error`` instead of an exception."""
    try:
        return await sync(aws, env_name, service, schedules, task_definition, described)
    except (AwsError, UserError) as exc:
        return _failed(service, env_name, exc)


async def repoint_report(aws: AwsClients, env_name: str, service: str, task_definition: str) -> SyncReport:
    """:func:`repoint`, with a failure as the report's ``error`` instead of an exception."""
    try:
        return await repoint(aws, env_name, service, task_definition)
    except (AwsError, UserError) as exc:
        return _failed(service, env_name, exc)


async def listed(aws: AwsClients, env_name: str, service: str) -> list[ScheduleInfo]:
    """The group's schedules, for status (none when there is no group)."""
    found = await read_group(await _client(aws, env_name), schedule_group(service, env_name))
    return [schedule_info(s, service) for _, s in sorted((found or {}).items())]
