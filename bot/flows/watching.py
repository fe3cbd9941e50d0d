"""Rollouts watched without holding a worker: a deploy hands its rollout over here once
UpdateService is sent, and the watcher (bot/server/watcher.py) ends it.

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
from collections import defaultdict
from collections.abc import Callable
from typing import TYPE_CHECKING

import msgspec
from msgspec.structs import replace

from bot.aws.ecs import Ecs, StoppedTask, revision_of
from bot.aws.rollout import (
    DeployResult,
    Plan,
    Rollout,
    Started,
    Verdict,
    Wait,
    Watching,
    concluded,
    observe,
    start,
)
from bot.core import logs
from bot.core.errors import classify
from bot.flows.deploy import Announced, announce, finish_replaced, finish_rollout
from bot.flows.runtime import Runtime
from bot.store.jobs import DeployRequest, service_key
from bot.store.watches import Watch, Watches

if TYPE_CHECKING:  # the stubs are a development dependency
    from types_aiobotocore_ecs.type_defs import ServiceTypeDef

log = logging.getLogger("lemi.watcher")

# how long a finished rollout waits for its deploy job to record the Deployment and check run it
# announced (GitHub writes may queue behind the installation's limits) before the watcher makes them
ANNOUNCE_GRACE = 900.0
REPORT_ATTEMPTS = 8  # a rollout's end that GitHub keeps refusing is logged and dropped after these
PROGRESS_EVERY = 15.0  # seconds between progress updates of one check run (only when it changed)


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


class Announcement(msgspec.Struct, frozen=True):
    """The deploy's Deployment and check run, once its job has them (the watch's note)."""

    deployment_id: int
    run_id: int
    log_url: str | None = None


class DeployWatch(msgspec.Struct, frozen=True):
    """What a deploy's watch holds: enough to judge its rollout and to report its end."""

    request: DeployRequest
    revision: str  # the task definition ARN rolled out
    reused: bool
    image: str
    changes: str
    state: WatchState
    started: float  # epoch seconds: a watch outlives the process that started it
    timeout: float
    poll: float
    progress: str = ""
    progress_at: float = 0.0
    ended: Ended | None = None
    report_attempts: int = 0


_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(DeployWatch).decode
_decode_note = msgspec.json.Decoder(Announcement).decode


def announcement(watch: Watch) -> Announcement | None:
    return _decode_note(watch.note) if watch.note else None


def watch_id(req: DeployRequest) -> str:
    return f"deploy:{service_key(req.repository, req.service, req.environment)}:{req.sha}:{req.tag}"


def replacer(ident: str) -> str:
    """The image tag of the deploy whose watch is ``ident``, for "replaced by ..."."""
    return ident.rsplit(":", 1)[-1][:12]


class DeployWatches:
    """Where a push deploy hands its rollout (the ``Watcher`` of bot/flows/deploy.py)."""

    def __init__(self, watches: Watches, wake: Callable[[], None], clock: Callable[[], float] = time.time) -> None:
        self.watches = watches
        self.wake = wake
        self.clock = clock

    async def exists(self, req: DeployRequest) -> bool:
        return await self.watches.get(watch_id(req)) is not None

    async def start(self, ecs: Ecs, req: DeployRequest, plan: Plan, *, image: str, changes: str, wait: Wait) -> Started:
        """Carry ``plan`` out; the watch is durable before UpdateService is sent, and replaces the
        service's older watches once it is sent."""
        key = service_key(req.repository, req.service, req.environment)
        ident = watch_id(req)
        recorded = False

        def body(revision: str, watching: Watching) -> bytes:
            return _encode(DeployWatch(req, revision, plan.reused, image, changes, WatchState.of(watching),
                                       self.clock(), wait.timeout, wait.poll))  # fmt: skip

        async def before_update(revision: str, watching: Watching) -> None:
            """The watch is durable, and the service's older rollouts are marked replaced, before
            UpdateService: the watcher never judges an older rollout by the deployment that
            replaces it (that would read as a rollback)."""
            nonlocal recorded
            await self.watches.add(ident, key, req.environment, body(revision, watching), self.clock() + wait.poll)
            recorded = True
            replaced = await self.watches.replace_others(key, ident, ident)
            if replaced:
                log.info("%s older rollout(s) of %s replaced by %s", replaced, req.service, req.tag[:12])

        try:
            started = await start(ecs, plan, before_update)
        except BaseException:
            if recorded:  # UpdateService was not sent (or failed): nothing to watch; the job is retried
                await self.watches.discard(ident)
                await self.watches.unreplace(key, ident)
            raise
        if started.watching is not None:
            revision = started.result.task_definition
            await self.watches.add(ident, key, req.environment, body(revision, started.watching), self.clock())
            self.wake()
        return started

    async def announced(self, req: DeployRequest, announced: Announced) -> None:
        """The deploy job has its Deployment and check run: the watcher reports on them."""
        note = Announcement(int(announced.deployment["id"]), int(announced.run["id"]), announced.log_url)
        if await self.watches.annotate(watch_id(req), _encode(note)):  # else: already reported
            self.wake()


