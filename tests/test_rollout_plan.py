"""The rollout plan and its judge, without AWS: plain DescribeServices answers in, decisions out.

:func:`bot.aws.rollout.plan` decides what a deploy, restart or rollback does from the
service as ECS describes it (send nothing and watch the current PRIMARY, register and
update, update only, or report what became of an earlier attempt); :func:`watching`
and :func:`created_deployment` say which deployment to watch afterwards; and
:func:`observe` judges one DescribeServices answer. The product rule checked here:
success only when the PRIMARY deployment that *this* update created reaches
rolloutState COMPLETED with running = desired; a circuit-breaker rollback (our
deployment FAILED, or replaced by another PRIMARY), a FAILED rollout or a timeout is
a failure with its reason; an update already sent by an earlier attempt is never sent
again.

The answers below use the field names of the ECS API (DescribeServices:
``services[].taskDefinition/desiredCount/deployments/events``; a deployment's
``id/status/taskDefinition/rolloutState/rolloutStateReason/desiredCount/runningCount/
pendingCount/failedTasks/createdAt``; an event's ``id/message/createdAt``). The
executors that make the calls are tested on moto in tests/test_aws_deploy.py.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from bot.aws.rollout import (
    FIND_DEPLOYMENT_TIMEOUT,
    NewRevision,
    Observation,
    Progress,
    ReportFailed,
    ReportReplaced,
    RolloutRequest,
    Situation,
    Update,
    Verdict,
    WatchCurrent,
    Watching,
    created_deployment,
    event_ids,
    event_lines,
    observe,
    plan,
    watching,
)

SERVICE = "demo-service"
FAMILY = "demo-service-staging"
CLUSTER_ARN = "arn:aws:ecs:us-east-1:123456789012:cluster/acme-staging"
TIMEOUT = 900.0
T0 = datetime(2026, 3, 4, 10, 0, 0, tzinfo=UTC)
CB_REASON = "ECS deployment circuit breaker: tasks failed to start."

# a compiled task definition (the shape matters only as "a Mapping to register")
COMPILED: dict[str, Any] = {
    "family": FAMILY,
    "cpu": "256",
    "memory": "512",
    "containerDefinitions": [{"name": SERVICE, "image": "123456789012.dkr.ecr.us-east-1.amazonaws.com/demo:v2"}],
}


def arn(revision: int) -> str:
    return f"arn:aws:ecs:us-east-1:123456789012:task-definition/{FAMILY}:{revision}"


def deployment(
    id: str,
    revision: int,
    status: str = "PRIMARY",
    rollout_state: str | None = "IN_PROGRESS",
    *,
    running: int = 0,
    desired: int = 2,
    pending: int | None = None,
    failed: int = 0,
    reason: str | None = None,
    minutes: int = 0,
) -> dict[str, Any]:
    """A deployment as DescribeServices lists it (``rollout_state`` None: a service without rollout states)."""
    d: dict[str, Any] = {
        "id": id,
        "status": status,
        "taskDefinition": arn(revision),
        "desiredCount": desired,
        "pendingCount": desired - running if pending is None else pending,
        "runningCount": running,
        "failedTasks": failed,
        "createdAt": T0 + timedelta(minutes=minutes),
        "updatedAt": T0 + timedelta(minutes=minutes),
        "launchType": "FARGATE",
    }
    if rollout_state is not None:
        d["rolloutState"] = rollout_state
        d["rolloutStateReason"] = reason if reason is not None else f"ECS deployment {id} in progress."
    return d


def completed(id: str, revision: int, *, desired: int = 2, minutes: int = 0) -> dict[str, Any]:
    return deployment(
        id, revision, "PRIMARY", "COMPLETED", running=desired, desired=desired,
        reason=f"ECS deployment {id} completed.", minutes=minutes,
    )  # fmt: skip


def event(id: str, message: str, second: int = 0) -> dict[str, Any]:
    return {"id": id, "message": message, "createdAt": T0 + timedelta(seconds=second)}


def service(
    revision: int, *deployments: dict[str, Any], events: list[dict[str, Any]] | None = None, desired: int = 2
) -> Any:
    """services[0] of a DescribeServices answer (ECS lists deployments and events newest first)."""
    primary = next((d for d in deployments if d["status"] == "PRIMARY"), None)
    return {
        "serviceArn": f"arn:aws:ecs:us-east-1:123456789012:service/acme-staging/{SERVICE}",
        "serviceName": SERVICE,
        "clusterArn": CLUSTER_ARN,
        "status": "ACTIVE",
        "desiredCount": desired,
        "runningCount": primary["runningCount"] if primary else 0,
        "pendingCount": primary["pendingCount"] if primary else 0,
        "launchType": "FARGATE",
        "taskDefinition": arn(revision),
        "deployments": list(deployments),
        "events": list(events or []),
    }


def steady(revision: int = 1, id: str = "ecs-svc/1000", desired: int = 2) -> Any:
    """A service at rest: one COMPLETED PRIMARY deployment of ``revision``."""
    return service(
        revision, completed(id, revision, desired=desired),
        events=[event("e2", f"(service {SERVICE}) has reached a steady state.", 2), event("e1", "older", 1)],
        desired=desired,
    )  # fmt: skip


def compiled_request(**kwargs: Any) -> RolloutRequest:
    return RolloutRequest(SERVICE, COMPILED, desired_count=2, **kwargs)


# ---- plan: a deploy of a compiled task definition -----------------------------------------------


def test_a_definition_no_revision_matches_is_registered_then_rolled_out() -> None:
    current = steady(1)
    decided = plan(compiled_request(), Situation(current, None))
    assert decided == Update(
        SERVICE, NewRevision(COMPILED), reused=False, desired_count=2, force_new_deployment=False,
        same_revision=False, deployments=frozenset({"ecs-svc/1000"}), primary="ecs-svc/1000",
        seen_events=frozenset({"e1", "e2"}),
    )  # fmt: skip
    assert isinstance(decided.revision, NewRevision) and decided.revision.task_definition is COMPILED


def test_an_identical_registered_revision_is_reused_not_registered_again() -> None:
    """The family's newest revision is identical (e.g. a failed deploy's, after ECS rolled back):
    it is rolled out as it is, and the result says it was reused."""
    decided = plan(compiled_request(), Situation(steady(1), arn(2)))
    assert isinstance(decided, Update)
    assert decided.revision == arn(2) and decided.reused is True
    assert decided.same_revision is False and decided.force_new_deployment is False
    assert decided.deployments == frozenset({"ecs-svc/1000"}) and decided.primary == "ecs-svc/1000"


@pytest.mark.parametrize("desired_count", [None, 2], ids=["count-unset", "count-unchanged"])
def test_an_identical_redeploy_sends_nothing_and_watches_the_current_primary(desired_count: int | None) -> None:
    """ECS would start no deployment for it: nothing is sent, the current PRIMARY is watched."""
    request = RolloutRequest(SERVICE, COMPILED, desired_count=desired_count)
    decided = plan(request, Situation(steady(2), arn(2)))
    assert decided == WatchCurrent(
        SERVICE, arn(2), reused=True, deployment_id="ecs-svc/1000", before=frozenset(),
        seen_events=frozenset({"e1", "e2"}),
    )  # fmt: skip


def test_an_identical_redeploy_during_its_own_rollout_watches_that_rollout() -> None:
    current = service(2, deployment("ecs-svc/2000", 2, minutes=5), completed("ecs-svc/1000", 1) | {"status": "ACTIVE"})
    decided = plan(compiled_request(), Situation(current, arn(2)))
    assert isinstance(decided, WatchCurrent)
    assert decided.deployment_id == "ecs-svc/2000"
    assert decided.before == frozenset({"ecs-svc/1000"})  # the old deployment is not the one watched


def test_a_new_task_count_on_the_same_revision_is_an_update_of_the_same_deployment() -> None:
    request = RolloutRequest(SERVICE, COMPILED, desired_count=3)
    decided = plan(request, Situation(steady(2), arn(2)))
    assert decided == Update(
        SERVICE, arn(2), reused=True, desired_count=3, force_new_deployment=False, same_revision=True,
        deployments=frozenset({"ecs-svc/1000"}), primary="ecs-svc/1000", seen_events=frozenset({"e1", "e2"}),
    )  # fmt: skip


@pytest.mark.parametrize("desired_count", [2, 3])
def test_redeploying_a_revision_whose_primary_failed_forces_a_new_deployment(desired_count: int) -> None:
    """Its PRIMARY FAILED (no rollback): deploying it again (say after fixing a secret) starts a
    new deployment instead of reporting the old failure again."""
    failed = deployment("ecs-svc/2000", 2, rollout_state="FAILED", failed=2, reason="tasks failed to start.")
    current = service(2, failed)
    decided = plan(RolloutRequest(SERVICE, COMPILED, desired_count=desired_count), Situation(current, arn(2)))
    assert isinstance(decided, Update)
    assert decided.force_new_deployment is True and decided.same_revision is False
    assert decided.revision == arn(2) and decided.reused is True and decided.desired_count == desired_count
    assert decided.deployments == frozenset({"ecs-svc/2000"})  # the failed one is not watched again


def test_a_service_without_a_primary_deployment_watches_for_a_new_one() -> None:
    current = service(2, deployment("ecs-svc/1000", 2, "ACTIVE"))
    decided = plan(compiled_request(), Situation(current, arn(2)))
    assert isinstance(decided, WatchCurrent)
    assert decided.deployment_id is None and decided.before == frozenset({"ecs-svc/1000"})


def test_nothing_to_register_without_a_compiled_definition() -> None:
    for task_definition in (None, arn(2)):
        with pytest.raises(ValueError, match="nothing to register"):
            plan(RolloutRequest(SERVICE, task_definition), Situation(steady(1), None))


# ---- plan: restart and rollback -----------------------------------------------------------------


def test_a_restart_forces_a_new_deployment_of_the_running_revision() -> None:
    request = RolloutRequest(SERVICE, force_new_deployment=True)
    decided = plan(request, Situation(steady(1), arn(1)))  # survey: the revision the service runs
    assert decided == Update(
        SERVICE, arn(1), reused=False, desired_count=None, force_new_deployment=True, same_revision=False,
        deployments=frozenset({"ecs-svc/1000"}), primary="ecs-svc/1000", seen_events=frozenset({"e1", "e2"}),
    )  # fmt: skip


def test_a_rollback_updates_to_the_named_revision_and_reuses_nothing() -> None:
    decided = plan(RolloutRequest(SERVICE, arn(1)), Situation(steady(2), arn(1)))
    assert isinstance(decided, Update)
    assert decided.revision == arn(1) and decided.reused is False
    assert decided.force_new_deployment is False and decided.same_revision is False
    assert decided.desired_count is None


def test_a_rollback_to_the_running_revision_sends_nothing() -> None:
    decided = plan(RolloutRequest(SERVICE, arn(2)), Situation(steady(2), arn(2)))
    assert isinstance(decided, WatchCurrent) and decided.reused is False and decided.deployment_id == "ecs-svc/1000"


# ---- plan: an earlier attempt already sent the update (already_sent) ----------------------------


def circuit_broken() -> Any:
    """Our deployment of :2 FAILED and ECS rolls back to :1 with a new PRIMARY deployment."""
    return service(
        1,
        deployment("ecs-svc/3000", 1, minutes=9),  # the rollback
        deployment("ecs-svc/2000", 2, "ACTIVE", "FAILED", failed=2, reason=CB_REASON, minutes=5),
        events=[
            event("e4", f"(service {SERVICE}) rolling back to deployment ecs-svc/1000.", 4),
            event("e3", f"(service {SERVICE}) (deployment ecs-svc/2000) deployment failed: tasks failed to start.", 3),
            event("e2", "steady", 2),
        ],
    )


@pytest.mark.parametrize(
    "current",
    [
        pytest.param(service(2, deployment("ecs-svc/2000", 2)), id="in-progress"),
        pytest.param(steady(2, "ecs-svc/2000"), id="completed"),
        pytest.param(service(2, deployment("ecs-svc/2000", 2, rollout_state="FAILED")), id="failed-no-rollback"),
    ],
)
def test_an_update_already_sent_is_watched_not_sent_again(current: Any) -> None:
    """Whatever state its rollout is in (even FAILED, which a fresh deploy would retry), and
    even with another task count asked for: the current PRIMARY is watched."""
    request = RolloutRequest(SERVICE, COMPILED, desired_count=5, already_sent=True)
    decided = plan(request, Situation(current, arn(2)))
    assert decided == WatchCurrent(
        SERVICE, arn(2), reused=True, deployment_id="ecs-svc/2000", before=frozenset(),
        seen_events=event_ids(current),
    )  # fmt: skip


def test_an_update_already_sent_that_ecs_failed_and_rolled_back_is_reported() -> None:
    current = circuit_broken()
    decided = plan(compiled_request(already_sent=True), Situation(current, arn(2)))
    assert decided == ReportFailed(
        SERVICE, arn(2), reused=True, deployment_id="ecs-svc/2000", before=frozenset({"ecs-svc/2000", "ecs-svc/3000"})
    )


def test_an_update_already_sent_whose_deployment_is_gone_is_reported_replaced() -> None:
    current = service(
        1, deployment("ecs-svc/3000", 1),
        events=[event("e9", "(service demo-service) has started 2 tasks.", 9), event("e8", "rolling back", 8)],
    )  # fmt: skip
    decided = plan(compiled_request(already_sent=True), Situation(current, arn(2)))
    assert decided == ReportReplaced(
        SERVICE, arn(2), reused=True, running=arn(1),
        events=("10:00:08 rolling back", "10:00:09 (service demo-service) has started 2 tasks."),
    )  # fmt: skip
    assert isinstance(decided, ReportReplaced)
    assert decided.reason(arn(2)) == (
        f"while lemi was not watching, the rollout of {FAMILY}:2 ended and the service "
        f"now runs {FAMILY}:1 (rolled back or replaced)"
    )


def test_an_update_already_sent_whose_deployment_is_still_active_but_replaced_is_reported_replaced() -> None:
    """Not FAILED, no longer what the service runs (a newer update took over): reported, not watched."""
    current = service(3, deployment("ecs-svc/4000", 3), deployment("ecs-svc/2000", 2, "ACTIVE", running=1))
    decided = plan(compiled_request(already_sent=True), Situation(current, arn(2)))
    assert isinstance(decided, ReportReplaced) and decided.running == arn(3)


def test_an_update_already_sent_with_no_matching_revision_reports_and_sends_nothing() -> None:
    decided = plan(compiled_request(already_sent=True), Situation(steady(1), None))
    assert isinstance(decided, ReportReplaced)
    assert decided.revision == NewRevision(COMPILED) and decided.running == arn(1)


@pytest.mark.parametrize(
    "current, revision",
    [
        (steady(2), arn(2)),
        (service(2, deployment("ecs-svc/2000", 2, rollout_state="FAILED")), arn(2)),
        (circuit_broken(), arn(2)),
        (steady(1), arn(2)),
        (steady(1), None),
    ],
    ids=["same-revision", "primary-failed", "circuit-broken", "replaced", "unregistered"],
)
@pytest.mark.parametrize("force", [False, True], ids=["deploy", "forced"])
def test_already_sent_never_plans_an_update(current: Any, revision: str | None, force: bool) -> None:
    request = RolloutRequest(SERVICE, COMPILED, desired_count=7, force_new_deployment=force, already_sent=True)
    assert not isinstance(plan(request, Situation(current, revision)), Update)


# ---- watching: what to watch once the plan is carried out ---------------------------------------


def test_watching_the_current_primary() -> None:
    current = service(2, deployment("ecs-svc/2000", 2), completed("ecs-svc/1000", 1) | {"status": "ACTIVE"})
    decided = plan(compiled_request(), Situation(current, arn(2)))
    assert isinstance(decided, WatchCurrent)
    assert watching(decided, arn(2)) == Watching(
        arn(2), frozenset({"ecs-svc/1000"}), event_ids(current), deployment_id="ecs-svc/2000"
    )


def test_watching_a_reported_failure_shows_every_event() -> None:
    decided = plan(compiled_request(already_sent=True), Situation(circuit_broken(), arn(2)))
    assert isinstance(decided, ReportFailed)
    assert watching(decided, arn(2)) == Watching(
        arn(2), frozenset({"ecs-svc/2000", "ecs-svc/3000"}), frozenset(), deployment_id="ecs-svc/2000"
    )


def test_watching_an_update_of_a_new_revision_excludes_every_earlier_deployment() -> None:
    current = steady(1)
    decided = plan(compiled_request(), Situation(current, None))
    assert isinstance(decided, Update)
    registered = arn(2)  # what the executor registered
    assert watching(decided, registered, "ecs-svc/2000") == Watching(
        registered, frozenset({"ecs-svc/1000"}), frozenset({"e1", "e2"}), deployment_id="ecs-svc/2000"
    )
    # ECS did not name the deployment in its answer: it is looked for among new ones
    assert watching(decided, registered).deployment_id is None


def test_watching_a_new_task_count_watches_the_same_primary() -> None:
    decided = plan(RolloutRequest(SERVICE, COMPILED, desired_count=3), Situation(steady(2), arn(2)))
    assert isinstance(decided, Update) and decided.same_revision
    answer = steady(2, desired=3)  # the same deployment, scaled
    created = created_deployment(decided, answer)
    assert created == "ecs-svc/1000"
    assert watching(decided, arn(2), created) == Watching(
        arn(2), frozenset(), frozenset({"e1", "e2"}), deployment_id="ecs-svc/1000"
    )


def test_created_deployment_is_the_new_primary_in_the_update_answer() -> None:
    decided = plan(RolloutRequest(SERVICE, force_new_deployment=True), Situation(steady(1), arn(1)))
    assert isinstance(decided, Update)
    answer = service(1, deployment("ecs-svc/2000", 1), completed("ecs-svc/1000", 1) | {"status": "ACTIVE"})
    assert created_deployment(decided, answer) == "ecs-svc/2000"
    # the answer's PRIMARY is still the old deployment: ECS named none of its own
    assert created_deployment(decided, steady(1)) is None
    assert created_deployment(decided, service(1, deployment("ecs-svc/2000", 1, "ACTIVE"))) is None


# ---- observe: judging one DescribeServices answer -----------------------------------------------


def watching_update(deployment_id: str | None = "ecs-svc/2000", revision: int = 2) -> Watching:
    """Watching the deployment an update of ``revision`` started, from a steady :1 (ecs-svc/1000)."""
    return Watching(arn(revision), frozenset({"ecs-svc/1000"}), frozenset({"e1"}), deployment_id)


def test_in_progress_shows_progress_and_keeps_watching() -> None:
    answer = service(2, deployment("ecs-svc/2000", 2, running=1, pending=1), completed("ecs-svc/1000", 1))
    seen = observe(watching_update(), answer, 12.345, TIMEOUT)
    assert seen.verdict is None
    assert seen.progress == Progress("ecs-svc/2000", "IN_PROGRESS", 1, 2, 1, 0, 12.3)
    assert seen.watching.last == answer["deployments"][0]
    assert seen.watching.deployment_id == "ecs-svc/2000"


def test_completed_with_every_task_running_is_a_success() -> None:
    answer = service(2, completed("ecs-svc/2000", 2))
    seen = observe(watching_update(), answer, 30.0, TIMEOUT)
    assert seen.verdict == Verdict("completed", "ECS deployment ecs-svc/2000 completed.")
    assert seen.progress == Progress("ecs-svc/2000", "COMPLETED", 2, 2, 0, 0, 30.0)


def test_completed_with_fewer_tasks_running_than_desired_is_not_yet_a_success() -> None:
    short = completed("ecs-svc/2000", 2) | {"runningCount": 1}
    seen = observe(watching_update(), service(2, short), 30.0, TIMEOUT)
    assert seen.verdict is None
    late = observe(seen.watching, service(2, short), TIMEOUT, TIMEOUT)
    assert late.verdict == Verdict("timeout", "timed out after 900 s (running 1/2)")


def test_the_deployment_an_update_created_is_found_among_new_deployments_of_its_revision() -> None:
    """ECS did not name it in the update's answer: the first deployment not there before and of
    the revision rolled out is ours; the old one is never mistaken for it."""
    answer = service(2, deployment("ecs-svc/2000", 2), completed("ecs-svc/1000", 1) | {"status": "ACTIVE"})
    seen = observe(watching_update(None), answer, 1.0, TIMEOUT)
    assert seen.watching.deployment_id == "ecs-svc/2000" and seen.verdict is None
    assert seen.progress is not None and seen.progress.deployment_id == "ecs-svc/2000"


def test_the_old_deployment_completing_is_not_this_updates_success() -> None:
    """Before ECS lists ours, only the old COMPLETED PRIMARY is there: no verdict, no progress."""
    seen = observe(watching_update(None), steady(1), 1.0, TIMEOUT)
    assert seen == Observation(watching_update(None))
    # nor is a new deployment of another revision (say, someone else's update)
    other = service(3, deployment("ecs-svc/9000", 3), completed("ecs-svc/1000", 1) | {"status": "ACTIVE"})
    assert observe(watching_update(None), other, 1.0, TIMEOUT) == Observation(watching_update(None))


def test_a_restart_is_never_judged_by_the_deployment_it_replaces() -> None:
    """A restart rolls out the revision the old deployment runs: being of that revision does not
    make the old COMPLETED PRIMARY this update's deployment."""
    decided = plan(RolloutRequest(SERVICE, force_new_deployment=True), Situation(steady(1), arn(1)))
    assert isinstance(decided, Update)
    watched = watching(decided, arn(1))  # ECS's answer named no deployment
    assert observe(watched, steady(1), 1.0, TIMEOUT) == Observation(watched)
    restarted = service(1, deployment("ecs-svc/2000", 1), completed("ecs-svc/1000", 1) | {"status": "ACTIVE"})
    seen = observe(watched, restarted, 2.0, TIMEOUT)
    assert seen.watching.deployment_id == "ecs-svc/2000" and seen.verdict is None


