"""Deploys, restarts and rollbacks on moto with ECS rollouts simulated (tests/ecs_sim.py).

The product rule: success only when the PRIMARY deployment that *this* update
created reaches rolloutState COMPLETED with running = desired. A
circuit-breaker rollback, a FAILED rollout or a timeout is a failure, reported
with the reason and the stoppedReason of the tasks that stopped; the CLI shows
live progress while it waits. An identical task definition reuses the current
revision instead of registering a new one.

Every scenario is checked through the core API (bot.aws.rollout / operate) and
through the CLI (bot.cli.main) in a git checkout of acme/demo-service.
"""

from __future__ import annotations

import json
import time
import types
from pathlib import Path
from typing import Any

import aws_world
import ecs_sim
import pytest
from aws_world import CLUSTER, SERVICE
from checkout import make_checkout, write

import bot.aws.rollout as rollout_module
from bot.aws import operate
from bot.aws.clients import AwsClients
from bot.aws.ecs import Ecs, revision_of
from bot.aws.errors import OperationError
from bot.aws.rollout import DeployResult, Progress, RolloutRequest, Wait, deploy, execute, plan, survey
from bot.cli import main
from bot.core.compile import compile_for

ENV = "staging"
FAMILY = "demo-service-staging"
POLL = 0.01
TIMEOUT = 5.0  # never reached by a scenario that ends; keeps a broken test from hanging
CB_REASON = "CannotPullContainerError: pull image manifest has been retried 5 time(s): not found"


# ---- fixtures and helpers ----------------------------------------------------------------

pytestmark = pytest.mark.usefixtures("shared_api_models")


