"""`verify --check provisioned`: everything a deploy needs exists in AWS (moto on loopback).

Through the core (``AwsClients(config)`` + ``verify_provisioned`` and the single
checks) and through the CLI (``lemi verify`` in a temporary git checkout):
every failure alone with its check, subject, message and hint; several at
once; the image wait with backoff; AssumeRole per environment with cached
credentials; the clients' retry mode and region.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import aws_world
import moto.sts.models as moto_sts
import pytest
from aws_world import ACCOUNT, CLUSTER, REGION, SERVICE, STAGING_YAML
from checkout import make_checkout, write

from bot.aws.clients import ROLE_SESSION_NAME, AwsClients
from bot.aws.verify import Finding, check_image, check_parameters, check_service, verify_provisioned
from bot.cli import main
from bot.core.config import parse_config
from bot.core.spec import ServiceFiles, parse_environment, parse_service

WHERE = f"{ACCOUNT}/{REGION}"
BUILD_HINT = (
    "the build may have failed: the build workflow pushes the image tagged with the commit SHA only after the "
    "commit's tests pass; look at the commit's checks, fix the build and push again"
)
# the values stored in the world's secrets: none may ever be printed
SECRET_VALUES = ("s3cret", "hunter2")


def no_secret_values(text: str) -> None:
    for value in SECRET_VALUES:
        assert value not in text
    assert not re.search(r"\bapp\b", text), text  # "username" of demo-service/db


def staging(**sections: dict[str, str]) -> str:
    """An environment file: STAGING_YAML's sections, updated by ``sections``."""
    doc: dict[str, dict[str, str]] = {
        "variables": {"LOG_LEVEL": "info"},
        "secrets": {"DB_PASSWORD": "demo-service/db-password", "DB_USER": "demo-service/db:username::"},
        "parameters": {"FEATURE_X": "/demo-service/feature-x"},
    }
    for name, values in sections.items():
        doc[name] = values
    return "".join(
        f"{name}:\n" + "".join(f"  {k}: {json.dumps(v)}\n" for k, v in values.items())
        for name, values in doc.items()
        if values
    )


def test_staging_helper_renders_the_world_file() -> None:
    assert parse_environment(staging(), "x.yaml") == parse_environment(STAGING_YAML, "x.yaml")


async def verify(world: aws_world.World, files: ServiceFiles | None = None, **kwargs: Any) -> list[Finding]:
    async with AwsClients(world.config) as aws:
        return await verify_provisioned(aws, "staging", files or world.files, **kwargs)


# ---------------------------------------------------------------- the core


async def test_everything_present_is_no_finding(world: aws_world.World) -> None:
    assert await verify(world, tag="v1") == []
    assert await verify(world) == []  # no tag: the image is not checked


async def test_missing_secret(world: aws_world.World) -> None:
    aws_world.client("secretsmanager", world.endpoint).delete_secret(
        SecretId="demo-service/db-password", ForceDeleteWithoutRecovery=True
    )
    assert await verify(world, tag="v1") == [
        Finding(
            "secret",
            "DB_PASSWORD (demo-service/db-password)",
            f"the secret does not exist in Secrets Manager ({WHERE})",
            "create it (aws secretsmanager create-secret --name demo-service/db-password) "
            "or fix the name in the environment file",
        )
    ]


async def test_json_key_missing_lists_keys_never_values(world: aws_world.World) -> None:
    files = aws_world.service_files(staging(secrets={"DB_USER": "demo-service/db:user::"}))
    findings = await verify(world, files, tag="v1")
    assert findings == [
        Finding(
            "secret",
            "DB_USER (demo-service/db)",
            "the secret's JSON has no key 'user' (keys: password, username)",
            "add the key to the secret or fix the key in the environment file",
        )
    ]
    no_secret_values(json.dumps([f.as_dict() for f in findings]) + "".join(f.render() for f in findings))


async def test_secret_not_json_with_a_key_reference(world: aws_world.World) -> None:
    files = aws_world.service_files(staging(secrets={"DB_PASSWORD": "demo-service/db-password:password::"}))
    findings = await verify(world, files, tag="v1")
    assert findings == [
        Finding(
            "secret",
            "DB_PASSWORD (demo-service/db-password)",
            "the secret is not a JSON object, so it has no key 'password'",
            "store the secret as JSON with a 'password' key, or reference the whole secret",
        )
    ]
    no_secret_values(findings[0].render())


async def test_json_key_present_in_an_arn_reference(world: aws_world.World) -> None:
    arn = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:demo-service/db"
    files = aws_world.service_files(staging(secrets={"DB_USER": f"{arn}:username::", "DB_PASS": f"{arn}:password::"}))
    assert await verify(world, files, tag="v1") == []