def test_an_update_that_starts_no_deployment_fails_after_a_while() -> None:
    assert observe(watching_update(None), steady(1), FIND_DEPLOYMENT_TIMEOUT - 1, TIMEOUT).verdict is None
    late = observe(watching_update(None), steady(1), FIND_DEPLOYMENT_TIMEOUT + 1, TIMEOUT)
    assert late.verdict == Verdict("failed", "ECS never started a deployment for this update")
    assert late.watching.deployment_id is None and late.progress is None


def test_a_short_wait_looks_for_the_deployment_only_as_long_as_it_lasts() -> None:
    assert observe(watching_update(None), steady(1), 0.25, 0.2).verdict == Verdict(
        "failed", "ECS never started a deployment for this update"
    )
    assert observe(watching_update(None), steady(1), 0.2, 0.2).verdict == Verdict(
        "timeout", "timed out after 0.2 s (not started)"
    )


def test_a_circuit_breaker_rollback_is_a_failure_with_its_reason() -> None:
    """Our deployment FAILED and is no longer PRIMARY: ECS's reason, not "no longer PRIMARY"."""
    seen = observe(watching_update(), circuit_broken(), 40.0, TIMEOUT)
    assert seen.verdict == Verdict("failed", CB_REASON)
    assert seen.progress == Progress("ecs-svc/2000", "FAILED", 0, 2, 2, 2, 40.0)


