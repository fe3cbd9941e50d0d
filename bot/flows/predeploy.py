"""A deploy's preDeploy tasks, in the App: started here, carried by the watcher.

Every deploy works in this order: register the revision, run each ``preDeploy`` task in order
in it (bot/aws/predeploy.py decides when: a rollout of another revision), then
``UpdateService``. The deploy job registers the revision, starts the first task as a task
watch (bot/flows/task_watch.py, ``then`` :class:`ContinueDeploy`) and ends: no worker waits.
At each task's end the watcher (bot/flows/predeploy_end.py) starts the next one, or sends
``UpdateService`` and hands the rollout to the rollout watcher, or reports the failure (the
task, its exit code or reason) on the check run and the Deployment.

Migrations never run concurrently. A service's running preDeploy tasks are one watch,
:func:`chain_id`; a newer deploy of the same service and environment that reaches
``UpdateService`` meanwhile (whether or not it has preDeploy tasks of its own) does not start:
it is recorded on that watch's note (:meth:`~bot.store.watches.Watches.swap_note`, atomic
with the watch's removal) and reported as waiting, and a deploy already waiting there is
superseded by it. When the tasks end, the older deploy is superseded before its
``UpdateService`` if a newer one waits, and the waiting one is queued again (``released``:
a deploy newer than it still wins). ``/lemi deploy`` does not wait: it is answered that the
tasks are running.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import msgspec

from bot.aws.ecs import Ecs
from bot.aws.predeploy import needed, registered
from bot.aws.rollout import Plan, Situation, Update
from bot.core.config import Config
from bot.core.errors import Transient
from bot.core.schedules import ScheduledTask
from bot.core.templating import render
from bot.flows.deploy import (
    Announced,
    DeployReport,
    DeployRequest,
    check_name,
    deployment_status,
    find_or_create_deployment,
    finish,
)
from bot.flows.task_watch import PREFIX, ContinueDeploy, start_task_watch, task_key
from bot.github import checks
from bot.github.client import GitHub
from bot.store.jobs import CommandJob, DeployJob, service_key
from bot.store.watches import Watch, Watches

log = logging.getLogger("lemi.deploy")

_encode_job = msgspec.json.Encoder().encode
_decode_job = msgspec.json.Decoder(DeployJob).decode


def chain_id(req: DeployRequest) -> str:
    """The watch of a service's running preDeploy tasks (one per service and environment)."""
    return f"{PREFIX}predeploy:{service_key(req.repository, req.service, req.environment)}"


def waiting(note: bytes) -> DeployJob | None:
    """The deploy waiting on a chain's note, if any (an unreadable note waits for nothing)."""
    if not note:
        return None
    try:
        return _decode_job(note)
    except msgspec.DecodeError:
        log.error("a preDeploy watch's note is not a deploy; ignoring it")
        return None


CHAIN_END_WAIT = 3.0  # seconds a deploy queued by a chain's end waits for its watch to go


class ChainEnding(Transient):
    """A deploy queued again by the end of the tasks it waited for ran before their watch was
    removed. The watch always goes soon (taken, or dropped once its end cannot be reported,
    within minutes), well inside the worker's retries, so the deploy runs then."""


class Chains:
    """What :func:`before_update` needs of the App: the watch store, the watcher's wake-up, the
    bound and the poll of a task."""

    def __init__(self, watches: Watches, wake: Callable[[], None], *, timeout: float, poll: float) -> None:
        self.watches = watches
        self.wake = wake
        self.timeout = timeout
        self.poll = poll


async def before_update(
    chains: Chains, gh: GitHub, config: Config, ecs: Ecs, req: DeployRequest,
    announcing: asyncio.Future[Announced], situation: Situation, the_plan: Plan, *,
    pre_deploy: list[tuple[str, list[str]]], image: str, changes: Callable[[], str], desired_count: int | None,
    command: CommandJob | None, schedules: dict[str, ScheduledTask] | None = None, released: bool = False,
) -> DeployReport | None:  # fmt: skip
    """Just before a deploy's UpdateService: wait for another deploy's running preDeploy tasks, or
    start this deploy's (the job then ends: outcome "waiting" or "watching"); None: go on.

    ``released``: queued again by the end of the tasks it waited for, whose watch is removed only
    after this job is queued, so that lemi stopping in between loses nothing. Found still on that
    watch's note, it is tried again a little later (:class:`ChainEnding`), never parked there
    again: the note goes with the watch."""
    chain = await chains.watches.get(chain_id(req))
    if released:
        chain = await _gone_or_not_mine(chains, req, chain)
    if chain is not None:
        if command is not None:
            return await _busy(gh, config, req, await announcing)
        before = await chains.watches.swap_note(chain_id(req), _encode_job(DeployJob(req)))
        if before is not None:
            older = waiting(before)
            if older is not None and older.request != req:
                await superseded_while_waiting(gh, config, older.request)
            return await _waits(gh, req, await announcing)
    if not needed(the_plan, pre_deploy):
        return None
    assert isinstance(the_plan, Update)
    the_plan = await registered(ecs, the_plan)
    revision = str(the_plan.revision)
    announced = await announcing
    (first, command_line), rest = pre_deploy[0], pre_deploy[1:]
    then = ContinueDeploy(
        req, [name for name, _ in rest], dict(pre_deploy), image, changes(), desired_count, the_plan.reused,
        int(announced.deployment["id"]), int(announced.run["id"]), announced.log_url, len(pre_deploy),
        command=command, schedules=schedules,
    )  # fmt: skip
    await start_task_watch(
        chains.watches, chains.wake, ecs, situation.service, revision, req.service, first, command_line,
        ident=chain_id(req), key=task_key(req.repository, req.service, req.environment), then=then,
        timeout=chains.timeout, poll=chains.poll, clock=time.time,
    )  # fmt: skip
    await show_task(gh, req, announced, first, 1, len(pre_deploy), revision)
    return DeployReport("watching", "")


