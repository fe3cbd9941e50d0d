"""The example Terraform module (examples/terraform/ecs-service) fits the block lemi renders.

lemi's infra PRs hold one module block (bot/terraform.py); the example module
is what such a block can point at. These tests parse the module with
python-hcl2 and hold it to lemi's renderer and conventions: every attribute
lemi renders is a declared variable and nothing else is required; the module's
name rules are lemi's (bot/names.py, bot/fargate.py); the ECS service, roles,
log group, listener rule and tags carry the names lemi derives
(bot/conventions.py). So the module and the renderer cannot drift apart.

Where a ``terraform`` binary and a local copy of the hashicorp/aws provider (a
filesystem mirror, see ``_provider_mirror``) are on the machine, the last tests
also run ``terraform init -backend=false`` + ``terraform validate`` on lemi's
rendered block and ``terraform test`` (a mocked AWS provider: no credentials,
no AWS calls). Providers otherwise come from registry.terraform.io, which the
test machines cannot reach, and Terraform's prebuilt binary is not a Debian
package: without both, those tests are skipped and say why.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import hcl2
import pytest
from aws_world import config

from bot.core import conventions, fargate, names
from bot.core.config import Datadog
from bot.core.spec import ServiceSpec, parse_service
from bot.core.terraform import render_service_module

ROOT = Path(__file__).resolve().parent.parent
MODULE = ROOT / "examples" / "terraform" / "ecs-service"
FILES = ("main.tf", "variables.tf", "outputs.tf", "versions.tf")
SERVICE = "name: demo-service\nowner: infra\nspec: {desiredCount: 3, resource: {cpu: 512, memory: 1024}}\n"
# resources that take no tags
UNTAGGABLE = {"aws_iam_role_policy", "aws_iam_role_policy_attachment", "aws_ecr_lifecycle_policy"}


# ---------------------------------------------------------------------------
# python-hcl2 (8.x) keeps quotes on string literals and block labels, and wraps
# expressions in ${...}; these helpers undo that.
# ---------------------------------------------------------------------------


def unquote(value: Any) -> Any:
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value


def expr(value: Any) -> str:
    """An expression's text without the ${...} wrapper."""
    text = str(value)
    return text[2:-1] if text.startswith("${") and text.endswith("}") else text


def clean(body: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if not k.startswith("__")}


@functools.cache
def parsed(name: str) -> dict[str, Any]:
    return hcl2.loads((MODULE / name).read_text())


def labelled(kind: str) -> dict[str, dict[str, Any]]:
    """``variable "x" {}`` / ``output "x" {}`` blocks of every file, by name."""
    out: dict[str, dict[str, Any]] = {}
    for name in FILES:
        for item in parsed(name).get(kind, []):
            for label, body in item.items():
                out[unquote(label)] = body
    return out


def resources(kind: str = "resource") -> dict[tuple[str, str], dict[str, Any]]:
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for name in FILES:
        for item in parsed(name).get(kind, []):
            for rtype, named in item.items():
                for rname, body in named.items():
                    out[(unquote(rtype), unquote(rname))] = body
    return out


def of_type(rtype: str) -> dict[str, dict[str, Any]]:
    return {name: body for (t, name), body in resources().items() if t == rtype}


def locals_() -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in FILES:
        for item in parsed(name).get("locals", []):
            out.update(clean(item))
    return out


def fill(template: Any, **values: str) -> str:
    """A string template with ${var.name}, ${each.key}... replaced; nothing may be left."""
    text = unquote(template)
    for ref, value in values.items():
        text = text.replace("${" + ref.replace("__", ".") + "}", value)
    assert "${" not in text, f"unresolved reference in {template!r}"
    return text


def hcl_unescape(text: str) -> str:
    return re.sub(r"\\(.)", lambda m: {"n": "\n", "t": "\t"}.get(m.group(1), m.group(1)), text)