def test_a_failed_rollout_without_rollback_is_a_failure_with_its_reason() -> None:
    reason = "ECS deployment failed: tasks failed to start."
    answer = service(2, deployment("ecs-svc/2000", 2, rollout_state="FAILED", failed=2, reason=reason))
    assert observe(watching_update(), answer, 40.0, TIMEOUT).verdict == Verdict("failed", reason)
    unexplained = answer["deployments"][0] | {"rolloutStateReason": ""}
    assert observe(watching_update(), service(2, unexplained), 40.0, TIMEOUT).verdict == Verdict(
        "failed", "the rollout failed"
    )


@pytest.mark.parametrize("status", ["ACTIVE", "INACTIVE"])
def test_a_deployment_no_longer_primary_is_a_failure_naming_what_the_service_rolls_to(status: str) -> None:
    answer = service(1, deployment("ecs-svc/3000", 1), deployment("ecs-svc/2000", 2, status, running=1))
    seen = observe(watching_update(), answer, 20.0, TIMEOUT)
    assert seen.verdict == Verdict(
        "failed", f"deployment ecs-svc/2000 is no longer PRIMARY; the service is rolling back to {FAMILY}:1"
    )
    assert seen.progress is not None and seen.progress.running == 1


def test_a_completed_deployment_no_longer_primary_is_not_a_success() -> None:
    answer = service(1, deployment("ecs-svc/3000", 1), completed("ecs-svc/2000", 2) | {"status": "ACTIVE"})
    seen = observe(watching_update(), answer, 20.0, TIMEOUT)
    assert seen.verdict is not None and seen.verdict.outcome == "failed"
    no_primary = service(2, completed("ecs-svc/2000", 2) | {"status": "ACTIVE"})
    assert observe(watching_update(), no_primary, 20.0, TIMEOUT).verdict == Verdict(
        "failed", "deployment ecs-svc/2000 is no longer PRIMARY"
    )