async def _gone_or_not_mine(chains: Chains, req: DeployRequest, chain: Watch | None) -> Watch | None:
    """The chain as it is once it no longer holds ``req`` on its note: its end takes it a moment
    after queuing ``req`` (bot/flows/predeploy_end.py), so wait that moment, then leave it to
    the worker's retries (:class:`ChainEnding`)."""
    deadline = time.monotonic() + CHAIN_END_WAIT
    while chain is not None and (mine := waiting(chain.note)) is not None and mine.request == req:
        if time.monotonic() > deadline:
            raise ChainEnding(f"the preDeploy tasks {req.service} waited for in {req.environment} have ended "
                              "and their watch is being removed; this deploy is tried again in a moment")  # fmt: skip
        await asyncio.sleep(0.1)
        chain = await chains.watches.get(chain_id(req))
    return chain


async def show_task(
    gh: GitHub, req: DeployRequest, announced: Announced, task: str, number: int, total: int, revision: str
) -> None:
    """The check run and the Deployment say which preDeploy task runs."""
    name = check_name(req.repository, req.service, req.environment)
    summary = render("checks/deploy_predeploy.md.j2", req=req, task=task, number=number, total=total,
                     revision=revision.rsplit("/", 1)[-1])  # fmt: skip
    await checks.upsert_check_run(
        gh, req.repository, req.sha, name, status="in_progress", title=f"preDeploy task {task} ({number}/{total})",
        summary=summary, run_id=int(announced.run["id"]),
    )  # fmt: skip
    await deployment_status(
        gh, req, int(announced.deployment["id"]), "in_progress", f"running preDeploy task {task} ({number}/{total})",
        log_url=announced.log_url,
    )  # fmt: skip


async def _waits(gh: GitHub, req: DeployRequest, announced: Announced) -> DeployReport:
    text = "waiting for the running preDeploy tasks of an earlier deploy to end"
    await checks.upsert_check_run(
        gh, req.repository, req.sha, check_name(req.repository, req.service, req.environment), status="queued",
        title=text, summary=render("checks/deploy_waiting.md.j2", req=req), run_id=int(announced.run["id"]),
    )  # fmt: skip
    await deployment_status(gh, req, int(announced.deployment["id"]), "queued", text, log_url=announced.log_url)
    return DeployReport("waiting", text)


async def _busy(gh: GitHub, config: Config, req: DeployRequest, announced: Announced) -> DeployReport:
    return await finish(
        gh, config, req, announced, "cancelled", "not deployed: preDeploy tasks of an earlier deploy are running",
        "error", "not deployed: preDeploy tasks of an earlier deploy are running; deploy again when they end",
        busy=True,
    )  # fmt: skip


async def superseded_while_waiting(gh: GitHub, config: Config, req: DeployRequest) -> None:
    """A deploy that waited for preDeploy tasks and a newer one replaced: it never rolls out."""
    deployment = await find_or_create_deployment(gh, req, config)
    run = await checks.upsert_check_run(
        gh, req.repository, req.sha, check_name(req.repository, req.service, req.environment), status="in_progress",
        title="superseded", summary="",
    )  # fmt: skip
    await finish(
        gh, config, req, Announced(deployment, run), "cancelled", "superseded by a newer push", "inactive",
        "superseded by a newer push before it started rolling out", superseded=True,
    )  # fmt: skip


def announced_of(then: ContinueDeploy) -> Announced:
    """The deploy's Deployment and check run, as the chain recorded them."""
    run: dict[str, Any] = {"id": then.run_id}
    if then.log_url:
        run["html_url"] = then.log_url
    return Announced({"id": then.deployment_id}, run)
