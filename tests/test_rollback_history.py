"""Rollback by history: the ``lemi:deployed-at`` tag a completed rollout puts on its revision,
and the revision a rollback chooses from those tags (bot/core/history.py, bot/aws/history.py).

The rules: only a rollout that truly completed tags its revision (a circuit-breaker rollback or
a FAILED rollout tags nothing); a rollback returns to the revision with the newest
``lemi:deployed-at`` among the revisions lemi registered (``managed-by=lemi``) with a lower
number than the running one, and refuses, saying why, when there is none -- the placeholder a
Terraform module registered (managed-by=lemi, never rolled out by lemi) is never chosen. A tag
AWS refuses is a warning, never a failed deploy. Checked on moto with ECS rollouts simulated
(tests/ecs_sim.py), through the core API and the CLI; the App's watcher and ``/lemi rollback``
are checked in tests/test_slash_commands.py.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import aws_world
import ecs_sim
import pytest
from aws_world import CLUSTER, SERVICE
from checkout import lemi_here, service_checkout
from moto.core.exceptions import JsonRESTError
from moto.ecs.models import EC2ContainerServiceBackend

import bot.aws.history as history_module
from bot.aws import operate
from bot.aws.clients import AwsClients
from bot.aws.ecs import Ecs, revision_of
from bot.aws.errors import OperationError
from bot.aws.history import rollback_target
from bot.aws.rollout import DeployResult, RolloutRequest, Wait, deploy
from bot.core.compile import compile_for
from bot.core.history import DEPLOYED_AT, Revision, deployed_at, deployed_stamp
from bot.core.history import rollback_target as choose

ENV = "staging"
FAMILY = "demo-service-staging"
POLL = 0.01
WAIT = Wait(5.0, POLL)  # never reached by a scenario that ends; keeps a broken test from hanging
NO_HISTORY = "has no earlier revision that lemi deployed successfully to roll back to"

pytestmark = pytest.mark.usefixtures("shared_api_models")


# ---- the choice (pure) -------------------------------------------------------------------------

LEMI = {"managed-by": "lemi"}


def rev(number: int, at: str | None = None, managed_by: str = "lemi") -> Revision:
    tags = {"managed-by": managed_by} | ({DEPLOYED_AT: at} if at is not None else {})
    return Revision(number, f"arn:aws:ecs:us-east-1:1:task-definition/{FAMILY}:{number}", tags)


def test_the_choice_is_the_newest_deployed_at_below_the_running_revision() -> None:
    revisions = [rev(6, "2026-01-09T00:00:00Z"), rev(5), rev(4, "2026-01-03T00:00:00Z"),
                 rev(3, "2026-01-05T00:00:00Z"), rev(2, "2026-01-04T00:00:00Z"), rev(1)]  # fmt: skip
    chosen = choose(5, revisions)
    assert chosen is not None and chosen.number == 3  # newest deployed-at, not the highest number
    assert choose(3, revisions) == revisions[4]  # only lower numbers: :2 (never :4 or :6 above it)


def test_the_choice_skips_what_lemi_did_not_deploy_or_register() -> None:
    revisions = [
        rev(4, "2026-01-09T00:00:00Z", managed_by="terraform"),  # not lemi's: never chosen
        Revision(3, "arn:...:3", {DEPLOYED_AT: "2026-01-08T00:00:00Z"}),  # no managed-by at all
        rev(2),  # registered by lemi, its rollout failed: no tag
        rev(1, "not a time"),
    ]
    assert choose(5, revisions) is None
    assert choose(5, [*revisions, rev(0, "2026-01-01T00:00:00Z")]) == rev(0, "2026-01-01T00:00:00Z")


def test_a_tie_goes_to_the_higher_number_and_stamps_are_utc() -> None:
    assert choose(9, [rev(3, "2026-01-01T00:00:00Z"), rev(4, "2026-01-01T00:00:00Z")]) == rev(4, "2026-01-01T00:00:00Z")
    stamp = deployed_stamp(datetime(2026, 12, 6, 19, 30, 5, 123, tzinfo=timezone(timedelta(hours=2))))
    assert stamp == "2026-12-06T17:30:05Z"
    assert deployed_at({**LEMI, DEPLOYED_AT: stamp}) == datetime(2026, 12, 6, 17, 30, 5, tzinfo=UTC)
    assert deployed_at({**LEMI, DEPLOYED_AT: "2026-12-06T17:30:05"}) is None  # no zone: not lemi's stamp


# ---- fixtures and helpers ----------------------------------------------------------------------


@pytest.fixture
def checkout(world: aws_world.World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A git checkout of acme/demo-service with its deploy files; the CWD for CLI tests."""
    return service_checkout(
        tmp_path,
        monkeypatch,
        service_yaml=aws_world.SERVICE_YAML,
        staging_yaml=aws_world.STAGING_YAML,
        lemi_yml=aws_world.LEMI_YML,
        repo="acme/demo-service",
    )


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[datetime]:
    """lemi's clock for deployed-at: one day later at every tag, so the order is plain."""
    times: list[datetime] = []

    def now() -> datetime:
        times.append(datetime(2026, 3, 1, tzinfo=UTC) + timedelta(days=len(times)))
        return times[-1]

    monkeypatch.setattr(history_module, "_now", now)
    return times