def test_a_deployment_that_vanished_was_replaced() -> None:
    before = observe(watching_update(), service(2, deployment("ecs-svc/2000", 2, running=1)), 5.0, TIMEOUT)
    gone = observe(before.watching, service(1, deployment("ecs-svc/3000", 1)), 10.0, TIMEOUT)
    assert gone.verdict == Verdict("failed", "the deployment was replaced before it completed (rolled back?)")
    assert gone.progress is None
    assert gone.watching.last is not None and gone.watching.last["runningCount"] == 1  # what was seen last


def test_a_restart_whose_deployment_failed_is_not_saved_by_the_rollback_of_the_same_revision() -> None:
    """A restart's rollback deployment runs the same revision and completes: the deployment the
    restart created (named by ECS's answer) FAILED, and that is the verdict."""
    watched = Watching(arn(1), frozenset({"ecs-svc/1000"}), frozenset(), "ecs-svc/2000")
    answer = service(
        1, completed("ecs-svc/3000", 1, minutes=9),
        deployment("ecs-svc/2000", 1, "ACTIVE", "FAILED", failed=2, reason=CB_REASON, minutes=5),
    )  # fmt: skip
    assert observe(watched, answer, 3.0, TIMEOUT).verdict == Verdict("failed", CB_REASON)


