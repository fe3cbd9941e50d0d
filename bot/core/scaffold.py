"""``lemi service new``: the files a new service starts with, all from ``templates/``.

:func:`scaffold` is pure (values in, ``{path: text}`` out); :func:`plan` and
:func:`write` are the small disk edge the CLI uses. A file that exists and
differs is kept unless ``force`` is given; ``force`` rewrites the generated
files (workflows, schemas) but never the developer's own, under ``deploy/``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from bot.core import fargate
from bot.core.config import Config
from bot.core.conventions import ECR_PUSH_ROLE, METRICS_PATH, PORT, ecr_push_role_arn
from bot.core.names import ECR_REPO_RE, OWNER_RE, service_name_problem
from bot.core.schema import schema_for
from bot.core.spec import MAX_DESIRED_COUNT
from bot.core.templating import render

SCHEMA_DIR = ".lemi/schema"
SERVICE_SCHEMA = f"{SCHEMA_DIR}/service.schema.json"
ENVIRONMENT_SCHEMA = f"{SCHEMA_DIR}/environment.schema.json"
# the environments and their branches when there is no lemi.yml (`lemi service new` in a fresh repository)
DEFAULT_BRANCHES = {"staging": "develop", "prod": "main"}
DEFAULT_TEST_COMMAND = "make test"
MAX_TEST_COMMAND = 200
# files the developer owns once written: `--force` never rewrites them
DEVELOPER_DIR = "deploy/"


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
    test_command: str = DEFAULT_TEST_COMMAND,
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
    problem = _test_command_problem(test_command)
    if problem:
        raise ScaffoldError("--test-command", problem)

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
    files[".github/workflows/test.yaml"] = render(
        "workflows/test.yaml.j2", environments=envs, test_command=test_command.strip()
    )
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


def contract(service: str, test_command: str = DEFAULT_TEST_COMMAND) -> str:
    """What lemi expects of a service it deploys: the text ``lemi service new`` ends with."""
    return render(
        "service/contract.txt.j2", name=service, test_command=test_command.strip(), port=PORT, metrics_path=METRICS_PATH
    )


def _test_command_problem(command: str) -> str | None:
    if not command.strip():
        return "give the command that runs the service's tests, e.g. 'make test'"
    if len(command) > MAX_TEST_COMMAND or any(not c.isprintable() for c in command):
        return f"must be one line of at most {MAX_TEST_COMMAND} printable characters, e.g. 'make test'"
    return None


# what `lemi service new` did with each file
WRITTEN, UNCHANGED, KEPT, REWRITTEN = "written", "unchanged", "kept", "rewritten"


@dataclass(frozen=True)
class Step:
    path: str
    action: str  # WRITTEN | UNCHANGED | KEPT | REWRITTEN
    why: str = ""  # for KEPT: why, and what to do


@dataclass
class Plan:
    steps: list[Step] = field(default_factory=list)

    def paths(self, action: str) -> list[str]:
        return [s.path for s in self.steps if s.action == action]


def plan(root: Path, files: dict[str, str], *, force: bool) -> Plan:
    """What to do with each file: write a missing one, keep an identical one, and one that
    differs: keep it, unless ``force`` (then rewrite it, if lemi generates it)."""
    result = Plan()
    for rel, text in files.items():
        path = root / rel
        if not path.exists():
            step = Step(rel, WRITTEN)
        elif path.is_file() and path.read_text(encoding="utf-8", errors="replace") == text:
            step = Step(rel, UNCHANGED)
        elif not path.is_file():
            step = Step(rel, KEPT, "exists and is not a file; move it away to have lemi write it")
        elif rel.startswith(DEVELOPER_DIR):
            step = Step(rel, KEPT, "exists; it is yours: --force never rewrites files under deploy/")
        elif force:
            step = Step(rel, REWRITTEN)
        else:
            step = Step(rel, KEPT, "exists and differs; use --force to rewrite it")
        result.steps.append(step)
    return result


def write(root: Path, files: dict[str, str], the_plan: Plan) -> None:
    for step in the_plan.steps:
        if step.action in (WRITTEN, REWRITTEN):
            path = root / step.path
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(files[step.path], encoding="utf-8")
