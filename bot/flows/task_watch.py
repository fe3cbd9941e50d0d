"""One-off tasks watched without holding a worker: ``/lemi run`` (and, later, a deploy's
``preDeploy`` tasks) starts an ECS task and leaves it to the watcher (bot/server/watcher.py,
with bot/flows/task_poll.py), which judges it (bot/aws/tasks.judge) and says what to do at
its end (:class:`TaskWatch` ``then``, dispatched in :func:`finish_task`).

A task watch is a durable watch (bot/store/watches.py) whose id starts with ``task:`` (the
watcher sends those to bot/flows/task_poll.py) and whose key is ``task:`` + the service's key,
so a rollout of the same service never marks it replaced.

Starting one (:func:`start_task_watch`) records the watch *before* RunTask, with no task ARN,
due only once the task's bound has passed; then sends RunTask (with an idempotency token made
from the watch id, so the SDK's own retries start one task) and records the ARN, due at once.
So a job retried after RunTask never starts a second task: it finds the watch by its id and
starts nothing. When ECS certainly started nothing (lemi or AWS refused RunTask) the watch is
dropped and the job answers the error. When lemi cannot tell -- the process stopped between
RunTask and recording the ARN, or RunTask's answer never came -- the watch is reported as a
failure saying so (a retried job makes it due at once; otherwise the watcher does when its
bound passes), and the task is never sent again.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import msgspec

from bot.aws import tasks as task_runs
from bot.aws.ecs import Ecs, task_id
from bot.aws.errors import AwsError
from bot.core.errors import UserError
from bot.core.schedules import ScheduledTask
from bot.flows.answers import TaskRan
from bot.flows.commands import earlier_reply, react, reply
from bot.flows.runtime import Runtime
from bot.store.jobs import CommandJob, DeployRequest, service_key
from bot.store.watches import Watch, Watches

if TYPE_CHECKING:  # the stubs are a development dependency
    from types_aiobotocore_ecs.type_defs import ServiceTypeDef

log = logging.getLogger("lemi.watcher")

PREFIX = "task:"
UNKNOWN_START = (
    "lemi stopped between asking ECS to start the task and recording it, so whether it ran is unknown; "
    "look for it among the service's stopped tasks (group lemi-task:{name}) before running it again"
)


class _Then(msgspec.Struct, frozen=True, tag_field="kind"):
    """What to do when the task ended (a tagged union: one member per use)."""


class ReplyRun(_Then, frozen=True, tag="run"):
    """``/lemi run``: answer the command."""

    job: CommandJob


class RanTask(msgspec.Struct, frozen=True):
    """A preDeploy task that ended, for the deploy's report."""

    task: str
    task_id: str
    succeeded: bool
    reason: str
    exit_code: int | None
    elapsed: float
    lines: list[str] = []


class ContinueDeploy(_Then, frozen=True, tag="deploy"):
    """A deploy's preDeploy tasks (bot/flows/predeploy.py): at each task's end, the next task,
    or UpdateService once every one succeeded, or the deploy's failure."""

    request: DeployRequest
    remaining: list[str]  # the tasks still to run after this one, in order
    commands: dict[str, list[str]]  # their commands, from the deployed commit's service file
    image: str
    changes: str  # the task-definition diff, for the report
    desired_count: int | None
    reused: bool
    deployment_id: int
    run_id: int
    log_url: str | None = None
    total: int = 1  # how many preDeploy tasks the deploy runs
    ran: list[RanTask] = []
    command: CommandJob | None = None  # ``/lemi deploy``: the command to answer at the end
    schedules: dict[str, ScheduledTask] | None = None  # the deployed commit's, made to match once it completed


TaskThen = ReplyRun | ContinueDeploy


class TaskEnded(msgspec.Struct, frozen=True):
    """How the task ended, kept until it is reported (a report GitHub refused is tried again)."""

    succeeded: bool
    reason: str
    exit_code: int | None
    elapsed: float
    lines: list[str] = []  # the task's last output lines (none until lemi reads its logs)


class TaskWatch(msgspec.Struct, frozen=True):
    """What a task watch holds: enough to judge the task and to act on its end (``then``)."""

    then: TaskThen
    service: str
    environment: str
    task: str  # its name in spec.tasks
    arn: str  # "" until RunTask answered
    revision: str  # the task definition it runs in
    container: str  # the container whose command and exit code it is
    started: float  # epoch seconds (a watch outlives the process that started it)
    timeout: float
    poll: float
    status: str = ""  # ECS's last word while it runs, e.g. "RUNNING since 12:03:04 UTC"
    ended: TaskEnded | None = None
    report_attempts: int = 0


