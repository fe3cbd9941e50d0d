"""One runner per slash command: ``RUNNERS`` maps each name of ``COMMANDS`` to it.

A runner declares the role it needs, whether it is answered at once or queued (``long``:
run by a ``command`` job in its service's concurrency key, answered when the rollout
ended), and runs the command, returning a typed answer (:mod:`bot.flows.answers`). There
are three shapes:

* :class:`PullRequestRunner`: the pull request itself (help, provision);
* :class:`ServiceRunner`: one service in one environment, answered at once;
* :class:`QueuedRunner`: one service in one environment, through the queue: ``accept``
  makes the job (pinning what a retry must not choose again), ``run`` runs it.

Adding a command: its ``Spec`` in :mod:`bot.core.command_parser`, a runner here (and in
``RUNNERS``), and the block of ``templates/comments/command.md.j2`` for a new kind of answer.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import ClassVar

import msgspec

from bot.aws import operate
from bot.aws.clients import AwsClients
from bot.aws.ecs import Ecs
from bot.aws.errors import OperationError
from bot.aws.rollout import RolloutRequest, Wait, plan, survey
from bot.aws.verify import verify_provisioned
from bot.core.command_parser import Command, Reply, usage
from bot.core.compile import compile_for
from bot.core.problems import Invalid
from bot.core.tasks import unknown_task
from bot.flows.answers import (
    Answer,
    Deployed,
    Diffed,
    InvalidFiles,
    Locked,
    NotDone,
    Provisioned,
    Said,
    StatusShown,
    TasksListed,
    TaskStopped,
    Unlocked,
    Verified,
    Watched,
)
from bot.flows.commands import RANKS, Invocation, Refused, Target, load_files, lock_reason
from bot.flows.deploy import DeployRequest, run_deploy
from bot.flows.provision import PullRequest, provision_pull_request
from bot.flows.runtime import Runtime
from bot.flows.task_watch import ReplyRun, resume_task_watch, run_watch_id, start_task_watch, task_key
from bot.flows.watching import DeployWatches, RolloutWatches, command_watch_id, watch_command
from bot.github.client import GitHub
from bot.store.jobs import CommandJob, service_key
from bot.store.locks import Held
from bot.store.queue import NewJob, Queue


@dataclass(frozen=True)
class Call:
    """A command being run: the client of its repository, lemi's runtime, what was asked."""

    gh: GitHub
    ctx: Runtime
    inv: Invocation
    role: str = ""  # the commenter's role, read when the command was accepted (not again for a queued job)
    resumed: bool = False  # a queued job run again: what it started before is found, not sent again

    def aws(self) -> AwsClients:
        return self.ctx.aws()

    def rollouts(self) -> RolloutWatches:
        """Where a long command hands its rollout."""
        return RolloutWatches(self.ctx.watches, self.ctx.wake_watcher)

    def wait(self) -> Wait:
        """How a long command waits for its rollout."""
        settings = self.ctx.settings
        return Wait(timeout=settings.deploy_timeout_seconds, poll=settings.deploy_poll_seconds)


class Runner:
    """What every runner declares."""

    name: ClassVar[str]
    role: ClassVar[str] = "write"  # on an unprotected environment; a protected one asks for maintain
    long: ClassVar[bool] = False  # queued, answered when its job ends
    open_when_locked: ClassVar[bool] = False  # runs while another user holds the environment's lock


class PullRequestRunner(Runner):
    """A command on the pull request itself: no service, no environment."""

    what: ClassVar[str]  # for a refusal: "<what> needs `write` or higher"

    async def run(self, call: Call, pull: PullRequest) -> Answer:
        raise NotImplementedError


class ServiceRunner(Runner):
    """A command on one service in one environment, answered at once."""

    async def run(self, call: Call, target: Target) -> Answer:
        raise NotImplementedError


class QueuedRunner(Runner):
    """A command on one service in one environment that starts a rollout: queued, and answered
    when the rollout ends (by the watcher: ``run`` answers :class:`Watched`), or at once when it
    could not start one."""

    long = True

    async def accept(self, call: Call, target: Target) -> CommandJob:
        """The job, made when the command is accepted."""
        return CommandJob(call.inv, target)

    async def run(self, call: Call, job: CommandJob) -> Answer | Watched:
        raise NotImplementedError


# ---- the pull request's own -------------------------------------------------------------------


@dataclass(frozen=True)
class Say(PullRequestRunner):
    """``help``, and the parser's answer to a comment it could not take as a command."""

    name = "help"
    what = "using lemi here"
    text: str
    error: bool = False

    async def run(self, call: Call, pull: PullRequest) -> Answer:
        return Said(self.text, self.error)


