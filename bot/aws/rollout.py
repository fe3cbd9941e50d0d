"""Deploy, restart and rollback as a plan decided from what ECS says, then done -- truthfully.

A rollout succeeds only when the PRIMARY deployment that *this* update created
reaches ``rolloutState`` COMPLETED with running = desired. A circuit-breaker
rollback (our deployment FAILED, or replaced by another PRIMARY), a FAILED
rollout or a timeout is a failure, reported with the reason, the service's
recent events and the ``stoppedReason`` of the tasks of our deployment that
stopped (with their last log lines where the environment logs to CloudWatch). A completed
rollout tags its revision deployed (bot/aws/history.py).

Pure, and tested without AWS: :func:`plan` decides what to do from the described
service (send nothing and watch, register and update, update only, report what
became of an earlier attempt's rollout), and :func:`observe` judges one
DescribeServices answer for the deployment being watched. Thin executors do the calls:
:func:`survey` gathers what :func:`plan` needs, :func:`execute` carries a plan out and
:func:`watch` polls until :func:`observe` gives a verdict. :func:`deploy` is all three.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

from bot.aws.ecs import Ecs, revision_of
from bot.aws.history import mark_deployed
from bot.aws.logs import stopped_tasks
from bot.aws.results import DeployResult as DeployResult  # results: re-exported for callers
from bot.aws.results import Outcome
from bot.aws.results import Rollout as Rollout

if TYPE_CHECKING:  # the stubs are a development dependency
    from types_aiobotocore_ecs.type_defs import DeploymentTypeDef, ServiceTypeDef

DEFAULT_TIMEOUT = 900.0
DEFAULT_POLL = 5.0
FIND_DEPLOYMENT_TIMEOUT = 60.0  # how long to look for the deployment an update created


# ---- values ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Progress:
    """One observation of the rollout, for live display."""

    deployment_id: str
    rollout_state: str
    running: int
    desired: int
    pending: int
    failed: int
    elapsed: float


@dataclass(frozen=True, slots=True)
class Wait:
    """Wait for the rollout to end: at most ``timeout`` seconds, describing the service every ``poll``."""

    timeout: float = DEFAULT_TIMEOUT
    poll: float = DEFAULT_POLL
    on_progress: Callable[[Progress], None] | None = None


@dataclass(frozen=True, slots=True)
class RolloutRequest:
    """What to run.

    ``task_definition``: a compiled task definition (registered unless the family's newest
    revision is identical), the ARN of a registered revision, or None: the revision the service
    runs now. ``desired_count``: the task count to set (None: leave it as it is).
    ``force_new_deployment``: replace every task even when nothing changes (a restart).
    ``already_sent``: an earlier attempt already sent this update (lemi was restarted
    mid-rollout): watch it to its end, or report what became of it, but never send it again.
    """

    service: str
    task_definition: Mapping[str, Any] | str | None = None
    desired_count: int | None = None
    force_new_deployment: bool = False
    already_sent: bool = False


@dataclass(frozen=True, slots=True)
class Situation:
    """What ECS says, gathered before deciding.

    ``service``: DescribeServices' answer for the service. ``revision``: the registered revision
    to roll out (one identical to the compiled definition, or the one the request names); None:
    none is, register the compiled definition. ``running``: the running task definition in the
    compiled one's shape, when it was compared (for a diff).
    """

    service: ServiceTypeDef
    revision: str | None
    running: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class NewRevision:
    """A compiled task definition the plan registers before rolling it out."""

    task_definition: Mapping[str, Any]


# ---- plans -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WatchCurrent:
    """Send nothing and watch the current PRIMARY deployment: the service already runs this
    revision and nothing changes, so ECS would start no deployment (an identical redeploy, or
    one whose rollout is still in progress), or an earlier attempt already sent this update."""

    service: str
    revision: str
    reused: bool
    deployment_id: str | None  # the current PRIMARY (None: the service has none)
    before: frozenset[str]  # the service's other deployments
    seen_events: frozenset[str]


@dataclass(frozen=True, slots=True)
class Update:
    """Send UpdateService (registering a :class:`NewRevision` first) and watch the deployment it starts."""

    service: str
    revision: str | NewRevision
    reused: bool
    desired_count: int | None
    force_new_deployment: bool
    same_revision: bool  # the service already runs this revision (a new task count)
    deployments: frozenset[str]  # the service's deployments before the update
    primary: str | None  # the PRIMARY one of them
    seen_events: frozenset[str]


@dataclass(frozen=True, slots=True)
class ReportFailed:
    """An earlier attempt's rollout FAILED while lemi was not watching (ECS rolled back):
    report that deployment, as watching it finds it; send nothing."""

    service: str
    revision: str
    reused: bool
    deployment_id: str
    before: frozenset[str]


@dataclass(frozen=True, slots=True)
class ReportReplaced:
    """An earlier attempt's rollout ended while lemi was not watching, and the service runs
    another revision: report that, as a failure; send nothing."""

    service: str
    revision: str | NewRevision
    reused: bool
    running: str  # the revision the service runs instead
    events: tuple[str, ...]

    def reason(self, revision: str) -> str:
        return (
            f"while lemi was not watching, the rollout of {revision_of(revision)} ended and the service "
            f"now runs {revision_of(self.running)} (rolled back or replaced)"
        )


Plan = WatchCurrent | Update | ReportFailed | ReportReplaced


def event_ids(service: ServiceTypeDef) -> frozenset[str]:
    return frozenset(str(e.get("id")) for e in service.get("events", []))


def event_lines(service: ServiceTypeDef, seen: frozenset[str], limit: int = 10) -> list[str]:
    """Service events not ``seen`` before (those since the update), oldest first."""
    lines = []
    for event in service.get("events", []):
        if str(event.get("id")) in seen:
            continue
        created = event.get("createdAt")
        stamp = created.strftime("%H:%M:%S") if isinstance(created, datetime) else ""
        lines.append(f"{stamp} {event.get('message', '')}".strip())
    return list(reversed(lines[:limit]))  # ECS lists newest first; show in order


def plan(request: RolloutRequest, situation: Situation) -> Plan:
    """What to do, from what ECS says (pure).

    A revision the service runs, with nothing else changing, gets no UpdateService (ECS would
    start no deployment): its current PRIMARY is watched. A revision whose PRIMARY deployment
    FAILED is deployed again with a new deployment rather than re-reported. An earlier attempt's
    update (``already_sent``) is never sent again: its deployment is watched, or what became of
    it is reported.
    """
    service = situation.service
    revision: str | NewRevision
    if situation.revision is not None:
        revision = situation.revision
    elif isinstance(request.task_definition, Mapping):
        revision = NewRevision(request.task_definition)
    else:
        raise ValueError("nothing to register: the request names no compiled task definition")
    reused = isinstance(request.task_definition, Mapping) and isinstance(revision, str)
    deployments = service.get("deployments", [])
    ids = frozenset(d["id"] for d in deployments)
    primary = next((d for d in deployments if d.get("status") == "PRIMARY"), None)
    primary_id = primary["id"] if primary is not None else None
    others = ids - {primary_id} if primary_id is not None else ids
    running = service.get("taskDefinition", "")
    if request.already_sent:
        if isinstance(revision, str):
            if running == revision:  # watch the PRIMARY of this revision, whatever its state
                return WatchCurrent(request.service, revision, reused, primary_id, others, event_ids(service))
            ours = (d for d in deployments if d.get("taskDefinition") == revision)
            failed = next((d for d in ours if d.get("rolloutState") == "FAILED"), None)
            if failed is not None:  # ECS failed it (and rolled back): report that deployment
                return ReportFailed(request.service, revision, reused, failed["id"], ids)
        return ReportReplaced(request.service, revision, reused, running, tuple(event_lines(service, frozenset())))
    force = request.force_new_deployment
    same_revision = isinstance(revision, str) and running == revision and not force
    if same_revision and primary is not None and primary.get("rolloutState") == "FAILED":
        force, same_revision = True, False  # try the failed revision again, do not re-report
    if isinstance(revision, str) and same_revision and request.desired_count in (None, service.get("desiredCount")):
        return WatchCurrent(request.service, revision, reused, primary_id, others, event_ids(service))
    return Update(
        request.service, revision, reused, request.desired_count, force, same_revision, ids, primary_id,
        event_ids(service),
    )  # fmt: skip


# ---- observing a rollout ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Watching:
    """What the wait looks for, and what it found so far.

    ``before``: deployments that are not this rollout's (those before an update).
    ``deployment_id``: the deployment being watched, once known. ``last``: its latest state.
    """

    task_definition: str
    before: frozenset[str]
    seen_events: frozenset[str]
    deployment_id: str | None = None
    last: DeploymentTypeDef | None = None


def watching(plan: WatchCurrent | Update | ReportFailed, revision: str, created: str | None = None) -> Watching:
    """What to watch after carrying ``plan`` out; ``created``: the deployment an update started."""
    if isinstance(plan, WatchCurrent):
        return Watching(revision, plan.before, plan.seen_events, plan.deployment_id)
    if isinstance(plan, ReportFailed):
        return Watching(revision, plan.before, frozenset(), plan.deployment_id)
    before = plan.deployments - {plan.primary} if plan.same_revision and plan.primary is not None else plan.deployments
    return Watching(revision, before, plan.seen_events, created)


def created_deployment(update: Update, answer: ServiceTypeDef) -> str | None:
    """The deployment an UpdateService started, as ECS names it in its answer (None: not named)."""
    new = next((d for d in answer.get("deployments", []) if d.get("status") == "PRIMARY"), None)
    if new is not None and (new["id"] not in update.deployments or update.same_revision):
        return new["id"]
    return None


@dataclass(frozen=True, slots=True)
class Verdict:
    outcome: Outcome
    reason: str


@dataclass(frozen=True, slots=True)
class Observation:
    """One DescribeServices answer judged: what is watched now, progress to show, and the
    verdict once the rollout has ended (None: keep watching)."""

    watching: Watching
    progress: Progress | None = None
    verdict: Verdict | None = None


def observe(watching: Watching, service: ServiceTypeDef, elapsed: float, timeout: float) -> Observation:
    """Judge one DescribeServices answer, ``elapsed`` seconds into a wait of at most ``timeout`` (pure).

    Completed only when the watched deployment is PRIMARY, its rollout COMPLETED (or, without
    rollout states, it is the only deployment) and running = desired. FAILED, no longer PRIMARY
    (a circuit-breaker rollback, or a newer update), gone, never started, or out of time: failed.
    """
    deployments = service.get("deployments", [])
    if watching.deployment_id is None:
        mine = next(
            (d for d in deployments
             if d["id"] not in watching.before and d.get("taskDefinition") == watching.task_definition),
            None,
        )  # fmt: skip
        if mine is not None:
            watching = replace(watching, deployment_id=mine["id"])
        elif elapsed > min(FIND_DEPLOYMENT_TIMEOUT, timeout):
            return Observation(watching, verdict=Verdict("failed", "ECS never started a deployment for this update"))
    progress = None
    if watching.deployment_id is not None:
        deployment_id = watching.deployment_id
        current = next((d for d in deployments if d["id"] == deployment_id), None)
        if current is None:
            reason = "the deployment was replaced before it completed (rolled back?)"
            return Observation(watching, verdict=Verdict("failed", reason))
        watching = replace(watching, last=current)
        state = current.get("rolloutState", "")
        running, desired = int(current.get("runningCount", 0)), int(current.get("desiredCount", 0))
        progress = Progress(
            deployment_id, state or "UNKNOWN", running, desired, int(current.get("pendingCount", 0)),
            int(current.get("failedTasks", 0)), round(elapsed, 1),
        )  # fmt: skip
        if state == "FAILED":
            return Observation(
                watching, progress, Verdict("failed", current.get("rolloutStateReason") or "the rollout failed")
            )
        if current.get("status") != "PRIMARY":
            primary = next((d for d in deployments if d.get("status") == "PRIMARY"), None)
            reason = f"deployment {deployment_id} is no longer PRIMARY"
            if primary is not None and primary.get("taskDefinition"):
                reason += f"; the service is rolling back to {revision_of(primary['taskDefinition'])}"
            return Observation(watching, progress, Verdict("failed", reason))
        completed = state == "COMPLETED" or (not state and len(deployments) == 1)
        if completed and running == desired:
            reason = current.get("rolloutStateReason") or "the rollout completed"
            return Observation(watching, progress, Verdict("completed", reason))
    if elapsed >= timeout:
        last = watching.last
        waiting = (
            "not started" if last is None else f"running {last.get('runningCount', 0)}/{last.get('desiredCount', 0)}"
        )
        return Observation(watching, progress, Verdict("timeout", f"timed out after {timeout:g} s ({waiting})"))
    return Observation(watching, progress)


# ---- the executors ---------------------------------------------------------------------------


async def survey(
    ecs: Ecs, request: RolloutRequest, *, compare_running: bool = False, described: ServiceTypeDef | None = None
) -> Situation:
    """What :func:`plan` needs from ECS. The service is described first: nothing is registered
    for a service that does not exist (:class:`OperationError`).

    ``compare_running``: describe the running task definition too, in the compiled one's shape
    (``Situation.running``, for a diff); when it is identical, it is the revision to roll out.
    ``described``: the service's ACTIVE description the caller made a moment ago (a deploy's
    verification), used instead of describing it again.
    """
    service = described if described is not None else await ecs.describe_service(request.service)
    target = request.task_definition
    if not isinstance(target, Mapping):
        return Situation(service, service["taskDefinition"] if target is None else target)
    if not compare_running:
        return Situation(service, await ecs.identical_revision(target))
    running = await ecs.running_definition(service, target)
    if running == target:
        return Situation(service, service["taskDefinition"], running)
    compared = {service["taskDefinition"]: False}
    return Situation(service, await ecs.identical_revision(target, compared=compared), running)


@dataclass(frozen=True, slots=True)
class Started:
    """A plan carried out up to the wait: the result so far, and what to watch (None: the result
    is final, as for an earlier attempt's rollout that ended while lemi was not watching)."""

    result: DeployResult
    watching: Watching | None


BeforeUpdate = Callable[[str, Watching], Awaitable[None]]


async def start(ecs: Ecs, plan: Plan, before_update: BeforeUpdate | None = None) -> Started:
    """Carry ``plan`` out without waiting: register, then UpdateService. ``before_update(revision,
    watching)`` runs just before UpdateService is sent (a caller makes the watch durable there)."""
    if isinstance(plan.revision, NewRevision):
        revision = await ecs.register(plan.revision.task_definition)
    else:
        revision = plan.revision
    result = DeployResult(plan.service, ecs.environment, revision, plan.reused, None)
    if isinstance(plan, ReportReplaced):
        result.rollout = Rollout("failed", plan.service, ecs.environment, ecs.cluster, revision, None,
                                 plan.reason(revision), events=list(plan.events))  # fmt: skip
        return Started(result, None)
    if not isinstance(plan, Update):
        return Started(result, watching(plan, revision))
    if before_update is not None:
        await before_update(revision, watching(plan, revision))
    answer = await ecs.update_service(
        plan.service, task_definition=revision, desired_count=plan.desired_count,
        force_new_deployment=plan.force_new_deployment,
    )  # fmt: skip
    return Started(result, watching(plan, revision, created_deployment(plan, answer)))


async def execute(ecs: Ecs, plan: Plan, wait: Wait | None) -> DeployResult:
    """Carry ``plan`` out, then watch the rollout unless ``wait`` is None (a report is always read)."""
    started = await start(ecs, plan)
    result = started.result
    if started.watching is not None and (wait is not None or isinstance(plan, ReportFailed)):
        result.rollout = await watch(ecs, plan.service, started.watching, wait or Wait())
    return result


async def watch(ecs: Ecs, service: str, watching: Watching, wait: Wait) -> Rollout:
    """Describe the service every ``wait.poll`` seconds until :func:`observe` gives a verdict."""
    started = time.monotonic()
    while True:
        elapsed = time.monotonic() - started
        described = await ecs.describe_service(service)
        seen = observe(watching, described, elapsed, wait.timeout)
        watching = seen.watching
        if seen.progress is not None and wait.on_progress is not None:
            wait.on_progress(seen.progress)
        if seen.verdict is not None:
            rollout = concluded(ecs, service, watching, seen.verdict, described, time.monotonic() - started)
            if rollout.ok:
                rollout.warnings = await mark_deployed(ecs, rollout.task_definition)
            elif rollout.deployment_id:  # with their last log lines, where lemi can read them
                rollout.stopped_tasks = await stopped_tasks(ecs, service, rollout.deployment_id)
            return rollout
        await asyncio.sleep(min(wait.poll, max(0.0, wait.timeout - elapsed)) or wait.poll)


def concluded(
    ecs: Ecs, service: str, watching: Watching, verdict: Verdict, described: ServiceTypeDef | None, elapsed: float
) -> Rollout:
    """The :class:`Rollout` a verdict ends with (``described``: the service's last description,
    for its events since the update; the caller adds the stopped tasks of a failure)."""
    last: Mapping[str, Any] = watching.last or {}
    return Rollout(
        verdict.outcome, service, ecs.environment, ecs.cluster, watching.task_definition, watching.deployment_id,
        verdict.reason, running=int(last.get("runningCount", 0)), desired=int(last.get("desiredCount", 0)),
        elapsed=round(elapsed, 1), events=event_lines(described, watching.seen_events) if described else [],
    )  # fmt: skip


async def deploy(ecs: Ecs, request: RolloutRequest, wait: Wait | None) -> DeployResult:
    """Survey, plan and execute: a deploy, restart or rollback from the CLI, the App or an operation."""
    return await execute(ecs, plan(request, await survey(ecs, request)), wait)
