"""The watcher's poll: every claimed watch looked at once, judged, and reported when it ends.

Watches are grouped by environment (one cluster in one account) and their services described
ten to a DescribeServices call. Each answer is judged by :func:`bot.aws.rollout.observe`, with
the truthfulness rules of a deploy that waits: only the deployment lemi started reaching
COMPLETED with running = desired is a success; a circuit-breaker rollback, a FAILED rollout, a
service that is gone or a timeout is a failure, with ECS's events and the stopped tasks. The
verdict is kept on the watch until it is reported, so a report GitHub refuses is sent again,
never judged again. A watch a newer rollout replaced is reported as replaced.

What is reported (bot/flows/watching.py ``then``): a deploy's check run and Deployment, as
bot/flows/deploy.py reports them (and ``/lemi deploy``'s reply), or the reply to a restart or
a rollback.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from msgspec.structs import replace

from bot.aws import schedules
from bot.aws.ecs import Ecs, StoppedTask, revision_of
from bot.aws.history import mark_deployed
from bot.aws.logs import stopped_tasks
from bot.aws.results import TaskRun
from bot.aws.rollout import DeployResult, Rollout, Verdict, concluded, observe
from bot.core.errors import classify
from bot.flows.answers import Answer, Deployed, Failed, RolledOut
from bot.flows.commands import earlier_reply, react, reply
from bot.flows.deploy import Announced, announce, finish_replaced, finish_rollout
from bot.flows.rounds import Kind, Round, run_round
from bot.flows.runtime import Runtime
from bot.flows.watching import (
    Announcement,
    Ended,
    ReplyCommand,
    ReportDeploy,
    RolloutWatch,
    Stopped,
    WatchState,
    announce_failed,
    announcement,
    announcing,
    decode,
    encode,
    replacer,
)
from bot.github.client import GitHub
from bot.store.jobs import Invocation, Target
from bot.store.watches import Watch

if TYPE_CHECKING:  # the stubs are a development dependency
    from types_aiobotocore_ecs.type_defs import ServiceTypeDef

log = logging.getLogger("lemi.watcher")

# how long a finished rollout waits for its deploy job to record the Deployment and check run it
# announced (GitHub writes may queue behind the installation's limits) before the watcher makes them
ANNOUNCE_GRACE = 900.0
REPORT_ATTEMPTS = 8  # a rollout's end that GitHub keeps refusing is logged and dropped after these
PROGRESS_EVERY = 15.0  # seconds between progress updates of one check run (only when it changed)

Clock = Callable[[], float]


async def poll(rt: Runtime, owner: str, claimed: list[Watch], *, clock: Clock = time.time) -> None:
    """Look at every claimed watch once: describe their services (ten to a call, per
    environment), judge each, report the ended ones and keep the others for their next poll
    (in one write for the round: bot/flows/rounds.py)."""

    async def describe(ecs: Ecs, items: list[tuple[Watch, RolloutWatch]]) -> dict[str, ServiceTypeDef]:
        return await ecs.describe_services([b.service for w, b in items if b.ended is None and not w.replaced_by])

    async def look(ecs: Ecs, watch: Watch, body: RolloutWatch, described: Mapping[str, Any], this: Round) -> None:
        await _one(rt, owner, ecs, watch, body, described, clock, this)

    await run_round(rt, owner, claimed, Kind("watch", decode, describe, _repository, look), clock)


def _repository(body: RolloutWatch) -> str:
    then = body.then
    return then.request.repository if isinstance(then, ReportDeploy) else then.job.invocation.repository


async def _one(
    rt: Runtime, owner: str, ecs: Ecs, watch: Watch, body: RolloutWatch, described: Mapping[str, ServiceTypeDef],
    clock: Clock, this: Round,
) -> None:  # fmt: skip
    now = clock()
    if body.ended is None and not watch.replaced_by:
        judged = await _judge(ecs, body, described.get(body.service), now)
        if judged.ended is not None and judged.ended.outcome != "completed":
            # a newer rollout may have replaced this one since the round claimed it (its
            # UpdateService then looks like a rollback here): replaced, not failed
            again = await rt.watches.get(watch.id)
            if again is not None and again.replaced_by:
                watch, judged = again, body
        body = judged
        if body.ended is not None and body.ended.outcome == "completed":
            body = await _schedules(rt, body, described.get(body.service))
    if body.ended is None and not watch.replaced_by:
        body = await _show_progress(rt, body, announcement(watch), now)
        this.keep(watch, encode(body), now + body.poll)
        return
    if isinstance(body.then, ReportDeploy) and not watch.note and _still_announcing(watch, now):
        this.keep(watch, encode(body), now + max(body.poll, 0.5))
        return
    this.decide(watch)  # reported: the others' updates need not wait for it
    try:
        await _report(rt, watch, body)
    except Exception as exc:  # noqa: BLE001 - reported again at the next poll
        attempts = body.report_attempts + 1
        if classify(exc) == "user" or attempts >= REPORT_ATTEMPTS:
            log.error("could not report the end of the rollout of %s; giving up: %s", body.service, exc)
            await rt.watches.remove(watch, owner)
            return
        log.warning("could not report the end of the rollout of %s (attempt %s): %s", body.service, attempts, exc)
        retry = replace(body, report_attempts=attempts)
        await rt.watches.update(watch, owner, encode(retry), now + min(60.0, 2.0**attempts))
        return
    await rt.watches.remove(watch, owner)
    announce_failed.discard(watch.id)


def _still_announcing(watch: Watch, now: float) -> bool:
    """Is the deploy job that made ``watch`` still creating its Deployment and check run? In this
    process it is known (and a failed announcement is made here at once); one made elsewhere (a
    replica, a process that stopped mid-announcement) is given ANNOUNCE_GRACE."""
    if watch.id in announcing:
        return True
    return watch.id not in announce_failed and now - watch.created < ANNOUNCE_GRACE


async def _judge(ecs: Ecs, body: RolloutWatch, service: ServiceTypeDef | None, now: float) -> RolloutWatch:
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
    rollout = concluded(ecs, body.service, watching, verdict, seen, elapsed)
    if rollout.ok:  # the history a rollback reads (a tag AWS refuses is a warning)
        rollout.warnings = await mark_deployed(ecs, rollout.task_definition)
    elif rollout.deployment_id:
        try:  # with their last log lines, where lemi can read them
            rollout.stopped_tasks = await stopped_tasks(ecs, body.service, rollout.deployment_id)
        except Exception as exc:  # noqa: BLE001 - the report goes out without them
            log.warning("could not list the stopped tasks of %s: %s", rollout.deployment_id, exc)
    stopped = [Stopped(t.task_id, t.stopped_reason, list(t.containers), list(t.lines)) for t in rollout.stopped_tasks]
    ended = Ended(rollout.outcome, rollout.reason, rollout.running, rollout.desired, rollout.elapsed,
                  rollout.deployment_id, rollout.events, stopped, rollout.warnings)  # fmt: skip
    log.info("rollout of %s ended: %s (%s)", body.service, rollout.outcome, rollout.reason)
    return replace(body, ended=ended)


async def _schedules(rt: Runtime, body: RolloutWatch, described: ServiceTypeDef | None) -> RolloutWatch:
    """After a completed rollout: a deploy makes the schedules match its commit's file, a rollback
    points them at the revision it restored (kept on the verdict, so a report sent again does not
    do it again). A failure is reported beside the success, never instead of it."""
    then, ended = body.then, body.ended
    assert ended is not None
    aws = rt.aws()
    if isinstance(then, ReportDeploy) and then.schedules is not None:
        report = await schedules.sync_report(aws, body.environment, body.service, then.schedules, body.revision,
                                             described)  # fmt: skip
    elif isinstance(then, ReplyCommand) and then.job.invocation.command.name == "rollback":
        report = await schedules.repoint_report(aws, body.environment, body.service, body.revision)
    else:
        return body
    return replace(body, ended=replace(ended, schedules=report))


async def _show_progress(rt: Runtime, body: RolloutWatch, note: Announcement | None, now: float) -> RolloutWatch:
    """Update a deploy's check run title when the rollout's counts changed (at most every PROGRESS_EVERY s)."""
    state, then = body.state, body.then
    text = f"rolling out {revision_of(body.revision)}: {state.running}/{state.desired} running"
    if not isinstance(then, ReportDeploy) or note is None:
        return body
    if text == body.progress or now - body.progress_at < PROGRESS_EVERY:
        return body
    req = then.request
    owner, repo = req.repository.split("/", 1)
    try:
        gh = await rt.github_for_installation(req.installation, req.repository)
        await gh.patch(
            "/repos/{owner}/{repo}/check-runs/{check_run_id}",
            {"owner": owner, "repo": repo, "check_run_id": note.run_id},
            data={"status": "in_progress", "output": {"title": text, "summary": f"{text} ({state.deployment_id})"}},
        )
    except Exception as exc:  # noqa: BLE001 - progress is best effort
        log.info("could not show the progress of %s: %s", body.service, exc)
        return body
    return replace(body, progress=text, progress_at=now)


def _result(rt: Runtime, body: RolloutWatch) -> DeployResult:
    ended = body.ended
    assert ended is not None
    cluster = rt.config.environment(body.environment).cluster
    rollout = Rollout(
        ended.outcome, body.service, body.environment, cluster, body.revision, ended.deployment_id,  # type: ignore[arg-type]
        ended.reason, running=ended.running, desired=ended.desired, elapsed=ended.elapsed, events=list(ended.events),
        stopped_tasks=[StoppedTask(s.task_id, s.stopped_reason, list(s.containers), list(s.lines)) for s in ended.stopped],
        warnings=list(ended.warnings),
    )  # fmt: skip
    result = DeployResult(body.service, body.environment, body.revision, body.reused, rollout)
    if isinstance(body.then, ReportDeploy):
        result.pre_deploy = [TaskRun(t.task, t.task_id, body.revision, t.succeeded, t.reason, t.exit_code, t.elapsed,
                                     list(t.lines)) for t in body.then.pre_deploy]  # fmt: skip
    return result


async def _report(rt: Runtime, watch: Watch, body: RolloutWatch) -> None:
    then = body.then
    replaced = replacer(watch.replaced_by) if watch.replaced_by and body.ended is None else ""
    if isinstance(then, ReportDeploy):
        req = then.request
        gh = await rt.github_for_installation(req.installation, req.repository)
        note = announcement(watch)
        if note is not None:
            announced = Announced({"id": note.deployment_id}, {"id": note.run_id, "html_url": note.log_url})
        else:  # the deploy job never recorded them (it stopped): find or make them now
            announced = await announce(gh, rt.config, req)
        if replaced:
            report = await finish_replaced(gh, rt.config, req, announced, replaced)
        else:
            ended = body.ended
            synced = ended.schedules if ended is not None else None
            report = await finish_rollout(
                gh, rt.config, req, announced, _result(rt, body), then.image, then.changes, synced
            )
        if then.command is not None:
            await _answer(gh, then.command.invocation, Deployed(report), then.command.target)
        return
    inv = then.job.invocation
    gh = await rt.github_for_installation(inv.installation, inv.repository)
    answer: Answer
    if replaced:
        answer = Failed(f"the rollout was replaced by a newer one ({replaced}) before it ended")
    else:
        answer = RolledOut(_result(rt, body), body.ended.schedules if body.ended is not None else None)
    await _answer(gh, inv, answer, then.job.target)


async def _answer(gh: GitHub, inv: Invocation, answer: Answer, target: Target) -> None:
    """Reply to the command once (a report sent again finds the reply it made)."""
    if await earlier_reply(gh, inv) is None:
        await reply(gh, inv, answer, target=target)
    await react(gh, inv, "success" if answer.ok else "failure")