async def test_secret_version_that_does_not_exist(world: aws_world.World) -> None:
    files = aws_world.service_files(staging(secrets={"DB_USER": "demo-service/db:username:AWSPREVIOUS:"}))
    assert await verify(world, files) == [
        Finding(
            "secret",
            "DB_USER (demo-service/db)",
            "the secret has no such version",
            "check the version stage and id after the JSON key, or leave them empty",
        )
    ]


async def test_secret_scheduled_for_deletion_is_a_finding(world: aws_world.World) -> None:
    aws_world.client("secretsmanager", world.endpoint).delete_secret(
        SecretId="demo-service/db-password", RecoveryWindowInDays=7
    )
    findings = await verify(world, tag="v1")
    assert [(f.check, f.subject) for f in findings] == [("secret", "DB_PASSWORD (demo-service/db-password)")]


async def test_json_key_secret_scheduled_for_deletion_is_a_finding_not_a_crash(world: aws_world.World) -> None:
    aws_world.client("secretsmanager", world.endpoint).delete_secret(SecretId="demo-service/db", RecoveryWindowInDays=7)
    aws_world.client("ssm", world.endpoint).delete_parameter(Name="/demo-service/feature-x")
    findings = await verify(world, tag="v1")
    assert [(f.check, f.subject) for f in findings] == [
        ("secret", "DB_USER (demo-service/db)"),
        ("parameter", "FEATURE_X (/demo-service/feature-x)"),
    ]


async def test_missing_parameter(world: aws_world.World) -> None:
    aws_world.client("ssm", world.endpoint).delete_parameter(Name="/demo-service/feature-x")
    assert await verify(world, tag="v1") == [
        Finding(
            "parameter",
            "FEATURE_X (/demo-service/feature-x)",
            f"the parameter does not exist in Parameter Store ({WHERE})",
            "create it (aws ssm put-parameter --name /demo-service/feature-x ...) or fix the name in the environment file",
        )
    ]


async def test_parameters_are_batched_and_every_missing_one_is_reported(world: aws_world.World) -> None:
    ssm = aws_world.client("ssm", world.endpoint)
    missing = {"/demo-service/p01", "/demo-service/p03", "/demo-service/p09"}  # p09 is in the second batch
    parameters = {"FEATURE_X": "/demo-service/feature-x", "ALIAS": "/demo-service/p01"}
    for i in range(11):
        name = f"/demo-service/p{i:02d}"
        parameters[f"P{i:02d}"] = name
        if name not in missing:
            ssm.put_parameter(Name=name, Value="v", Type="String")
    files = aws_world.service_files(staging(parameters=parameters))
    calls: list[tuple[str, str]] = []
    async with AwsClients(world.config) as aws:
        aws.on_call(lambda service, operation: calls.append((service, operation)))
        findings = await check_parameters(aws, "staging", files.environment("staging").parameter_refs())
    # 12 distinct names: GetParameters takes at most 10, so two calls
    assert calls == [("ssm", "GetParameters")] * 2
    assert [(f.check, f.subject) for f in findings] == [
        ("parameter", "ALIAS, P01 (/demo-service/p01)"),
        ("parameter", "P03 (/demo-service/p03)"),
        ("parameter", "P09 (/demo-service/p09)"),
    ]
    assert all(f.message == f"the parameter does not exist in Parameter Store ({WHERE})" for f in findings)
    assert all(f.hint.startswith("create it (aws ssm put-parameter --name /demo-service/p0") for f in findings)
    # and through verify_provisioned, nothing about the ones that exist
    assert [f.subject for f in await verify(world, files, tag="v1")] == [f.subject for f in findings]


async def test_missing_image_tag(world: aws_world.World) -> None:
    assert await verify(world, tag="v2") == [
        Finding(
            "image",
            f"{SERVICE}:v2",
            "the image is not in ECR",
            BUILD_HINT,
        )
    ]


async def test_missing_ecr_repository(world: aws_world.World) -> None:
    aws_world.client("ecr", world.endpoint).delete_repository(repositoryName=SERVICE, force=True)
    assert await verify(world, tag="v1") == [
        Finding(
            "image",
            SERVICE,
            f"there is no ECR repository {SERVICE!r} in {WHERE}",
            "create it in the infra repository, or fix spec.image in service.yaml",
        )
    ]


async def test_missing_ecs_service(world: aws_world.World) -> None:
    worker = aws_world.SERVICE_YAML.replace("name: demo-service", "name: demo-service-worker")
    files = ServiceFiles(
        parse_service(worker, "deploy/demo-service-worker/service.yaml", repository="acme/demo-service"),
        {"staging": parse_environment(STAGING_YAML, "deploy/demo-service-worker/environment/staging.yaml")},
    )
    assert await verify(world, files, tag="v1") == [
        Finding(
            "service",
            "demo-service-worker",
            f"there is no ECS service 'demo-service-worker' in cluster {CLUSTER}",
            "provision it first: merge the infra PR lemi opened (or run `lemi provision`), then apply it",
        )
    ]


