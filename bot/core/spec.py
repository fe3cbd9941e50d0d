"""The files of a service repository: ``deploy/<service>/service.yaml`` and
``deploy/<service>/environment/<env>.yaml``.

Models, loading with positioned errors, and the merge of a service with one
environment into the effective settings the compiler uses. Pure: callers
pass file contents in (the CLI reads the disk, the App reads GitHub).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import AfterValidator, Field, ValidationInfo, field_validator, model_validator

from bot.core import fargate
from bot.core.names import ECR_REPO_RE, ENV_RE, ENV_VAR_RE, OWNER_RE, SERVICE_RE, did_you_mean, service_name_problem
from bot.core.problems import Invalid, Problem
from bot.core.refs import BadReference, ParameterRef, SecretRef, parse_parameter, parse_secret
from bot.core.tasks import MAX_SCHEDULES, MAX_TASKS, NAMES_SCHEMA, Command, Schedule, TaskName, task_references
from bot.core.validation import StrictModel, fail, validate
from bot.core.yamlsafe import load

SERVICE_FILE = "service.yaml"
ENVIRONMENT_DIR = "environment"

# set by lemi on the service container (Datadog unified service tagging)
RESERVED_VARIABLES = frozenset({"DD_SERVICE", "DD_ENV", "DD_VERSION"})
RESERVED_PREFIXES = ("AWS_CONTAINER_", "ECS_CONTAINER_")


def _env_var_name(name: str) -> str:
    if not ENV_VAR_RE.fullmatch(name):
        raise fail(
            f"{name!r} is not a valid environment variable name",
            "use letters, digits and underscores, not starting with a digit, e.g. LOG_LEVEL",
        )
    if name in RESERVED_VARIABLES or name.startswith(RESERVED_PREFIXES):
        raise fail(f"{name!r} is set by lemi or ECS and cannot be overridden", "choose another name")
    return name


def _secret(text: str) -> str:
    try:
        parse_secret(text)
    except BadReference as exc:
        raise fail(exc.message, exc.hint) from None
    return text


def _parameter(text: str) -> str:
    try:
        parse_parameter(text)
    except BadReference as exc:
        raise fail(exc.message, exc.hint) from None
    return text


def _plain_value(text: str) -> str:
    if "\x00" in text:
        raise fail("the value contains a NUL character", "remove it")
    return text


EnvVarName = Annotated[str, AfterValidator(_env_var_name)]
SecretText = Annotated[str, AfterValidator(_secret)]
ParameterText = Annotated[str, AfterValidator(_parameter)]
PlainValue = Annotated[str, AfterValidator(_plain_value)]
MAX_DESIRED_COUNT = 5000  # ECS's limit of tasks per service
DesiredCount = Annotated[int, Field(ge=0, le=MAX_DESIRED_COUNT, description="number of tasks to keep running")]


def _resource_schema(schema: dict[str, Any]) -> None:
    schema["anyOf"] = [
        {"properties": {"cpu": {"const": cpu}, "memory": {"enum": list(memories)}}}
        for cpu, memories in fargate.FARGATE_PAIRS.items()
    ]


class Resource(StrictModel):
    """Task size: a valid Fargate CPU / memory pair."""

    model_config = StrictModel.model_config | {"json_schema_extra": _resource_schema}

    cpu: int = Field(description="CPU units (1024 = 1 vCPU)", json_schema_extra={"enum": list(fargate.CPU_VALUES)})
    memory: int = Field(description="memory in MiB; must go with cpu (Fargate task sizes)")

    @field_validator("cpu")
    @classmethod
    def _cpu(cls, cpu: int) -> int:
        if cpu not in fargate.FARGATE_PAIRS:
            raise fail(
                f"{cpu} is not a Fargate CPU size",
                "use one of " + ", ".join(map(str, fargate.CPU_VALUES)) + " (1024 = 1 vCPU)",
            )
        return cpu

    @model_validator(mode="after")
    def _pair(self) -> Resource:
        if not fargate.is_valid(self.cpu, self.memory):
            fits = fargate.nearest_cpu_for(self.memory)
            hint = f"with cpu {self.cpu}, memory must be {fargate.describe_memory(self.cpu)}"
            if fits is not None:
                hint += f"; or keep memory {self.memory} and use cpu {fits}"
            raise fail(f"memory {self.memory} does not go with cpu {self.cpu} on Fargate", hint, at=("memory",))
        return self


class ServiceSpec(StrictModel):
    desired_count: DesiredCount = Field(1, alias="desiredCount")
    image: str | None = Field(
        None,
        description="ECR repository name; defaults to the service name",
        json_schema_extra={"pattern": ECR_REPO_RE.pattern},
    )
    resource: Resource
    tasks: dict[TaskName, Command] = Field(
        default_factory=dict,
        description="one-off commands (name -> exec-form list), run in the service's image and settings",
        json_schema_extra={"maxProperties": MAX_TASKS, **NAMES_SCHEMA},
    )
    pre_deploy: list[str] = Field(
        default_factory=list,
        alias="preDeploy",
        description="tasks run in order before every deploy (e.g. migrations); a failure stops the deploy",
    )
    schedules: dict[TaskName, Schedule] = Field(
        default_factory=dict,
        description="run a task on a schedule (EventBridge Scheduler): name -> task, cron, timezone",
        json_schema_extra={"maxProperties": MAX_SCHEDULES, **NAMES_SCHEMA},
    )

    @model_validator(mode="after")
    def _task_references(self) -> ServiceSpec:
        task_references(self.tasks, self.pre_deploy, self.schedules)
        return self

    @field_validator("tasks", "schedules")
    @classmethod
    def _not_too_many(cls, value: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        cap = MAX_TASKS if info.field_name == "tasks" else MAX_SCHEDULES
        if len(value) > cap:
            raise fail(f"{len(value)} {info.field_name} is more than lemi runs", f"keep it to {cap}")
        return value

    @field_validator("image")
    @classmethod
    def _image(cls, image: str | None) -> str | None:
        if image is not None and not ECR_REPO_RE.fullmatch(image):
            raise fail(
                f"{image!r} is not a valid ECR repository name",
                "use lowercase letters, digits and . _ - / (2 to 256 characters), e.g. demo-service",
            )
        return image


class ServiceFile(StrictModel):
    """deploy/<service>/service.yaml"""

    model_config = StrictModel.model_config | {"title": "lemi service.yaml"}

    name: str = Field(
        description="the repository's name, or <repo>-<suffix> for extra services",
        json_schema_extra={"pattern": SERVICE_RE.pattern},
    )
    owner: str = Field(
        description="owning team; used in cost and ownership tags",
        json_schema_extra={"pattern": OWNER_RE.pattern},
    )
    spec: ServiceSpec

    @field_validator("name")
    @classmethod
    def _name(cls, name: str, info: ValidationInfo) -> str:
        repository = (info.context or {}).get("repository")
        problem = service_name_problem(name, repository)
        if problem:
            hint = "rename it in this file" if repository else "use e.g. demo-service"
            raise fail(problem, hint)
        expected = (info.context or {}).get("directory")
        if expected is not None and expected != name:
            raise fail(
                f"the name {name!r} does not match its directory deploy/{expected}/",
                f"name the directory deploy/{name}/ or set name: {expected}",
            )
        return name

    @field_validator("owner")
    @classmethod
    def _owner(cls, owner: str) -> str:
        if not OWNER_RE.fullmatch(owner):
            raise fail(
                f"{owner!r} is not a valid owner",
                "use a team slug: lowercase letters, digits, - and _ (at most 64 characters)",
            )
        return owner

    @property
    def image(self) -> str:
        return self.spec.image or self.name


_ENV_KEYS: dict[str, Any] = {"propertyNames": {"pattern": ENV_VAR_RE.pattern}}


class EnvironmentFile(StrictModel):
    """deploy/<service>/environment/<env>.yaml"""

    model_config = StrictModel.model_config | {"title": "lemi environment file"}

    variables: dict[EnvVarName, PlainValue] = Field(
        default_factory=dict,
        description="plain environment variables (values are strings: quote numbers)",
        json_schema_extra=_ENV_KEYS,
    )
    secrets: dict[EnvVarName, SecretText] = Field(
        default_factory=dict,
        description="env var -> Secrets Manager secret name or ARN (name:json-key:: for a key)",
        json_schema_extra=_ENV_KEYS,
    )
    parameters: dict[EnvVarName, ParameterText] = Field(
        default_factory=dict,
        description="env var -> SSM Parameter Store name or ARN",
        json_schema_extra=_ENV_KEYS,
    )
    desired_count: DesiredCount | None = Field(None, alias="desiredCount")
    resource: Resource | None = None

    @model_validator(mode="after")
    def _unique(self) -> EnvironmentFile:
        seen: dict[str, str] = {}
        for section in ("variables", "secrets", "parameters"):
            for name in getattr(self, section):
                if name in seen:
                    raise fail(
                        f"{name} is defined in both {seen[name]} and {section}",
                        "an environment variable can come from one place only; remove one",
                        at=(section, name),
                    )
                seen[name] = section
        return self

    def secret_refs(self) -> dict[str, SecretRef]:
        return {k: parse_secret(v) for k, v in self.secrets.items()}

    def parameter_refs(self) -> dict[str, ParameterRef]:
        return {k: parse_parameter(v) for k, v in self.parameters.items()}


EMPTY_ENVIRONMENT = EnvironmentFile()


def parse_service(
    text: str | bytes, file: str, *, repository: str | None = None, directory: str | None = None
) -> ServiceFile:
    """Parse service.yaml. ``repository`` ("owner/name" or "name") enforces the naming rule."""
    doc = load(text, file)
    return validate(
        ServiceFile,
        doc,
        context={"repository": repository, "directory": directory},
        what="name, owner and spec",
    )


def parse_environment(text: str | bytes, file: str) -> EnvironmentFile:
    doc = load(text, file)
    if doc.value is None:  # every section is optional: an empty file is fine
        return EMPTY_ENVIRONMENT
    return validate(EnvironmentFile, doc)


@dataclass(frozen=True)
class ServiceFiles:
    """A service as found in a repository: its spec and every environment file."""

    service: ServiceFile
    environments: Mapping[str, EnvironmentFile]

    def environment(self, env: str) -> EnvironmentFile:
        return self.environments.get(env, EMPTY_ENVIRONMENT)

    def missing_environment(self, env: str) -> Problem | None:
        """The problem of a configured environment ``env`` this service has no file for (a deploy
        to it would run with no variables and no secrets), or None."""
        if env in self.environments:
            return None
        path = f"deploy/{self.service.name}/{ENVIRONMENT_DIR}/{env}.yaml"
        return Problem(
            path,
            f"the file is missing: lemi.yml has the environment {env!r}, and lemi deploys {self.service.name} "
            "there only with its environment file",
            hint=f"create {path} (an empty `variables: {{}}` will do when the service needs nothing there), "
            "or copy it from another environment's file",
        )

    def missing_environments(self, environments: Iterable[str]) -> list[Problem]:
        """:meth:`missing_environment` for each of ``environments`` (lemi.yml's)."""
        return [p for env in environments if (p := self.missing_environment(env)) is not None]


def parse_service_files(
    directory: str,
    files: Mapping[str, str | bytes],
    *,
    repository: str | None,
    known_environments: list[str] | None = None,
) -> ServiceFiles:
    """Validate ``deploy/<directory>/``: ``files`` maps paths relative to it to contents.

    Collects the problems of every file before raising, so one run shows them all.
    """
    base = f"deploy/{directory}"
    problems: list[Problem] = []
    service: ServiceFile | None = None
    environments: dict[str, EnvironmentFile] = {}
    if SERVICE_FILE not in files:
        problems.append(
            Problem(f"{base}/{SERVICE_FILE}", "the file is missing", hint="create it with `lemi service new`")
        )
    else:
        try:
            service = parse_service(
                files[SERVICE_FILE], f"{base}/{SERVICE_FILE}", repository=repository, directory=directory
            )
        except Invalid as exc:
            problems.extend(exc.problems)
    by_env: dict[str, list[str]] = {}
    for rel in sorted(files):
        if not rel.startswith(ENVIRONMENT_DIR + "/"):
            continue
        env, dot, ext = rel[len(ENVIRONMENT_DIR) + 1 :].rpartition(".")
        if dot and ext in ("yaml", "yml") and "/" not in env:
            by_env.setdefault(env, []).append(rel)
    for env, rels in sorted(by_env.items()):
        path = f"{base}/{rels[0]}"
        if len(rels) > 1:
            problems.append(
                Problem(
                    f"{base}/{rels[1]}", f"environment {env!r} has two files ({' and '.join(rels)})", hint="keep one"
                )
            )
            continue
        if known_environments is not None and env not in known_environments:
            hint = did_you_mean(env, known_environments) or f"environments in lemi.yml: {', '.join(known_environments)}"
            problems.append(Problem(path, f"there is no environment {env!r} in lemi.yml", hint=hint))
            continue
        if not ENV_RE.fullmatch(env):
            problems.append(
                Problem(
                    path,
                    f"{env!r} is not a valid environment name",
                    hint="name the file after an environment, e.g. staging.yaml",
                )
            )
            continue
        try:
            environments[env] = parse_environment(files[rels[0]], path)
        except Invalid as exc:
            problems.extend(exc.problems)
    if problems:
        raise Invalid(problems)
    assert service is not None
    return ServiceFiles(service, environments)
