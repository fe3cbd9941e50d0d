"""Rollouts watched without holding a worker: a deploy, a restart or a rollback hands its
rollout over here once UpdateService is sent, and the watcher (bot/server/watcher.py, with
bot/flows/watch_poll.py) ends it.

A deploy job records a durable watch (bot/store/watches.py) just before it sends
UpdateService, and completes: its queue key (and its SQS message group) is free at once, so a
newer push of the same service starts at once. The watch holds what the report needs (the
request, the revision, the image, the diff, the rollout being watched, the Deployment and the
check run once announced). Each poll of the watcher claims the due watches, describes their
services ten to a DescribeServices call per environment (one cluster in one account), judges
each answer with :func:`bot.aws.rollout.observe` -- the same truthfulness rules as a deploy
that waits -- shows progress on the check run, and when a verdict is reached reports it exactly
as a waiting deploy does (check run, Deployment status, the previous Deployment retired).

A newer rollout of the same service marks the older watches replaced: ECS replaces their
deployment, and lemi reports them as replaced (neither success nor failure), not as a rollback.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

import msgspec

from bot.aws.ecs import Ecs
from bot.aws.rollout import (
    Plan,
    Situation,
    Started,
    Wait,
    Watching,
    start,
)
from bot.core.config import Config
from bot.core.schedules import ScheduledTask, SyncReport
from bot.flows import predeploy
from bot.flows.deploy import Announced, DeployReport
from bot.flows.predeploy import Chains
from bot.flows.task_watch import RanTask
from bot.github.client import GitHub
from bot.store.jobs import CommandJob, DeployRequest, service_key
from bot.store.watches import Watch, Watches

log = logging.getLogger("lemi.watcher")


class WatchState(msgspec.Struct, frozen=True):
    """A :class:`~bot.aws.rollout.Watching`, as stored."""

    task_definition: str
    before: list[str]
    seen_events: list[str]
    deployment_id: str | None = None
    running: int = 0
    desired: int = 0

    @classmethod
    def of(cls, w: Watching) -> WatchState:
        last = w.last or {}
        return cls(
            w.task_definition, sorted(w.before), sorted(w.seen_events), w.deployment_id,
            int(last.get("runningCount", 0)), int(last.get("desiredCount", 0)),
        )  # fmt: skip

    def watching(self) -> Watching:
        last = {"runningCount": self.running, "desiredCount": self.desired} if self.deployment_id else None
        return Watching(
            self.task_definition, frozenset(self.before), frozenset(self.seen_events), self.deployment_id,
            last,  # type: ignore[arg-type]  # the two counts a report reads
        )  # fmt: skip


class Stopped(msgspec.Struct, frozen=True):
    task_id: str
    stopped_reason: str
    containers: list[str] = []
    lines: list[str] = []  # its last log lines (bounded), where the environment logs to CloudWatch


class Ended(msgspec.Struct, frozen=True):
    """A rollout's verdict, kept until it is reported (a report GitHub refused is tried again)."""

    outcome: str
    reason: str
    running: int
    desired: int
    elapsed: float
    deployment_id: str | None
    events: list[str] = []
    stopped: list[Stopped] = []
    warnings: list[str] = []  # a completed rollout lemi could not tag deployed
    schedules: SyncReport | None = None  # what a completed deploy or rollback did to the schedules


class Announcement(msgspec.Struct, frozen=True):
    """The deploy's Deployment and check run, once its job has them (the watch's note)."""

    deployment_id: int
    run_id: int
    log_url: str | None = None


class ReportDeploy(msgspec.Struct, frozen=True, tag="deploy"):
    """At the end: the deploy's check run and Deployment (and, for ``/lemi deploy``, its reply)."""

    request: DeployRequest
    image: str
    changes: str
    command: CommandJob | None = None
    # the deployed commit's spec.schedules, made to match once the rollout completed (None: a watch
    # stored before lemi managed schedules; the schedules are left alone)
    schedules: dict[str, ScheduledTask] | None = None
    pre_deploy: list[RanTask] = []  # the preDeploy tasks that ran before UpdateService