_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(TaskWatch).decode


def encode(body: TaskWatch) -> bytes:
    return _encode(body)


def decode(data: bytes) -> TaskWatch:
    return _decode(data)


def task_key(repository: str, service: str, environment: str) -> str:
    """The watch key of a service's tasks: never a rollout's key (rollouts replace same-key watches)."""
    return PREFIX + service_key(repository, service, environment)


def run_watch_id(job: CommandJob) -> str:
    inv, t = job.invocation, job.target
    return f"{PREFIX}run:{service_key(inv.repository, t.service, t.environment)}:{inv.comment_id}"


async def resume_task_watch(
    watches: Watches, wake: Callable[[], None], ident: str, *, clock: Callable[[], float]
) -> TaskWatch | None:
    """The task watch ``ident`` a job recorded before (None: there is none, start it). One whose
    task lemi cannot tell was started (no ARN: its job stopped mid-start) is ended as unknown
    and made due at once, so the watcher answers now."""
    found = await watches.get(ident)
    if found is None:
        return None
    existing = decode(found.body)
    if not existing.arn and existing.ended is None:
        ended = TaskEnded(False, UNKNOWN_START.format(name=existing.task), None, clock() - existing.started)
        existing = msgspec.structs.replace(existing, ended=ended)
        await watches.add(ident, found.key, found.group, encode(existing), clock())
        wake()
    return existing


async def start_task_watch(
    watches: Watches, wake: Callable[[], None], ecs: Ecs, service_desc: ServiceTypeDef, revision: str,
    container: str, name: str, command: Sequence[str], *, ident: str, key: str, then: TaskThen,
    timeout: float, poll: float, clock: Callable[[], float],
) -> TaskWatch:  # fmt: skip
    """Start task ``name`` and leave it to the watcher (see the module's rules). A watch ``ident``
    already recorded (a retried job) starts nothing: it is returned as :func:`resume_task_watch` leaves it."""
    existing = await resume_task_watch(watches, wake, ident, clock=clock)
    if existing is not None:
        return existing
    now = clock()
    body = TaskWatch(then, service_desc.get("serviceName", ""), ecs.environment, name, "", revision, container,
                     now, timeout, poll)  # fmt: skip
    await watches.add(ident, key, ecs.environment, encode(body), now + timeout + poll)
    try:
        token = hashlib.sha256(ident.encode()).hexdigest()  # 64 characters, ECS's limit
        started = await task_runs.start(ecs, service_desc, revision, container, name, command, token)
    except Exception as exc:
        if _not_started(exc):  # nothing to watch: the job answers the error
            await watches.discard(ident)
        # else RunTask may have reached ECS: the watch stays, so a retry answers, never runs it again
        raise
    body = msgspec.structs.replace(body, arn=started.arn)
    await watches.add(ident, key, ecs.environment, encode(body), clock() + poll)
    log.info("started task %s of %s in %s: %s", name, body.service, ecs.environment, started.id)
    wake()
    return body


def _not_started(exc: Exception) -> bool:
    """Did ECS certainly start nothing? lemi refused before sending RunTask, or AWS answered it
    with an error; not when the answer never came (a network failure, a timeout)."""
    return isinstance(exc, UserError) or (isinstance(exc, AwsError) and bool(exc.code))


def repository_of(body: TaskWatch) -> str:
    then = body.then
    return then.request.repository if isinstance(then, ContinueDeploy) else then.job.invocation.repository


async def finish_task(rt: Runtime, watch: Watch, body: TaskWatch) -> None:
    """The task ended (``body.ended``): do what its ``then`` says. Raises when GitHub refused
    (the watcher tries again)."""
    ended = body.ended
    assert ended is not None
    then = body.then
    if isinstance(then, ReplyRun):
        inv = then.job.invocation
        gh = await rt.github_for_installation(inv.installation, inv.repository)
        answer = TaskRan(
            body.task, task_id(body.arn) if body.arn else "", body.revision, ended.succeeded,
            ended.reason, ended.exit_code, ended.elapsed, list(ended.lines),
        )  # fmt: skip
        if await earlier_reply(gh, inv) is None:
            await reply(gh, inv, answer, target=then.job.target)
        await react(gh, inv, "success" if answer.ok else "failure")
        return
    raise TypeError(f"a task watch with an unknown end: {type(then).__name__}")  # pragma: no cover
