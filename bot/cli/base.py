"""The command group, shared options and output helpers."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import click

from bot.aws.clients import AwsClients
from bot.cli import workspace
from bot.core.config import Config, config_path, load_config
from bot.core.errors import UserError
from bot.core.findings import Finding, never_arrived_tag
from bot.core.github_web import commit_checks
from bot.core.names import SERVICE_RE
from bot.core.problems import Invalid, Problem, problems_text
from bot.core.spec import ServiceFiles, parse_service_files

T = TypeVar("T")

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


class LemiError(UserError):
    """A failure to report to the user as one line (exit 1)."""


@dataclass
class State:
    config_option: str | None

    def config(self) -> Config:
        """lemi.yml, required."""
        return load_config(self.config_option)

    def optional_config(self) -> Config | None:
        """lemi.yml if it exists; an explicitly named file must exist and be valid."""
        path = config_path(self.config_option)
        if not path.exists() and self.config_option is None and "LEMI_CONFIG" not in os.environ:
            return None
        return load_config(self.config_option)


@click.group(context_settings=CONTEXT_SETTINGS)
@click.option(
    "--config",
    "config_option",
    metavar="PATH",
    help="lemi.yml to use (default: $LEMI_CONFIG, then ./lemi.yml, then the one `lemi config pull` fetched).",
)
@click.version_option(package_name="lemi", prog_name="lemi")
@click.pass_context
def cli(ctx: click.Context, config_option: str | None) -> None:
    """lemi: a paved road from a pull request to production on ECS Fargate."""
    ctx.obj = State(config_option)


pass_state = click.make_pass_decorator(State)


def repository(root: Path, given: str | None) -> str:
    if given:
        return given
    name = workspace.repository_name(root)
    if name is None:
        raise click.UsageError(
            "cannot tell the repository's name: this checkout has no git remote 'origin' on GitHub; "
            "pass --repo OWNER/NAME"
        )
    return name


def service_name(given: str | None) -> str:
    """-s for commands that operate AWS: the checkout's only service when not given."""
    if given is None:
        return pick_service(workspace.repo_root(), None)
    if not SERVICE_RE.fullmatch(given):
        raise click.UsageError(f"{given!r} is not a valid service name")
    return given


def pick_service(root: Path, given: str | None) -> str:
    services = workspace.list_services(root)
    if given:
        if given not in services:
            found = ", ".join(services) or "none"
            raise click.UsageError(
                f"no service {given!r}: there is no deploy/{given}/service.yaml (services here: {found})"
            )
        return given
    if len(services) == 1:
        return services[0]
    if not services:
        raise click.UsageError(
            "no service here: there is no deploy/<service>/service.yaml; create one with `lemi service new`"
        )
    raise click.UsageError(f"this repository has several services ({', '.join(services)}); choose one with -s")


def pick_environment(config: Config, given: str | None) -> str:
    """-e ENV, or the first unprotected environment; a protected one must be named."""
    if given is None:
        default = config.default_environment()
        if default is None:
            raise click.UsageError(
                f"every environment is protected; name one with -e ({', '.join(config.environments)})"
            )
        return default
    if given not in config.environments:
        raise click.UsageError(f"no environment {given!r} in lemi.yml (environments: {', '.join(config.environments)})")
    return given


def print_problems(problems: Sequence[Problem]) -> None:
    for problem in problems:
        click.echo(problem.render(), err=True)
    count = len(problems)
    click.echo(f"{problems_text(count)} found", err=True)


def emit_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, sort_keys=True))


def report_invalid(exc: Invalid, output: str, **extra: Any) -> None:
    """Print problems (text to stderr, or a JSON document to stdout) and exit 1."""
    if output == "json":
        emit_json({"ok": False, **extra, "problems": [p.as_dict() for p in exc.problems]})
    else:
        print_problems(exc.problems)
    raise click.exceptions.Exit(1)


@cli.group()
def service() -> None:
    """Create and operate services."""


def run_aws(config: Config, work: Callable[[AwsClients], Awaitable[T]]) -> T:
    """Run ``work`` with the AWS clients of lemi.yml's environments, closed afterwards."""

    async def main() -> T:
        async with AwsClients(config) as aws:
            return await work(aws)

    return asyncio.run(main())


def load_service(root: Path, service: str, repo: str, config: Config | None) -> ServiceFiles:
    """deploy/<service>/ of the checkout, parsed (the naming rule checked against ``repo``)."""
    return parse_service_files(
        service,
        workspace.read_service_files(root, service),
        repository=repo,
        known_environments=list(config.environments) if config else None,
    )


def build_checks(root: Path, findings: Sequence[Finding]) -> str | None:
    """The web page of the checks of the commit whose image never arrived, when the checkout's
    remote tells where the repository is and the image's tag is a commit SHA; else None."""
    tag = never_arrived_tag(list(findings))
    if tag is None:
        return None
    web = workspace.repository_web_url(root)
    return commit_checks(web, tag) if web else None