async def test_inactive_ecs_service(world: aws_world.World) -> None:
    world.ecs().delete_service(cluster=CLUSTER, service=SERVICE, force=True)
    assert await verify(world, tag="v1") == [
        Finding(
            "service",
            SERVICE,
            f"the ECS service {SERVICE!r} is inactive",
            "it was deleted or is being deleted; re-apply the service's Terraform in the infra repository",
        )
    ]


async def test_missing_cluster(world: aws_world.World) -> None:
    world.config = parse_config(aws_world.LEMI_YML.replace(CLUSTER, "gone-cluster"))
    assert await verify(world, tag="v1") == [
        Finding(
            "cluster",
            "gone-cluster",
            f"the ECS cluster of staging is missing in {WHERE}",
            "check `cluster` for this environment in lemi.yml, or create the cluster in the infra repository",
        )
    ]


async def test_inactive_cluster(world: aws_world.World) -> None:
    world.ecs().delete_service(cluster=CLUSTER, service=SERVICE, force=True)
    world.ecs().delete_cluster(cluster=CLUSTER)
    async with AwsClients(world.config) as aws:
        findings = await check_service(aws, "staging", SERVICE)
    assert [(f.check, f.subject, f.message) for f in findings] == [
        ("cluster", CLUSTER, f"the ECS cluster of staging is inactive in {WHERE}")
    ]


async def test_missing_datadog_api_key_secret(world: aws_world.World) -> None:
    aws_world.client("secretsmanager", world.endpoint).delete_secret(
        SecretId="datadog/api-key", ForceDeleteWithoutRecovery=True
    )
    assert await verify(world, tag="v1") == [
        Finding(
            "secret",
            "(datadog api key) (datadog/api-key)",
            f"the secret does not exist in Secrets Manager ({WHERE})",
            "create it (aws secretsmanager create-secret --name datadog/api-key) "
            "or fix the name in lemi.yml's `datadog.api_key_secret`",  # lemi.yml names it, not the environment file
        )
    ]


async def test_every_problem_at_once_on_an_empty_account(moto_reset: str) -> None:
    world = aws_world.World(moto_reset, aws_world.config(), aws_world.service_files(), "")
    findings = await verify(world, tag="v1")
    assert [(f.check, f.subject) for f in findings] == [
        ("cluster", CLUSTER),
        ("secret", "(datadog api key) (datadog/api-key)"),
        ("secret", "DB_PASSWORD (demo-service/db-password)"),
        ("secret", "DB_USER (demo-service/db)"),
        ("parameter", "FEATURE_X (/demo-service/feature-x)"),
        ("image", SERVICE),
    ]
    assert all(f.message and f.hint for f in findings)


# ---------------------------------------------------------------- lemi.yml's references

REFERENCES = """\
references:
  secrets: ["{service}/*"]
  parameters: ["/{service}/*"]
"""


