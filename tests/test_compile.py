"""The task definition compiler: golden files, determinism, overrides, AWS acceptance, `lemi compile`.

Golden files: tests/golden/<case>.json hold the exact bytes of
``Compiled.render()`` for each case in CASES. A change to the compiled output
fails here on purpose. To accept a deliberate change, regenerate them and
review the diff before committing it:

    LEMI_UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/test_compile.py -q
    git diff tests/golden/

A new case gets its golden file the same way. test_conventions re-checks the
conventions of the README ("Conventions lemi enforces") on every case, so a regenerated golden cannot quietly
drift away from them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import boto3
import botocore.session
import pytest
from botocore.exceptions import ParamValidationError
from botocore.validate import validate_parameters
from checkout import LEMI_YML as CHECKOUT_LEMI_YML
from checkout import make_checkout, write

from bot.cli import main
from bot.core.compile import Compiled, compile_for, compile_service, render
from bot.core.config import parse_config
from bot.core.problems import Invalid
from bot.core.spec import ServiceFiles, parse_environment, parse_service

GOLDEN = Path(__file__).parent / "golden"
UPDATE = os.environ.get("LEMI_UPDATE_GOLDEN") == "1"

REPOSITORY = "acme/demo-service"
TAG = "4f1c2d9e8b7a6f5e4d3c2b1a0f9e8d7c6b5a4f3e"  # a commit SHA, as the build workflow tags images
OTHER_TAG = "0a1b2c3d4e5f60718293a4b5c6d7e8f901234567"

# the README's lemi.yml, plus an environment in the China partition and one that logs to CloudWatch
LEMI_YML = (
    CHECKOUT_LEMI_YML
    + """\
  china:
    branch: china
    region: cn-north-1
    account_id: "333333333333"
    cluster: lemon-ecs-cluster
  sandbox:
    branch: sandbox
    region: eu-west-1
    account_id: "444444444444"
    cluster: lemon-ecs-cluster
    logs: cloudwatch
"""
)
CONFIG = parse_config(LEMI_YML)

MINIMAL_SERVICE = """\
name: demo-service
owner: infra
spec:
  resource:
    cpu: 256
    memory: 512
"""

# the README's service.yaml
EXAMPLE_SERVICE = """\
name: demo-service          # must match the repo name (or <repo>-<suffix>)
owner: infra                # team; used for cost/ownership tags
spec:
  desiredCount: 1
  image: demo-service       # ECR repository name
  resource:
    cpu: 512                # must be a valid Fargate cpu/memory pair
    memory: 1024
"""

# the README's environment file, with every kind of reference
EXAMPLE_STAGING = """\
variables:                  # plain environment variables
  LOG_LEVEL: info
  APP_MODE: api
  CACHE_TTL_SECONDS: "300"
secrets:                    # env var -> AWS Secrets Manager secret name or ARN
  DB_PASSWORD: demo-service/db-password
  DB_USER: "demo-service/db-credentials:username::"
  STRIPE_API_KEY: arn:aws:secretsmanager:us-east-1:111111111111:secret:shared/stripe-AbCdEf
parameters:                 # env var -> SSM Parameter Store name or ARN
  FEATURE_X: /demo-service/feature-x
  FEATURE_Y: feature-y
  SHARED_FLAG: arn:aws:ssm:us-east-1:111111111111:parameter/shared/flag
desiredCount: 3             # optional per-environment override
resource: {cpu: 1024, memory: 2048}   # optional per-environment override
"""

# the same settings, sections and keys in another order
EXAMPLE_STAGING_REORDERED = """\
resource:
  memory: 2048
  cpu: 1024
parameters:
  SHARED_FLAG: arn:aws:ssm:us-east-1:111111111111:parameter/shared/flag
  FEATURE_Y: feature-y
  FEATURE_X: /demo-service/feature-x
desiredCount: 3
secrets:
  STRIPE_API_KEY: arn:aws:secretsmanager:us-east-1:111111111111:secret:shared/stripe-AbCdEf
  DB_USER: "demo-service/db-credentials:username::"
  DB_PASSWORD: demo-service/db-password
