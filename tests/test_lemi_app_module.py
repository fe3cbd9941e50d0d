"""The example Terraform module for lemi itself (examples/terraform/lemi-app) fits lemi.

lemi's replicas share one SQS FIFO queue and one DynamoDB table (``LEMI_QUEUE=sqs://...?dedupe_table=T``,
bot/store/backends.py). These tests parse the module with python-hcl2 and hold it to lemi's code: the
queue is FIFO with a dead-letter queue as its RedrivePolicy; the table's key and TTL attribute are the
ones bot/store writes; the LEMI_QUEUE value it sets opens lemi's SQS queue on that table; the task role
allows exactly the queue policy's calls (found in lemi's source by tools/docs) and README's deployer
policy (deployer-policy.json.tftpl is its copy); the App's key and webhook secret reach the container
from Secrets Manager under the names lemi's settings read; /webhook is routed and /healthz checked.

Where terraform and a local copy of the hashicorp/aws provider are on the machine (as in
tests/test_example_module.py), ``terraform fmt -check``, ``validate`` and ``test`` run too (a mocked
provider: no credentials, no AWS calls); otherwise those are skipped and say why.
"""

from __future__ import annotations

import functools
import json
import re
import shutil
from pathlib import Path
from typing import Any

import hcl2
import pytest
from test_example_module import Terraform, _provider_mirror, clean, expr, unquote

from bot.core.settings import Settings
from bot.store.sqs_queue import SQSQueue
from tools.docs import queue_policy, readme_policy_text

ROOT = Path(__file__).resolve().parent.parent
MODULE = ROOT / "examples" / "terraform" / "lemi-app"
FILES = ("main.tf", "iam.tf", "variables.tf", "outputs.tf", "versions.tf")


@functools.cache
def parsed(name: str) -> dict[str, Any]:
    return hcl2.loads((MODULE / name).read_text())


def resource(rtype: str, name: str) -> dict[str, Any]:
    for file in FILES:
        for item in parsed(file).get("resource", []):
            for t, named in item.items():
                for n, body in named.items():
                    if unquote(t) == rtype and unquote(n) == name:
                        return clean(body)
    raise AssertionError(f"no resource {rtype}.{name} in {MODULE}")


def variables() -> dict[str, dict[str, Any]]:
    return {unquote(k): v for item in parsed("variables.tf")["variable"] for k, v in item.items()}


def source(path: str) -> str:
    return (ROOT / path).read_text()


def test_every_file_is_there_and_parses() -> None:
    for name in (*FILES, "README.md", "deployer-policy.json.tftpl", "tests/lemi_app.tftest.hcl"):
        assert (MODULE / name).is_file(), name
    for path in sorted(MODULE.rglob("*.tf")):
        assert isinstance(hcl2.loads(path.read_text()), dict), path


def test_the_job_queue_is_fifo_with_a_dead_letter_queue() -> None:
    jobs, dead = resource("aws_sqs_queue", "jobs"), resource("aws_sqs_queue", "dead")
    assert jobs["fifo_queue"] is True and dead["fifo_queue"] is True
    assert unquote(jobs["name"]).endswith(".fifo") and unquote(dead["name"]).endswith(".fifo")
    assert jobs["content_based_deduplication"] is False  # lemi sets the deduplication id: the delivery id
    redrive = str(jobs["redrive_policy"])
    assert "deadLetterTargetArn" in redrive and "aws_sqs_queue.dead.arn" in redrive and "maxReceiveCount" in redrive
    # lemi copies a job that failed for good to the queue its RedrivePolicy names
    assert "RedrivePolicy" in source("bot/store/sqs_queue.py")


def test_the_table_has_lemis_key_and_ttl() -> None:
    table = resource("aws_dynamodb_table", "deliveries")
    assert unquote(table["hash_key"]) == "id" and "range_key" not in table
    [attribute] = table["attribute"]
    assert (unquote(attribute["name"]), unquote(attribute["type"])) == ("id", "S")
    [ttl] = table["ttl"]
    assert unquote(ttl["attribute_name"]) == "expires" and ttl["enabled"] is True
    assert unquote(table["billing_mode"]) == "PAY_PER_REQUEST"
    # what lemi writes there: every item keyed by the string id, delivery ids expiring on `expires`
    store = source("bot/store/sqs_queue.py")
    assert '"id": {"S": job.dedupe_id}' in store and '"expires": {"N":' in store
    assert '{"id": {"S": f"lock#' in source("bot/store/locks.py")
    assert '{"id": {"S": f"watch#' in source("bot/store/dynamo_watches.py")


def test_lemi_queue_opens_lemis_sqs_queue_on_the_table() -> None:
    [locals_block] = [clean(item) for item in parsed("main.tf")["locals"]]
    template = unquote(locals_block["lemi_queue"])
    assert template == "sqs://${aws_sqs_queue.jobs.url}?dedupe_table=${aws_dynamodb_table.deliveries.name}"
    url = "https://sqs.us-east-1.amazonaws.com/111111111111/lemi.fifo"
    queue = SQSQueue(template.replace("${aws_sqs_queue.jobs.url}", url).replace(
        "${aws_dynamodb_table.deliveries.name}", "lemi-deliveries"))  # fmt: skip
    assert (queue.queue_url, queue.dedupe_table) == (url, "lemi-deliveries")