def test_a_stuck_rollout_times_out_with_what_it_reached() -> None:
    answer = service(2, deployment("ecs-svc/2000", 2), completed("ecs-svc/1000", 1) | {"status": "ACTIVE"})
    assert observe(watching_update(), answer, 0.29, 0.3).verdict is None
    seen = observe(watching_update(), answer, 0.3, 0.3)
    assert seen.verdict == Verdict("timeout", "timed out after 0.3 s (running 0/2)")
    assert seen.progress is not None and seen.progress.rollout_state == "IN_PROGRESS"


def test_without_rollout_states_the_only_deployment_with_every_task_running_is_a_success() -> None:
    alone = deployment("ecs-svc/2000", 2, rollout_state=None, running=2)
    seen = observe(watching_update(), service(2, alone), 50.0, TIMEOUT)
    assert seen.verdict == Verdict("completed", "the rollout completed")
    assert seen.progress is not None and seen.progress.rollout_state == "UNKNOWN"
    draining = service(2, alone, deployment("ecs-svc/1000", 1, "ACTIVE", rollout_state=None, running=2))
    assert observe(watching_update(), draining, 50.0, TIMEOUT).verdict is None


def test_observing_a_rollout_from_start_to_end() -> None:
    """The answers a real rollout gives, one poll after another, threaded through ``observe``."""
    old = completed("ecs-svc/1000", 1) | {"status": "ACTIVE"}
    answers = [
        service(1, completed("ecs-svc/1000", 1)),  # not listed yet
        service(2, deployment("ecs-svc/2000", 2), old),
        service(2, deployment("ecs-svc/2000", 2, running=1), old),
        service(2, completed("ecs-svc/2000", 2)),
    ]
    watched, seen = watching_update(None), []
    for poll, answer in enumerate(answers):
        observed = observe(watched, answer, poll * 5.0, TIMEOUT)
        watched = observed.watching
        seen.append((observed.progress and observed.progress.rollout_state, observed.verdict))
    assert seen == [
        (None, None),
        ("IN_PROGRESS", None),
        ("IN_PROGRESS", None),
        ("COMPLETED", Verdict("completed", "ECS deployment ecs-svc/2000 completed.")),
    ]
    assert watched.deployment_id == "ecs-svc/2000"


