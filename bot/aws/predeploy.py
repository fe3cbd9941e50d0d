"""Pre-deploy tasks (``spec.preDeploy``): every deploy registers its revision, runs each of
them in order in that revision, and only then sends ``UpdateService``. A failed task stops the
deploy before ``UpdateService``: the service keeps running what it ran.

They run when the deploy rolls a new revision out (a :class:`~bot.aws.rollout.Update` to
another task definition); a deploy that changes nothing, or only the task count, runs none.
Restart and rollback never run them: a rollback must not run migrations forward.

This module is the in-process form (the CLI's ``lemi deploy``, and the App where nothing
watches): it waits for each task here. The App's deploys hand each task to the watcher instead
(bot/flows/predeploy.py), with the same decisions (:func:`needed`) and results.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

from bot.aws import tasks
from bot.aws.ecs import Ecs, task_id
from bot.aws.logs import task_lines
from bot.aws.results import DeployResult, TaskRun
from bot.aws.rollout import NewRevision, Plan, RolloutRequest, Situation, Update, Wait, execute, plan, survey
from bot.core.spec import ServiceFile

if TYPE_CHECKING:  # the stubs are a development dependency
    from types_aiobotocore_ecs.type_defs import ServiceTypeDef


def commands(service: ServiceFile) -> list[tuple[str, list[str]]]:
    """The preDeploy tasks of a service file, in order, with their commands."""
    return [(name, list(service.spec.tasks[name])) for name in service.spec.pre_deploy]


def needed(the_plan: Plan, pre_deploy: Sequence[object], done: str = "") -> bool:
    """Does this plan run the preDeploy tasks? Only a rollout of another revision does, and not
    again for the revision whose tasks already ran (``done``: that revision's ARN)."""
    if not pre_deploy or not isinstance(the_plan, Update) or the_plan.same_revision:
        return False
    return not (isinstance(the_plan.revision, str) and the_plan.revision == done)


async def registered(ecs: Ecs, update: Update) -> Update:
    """The plan with its revision registered (tasks run in the revision about to be deployed)."""
    if isinstance(update.revision, NewRevision):
        return replace(update, revision=await ecs.register(update.revision.task_definition))
    return update


def task_run(name: str, arn: str, revision: str, end: tasks.TaskEnd, elapsed: float, lines: Sequence[str]) -> TaskRun:
    return TaskRun(name, task_id(arn), revision, end.succeeded, end.reason, end.exit_code, round(elapsed, 1),
                   list(lines))  # fmt: skip


async def run_in_order(
    ecs: Ecs, service: ServiceTypeDef, revision: str, container: str, pre_deploy: Sequence[tuple[str, list[str]]],
    how: tasks.TaskWait,
) -> list[TaskRun]:  # fmt: skip
    """Run each task in order, waiting for each here; stop at the first that fails."""
    ran: list[TaskRun] = []
    for name, command in pre_deploy:
        began = time.monotonic()
        started = await tasks.start(ecs, service, revision, container, name, command)
        end = await tasks.wait(ecs, started.arn, container, how)
        lines = await task_lines(ecs, container, started.id)
        ran.append(task_run(name, started.arn, revision, end, time.monotonic() - began, lines))
        if not end.succeeded:
            break
    return ran


async def execute_after_tasks(
    ecs: Ecs, request: RolloutRequest, the_plan: Plan, service: ServiceTypeDef,
    pre_deploy: Sequence[tuple[str, list[str]]], how: tasks.TaskWait, wait: Wait | None,
) -> DeployResult:  # fmt: skip
    """:func:`bot.aws.rollout.execute` of ``the_plan``, its preDeploy tasks run first and waited
    for here when it needs them; a failed task stops it before UpdateService."""
    if not needed(the_plan, pre_deploy):
        return await execute(ecs, the_plan, wait)
    assert isinstance(the_plan, Update)
    the_plan = await registered(ecs, the_plan)
    revision = str(the_plan.revision)
    ran = await run_in_order(ecs, service, revision, request.service, pre_deploy, how)
    if any(not t.succeeded for t in ran):
        return DeployResult(request.service, ecs.environment, revision, the_plan.reused, None, pre_deploy=ran)
    result = await execute(ecs, await replanned(ecs, request, the_plan), wait)
    result.pre_deploy = ran
    return result


async def deploy(
    ecs: Ecs, request: RolloutRequest, wait: Wait | None, pre_deploy: Sequence[tuple[str, list[str]]],
    how: tasks.TaskWait,
) -> DeployResult:  # fmt: skip
    """:func:`bot.aws.rollout.deploy` with the preDeploy tasks run first, waited for here
    (whatever ``wait`` says: ``UpdateService`` is never sent before they end)."""
    situation = await survey(ecs, request)
    return await execute_after_tasks(ecs, request, plan(request, situation), situation.service, pre_deploy, how, wait)


async def replanned(ecs: Ecs, request: RolloutRequest, done: Update) -> Plan:
    """The plan again, from the service as it is now: its tasks may have run for minutes, and the
    update is judged against the deployments the service has when it is sent."""
    revision = str(done.revision)
    fresh = await ecs.describe_service(request.service)
    again = plan(replace(request, task_definition=revision), Situation(fresh, revision))
    return replace(again, reused=done.reused) if isinstance(again, Update) else again
