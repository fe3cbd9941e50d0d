"""The end of each preDeploy task of a deploy, in the watcher (bot/flows/predeploy.py says how
they start and wait for each other).

* It failed: the deploy fails before ``UpdateService``; its check run and Deployment name the
  task, its exit code or reason, and its last output lines.
* It succeeded and a newer deploy of the service is waiting: this one is superseded before
  its ``UpdateService`` (and before its next task).
* It succeeded and another follows: that one starts, in the same revision (recorded before
  RunTask, as every task watch is, so a task is never started twice).
* The last one succeeded: ``UpdateService``, and the rollout goes to the rollout watcher,
  which reports the deploy as it reports any.

Whatever the end, a deploy waiting on the watch's note is then queued again, and only then is
the watch taken (removed with its note, atomically), so a crash in between loses no deploy. It is
taken only after ``UpdateService`` is sent, so a deploy that
arrives meanwhile waits and is queued after it, and one that arrives later finds this rollout
already sent: newer deploys always update the service after older ones.
"""

from __future__ import annotations

import time
from dataclasses import replace as dc_replace

import msgspec

from bot.aws import tasks as task_runs
from bot.aws.ecs import Ecs, task_id
from bot.aws.errors import OperationError
from bot.aws.results import TaskRun
from bot.aws.rollout import RolloutRequest, Situation, Update, Wait, plan
from bot.flows.answers import Deployed
from bot.flows.commands import earlier_reply, reply
from bot.flows.deploy import ROLLING_OUT, DeployReport, deployment_status, finish, finish_rollout
from bot.flows.predeploy import announced_of, show_task, waiting
from bot.flows.runtime import Runtime
from bot.flows.task_watch import ContinueDeploy, RanTask, TaskEnded, TaskWatch, encode
from bot.flows.watching import DeployWatches, RolloutWatches
from bot.github.client import GitHub
from bot.store.jobs import DeployJob, DeployRequest, service_key
from bot.store.queue import NewJob
from bot.store.watches import Watch


async def after_task(rt: Runtime, owner: str, watch: Watch, body: TaskWatch) -> None:
    """Act on the end of a preDeploy task (``body.ended``). Raises when AWS or GitHub failed:
    the watcher calls it again with the same body (nothing it did is done twice)."""
    then, ended = body.then, body.ended
    assert isinstance(then, ContinueDeploy) and ended is not None
    req = then.request
    ident = task_id(body.arn) if body.arn else ""
    this = RanTask(body.task, ident, ended.succeeded, ended.reason, ended.exit_code, round(ended.elapsed, 1),
                   list(ended.lines))  # fmt: skip
    ran = [*then.ran, this]
    gh = await rt.github_for_installation(req.installation, req.repository)
    if not ended.succeeded:
        report = await finish(
            gh, rt.config, req, announced_of(then), "failure", f"preDeploy task {body.task} failed: {ended.reason}",
            "failure", f"preDeploy task {body.task} failed: {ended.reason}", pre_deploy=ran, failed=this,
            revision=body.revision.rsplit("/", 1)[-1], image=then.image,
        )  # fmt: skip
        await _answer(gh, then, report)
        await _release(rt, owner, watch, req)
        return
    current = await rt.watches.get(watch.id)
    if current is not None and waiting(current.note) is not None:  # a newer deploy waits: it wins
        report = await finish(
            gh, rt.config, req, announced_of(then), "cancelled", "superseded by a newer push", "inactive",
            "superseded by a newer push before UpdateService (its preDeploy tasks ran)", superseded=True,
            pre_deploy=ran,
        )  # fmt: skip
        await _answer(gh, then, report)
        await _release(rt, owner, watch, req)
        return
    if then.remaining:
        await _next(rt, gh, owner, watch, body, ran)
        return
    await _roll_out(rt, gh, body, then, ran)
    await _release(rt, owner, watch, req)


