"""Settings from the process environment, each variable declared once (pydantic-settings).

Every variable lemi reads is a field here, with its type, default and description;
``python -m tools.docs`` writes the reference (docs/configuration.md) from these declarations.

* :class:`Settings`: the App's, read once by :func:`load_settings` in the server's lifespan,
  never at import;
* :class:`CommandSettings`: variables read where they are used (the address ``lemi serve``
  binds, the proxies it trusts, the CLI's token and debug switch, the AWS region the SQS
  queue falls back to), declared here so they are documented and checked like the others.

The environment is read by :class:`EnvironSource`: each declared variable by its name, an empty
value counting as unset. A Settings built in code (tests, embedding) holds exactly what it is
given and reads no environment. Secrets are kept out of ``repr`` and out of every error message.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Self

from pydantic import BeforeValidator, Field, ValidationError, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

DEFAULT_API_URL = "https://api.github.com"
DEFAULT_QUEUE = "sqlite:///lemi-queue.db"
PEM_MARK = "PRIVATE KEY-----"


class SettingsError(ValueError):
    """A setting that is missing or malformed; the message says which and how to fix it."""


@dataclass(frozen=True)
class EnvDefault:
    """A variable's default when the environment leaves it unset, where that differs from the
    field's own default (the one a Settings built in code gets)."""

    value: str


def variable_name(field: FieldInfo, field_name: str) -> str:
    """The environment variable a field is read from (its ``validation_alias``)."""
    alias = field.validation_alias
    if not isinstance(alias, str):
        raise TypeError(f"{field_name} declares no environment variable (validation_alias)")
    return alias


def environment_default(field: FieldInfo) -> Any:
    """What a variable left unset means: its :class:`EnvDefault`, else the field's default."""
    marked = [m.value for m in field.metadata if isinstance(m, EnvDefault)]
    return marked[0] if marked else field.default


def is_secret(field: FieldInfo) -> bool:
    return field.repr is False