def regexes(condition: str) -> list[re.Pattern[str]]:
    """The patterns of every regex("...", ...) call in a condition, as Python regexes."""
    found = re.findall(r'regex\("((?:[^"\\]|\\.)*)"', condition)
    return [re.compile(hcl_unescape(p), re.ASCII) for p in found]


def length_bounds(condition: str) -> tuple[int, int]:
    low = [int(n) for n in re.findall(r"length\([\w.]+\) >= (\d+)", condition)]
    high = [int(n) for n in re.findall(r"length\([\w.]+\) <= (\d+)", condition)]
    return (max(low, default=0), min(high, default=10**9))


def module_rule(variable: str, index: int = 0):  # type: ignore[no-untyped-def]
    """The module's rule for a string variable: its validation's regex and length limits."""
    validations = labelled("variable")[variable]["validation"]
    condition = next(str(v["condition"]) for v in validations if "regex(" in str(v["condition"]))
    pattern = regexes(condition)[index]
    low, high = length_bounds(condition)
    return lambda value: bool(pattern.fullmatch(value)) and low <= len(value) <= high


@functools.cache
def rendered() -> dict[str, Any]:
    """The attributes of the module block lemi renders for a sample service."""
    service = parse_service(SERVICE, "deploy/demo-service/service.yaml", repository="acme/demo-service")
    text = render_service_module(service, config(), repository="acme/demo-service", pull_request=12)
    [module] = hcl2.loads(text)["module"]
    [body] = module.values()
    return clean(body)


# ---------------------------------------------------------------------------
# the files
# ---------------------------------------------------------------------------


def test_every_file_is_there_and_parses() -> None:
    for name in (*FILES, "README.md"):
        assert (MODULE / name).is_file(), name
    for path in sorted(MODULE.rglob("*.tf")):
        assert isinstance(hcl2.loads(path.read_text()), dict), path


def test_the_aws_provider_is_version_5_or_later() -> None:
    [terraform] = parsed("versions.tf")["terraform"]
    [providers] = terraform["required_providers"]
    aws = providers["aws"]
    assert unquote(aws["source"]) == "hashicorp/aws"
    version = unquote(aws["version"])
    major = re.fullmatch(r">= ?(\d+)(?:\.\d+)*", version)
    assert major and int(major.group(1)) >= 5, version


# ---------------------------------------------------------------------------
# the contract: lemi's block
# ---------------------------------------------------------------------------


def test_every_attribute_lemi_renders_is_a_variable() -> None:
    attributes = set(rendered()) - {"source"}
    assert attributes == {
        "name", "owner", "repository", "image", "cpu", "memory", "desired_count", "environments", "domain",
    }  # fmt: skip
    missing = attributes - set(labelled("variable"))
    assert not missing, f"the module does not declare {sorted(missing)}, which lemi's block sets"


def test_lemis_block_is_enough_to_call_the_module() -> None:
    required = {name for name, body in labelled("variable").items() if "default" not in body}
    assert required <= set(rendered()), (
        f"required variables lemi's block cannot set: {sorted(required - set(rendered()))}"
    )
    assert "platform" not in required  # the infra team sets its default once (README.md)


def test_lemis_rendered_values_pass_the_modules_validations() -> None:
    values = {k: unquote(v) for k, v in rendered().items()}
    for variable in ("name", "owner", "repository", "image", "domain"):
        assert module_rule(variable)(values[variable]), (variable, values[variable])
    env_rule = module_rule("environments")
    assert values["environments"] and all(env_rule(unquote(e)) for e in values["environments"])
    assert values["cpu"] in fargate.FARGATE_PAIRS and values["memory"] in fargate.FARGATE_PAIRS[values["cpu"]]