async def _next(rt: Runtime, gh: GitHub, owner: str, watch: Watch, body: TaskWatch, ran: list[RanTask]) -> None:
    then = body.then
    assert isinstance(then, ContinueDeploy)
    name, rest = then.remaining[0], then.remaining[1:]
    ecs = await Ecs.open(rt.aws(), body.environment)
    service = await ecs.describe_service(body.service)
    now = time.time()
    pending = msgspec.structs.replace(
        body, task=name, arn="", started=now, status="", ended=None, report_attempts=0,
        then=msgspec.structs.replace(then, remaining=rest, ran=ran),
    )  # fmt: skip
    if not await rt.watches.update(watch, owner, encode(pending), now + body.timeout + body.poll):
        return  # another watcher holds it now
    try:
        started = await task_runs.start(ecs, service, body.revision, body.container, name, then.commands[name])
    except OperationError as exc:  # ECS started nothing: the deploy fails with ECS's reason
        failed = msgspec.structs.replace(pending, ended=TaskEnded(False, exc.message, None, 0.0))
        await rt.watches.update(watch, owner, encode(failed), time.time())
        rt.wake_watcher()
        return
    await rt.watches.update(watch, owner, encode(msgspec.structs.replace(pending, arn=started.arn)), now + body.poll)
    await show_task(gh, then.request, announced_of(then), name, len(ran) + 1, then.total, body.revision)


async def _roll_out(rt: Runtime, gh: GitHub, body: TaskWatch, then: ContinueDeploy, ran: list[RanTask]) -> None:
    """UpdateService with the revision the tasks ran in, planned from the service as it is now."""
    req = then.request
    ecs = await Ecs.open(rt.aws(), req.environment)
    fresh = await ecs.describe_service(req.service)
    the_plan = plan(RolloutRequest(req.service, body.revision, desired_count=then.desired_count),
                    Situation(fresh, body.revision))  # fmt: skip
    if isinstance(the_plan, Update):
        the_plan = dc_replace(the_plan, reused=then.reused)
    watches = DeployWatches(RolloutWatches(rt.watches, rt.wake_watcher), then.command, pre_deploy=ran)
    wait = Wait(timeout=rt.settings.deploy_timeout_seconds, poll=rt.settings.deploy_poll_seconds)
    started = await watches.start(
        ecs, req, the_plan, image=then.image, changes=lambda: then.changes, wait=wait, schedules=then.schedules
    )
    announced = announced_of(then)
    if started.watching is None:  # nothing to watch: its end is known
        started.result.pre_deploy = [_task_run(t, body.revision) for t in ran]
        report = await finish_rollout(gh, rt.config, req, announced, started.result, then.image, then.changes)
        await _answer(gh, then, report)
        return
    await watches.announced(req, announced)
    await deployment_status(gh, req, then.deployment_id, "in_progress", ROLLING_OUT + req.tag[:12],
                            log_url=then.log_url)  # fmt: skip


def _task_run(t: RanTask, revision: str) -> TaskRun:
    return TaskRun(t.task, t.task_id, revision, t.succeeded, t.reason, t.exit_code, t.elapsed, list(t.lines))


async def _answer(gh: GitHub, then: ContinueDeploy, report: DeployReport) -> None:
    if then.command is not None and await earlier_reply(gh, then.command.invocation) is None:
        await reply(gh, then.command.invocation, Deployed(report), target=then.command.target)


async def _release(rt: Runtime, owner: str, watch: Watch, req: DeployRequest) -> None:
    """The tasks are over: queue again the deploy that waited on the watch, then take the watch.

    In that order, so that lemi stopping in between loses nothing: the watch is resumed and this
    runs again (the job's id makes the second put a duplicate), and the queued deploy, if it runs
    first, is tried again until the watch is gone (:class:`~bot.flows.predeploy.ChainEnding`).
    A deploy that began to wait on the note in between is queued once the watch is taken."""
    current = await rt.watches.get(watch.id)
    queued = waiting(current.note) if current is not None else None
    await _requeue(rt, req, queued)
    after = waiting(await rt.watches.take(watch, owner) or b"")
    if after is not None and (queued is None or after.request != queued.request):
        await _requeue(rt, req, after)


async def _requeue(rt: Runtime, req: DeployRequest, job: DeployJob | None) -> None:
    if job is None or job.request == req:
        return
    w = job.request
    await rt.queue.put(
        NewJob(
            f"{w.delivery}:{w.sha[:12]}:after-predeploy:{req.sha[:12]}",
            service_key(w.repository, w.service, w.environment),
            msgspec.structs.replace(job, released=True),
        )
    )
