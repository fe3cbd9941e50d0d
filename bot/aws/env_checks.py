"""The AWS side of ``lemi doctor``, per environment of lemi.yml, through the environment's
own clients (so its ``role_arn`` is assumed as every operation assumes it):

* the credentials: ``sts:GetCallerIdentity`` (no permission needed), in lemi.yml's account;
* the cluster is ACTIVE (``ecs:DescribeClusters``);
* the Datadog API key secret (lemi.yml ``datadog.api_key_secret``) exists: every task
  definition lemi compiles reads it (the Datadog agent's ``DD_API_KEY``, and the log router's
  key where the environment logs to Datadog).
"""

from __future__ import annotations

import asyncio

from bot.aws.clients import AwsClients
from bot.aws.errors import AwsError
from bot.aws.verify import check_secrets
from bot.core.doctor import Check, failed, passed
from bot.core.errors import Transient, UserError
from bot.core.refs import parse_secret


async def environment_checks(aws: AwsClients) -> list[Check]:
    """The checks of every environment, run at once, listed in lemi.yml's order."""
    found = await asyncio.gather(*(_environment(aws, name) for name in aws.config.environments))
    return [check for checks in found for check in checks]


async def _environment(aws: AwsClients, env_name: str) -> list[Check]:
    env = aws.environment(env_name)
    where = f"{env.account_id}/{env.region}"
    identity = await _identity(aws, env_name)
    if not identity.ok:
        skipped = "not checked: lemi cannot act in this environment (see its credentials)"
        return [
            identity,
            failed(f"{env_name}: cluster", skipped, "fix the credentials first"),
            failed(f"{env_name}: Datadog API key", skipped, "fix the credentials first"),
        ]
    cluster, secret = await asyncio.gather(_cluster(aws, env_name, where), _datadog_key(aws, env_name, where))
    return [identity, cluster, secret]


async def _identity(aws: AwsClients, env_name: str) -> Check:
    env = aws.environment(env_name)
    name = f"{env_name}: AWS credentials"
    via = f"assuming {env.role_arn}" if env.role_arn else "with lemi's own credentials (no role_arn)"
    try:
        sts = await aws.client(env_name, "sts")
        found = await sts.get_caller_identity()
    except (AwsError, Transient, UserError) as exc:
        fix = (
            f"let lemi's identity assume {env.role_arn} (sts:AssumeRole, and the role's trust policy), "
            "or correct role_arn in lemi.yml"
            if env.role_arn
            else "give lemi AWS credentials (the standard AWS variables, a profile, or the task's role), "
            "or set role_arn for this environment in lemi.yml"
        )
        return failed(name, f"{via}: {exc}", fix)
    account = str(found.get("Account", ""))
    if account != env.account_id:
        return failed(
            name,
            f"{via}, lemi acts in account {account}, but lemi.yml says {env.account_id}",
            "correct account_id (or role_arn) of this environment in lemi.yml",
        )
    return passed(name, f"{via}: {found.get('Arn')}")


async def _cluster(aws: AwsClients, env_name: str, where: str) -> Check:
    env = aws.environment(env_name)
    name = f"{env_name}: cluster"
    try:
        ecs = await aws.client(env_name, "ecs")
        described = await ecs.describe_clusters(clusters=[env.cluster])
    except (AwsError, Transient, UserError) as exc:
        return failed(
            name, f"cannot describe {env.cluster}: {exc}", "allow ecs:DescribeClusters (README's deployer policy)"
        )
    clusters = described.get("clusters", [])
    status = str(clusters[0].get("status", "missing")) if clusters else "missing"
    if status != "ACTIVE":
        return failed(
            name,
            f"the ECS cluster {env.cluster} is {status.lower()} in {where}",
            "correct `cluster` of this environment in lemi.yml, or create the cluster in the infra repository",
        )
    return passed(name, f"{env.cluster} is ACTIVE in {where}")


async def _datadog_key(aws: AwsClients, env_name: str, where: str) -> Check:
    secret = aws.config.datadog.api_key_secret
    name = f"{env_name}: Datadog API key"
    try:
        findings = await check_secrets(aws, env_name, {"(datadog api key)": parse_secret(secret)})
    except (AwsError, Transient, UserError) as exc:
        return failed(
            name, f"cannot look up {secret}: {exc}", "allow secretsmanager:DescribeSecret (README's deployer policy)"
        )
    if findings:
        return failed(
            name,
            f"{secret}: {findings[0].message}; every task definition lemi compiles for {env_name} reads it",
            f"create it in {where} (aws secretsmanager create-secret --name {secret} --secret-string <key>), "
            "or point lemi.yml's datadog.api_key_secret at the secret that holds the key",
        )
    return passed(name, f"{secret} exists in {where}")