class Provision(PullRequestRunner):
    name = "provision"
    what = "provisioning"

    async def run(self, call: Call, pull: PullRequest) -> Answer:
        ctx = call.ctx
        infra_gh = await ctx.github_for_repo(ctx.config.infra.repository)
        return Provisioned(await provision_pull_request(call.gh, infra_gh, ctx.config, pull, owners=ctx.owners))


# ---- answered at once --------------------------------------------------------------------------


class Status(ServiceRunner):
    name = "status"
    open_when_locked = True

    async def run(self, call: Call, target: Target) -> Answer:
        status = await operate.status(call.aws(), target.environment, target.service)
        return StatusShown(status, await call.ctx.locks.get(call.inv.repository, target.environment))


class Tasks(ServiceRunner):
    name = "tasks"

    async def run(self, call: Call, target: Target) -> Answer:
        return TasksListed(await operate.list_tasks(call.aws(), target.environment, target.service))


class StopTask(ServiceRunner):
    name = "stop-task"

    async def run(self, call: Call, target: Target) -> Answer:
        inv = call.inv
        assert inv.command.argument is not None  # the parser requires the task id
        task = await operate.stop_task(
            call.aws(), target.environment, target.service, inv.command.argument,
            reason=f"stopped by @{inv.user} via lemi",
        )  # fmt: skip
        return TaskStopped(task)


class Verify(ServiceRunner):
    name = "verify"

    async def run(self, call: Call, target: Target) -> Answer:
        try:
            files = await load_files(call.gh, call.ctx.config, call.inv, target)
        except Invalid as exc:
            return InvalidFiles(exc.problems)
        return Verified(await verify_provisioned(call.aws(), target.environment, files))


class Diff(ServiceRunner):
    name = "diff"

    async def run(self, call: Call, target: Target) -> Answer:
        try:
            files = await load_files(call.gh, call.ctx.config, call.inv, target)
        except Invalid as exc:
            return InvalidFiles(exc.problems)
        aws, env, service = call.aws(), target.environment, target.service
        running = await operate.status(aws, env, service)
        compiled = compile_for(call.ctx.config, files, env, running.image_tag)
        return Diffed(await operate.diff(aws, env, service, compiled.task_definition))


class LockEnvironment(ServiceRunner):
    name = "lock"

    async def run(self, call: Call, target: Target) -> Answer:
        inv, env = call.inv, target.environment
        lock = await call.ctx.locks.acquire(inv.repository, env, inv.user, f"locked from #{inv.number}")
        if lock.holder != inv.user:
            raise Refused(f"`{env}` is already locked by @{lock.holder}{lock_reason(lock)}")
        return Locked(lock)


class UnlockEnvironment(ServiceRunner):
    """Release the lock (its holder, or a maintainer) and queue the deploys it held again."""

    name = "unlock"
    open_when_locked = True

    async def run(self, call: Call, target: Target) -> Answer:
        inv, env, ctx = call.inv, target.environment, call.ctx
        lock = await ctx.locks.get(inv.repository, env)
        if lock is None:
            return Unlocked(None)
        if lock.holder != inv.user and RANKS.get(call.role, 0) < RANKS["maintain"]:
            raise Refused(f"`{env}` is locked by @{lock.holder}; only they, or a maintainer, can unlock it")
        # the held deploys are queued before the lock goes, so failing in between loses none (the
        # command is tried again; a repeated put is a duplicate); one held meanwhile is queued after
        queued = await _requeue_held(ctx.queue, await ctx.locks.held(inv.repository, env), set())
        released = await ctx.locks.release(inv.repository, env)
        await _requeue_held(ctx.queue, released, queued)
        return Unlocked(lock, len(released))


async def _requeue_held(queue: Queue, held: list[Held], done: set[int]) -> set[int]:
    """Queue the held deploys not in ``done`` again (``released``: a held deploy older than one that
    ran meanwhile is superseded, not rolled back); returns the ids now queued."""
    for h in held:
        if h.id in done:
            continue
        req = h.job.request
        await queue.put(
            NewJob(
                f"{req.delivery}:released:{h.id}",
                service_key(req.repository, req.service, req.environment),
                msgspec.structs.replace(h.job, released=True),
            )
        )
    return done | {h.id for h in held}


# ---- queued: answered when the rollout ended ----------------------------------------------------


async def _watched(call: Call, job: CommandJob, request: RolloutRequest, ecs: Ecs | None = None) -> Watched:
    """Send the rollout of a restart or rollback and leave it to the watcher, which answers the
    command when it ends; a retried job whose rollout was already sent sends nothing again."""
    rollouts = call.rollouts()
    if await rollouts.watches.get(command_watch_id(job)) is not None:
        return Watched()
    ecs = ecs or await Ecs.open(call.aws(), job.target.environment)
    started = await watch_command(rollouts, ecs, job, plan(request, await survey(ecs, request)), call.wait())
    if started.watching is None:  # pragma: no cover - a fresh request never plans a report of an old rollout
        raise OperationError(f"the rollout of {job.target.service} could not be started")
    return Watched()


