"""``verify --check provisioned``: is everything a deploy needs there, in AWS?

Checks the cluster and ECS service (exist, ACTIVE), every secret (and the
JSON key a reference selects, without ever returning the value), every SSM
parameter (batched ``GetParameters``) and the image tag in ECR, optionally
waiting for the build with backoff up to a bound. Every problem is listed
at once, each with what to do about it.

Before any of that, the pure checks: which secrets and parameters lemi.yml
allows the service (bot/references.py), and for ``lemi deploy
--task-definition FILE`` the file against its environment (bot/taskdef.py).
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from bot.aws.clients import AwsClients
from bot.aws.errors import AwsError
from bot.aws.lookups import SharedLookups
from bot.core.findings import Finding, image_not_in_ecr
from bot.core.references import refuse_parameters, refuse_secrets
from bot.core.refs import ParameterRef, SecretRef, parse_secret
from bot.core.spec import ServiceFiles
from bot.core.taskdef import check_task_definition

__all__ = [
    "Finding", "check_image", "check_parameters", "check_secrets", "check_service", "verify_provisioned",
    "verify_task_definition",
]  # fmt: skip

PARAMETER_BATCH = 10  # GetParameters takes at most 10 names
DATADOG_KEY = "(datadog api key)"  # the secret every task definition's Datadog agent reads
DATADOG_SETTING = "lemi.yml's `datadog.api_key_secret`"  # where it is named


async def check_service(
    aws: AwsClients,
    env_name: str,
    service: str,
    shared: SharedLookups | None = None,
    found: dict[str, Any] | None = None,
) -> list[Finding]:
    """The cluster and the ECS service exist and are ACTIVE; ``found``: gets the service's
    description (by name) when it is ACTIVE."""
    env = aws.environment(env_name)
    ecs = await aws.client(env_name, "ecs")

    async def cluster_state() -> str:
        clusters = await ecs.describe_clusters(clusters=[env.cluster])
        found = clusters.get("clusters", [])
        return str(found[0].get("status", "missing")) if found else "missing"

    if shared is None:
        state = await cluster_state()
    else:
        state = await shared.get(("cluster", env_name, env.cluster), cluster_state, lambda s: s == "ACTIVE")
    if state != "ACTIVE":
        return [
            Finding(
                "cluster",
                env.cluster,
                f"the ECS cluster of {env_name} is {state.lower()} in {env.account_id}/{env.region}",
                "check `cluster` for this environment in lemi.yml, or create the cluster in the infra repository",
            )
        ]
    described = await ecs.describe_services(cluster=env.cluster, services=[service])
    services = [s for s in described.get("services", []) if s.get("serviceName") == service]
    if not services:
        return [
            Finding(
                "service",
                service,
                f"there is no ECS service {service!r} in cluster {env.cluster}",
                "provision it first: merge the infra PR lemi opened (or run `lemi provision`), then apply it",
            )
        ]
    status = services[0].get("status")
    if status == "ACTIVE" and found is not None:
        found[service] = services[0]
    if status != "ACTIVE":
        return [
            Finding(
                "service",
                service,
                f"the ECS service {service!r} is {str(status).lower()}",
                "it was deleted or is being deleted; re-apply the service's Terraform in the infra repository",
            )
        ]
    return []


async def _check_secret(
    aws: AwsClients, env_name: str, var: str, ref: SecretRef, shared: SharedLookups | None
) -> Finding | None:
    subject = f"{var} ({ref.secret})"
    if shared is None:
        problem = await _secret_problem(aws, env_name, ref)
    else:
        key = ("secret", env_name, ref.secret, ref.is_arn, ref.json_key, ref.version_id, ref.version_stage)
        problem = await shared.get(key, lambda: _secret_problem(aws, env_name, ref), lambda p: p is None)
    if problem is None:
        return None
    message, hint = problem
    if var == DATADOG_KEY:  # named by lemi.yml, not by the service's environment file
        hint = hint.replace("the environment file", DATADOG_SETTING)
    return Finding("secret", subject, message, hint)


async def _secret_problem(aws: AwsClients, env_name: str, ref: SecretRef) -> tuple[str, str] | None:
    """What is wrong with a secret reference (what, and what to do), or None: ECS can read it.
    A JSON key's secret value is read to look for the key, and never kept."""
    env = aws.environment(env_name)
    sm = await aws.client(env_name, "secretsmanager")
    secret_id = ref.secret_arn(env.region, env.account_id) if ref.is_arn else ref.secret
    try:
        described = await sm.describe_secret(SecretId=secret_id)
    except AwsError as exc:
        if exc.code == "ResourceNotFoundException":
            return (
                f"the secret does not exist in Secrets Manager ({env.account_id}/{env.region})",
                f"create it (aws secretsmanager create-secret --name {ref.secret}) or fix the name in the environment file",
            )
        raise
    if described.get("DeletedDate"):
        return (
            "the secret is scheduled for deletion, so ECS cannot read it",
            f"restore it (aws secretsmanager restore-secret --secret-id {ref.secret}) or point to another secret",
        )
    if not ref.json_key:
        return None
    kwargs: dict[str, Any] = {"SecretId": secret_id}
    if ref.version_id:
        kwargs["VersionId"] = ref.version_id
    if ref.version_stage:
        kwargs["VersionStage"] = ref.version_stage
    try:
        value = await sm.get_secret_value(**kwargs)
    except AwsError as exc:
        if exc.code == "InvalidRequestException":
            return (
                f"Secrets Manager refused to read it: {exc.message}",
                f"check the secret's state (aws secretsmanager describe-secret --secret-id {ref.secret})",
            )
        if exc.code == "ResourceNotFoundException":
            return (
                "the secret has no such version",
                "check the version stage and id after the JSON key, or leave them empty",
            )
        raise
    text = value.get("SecretString")
    try:
        data = json.loads(text) if text is not None else None
    except ValueError:
        data = None
    if not isinstance(data, dict):
        return (
            f"the secret is not a JSON object, so it has no key {ref.json_key!r}",
            f"store the secret as JSON with a {ref.json_key!r} key, or reference the whole secret",
        )
    if ref.json_key not in data:
        keys = ", ".join(sorted(map(str, data))) or "none"
        return (
            f"the secret's JSON has no key {ref.json_key!r} (keys: {keys})",
            "add the key to the secret or fix the key in the environment file",
        )
    return None