def container() -> str:
    return str(resource("aws_ecs_task_definition", "this")["container_definitions"])


def test_the_apps_secrets_come_from_secrets_manager_under_lemis_names() -> None:
    aliases = {str(f.validation_alias) for f in Settings.model_fields.values()}
    text = container()
    for env, secret in (("GITHUB_APP_PRIVATE_KEY", "private_key"), ("GITHUB_WEBHOOK_SECRET", "webhook_secret")):
        assert env in aliases, f"lemi's settings no longer read {env}"
        assert f'{{name = "{env}", valueFrom = aws_secretsmanager_secret.{secret}.arn}}' in text, env
        resource("aws_secretsmanager_secret", secret)
    assert "secret_string" not in str(parsed("main.tf")), "the values are put out of band, never in the state"
    execution = str(resource("aws_iam_role_policy", "execution_secrets")["policy"])
    assert "secretsmanager:GetSecretValue" in execution
    assert (
        "aws_secretsmanager_secret.private_key.arn" in execution
        and "aws_secretsmanager_secret.webhook_secret.arn" in execution
    )
    for name in ("GITHUB_APP_ID", "LEMI_QUEUE", "LEMI_CONFIG", "LEMI_LEASE_SECONDS", "LEMI_WORKERS", "GITHUB_API_URL"):
        assert name in aliases and name in text, name


def test_the_task_role_allows_the_queue_policy_of_lemis_source() -> None:
    policy = str(resource("aws_iam_role_policy", "queue")["policy"])
    granted = set(re.findall(r'"((?:sqs|dynamodb):\w+)"', policy))
    wanted = {a for st in queue_policy()["Statement"] for a in st["Action"]}
    assert granted == wanted, f"the task role grants {sorted(granted ^ wanted)} differently from lemi's calls"
    for arn in ("aws_sqs_queue.jobs.arn", "aws_sqs_queue.dead.arn", "aws_dynamodb_table.deliveries.arn"):
        assert arn in policy


def test_the_deployer_policy_is_readmes() -> None:
    template = (MODULE / "deployer-policy.json.tftpl").read_text()
    rendered = template.replace("${cluster_arns}", json.dumps("arn:aws:ecs:*:111111111111:cluster/lemon-ecs-cluster"))
    rendered = rendered.replace("${account_id}", "111111111111")
    assert "${" not in rendered
    assert json.loads(rendered) == json.loads(readme_policy_text(source("README.md"))), (
        "deployer-policy.json.tftpl is not README.md's Deployer IAM policy: copy it again"
    )
    deployer = resource("aws_iam_role_policy", "deployer")
    assert "deployer-policy.json.tftpl" in str(deployer["policy"])
    assert "aws_iam_role.task.id" in str(deployer["role"])


def test_webhook_rule_health_check_and_service() -> None:
    rule = resource("aws_lb_listener_rule", "webhook")
    paths = [[unquote(v) for v in p["values"]] for c in rule["condition"] for p in c.get("path_pattern", [])]
    assert paths == [["/webhook"]]
    group = resource("aws_lb_target_group", "this")
    [check] = group["health_check"]
    assert unquote(check["path"]) == "/healthz" and unquote(check["matcher"]) == "200"
    service = resource("aws_ecs_service", "this")
    [lb] = service["load_balancer"]
    assert expr(lb["container_port"]) == "local.port" and unquote(service["launch_type"]) == "FARGATE"
    assert "/healthz" in container() and "stopTimeout" in container()


def test_a_secret_cannot_be_passed_as_a_plain_variable() -> None:
    [validation] = variables()["environment"]["validation"]
    pattern = re.search(r'regex\("([^"]+)"', str(validation["condition"]))
    assert pattern
    for name in ("GITHUB_WEBHOOK_SECRET", "GITHUB_APP_PRIVATE_KEY"):
        assert re.search(pattern.group(1), name)
    assert not re.search(pattern.group(1), "LEMI_REDELIVER_INTERVAL_SECONDS")


# ---------------------------------------------------------------------------
# terraform itself, where it can run without the network
# ---------------------------------------------------------------------------


def test_terraform_fmt_validate_and_test(tmp_path: Path) -> None:
    binary = shutil.which("terraform")
    if binary is None:
        pytest.skip("no terraform binary (not a Debian package; its prebuilt download is not reachable here)")
    mirror = _provider_mirror()
    if mirror is None:
        pytest.skip("no local copy of the hashicorp/aws provider, and registry.terraform.io is not reachable")
    terraform = Terraform(binary, mirror, tmp_path)
    module = tmp_path / "lemi-app"
    shutil.copytree(MODULE, module, ignore=shutil.ignore_patterns(".terraform*", "*.tfstate*"))
    terraform("fmt", "-check", "-recursive", "-diff", cwd=module)
    terraform("init", "-backend=false", "-input=false", cwd=module)
    assert "Success! The configuration is valid." in terraform("validate", cwd=module)
    out = terraform("test", cwd=module)
    assert re.search(r"Success! 4 passed, 0 failed", out), out
