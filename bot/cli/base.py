"""The command group, shared options and output helpers."""

from __future__ import annotations

import asyncio
import json
import os
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import click

from bot.aws.clients import AwsClients
from bot.cli import argv, failures, workspace
from bot.core import conventions
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
    output: str | None = None  # `lemi --output json COMMAND`: the command's --output when it has one

    def config(self) -> Config:
        """lemi.yml, required."""
        return load_config(self.config_option)

    def optional_config(self) -> Config | None:
        """lemi.yml if it exists; an explicitly named file must exist and be valid."""
        path = config_path(self.config_option)
        if not path.exists() and self.config_option is None and "LEMI_CONFIG" not in os.environ:
            return None
        return load_config(self.config_option)


class Command(click.Command):
    """A lemi command: ``-s=NAME`` and a trailing ``--config`` read as lemi means them
    (bot/cli/argv.py), and with ``--output json`` every failure is a JSON document on stdout
    (bot/cli/failures.py)."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        parsed = argv.normalise(self, args)
        state = ctx.ensure_object(State)
        if parsed.config is not None:
            state.config_option = parsed.config
        args = parsed.args
        if state.output and any(p.name == "output" for p in self.params):
            end = args.index("--") if "--" in args else len(args)
            if not any(a == "--output" or a.startswith("--output=") for a in args[:end]):
                args = [*args[:end], "--output", state.output, *args[end:]]  # the command's own wins
        return super().parse_args(ctx, args)

    def invoke(self, ctx: click.Context) -> Any:
        if ctx.params.get("output") != "json":
            return super().invoke(ctx)
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.Abort, KeyboardInterrupt):
            raise
        except Exception as exc:
            if isinstance(exc, Invalid):
                emit_json({"ok": False, "error": str(exc), "hint": None, "kind": "user",
                           "problems": [p.as_dict() for p in exc.problems]})  # fmt: skip
                raise click.exceptions.Exit(1) from None
            if os.environ.get("LEMI_DEBUG") and failures.describe(exc).kind == "bug":
                raise
            failure = failures.describe(exc)
            emit_json(failure.as_dict())
            code = exc.exit_code if isinstance(exc, click.ClickException) else 1
            raise click.exceptions.Exit(code) from None


class Group(click.Group):
    command_class = Command
    group_class = type  # subgroups are Groups too


@click.group(cls=Group, context_settings=CONTEXT_SETTINGS)
@click.option(
    "--config",
    "config_option",
    metavar="PATH",
    help="lemi.yml to use (default: $LEMI_CONFIG, then ./lemi.yml, then the one `lemi config pull` fetched); "
    "accepted after the command too.",
)
@click.option(
    "--output", type=click.Choice(["text", "json"]),
    help="The output format of the command (its own --output), given before it.",
)  # fmt: skip
@click.version_option(package_name="lemi", prog_name="lemi")
@click.pass_context
def cli(ctx: click.Context, config_option: str | None, output: str | None) -> None:
    """lemi: a paved road from a pull request to production on ECS Fargate."""
    ctx.obj = State(config_option, output)


def check_cluster(config: Config, env: str, cluster: str | None) -> None:
    """-c/--cluster names nothing: it must be the cluster lemi.yml gives the environment."""
    wanted = config.environment(env).cluster
    if cluster is not None and cluster != wanted:
        raise click.BadParameter(
            f"{cluster!r} is not the cluster of environment {env}: lemi.yml says {wanted!r} "
            f"(environments.{env}.cluster); pass -c {wanted}, or leave -c out",
            param_hint="-c/--cluster",
        )


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


_TASK_ARN_RE = re.compile(
    r"arn:aws[\w-]*:ecs:(?P<region>[\w-]+):(?P<account>\d{12}):task/(?P<cluster>[\w-]+)/(?P<id>[\w-]+)"
)


def environment_of_task(config: Config, given: str | None, task: str) -> str:
    """-e, else the environment whose account, region and cluster are those of the task's ARN;
    a bare task id means the default environment."""
    match = _TASK_ARN_RE.fullmatch(task)
    if given is not None or match is None:
        return pick_environment(config, given)
    region, account, cluster = match.group("region", "account", "cluster")
    found = [
        name for name, env in config.environments.items()
        if (env.region, env.account_id, env.cluster) == (region, account, cluster)
    ]  # fmt: skip
    if len(found) == 1:
        return found[0]
    where = f"account {account}, region {region}, cluster {cluster}"
    if not found:
        raise click.BadParameter(
            f"no environment in lemi.yml has {where} (the task ARN's); check the ARN, or name the environment with -e",
            param_hint="--task-id",
        )
    raise click.UsageError(f"environments {', '.join(found)} all have {where}: name one with -e")


def environment_of_family(config: Config, given: str | None, service: str, family: str, file: str) -> str:
    """-e, else the environment whose task definition family (<service>-<env>) ``file`` has (a
    file sent to another environment with -e is refused by the deploy's checks, each difference said)."""
    if given is not None:
        return pick_environment(config, given)
    found = next((name for name in config.environments if conventions.family(service, name) == family), None)
    if found is None:
        families = ", ".join(conventions.family(service, name) for name in config.environments)
        raise click.UsageError(
            f"{file} has family {family!r}, which is no environment's of service {service} "
            f"(lemi.yml's: {families}); compile it with `lemi compile -s {service} -e ENV -t TAG`, or name one with -e"
        )
    return found


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


@cli.group(cls=Group)
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