class Restart(QueuedRunner):
    name = "restart"

    async def run(self, call: Call, job: CommandJob) -> Answer | Watched:
        return await _watched(call, job, RolloutRequest(job.target.service, force_new_deployment=True))


class Rollback(QueuedRunner):
    """To the revision lemi deployed successfully before the running one (bot/aws/history.py),
    chosen when the command is accepted: a retried job goes back to it, never one step further."""

    name = "rollback"

    async def accept(self, call: Call, target: Target) -> CommandJob:
        _, previous = await operate.previous_revision(call.aws(), target.environment, target.service)
        return CommandJob(call.inv, target, rollback_to=previous)

    async def run(self, call: Call, job: CommandJob) -> Answer | Watched:
        if job.rollback_to is None:
            raise OperationError("this rollback was queued without the revision to go back to")
        return await _watched(call, job, RolloutRequest(job.target.service, job.rollback_to))


class Deploy(QueuedRunner):
    """``deploy <tag>``: the service files of the commit pinned when the command was accepted
    (the environment branch's for a protected environment, the pull request's otherwise)."""

    name = "deploy"

    async def run(self, call: Call, job: CommandJob) -> Answer | Watched:
        inv, target, ctx = job.invocation, job.target, call.ctx
        assert inv.command.argument is not None  # the parser requires the image tag
        req = DeployRequest(
            inv.repository, target.service, target.environment, target.ref, inv.command.argument,
            inv.user, "command", inv.delivery, inv.installation,
        )  # fmt: skip
        settings = ctx.settings
        report = await run_deploy(
            call.gh, call.aws(), ctx.config, req, owners=ctx.owners, superseded=_never,
            poll=settings.deploy_poll_seconds, timeout=settings.deploy_timeout_seconds,
            resumed=call.resumed, watch=DeployWatches(call.rollouts(), job),
        )  # fmt: skip
        return Watched() if report.outcome == "watching" else Deployed(report)


class RunTask(QueuedRunner):
    """``run <task>``: the task's command from the service file of the commit pinned when the
    command was accepted (the environment branch's for a protected environment, the pull
    request's otherwise), run in the service's running revision; the watcher answers when the
    task ends (bot/flows/task_watch.py). Only the task's name comes from the comment."""

    name = "run"

    async def run(self, call: Call, job: CommandJob) -> Answer | Watched:
        inv, target, ctx = job.invocation, job.target, call.ctx
        name = inv.command.argument
        assert name is not None  # the parser requires a task name
        ident = run_watch_id(job)
        if await resume_task_watch(ctx.watches, ctx.wake_watcher, ident, clock=time.time) is not None:
            return Watched()  # a retried job: its task was started (or may have been), never again
        try:
            files = await load_files(call.gh, ctx.config, inv, target)
        except Invalid as exc:
            return InvalidFiles(exc.problems)
        tasks = files.service.spec.tasks
        unknown = unknown_task(name, tasks, f"deploy/{target.service}/service.yaml of {target.source}")
        if unknown is not None:
            return NotDone(unknown)
        ecs = await Ecs.open(call.aws(), target.environment)
        service = await ecs.describe_service(target.service)
        await start_task_watch(
            ctx.watches, ctx.wake_watcher, ecs, service, service["taskDefinition"], target.service, name, tasks[name],
            ident=ident, key=task_key(inv.repository, target.service, target.environment),
            then=ReplyRun(job), timeout=ctx.config.environment(target.environment).task_timeout_seconds,
            poll=ctx.settings.deploy_poll_seconds, clock=time.time,
        )  # fmt: skip
        return Watched()


async def _never() -> bool:
    return False


AnyRunner = PullRequestRunner | ServiceRunner | QueuedRunner
RUNNERS: dict[str, AnyRunner] = {
    runner.name: runner
    for runner in (
        Say(usage()),
        Status(),
        Tasks(),
        Restart(),
        Deploy(),
        Rollback(),
        RunTask(),
        StopTask(),
        Verify(),
        Diff(),
        Provision(),
        LockEnvironment(),
        UnlockEnvironment(),
    )  # fmt: skip
}


def runner_for(parsed: Command | Reply) -> AnyRunner:
    """The runner of a command; a reply of the parser (help, or why it did not understand) is said."""
    if isinstance(parsed, Reply):
        return Say(parsed.text, parsed.error)
    return RUNNERS[parsed.name]