variables:
  CACHE_TTL_SECONDS: "300"
  APP_MODE: api
  LOG_LEVEL: info
"""

# no overrides: desiredCount and resource come from service.yaml
EXAMPLE_PROD = """\
variables:
  LOG_LEVEL: warn
secrets:
  DB_PASSWORD: demo-service/db-password
"""

EXAMPLE_CHINA = """\
variables:
  LOG_LEVEL: info
secrets:
  DB_PASSWORD: "demo-service/db-credentials:password::"
parameters:
  FEATURE_X: /demo-service/feature-x
"""

WORKER_SERVICE = """\
name: demo-service-worker
owner: payments
spec:
  desiredCount: 2
  image: demo-service/worker
  resource:
    cpu: 256
    memory: 1024
"""

WORKER_STAGING = """\
variables:
  QUEUE_NAME: demo-jobs
secrets:
  DB_PASSWORD: demo-service/db-password
"""


@dataclass(frozen=True)
class Case:
    service: str  # service.yaml
    env: str
    env_file: str  # environment/<env>.yaml
    # expected, independently of the golden file
    name: str
    image: str
    desired_count: int
    cpu: int
    memory: int


CASES = {
    "minimal-staging": Case(MINIMAL_SERVICE, "staging", "", "demo-service", "demo-service", 1, 256, 512),
    "design-staging": Case(EXAMPLE_SERVICE, "staging", EXAMPLE_STAGING, "demo-service", "demo-service", 3, 1024, 2048),
    "design-prod": Case(EXAMPLE_SERVICE, "prod", EXAMPLE_PROD, "demo-service", "demo-service", 1, 512, 1024),
    "design-china": Case(EXAMPLE_SERVICE, "china", EXAMPLE_CHINA, "demo-service", "demo-service", 1, 512, 1024),
    "design-cloudwatch": Case(EXAMPLE_SERVICE, "sandbox", EXAMPLE_PROD, "demo-service", "demo-service", 1, 512, 1024),
    "worker-staging": Case(
        WORKER_SERVICE, "staging", WORKER_STAGING, "demo-service-worker", "demo-service/worker", 2, 256, 1024
    ),
}
case_names = pytest.mark.parametrize("case_name", sorted(CASES))


def service_files(service: str, environments: dict[str, str]) -> ServiceFiles:
    spec = parse_service(service, "service.yaml", repository=REPOSITORY)
    return ServiceFiles(spec, {env: parse_environment(text, f"{env}.yaml") for env, text in environments.items()})


def compile_case(case: Case, tag: str = TAG, env_file: str | None = None) -> Compiled:
    files = service_files(case.service, {case.env: case.env_file if env_file is None else env_file})
    return compile_for(CONFIG, files, case.env, tag)


def golden_path(case_name: str) -> Path:
    return GOLDEN / f"{case_name}.json"


def golden_bytes(case_name: str) -> bytes:
    path = golden_path(case_name)
    if not path.exists():
        pytest.fail(f"{path} is missing: run with LEMI_UPDATE_GOLDEN=1, then review it")
    return path.read_bytes()


def containers(td: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in td["containerDefinitions"]}


def pairs(items: list[dict[str, str]], value: str = "value") -> dict[str, str]:
    return {item["name"]: item[value] for item in items}


def strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield k
            yield from strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from strings(v)


def leaves(value: Any, path: tuple[Any, ...] = ()) -> dict[tuple[Any, ...], Any]:
    if isinstance(value, dict):
        return {p: v for k, item in value.items() for p, v in leaves(item, path + (k,)).items()}
    if isinstance(value, list):
        return {p: v for i, item in enumerate(value) for p, v in leaves(item, path + (i,)).items()}
    return {path: value}


# --- golden files ---------------------------------------------------------------------------------


@case_names
def test_golden(case_name: str) -> None:
    text = compile_case(CASES[case_name]).render()
    path = golden_path(case_name)
    if UPDATE:
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(text.encode("utf-8"))
    expected = golden_bytes(case_name)
    assert text == expected.decode("utf-8")  # readable diff
    assert text.encode("utf-8") == expected  # exact bytes


@case_names
def test_conventions(case_name: str) -> None:
    """The README's conventions for a compiled task definition, checked on the output itself."""
    case = CASES[case_name]
    env = CONFIG.environment(case.env)
    part, suffix = ("aws-cn", "amazonaws.com.cn") if env.region.startswith("cn-") else ("aws", "amazonaws.com")
    compiled = compile_case(case)
    td = compiled.task_definition
    name, acct = case.name, env.account_id

    assert td["family"] == f"{name}-{case.env}"
    assert td["requiresCompatibilities"] == ["FARGATE"]
    assert td["networkMode"] == "awsvpc"
    assert (td["cpu"], td["memory"]) == (str(case.cpu), str(case.memory))
    assert td["executionRoleArn"] == f"arn:{part}:iam::{acct}:role/{name}-{case.env}-execution"
    assert td["taskRoleArn"] == f"arn:{part}:iam::{acct}:role/{name}-{case.env}-task"
    assert {t["key"]: t["value"] for t in td["tags"]} == {
        "service": name,
        "owner": parse_service(case.service, "s.yaml").owner,
        "environment": case.env,
        "managed-by": "lemi",
    }

    by_name = containers(td)
    assert td["containerDefinitions"][0]["name"] == name
    app = by_name[name]
    image = f"{acct}.dkr.ecr.{env.region}.{suffix}/{case.image}:{TAG}"
    assert app["image"] == image == compiled.image
    assert compiled.desired_count == case.desired_count
    assert app["essential"] is True
    assert {"containerPort": 8080, "hostPort": 8080, "protocol": "tcp"} in app["portMappings"]
    names = [v["name"] for v in app["environment"]]
    assert names == sorted(names)
    assert pairs(app["environment"])["DD_VERSION"] == TAG
    assert pairs(app["environment"])["DD_SERVICE"] == name
    assert pairs(app["environment"])["DD_ENV"] == case.env
    secret_names = [s["name"] for s in app["secrets"]]
    assert secret_names == sorted(secret_names)
    for value_from in pairs(app["secrets"], "valueFrom").values():
        assert value_from.startswith((f"arn:{part}:secretsmanager:", f"arn:{part}:ssm:")), value_from

    # the Datadog agent sidecar, and labels that point it at :8080/metrics
    assert "datadog-agent" in by_name
    labels = app["dockerLabels"]
    checks = json.loads(labels["com.datadoghq.ad.checks"])
    (instance,) = checks["openmetrics"]["instances"]
    assert instance["openmetrics_endpoint"] == "http://%%host%%:8080/metrics"
    assert labels["com.datadoghq.tags.service"] == name
    assert labels["com.datadoghq.tags.env"] == case.env
    assert labels["com.datadoghq.tags.version"] == TAG

    # every ARN lemi builds is in the region's partition; every AWS host in its DNS suffix
    for text in strings(td):
        if text.startswith("arn:"):
            assert text.startswith(f"arn:{part}:"), text
        if ".amazonaws.com" in text:
            assert f".{env.region}.{suffix}/" in text, text