SAMPLES = {
    "name": ["demo-service", "a", "a" * 32, "a" * 33, "demo--service", "demo-", "-demo", "Demo", "1demo",
             "demo_service", "d-1", "demo-service-worker", "demo.service", ""],
    "owner": ["infra", "a", "team_a-1", "-infra", "infra-", "Infra", "a" * 64, "a" * 65, "x y", ""],
    "repository": ["acme/demo-service", "Acme/Demo.Service", "acme/", "/demo", "acme/demo/x", "-acme/demo",
                   "a" * 39 + "/x", "a" * 40 + "/x", "acme/" + "r" * 100, "acme/" + "r" * 101, "acme/de mo"],
    "image": ["demo-service", "team/demo-service", "a", "ab", "Demo", "demo--x", "demo__x", "demo-", "a/b/c",
              "demo//x", "x" * 256, "x" * 257, "demo.service_v2"],
    "domain": ["lemon", "example.com", "a-b.example.com", "-lemon", "lemon-", "Lemon", "lemon.", ".lemon",
               "a" * 63, "a" * 64, ".".join(["a" * 60] * 4), "x_y"],
    "environments": ["staging", "prod", "a", "a" * 10, "a" * 11, "Prod", "1prod", "pro-d", ""],
}  # fmt: skip
LEMI_RULES = {
    "name": names.SERVICE_RE,
    "owner": names.OWNER_RE,
    "repository": names.GITHUB_REPO_RE,
    "image": names.ECR_REPO_RE,
    "domain": names.DOMAIN_RE,
    "environments": names.ENV_RE,
}


@pytest.mark.parametrize("variable", sorted(SAMPLES))
def test_name_rules_are_lemis(variable: str) -> None:
    rule = module_rule(variable)
    for sample in SAMPLES[variable]:
        assert rule(sample) == bool(LEMI_RULES[variable].fullmatch(sample)), (variable, sample)


def test_the_service_must_be_named_after_its_repository_as_lemi_says() -> None:
    conditions = [str(v["condition"]) for v in labelled("variable")["name"]["validation"]]
    assert any("var.repository" in c and "startswith(var.name" in c for c in conditions)
    assert names.service_name_problem("demo-service-worker", "acme/demo-service") is None


def test_platform_account_and_region_rules_are_lemis() -> None:
    validations = labelled("variable")["platform"]["validation"]
    condition = next(str(v["condition"]) for v in validations if "regex(" in str(v["condition"]))
    account, region = regexes(condition)
    for sample in ["111111111111", "11111111111", "1111111111111", "x11111111111"]:
        assert bool(account.fullmatch(sample)) == bool(names.AWS_ACCOUNT_RE.fullmatch(sample)), sample
    for sample in ["us-east-1", "eu-west-3", "us-gov-west-1", "cn-north-1", "us-isob-east-1", "useast1", "US-east-1"]:
        assert bool(region.fullmatch(sample)) == bool(names.AWS_REGION_RE.fullmatch(sample)), sample
    coverage = next(str(v["condition"]) for v in validations if "var.environments" in str(v["condition"]))
    assert "contains(keys(var.platform), env)" in coverage


def test_cpu_and_memory_rules_are_lemis_fargate_table() -> None:
    variables = labelled("variable")
    [cpu] = variables["cpu"]["validation"]
    listed = re.search(r"contains\(\[([\d, ]+)\], var\.cpu\)", str(cpu["condition"]))
    assert listed and tuple(int(n) for n in listed.group(1).split(",")) == fargate.CPU_VALUES
    [memory] = variables["memory"]["validation"]
    table: dict[int, tuple[int, ...]] = {}
    for key, value in re.findall(r'"(\d+)" = (\[[^\]]*\]|range\([^)]*\))', str(memory["condition"])):
        if value.startswith("range"):
            start, stop, step = (int(n) for n in re.findall(r"\d+", value))
            table[int(key)] = tuple(range(start, stop, step))
        else:
            table[int(key)] = tuple(int(n) for n in re.findall(r"\d+", value))
    assert table == fargate.FARGATE_PAIRS


def test_desired_count_bounds_are_lemis() -> None:
    [validation] = labelled("variable")["desired_count"]["validation"]
    condition = str(validation["condition"])
    low = int(re.search(r"var\.desired_count >= (\d+)", condition).group(1))  # type: ignore[union-attr]
    high = int(re.search(r"var\.desired_count <= (\d+)", condition).group(1))  # type: ignore[union-attr]
    bounds = {type(m).__name__: m for m in ServiceSpec.model_fields["desired_count"].metadata}
    assert (low, high) == (bounds["Ge"].ge, bounds["Le"].le)