class EnvironSource(PydanticBaseSettingsSource):
    """The declared variables of ``environ``, each looked up by its name (exactly: names are
    case-sensitive). An empty value counts as unset; an unset variable takes its
    :class:`EnvDefault` where it has one, else the field's default."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]) -> None:
        super().__init__(settings_cls)
        self.environ = environ

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        name = variable_name(field, field_name)
        value = self.environ.get(name) or None
        if value is None and any(isinstance(m, EnvDefault) for m in field.metadata):
            value = environment_default(field)
        return value, name, False

    def __call__(self) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for field_name, field in self.settings_cls.model_fields.items():
            value, name, _ = self.get_field_value(field, field_name)
            if value is not None:
                values[name] = value
        return values


class _Variables(BaseSettings):
    """Fields read from environment variables (their ``validation_alias``) by
    :meth:`from_environment`; built in code, from the keyword arguments only."""

    model_config = SettingsConfigDict(
        frozen=True, case_sensitive=True, validate_by_name=True, validate_by_alias=True, extra="forbid"
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings,)  # the environment is read by from_environment only

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> Self:
        """The settings of ``environ`` (``os.environ``); raises :class:`SettingsError`."""
        values = EnvironSource(cls, os.environ if environ is None else environ)()
        try:
            return cls(**values)
        except ValidationError as exc:
            raise SettingsError(problems(exc, cls, values)) from None


def _whole(value: Any) -> Any:
    """A whole number as lemi has always read one: any number, its fraction dropped (``4.0``: 4)."""
    if isinstance(value, str):
        try:
            return int(float(value))
        except (ValueError, OverflowError):
            pass  # pydantic says what is wrong with it
    return value


Whole = Annotated[int, BeforeValidator(_whole)]


class Settings(_Variables):
    """The App's settings (``lemi serve``): its GitHub App, its lemi.yml, its queue, its tuning."""

    app_id: str | None = Field(
        None,
        validation_alias="GITHUB_APP_ID",
        description="the GitHub App's id (the App's settings page, \"About\"); required by `lemi serve`",
    )
    private_key: str | None = Field(
        None,
        repr=False,
        validation_alias="GITHUB_APP_PRIVATE_KEY",
        description="the App's private key (PEM), inline; a one-line value may write newlines as `\\n`",
    )
    private_key_path: str | None = Field(
        None,
        validation_alias="GITHUB_APP_PRIVATE_KEY_PATH",
        description="a file holding the App's PEM key, read when `GITHUB_APP_PRIVATE_KEY` is not set",
    )
    webhook_secret: str | None = Field(
        None,
        repr=False,
        validation_alias="GITHUB_WEBHOOK_SECRET",
        description="the App's webhook secret: every delivery's `X-Hub-Signature-256` is checked with it",
    )
    api_url: str = Field(
        DEFAULT_API_URL,
        validation_alias="GITHUB_API_URL",
        description="GitHub's REST API; set it for GitHub Enterprise Server (`https://HOST/api/v3`)",
    )
    config_path: str = Field(
        "lemi.yml",
        validation_alias="LEMI_CONFIG",
        description="path of lemi.yml (the CLI's `--config` wins over it); for the App also "
        "`github://OWNER/INFRA/lemi.yml`: read from that repository's default branch with the App's "
        "installation, again at most once a minute and on a push there (an invalid new file is kept out)",
    )
    queue_url: str = Field(
        DEFAULT_QUEUE,
        validation_alias="LEMI_QUEUE",
        description="the job queue: `sqlite:///path.db` (embedded, one host) or "
        "`sqs://<fifo-queue-url>?dedupe_table=<table>` (several replicas; see "
        "[operations](operations.md#scaling-out-sqs-fifo-and-dynamodb))",
    )
    port: Whole = Field(8080, validation_alias="PORT", description="port `lemi serve` listens on")
    workers: Whole = Field(
        4,
        ge=0,
        validation_alias="LEMI_WORKERS",
        description="workers in the process; `0` only accepts deliveries (another process works them)",
    )
    worker_metrics_port: Whole = Field(
        0,
        ge=0,
        le=65535,
        validation_alias="LEMI_WORKER_METRICS_PORT",
        description="`lemi worker` serves its own Prometheus metrics (jobs, rollouts watched, GitHub calls) "
        "on 127.0.0.1 at this port; 0 (the default): not served",
    )
    background_jobs: Whole = Field(
        64,
        ge=1,
        validation_alias="LEMI_BACKGROUND_JOBS",
        description="deploys and long commands run beside the workers, up to this many at once; the "
        "others wait for a slot (a worker hands them over and takes the next delivery at once)",
    )
    lease_seconds: float = Field(
        60.0,
        gt=0,
        validation_alias="LEMI_LEASE_SECONDS",
        description="how long a worker holds a job before another may take it over; extended while the job runs",
    )
    shutdown_grace_seconds: float = Field(
        20.0,
        ge=0,
        validation_alias="LEMI_SHUTDOWN_GRACE_SECONDS",
        description="on SIGTERM, lemi takes no new job and gives the running ones this long to finish; "
        "those still running then are stopped and their leases released, so another worker takes them "
        "at once (keep it under the platform's kill timeout: ECS's stopTimeout, 30 s by default)",
    )
    retry_delays: tuple[float, ...] = Field(
        (5.0, 30.0, 120.0, 600.0, 1800.0),
        min_length=1,
        validation_alias="LEMI_RETRY_DELAYS",
        description="seconds between attempts of a failing job, comma-separated; "
        "a job gets one attempt more than there are delays",
    )
    deploy_poll_seconds: float = Field(
        5.0, validation_alias="LEMI_DEPLOY_POLL_SECONDS", description="how often the watcher polls ECS for a rollout"
    )
    deploy_timeout_seconds: float = Field(
        900.0,
        validation_alias="LEMI_DEPLOY_TIMEOUT_SECONDS",
        description="how long a rollout is watched before it is reported as timed out (a failure)",
    )
    # 300 s from the environment; a Settings built in code (tests, embedding) has it off (0), so
    # the App makes no GitHub call it was not asked for
    redeliver_interval_seconds: Annotated[float, EnvDefault("300")] = Field(
        0.0,
        ge=0,
        validation_alias="LEMI_REDELIVER_INTERVAL_SECONDS",
        description="how often to look for missed webhook deliveries and ask GitHub to redeliver them; "
        "`0` turns it off",
    )
    github_writes_per_minute: Whole = Field(
        80,
        ge=1,
        validation_alias="LEMI_GITHUB_WRITES_PER_MINUTE",
        description="content-creating GitHub requests (comments, check runs, Deployments, statuses...) per "
        "installation per minute, GitHub's documented secondary limit; with several processes writing for "
        "one installation, give each a share",
    )
    github_writes_per_hour: Whole = Field(
        500,
        ge=1,
        validation_alias="LEMI_GITHUB_WRITES_PER_HOUR",
        description="the same per hour (GitHub's documented limit is 500); beyond it, writes wait, "
        "slash-command replies and pull-request checks first",
    )

    @model_validator(mode="before")
    @classmethod
    def _read_key_file(cls, data: Any) -> Any:
        """Without GITHUB_APP_PRIVATE_KEY, the key is read from the file GITHUB_APP_PRIVATE_KEY_PATH names."""
        if not isinstance(data, dict) or data.get("GITHUB_APP_PRIVATE_KEY") or data.get("private_key"):
            return data
        path = data.get("GITHUB_APP_PRIVATE_KEY_PATH") or data.get("private_key_path")
        if not path:
            return data
        try:
            key = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise ValueError(f"GITHUB_APP_PRIVATE_KEY_PATH={path}: cannot read it ({exc.strerror})") from None
        if PEM_MARK not in key:
            raise ValueError(
                f"GITHUB_APP_PRIVATE_KEY_PATH={path}: the file is not a PEM key (-----BEGIN RSA PRIVATE KEY-----); "
                "name the .pem file GitHub made for the App"
            )
        return {**data, "GITHUB_APP_PRIVATE_KEY": key}

    @field_validator("private_key")
    @classmethod
    def _pem(cls, key: str | None) -> str | None:
        if key is None:
            return None
        key = key.replace("\\n", "\n").strip() + "\n"  # one-line env values often carry literal \n
        if PEM_MARK not in key:
            raise ValueError(
                "the GitHub App private key is not a PEM key (-----BEGIN RSA PRIVATE KEY-----); paste the .pem "
                "file GitHub made for the App, or set GITHUB_APP_PRIVATE_KEY_PATH to its path"
            )
        return key

    @field_validator("api_url")
    @classmethod
    def _http_url(cls, url: str) -> str:
        url = url.rstrip("/")
        if not url.startswith(("https://", "http://")):
            raise ValueError("must be an http(s) URL, e.g. https://ghe.example.com/api/v3")
        return url

    @field_validator("retry_delays", mode="before")
    @classmethod
    def _comma_list(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        try:
            delays = tuple(float(x) for x in value.split(",") if x.strip())
        except ValueError:
            delays = ()
        if not delays:
            raise ValueError("write seconds separated by commas, e.g. 5,30,120")
        return delays

    @property
    def locks_path(self) -> str:
        """Locks live in the embedded database (the queue's file when the queue is SQLite)."""
        if self.queue_url.startswith("sqlite:///"):
            return self.queue_url.removeprefix("sqlite:///") or "lemi-queue.db"
        return "lemi-locks.db"

    @property
    def has_app_credentials(self) -> bool:
        return bool(self.app_id and self.private_key and self.webhook_secret)

    def require_app(self) -> None:
        missing = [
            name
            for name, value in (
                ("GITHUB_APP_ID", self.app_id),
                ("GITHUB_APP_PRIVATE_KEY or GITHUB_APP_PRIVATE_KEY_PATH", self.private_key),
                ("GITHUB_WEBHOOK_SECRET", self.webhook_secret),
            )
            if not value
        ]
        if missing:
            raise SettingsError("missing " + ", ".join(missing) + " (see the README, 'App configuration')")


class CommandSettings(_Variables):
    """Variables read where they are used rather than through :class:`Settings`: each is read
    once, by the code that needs it, with the default declared here."""

    host: str = Field(
        "127.0.0.1", validation_alias="HOST", description="address `lemi serve` binds (the Procfile uses `0.0.0.0`)"
    )
    forwarded_allow_ips: str = Field(
        "127.0.0.1,::1",
        validation_alias="FORWARDED_ALLOW_IPS",
        description="proxies whose `X-Forwarded-For` / `X-Forwarded-Proto` `lemi serve` believes "
        "(comma-separated, `*` for any; uvicorn's rule). Only access logs and URLs use them: the setup page "
        'decides "this machine" on the socket peer and refuses any proxied request',
    )
    debug: str | None = Field(
        None,
        validation_alias="LEMI_DEBUG",
        description="any value: the CLI prints the traceback of an unexpected failure",
    )
    gh_auth_token: str | None = Field(
        None,
        repr=False,
        validation_alias="GH_AUTH_TOKEN",
        description="the GitHub token `lemi provision` acts with (the App uses its own installation tokens)",
    )
    gh_token: str | None = Field(
        None,
        repr=False,
        validation_alias="GH_TOKEN",
        description="the GitHub token `lemi config pull` reads with (first of `GH_TOKEN`, `GITHUB_TOKEN`, "
        "`GH_AUTH_TOKEN`, then GitHub CLI's stored login)",
    )
    github_token: str | None = Field(
        None, repr=False, validation_alias="GITHUB_TOKEN", description="as `GH_TOKEN`, when that is not set"
    )
    infra_repository: str | None = Field(
        None,
        validation_alias="LEMI_INFRA_REPOSITORY",
        description="the infra repository (OWNER/NAME) `lemi config pull` fetches lemi.yml from, "
        "when `--from` is not given",
    )
    xdg_config_home: str | None = Field(
        None,
        validation_alias="XDG_CONFIG_HOME",
        description="the user's configuration directory: `lemi config pull` writes `$XDG_CONFIG_HOME/lemi/lemi.yml` "
        "(default `~/.config/lemi/lemi.yml`), where commands look after `./lemi.yml`",
    )
    gh_config_dir: str | None = Field(
        None,
        validation_alias="GH_CONFIG_DIR",
        description="GitHub CLI's configuration directory, whose `hosts.yml` holds a stored login "
        "(default `$XDG_CONFIG_HOME/gh`, else `~/.config/gh`)",
    )
    aws_region: str | None = Field(
        None,
        validation_alias="AWS_REGION",
        description="region of the SQS queue and DynamoDB table when the queue URL does not name one "
        "(also read by the AWS SDK)",
    )
    aws_default_region: str | None = Field(
        None, validation_alias="AWS_DEFAULT_REGION", description="as `AWS_REGION`, when that is not set"
    )


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """The App's settings from ``environ`` (``os.environ``); raises :class:`SettingsError`."""
    return Settings.from_environment(environ)


# ---- errors ----------------------------------------------------------------------------------------


def problems(exc: ValidationError, model: type[BaseSettings], given: Mapping[str, Any]) -> str:
    """One line naming each bad variable (with the value ``given``, unless it is a secret), what
    is wrong and how to fix it: pydantic's findings without its multi-line layout or its links."""
    fields: dict[object, tuple[str, FieldInfo]] = {
        key: (name, info) for name, info in model.model_fields.items() for key in (name, info.validation_alias)
    }
    return "; ".join(_problem(error, fields, given) for error in exc.errors(include_url=False))


def _problem(error: ErrorDetails, fields: Mapping[object, tuple[str, FieldInfo]], given: Mapping[str, Any]) -> str:
    error_ctx = error.get("ctx") or {}
    said = str(error_ctx["error"]) if error["type"] == "value_error" and "error" in error_ctx else error["msg"]
    if said[:1].isupper() and said[1:2].islower():  # pydantic's "Input should be ..." inside a sentence
        said = said[0].lower() + said[1:]
    if not error["loc"] or error["loc"][0] not in fields:
        return said  # a check of several variables: its message names them
    field_name, field = fields[error["loc"][0]]
    name = variable_name(field, field_name)
    shown = name if is_secret(field) else f"{name}={given.get(name, error['input'])!r}"
    default = environment_default(field)
    unset = "" if default is None else f" (or unset it: the default is {as_written(default)})"
    return f"{shown}: {said}{unset}"


def as_written(value: Any) -> str:
    """A value as one would write it in the environment (60.0 as 60, a tuple comma-separated)."""
    if isinstance(value, tuple):
        return ",".join(as_written(v) for v in value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