class ReplyCommand(msgspec.Struct, frozen=True, tag="command"):
    """At the end: the reply to a restart or rollback."""

    job: CommandJob


Then = ReportDeploy | ReplyCommand


class RolloutWatch(msgspec.Struct, frozen=True):
    """What a watch holds: enough to judge its rollout and to report its end (``then``)."""

    then: Then
    service: str
    environment: str
    revision: str  # the task definition ARN rolled out
    reused: bool
    state: WatchState
    started: float  # epoch seconds: a watch outlives the process that started it
    timeout: float
    poll: float
    progress: str = ""
    progress_at: float = 0.0
    ended: Ended | None = None
    report_attempts: int = 0


_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(RolloutWatch).decode
_decode_note = msgspec.json.Decoder(Announcement).decode


def announcement(watch: Watch) -> Announcement | None:
    return _decode_note(watch.note) if watch.note else None


def decode(body: bytes) -> RolloutWatch:
    return _decode(body)


def encode(value: RolloutWatch | Announcement) -> bytes:
    return _encode(value)


def watch_id(req: DeployRequest) -> str:
    return f"deploy:{service_key(req.repository, req.service, req.environment)}:{req.sha}:{req.tag}"


def command_watch_id(job: CommandJob) -> str:
    inv, t = job.invocation, job.target
    return f"command:{service_key(inv.repository, t.service, t.environment)}:{inv.comment_id}:{inv.command.name}"


def replacer(ident: str) -> str:
    """The image tag of the deploy whose watch is ``ident``, for "replaced by ..."."""
    return ident.rsplit(":", 1)[-1][:12]


class RolloutWatches:
    """Hands rollouts to the watcher: the watch is durable before UpdateService is sent, and the
    service's older watches are marked replaced by it (bot/store/watches.py)."""

    def __init__(self, watches: Watches, wake: Callable[[], None], clock: Callable[[], float] = time.time) -> None:
        self.watches = watches
        self.wake = wake
        self.clock = clock

    async def start(
        self, ecs: Ecs, plan: Plan, *, ident: str, key: str, then: Then, wait: Wait,
        sent: Callable[[Then], Then] | None = None,
    ) -> Started:  # fmt: skip
        """Carry ``plan`` out and leave its rollout to the watcher (``then``: what to report at the end;
        ``sent(then)``: what to report instead, made once UpdateService is sent -- work the report
        needs and the rollout does not wait for)."""
        recorded = False

        def body(then: Then, revision: str, watching: Watching) -> bytes:
            return _encode(RolloutWatch(then, plan.service, ecs.environment, revision, plan.reused,
                                        WatchState.of(watching), self.clock(), wait.timeout, wait.poll))  # fmt: skip

        async def before_update(revision: str, watching: Watching) -> None:
            """The watch is durable, and the service's older rollouts are marked replaced, before
            UpdateService: the watcher never judges an older rollout by the deployment that
            replaces it (that would read as a rollback)."""
            nonlocal recorded
            recorded = True  # (a failure half-way is undone like one after it)
            replaced = await self.watches.add_replacing(
                ident, key, ecs.environment, body(then, revision, watching), self.clock() + wait.poll
            )
            if replaced:
                log.info("%s older rollout(s) of %s replaced by %s", replaced, plan.service, replacer(ident))

        try:
            started = await start(ecs, plan, before_update)
        except BaseException:
            if recorded:  # UpdateService was not sent (or failed): nothing to watch; the job is retried
                await self.watches.discard(ident)
                await self.watches.unreplace(key, ident)
            raise
        if started.watching is not None:
            revision = started.result.task_definition
            final = sent(then) if sent is not None else then
            await self.watches.add(ident, key, ecs.environment, body(final, revision, started.watching), self.clock())
            self.wake()
        return started


# announcements a deploy job left to finish in this process, by watch id: the watcher waits for
# them instead of announcing a second time (bot/flows/watch_poll.py)
announcing: dict[str, asyncio.Task[None]] = {}
announce_failed: set[str] = set()  # ... and those whose announcement failed: the watcher makes it


