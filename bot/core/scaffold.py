"""``lemi service new``: the files a new service starts with, all from ``templates/``.

:func:`scaffold` is pure (values in, ``{path: text}`` out); :func:`plan` and
:func:`write` are the small disk edge the CLI uses. Nothing existing is
overwritten unless ``force`` is given, and nothing at all is written when any
file would be.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from bot.core import fargate
from bot.core.config import Config
from bot.core.conventions import ECR_PUSH_ROLE, ecr_push_role_arn
from bot.core.names import ECR_REPO_RE, OWNER_RE, service_name_problem
from bot.core.schema import schema_for
from bot.core.spec import MAX_DESIRED_COUNT
from bot.core.templating import render

SCHEMA_DIR = ".lemi/schema"
SERVICE_SCHEMA = f"{SCHEMA_DIR}/service.schema.json"
ENVIRONMENT_SCHEMA = f"{SCHEMA_DIR}/environment.schema.json"
# the environments and their branches when there is no lemi.yml (`lemi service new` in a fresh repository)
DEFAULT_BRANCHES = {"staging": "develop", "prod": "main"}


class ScaffoldError(ValueError):
    """A value given to ``service new`` that cannot make a valid service."""

    def __init__(self, option: str, message: str) -> None:
        super().__init__(f"{option}: {message}")
        self.option = option
        self.message = message


@dataclass(frozen=True)
class _Env:
    name: str
    branch: str
    region: str
    role: str


def _environments(config: Config | None) -> list[_Env]:
    if config is None:  # no lemi.yml: staging and prod, AWS details from repository variables
        return [
            _Env(
                name,
                branch,
                "${{ vars.LEMI_" + name.upper() + "_REGION }}",
                "arn:aws:iam::${{ vars.LEMI_" + name.upper() + "_ACCOUNT_ID }}:role/" + ECR_PUSH_ROLE,
            )
            for name, branch in DEFAULT_BRANCHES.items()
        ]
    return [_Env(n, e.branch, e.region, ecr_push_role_arn(e)) for n, e in config.environments.items()]


def scaffold(
    *,
    service: str,
    owner: str,
    cpu: int,
    memory: int,
    desired_count: int,
    image: str | None = None,
    repository: str | None = None,
    config: Config | None = None,
) -> dict[str, str]:
    """Every file of a new service, keyed by its path in the repository."""
    problem = service_name_problem(service, repository)
    if problem:
        raise ScaffoldError("--service", problem)
    if not OWNER_RE.fullmatch(owner):
        raise ScaffoldError("--owner", f"{owner!r} is not a valid team slug (lowercase letters, digits, - and _)")
    if cpu not in fargate.FARGATE_PAIRS:
        raise ScaffoldError(
            "--cpu", f"{cpu} is not a Fargate CPU size; use one of {', '.join(map(str, fargate.CPU_VALUES))}"
        )
    if not fargate.is_valid(cpu, memory):
        raise ScaffoldError("--memory", f"with --cpu {cpu}, memory must be {fargate.describe_memory(cpu)}")
    if not 0 <= desired_count <= MAX_DESIRED_COUNT:
        raise ScaffoldError("--desired-count", f"must be between 0 and {MAX_DESIRED_COUNT}")
    image = image or service
    if not ECR_REPO_RE.fullmatch(image):
        raise ScaffoldError("--image", f"{image!r} is not a valid ECR repository name")

    values = dict(name=service, owner=owner, cpu=cpu, memory=memory, desired_count=desired_count, image=image)
    envs = _environments(config)
    base = f"deploy/{service}"
    files = {
        f"{base}/service.yaml": render("service/service.yaml.j2", schema=_relative(base, SERVICE_SCHEMA), **values),
    }
    for env in envs:
        files[f"{base}/environment/{env.name}.yaml"] = render(
            "service/environment.yaml.j2",
            schema=_relative(f"{base}/environment", ENVIRONMENT_SCHEMA),
            env=env.name,
            **values,
        )
    files[".github/workflows/test.yaml"] = render("workflows/test.yaml.j2", environments=envs)
    files[f".github/workflows/build-{service}.yaml"] = render(
        "workflows/build.yaml.j2", environments=envs, push_role=ECR_PUSH_ROLE, **values
    )
    files[SERVICE_SCHEMA] = _json(schema_for("service"))
    files[ENVIRONMENT_SCHEMA] = _json(schema_for("environment"))
    return files


def _relative(from_dir: str, target: str) -> str:
    return os.path.relpath(target, from_dir)


def _json(value: object) -> str:
    return json.dumps(value, indent=2, sort_keys=True) + "\n"


@dataclass
class Plan:
    create: list[str] = field(default_factory=list)
    overwrite: list[str] = field(default_factory=list)  # differs, and --force given
    unchanged: list[str] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)  # differs, no --force


def plan(root: Path, files: dict[str, str], *, force: bool) -> Plan:
    result = Plan()
    for rel, text in files.items():
        path = root / rel
        if not path.exists():
            result.create.append(rel)
        elif path.is_file() and path.read_text(encoding="utf-8", errors="replace") == text:
            result.unchanged.append(rel)
        elif force and path.is_file():
            result.overwrite.append(rel)
        else:
            result.conflicts.append(rel)
    return result


def write(root: Path, files: dict[str, str], the_plan: Plan) -> None:
    for rel in the_plan.create + the_plan.overwrite:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(files[rel], encoding="utf-8")