def test_design_references() -> None:
    """Secrets by name, with a JSON key and by ARN; parameters with and without a slash and by ARN."""
    app = containers(compile_case(CASES["design-staging"]).task_definition)["demo-service"]
    assert pairs(app["secrets"], "valueFrom") == {
        "DB_PASSWORD": "arn:aws:secretsmanager:us-east-1:111111111111:secret:demo-service/db-password",
        "DB_USER": "arn:aws:secretsmanager:us-east-1:111111111111:secret:demo-service/db-credentials:username::",
        "STRIPE_API_KEY": "arn:aws:secretsmanager:us-east-1:111111111111:secret:shared/stripe-AbCdEf",
        "FEATURE_X": "arn:aws:ssm:us-east-1:111111111111:parameter/demo-service/feature-x",
        "FEATURE_Y": "arn:aws:ssm:us-east-1:111111111111:parameter/feature-y",
        "SHARED_FLAG": "arn:aws:ssm:us-east-1:111111111111:parameter/shared/flag",
    }
    assert pairs(app["environment"]) == {
        "APP_MODE": "api",
        "CACHE_TTL_SECONDS": "300",
        "DD_ENV": "staging",
        "DD_SERVICE": "demo-service",
        "DD_VERSION": TAG,
        "LOG_LEVEL": "info",
    }