# ---------------------------------------------------------------------------
# what it creates, by lemi's conventions
# ---------------------------------------------------------------------------


def per_environment(body: dict[str, Any]) -> bool:
    return expr(body.get("for_each")) == "local.environments"


def test_environments_are_the_blocks_environments_in_this_account() -> None:
    environments = expr(locals_()["environments"])
    assert environments.startswith("{for env in var.environments : env => var.platform[env] if")
    assert "local.account_id" in environments and "local.region" in environments


def test_ecs_service() -> None:
    [service] = of_type("aws_ecs_service").values()
    assert per_environment(service)
    assert expr(service["name"]) == "var.name"  # the service is <service> ...
    assert expr(service["cluster"]) == "each.value.cluster_arn"  # ... in the environment's cluster
    assert service["enable_execute_command"] is True
    [breaker] = service["deployment_circuit_breaker"]
    assert breaker["enable"] is True and breaker["rollback"] is True
    [lifecycle] = service["lifecycle"]
    ignored = {expr(x) for x in lifecycle["ignore_changes"]}
    assert {"task_definition", "desired_count"} <= ignored
    assert unquote(service["launch_type"]) == "FARGATE"
    [lb] = service["load_balancer"]
    assert expr(lb["container_name"]) == "var.name"  # lemi's container is named <service>
    assert expr(lb["container_port"]) == "local.port" and locals_()["port"] == conventions.PORT


def test_task_definition_family_and_tracking() -> None:
    [task] = of_type("aws_ecs_task_definition").values()
    assert per_environment(task)
    assert fill(task["family"], var__name="demo-service", each__key="staging") == conventions.family(
        "demo-service", "staging"
    )
    assert task["track_latest"] is True  # lemi's revisions are the ones that count
    assert "deployed-at" not in str(task["tags"])  # a placeholder: never a revision to roll back to
    [lifecycle] = task["lifecycle"]
    assert expr(lifecycle["ignore_changes"]) == "all"
    assert "local.port" in str(task["container_definitions"]) and "name = var.name" in str(
        task["container_definitions"]
    )


def test_target_group_and_host_rule() -> None:
    [group] = of_type("aws_lb_target_group").values()
    assert per_environment(group)
    assert expr(group["port"]) == "local.port" and unquote(group["target_type"]) == "ip"
    [check] = group["health_check"]
    assert expr(check["path"]) == "var.health_check_path"
    assert unquote(labelled("variable")["health_check_path"]["default"]) == "/healthz"

    [rule] = of_type("aws_lb_listener_rule").values()
    assert per_environment(rule)
    assert expr(rule["listener_arn"]) == "each.value.listener_arn"
    [action] = rule["action"]
    assert unquote(action["type"]) == "forward" and "aws_lb_target_group.this[each.key]" in str(
        action["target_group_arn"]
    )
    hosts = [h for c in rule["condition"] for h in c.get("host_header", [])]
    [host] = hosts
    [value] = host["values"]
    for env in ("staging", "prod"):
        built = fill(value, var__name="demo-service", each__key=env, var__domain="lemon")
        assert "https://" + built == conventions.internal_url("demo-service", env, "lemon")


def test_roles_are_named_by_lemis_convention() -> None:
    roles = of_type("aws_iam_role")
    env = config().environment("staging")
    named = {}
    for body in roles.values():
        assert per_environment(body)
        named[fill(body["name"], var__name="demo-service", each__key="staging")] = body
    for kind in ("execution", "task"):
        expected = conventions.role_arn("demo-service", "staging", env, kind).rsplit("/", 1)[1]
        assert expected in named, f"no role named like {expected}"
        assert expr(named[expected]["assume_role_policy"]) == "local.ecs_tasks_trust"
    assert "ecs-tasks.amazonaws.com" in str(locals_()["ecs_tasks_trust"])
    scheduler = conventions.scheduler_role_arn("demo-service", "staging", env).rsplit("/", 1)[1]
    assert scheduler in named, f"no role named like {scheduler}"
    trust = str(named[scheduler]["assume_role_policy"])
    assert "scheduler.amazonaws.com" in trust and "aws:SourceAccount" in trust