# ---- the watcher's poll ------------------------------------------------------------------------


async def poll(rt: Runtime, owner: str, claimed: list[Watch], *, clock: Callable[[], float] = time.time) -> None:
    """Look at every claimed watch once: describe their services (ten to a call, per
    environment), judge each, report the ended ones and keep the others for their next poll."""
    bodies: dict[str, list[tuple[Watch, DeployWatch]]] = defaultdict(list)
    for watch in claimed:
        try:
            bodies[watch.group].append((watch, _decode(watch.body)))
        except msgspec.DecodeError as exc:
            log.error("dropping watch %s: lemi cannot read it back (%s)", watch.id, exc)
            await rt.watches.remove(watch, owner)
    await asyncio.gather(*(_poll_group(rt, owner, env, items, clock) for env, items in bodies.items()))


async def _poll_group(
    rt: Runtime, owner: str, environment: str, items: list[tuple[Watch, DeployWatch]], clock: Callable[[], float]
) -> None:
    try:
        ecs = await Ecs.open(rt.aws(), environment)
        described = await ecs.describe_services([b.request.service for _, b in items if b.ended is None])
    except Exception as exc:  # noqa: BLE001 - every watch of the group is looked at again later
        log.warning("could not describe the services of %s (%s); trying again", environment, exc)
        now = clock()
        for watch, body in items:
            await rt.watches.update(watch, owner, watch.body, now + max(body.poll, 1.0))
        return
    await asyncio.gather(*(_guarded(rt, owner, ecs, watch, body, described, clock) for watch, body in items))


async def _guarded(
    rt: Runtime, owner: str, ecs: Ecs, watch: Watch, body: DeployWatch, described: dict[str, ServiceTypeDef],
    clock: Callable[[], float],
) -> None:  # fmt: skip
    """One watch; whatever goes wrong with it, the others of the round go on (it is looked at again
    when its lease runs out)."""
    try:
        await _one(rt, owner, ecs, watch, body, described, clock)
    except Exception:  # noqa: BLE001
        log.exception("watch %s: lemi could not look at it; trying again later", watch.id)


async def _one(
    rt: Runtime, owner: str, ecs: Ecs, watch: Watch, body: DeployWatch, described: dict[str, ServiceTypeDef],
    clock: Callable[[], float],
) -> None:  # fmt: skip
    req = body.request
    with logs.bind(repository=req.repository, service=req.service, environment=req.environment):
        now = clock()
        if body.ended is None and not watch.replaced_by:
            body = await _judge(ecs, body, described.get(req.service), now)
        if body.ended is None and not watch.replaced_by:
            body = await _show_progress(rt, body, announcement(watch), now)
            await rt.watches.update(watch, owner, _encode(body), now + body.poll)
            return
        if not watch.note and now - watch.created < ANNOUNCE_GRACE:  # the deploy job is still announcing
            await rt.watches.update(watch, owner, _encode(body), now + max(body.poll, 0.5))
            return
        try:
            await _report(rt, watch, body)
        except Exception as exc:  # noqa: BLE001 - reported again at the next poll
            attempts = body.report_attempts + 1
            if classify(exc) == "user" or attempts >= REPORT_ATTEMPTS:
                log.error("could not report the end of the rollout of %s; giving up: %s", req.service, exc)
                await rt.watches.remove(watch, owner)
                return
            log.warning("could not report the end of the rollout of %s (attempt %s): %s", req.service, attempts, exc)
            retry = replace(body, report_attempts=attempts)
            await rt.watches.update(watch, owner, _encode(retry), now + min(60.0, 2.0**attempts))
            return
        await rt.watches.remove(watch, owner)


