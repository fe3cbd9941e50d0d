"""The lookups the deploys of one process share (bot/aws/lookups.py), against moto on loopback.

Many services deploying at once ask AWS once for what they have in common (the cluster, the
secrets, the parameters, the image); a problem is found by every one of them and looked up
afresh by the next deploy; what passed is reused only for a few seconds; ``lemi verify`` (no
``shared``) always asks AWS.
"""

from __future__ import annotations

import asyncio
import collections

import aws_world
from aws_world import ACCOUNT, REGION

from bot.aws.clients import AwsClients
from bot.aws.lookups import SHARED_SECONDS, SharedLookups
from bot.aws.verify import Finding, verify_provisioned

DEPLOYS = 20
MISSING_PASSWORD = Finding(
    "secret",
    "DB_PASSWORD (demo-service/db-password)",
    f"the secret does not exist in Secrets Manager ({ACCOUNT}/{REGION})",
    "create it (aws secretsmanager create-secret --name demo-service/db-password) "
    "or fix the name in the environment file",
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def counting(aws: AwsClients) -> collections.Counter[str]:
    calls: collections.Counter[str] = collections.Counter()
    aws.on_call(lambda service, operation: calls.update([operation]))
    return calls


def delete_password(world: aws_world.World) -> None:
    aws_world.client("secretsmanager", world.endpoint).delete_secret(
        SecretId="demo-service/db-password", ForceDeleteWithoutRecovery=True
    )


async def deploys_at_once(aws: AwsClients, world: aws_world.World, shared: SharedLookups) -> list[list[Finding]]:
    return await asyncio.gather(
        *(verify_provisioned(aws, "staging", world.files, tag="v1", shared=shared) for _ in range(DEPLOYS))
    )


async def test_deploys_at_once_ask_aws_once_for_what_they_share(world: aws_world.World) -> None:
    async with AwsClients(world.config) as aws:
        calls = counting(aws)
        assert await deploys_at_once(aws, world, aws.lookups) == [[]] * DEPLOYS
        # each service is described by its own deploy; the rest is asked once for all of them
        assert calls == {
            "DescribeServices": DEPLOYS, "DescribeClusters": 1, "DescribeSecret": 3, "GetSecretValue": 1,
            "GetParameters": 1, "DescribeImages": 1,
        }  # fmt: skip


async def test_a_missing_secret_is_found_by_every_deploy_and_found_created_at_once(world: aws_world.World) -> None:
    delete_password(world)
    async with AwsClients(world.config) as aws:
        assert await deploys_at_once(aws, world, aws.lookups) == [[MISSING_PASSWORD]] * DEPLOYS
        # a problem is never kept: the secret created a moment later is found by the next deploy
        aws_world.client("secretsmanager", world.endpoint).create_secret(
            Name="demo-service/db-password", SecretString="hunter2"
        )
        assert await verify_provisioned(aws, "staging", world.files, tag="v1", shared=aws.lookups) == []


async def test_a_missing_image_is_looked_up_again_by_the_next_deploy(world: aws_world.World) -> None:
    async with AwsClients(world.config) as aws:
        findings = await verify_provisioned(aws, "staging", world.files, tag="v2", shared=aws.lookups)
        assert [f.check for f in findings] == ["image"]
        aws_world.push_image(world.endpoint, "v2")
        assert await verify_provisioned(aws, "staging", world.files, tag="v2", shared=aws.lookups) == []


async def test_what_passed_is_reused_only_for_a_few_seconds(world: aws_world.World) -> None:
    clock = Clock()
    shared = SharedLookups(SHARED_SECONDS, clock=clock)
    async with AwsClients(world.config) as aws:
        calls = counting(aws)
        assert await verify_provisioned(aws, "staging", world.files, tag="v1", shared=shared) == []
        delete_password(world)
        clock.now += SHARED_SECONDS - 1  # within the time: the secret that was there is not asked again
        assert await verify_provisioned(aws, "staging", world.files, tag="v1", shared=shared) == []
        assert calls["DescribeSecret"] == 3
        clock.now += 1  # expired: asked again, and its absence found
        assert await verify_provisioned(aws, "staging", world.files, tag="v1", shared=shared) == [MISSING_PASSWORD]


async def test_lemi_verify_always_asks_aws(world: aws_world.World) -> None:
    async with AwsClients(world.config) as aws:
        assert await verify_provisioned(aws, "staging", world.files, tag="v1") == []
        delete_password(world)
        assert await verify_provisioned(aws, "staging", world.files, tag="v1") == [MISSING_PASSWORD]


async def test_a_failed_lookup_is_shared_by_those_waiting_and_not_kept() -> None:
    shared = SharedLookups()
    asked = 0
    release = asyncio.Event()

    async def failing() -> str:
        nonlocal asked
        asked += 1
        await release.wait()
        raise RuntimeError("AWS is unavailable")

    waiting = [asyncio.ensure_future(shared.get("k", failing, lambda v: True)) for _ in range(3)]
    await asyncio.sleep(0)
    waiting[0].cancel()  # a caller that goes away leaves the lookup to the others
    release.set()
    results = await asyncio.gather(*waiting, return_exceptions=True)
    assert isinstance(results[0], asyncio.CancelledError)
    assert [str(r) for r in results[1:]] == ["AWS is unavailable"] * 2
    assert asked == 1

    async def found() -> str:
        return "there"

    assert await shared.get("k", found, lambda v: True) == "there"  # the failure was not kept


async def test_no_time_keeps_nothing() -> None:
    shared = SharedLookups(0.0)
    asked = 0

    async def fetch() -> int:
        nonlocal asked
        asked += 1
        return asked

    assert [await shared.get("k", fetch, lambda v: True) for _ in range(2)] == [1, 2]