def test_the_scheduler_role_runs_only_the_services_task_definitions() -> None:
    policies = of_type("aws_iam_role_policy")
    scheduler = next(b for b in policies.values() if "aws_iam_role.scheduler" in str(b["role"]))
    policy = str(scheduler["policy"])
    assert "ecs:RunTask" in policy and "ecs:TagResource" in policy and "iam:PassRole" in policy
    family = "${var.name}-${each.key}"
    assert f":task-definition/{family}:*" in policy
    assert fill(family, var__name="demo-service", each__key="staging") == conventions.family("demo-service", "staging")
    # the roles it passes are the service's own two
    assert "aws_iam_role.execution[each.key].arn" in policy and "aws_iam_role.task[each.key].arn" in policy


def test_the_execution_role_can_pull_log_and_read_secrets() -> None:
    policies = of_type("aws_iam_role_policy")
    execution = next(b for b in policies.values() if "aws_iam_role.execution" in str(b["role"]))
    policy = str(execution["policy"])
    for action in ("ecr:GetAuthorizationToken", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer",
                   "logs:PutLogEvents", "secretsmanager:GetSecretValue", "ssm:GetParameters"):  # fmt: skip
        assert action in policy, action
    # every task definition lemi compiles references the Datadog API key secret
    shared = [unquote(s) for s in labelled("variable")["shared_secret_names"]["default"]]
    assert Datadog().api_key_secret in shared
    task = next(b for b in policies.values() if "aws_iam_role.task" in str(b["role"]))
    assert "ssmmessages:CreateDataChannel" in str(task["policy"])  # ECS Exec


def test_log_group_is_lemis() -> None:
    [group] = of_type("aws_cloudwatch_log_group").values()
    assert per_environment(group)
    assert fill(group["name"], var__name="demo-service", each__key="prod") == conventions.log_group(
        "demo-service", "prod"
    )


def test_security_group_admits_the_load_balancer_on_the_service_port() -> None:
    [group] = of_type("aws_security_group").values()
    assert per_environment(group) and expr(group["vpc_id"]) == "each.value.vpc_id"
    [ingress] = of_type("aws_vpc_security_group_ingress_rule").values()
    assert expr(ingress["referenced_security_group_id"]) == "each.value.load_balancer_security_group_id"
    assert expr(ingress["from_port"]) == expr(ingress["to_port"]) == "local.port"


def test_ecr_repository_is_the_image() -> None:
    [repo] = of_type("aws_ecr_repository").values()
    assert expr(repo["name"]) == "var.image"
    assert "local.create_ecr_repository" in str(repo["count"])


def test_every_resource_carries_lemis_ownership_tags() -> None:
    lemi_tags = {unquote(k): unquote(v) for k, v in locals_()["lemi_tags"].items()}
    assert lemi_tags["managed-by"] == conventions.MANAGED_BY == "lemi"
    assert {expr(lemi_tags["service"]), expr(lemi_tags["owner"])} == {"var.name", "var.owner"}
    assert expr(locals_()["tags"]) == "merge(var.tags, local.lemi_tags)"  # lemi's win over the caller's
    for (rtype, name), body in resources().items():
        if rtype in UNTAGGABLE:
            continue
        tags = str(body.get("tags"))
        assert "local.tags" in tags, f"{rtype}.{name} has no lemi tags"
        if per_environment(body):
            assert '"environment" = each.key' in tags, f"{rtype}.{name} has no environment tag"


# ---------------------------------------------------------------------------
# README: its usage example is lemi's block
# ---------------------------------------------------------------------------