def test_china_partition() -> None:
    td = compile_case(CASES["design-china"]).task_definition
    app = containers(td)["demo-service"]
    assert app["image"] == f"333333333333.dkr.ecr.cn-north-1.amazonaws.com.cn/demo-service:{TAG}"
    assert td["executionRoleArn"] == "arn:aws-cn:iam::333333333333:role/demo-service-china-execution"
    assert pairs(app["secrets"], "valueFrom") == {
        "DB_PASSWORD": "arn:aws-cn:secretsmanager:cn-north-1:333333333333:secret:demo-service/db-credentials:password::",
        "FEATURE_X": "arn:aws-cn:ssm:cn-north-1:333333333333:parameter/demo-service/feature-x",
    }
    api_key = app["logConfiguration"]["secretOptions"][0]["valueFrom"]
    assert api_key == "arn:aws-cn:secretsmanager:cn-north-1:333333333333:secret:datadog/api-key"


def test_cloudwatch_logs_go_to_the_services_log_group_without_a_log_router() -> None:
    td = compile_case(CASES["design-cloudwatch"]).task_definition
    by_name = containers(td)
    assert list(by_name) == ["demo-service", "datadog-agent"]  # no FireLens log router
    app = by_name["demo-service"]
    assert "dependsOn" not in app
    assert app["logConfiguration"] == {
        "logDriver": "awslogs",
        "options": {
            "awslogs-group": "/ecs/demo-service-sandbox",
            "awslogs-region": "eu-west-1",
            "awslogs-stream-prefix": "demo-service",
        },
    }
    # the agent stays, for traces and metrics, with the Datadog API key; it logs to the same group
    agent = by_name["datadog-agent"]
    assert pairs(agent["secrets"], "valueFrom") == {
        "DD_API_KEY": "arn:aws:secretsmanager:eu-west-1:444444444444:secret:datadog/api-key"
    }
    assert agent["logConfiguration"]["options"]["awslogs-group"] == "/ecs/demo-service-sandbox"
    assert "com.datadoghq.ad.checks" in app["dockerLabels"]


def test_datadog_is_the_default_destination_of_logs() -> None:
    assert CONFIG.environment("staging").logs == "datadog"
    app = containers(compile_case(CASES["design-prod"]).task_definition)["demo-service"]
    assert app["logConfiguration"]["logDriver"] == "awsfirelens"
    assert app["dependsOn"] == [{"containerName": "log-router", "condition": "START"}]


# --- determinism ----------------------------------------------------------------------------------


def test_compiling_twice_is_byte_identical() -> None:
    case = CASES["design-staging"]
    assert compile_case(case).render() == compile_case(case).render()


def test_key_order_in_the_environment_file_does_not_matter() -> None:
    case = CASES["design-staging"]
    assert compile_case(case, env_file=EXAMPLE_STAGING_REORDERED).render() == compile_case(case).render()


_COMPILE_IN_A_CHILD = """\
import json, sys
from bot.core.compile import compile_for
from bot.core.config import parse_config
from bot.core.problems import Invalid
from bot.core.spec import ServiceFiles, parse_environment, parse_service
d = json.load(sys.stdin)
files = ServiceFiles(parse_service(d["service"], "s.yaml"), {d["env"]: parse_environment(d["env_file"], "e.yaml")})
sys.stdout.write(compile_for(parse_config(d["config"]), files, d["env"], d["tag"]).render())
"""