def lemi(*argv: str) -> int:
    return lemi_here(*argv)


def arn(number: int) -> str:
    return f"arn:aws:ecs:{aws_world.REGION}:{aws_world.ACCOUNT}:task-definition/{FAMILY}:{number}"


def running(world: aws_world.World) -> str:
    return revision_of(
        world.ecs().describe_services(cluster=CLUSTER, services=[SERVICE])["services"][0]["taskDefinition"]
    )


async def deploy_tag(world: aws_world.World, tag: str) -> DeployResult:
    c = compile_for(world.config, world.files, ENV, tag)
    async with AwsClients(world.config) as aws:
        request = RolloutRequest(SERVICE, c.task_definition, desired_count=c.desired_count)
        return await deploy(await Ecs.open(aws, ENV), request, WAIT)


async def rollback(world: aws_world.World) -> DeployResult:
    async with AwsClients(world.config) as aws:
        return await operate.rollback(aws, ENV, SERVICE, wait=WAIT)


# ---- the tag: only a completed rollout -------------------------------------------------------------


async def test_a_completed_rollout_tags_its_revision_and_a_redeploy_still_reuses_it(
    world: aws_world.World, sim: ecs_sim.Sim
) -> None:
    sim.complete(after=2)
    before = datetime.now(UTC).replace(microsecond=0)
    result = await deploy_tag(world, "v2")
    assert result.ok and revision_of(result.task_definition) == f"{FAMILY}:2" and result.rollout is not None
    assert result.rollout.warnings == []
    tags = world.tags(arn(2))
    stamped = deployed_at(tags)
    assert stamped is not None and before <= stamped <= datetime.now(UTC), tags
    assert tags["managed-by"] == "lemi"
    assert DEPLOYED_AT not in world.tags(arn(1))  # the revision it replaced keeps what it had
    again = await deploy_tag(world, "v2")  # the history tag is not part of the definition
    assert again.ok and again.reused and again.task_definition == arn(2)


@pytest.mark.parametrize("scenario", ["circuit_breaker", "failed", "stuck"])
async def test_a_rollout_that_did_not_complete_tags_nothing(
    world: aws_world.World, sim: ecs_sim.Sim, scenario: str
) -> None:
    getattr(sim, scenario)() if scenario == "stuck" else getattr(sim, scenario)(after=2)
    c = compile_for(world.config, world.files, ENV, "v2")
    async with AwsClients(world.config) as aws:
        request = RolloutRequest(SERVICE, c.task_definition, desired_count=c.desired_count)
        result = await deploy(await Ecs.open(aws, ENV), request, Wait(0.3, POLL))
    assert not result.ok and result.rollout is not None
    assert result.rollout.outcome == ("timeout" if scenario == "stuck" else "failed")
    assert DEPLOYED_AT not in world.tags(arn(2))
    assert DEPLOYED_AT not in world.tags(arn(1))  # ECS's rollback to it is not lemi's rollout