def readme_blocks() -> list[dict[str, Any]]:
    text = (MODULE / "README.md").read_text()
    return [hcl2.loads(block) for block in re.findall(r"```hcl\n(.*?)```", text, re.S)]


def test_readme_examples_parse_and_show_lemis_block() -> None:
    modules = [clean(body) for doc in readme_blocks() for item in doc.get("module", []) for body in item.values()]
    assert modules, "README.md has no module block"
    lemis = {k: v for k, v in rendered().items()}
    assert modules[0] == lemis, "README's first example is not the block lemi renders"
    with_platform = [m for m in modules if "platform" in m]
    assert with_platform and {k: v for k, v in with_platform[0].items() if k != "platform"} == lemis


# ---------------------------------------------------------------------------
# terraform itself, where it can run without the network
# ---------------------------------------------------------------------------


def _provider_mirror() -> Path | None:
    """A filesystem mirror holding hashicorp/aws (registry.terraform.io is not reachable)."""
    candidates = [
        os.environ.get("LEMI_TF_PROVIDER_MIRROR", ""),
        "/opt/tf-plugins",
        str(Path.home() / ".terraform.d" / "plugins"),
        "/usr/local/share/terraform/plugins",
        "/usr/share/terraform/plugins",
    ]
    for candidate in filter(None, candidates):
        aws = Path(candidate) / "registry.terraform.io" / "hashicorp" / "aws"
        if aws.is_dir() and any(aws.iterdir()):
            return Path(candidate)
    return None


class Terraform:
    """Runs terraform offline: providers only from the local mirror, no checkpoint calls."""

    def __init__(self, binary: str, mirror: Path, home: Path) -> None:
        rc = home / "terraformrc"
        rc.write_text(
            "provider_installation {\n  filesystem_mirror {\n"
            f'    path    = "{mirror}"\n    include = ["registry.terraform.io/*/*"]\n  }}\n}}\n'
        )
        self.binary = binary
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("TF_", "AWS_"))}
        self.env.update(
            TF_CLI_CONFIG_FILE=str(rc), TF_IN_AUTOMATION="1", CHECKPOINT_DISABLE="1", AWS_EC2_METADATA_DISABLED="true"
        )

    def __call__(self, *args: str, cwd: Path) -> str:
        done = subprocess.run(
            [self.binary, *args, "-no-color"], cwd=cwd, env=self.env, capture_output=True, text=True, timeout=300
        )
        if done.returncode != 0:
            raise AssertionError(f"terraform {' '.join(args)} failed in {cwd}:\n{done.stdout}\n{done.stderr}")
        return done.stdout


@pytest.fixture(scope="module")
def terraform_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str | BaseException]:
    """Both terraform jobs below, run at once (each is a few seconds of plans): name -> output or error."""
    binary = shutil.which("terraform")
    if binary is None:
        pytest.skip("no terraform binary (not a Debian package; its prebuilt download is not reachable here)")
    mirror = _provider_mirror()
    if mirror is None:
        pytest.skip("no local copy of the hashicorp/aws provider, and registry.terraform.io is not reachable")
    base = tmp_path_factory.mktemp("terraform")
    terraform = Terraform(binary, mirror, base)
    jobs = {"rendered block": _rendered_block_job, "module": _module_job}
    with ThreadPoolExecutor(len(jobs)) as pool:
        futures = {name: pool.submit(job, terraform, base / name.replace(" ", "-")) for name, job in jobs.items()}
    results: dict[str, str | BaseException] = {}
    for name, future in futures.items():
        error = future.exception()
        results[name] = error if error is not None else future.result()
    return results


def _result(runs: dict[str, str | BaseException], name: str) -> str:
    result = runs[name]
    if isinstance(result, BaseException):
        raise result
    return result


def _copy_module(dest: Path) -> Path:
    shutil.copytree(MODULE, dest, ignore=shutil.ignore_patterns(".terraform*", "*.tfstate*"))
    return dest