def test_output_does_not_depend_on_hash_seed() -> None:
    """Another interpreter, other string hashes: the same bytes as the golden file."""
    case = CASES["design-staging"]
    stdin = json.dumps(
        {"service": case.service, "env": case.env, "env_file": case.env_file, "config": LEMI_YML, "tag": TAG}
    )
    for seed in ("1", "4242"):
        done = subprocess.run(
            [sys.executable, "-c", _COMPILE_IN_A_CHILD],
            input=stdin.encode(),
            capture_output=True,
            env={**os.environ, "PYTHONHASHSEED": seed},
            check=True,
            timeout=60,
        )
        assert done.stdout == golden_bytes("design-staging")


def test_another_tag_changes_only_image_version_and_labels() -> None:
    case = CASES["design-staging"]
    before = compile_case(case).task_definition
    after = compile_case(case, tag=OTHER_TAG).task_definition
    old, new = leaves(before), leaves(after)
    assert old.keys() == new.keys()
    changed = {path for path in old if old[path] != new[path]}

    def env_index(container: int) -> int:
        names = [v["name"] for v in before["containerDefinitions"][container]["environment"]]
        return names.index("DD_VERSION")

    app = ("containerDefinitions", 0)
    agent = ("containerDefinitions", 1)
    assert before["containerDefinitions"][1]["name"] == "datadog-agent"
    assert changed == {
        app + ("image",),
        app + ("environment", env_index(0), "value"),
        app + ("dockerLabels", "com.datadoghq.tags.version"),
        app + ("logConfiguration", "options", "dd_tags"),
        agent + ("environment", env_index(1), "value"),
    }
    assert json.loads(render(before).replace(TAG, OTHER_TAG)) == after


# --- overrides ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("env_file", "desired_count", "cpu", "memory"),
    [
        ("", 1, 512, 1024),
        ("variables: {LOG_LEVEL: info}", 1, 512, 1024),
        ("desiredCount: 3", 3, 512, 1024),
        ("desiredCount: 0", 0, 512, 1024),  # 0 is an override, not "unset"
        ("resource: {cpu: 1024, memory: 2048}", 1, 1024, 2048),
        ("desiredCount: 5\nresource: {cpu: 256, memory: 512}", 5, 256, 512),
    ],
)
def test_environment_overrides_beat_service_yaml(env_file: str, desired_count: int, cpu: int, memory: int) -> None:
    compiled = compile_case(CASES["design-prod"], env_file=env_file)
    assert compiled.desired_count == desired_count
    assert (compiled.task_definition["cpu"], compiled.task_definition["memory"]) == (str(cpu), str(memory))


def test_environment_without_a_file_uses_service_values() -> None:
    files = service_files(WORKER_SERVICE, {"staging": WORKER_STAGING})
    compiled = compile_for(CONFIG, files, "prod", TAG)
    assert compiled.desired_count == 2
    assert (compiled.task_definition["cpu"], compiled.task_definition["memory"]) == ("256", "1024")
    assert compiled.task_definition["family"] == "demo-service-worker-prod"
    app = containers(compiled.task_definition)["demo-service-worker"]
    assert app["secrets"] == []
    assert pairs(app["environment"]) == {"DD_ENV": "prod", "DD_SERVICE": "demo-service-worker", "DD_VERSION": TAG}


# --- tags -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "tag",
    [
        "",
        "-abc",
        ".abc",
        "a" * 129,
        "with space",
        "v1:2",
        "a/b",
        "caf\u00e9",
        "x\n",
    ],
)
def test_invalid_tag_is_refused(tag: str) -> None:
    case = CASES["minimal-staging"]
    files = service_files(case.service, {})
    with pytest.raises(ValueError, match="not a valid image tag"):
        compile_service(
            files.service, "staging", files.environment("staging"), CONFIG.environment("staging"), CONFIG.datadog, tag
        )


@pytest.mark.parametrize("tag", ["a" * 128, "_x", "v1.2.3-rc.1", "0"])
def test_valid_tags(tag: str) -> None:
    assert compile_case(CASES["minimal-staging"], tag=tag).image.endswith(f"/demo-service:{tag}")