async def _judge(ecs: Ecs, body: DeployWatch, service: ServiceTypeDef | None, now: float) -> DeployWatch:
    """One DescribeServices answer judged; the verdict kept in the body once there is one."""
    watching = body.state.watching()
    elapsed = now - body.started
    if service is None:
        verdict: Verdict | None = Verdict("failed", "the ECS service is gone (deleted, or no longer ACTIVE)")
        seen = None
    else:
        observation = observe(watching, service, elapsed, body.timeout)
        watching, verdict, seen = observation.watching, observation.verdict, service
    body = replace(body, state=WatchState.of(watching))
    if verdict is None:
        return body
    rollout = concluded(ecs, body.request.service, watching, verdict, seen, elapsed)
    if not rollout.ok and rollout.deployment_id:
        try:
            rollout.stopped_tasks = await ecs.stopped_tasks(rollout.deployment_id)
        except Exception as exc:  # noqa: BLE001 - the report goes out without them
            log.warning("could not list the stopped tasks of %s: %s", rollout.deployment_id, exc)
    stopped = [Stopped(t.task_id, t.stopped_reason, list(t.containers)) for t in rollout.stopped_tasks]
    ended = Ended(rollout.outcome, rollout.reason, rollout.running, rollout.desired, rollout.elapsed,
                  rollout.deployment_id, rollout.events, stopped)  # fmt: skip
    log.info("rollout of %s ended: %s (%s)", body.request.service, rollout.outcome, rollout.reason)
    return replace(body, ended=ended)


async def _show_progress(rt: Runtime, body: DeployWatch, note: Announcement | None, now: float) -> DeployWatch:
    """Update the check run's title when the rollout's counts changed (at most every PROGRESS_EVERY s)."""
    state = body.state
    text = f"rolling out {revision_of(body.revision)}: {state.running}/{state.desired} running"
    if note is None or text == body.progress or now - body.progress_at < PROGRESS_EVERY:
        return body
    req = body.request
    try:
        gh = await rt.github_for_installation(req.installation, req.repository)
        await gh.patch(
            "/repos/{owner}/{repo}/check-runs/{check_run_id}",
            {"owner": req.repository.split("/")[0], "repo": req.repository.split("/")[1], "check_run_id": note.run_id},
            data={"status": "in_progress", "output": {"title": text, "summary": f"{text} ({state.deployment_id})"}},
        )
    except Exception as exc:  # noqa: BLE001 - progress is best effort
        log.info("could not show the progress of %s: %s", req.service, exc)
        return body
    return replace(body, progress=text, progress_at=now)


async def _report(rt: Runtime, watch: Watch, body: DeployWatch) -> None:
    req = body.request
    gh = await rt.github_for_installation(req.installation, req.repository)
    note = announcement(watch)
    if note is not None:
        announced = Announced({"id": note.deployment_id}, {"id": note.run_id, "html_url": note.log_url})
    else:  # the deploy job never recorded them (it stopped): find or make them now
        announced = await announce(gh, rt.config, req)
    if watch.replaced_by and body.ended is None:
        await finish_replaced(gh, rt.config, req, announced, replacer(watch.replaced_by))
        return
    ended = body.ended
    assert ended is not None
    env = rt.config.environment(req.environment)
    rollout = Rollout(
        ended.outcome, req.service, req.environment, env.cluster, body.revision, ended.deployment_id,  # type: ignore[arg-type]
        ended.reason, running=ended.running, desired=ended.desired, elapsed=ended.elapsed, events=list(ended.events),
        stopped_tasks=[StoppedTask(s.task_id, s.stopped_reason, list(s.containers)) for s in ended.stopped],
    )  # fmt: skip
    result = DeployResult(req.service, req.environment, body.revision, body.reused, rollout)
    await finish_rollout(gh, rt.config, req, announced, result, body.image, body.changes)
