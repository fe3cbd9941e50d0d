"""lemi.yml: the App's configuration, owned by the infra team.

Loaded once (in the server's lifespan or at the CLI's entry), never at import.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, field_validator, model_validator

from bot.core.config_source import SCHEME, SourceError, remote_source, user_config_file
from bot.core.names import (
    AWS_ACCOUNT_RE,
    AWS_REGION_RE,
    BRANCH_RE,
    DOMAIN_RE,
    ECS_CLUSTER_RE,
    ENV_RE,
    GITHUB_REPO_RE,
    IAM_ROLE_ARN_RE,
)
from bot.core.problems import Invalid, Problem
from bot.core.spec import SecretText
from bot.core.validation import StrictModel, fail, validate
from bot.core.yamlsafe import load

DEFAULT_PATH = "lemi.yml"


def _matches(regex, what: str, hint: str):  # type: ignore[no-untyped-def]
    def check(value: str) -> str:
        if not regex.fullmatch(value):
            raise fail(f"{value!r} is not a valid {what}", hint)
        return value

    return AfterValidator(check)


EnvName = Annotated[str, _matches(ENV_RE, "environment name", "use 1-10 lowercase letters and digits, e.g. staging")]


class Infra(StrictModel):
    repository: Annotated[str, _matches(GITHUB_REPO_RE, "repository", "write it as owner/name, e.g. acme/infra")] = (
        Field(description="the central Terraform repository, owner/name")
    )
    path: str = Field("services/{service}.tf", description="file of each service in the infra repository")
    merge_method: Literal["merge", "squash", "rebase"] = Field("squash", description="how the service PR is merged")
    module_source: str = Field(
        "../modules/ecs-service", description="Terraform module source of the generated service block"
    )
    base_branch: str | None = Field(None, description="infra branch PRs target (default: the repository's default)")

    @field_validator("module_source")
    @classmethod
    def _source(cls, value: str) -> str:
        import re

        if not re.fullmatch(r"[A-Za-z0-9_.:/@?=&+-]{1,500}", value):
            raise fail(
                f"{value!r} is not a module source lemi accepts",
                'use a path or a URL without spaces or quotes, e.g. "../modules/ecs-service" or "git::https://example.com/m.git?ref=v1"',
            )
        return value

    @field_validator("path")
    @classmethod
    def _path(cls, path: str) -> str:
        import re

        if path.count("{service}") != 1 or not path.endswith(".tf"):
            raise fail(f"{path!r} must contain {{service}} once and end in .tf", "e.g. services/{service}.tf")
        rest = path.replace("{service}", "x")
        if path.startswith("/") or ".." in path.split("/") or not re.fullmatch(r"[A-Za-z0-9_./-]+", rest):
            raise fail(
                f"{path!r} is not a safe relative path",
                "use letters, digits and _ . - / inside the repository, e.g. services/{service}.tf",
            )
        return path

    def file_for(self, service: str) -> str:
        return self.path.replace("{service}", service)


class Environment(StrictModel):
    branch: Annotated[str, _matches(BRANCH_RE, "branch name", "e.g. develop or main")] = Field(
        description="pushes to this branch deploy to this environment"
    )
    region: Annotated[str, _matches(AWS_REGION_RE, "AWS region", "e.g. us-east-1")]
    account_id: Annotated[str, _matches(AWS_ACCOUNT_RE, "AWS account id", 'twelve digits, quoted: "111111111111"')]
    cluster: Annotated[str, _matches(ECS_CLUSTER_RE, "ECS cluster name", "letters, digits, - and _")]
    role_arn: Annotated[str, _matches(IAM_ROLE_ARN_RE, "IAM role ARN", "arn:aws:iam::<account>:role/<name>")] | None = (
        Field(None, description="role lemi assumes for this environment (optional)")
    )
    protected: bool = Field(False, description="operating it needs maintain or admin permission")
    image_wait_seconds: int = Field(
        600, ge=0, le=3600, description="how long a push deploy waits for its image to appear in ECR"
    )
    task_timeout_seconds: int = Field(
        3600, ge=1, le=604800, description="how long a one-off or preDeploy task may run before lemi stops it"
    )
    logs: Literal["datadog", "cloudwatch"] = Field(
        "datadog",
        description="where the service container's logs go: datadog (through the FireLens log router) "
        "or cloudwatch (the log group /ecs/<service>-<env>, read by `lemi logs`)",
    )


class Datadog(StrictModel):
    site: Annotated[str, _matches(DOMAIN_RE, "Datadog site", "e.g. datadoghq.com or datadoghq.eu")] = "datadoghq.com"
    api_key_secret: SecretText = Field(
        "datadog/api-key", description="Secrets Manager secret (name or ARN) holding the Datadog API key"
    )
    agent_image: str = "public.ecr.aws/datadog/agent:7"
    log_router_image: str = "public.ecr.aws/aws-observability/aws-for-fluent-bit:stable"

    @field_validator("agent_image", "log_router_image")
    @classmethod
    def _image(cls, value: str) -> str:
        import re

        if not re.fullmatch(
            r"[a-z0-9][a-z0-9./_-]*(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?:@sha256:[a-f0-9]{64})?", value
        ):
            raise fail(f"{value!r} is not a valid image reference", "e.g. public.ecr.aws/datadog/agent:7")
        return value


SERVICE_PLACEHOLDER = "{service}"
_NAME_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")
SECRET_NAME_CHARS = _NAME_CHARS | frozenset("/_+=.@-")  # what Secrets Manager names may hold
PARAMETER_NAME_CHARS = _NAME_CHARS | frozenset("/_.-")  # what Parameter Store names may hold


def _name_pattern(chars: frozenset[str], what: str, limit: int, example: str):  # type: ignore[no-untyped-def]
    """A glob on names: the characters of a name, ``*``, ``?`` and ``{service}``."""

    def check(value: str) -> str:
        rest = value.replace(SERVICE_PLACEHOLDER, "")
        bad = sorted({c for c in rest if c not in chars and c not in "*?"})
        if bad:
            shown = " ".join(repr(c) for c in bad)
            braces = f" (only {SERVICE_PLACEHOLDER} is replaced)" if "{" in bad or "}" in bad else ""
            raise fail(
                f"{value!r} is not a {what} pattern: {shown} cannot appear in a {what} name{braces}",
                f"use the characters of {what} names, * (any run of characters), ? (one character) "
                f"and {SERVICE_PLACEHOLDER}, e.g. {example}",
            )
        if not value or len(value) > limit:
            raise fail(f"a {what} pattern has 1 to {limit} characters", f"e.g. {example}")
        return value

    return AfterValidator(check)


def _parameter_path(value: str) -> str:
    if "/" in value and value[0] not in "/*?":
        raise fail(
            f"{value!r} can never match: a Parameter Store name with a / is a path, and paths start with /",
            f"start it with /, e.g. /{value}",
        )
    return value


SecretPattern = Annotated[str, _name_pattern(SECRET_NAME_CHARS, "secret", 512, '"{service}/*"')]
ParameterPattern = Annotated[
    str, _name_pattern(PARAMETER_NAME_CHARS, "parameter", 2048, '"/{service}/*"'), AfterValidator(_parameter_path)
]


class References(StrictModel):
    """Which secrets and parameters a service may name in its environment files."""

    secrets: list[SecretPattern] | None = Field(
        None,
        description="Secrets Manager names a service may reference (absent: any; empty: none)",
    )
    parameters: list[ParameterPattern] | None = Field(
        None,
        description="SSM Parameter Store names a service may reference (absent: any; empty: none)",
    )


class Config(StrictModel):
    """lemi.yml"""

    model_config = StrictModel.model_config | {"title": "lemi.yml"}

    infra: Infra
    domain: Annotated[str, _matches(DOMAIN_RE, "domain", "e.g. lemon or example.com")] = Field(
        description="internal URLs are https://<service>-internal.<env>.<domain>"
    )
    environments: dict[EnvName, Environment] = Field(min_length=1)
    datadog: Datadog = Field(default_factory=Datadog)
    references: References = Field(
        default_factory=References,
        description="which secrets and parameters services may reference (absent: no restriction)",
    )

    @model_validator(mode="after")
    def _branches(self) -> Config:
        seen: dict[str, str] = {}
        for name, env in self.environments.items():
            if env.branch in seen:
                raise fail(
                    f"branch {env.branch!r} is used by both {seen[env.branch]} and {name}",
                    "give each environment its own branch",
                    at=("environments", name, "branch"),
                )
            seen[env.branch] = name
        return self

    def environment(self, name: str) -> Environment:
        return self.environments[name]

    def default_environment(self) -> str | None:
        """The first unprotected environment: what -e means when it is not given."""
        return next((n for n, e in self.environments.items() if not e.protected), None)

    def environment_for_branch(self, branch: str) -> str | None:
        return next((n for n, e in self.environments.items() if e.branch == branch), None)


def parse_config(text: str | bytes, file: str = DEFAULT_PATH) -> Config:
    return validate(Config, load(text, file), what="infra, domain and environments")


def config_path(explicit: str | None = None) -> Path:
    """``explicit`` (``--config``), else ``$LEMI_CONFIG``, else ``./lemi.yml``, else the copy
    ``lemi config pull`` wrote (bot/core/config_source.py); ``./lemi.yml`` when there is none."""
    named = explicit or os.environ.get("LEMI_CONFIG")
    if named:
        return Path(named)
    here = Path(DEFAULT_PATH)
    pulled = user_config_file(os.environ, Path.home())
    return pulled if not here.exists() and pulled.exists() else here


def load_config(explicit: str | None = None) -> Config:
    named = explicit or os.environ.get("LEMI_CONFIG") or ""
    if named.startswith(SCHEME):  # the App reads it through GitHub (bot/server/remote_config.py)
        try:
            source = remote_source(named)
        except SourceError as exc:
            raise Invalid([Problem(named, str(exc))]) from None
        raise Invalid(
            [
                Problem(
                    named,
                    f"lemi.yml in {source.repository if source else named} is read through GitHub; this reads a file",
                    hint="run `lemi config pull --from OWNER/INFRA`, or point --config at a file",
                )
            ]
        )
    path = config_path(explicit)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise Invalid(
            [
                Problem(
                    str(path),
                    "lemi.yml not found",
                    hint="run `lemi config pull --from OWNER/INFRA` to fetch the infra repository's lemi.yml "
                    f"(into {user_config_file(os.environ, Path.home())}), or point LEMI_CONFIG or --config at one",
                )
            ]
        ) from None
    except OSError as exc:
        raise Invalid([Problem(str(path), f"cannot read the file: {exc.strerror}")]) from None
    return parse_config(data, str(path))
