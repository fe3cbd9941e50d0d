"""`lemi deploy --task-definition FILE -e ENV`: the checks of a tag deploy, before anything is registered.

The file must be the environment's (family, container, roles, image registry,
secret ARNs, DD_ENV, log group: bot/taskdef.py, pure), and AWS must have what
it names (service ACTIVE, image tag in ECR, every secret and parameter).
Anything wrong exits 1 listing every finding, in text and JSON, and nothing is
registered: the family gets no new revision and UpdateService is never called.
A file that passes deploys with the task count of the service's environment
file. In the test lemi.yml, staging and prod share one account and region, so
only the environment's own names tell a staging file from a prod one.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aws_world
import ecs_sim
import pytest
from aws_world import ACCOUNT, CLUSTER, REGION, SERVICE
from checkout import make_checkout, write

from bot.cli import main
from bot.core.compile import compile_for
from bot.core.config import parse_config
from bot.core.taskdef import check_task_definition

pytestmark = pytest.mark.usefixtures("shared_api_models")

STAGING_FAMILY, PROD_FAMILY = f"{SERVICE}-staging", f"{SERVICE}-prod"
SM = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:"


@pytest.fixture
def checkout(world: aws_world.World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("LEMI_CONFIG", raising=False)
    monkeypatch.delenv("LEMI_DEBUG", raising=False)
    root = make_checkout(tmp_path / "demo-service", "acme/demo-service")
    write(root, "deploy/demo-service/service.yaml", aws_world.SERVICE_YAML)
    write(root, "deploy/demo-service/environment/staging.yaml", aws_world.STAGING_YAML)
    write(tmp_path, "lemi.yml", aws_world.LEMI_YML)
    monkeypatch.chdir(root)
    return root


def lemi(*argv: str) -> int:
    return main(["--config", str(Path.cwd().parent / "lemi.yml"), *argv])


def revisions(world: aws_world.World, family: str) -> list[str]:
    return world.ecs().list_task_definitions(familyPrefix=family)["taskDefinitionArns"]


def compiled(world: aws_world.World, env: str, tag: str) -> dict[str, Any]:
    return compile_for(world.config, world.files, env, tag).task_definition


def save(checkout: Path, document: dict[str, Any]) -> str:
    write(checkout, "td.json", json.dumps(document))
    return "td.json"


def refused(
    world: aws_world.World, sim: ecs_sim.Sim, capsys: pytest.CaptureFixture[str], file: str, env: str = "staging"
) -> tuple[str, list[dict[str, str]]]:
    """Deploy ``file`` (text, then JSON): both exit 1 and register nothing. Returns the text and the findings."""
    before = {family: revisions(world, family) for family in (STAGING_FAMILY, PROD_FAMILY)}
    assert lemi("deploy", "-e", env, "--task-definition", file, "--poll", "0.01", "--timeout", "5") == 1
    out, err = capsys.readouterr()
    assert out == "" and "Traceback" not in err
    assert (
        lemi("deploy", "-e", env, "--task-definition", file, "--poll", "0.01", "--timeout", "5", "--output", "json")
        == 1
    )
    doc = json.loads(capsys.readouterr().out)
    assert doc["ok"] is False and doc["environment"] == env and doc["service"] == SERVICE
    assert all(set(f) == {"check", "subject", "message", "hint"} and f["hint"] for f in doc["findings"])
    assert err.rstrip().endswith(f"{len(doc['findings'])} problem{'s' if len(doc['findings']) > 1 else ''} found; "
                                 "nothing was deployed")  # fmt: skip
    assert {family: revisions(world, family) for family in (STAGING_FAMILY, PROD_FAMILY)} == before
    assert sim.updates == 0
    return err, doc["findings"]


def pairs(findings: list[dict[str, str]]) -> list[tuple[str, str]]:
    return [(f["check"], f["subject"]) for f in findings]


# ---- refused -------------------------------------------------------------------------------


def test_a_staging_file_sent_to_prod_is_refused(
    world: aws_world.World, sim: ecs_sim.Sim, checkout: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert lemi("compile", "-e", "staging", "-t", "v1", "-o", "td.json") == 0  # v1 is in ECR; same account
    capsys.readouterr()
    err, findings = refused(world, sim, capsys, "td.json", env="prod")
    assert pairs(findings) == [
        ("family", STAGING_FAMILY),
        ("role", "executionRoleArn"),
        ("role", "taskRoleArn"),
        ("variable", f"{SERVICE} DD_ENV"),
        ("variable", "datadog-agent DD_ENV"),
        ("log group", "datadog-agent /ecs/demo-service-staging"),
        ("log group", "log-router /ecs/demo-service-staging"),
    ]
    assert f"family {STAGING_FAMILY}: is not '{PROD_FAMILY}', the family of {SERVICE} in prod" in err
    assert (f"role executionRoleArn: is 'arn:aws:iam::{ACCOUNT}:role/{SERVICE}-staging-execution', "
            f"not prod's execution role arn:aws:iam::{ACCOUNT}:role/{SERVICE}-prod-execution") in err  # fmt: skip
    assert f"hint: deploy a file compiled for prod (lemi compile -s {SERVICE} -e prod -t <tag> -o FILE)" in err


def test_an_image_tag_not_in_ecr_is_refused(
    world: aws_world.World, sim: ecs_sim.Sim, checkout: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    err, findings = refused(world, sim, capsys, save(checkout, compiled(world, "staging", "v9")))
    assert pairs(findings) == [("image", f"{SERVICE}:v9")]
    assert f"image {SERVICE}:v9: the image is not in ECR" in err


def test_an_image_of_another_registry_is_refused(
    world: aws_world.World, sim: ecs_sim.Sim, checkout: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    document = compiled(world, "staging", "v1")
    document["containerDefinitions"][0]["image"] = f"999999999999.dkr.ecr.{REGION}.amazonaws.com/{SERVICE}:v1"
    err, findings = refused(world, sim, capsys, save(checkout, document))
    assert pairs(findings) == [("image", f"999999999999.dkr.ecr.{REGION}.amazonaws.com/{SERVICE}:v1")]
    assert f"the image is not a tagged image of staging's ECR ({ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/" in err


def test_a_secret_that_does_not_exist_is_refused(
    world: aws_world.World, sim: ecs_sim.Sim, checkout: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    file = save(checkout, compiled(world, "staging", "v1"))
    aws_world.client("secretsmanager", world.endpoint).delete_secret(
        SecretId="demo-service/db-password", ForceDeleteWithoutRecovery=True
    )
    aws_world.client("ssm", world.endpoint).delete_parameter(Name="/demo-service/feature-x")
    err, findings = refused(world, sim, capsys, file)
    assert pairs(findings) == [
        ("secret", f"DB_PASSWORD ({SM}demo-service/db-password)"),
        ("parameter", f"FEATURE_X (arn:aws:ssm:{REGION}:{ACCOUNT}:parameter/demo-service/feature-x)"),
    ]
    assert f"the secret does not exist in Secrets Manager ({ACCOUNT}/{REGION})" in err


def test_secrets_outside_the_environment_or_not_arns_are_refused(
    world: aws_world.World, sim: ecs_sim.Sim, checkout: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    document = compiled(world, "staging", "v1")
    app = document["containerDefinitions"][0]
    elsewhere = f"arn:aws:secretsmanager:eu-west-1:{ACCOUNT}:secret:demo-service/db-password"
    app["secrets"] = [
        {"name": "DB_PASSWORD", "valueFrom": elsewhere},
        {"name": "BARE", "valueFrom": "demo-service/db-password"},
        {"name": "OTHER", "valueFrom": f"arn:aws:ssm:{REGION}:999999999999:parameter/demo-service/feature-x"},
    ]
    err, findings = refused(world, sim, capsys, save(checkout, document))
    assert pairs(findings) == [
        ("secret", f"DB_PASSWORD ({elsewhere})"),
        ("secret", "BARE (demo-service/db-password)"),
        ("parameter", f"OTHER (arn:aws:ssm:{REGION}:999999999999:parameter/demo-service/feature-x)"),
    ]
    assert f"the ARN points outside staging: region eu-west-1 (not {REGION})" in err
    assert "is not a Secrets Manager or SSM parameter ARN" in err
    assert f"account 999999999999 (not {ACCOUNT})" in err


def test_a_wrong_family_or_a_missing_container_is_refused(
    world: aws_world.World, sim: ecs_sim.Sim, checkout: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    document = compiled(world, "staging", "v1")
    document["family"] = "billing-staging"
    _, findings = refused(world, sim, capsys, save(checkout, document))
    assert pairs(findings) == [("family", "billing-staging")]
    assert revisions(world, "billing-staging") == []

    document = compiled(world, "staging", "v1")
    document["containerDefinitions"][0]["name"] = "app"
    err, findings = refused(world, sim, capsys, save(checkout, document))
    assert pairs(findings) == [("container", SERVICE)]
    assert f"the task definition has no container named '{SERVICE}' (containers: app, datadog-agent, log-router)" in err


def test_references_of_lemi_yml_apply_to_the_file_and_the_datadog_key_is_exempt(
    world: aws_world.World, sim: ecs_sim.Sim, checkout: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (checkout.parent / "lemi.yml").write_text(aws_world.LEMI_YML + 'references:\n  secrets: ["{service}/db"]\n',
                                              encoding="utf-8")  # fmt: skip
    err, findings = refused(world, sim, capsys, save(checkout, compiled(world, "staging", "v1")))
    assert pairs(findings) == [("secret", f"DB_PASSWORD ({SM}demo-service/db-password)")]  # not datadog/api-key
    assert "lemi.yml does not allow demo-service to reference this secret (allowed: demo-service/db)" in err


def test_invalid_service_files_are_reported_and_nothing_is_deployed(
    world: aws_world.World, sim: ecs_sim.Sim, checkout: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    aws_world.push_image(world.endpoint, "v2")
    file = save(checkout, compiled(world, "staging", "v2"))
    write(checkout, "deploy/demo-service/environment/staging.yaml", "desiredCount: many\n")
    assert lemi("deploy", "-e", "staging", "--task-definition", file, "--poll", "0.01", "--timeout", "5") == 1
    err = capsys.readouterr().err
    assert "deploy/demo-service/environment/staging.yaml:1:15: desiredCount:" in err
    assert revisions(world, STAGING_FAMILY) == [world.first_revision] and sim.updates == 0


# ---- accepted ------------------------------------------------------------------------------


def test_a_good_file_deploys_with_the_environment_files_desired_count(
    world: aws_world.World, sim: ecs_sim.Sim, checkout: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sim.complete(after=2)
    aws_world.push_image(world.endpoint, "v2")
    write(checkout, "deploy/demo-service/environment/staging.yaml", aws_world.STAGING_YAML + "desiredCount: 3\n")
    assert lemi("compile", "-e", "staging", "-t", "v2", "-o", "td.json") == 0
    capsys.readouterr()
    assert lemi("deploy", "-e", "staging", "--task-definition", "td.json", "--poll", "0.01", "--timeout", "5") == 0
    out = capsys.readouterr().out
    assert f"deployed {SERVICE} to staging: {STAGING_FAMILY}:2, 3/3 tasks running" in out
    service = world.ecs().describe_services(cluster=CLUSTER, services=[SERVICE])["services"][0]
    assert service["desiredCount"] == 3  # the world's service runs 2
    assert service["taskDefinition"].endswith(f":task-definition/{STAGING_FAMILY}:2")


# ---- the pure check ------------------------------------------------------------------------


def test_a_file_compiled_for_the_environment_has_no_finding_and_names_what_aws_must_confirm(
    world: aws_world.World,
) -> None:
    checked = check_task_definition(compiled(world, "staging", "v1"), world.config, "staging", SERVICE)
    assert checked.findings == []
    assert checked.image == (SERVICE, "v1")
    assert {k: v.secret for k, v in checked.secrets.items()} == {
        "DB_PASSWORD": f"{SM}demo-service/db-password",
        "DB_USER": f"{SM}demo-service/db",
        f"{SERVICE} log apikey, datadog-agent DD_API_KEY": f"{SM}datadog/api-key",  # one secret, checked once
    }
    assert checked.secrets["DB_USER"].json_key == "username"
    assert [r.parameter for r in checked.parameters.values()] == [
        f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter/demo-service/feature-x"
    ]


@pytest.mark.parametrize(
    ("edit", "finding"),
    [
        (lambda d: d.pop("executionRoleArn"), ("role", "executionRoleArn")),
        (lambda d: d.update(containerDefinitions="x"), ("container", "containerDefinitions")),
        (lambda d: d["containerDefinitions"][0].update(image=f"{SERVICE}:v1"), ("image", f"{SERVICE}:v1")),
        (lambda d: d["containerDefinitions"][0].update(
            image=f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/{SERVICE}@sha256:{'a' * 64}"),
         ("image", f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/{SERVICE}@sha256:{'a' * 64}")),
        (lambda d: d["containerDefinitions"][2]["logConfiguration"]["options"].update({"awslogs-region": "eu-west-1"}),
         ("log group", "log-router /ecs/demo-service-staging")),
        (lambda d: d["containerDefinitions"][0]["secrets"].append({"name": "X"}), ("secret", "X")),
    ],
)  # fmt: skip
def test_each_rule_alone(world: aws_world.World, edit: Any, finding: tuple[str, str]) -> None:
    document = compiled(world, "staging", "v1")
    edit(document)
    checked = check_task_definition(document, world.config, "staging", SERVICE)
    assert [(f.check, f.subject) for f in checked.findings] == [finding]
    assert all(f.message and f.hint for f in checked.findings)


def test_a_log_group_that_is_not_lemis_convention_is_left_alone(world: aws_world.World) -> None:
    document = compiled(world, "staging", "v1")
    document["containerDefinitions"][1]["logConfiguration"]["options"]["awslogs-group"] = "team-logs"
    assert check_task_definition(document, world.config, "staging", SERVICE).findings == []


def test_a_datadog_key_given_by_arn_in_lemi_yml_is_exempt(world: aws_world.World) -> None:
    key = "arn:aws:secretsmanager:us-east-1:999999999999:secret:infra/datadog"  # the infra team's own account
    config = parse_config(aws_world.LEMI_YML + f"datadog:\n  api_key_secret: {key}\nreferences:\n  secrets: []\n"
                          "  parameters: []\n")  # fmt: skip
    document = compile_for(config, world.files, "staging", "v1").task_definition
    checked = check_task_definition(document, config, "staging", SERVICE)
    assert [(f.check, f.subject.split(" (")[0]) for f in checked.findings] == [
        ("secret", "DB_PASSWORD"), ("secret", "DB_USER"), ("parameter", "FEATURE_X")]  # fmt: skip
    assert [r.secret for r in checked.secrets.values()] == [key]


# ---- logs to CloudWatch ----------------------------------------------------------------------

CLOUDWATCH_YML = aws_world.LEMI_YML.replace(
    f"    cluster: {CLUSTER}\n", f"    cluster: {CLUSTER}\n    logs: cloudwatch\n"
)


def cloudwatch_checkout(checkout: Path) -> None:
    write(checkout.parent, "lemi.yml", CLOUDWATCH_YML)


def test_a_file_compiled_for_cloudwatch_logs_deploys(
    world: aws_world.World, sim: ecs_sim.Sim, checkout: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cloudwatch_checkout(checkout)
    assert lemi("compile", "-e", "staging", "-t", "v1", "-o", "td.json") == 0
    document = json.loads((checkout / "td.json").read_text())
    app = document["containerDefinitions"][0]
    assert app["logConfiguration"]["options"]["awslogs-group"] == "/ecs/demo-service-staging"
    assert [c["name"] for c in document["containerDefinitions"]] == [SERVICE, "datadog-agent"]
    capsys.readouterr()
    sim.complete(after=1)
    assert lemi("deploy", "-e", "staging", "--task-definition", "td.json", "--poll", "0.01", "--timeout", "5") == 0
    assert len(revisions(world, STAGING_FAMILY)) == 2 and sim.updates == 1


def test_a_file_writing_to_another_services_log_group_is_refused(
    world: aws_world.World, sim: ecs_sim.Sim, checkout: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cloudwatch_checkout(checkout)
    config = parse_config(CLOUDWATCH_YML)
    document = compile_for(config, world.files, "staging", "v1").task_definition
    document["containerDefinitions"][0]["logConfiguration"]["options"]["awslogs-group"] = "/ecs/payments-staging"
    err, findings = refused(world, sim, capsys, save(checkout, document))
    assert pairs(findings) == [("log group", f"{SERVICE} /ecs/payments-staging")]
    assert (f"{SERVICE}'s logConfiguration.options.awslogs-group is not staging's log group "
            f"/ecs/{SERVICE}-staging") in err  # fmt: skip
    assert "belongs to one service in one environment" in err
    assert f"hint: deploy a file compiled for staging (lemi compile -s {SERVICE} -e staging" in err


@pytest.mark.parametrize(
    ("edit", "subject", "needle"),
    [
        (lambda o: o.update({"awslogs-group": f"/ecs/{SERVICE}-prod"}), f"{SERVICE} /ecs/{SERVICE}-prod",
         "is not staging's log group"),
        (lambda o: o.update({"awslogs-region": "eu-west-1"}), f"{SERVICE} /ecs/{SERVICE}-staging", "eu-west-1"),
        (lambda o: o.update({"awslogs-stream-prefix": "app"}), f"{SERVICE} /ecs/{SERVICE}-staging",
         f"awslogs-stream-prefix is 'app', not '{SERVICE}'"),
        (lambda o: o.pop("awslogs-stream-prefix"), f"{SERVICE} /ecs/{SERVICE}-staging",
         "awslogs-stream-prefix is missing"),
    ],
)  # fmt: skip
def test_the_service_containers_cloudwatch_logs_are_checked(
    world: aws_world.World, edit: Any, subject: str, needle: str
) -> None:
    config = parse_config(CLOUDWATCH_YML)
    document = compile_for(config, world.files, "staging", "v1").task_definition
    assert check_task_definition(document, config, "staging", SERVICE).findings == []
    edit(document["containerDefinitions"][0]["logConfiguration"]["options"])
    findings = check_task_definition(document, config, "staging", SERVICE).findings
    assert [(f.check, f.subject) for f in findings] == [("log group", subject)]
    assert needle in findings[0].message and findings[0].hint