async def check_secrets(
    aws: AwsClients, env_name: str, secrets: dict[str, SecretRef], shared: SharedLookups | None = None
) -> list[Finding]:
    results = await asyncio.gather(*(_check_secret(aws, env_name, k, r, shared) for k, r in sorted(secrets.items())))
    return [f for f in results if f is not None]


async def check_parameters(
    aws: AwsClients, env_name: str, parameters: dict[str, ParameterRef], shared: SharedLookups | None = None
) -> list[Finding]:
    if not parameters:
        return []
    env = aws.environment(env_name)
    ssm = await aws.client(env_name, "ssm")
    by_name: dict[str, list[str]] = {}
    for var, ref in sorted(parameters.items()):
        by_name.setdefault(ref.name, []).append(var)

    async def exist(keys: list[tuple[str, str, str]]) -> dict[tuple[str, str, str], bool]:
        names = sorted(key[2] for key in keys)
        missing: set[str] = set()
        for i in range(0, len(names), PARAMETER_BATCH):
            response = await ssm.get_parameters(Names=names[i : i + PARAMETER_BATCH], WithDecryption=False)
            missing.update(response.get("InvalidParameters", []))
        return {key: key[2] not in missing for key in keys}

    keys = [("parameter", env_name, name) for name in sorted(by_name)]
    found = await exist(keys) if shared is None else await shared.get_many(keys, exist, bool)
    missing = [key[2] for key, there in found.items() if not there]
    return [
        Finding(
            "parameter",
            f"{', '.join(by_name[name])} ({name})",
            f"the parameter does not exist in Parameter Store ({env.account_id}/{env.region})",
            f"create it (aws ssm put-parameter --name {name} ...) or fix the name in the environment file",
        )
        for name in sorted(missing)
        if name in by_name
    ]