async def test_a_tag_aws_refuses_is_a_warning_not_a_failure(
    world: aws_world.World, sim: ecs_sim.Sim, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(self: EC2ContainerServiceBackend, arn: str, tags: dict[str, str]) -> None:
        raise JsonRESTError("AccessDeniedException", "User is not authorized to perform: ecs:TagResource")

    monkeypatch.setattr(EC2ContainerServiceBackend, "tag_resource", refuse)
    sim.complete(after=2)
    result = await deploy_tag(world, "v2")
    assert result.ok and result.rollout is not None and result.rollout.outcome == "completed"
    (warning,) = result.rollout.warnings
    assert f"could not record {FAMILY}:2 as deployed" in warning and "AccessDeniedException" in warning
    assert "ecs:TagResource" in warning
    assert DEPLOYED_AT not in world.tags(arn(2))


def test_cli_says_a_refused_tag_and_exits_0(
    world: aws_world.World, sim: ecs_sim.Sim, checkout: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    def refuse(self: EC2ContainerServiceBackend, arn: str, tags: dict[str, str]) -> None:
        raise JsonRESTError("AccessDeniedException", "not authorized to perform: ecs:TagResource")

    monkeypatch.setattr(EC2ContainerServiceBackend, "tag_resource", refuse)
    aws_world.push_image(world.endpoint, "v2")
    sim.complete(after=2)
    assert lemi("deploy", "-e", ENV, "-t", "v2", "--poll", "0.01") == 0
    out = capsys.readouterr().out
    assert f"deployed {SERVICE} to {ENV}: {FAMILY}:2" in out
    assert f"warning: lemi could not record {FAMILY}:2 as deployed" in out


# ---- the choice, on ECS ---------------------------------------------------------------------------


async def test_a_first_rollback_past_the_placeholder_is_refused(world: aws_world.World, sim: ecs_sim.Sim) -> None:
    """:1 is what the Terraform module registered (managed-by=lemi, never rolled out by lemi)."""
    sim.complete(after=2)
    assert (await deploy_tag(world, "v2")).ok
    with pytest.raises(OperationError) as caught:
        await rollback(world)
    assert caught.value.message == f"{FAMILY}:2 {NO_HISTORY}"
    assert "lemi deploy -t <tag>" in caught.value.hint and "/lemi deploy <tag>" in caught.value.hint
    assert sim.updates == 1 and running(world) == f"{FAMILY}:2"


async def test_rollback_skips_a_revision_whose_rollout_failed(world: aws_world.World, sim: ecs_sim.Sim) -> None:
    sim.complete(after=2)
    assert (await deploy_tag(world, "v2")).ok
    sim.failed(after=2)
    assert not (await deploy_tag(world, "v3")).ok  # FAILED, no rollback: :3 runs, untagged
    sim.complete(after=2)
    assert (await deploy_tag(world, "v4")).ok
    result = await rollback(world)
    assert result.ok and result.task_definition == arn(2) and not result.reused
    assert running(world) == f"{FAMILY}:2" and sim.updates == 4


async def test_rollback_never_chooses_a_revision_lemi_did_not_register(
    world: aws_world.World, sim: ecs_sim.Sim, clock: list[datetime]
) -> None:
    sim.complete(after=2)
    assert (await deploy_tag(world, "v2")).ok
    td = compile_for(world.config, world.files, ENV, "v3").task_definition
    foreign = {
        **td,
        "tags": [{"key": DEPLOYED_AT, "value": "2099-01-01T00:00:00Z"}, {"key": "managed-by", "value": "ci"}],
    }
    assert world.ecs().register_task_definition(**foreign)["taskDefinition"]["revision"] == 3
    assert (await deploy_tag(world, "v4")).ok
    assert revision_of((await rollback(world)).task_definition) == f"{FAMILY}:2"


async def test_rollback_goes_by_when_lemi_deployed_not_by_number(
    world: aws_world.World, sim: ecs_sim.Sim, clock: list[datetime]
) -> None:
    sim.complete(after=2)
    for tag in ("v2", "v3", "v4"):  # :2 :3 :4 deployed on days 1, 2, 3
        assert (await deploy_tag(world, tag)).ok
    first = await rollback(world)  # from :4 to :3, which is tagged again (day 4)
    assert first.ok and first.task_definition == arn(3)
    assert world.tags(arn(3))[DEPLOYED_AT] == deployed_stamp(clock[-1])
    second = await rollback(world)  # from :3 further back, to :2 (day 5) -- not forward to :4
    assert second.ok and second.task_definition == arn(2)
    assert (await deploy_tag(world, "v5")).ok  # :5, day 6
    third = await rollback(world)  # :2 ran last before :5 (day 5), though :4 and :3 are higher
    assert third.ok and third.task_definition == arn(2)
    with pytest.raises(OperationError, match=NO_HISTORY):  # nothing lemi deployed below :2
        await rollback(world)
    assert [revision_of(a) for a in world.ecs().list_task_definitions(familyPrefix=FAMILY)["taskDefinitionArns"]] == [
        f"{FAMILY}:{n}" for n in range(1, 6)
    ]  # nothing registered by a rollback


async def test_rollback_reads_a_bounded_history_and_says_so(world: aws_world.World, sim: ecs_sim.Sim) -> None:
    ecs = world.ecs()
    for tag in ("v2", "v3", "v4"):  # registered, never rolled out
        ecs.register_task_definition(**compile_for(world.config, world.files, ENV, tag).task_definition)
    world.deployed(arn(1))  # the oldest was deployed once, but lies beyond the cap
    async with AwsClients(world.config) as aws:
        calls: list[str] = []
        aws.on_call(lambda service, operation: calls.append(operation))
        current = await Ecs.open(aws, ENV)
        with pytest.raises(OperationError) as caught:
            await rollback_target(current, arn(4), cap=2)
        assert await rollback_target(current, arn(4), cap=3) == arn(1)
    assert caught.value.message == f"{FAMILY}:4 {NO_HISTORY} (lemi looked at the newest 2 of its 3 earlier revisions)"
    assert calls.count("ListTagsForResource") == 2 + 3


# ---- the CLI ------------------------------------------------------------------------------------------


def test_cli_rollback_returns_to_the_last_good_revision(
    world: aws_world.World, sim: ecs_sim.Sim, checkout: Path, capsys: pytest.CaptureFixture[str], clock: list[datetime]
) -> None:
    sim.complete(after=2)
    for tag in ("v2", "v3"):
        aws_world.push_image(world.endpoint, tag)
        assert lemi("deploy", "-e", ENV, "-t", tag, "--poll", "0.01") == 0
    sim.circuit_breaker(after=2)
    aws_world.push_image(world.endpoint, "v4")
    assert lemi("deploy", "-e", ENV, "-t", "v4", "--poll", "0.01") == 1  # ECS rolled back to :3
    capsys.readouterr()
    assert running(world) == f"{FAMILY}:3"
    sim.complete(after=2)
    assert lemi("service", "rollback", "-e", ENV, "--poll", "0.01", "--output", "json") == 0
    data = json.loads(capsys.readouterr().out)
    assert data["ok"] is True and data["revision"] == f"{FAMILY}:2" and data["rollout"]["warnings"] == []
    assert running(world) == f"{FAMILY}:2"


def test_cli_rollback_with_no_history_is_refused_in_text_and_json(
    world: aws_world.World, sim: ecs_sim.Sim, checkout: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sim.complete(after=2)
    aws_world.push_image(world.endpoint, "v2")
    assert lemi("deploy", "-e", ENV, "-t", "v2", "--poll", "0.01") == 0
    capsys.readouterr()
    assert lemi("service", "rollback", "-e", ENV, "--poll", "0.01") == 1
    out, err = capsys.readouterr()
    assert f"error: {FAMILY}:2 {NO_HISTORY}\n    hint: deploy a known good image tag instead" in err
    assert "Traceback" not in out + err and "internal error" not in err
    assert lemi("service", "rollback", "-e", ENV, "--poll", "0.01", "--output", "json") == 1
    out, err = capsys.readouterr()
    assert json.loads(out) == {
        "ok": False, "service": SERVICE, "environment": ENV, "error": f"{FAMILY}:2 {NO_HISTORY}",
        "hint": "deploy a known good image tag instead: `lemi deploy -t <tag>` (or `/lemi deploy <tag>`)",
    }  # fmt: skip
    assert err == ""
    assert sim.updates == 1 and running(world) == f"{FAMILY}:2"