PLATFORM = """{
    staging = {
      account_id                      = "123456789012"
      region                          = "us-east-1"
      cluster_arn                     = "arn:aws:ecs:us-east-1:123456789012:cluster/lemon-ecs-cluster"
      vpc_id                          = "vpc-0staging"
      subnet_ids                      = ["subnet-0a", "subnet-0b"]
      listener_arn                    = "arn:aws:elasticloadbalancing:us-east-1:123456789012:listener/app/internal/0123456789abcdef/0123456789abcdef"
      load_balancer_security_group_id = "sg-0alb"
    }
    prod = {
      account_id                      = "210987654321"
      region                          = "us-east-1"
      cluster_arn                     = "arn:aws:ecs:us-east-1:210987654321:cluster/lemon-ecs-cluster"
      vpc_id                          = "vpc-0prod"
      subnet_ids                      = ["subnet-0c"]
      listener_arn                    = "arn:aws:elasticloadbalancing:us-east-1:210987654321:listener/app/internal/0123456789abcdef/0123456789abcdef"
      load_balancer_security_group_id = "sg-0albprod"
    }
  }"""

ROOT_TEST = """\
mock_provider "aws" {
  mock_data "aws_caller_identity" {
    defaults = { account_id = "123456789012" }
  }
  mock_data "aws_region" {
    defaults = { name = "us-east-1" }
  }
}

run "lemis_block_plans_in_the_staging_account" {
  command = plan

  assert {
    condition     = module.demo_service.environments == tolist(["staging"]) && module.demo_service.other_environments == tolist(["prod"])
    error_message = "the staging account gets staging only"
  }
  assert {
    condition     = module.demo_service.internal_urls["staging"] == "https://demo-service-internal.staging.lemon"
    error_message = "internal URL"
  }
}
"""


def _rendered_block_job(terraform: Terraform, base: Path) -> str:
    """The infra repository as README.md recommends: the module copied to modules/ecs-service
    with its platform default filled in, and lemi's block, unchanged, in services/demo-service.tf."""
    module = _copy_module(base / "modules" / "ecs-service")
    shutil.rmtree(module / "tests")
    variables = module / "variables.tf"
    text = variables.read_text()
    assert text.count("  default  = {}\n") == 1
    variables.write_text(text.replace("  default  = {}\n", f"  default = {PLATFORM}\n"))

    services = base / "services"
    services.mkdir()
    service = parse_service(SERVICE, "deploy/demo-service/service.yaml", repository="acme/demo-service")
    cfg = config()
    assert cfg.infra.module_source == "../modules/ecs-service"
    (services / "demo-service.tf").write_text(render_service_module(service, cfg, repository="acme/demo-service"))
    (services / "providers.tf").write_text('provider "aws" {\n  region = "us-east-1"\n}\n')
    (services / "tests").mkdir()
    (services / "tests" / "lemi.tftest.hcl").write_text(ROOT_TEST)

    terraform("init", "-backend=false", "-input=false", cwd=services)
    return terraform("validate", cwd=services) + terraform("test", cwd=services)


def _module_job(terraform: Terraform, base: Path) -> str:
    module = _copy_module(base / "ecs-service")
    terraform("fmt", "-check", "-recursive", "-diff", cwd=module)
    terraform("init", "-backend=false", "-input=false", cwd=module)
    return terraform("test", cwd=module)


def test_terraform_validates_and_plans_lemis_rendered_block(terraform_runs: dict[str, str | BaseException]) -> None:
    """`terraform validate`, then a plan (mocked provider) of lemi's block as rendered, with no edit."""
    out = _result(terraform_runs, "rendered block")
    assert "Success! The configuration is valid." in out
    assert "1 passed, 0 failed" in out


def test_terraform_test_and_fmt_of_the_module(terraform_runs: dict[str, str | BaseException]) -> None:
    """examples/terraform/ecs-service/tests/*.tftest.hcl pass, and the files are `terraform fmt` clean."""
    out = _result(terraform_runs, "module")
    assert re.search(r"Success! \d+ passed, 0 failed", out), out