@pytest.mark.parametrize(
    ("service", "env_file"),
    [
        (EXAMPLE_SERVICE, 'secrets:\n  DB_PASSWORD: "demo-service/db-password\\n"\n'),
        (EXAMPLE_SERVICE, 'parameters:\n  FEATURE_X: "/demo-service/feature-x\\n"\n'),
        (EXAMPLE_SERVICE, 'variables:\n  "LOG_LEVEL\\n": info\n'),
        (EXAMPLE_SERVICE.replace("owner: infra ", 'owner: "infra\\n"'), ""),
        (EXAMPLE_SERVICE.replace("image: demo-service ", 'image: "demo-service\\n"'), ""),
    ],
    ids=["secret", "parameter", "variable-name", "owner", "image"],
)
def test_a_name_with_a_trailing_newline_never_reaches_the_task_definition(service: str, env_file: str) -> None:
    assert "\\n" in service + env_file
    with pytest.raises(Invalid):
        compile_case(replace(CASES["design-prod"], service=service), env_file=env_file)


# --- accepted by AWS ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def register_input_shape() -> Any:
    model = botocore.session.get_session().get_service_model("ecs")
    return model.operation_model("RegisterTaskDefinition").input_shape


@case_names
def test_botocore_accepts_the_input(case_name: str, register_input_shape: Any) -> None:
    validate_parameters(json.loads(compile_case(CASES[case_name]).render()), register_input_shape)


def test_botocore_validation_is_not_a_no_op(register_input_shape: Any) -> None:
    td = json.loads(compile_case(CASES["minimal-staging"]).render())
    td["cpu"] = 256  # a number where ECS wants a string
    with pytest.raises(ParamValidationError):
        validate_parameters(td, register_input_shape)


@case_names
def test_ecs_registers_it(case_name: str, moto_reset: str) -> None:
    case = CASES[case_name]
    region = CONFIG.environment(case.env).region
    ecs = boto3.client("ecs", region_name=region, endpoint_url=moto_reset)
    td = json.loads(compile_case(case).render())

    registered = ecs.register_task_definition(**td)["taskDefinition"]
    assert registered["revision"] == 1
    got = ecs.describe_task_definition(taskDefinition=td["family"], include=["TAGS"])
    described = got["taskDefinition"]
    assert described["family"] == f"{case.name}-{case.env}"
    assert described["revision"] == 1
    assert described["taskDefinitionArn"].endswith(f":task-definition/{case.name}-{case.env}:1")
    sidecars = (
        ["datadog-agent"] if CONFIG.environment(case.env).logs == "cloudwatch" else ["datadog-agent", "log-router"]
    )
    assert [c["name"] for c in described["containerDefinitions"]] == [case.name, *sidecars]
    assert (described["cpu"], described["memory"]) == (str(case.cpu), str(case.memory))
    assert described["networkMode"] == "awsvpc"
    assert described["requiresCompatibilities"] == ["FARGATE"]
    assert (described["executionRoleArn"], described["taskRoleArn"]) == (td["executionRoleArn"], td["taskRoleArn"])
    app = containers(described)[case.name]
    assert app["image"] == td["containerDefinitions"][0]["image"]
    assert app["secrets"] == td["containerDefinitions"][0]["secrets"]
    assert app["environment"] == td["containerDefinitions"][0]["environment"]
    assert app["dockerLabels"] == td["containerDefinitions"][0]["dockerLabels"]
    assert sorted(got["tags"], key=lambda t: t["key"]) == td["tags"]

    again = ecs.register_task_definition(**td)["taskDefinition"]
    assert (again["family"], again["revision"]) == (td["family"], 2)


# --- `lemi compile` -------------------------------------------------------------------------------


@pytest.fixture
def checkout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("LEMI_CONFIG", raising=False)
    monkeypatch.delenv("LEMI_DEBUG", raising=False)
    root = make_checkout(tmp_path / "demo-service", REPOSITORY)
    write(tmp_path, "lemi.yml", LEMI_YML)
    monkeypatch.chdir(root)
    return root


