"""The watcher's poll of one-off tasks (bot/flows/task_watch.py): every claimed task watch
looked at once, judged, and acted on when the task ends.

Watches are grouped by environment (one cluster in one account) and their tasks described in
one :func:`bot.aws.tasks.describe` per group (100 tasks to a DescribeTasks call). Each answer is
judged by :func:`bot.aws.tasks.judge`, strictly: a task succeeded only if its container ran and
exited 0; one that went from PENDING to STOPPED between two looks without running, never
started, was stopped by someone else or ran past its bound is a failure with its reason (an
overdue task is stopped first). The end is kept on the watch until it is acted on, so a report
GitHub refuses is sent again (up to :data:`REPORT_ATTEMPTS`), never judged again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from msgspec.structs import replace

from bot.aws import tasks as task_runs
from bot.aws.ecs import Ecs, task_id
from bot.aws.logs import task_lines
from bot.core.errors import classify
from bot.flows.predeploy_end import after_task
from bot.flows.rounds import Kind, Round, run_round
from bot.flows.runtime import Runtime
from bot.flows.task_watch import (
    UNKNOWN_START,
    ContinueDeploy,
    TaskEnded,
    TaskWatch,
    decode,
    encode,
    finish_task,
    repository_of,
)
from bot.flows.watch_poll import REPORT_ATTEMPTS
from bot.store.watches import Watch

if TYPE_CHECKING:  # the stubs are a development dependency
    from types_aiobotocore_ecs.type_defs import TaskTypeDef

log = logging.getLogger("lemi.watcher")

Clock = Callable[[], float]


async def poll_tasks(rt: Runtime, owner: str, claimed: list[Watch], *, clock: Clock = time.time) -> None:
    """Look at every claimed task watch once: describe their tasks (per environment), judge each,
    act on the ended ones and keep the others for their next poll (in one write for the round:
    bot/flows/rounds.py)."""

    async def describe(ecs: Ecs, items: list[tuple[Watch, TaskWatch]]) -> dict[str, TaskTypeDef]:
        return await task_runs.describe(ecs, [b.arn for _, b in items if b.ended is None and b.arn])

    async def look(ecs: Ecs, watch: Watch, body: TaskWatch, described: Mapping[str, Any], this: Round) -> None:
        await _one(rt, owner, ecs, watch, body, described, clock, this)

    await run_round(rt, owner, claimed, Kind("task watch", decode, describe, repository_of, look), clock)


async def _one(
    rt: Runtime, owner: str, ecs: Ecs, watch: Watch, body: TaskWatch, described: Mapping[str, TaskTypeDef],
    clock: Clock, this: Round,
) -> None:  # fmt: skip
    now = clock()
    if body.ended is None:
        body = await _judge(ecs, body, described.get(body.arn), now)
        if body.ended is None:
            this.keep(watch, encode(body), now + body.poll)
            return
    this.decide(watch)  # acted on: the others' updates need not wait for it
    try:
        if isinstance(body.then, ContinueDeploy):  # the next task, UpdateService or the failure
            await after_task(rt, owner, watch, body)  # keeps, takes or updates the watch itself
            return
        await finish_task(rt, watch, body)
    except Exception as exc:  # noqa: BLE001 - acted on again at the next poll
        attempts = body.report_attempts + 1
        if classify(exc) == "user" or attempts >= REPORT_ATTEMPTS:
            log.error("could not report the end of task %s of %s; giving up: %s", body.task, body.service, exc)
            await rt.watches.remove(watch, owner)
            return
        log.warning("could not report the end of task %s (attempt %s): %s", body.task, attempts, exc)
        retry = replace(body, report_attempts=attempts)
        await rt.watches.update(watch, owner, encode(retry), now + min(60.0, 2.0**attempts))
        return
    await rt.watches.remove(watch, owner)


async def _judge(ecs: Ecs, body: TaskWatch, task: Any, now: float) -> TaskWatch:
    """One DescribeTasks answer judged; the end kept in the body once there is one."""
    elapsed = now - body.started
    if not body.arn:  # its job stopped before it recorded the task (bot/flows/task_watch.py)
        ended = TaskEnded(False, UNKNOWN_START.format(name=body.task), None, elapsed)
        return replace(body, ended=ended)
    end = task_runs.judge(task, body.container, elapsed=elapsed, timeout=body.timeout)
    if end is None:
        return replace(body, status=task_runs.status_line(task))
    if end.overdue:
        await task_runs.stop_overdue(ecs, body.arn)  # a failure: looked at (and stopped) again next poll
    log.info("task %s of %s ended: %s", body.task, body.service, end.reason)
    lines = [] if end.overdue else await task_lines(ecs, body.container, task_id(body.arn))  # where they can be read
    return replace(body, ended=TaskEnded(end.succeeded, end.reason, end.exit_code, elapsed, lines))