async def check_image(
    aws: AwsClients,
    env_name: str,
    repository: str,
    tag: str,
    *,
    wait_seconds: float = 0,
    first_delay: float = 2.0,
    max_delay: float = 20.0,
    shared: SharedLookups | None = None,
) -> list[Finding]:
    """Is ``repository:tag`` in the environment's ECR? Waits up to ``wait_seconds`` for it."""
    env = aws.environment(env_name)
    ecr = await aws.client(env_name, "ecr")

    async def missing() -> str | None:  # None: the image is there; else what is missing
        try:
            await ecr.describe_images(
                registryId=env.account_id, repositoryName=repository, imageIds=[{"imageTag": tag}]
            )
        except AwsError as exc:
            if exc.code == "RepositoryNotFoundException":
                return "repository"
            if exc.code != "ImageNotFoundException":
                raise
            return "image"
        return None

    deadline = time.monotonic() + wait_seconds
    delay = first_delay
    while True:
        if shared is None:
            absent = await missing()
        else:
            absent = await shared.get(("image", env_name, repository, tag), missing, lambda a: a is None)
        if absent is None:
            return []
        if absent == "repository":
            return [
                Finding(
                    "image",
                    repository,
                    f"there is no ECR repository {repository!r} in {env.account_id}/{env.region}",
                    "create it in the infra repository, or fix spec.image in service.yaml",
                )
            ]
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return [image_not_in_ecr(repository, tag, wait_seconds)]
        await asyncio.sleep(min(delay, remaining))
        delay = min(delay * 2, max_delay)


async def verify_provisioned(
    aws: AwsClients,
    env_name: str,
    files: ServiceFiles,
    *,
    tag: str | None = None,
    image_wait_seconds: float = 0,
    shared: SharedLookups | None = None,
    services: dict[str, Any] | None = None,
) -> list[Finding]:
    """Every check at once; an empty list means the service can be deployed.

    ``shared``: what the deploys of this process looked up and found in order in the last few
    seconds is not asked again (bot/aws/lookups.py); a problem is always looked up afresh.
    ``services``: gets the ECS service's description, for a caller that deploys it next.

    First, without AWS: the secrets and parameters lemi.yml's ``references`` does
    not allow the service (refused ones are never looked up). The Datadog API key
    named by lemi.yml itself is exempt.
    """
    service = files.service
    missing = files.missing_environment(env_name)  # a deploy would run without its variables and secrets
    unfiled = [] if missing is None else [Finding("environment file", missing.file, missing.message, missing.hint)]
    env_file = files.environment(env_name)
    env = aws.environment(env_name)
    secrets, parameters = env_file.secret_refs(), env_file.parameter_refs()
    refused_secrets = refuse_secrets(aws.config.references, env_name, env, service.name, secrets)
    refused_parameters = refuse_parameters(aws.config.references, env_name, env, service.name, parameters)
    secrets = {k: v for k, v in secrets.items() if k not in refused_secrets}
    parameters = {k: v for k, v in parameters.items() if k not in refused_parameters}
    secrets[DATADOG_KEY] = parse_secret(aws.config.datadog.api_key_secret)
    checks = [
        check_service(aws, env_name, service.name, shared, services),
        check_secrets(aws, env_name, secrets, shared),
        check_parameters(aws, env_name, parameters, shared),
    ]
    if tag is not None:
        checks.append(check_image(aws, env_name, service.image, tag, wait_seconds=image_wait_seconds, shared=shared))
    results = await asyncio.gather(*checks)
    refused = [*refused_secrets.values(), *refused_parameters.values()]
    return unfiled + refused + [finding for result in results for finding in result]


async def verify_task_definition(
    aws: AwsClients, env_name: str, service: str, document: dict[str, Any]
) -> list[Finding]:
    """A task definition file against the environment, then in AWS; an empty list means it can be deployed.

    The file's own rules first (bot/taskdef.py: family, roles, image registry,
    where its secrets live, ``DD_ENV``, log group, lemi.yml's ``references``),
    then the service is ACTIVE, the image tag is in ECR and every secret and
    parameter that passed exists. Nothing here registers or changes anything.
    """
    checked = check_task_definition(document, aws.config, env_name, service)
    checks = [
        check_service(aws, env_name, service),
        check_secrets(aws, env_name, checked.secrets),
        check_parameters(aws, env_name, checked.parameters),
    ]
    if checked.image is not None:
        checks.append(check_image(aws, env_name, *checked.image))
    results = await asyncio.gather(*checks)
    return checked.findings + [finding for result in results for finding in result]