@pytest.fixture
def looked_up(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every secret and parameter name moto (in this process) was asked about, as asked."""
    from moto.secretsmanager.models import SecretsManagerBackend
    from moto.ssm.models import SimpleSystemManagerBackend

    names: list[str] = []
    describe, get_value = SecretsManagerBackend.describe_secret, SecretsManagerBackend.get_secret_value
    get_parameters = SimpleSystemManagerBackend.get_parameters

    def describing(self: Any, secret_id: str) -> Any:
        names.append(secret_id)
        return describe(self, secret_id)

    def reading(self: Any, secret_id: str, *args: Any, **kwargs: Any) -> Any:
        names.append(secret_id)
        return get_value(self, secret_id, *args, **kwargs)

    def parameters(self: Any, names_: list[str]) -> Any:
        names.extend(names_)
        return get_parameters(self, names_)

    monkeypatch.setattr(SecretsManagerBackend, "describe_secret", describing)
    monkeypatch.setattr(SecretsManagerBackend, "get_secret_value", reading)
    monkeypatch.setattr(SimpleSystemManagerBackend, "get_parameters", parameters)
    return names


async def test_references_refuse_other_names_before_any_aws_call_for_them(
    world: aws_world.World, looked_up: list[str]
) -> None:
    world.config = parse_config(aws_world.LEMI_YML + REFERENCES)
    other = f"arn:aws:secretsmanager:{REGION}:999999999999:secret:demo-service/db"
    files = aws_world.service_files(staging(
        secrets={"DB_PASSWORD": "demo-service/db-password", "DB_USER": "demo-service/db:username::",
                 "TOKEN": "other-team/token", "ELSEWHERE": other},
        parameters={"FEATURE_X": "/demo-service/feature-x", "FLAG": "/other-team/flag"},
    ))  # fmt: skip
    findings = await verify(world, files, tag="v1")
    assert findings == [
        Finding(
            "secret",
            f"ELSEWHERE ({other})",
            f"the ARN points outside staging: account 999999999999 (not {ACCOUNT}); "
            "lemi.yml's references.secrets only allows secrets of the environment's own account and region",
            f"reference a secret of staging (account {ACCOUNT}, region {REGION}); a name without arn: is looked up there",
        ),
        Finding(
            "secret",
            "TOKEN (other-team/token)",
            "lemi.yml does not allow demo-service to reference this secret (allowed: demo-service/*)",
            "use a secret whose name matches an allowed pattern (* matches any characters, / included), "
            "or ask the infra team to add a pattern to references.secrets in lemi.yml",
        ),
        Finding(
            "parameter",
            "FLAG (/other-team/flag)",
            "lemi.yml does not allow demo-service to reference this parameter (allowed: /demo-service/*)",
            "use a parameter whose name matches an allowed pattern (* matches any characters, / included), "
            "or ask the infra team to add a pattern to references.parameters in lemi.yml",
        ),
    ]
    # the allowed ones (and the Datadog key) were checked; the refused ones never reached AWS
    assert set(looked_up) == {
        "demo-service/db-password",
        "demo-service/db",
        "datadog/api-key",
        "/demo-service/feature-x",
    }


async def test_references_allow_the_services_own_names_and_arns(world: aws_world.World) -> None:
    world.config = parse_config(aws_world.LEMI_YML + REFERENCES)
    arn = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:demo-service/db"
    full = aws_world.client("secretsmanager", world.endpoint).describe_secret(SecretId="demo-service/db")["ARN"]
    assert full != arn and full.startswith(arn + "-")  # moto, like AWS, adds the random suffix
    files = aws_world.service_files(staging(
        secrets={"DB_PASSWORD": "demo-service/db-password", "DB_USER": f"{arn}:username::", "DB_PASS": f"{full}:password::"},
        parameters={"FEATURE_X": f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter/demo-service/feature-x"},
    ))  # fmt: skip
    assert await verify(world, files, tag="v1") == []


async def test_the_datadog_key_of_lemi_yml_is_exempt_but_still_checked(world: aws_world.World) -> None:
    world.config = parse_config(aws_world.LEMI_YML + REFERENCES)  # datadog/api-key matches no pattern
    assert await verify(world, tag="v1") == []
    aws_world.client("secretsmanager", world.endpoint).delete_secret(
        SecretId="datadog/api-key", ForceDeleteWithoutRecovery=True
    )
    assert [(f.check, f.subject) for f in await verify(world, tag="v1")] == [
        ("secret", "(datadog api key) (datadog/api-key)")
    ]


async def test_empty_references_refuse_every_secret_and_parameter(world: aws_world.World, looked_up: list[str]) -> None:
    world.config = parse_config(aws_world.LEMI_YML + "references:\n  secrets: []\n  parameters: []\n")
    findings = await verify(world, tag="v1")
    assert [(f.check, f.subject) for f in findings] == [
        ("secret", "DB_PASSWORD (demo-service/db-password)"),
        ("secret", "DB_USER (demo-service/db)"),
        ("parameter", "FEATURE_X (/demo-service/feature-x)"),
    ]
    assert all(f.message.endswith("(allowed: none: references.secrets is empty)") for f in findings[:2])
    assert findings[2].message.endswith("(allowed: none: references.parameters is empty)")
    assert looked_up == ["datadog/api-key"]


# ---------------------------------------------------------------- the image wait


async def test_image_wait_finds_the_image_pushed_while_waiting(world: aws_world.World) -> None:
    pusher = threading.Timer(0.3, aws_world.push_image, args=(world.endpoint, "v2"))
    async with AwsClients(world.config) as aws:
        start = time.monotonic()
        pusher.start()
        try:
            findings = await check_image(aws, "staging", SERVICE, "v2", wait_seconds=5, first_delay=0.05)
        finally:
            pusher.join()
        elapsed = time.monotonic() - start
    assert findings == []
    assert 0.3 <= elapsed < 4.5  # found after the push, before the 5 s bound ran out


async def test_image_wait_gives_up_at_the_bound(world: aws_world.World) -> None:
    calls: list[str] = []
    async with AwsClients(world.config) as aws:
        # a first call makes the client (botocore's models, slow on a cold machine), so the
        # timed wait below counts calls, not the client's start-up
        assert await check_image(aws, "staging", SERVICE, "v1") == []
        aws.on_call(lambda service, operation: calls.append(operation))
        start = time.monotonic()
        findings = await check_image(aws, "staging", SERVICE, "v2", wait_seconds=0.3, first_delay=0.05)
        elapsed = time.monotonic() - start
    assert findings == [
        Finding(
            "image",
            f"{SERVICE}:v2",
            "the image is not in ECR after waiting 0.3 s",
            BUILD_HINT,
        )
    ]
    assert 0.3 <= elapsed < 5  # it waited for the bound, then stopped (not a speed assertion)
    # backoff: 0.05, 0.1, then the 0.15 s left; not a busy loop
    assert 3 <= calls.count("DescribeImages") <= 5


async def test_image_wait_does_not_wait_for_a_missing_repository(world: aws_world.World) -> None:
    calls: list[str] = []
    async with AwsClients(world.config) as aws:
        aws.on_call(lambda service, operation: calls.append(operation))
        start = time.monotonic()
        findings = await check_image(aws, "staging", "no-such-repo", "v1", wait_seconds=5, first_delay=0.05)
        elapsed = time.monotonic() - start
    assert [(f.check, f.subject) for f in findings] == [("image", "no-such-repo")]
    assert calls == ["DescribeImages"]  # asked once, not polled
    assert elapsed < 4  # well inside the 5 s it would have waited (not a speed assertion)


# ---------------------------------------------------------------- clients


ROLE = f"arn:aws:iam::{ACCOUNT}:role/lemi-deployer"
OTHER_ROLE = "arn:aws:iam::111111111111:role/lemi-deployer"
LEMI_YML_ROLES = f"""\
infra:
  repository: acme/infra
domain: lemon
environments:
  staging:
    branch: develop
    region: {REGION}
    account_id: "{ACCOUNT}"
    cluster: {CLUSTER}
    role_arn: {ROLE}
  qa:
    branch: qa
    region: {REGION}
    account_id: "111111111111"
    cluster: {CLUSTER}
    role_arn: {OTHER_ROLE}
  dev:
    branch: dev
    region: {REGION}
    account_id: "{ACCOUNT}"
    cluster: {CLUSTER}
  eu:
    branch: eu
    region: eu-west-1
    account_id: "{ACCOUNT}"
    cluster: {CLUSTER}
"""


@pytest.fixture
def assume_role_calls(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Every AssumeRole moto serves (its server runs in this process)."""
    calls: list[dict[str, Any]] = []
    original = moto_sts.STSBackend.assume_role

    def counting(self: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(kwargs)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(moto_sts.STSBackend, "assume_role", counting)
    return calls


async def test_assume_role_per_environment_with_cached_credentials(
    world: aws_world.World, assume_role_calls: list[dict[str, Any]]
) -> None:
    async with AwsClients(parse_config(LEMI_YML_ROLES)) as aws:
        sts = await aws.client("staging", "sts")
        identity = await sts.get_caller_identity()
        assert identity["Arn"] == f"arn:aws:sts::{ACCOUNT}:assumed-role/lemi-deployer/{ROLE_SESSION_NAME}"
        assert ROLE_SESSION_NAME == "lemi"
        assert [(c["role_arn"], c["role_session_name"]) for c in assume_role_calls] == [(ROLE, "lemi")]
        # more clients for the same environment (and every check at once) reuse the credentials
        assert await verify_provisioned(aws, "staging", world.files, tag="v1") == []
        ecs = await aws.client("staging", "ecs")
        assert (await ecs.describe_clusters(clusters=[CLUSTER]))["clusters"][0]["status"] == "ACTIVE"
        assert len(assume_role_calls) == 1
        # another role, another account
        other = await (await aws.client("qa", "sts")).get_caller_identity()
        assert other["Arn"] == f"arn:aws:sts::111111111111:assumed-role/lemi-deployer/{ROLE_SESSION_NAME}"
        assert other["Account"] == "111111111111"
        assert len(assume_role_calls) == 2
        # no role_arn: the base credentials, no AssumeRole
        base = await (await aws.client("dev", "sts")).get_caller_identity()
        assert ":assumed-role/" not in base["Arn"]
        assert base["Arn"] == aws_world.client("sts", world.endpoint).get_caller_identity()["Arn"]
        assert len(assume_role_calls) == 2


async def test_clients_are_created_once_even_when_asked_concurrently(moto_reset: str) -> None:
    async with AwsClients(parse_config(LEMI_YML_ROLES)) as aws:
        clients = await asyncio.gather(*(aws.client("staging", "secretsmanager") for _ in range(5)))
        assert len({id(c) for c in clients}) == 1
        assert await aws.client("staging", "secretsmanager") is clients[0]
        assert await aws.client("dev", "secretsmanager") is not clients[0]


async def test_client_config_adaptive_bounded_retries_and_region_per_environment(moto_reset: str) -> None:
    """Adaptive mode: the standard retries, plus a client-side rate that slows down when ECS
    throttles (a push starts the rollouts of every service at once)."""
    async with AwsClients(parse_config(LEMI_YML_ROLES)) as aws:
        for env in ("staging", "dev", "eu"):
            client = await aws.client(env, "ecs")
            retries = client.meta.config.retries
            assert retries["mode"] == "adaptive"
            assert 2 <= retries["total_max_attempts"] <= 10
            assert client.meta.config.connect_timeout and client.meta.config.read_timeout
        assert (await aws.client("dev", "ecs")).meta.region_name == REGION
        eu = await aws.client("eu", "ecs")
        assert eu.meta.region_name == "eu-west-1"


async def test_checks_run_in_the_environment_region(world: aws_world.World) -> None:
    """The world is in us-east-1: from eu-west-1 nothing is there."""
    async with AwsClients(parse_config(LEMI_YML_ROLES)) as aws:
        findings = await verify_provisioned(aws, "eu", aws_world.service_files(), tag="v1")
    missing, *findings = findings  # the eu environment has no environment file: that first, then AWS's
    assert (missing.check, missing.subject) == ("environment file", "deploy/demo-service/environment/eu.yaml")
    assert findings[0] == Finding(
        "cluster",
        CLUSTER,
        f"the ECS cluster of eu is missing in {ACCOUNT}/eu-west-1",
        "check `cluster` for this environment in lemi.yml, or create the cluster in the infra repository",
    )
    assert ("image", SERVICE) in [(f.check, f.subject) for f in findings]
    # the eu environment has no environment file: only the Datadog secret is looked for
    assert [f.subject for f in findings if f.check == "secret"] == ["(datadog api key) (datadog/api-key)"]
    assert f"({ACCOUNT}/eu-west-1)" in findings[1].message


# ---------------------------------------------------------------- the CLI


@pytest.fixture
def checkout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("LEMI_CONFIG", raising=False)
    monkeypatch.delenv("LEMI_DEBUG", raising=False)
    root = make_checkout(tmp_path / "demo-service", "acme/demo-service")
    write(root, "deploy/demo-service/service.yaml", aws_world.SERVICE_YAML)
    write(root, "deploy/demo-service/environment/staging.yaml", STAGING_YAML)
    (tmp_path / "lemi.yml").write_text(aws_world.LEMI_YML, encoding="utf-8")
    monkeypatch.chdir(root)
    return root


def lemi(root: Path, *argv: str) -> int:
    return main(["--config", str(root.parent / "lemi.yml"), *argv])


def test_cli_all_present(world: aws_world.World, checkout: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert lemi(checkout, "verify", "--check", "all", "-e", "staging", "-t", "v1") == 0
    assert capsys.readouterr().out == "ok: demo-service (spec, provisioned) in staging\n"
    assert lemi(checkout, "verify", "--check", "all", "-e", "staging", "-t", "v1", "--output", "json") == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["ok"] is True
    assert doc["environment"] == "staging"
    assert doc["checks"] == ["spec", "provisioned"]
    assert doc["findings"] == [] and doc["problems"] == []


def test_cli_lists_every_problem_in_one_run(
    world: aws_world.World, checkout: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    aws_world.client("secretsmanager", world.endpoint).delete_secret(
        SecretId="demo-service/db-password", ForceDeleteWithoutRecovery=True
    )
    aws_world.client("ssm", world.endpoint).delete_parameter(Name="/demo-service/feature-x")
    world.ecs().delete_service(cluster=CLUSTER, service=SERVICE, force=True)
    write(checkout, "deploy/demo-service/environment/staging.yaml", staging(secrets={
        "DB_PASSWORD": "demo-service/db-password", "DB_USER": "demo-service/db:user::"}))  # fmt: skip
    argv = ("verify", "--check", "provisioned", "-e", "staging", "-t", "v2")
    assert lemi(checkout, *argv) == 1
    captured = capsys.readouterr()
    err = captured.err
    assert captured.out == ""
    assert f"service {SERVICE}: the ECS service {SERVICE!r} is inactive\n    hint: it was deleted" in err
    assert (
        f"secret DB_PASSWORD (demo-service/db-password): the secret does not exist in Secrets Manager ({WHERE})" in err
    )
    assert "secret DB_USER (demo-service/db): the secret's JSON has no key 'user' (keys: password, username)" in err
    assert (
        f"parameter FEATURE_X (/demo-service/feature-x): the parameter does not exist in Parameter Store ({WHERE})"
        in err
    )
    assert f"image {SERVICE}:v2: the image is not in ECR\n    hint: the build may have failed: the build" in err
    assert "commit's checks (did its build fail?)" not in err  # v2 is not a commit SHA: no link
    assert err.count("    hint: ") == 5
    assert err.rstrip().endswith("5 problems found")
    assert "Traceback" not in err
    no_secret_values(captured.out + captured.err)

    assert lemi(checkout, *argv, "--output", "json") == 1
    captured = capsys.readouterr()
    doc = json.loads(captured.out)
    assert doc["ok"] is False and doc["environment"] == "staging"
    assert sorted((f["check"], f["subject"]) for f in doc["findings"]) == [
        ("image", f"{SERVICE}:v2"),
        ("parameter", "FEATURE_X (/demo-service/feature-x)"),
        ("secret", "DB_PASSWORD (demo-service/db-password)"),
        ("secret", "DB_USER (demo-service/db)"),
        ("service", SERVICE),
    ]
    assert all(set(f) == {"check", "subject", "message", "hint"} and f["hint"] for f in doc["findings"])
    no_secret_values(captured.out + captured.err)


def test_cli_wait_image_says_it_waited(
    world: aws_world.World, checkout: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert lemi(checkout, "verify", "--check", "provisioned", "-e", "staging", "-t", "v2", "--wait-image", "0.2") == 1
    err = capsys.readouterr().err
    assert f"image {SERVICE}:v2: the image is not in ECR after waiting 0.2 s" in err
    assert err.rstrip().endswith("1 problem found")


SHA = "0123456789abcdef0123456789abcdef01234567"


def test_cli_image_that_never_arrived_links_the_commits_checks(
    world: aws_world.World, sim: Any, checkout: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The remote origin is git@github.com:acme/demo-service.git: the link is on github.com."""
    checks = f"https://github.com/acme/demo-service/commit/{SHA}/checks"
    assert lemi(checkout, "verify", "--check", "provisioned", "-e", "staging", "-t", SHA) == 1
    err = capsys.readouterr().err
    assert f"image {SERVICE}:{SHA}: the image is not in ECR\n    hint: {BUILD_HINT}\n" in err
    assert f"the commit's checks (did its build fail?): {checks}\n1 problem found" in err

    assert lemi(checkout, "verify", "--check", "provisioned", "-e", "staging", "-t", SHA, "--output", "json") == 1
    doc = json.loads(capsys.readouterr().out)
    assert doc["build_checks"] == checks
    assert doc["findings"] == [{"check": "image", "subject": f"{SERVICE}:{SHA}", "message": "the image is not in ECR",
                                "hint": BUILD_HINT}]  # fmt: skip

    revisions = world.ecs().list_task_definitions(familyPrefix="demo-service-staging")["taskDefinitionArns"]
    assert lemi(checkout, "deploy", "-e", "staging", "-t", SHA, "--poll", "0.01", "--timeout", "5") == 1
    err = capsys.readouterr().err
    assert f"hint: {BUILD_HINT}\nthe commit's checks (did its build fail?): {checks}\n" in err
    assert err.rstrip().endswith("1 problem found; nothing was deployed")
    assert world.ecs().list_task_definitions(familyPrefix="demo-service-staging")["taskDefinitionArns"] == revisions
    assert sim.updates == 0


@pytest.mark.parametrize(
    ("remote", "checks"),
    [
        ("https://ghe.example.com/acme/demo-service.git", f"https://ghe.example.com/acme/demo-service/commit/{SHA}/checks"),
        ("ssh://git@ghe.example.com:2222/acme/demo-service", f"https://ghe.example.com/acme/demo-service/commit/{SHA}/checks"),
    ],
)  # fmt: skip
def test_cli_links_the_checks_on_the_remotes_github(
    world: aws_world.World, checkout: Path, capsys: pytest.CaptureFixture[str], remote: str, checks: str
) -> None:
    subprocess.run(["git", "-C", str(checkout), "remote", "set-url", "origin", remote], check=True)
    assert lemi(checkout, "verify", "--check", "provisioned", "-e", "staging", "-t", SHA) == 1
    assert f"the commit's checks (did its build fail?): {checks}\n" in capsys.readouterr().err


def test_cli_without_a_remote_gives_the_hint_without_a_link(
    world: aws_world.World, checkout: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    subprocess.run(["git", "-C", str(checkout), "remote", "remove", "origin"], check=True)
    argv = ("verify", "--check", "provisioned", "-e", "staging", "-t", SHA, "--repo", "acme/demo-service")
    assert lemi(checkout, *argv) == 1
    err = capsys.readouterr().err
    assert f"hint: {BUILD_HINT}\n1 problem found" in err
    assert "commit's checks (did" not in err and "https://" not in err


def test_cli_without_lemi_yml_names_the_path(checkout: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["verify", "--check", "provisioned", "-t", "v1"]) == 1
    err = capsys.readouterr().err
    assert re.search(r"^lemi\.yml(:\d+:\d+)?: lemi\.yml not found$", err, re.M), err
    assert "hint: run `lemi config pull --from OWNER/INFRA` to fetch the infra repository's lemi.yml" in err
    assert "or point LEMI_CONFIG or --config at one" in err
    assert "Traceback" not in err
    missing = checkout.parent / "nowhere" / "lemi.yml"
    assert main(["--config", str(missing), "verify", "--check", "all"]) == 1
    err = capsys.readouterr().err
    assert f"{missing}:" in err and "lemi.yml not found" in err
    # the spec check alone does not need lemi.yml
    assert main(["verify", "--check", "spec"]) == 0


PROD_FIRST = f"""\
infra:
  repository: acme/infra
domain: lemon
environments:
  prod:
    branch: main
    region: {REGION}
    account_id: "{ACCOUNT}"
    cluster: prod-cluster
    protected: true
  staging:
    branch: develop
    region: {REGION}
    account_id: "{ACCOUNT}"
    cluster: {CLUSTER}
"""


def test_cli_never_picks_a_protected_environment_by_default(
    world: aws_world.World, checkout: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = checkout.parent / "lemi.yml"
    config.write_text(PROD_FIRST, encoding="utf-8")
    assert lemi(checkout, "verify", "--check", "provisioned", "-t", "v1", "--output", "json") == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["ok"] is True and doc["environment"] == "staging"
    # named explicitly, prod is checked (and its cluster does not exist)
    assert lemi(checkout, "verify", "--check", "provisioned", "-e", "prod", "-t", "v1") == 1
    assert f"cluster prod-cluster: the ECS cluster of prod is missing in {WHERE}" in capsys.readouterr().err
    # every environment protected: nothing is chosen
    config.write_text(PROD_FIRST.split("  staging:")[0], encoding="utf-8")
    assert lemi(checkout, "verify", "--check", "provisioned", "-t", "v1") == 2
    assert "every environment is protected; name one with -e (prod)" in capsys.readouterr().err


def test_cli_verify_and_deploy_refuse_a_name_lemi_yml_does_not_allow(
    world: aws_world.World, sim: Any, checkout: Path, looked_up: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    (checkout.parent / "lemi.yml").write_text(aws_world.LEMI_YML + REFERENCES, encoding="utf-8")
    aws_world.client("secretsmanager", world.endpoint).create_secret(Name="other-team/token", SecretString="t0ken")
    write(checkout, "deploy/demo-service/environment/staging.yaml", staging(secrets={
        "DB_PASSWORD": "demo-service/db-password", "TOKEN": "other-team/token"}))  # fmt: skip
    refusal = (
        "secret TOKEN (other-team/token): lemi.yml does not allow demo-service to reference this secret "
        "(allowed: demo-service/*)\n    hint: use a secret whose name matches an allowed pattern"
    )
    assert lemi(checkout, "verify", "--check", "provisioned", "-e", "staging", "-t", "v1") == 1
    captured = capsys.readouterr()
    assert refusal in captured.err and captured.err.rstrip().endswith("1 problem found")
    assert lemi(checkout, "verify", "--check", "all", "-e", "staging", "--output", "json") == 1
    doc = json.loads(capsys.readouterr().out)
    assert doc["ok"] is False
    assert [(f["check"], f["subject"]) for f in doc["findings"]] == [("secret", "TOKEN (other-team/token)")]
    assert "references.secrets in lemi.yml" in doc["findings"][0]["hint"]

    revisions = world.ecs().list_task_definitions(familyPrefix="demo-service-staging")["taskDefinitionArns"]
    assert lemi(checkout, "deploy", "-e", "staging", "-t", "v1", "--poll", "0.01", "--timeout", "5") == 1
    captured = capsys.readouterr()
    assert refusal in captured.err and "1 problem found; nothing was deployed" in captured.err
    assert world.ecs().list_task_definitions(familyPrefix="demo-service-staging")["taskDefinitionArns"] == revisions
    assert sim.updates == 0
    assert "other-team/token" not in looked_up  # never described nor read, by verify or by the deploy
    no_secret_values(captured.out + captured.err)


def test_cli_verify_and_deploy_refuse_an_environment_without_its_file(
    world: aws_world.World, sim: Any, checkout: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """lemi.yml has staging; the service has no deploy/demo-service/environment/staging.yaml: a
    deploy would run with no variables and no secrets. verify -e and deploy name the file."""
    (checkout / "deploy/demo-service/environment/staging.yaml").unlink()
    path = "deploy/demo-service/environment/staging.yaml"
    missing = f"{path}: the file is missing: lemi.yml has the environment 'staging'"
    hint = f"    hint: create {path} (an empty `variables: {{}}` will do"
    assert lemi(checkout, "verify", "--check", "provisioned", "-e", "staging", "-t", "v1") == 1
    err = capsys.readouterr().err
    assert f"environment file {missing}" in err and hint in err, err
    assert lemi(checkout, "verify", "--check", "spec", "-e", "staging") == 1  # the spec check, for that environment
    err = capsys.readouterr().err
    assert f"{path}:1:1: the file is missing" in err and hint in err, err
    assert lemi(checkout, "verify", "--check", "spec") == 0  # no environment named: the files present are valid
    capsys.readouterr()

    revisions = world.ecs().list_task_definitions(familyPrefix="demo-service-staging")["taskDefinitionArns"]
    assert lemi(checkout, "deploy", "-e", "staging", "-t", "v1", "--poll", "0.01", "--timeout", "5") == 1
    err = capsys.readouterr().err
    assert f"environment file {missing}" in err and "nothing was deployed" in err, err
    assert world.ecs().list_task_definitions(familyPrefix="demo-service-staging")["taskDefinitionArns"] == revisions
    assert sim.updates == 0