def add_case(root: Path, case: Case) -> None:
    write(root, f"deploy/{case.name}/service.yaml", case.service)
    write(root, f"deploy/{case.name}/environment/{case.env}.yaml", case.env_file)


def lemi(root: Path, *args: str) -> int:
    return main(["--config", str(root.parent / "lemi.yml"), *args])


@case_names
def test_cli_prints_the_golden_bytes(case_name: str, checkout: Path, capsys: pytest.CaptureFixture[str]) -> None:
    case = CASES[case_name]
    add_case(checkout, case)
    code = lemi(checkout, "compile", "-e", case.env, "-t", TAG)
    out, err = capsys.readouterr()
    assert (code, err) == (0, "wrote task-definition.json\n")
    assert out.encode("utf-8") == golden_bytes(case_name)
    assert (checkout / "task-definition.json").read_bytes() == golden_bytes(case_name)


def test_cli_picks_a_service_with_s(checkout: Path, capsys: pytest.CaptureFixture[str]) -> None:
    add_case(checkout, CASES["design-staging"])
    add_case(checkout, CASES["worker-staging"])
    assert lemi(checkout, "compile", "-s", "demo-service-worker", "-e", "staging", "-t", TAG) == 0
    assert capsys.readouterr().out.encode("utf-8") == golden_bytes("worker-staging")
    assert lemi(checkout, "compile", "-e", "staging", "-t", TAG) == 2  # two services: -s is needed
    assert "-s" in capsys.readouterr().err


def test_cli_writes_the_file_with_o(checkout: Path, capsys: pytest.CaptureFixture[str]) -> None:
    add_case(checkout, CASES["design-staging"])
    target = checkout / "task-definition.json"
    assert lemi(checkout, "compile", "-e", "staging", "-t", TAG, "-o", str(target)) == 0
    out, err = capsys.readouterr()
    assert out.encode("utf-8") == golden_bytes("design-staging")  # printed as well
    assert str(target) in err
    assert target.read_bytes() == golden_bytes("design-staging")


def test_cli_unknown_environment(checkout: Path, capsys: pytest.CaptureFixture[str]) -> None:
    add_case(checkout, CASES["design-staging"])
    assert lemi(checkout, "compile", "-e", "qa", "-t", TAG) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert "'qa'" in err
    assert "staging, prod, china, sandbox" in err


def test_cli_bad_tag(checkout: Path, capsys: pytest.CaptureFixture[str]) -> None:
    add_case(checkout, CASES["design-staging"])
    assert lemi(checkout, "compile", "-e", "staging", "-t", "not a tag") == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert "tag" in err


def test_cli_invalid_service_yaml(checkout: Path, capsys: pytest.CaptureFixture[str]) -> None:
    add_case(checkout, CASES["design-staging"])
    write(checkout, "deploy/demo-service/service.yaml", EXAMPLE_SERVICE.replace("cpu: 512 ", "cpu: 300 "))
    assert lemi(checkout, "compile", "-e", "staging", "-t", TAG) == 1
    out, err = capsys.readouterr()
    assert out == ""
    # line 7, column 10: the value of cpu
    assert "deploy/demo-service/service.yaml:7:10: spec.resource.cpu: 300 is not a Fargate CPU size" in err
    assert "hint:" in err


def test_cli_environment_without_a_file(checkout: Path, capsys: pytest.CaptureFixture[str]) -> None:
    add_case(checkout, CASES["minimal-staging"])
    assert lemi(checkout, "compile", "-e", "prod", "-t", TAG) == 0
    td = json.loads(capsys.readouterr().out)
    assert td["family"] == "demo-service-prod"
    assert td["executionRoleArn"] == "arn:aws:iam::222222222222:role/demo-service-prod-execution"


def test_cli_missing_lemi_yml(checkout: Path, capsys: pytest.CaptureFixture[str]) -> None:
    add_case(checkout, CASES["design-staging"])
    missing = checkout.parent / "nowhere" / "lemi.yml"
    assert main(["--config", str(missing), "compile", "-e", "staging", "-t", TAG]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert str(missing) in err
    assert "not found" in err