async def announcements_done(timeout: float) -> None:
    """Let the announcements still running finish (a process that stops), for at most ``timeout``."""
    if announcing:
        await asyncio.wait(list(announcing.values()), timeout=timeout)


class DeployWatches:
    """Where a deploy hands its rollout (the ``Watcher`` of bot/flows/deploy.py); ``command``: the
    ``/lemi deploy`` job to answer when it ends."""

    def __init__(
        self, rollouts: RolloutWatches, command: CommandJob | None = None, *, pre_deploy: Sequence[RanTask] = ()
    ) -> None:
        self.rollouts = rollouts
        self.command = command
        self.pre_deploy = list(pre_deploy)

    async def before_update(
        self, gh: GitHub, config: Config, ecs: Ecs, req: DeployRequest, announcing: asyncio.Future[Announced],
        situation: Situation, the_plan: Plan, *, pre_deploy: list[tuple[str, list[str]]], image: str,
        changes: Callable[[], str], desired_count: int | None, poll: float,
        schedules: dict[str, ScheduledTask], released: bool = False,
    ) -> DeployReport | None:  # fmt: skip
        """Wait for another deploy's running preDeploy tasks, or start this one's (bot/flows/predeploy.py)."""
        timeout = float(config.environment(req.environment).task_timeout_seconds)
        chains = Chains(self.rollouts.watches, self.rollouts.wake, timeout=timeout, poll=poll)
        return await predeploy.before_update(
            chains, gh, config, ecs, req, announcing, situation, the_plan, pre_deploy=pre_deploy, image=image,
            changes=changes, desired_count=desired_count, command=self.command, schedules=schedules,
            released=released,
        )  # fmt: skip

    async def exists(self, req: DeployRequest) -> bool:
        return await self.rollouts.watches.get(watch_id(req)) is not None

    async def start(
        self, ecs: Ecs, req: DeployRequest, plan: Plan, *, image: str, changes: Callable[[], str], wait: Wait,
        schedules: dict[str, ScheduledTask] | None,
    ) -> Started:  # fmt: skip
        """The task-definition diff (``changes()``) is made once UpdateService is sent: a watch
        recorded before it has none (it is reported without one only if lemi stopped in between)."""
        key = service_key(req.repository, req.service, req.environment)
        then = ReportDeploy(req, image, "", self.command, schedules, self.pre_deploy)

        def with_changes(then: Then) -> Then:
            return msgspec.structs.replace(then, changes=changes()) if isinstance(then, ReportDeploy) else then

        return await self.rollouts.start(
            ecs, plan, ident=watch_id(req), key=key, then=then, wait=wait, sent=with_changes
        )

    def detach(self, req: DeployRequest, work: Coroutine[Any, Any, None]) -> None:
        ident = watch_id(req)

        async def run() -> None:
            try:
                await work
            except Exception as exc:  # noqa: BLE001 - the watcher announces the deploy itself
                log.warning("could not announce the deploy of %s; the watcher will: %s", req.service, exc)
                announce_failed.add(ident)
            finally:
                announcing.pop(ident, None)
                self.rollouts.wake()

        announcing[ident] = asyncio.ensure_future(run())

    async def announced(self, req: DeployRequest, announced: Announced) -> None:
        """The deploy job has its Deployment and check run: the watcher reports on them."""
        note = Announcement(int(announced.deployment["id"]), int(announced.run["id"]), announced.log_url)
        if await self.rollouts.watches.annotate(watch_id(req), _encode(note)):  # else: already reported
            self.rollouts.wake()


async def watch_command(rollouts: RolloutWatches, ecs: Ecs, job: CommandJob, plan: Plan, wait: Wait) -> Started:
    """A restart or rollback: carry ``plan`` out and answer the command when its rollout ends."""
    inv, target = job.invocation, job.target
    key = service_key(inv.repository, target.service, target.environment)
    return await rollouts.start(ecs, plan, ident=command_watch_id(job), key=key, then=ReplyCommand(job), wait=wait)