def test_an_identical_redeploy_watched_to_its_end() -> None:
    """The current PRIMARY, already COMPLETED: a success at the first answer."""
    current = steady(2)
    decided = plan(compiled_request(), Situation(current, arn(2)))
    assert isinstance(decided, WatchCurrent)
    assert observe(watching(decided, arn(2)), current, 0.0, TIMEOUT).verdict == Verdict(
        "completed", "ECS deployment ecs-svc/1000 completed."
    )


def test_a_reported_failure_is_judged_failed_at_once() -> None:
    current = circuit_broken()
    decided = plan(compiled_request(already_sent=True), Situation(current, arn(2)))
    assert isinstance(decided, ReportFailed)
    assert observe(watching(decided, arn(2)), current, 0.0, TIMEOUT).verdict == Verdict("failed", CB_REASON)


# ---- events ------------------------------------------------------------------------------------


def test_event_lines_are_the_unseen_events_oldest_first() -> None:
    current = circuit_broken()
    assert event_ids(current) == frozenset({"e2", "e3", "e4"})
    assert event_lines(current, frozenset({"e2"})) == [
        f"10:00:03 (service {SERVICE}) (deployment ecs-svc/2000) deployment failed: tasks failed to start.",
        f"10:00:04 (service {SERVICE}) rolling back to deployment ecs-svc/1000.",
    ]
    assert event_lines(current, event_ids(current)) == []


def test_event_lines_keep_the_newest_and_tolerate_missing_stamps() -> None:
    many = service(1, completed("ecs-svc/1000", 1), events=[event(f"e{i}", f"m{i}", i) for i in range(20, 0, -1)])
    assert event_lines(many, frozenset(), limit=3) == ["10:00:18 m18", "10:00:19 m19", "10:00:20 m20"]
    bare = service(1, completed("ecs-svc/1000", 1), events=[{"id": "x", "message": "no stamp"}])
    assert event_lines(bare, frozenset()) == ["no stamp"]