@pytest.fixture
def checkout(world: aws_world.World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A git checkout of acme/demo-service with its deploy files; the CWD for CLI tests."""
    monkeypatch.delenv("LEMI_CONFIG", raising=False)
    monkeypatch.delenv("LEMI_DEBUG", raising=False)
    root = make_checkout(tmp_path / "demo-service", "acme/demo-service")
    write(root, "deploy/demo-service/service.yaml", aws_world.SERVICE_YAML)
    write(root, "deploy/demo-service/environment/staging.yaml", aws_world.STAGING_YAML)
    write(tmp_path, "lemi.yml", aws_world.LEMI_YML)
    monkeypatch.chdir(root)
    return root


def lemi(*argv: str) -> int:
    """``lemi --config <lemi.yml> ARGV`` in the checkout (the CWD)."""
    return main(["--config", str(Path.cwd().parent / "lemi.yml"), *argv])


def compiled(world: aws_world.World, tag: str) -> Any:
    return compile_for(world.config, world.files, ENV, tag)


async def core_deploy(
    world: aws_world.World, tag: str, *, wait: bool = True, timeout: float = TIMEOUT, on_progress: Any = None
) -> DeployResult:
    c = compiled(world, tag)
    request = RolloutRequest(SERVICE, c.task_definition, desired_count=c.desired_count)
    async with AwsClients(world.config) as aws:
        return await deploy(await Ecs.open(aws, ENV), request, Wait(timeout, POLL, on_progress) if wait else None)


async def register(aws: AwsClients, task_definition: dict[str, Any]) -> tuple[str, bool]:
    """The revision a deploy of ``task_definition`` rolls out, and whether an existing one was reused."""
    ecs = await Ecs.open(aws, ENV)
    arn = await ecs.identical_revision(task_definition)
    return (arn, True) if arn is not None else (await ecs.register(task_definition), False)


def described(world: aws_world.World) -> dict[str, Any]:
    """The service as ECS describes it (note: each call is one step of the simulated rollout)."""
    return world.ecs().describe_services(cluster=CLUSTER, services=[SERVICE])["services"][0]


def revisions(world: aws_world.World, status: str = "ACTIVE") -> list[str]:
    arns = world.ecs().list_task_definitions(familyPrefix=FAMILY, status=status)["taskDefinitionArns"]
    return sorted((revision_of(a) for a in arns), key=lambda r: int(r.rsplit(":", 1)[1]))


def arn_of(revision: str) -> str:
    return f"arn:aws:ecs:{aws_world.REGION}:{aws_world.ACCOUNT}:task-definition/{revision}"


def progress_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("[") and "running" in line]


def play(sim: ecs_sim.Sim, name: str, step: Any, after: int = 1, stop_reason: str = CB_REASON) -> None:
    """Play a scenario of our own: ``step(sim, service, deployment)`` at the ``after``-th describe."""
    setattr(sim, "_" + name, types.MethodType(step, sim))
    sim.scenario = ecs_sim.Scenario(name, after, stop_reason=stop_reason)


class FastClock:
    """``time`` for bot.aws.rollout whose monotonic clock runs ``factor`` times faster,
    so the CLI's smallest --timeout (1 s) passes in a fraction of a second."""

    def __init__(self, factor: float) -> None:
        self._start = time.monotonic()
        self._factor = factor

    def monotonic(self) -> float:
        return self._start + (time.monotonic() - self._start) * self._factor


# ---- 1. completed ------------------------------------------------------------------------


async def test_deploy_completes_registers_a_new_revision_and_updates_the_service(
    world: aws_world.World, sim: ecs_sim.Sim
) -> None:
    original = described(world)["deployments"][0]["id"]
    sim.complete(after=2)
    result = await core_deploy(world, "v2")

    assert result.ok and result.rollout is not None
    assert result.rollout.outcome == "completed"
    assert result.reused is False
    assert revision_of(result.task_definition) == f"{FAMILY}:2"
    assert revisions(world) == [f"{FAMILY}:1", f"{FAMILY}:2"]
    assert sim.updates == 1

    service = described(world)
    assert service["taskDefinition"] == result.task_definition
    [deployment] = service["deployments"]
    assert deployment["status"] == "PRIMARY" and deployment["rolloutState"] == "COMPLETED"
    assert deployment["runningCount"] == deployment["desiredCount"] == 2
    # the deployment reported is the one this update created, not the one before it
    assert result.rollout.deployment_id == deployment["id"] != original
    assert result.rollout.running == result.rollout.desired == 2
    assert result.rollout.task_definition == result.task_definition
    assert result.rollout.stopped_tasks == []
    assert any("steady state" in line for line in result.rollout.events)

    data = result.as_dict()
    assert data["ok"] is True and data["revision"] == f"{FAMILY}:2" and data["rollout"]["outcome"] == "completed"


def test_cli_deploy_completes_with_live_progress(
    world: aws_world.World, sim: ecs_sim.Sim, checkout: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    aws_world.push_image(world.endpoint, "v2")
    sim.complete(after=3)
    assert lemi("deploy", "-e", ENV, "-t", "v2", "--poll", "0.01", "--timeout", "5") == 0
    out, err = capsys.readouterr()
    assert f"deployed {SERVICE} to {ENV}: {FAMILY}:2, 2/2 tasks running" in out
    assert "reused" not in out
    lines = progress_lines(err)
    deployment_id = described(world)["deployments"][0]["id"]
    # one line per change of state (not one per poll), the last one COMPLETED
    assert len(lines) == 2, err
    assert f"{deployment_id} IN_PROGRESS: running 0/2, pending 2" in lines[0]
    assert f"{deployment_id} COMPLETED: running 2/2, pending 0" in lines[1]
    assert "Traceback" not in out + err
    assert described(world)["taskDefinition"] == arn_of(f"{FAMILY}:2")


def test_cli_deploy_json_output(
    world: aws_world.World, sim: ecs_sim.Sim, checkout: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    aws_world.push_image(world.endpoint, "v2")
    sim.complete(after=2)
    assert lemi("deploy", "-e", ENV, "-t", "v2", "--poll", "0.01", "--output", "json") == 0
    out, err = capsys.readouterr()
    data = json.loads(out)  # stdout is one JSON document: no progress lines mixed in
    assert data["ok"] is True
    assert data["revision"] == f"{FAMILY}:2"
    assert data["task_definition"] == arn_of(f"{FAMILY}:2")
    assert data["reused"] is False
    assert data["rollout"]["outcome"] == "completed"
    assert data["rollout"]["running"] == data["rollout"]["desired"] == 2
    assert data["rollout"]["deployment_id"] == described(world)["deployments"][0]["id"]
    assert progress_lines(err) == []


# ---- 14. progress callback ----------------------------------------------------------------


async def test_progress_callback_sees_in_progress_then_completed(world: aws_world.World, sim: ecs_sim.Sim) -> None:
    sim.complete(after=3)
    seen: list[Progress] = []
    result = await core_deploy(world, "v2", on_progress=seen.append)
    assert result.ok and result.rollout is not None
    states = [p.rollout_state for p in seen]
    assert states == ["IN_PROGRESS", "IN_PROGRESS", "COMPLETED"]
    assert {p.deployment_id for p in seen} == {result.rollout.deployment_id}
    assert (seen[0].running, seen[0].desired, seen[0].pending) == (0, 2, 2)
    assert (seen[-1].running, seen[-1].desired, seen[-1].pending, seen[-1].failed) == (2, 2, 0, 0)
    assert all(a.elapsed <= b.elapsed for a, b in zip(seen, seen[1:], strict=False))


# ---- 2. circuit breaker with rollback -------------------------------------------------------


async def test_circuit_breaker_rollback_is_a_failure_with_reasons(world: aws_world.World, sim: ecs_sim.Sim) -> None:
    sim.circuit_breaker(after=2, reason=CB_REASON)
    seen: list[Progress] = []
    result = await core_deploy(world, "v2", on_progress=seen.append)

    assert not result.ok and result.rollout is not None
    rollout = result.rollout
    assert rollout.outcome == "failed"
    assert "circuit breaker" in rollout.reason
    assert revision_of(result.task_definition) == f"{FAMILY}:2"  # what we tried to deploy
    assert seen[-1].rollout_state == "FAILED" and seen[-1].failed == 2
    # the stopped tasks of our deployment, with ECS's reason and the container's exit code
    assert len(rollout.stopped_tasks) == 2
    for task in rollout.stopped_tasks:
        assert task.stopped_reason == CB_REASON
        assert task.containers == [f"{SERVICE}: exit 1"]
    assert any("deployment failed" in e for e in rollout.events)
    assert any("rolling back to deployment" in e for e in rollout.events)
    # ECS rolled the service back to revision 1
    assert described(world)["taskDefinition"] == world.first_revision


def test_cli_circuit_breaker_exits_1_with_reason_stopped_tasks_and_events(
    world: aws_world.World, sim: ecs_sim.Sim, checkout: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    aws_world.push_image(world.endpoint, "v2")
    sim.circuit_breaker(after=2, reason=CB_REASON)
    assert lemi("deploy", "-e", ENV, "-t", "v2", "--poll", "0.01", "--timeout", "5") == 1
    out, err = capsys.readouterr()
    assert f"deploy failed (failed): {SERVICE} in {ENV}, {FAMILY}:2" in out
    assert "reason: ECS deployment circuit breaker: tasks failed to start." in out
    assert "stopped tasks:" in out
    stopped = [line for line in out.splitlines() if CB_REASON in line]
    assert len(stopped) == 2 and all(f"[{SERVICE}: exit 1]" in line for line in stopped)
    assert "recent service events:" in out and "rolling back to deployment" in out
    assert "FAILED: running 0/2" in err  # the live progress showed the failure too
    assert "Traceback" not in out + err


SECRET_ARN = f"arn:aws:secretsmanager:us-east-1:{aws_world.ACCOUNT}:secret:demo-service/db-password-AbCdEf"
ACCESS_DENIED = (
    "ResourceInitializationError: unable to pull secrets or registry auth: execution resource retrieval "
    f"failed: unable to retrieve secret from asm: AccessDeniedException: User: arn:aws:sts::{aws_world.ACCOUNT}:"
    "assumed-role/demo-service-staging-execution/1f2e is not authorized to perform: "
    f"secretsmanager:GetSecretValue on resource: {SECRET_ARN}"
)


def test_cli_prints_stopped_reasons_verbatim(
    world: aws_world.World, sim: ecs_sim.Sim, checkout: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    aws_world.push_image(world.endpoint, "v2")
    sim.circuit_breaker(after=2, reason=ACCESS_DENIED)
    assert lemi("deploy", "-e", ENV, "-t", "v2", "--poll", "0.01") == 1
    out = capsys.readouterr().out
    assert out.count(SECRET_ARN) == 2, out


def test_cli_circuit_breaker_json(
    world: aws_world.World, sim: ecs_sim.Sim, checkout: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    aws_world.push_image(world.endpoint, "v2")
    sim.circuit_breaker(after=2, reason=CB_REASON)
    assert lemi("deploy", "-e", ENV, "-t", "v2", "--poll", "0.01", "--output", "json") == 1
    data = json.loads(capsys.readouterr().out)
    assert data["ok"] is False and data["rollout"]["ok"] is False
    assert data["rollout"]["outcome"] == "failed"
    assert "circuit breaker" in data["rollout"]["reason"]
    assert [t["stopped_reason"] for t in data["rollout"]["stopped_tasks"]] == [CB_REASON, CB_REASON]


# ---- 3. replaced / superseded --------------------------------------------------------------


async def test_deployment_replaced_by_another_primary_is_a_failure(world: aws_world.World, sim: ecs_sim.Sim) -> None:
    sim.replaced(after=2)
    result = await core_deploy(world, "v2")
    assert not result.ok and result.rollout is not None
    assert result.rollout.outcome == "failed"
    assert "replaced" in result.rollout.reason and "rolled back" in result.rollout.reason
    assert result.rollout.deployment_id is not None
    assert result.rollout.deployment_id not in {d["id"] for d in described(world)["deployments"]}


async def test_deployment_superseded_by_a_newer_update_is_a_failure(world: aws_world.World, sim: ecs_sim.Sim) -> None:
    """Someone else updates the service while we wait: our deployment is no longer PRIMARY."""
    sim.stuck()
    calls: list[Progress] = []

    def meanwhile(p: Progress) -> None:
        calls.append(p)
        if len(calls) == 1:  # a concurrent UpdateService back to revision 1
            world.ecs().update_service(cluster=CLUSTER, service=SERVICE, taskDefinition=world.first_revision)

    result = await core_deploy(world, "v2", on_progress=meanwhile)
    assert not result.ok and result.rollout is not None
    assert result.rollout.outcome == "failed"
    assert f"deployment {result.rollout.deployment_id} is no longer PRIMARY" in result.rollout.reason
    assert f"rolling back to {FAMILY}:1" in result.rollout.reason


def test_cli_replaced_exits_1(
    world: aws_world.World, sim: ecs_sim.Sim, checkout: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    aws_world.push_image(world.endpoint, "v2")
    sim.replaced(after=2)
    assert lemi("deploy", "-e", ENV, "-t", "v2", "--poll", "0.01", "--timeout", "5") == 1
    out = capsys.readouterr().out
    assert "deploy failed (failed)" in out
    assert "reason: the deployment was replaced before it completed (rolled back?)" in out


# ---- 4. FAILED without rollback -----------------------------------------------------------


async def test_failed_rollout_without_rollback_is_a_failure(world: aws_world.World, sim: ecs_sim.Sim) -> None:
    sim.failed(after=2)
    result = await core_deploy(world, "v2")
    assert not result.ok and result.rollout is not None
    assert result.rollout.outcome == "failed"
    assert result.rollout.reason == "ECS deployment failed: tasks failed to start."
    assert [t.stopped_reason for t in result.rollout.stopped_tasks] == ["Essential container in task exited"] * 2
    assert all(t.containers == [f"{SERVICE}: exit 1"] for t in result.rollout.stopped_tasks)


def test_cli_failed_rollout_exits_1(
    world: aws_world.World, sim: ecs_sim.Sim, checkout: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    aws_world.push_image(world.endpoint, "v2")
    sim.failed(after=2)
    assert lemi("deploy", "-e", ENV, "-t", "v2", "--poll", "0.01", "--timeout", "5") == 1
    out = capsys.readouterr().out
    assert "deploy failed (failed)" in out
    assert "reason: ECS deployment failed: tasks failed to start." in out
    assert out.count("Essential container in task exited") == 2


# ---- 5. timeout ----------------------------------------------------------------------------


async def test_stuck_rollout_times_out(world: aws_world.World, sim: ecs_sim.Sim) -> None:
    sim.stuck()
    started = time.monotonic()
    result = await core_deploy(world, "v2", timeout=0.3)
    assert time.monotonic() - started < 2
    assert not result.ok and result.rollout is not None
    assert result.rollout.outcome == "timeout"
    assert result.rollout.reason == "timed out after 0.3 s (running 0/2)"
    assert (result.rollout.running, result.rollout.desired) == (0, 2)
    assert result.rollout.deployment_id == described(world)["deployments"][0]["id"]
    assert result.as_dict()["ok"] is False


async def test_completed_with_fewer_tasks_running_than_desired_is_not_a_success(
    world: aws_world.World, sim: ecs_sim.Sim
) -> None:
    def completed_one_short(self: ecs_sim.Sim, service: Any, d: dict[str, Any]) -> None:
        d.update(rolloutState="COMPLETED", runningCount=d["desiredCount"] - 1, pendingCount=0)

    play(sim, "completed_one_short", completed_one_short)
    result = await core_deploy(world, "v2", timeout=0.3)
    assert not result.ok and result.rollout is not None
    assert result.rollout.outcome == "timeout"
    assert result.rollout.reason == "timed out after 0.3 s (running 1/2)"


def test_cli_stuck_rollout_exits_1_with_timeout(
    world: aws_world.World,
    sim: ecs_sim.Sim,
    checkout: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(rollout_module, "time", FastClock(5))  # --timeout 1 (the least) in ~0.2 s
    aws_world.push_image(world.endpoint, "v2")
    sim.stuck()
    assert lemi("deploy", "-e", ENV, "-t", "v2", "--poll", "0.01", "--timeout", "1") == 1
    out, err = capsys.readouterr()
    assert f"deploy failed (timeout): {SERVICE} in {ENV}, {FAMILY}:2" in out
    assert "reason: timed out after 1 s (running 0/2)" in out
    assert len(progress_lines(err)) == 1  # state never changed: one progress line


async def test_update_that_starts_no_deployment_is_a_failure(
    world: aws_world.World, sim: ecs_sim.Sim, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sim, "start_deployment", lambda service: None)  # ECS accepted, started nothing
    result = await core_deploy(world, "v2", timeout=0.2)
    assert not result.ok and result.rollout is not None
    assert result.rollout.outcome == "failed"
    assert result.rollout.reason == "ECS never started a deployment for this update"
    assert result.rollout.deployment_id is None and result.rollout.stopped_tasks == []


# ---- 6. identical redeploy -----------------------------------------------------------------


async def test_identical_redeploy_reuses_the_revision_and_sends_no_update(
    world: aws_world.World, sim: ecs_sim.Sim
) -> None:
    sim.complete(after=2)
    first = await core_deploy(world, "v2")
    assert first.ok and not first.reused
    assert sim.updates == 1
    before = revisions(world)

    second = await core_deploy(world, "v2")
    assert second.reused is True
    assert second.task_definition == first.task_definition
    assert revisions(world) == before == [f"{FAMILY}:1", f"{FAMILY}:2"]
    assert sim.updates == 1  # no UpdateService: ECS would start no deployment
    assert second.ok and second.rollout is not None
    assert second.rollout.outcome == "completed"
    # the deployment watched is the existing PRIMARY, which is COMPLETED
    assert second.rollout.deployment_id == first.rollout.deployment_id  # type: ignore[union-attr]
    assert (second.rollout.running, second.rollout.desired) == (2, 2)


async def test_a_deploy_the_caller_found_unchanged_registers_nothing_and_describes_once(
    world: aws_world.World, sim: ecs_sim.Sim
) -> None:
    """The push deploy describes the service once, diffs it, and passes both on: an
    unchanged service is deployed at its own revision with no ListTaskDefinitions,
    DescribeTaskDefinition or second DescribeServices before the rollout is watched."""
    sim.complete(after=2)
    first = await core_deploy(world, "v2")
    assert first.ok and sim.updates == 1
    c = compiled(world, "v2")
    calls: list[str] = []
    request = RolloutRequest(SERVICE, c.task_definition, desired_count=c.desired_count)
    async with AwsClients(world.config) as aws:
        aws.on_call(lambda service, operation: calls.append(operation))
        ecs = await Ecs.open(aws, ENV)
        situation = await survey(ecs, request, compare_running=True)
        assert situation.running == c.task_definition  # the diff is empty
        assert calls == ["DescribeServices", "DescribeTaskDefinition"]  # the service described once, and diffed
        calls.clear()
        again = await execute(ecs, plan(request, situation), Wait(TIMEOUT, POLL))
    assert again.ok and again.reused and again.task_definition == first.task_definition
    assert not {"ListTaskDefinitions", "DescribeTaskDefinition", "RegisterTaskDefinition", "UpdateService"} & set(calls)
    assert revisions(world) == [f"{FAMILY}:1", f"{FAMILY}:2"] and sim.updates == 1


def test_cli_identical_redeploy_says_reused(
    world: aws_world.World, sim: ecs_sim.Sim, checkout: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    aws_world.push_image(world.endpoint, "v2")
    sim.complete(after=2)
    assert lemi("deploy", "-e", ENV, "-t", "v2", "--poll", "0.01") == 0
    assert "reused" not in capsys.readouterr().out
    assert lemi("deploy", "-e", ENV, "-t", "v2", "--poll", "0.01") == 0
    out = capsys.readouterr().out
    assert f"deployed {SERVICE} to {ENV}: {FAMILY}:2 (existing revision reused), 2/2 tasks running" in out
    assert revisions(world) == [f"{FAMILY}:1", f"{FAMILY}:2"]
    assert sim.updates == 1


async def test_identical_redeploy_after_a_failed_rollout_tries_again(world: aws_world.World, sim: ecs_sim.Sim) -> None:
    """The PRIMARY deployment of this revision FAILED: deploying it again forces a new
    deployment (e.g. after fixing a secret's value) instead of re-reporting the old failure,
    and the new deployment's own outcome is what the user is told."""
    sim.failed(after=2)
    assert not (await core_deploy(world, "v2")).ok
    sim.complete(after=1)
    again = await core_deploy(world, "v2")
    assert again.reused is True and sim.updates == 2
    assert again.rollout is not None and again.rollout.outcome == "completed"
    assert again.ok


# ---- 7. a failed deploy's revision is reused ---------------------------------------------


async def test_failed_deploys_revision_is_reused_when_identical(world: aws_world.World, sim: ecs_sim.Sim) -> None:
    sim.circuit_breaker(after=2)
    failed = await core_deploy(world, "v2")
    assert not failed.ok and revision_of(failed.task_definition) == f"{FAMILY}:2"
    assert described(world)["taskDefinition"] == world.first_revision  # rolled back

    async with AwsClients(world.config) as aws:
        arn, reused = await register(aws, compiled(world, "v2").task_definition)
    assert (revision_of(arn), reused) == (f"{FAMILY}:2", True)

    sim.complete(after=2)
    again = await core_deploy(world, "v2")
    assert again.ok and again.reused is True
    assert revision_of(again.task_definition) == f"{FAMILY}:2"
    assert revisions(world) == [f"{FAMILY}:1", f"{FAMILY}:2"]
    assert sim.updates == 2  # the service ran :1, so this one was updated
    assert described(world)["taskDefinition"] == again.task_definition


async def test_register_registers_when_the_definition_differs(world: aws_world.World, sim: ecs_sim.Sim) -> None:
    async with AwsClients(world.config) as aws:
        arn, reused = await register(aws, compiled(world, "v1").task_definition)
        assert (arn, reused) == (world.first_revision, True)
        arn, reused = await register(aws, compiled(world, "v3").task_definition)
        assert (revision_of(arn), reused) == (f"{FAMILY}:2", False)
    image = world.ecs().describe_task_definition(taskDefinition=arn)["taskDefinition"]["containerDefinitions"][0]
    assert image["image"].endswith("/demo-service:v3")


# ---- 8. --no-wait ---------------------------------------------------------------------------


async def test_no_wait_returns_right_after_the_update(world: aws_world.World, sim: ecs_sim.Sim) -> None:
    sim.stuck()
    result = await core_deploy(world, "v2", wait=False)
    assert result.rollout is None and result.ok
    assert sim.updates == 1
    new = [d for d, ticks in sim.ticks.items() if ticks == 0]
    assert len(new) == 1 and len(sim.ticks) == 1  # started, and never described since
    assert result.as_dict()["rollout"] is None
    assert described(world)["taskDefinition"] == result.task_definition


def test_cli_no_wait(
    world: aws_world.World, sim: ecs_sim.Sim, checkout: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    aws_world.push_image(world.endpoint, "v2")
    sim.stuck()
    assert lemi("deploy", "-e", ENV, "-t", "v2", "--no-wait") == 0
    out, err = capsys.readouterr()
    assert f"updated {SERVICE} in {ENV} to {FAMILY}:2; not waiting" in out
    assert progress_lines(err) == []
    assert sim.updates == 1 and list(sim.ticks.values()) == [0]


# ---- 9. the service does not exist ------------------------------------------------------


@pytest.fixture
def no_service(world: aws_world.World) -> None:
    world.ecs().delete_service(cluster=CLUSTER, service=SERVICE, force=True)


async def test_deploy_to_a_missing_service_registers_nothing(
    world: aws_world.World, sim: ecs_sim.Sim, no_service: None
) -> None:
    with pytest.raises(OperationError) as caught:
        await core_deploy(world, "v2")
    assert SERVICE in str(caught.value) and CLUSTER in str(caught.value)
    assert revisions(world) == [f"{FAMILY}:1"]
    assert sim.updates == 0


def test_cli_deploy_to_a_missing_service(
    world: aws_world.World, sim: ecs_sim.Sim, checkout: Path, capsys: pytest.CaptureFixture[str], no_service: None
) -> None:
    aws_world.push_image(world.endpoint, "v2")
    assert lemi("deploy", "-e", ENV, "-t", "v2", "--poll", "0.01") == 1
    out, err = capsys.readouterr()
    assert f"service {SERVICE}:" in err and "inactive" in err
    assert "nothing was deployed" in err
    assert "Traceback" not in out + err
    assert revisions(world) == [f"{FAMILY}:1"]
    assert sim.updates == 0


def test_cli_deploy_task_definition_file_to_a_missing_service(
    world: aws_world.World, sim: ecs_sim.Sim, checkout: Path, capsys: pytest.CaptureFixture[str], no_service: None
) -> None:
    td = checkout / "td.json"
    assert lemi("compile", "-e", ENV, "-t", "v2", "-o", str(td)) == 0
    capsys.readouterr()
    code = lemi("deploy", "-e", ENV, "--task-definition", str(td), "--poll", "0.01")
    out, err = capsys.readouterr()
    assert revisions(world) == [f"{FAMILY}:1"]  # refused before registering anything
    assert code == 1
    assert "Traceback" not in out + err
    assert f"service {SERVICE}: the ECS service '{SERVICE}' is inactive" in err  # checked before registering
    assert "internal error" not in err and "bug in lemi" not in err


# ---- 10. verify runs first ------------------------------------------------------------------


def test_cli_deploy_with_a_missing_secret_registers_nothing(
    world: aws_world.World, sim: ecs_sim.Sim, checkout: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    aws_world.push_image(world.endpoint, "v2")
    aws_world.client("secretsmanager", world.endpoint).delete_secret(
        SecretId="demo-service/db-password", ForceDeleteWithoutRecovery=True
    )
    assert lemi("deploy", "-e", ENV, "-t", "v2", "--poll", "0.01") == 1
    out, err = capsys.readouterr()
    assert "secret DB_PASSWORD (demo-service/db-password): the secret does not exist" in err
    assert "1 problem found; nothing was deployed" in err
    assert revisions(world) == [f"{FAMILY}:1"]
    assert sim.updates == 0

    assert lemi("deploy", "-e", ENV, "-t", "v2", "--poll", "0.01", "--output", "json") == 1
    data = json.loads(capsys.readouterr().out)
    assert data["ok"] is False
    assert [(f["check"], f["subject"]) for f in data["findings"]] == [
        ("secret", "DB_PASSWORD (demo-service/db-password)")
    ]
    assert revisions(world) == [f"{FAMILY}:1"]


def test_cli_deploy_with_a_missing_image_registers_nothing(
    world: aws_world.World, sim: ecs_sim.Sim, checkout: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert lemi("deploy", "-e", ENV, "-t", "v9", "--poll", "0.01") == 1
    err = capsys.readouterr().err
    assert f"image {SERVICE}:v9: the image is not in ECR" in err
    assert revisions(world) == [f"{FAMILY}:1"] and sim.updates == 0


# ---- 11. --task-definition FILE --------------------------------------------------------------


def test_cli_deploy_a_compiled_task_definition_file(
    world: aws_world.World, sim: ecs_sim.Sim, checkout: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sim.complete(after=2)
    aws_world.push_image(world.endpoint, "v2")  # the file's image must be in ECR
    td = checkout / "td.json"
    assert lemi("compile", "-e", ENV, "-t", "v2", "-o", str(td)) == 0
    capsys.readouterr()
    assert lemi("deploy", "-e", ENV, "--task-definition", str(td), "--poll", "0.01") == 0
    out = capsys.readouterr().out
    assert f"deployed {SERVICE} to {ENV}: {FAMILY}:2, 2/2 tasks running" in out
    assert described(world)["taskDefinition"] == arn_of(f"{FAMILY}:2")
    registered = world.ecs().describe_task_definition(taskDefinition=f"{FAMILY}:2")["taskDefinition"]
    assert registered["containerDefinitions"][0]["image"].endswith("/demo-service:v2")


@pytest.mark.parametrize(
    ("extra", "said"),
    [
        ([], "nothing to deploy: give -t TAG, or --task-definition FILE; there is no ./task-definition.json here"),
        (["-t", "v2", "--task-definition", "td.json"], "give one of -t/--tag and --task-definition, not both"),
    ],
    ids=["neither, and no ./task-definition.json", "both"],
)
def test_cli_deploy_needs_one_of_tag_and_task_definition(
    world: aws_world.World, sim: ecs_sim.Sim, checkout: Path, capsys: pytest.CaptureFixture[str], extra: list[str],
    said: str,
) -> None:  # fmt: skip
    write(checkout, "td.json", json.dumps(compiled(world, "v2").task_definition))
    assert lemi("deploy", "-e", ENV, *extra) == 2
    err = capsys.readouterr().err
    assert said in err
    assert revisions(world) == [f"{FAMILY}:1"] and sim.updates == 0


def test_cli_deploy_rejects_a_file_that_is_not_a_task_definition(
    world: aws_world.World, sim: ecs_sim.Sim, checkout: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write(checkout, "bad.json", "{not json")
    write(checkout, "list.json", "[1, 2]")
    assert lemi("deploy", "-e", ENV, "--task-definition", "bad.json") == 2
    assert "is not JSON" in capsys.readouterr().err
    assert lemi("deploy", "-e", ENV, "--task-definition", "list.json") == 2
    assert "is not a task definition" in capsys.readouterr().err
    assert revisions(world) == [f"{FAMILY}:1"] and sim.updates == 0


# ---- 12. restart and rollback ---------------------------------------------------------------


async def test_restart_forces_a_new_deployment_of_the_same_revision(world: aws_world.World, sim: ecs_sim.Sim) -> None:
    original = described(world)["deployments"][0]["id"]
    sim.complete(after=2)
    async with AwsClients(world.config) as aws:
        result = await operate.restart(aws, ENV, SERVICE, wait=Wait(TIMEOUT, POLL))
    assert result.ok and result.rollout is not None and result.rollout.outcome == "completed"
    assert result.task_definition == world.first_revision
    assert sim.updates == 1
    [deployment] = described(world)["deployments"]
    assert result.rollout.deployment_id == deployment["id"] != original
    assert deployment["taskDefinition"] == world.first_revision
    assert revisions(world) == [f"{FAMILY}:1"]


async def test_restart_circuit_breaker_is_a_failure(world: aws_world.World, sim: ecs_sim.Sim) -> None:
    sim.circuit_breaker(after=2, reason=CB_REASON)
    async with AwsClients(world.config) as aws:
        result = await operate.restart(aws, ENV, SERVICE, wait=Wait(TIMEOUT, POLL))
    assert not result.ok and result.rollout is not None
    assert result.rollout.outcome == "failed" and "circuit breaker" in result.rollout.reason
    assert [t.stopped_reason for t in result.rollout.stopped_tasks] == [CB_REASON] * 2


async def test_restart_circuit_breaker_before_the_first_poll_is_a_failure(
    world: aws_world.World, sim: ecs_sim.Sim
) -> None:
    def breaker_then_rollback_done(self: ecs_sim.Sim, service: Any, d: dict[str, Any]) -> None:
        self._circuit_breaker(service, d)
        rollback = service.deployments[0]  # ECS's rollback deployment, same revision, new id
        rollback.update(rolloutState="COMPLETED", runningCount=rollback["desiredCount"], pendingCount=0)

    play(sim, "breaker_then_rollback_done", breaker_then_rollback_done)
    async with AwsClients(world.config) as aws:
        result = await operate.restart(aws, ENV, SERVICE, wait=Wait(TIMEOUT, POLL))
    assert result.rollout is not None
    assert result.rollout.outcome == "failed", result.rollout
    assert not result.ok


def test_cli_restart(
    world: aws_world.World, sim: ecs_sim.Sim, checkout: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sim.complete(after=2)
    assert lemi("service", "restart", "-e", ENV, "--poll", "0.01") == 0
    out, err = capsys.readouterr()
    assert f"deployed {SERVICE} to {ENV}: {FAMILY}:1" in out and "2/2 tasks running" in out
    assert [line.split()[-5] for line in progress_lines(err)] == ["IN_PROGRESS:", "COMPLETED:"]

    sim.circuit_breaker(after=2, reason=CB_REASON)
    assert lemi("service", "restart", "-e", ENV, "--poll", "0.01") == 1
    out = capsys.readouterr().out
    assert "deploy failed (failed)" in out and "circuit breaker" in out and CB_REASON in out
    assert sim.updates == 2


async def test_rollback_moves_the_service_to_the_previous_revision(world: aws_world.World, sim: ecs_sim.Sim) -> None:
    world.deployed(world.first_revision)  # an earlier deploy by lemi completed
    sim.complete(after=2)
    assert (await core_deploy(world, "v2")).ok
    assert described(world)["taskDefinition"] == arn_of(f"{FAMILY}:2")
    async with AwsClients(world.config) as aws:
        result = await operate.rollback(aws, ENV, SERVICE, wait=Wait(TIMEOUT, POLL))
    assert result.ok and result.rollout is not None and result.rollout.outcome == "completed"
    assert result.task_definition == world.first_revision
    assert described(world)["taskDefinition"] == world.first_revision
    assert revisions(world) == [f"{FAMILY}:1", f"{FAMILY}:2"]  # nothing registered or removed
    assert sim.updates == 2


async def test_rollback_that_fails_is_reported(world: aws_world.World, sim: ecs_sim.Sim) -> None:
    world.deployed(world.first_revision)
    sim.complete(after=2)
    assert (await core_deploy(world, "v2")).ok
    sim.failed(after=2)
    async with AwsClients(world.config) as aws:
        result = await operate.rollback(aws, ENV, SERVICE, wait=Wait(TIMEOUT, POLL))
    assert not result.ok and result.rollout is not None and result.rollout.outcome == "failed"
    assert result.task_definition == world.first_revision


def test_cli_rollback(
    world: aws_world.World, sim: ecs_sim.Sim, checkout: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    world.deployed(world.first_revision)
    aws_world.push_image(world.endpoint, "v2")
    sim.complete(after=2)
    assert lemi("deploy", "-e", ENV, "-t", "v2", "--poll", "0.01") == 0
    capsys.readouterr()
    assert lemi("service", "rollback", "-e", ENV, "--poll", "0.01") == 0
    out = capsys.readouterr().out
    assert f"deployed {SERVICE} to {ENV}: {FAMILY}:1" in out
    assert described(world)["taskDefinition"] == world.first_revision


async def test_rollback_without_an_earlier_revision_is_a_clear_error(world: aws_world.World, sim: ecs_sim.Sim) -> None:
    async with AwsClients(world.config) as aws:
        with pytest.raises(operate.OperationError) as caught:
            await operate.rollback(aws, ENV, SERVICE, wait=Wait(TIMEOUT, POLL))
    assert caught.value.message == f"{FAMILY}:1 has no earlier revision that lemi deployed successfully to roll back to"
    assert "lemi deploy -t" in caught.value.hint
    assert sim.updates == 0


def test_cli_rollback_without_an_earlier_revision(
    world: aws_world.World, sim: ecs_sim.Sim, checkout: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert lemi("service", "rollback", "-e", ENV, "--poll", "0.01") == 1
    out, err = capsys.readouterr()
    assert f"error: {FAMILY}:1 has no earlier revision that lemi deployed successfully to roll back to" in err
    assert "hint: deploy a known good image tag instead" in err
    assert "Traceback" not in out + err and "internal error" not in err
    assert sim.updates == 0


# ---- 13. --keep ---------------------------------------------------------------------------


def test_cli_deploy_keep_deregisters_older_revisions(
    world: aws_world.World, sim: ecs_sim.Sim, checkout: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ecs = world.ecs()
    for tag in ("v2", "v3"):  # registered, never deployed
        ecs.register_task_definition(**compiled(world, tag).task_definition)
    aws_world.push_image(world.endpoint, "v4")
    sim.complete(after=2)
    assert lemi("deploy", "-e", ENV, "-t", "v4", "--poll", "0.01", "--keep", "2") == 0
    assert f"{FAMILY}:4" in capsys.readouterr().out
    assert revisions(world) == [f"{FAMILY}:3", f"{FAMILY}:4"]
    assert revisions(world, "INACTIVE") == [f"{FAMILY}:1", f"{FAMILY}:2"]
    assert described(world)["taskDefinition"] == arn_of(f"{FAMILY}:4")


def test_cli_deploy_keep_does_nothing_after_a_failure(
    world: aws_world.World,
    sim: ecs_sim.Sim,
    checkout: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pruned: list[int] = []
    real_prune = operate.prune

    async def spy(*args: Any, keep: int, **kwargs: Any) -> operate.Pruned:
        pruned.append(keep)
        return await real_prune(*args, keep=keep, **kwargs)

    monkeypatch.setattr(operate, "prune", spy)
    aws_world.push_image(world.endpoint, "v2")
    sim.circuit_breaker(after=2)
    assert lemi("deploy", "-e", ENV, "-t", "v2", "--poll", "0.01", "--keep", "1") == 1
    assert revisions(world) == [f"{FAMILY}:1", f"{FAMILY}:2"]
    assert pruned == []  # here :1 and :2 are both kept anyway: prune must not even run


def test_cli_deploy_keep_without_waiting_keeps_the_revision_still_running(
    world: aws_world.World, sim: ecs_sim.Sim, checkout: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    aws_world.push_image(world.endpoint, "v2")
    sim.stuck()
    assert lemi("deploy", "-e", ENV, "-t", "v2", "--no-wait", "--keep", "1") == 0
    # the old deployment still runs :1 while :2 rolls out: neither may go
    assert revisions(world) == [f"{FAMILY}:1", f"{FAMILY}:2"]


async def test_prune_never_deregisters_the_running_revision(world: aws_world.World, sim: ecs_sim.Sim) -> None:
    ecs = world.ecs()
    for tag in ("v2", "v3"):  # newer than the running :1, never deployed
        ecs.register_task_definition(**compiled(world, tag).task_definition)
    async with AwsClients(world.config) as aws:
        pruned = await operate.prune(aws, ENV, SERVICE, keep=1)
    assert pruned.kept == [f"{FAMILY}:3", f"{FAMILY}:1"]
    assert pruned.deregistered == [f"{FAMILY}:2"]
    assert revisions(world) == [f"{FAMILY}:1", f"{FAMILY}:3"]
    assert described(world)["taskDefinition"] == world.first_revision
