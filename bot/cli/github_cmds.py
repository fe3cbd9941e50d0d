"""Commands that act on GitHub from a laptop or CI, with a token in GH_AUTH_TOKEN."""

from __future__ import annotations

import asyncio
import os
from dataclasses import asdict

import aiohttp
import click

from bot.cli import workspace
from bot.cli.base import State, cli, emit_json, pass_state
from bot.cli.options import output_option
from bot.core.names import GITHUB_REPO_RE, SERVICE_RE
from bot.core.settings import DEFAULT_API_URL
from bot.flows.provision import Outcome, get_pull, provision_pull_request
from bot.github.client import GitHub
from bot.github.contents import repository_exists
from bot.github.owners import Owners


def _repo(ctx: click.Context, param: click.Parameter, value: str) -> str:
    """OWNER/NAME, or a bare NAME whose owner is the checkout's remote's (the seed's --repoName)."""
    if "/" not in value:
        remote = workspace.repository_name(workspace.repo_root())
        if remote is None:
            raise click.BadParameter(
                f"{value!r} names no owner, and this checkout has no git remote 'origin' on GitHub to take one "
                "from; write it as OWNER/NAME"
            )
        value = f"{remote.split('/', 1)[0]}/{value}"
    if not GITHUB_REPO_RE.fullmatch(value):
        raise click.BadParameter("write it as OWNER/NAME (or NAME, the owner read from the git remote)")
    return value


def _services(ctx: click.Context, param: click.Parameter, value: tuple[str, ...]) -> tuple[str, ...]:
    for name in value:
        if not SERVICE_RE.fullmatch(name):
            raise click.BadParameter(f"{name!r} is not a valid service name")
    return value


def _returns(gh: GitHub):  # type: ignore[no-untyped-def]
    async def client() -> GitHub:
        return gh

    return client


@cli.command()
@click.option(
    "--pr", "--prId", "number", type=click.IntRange(min=1), required=True, help="The service pull request's number."
)
@click.option(
    "--repo", "--repoName", required=True, callback=_repo, metavar="[OWNER/]NAME",
    help="The service repository (a bare NAME: the owner of the git remote 'origin').",
)  # fmt: skip
@click.option(
    "--branch", "--currentBranchName", metavar="BRANCH",
    help="The pull request's branch, checked against GitHub's (CI passes it; lemi reads it from the pull request).",
)  # fmt: skip
@click.option("-s", "--service", "services", multiple=True, callback=_services, help="Only this service (repeatable).")
@output_option
@pass_state
def provision(state: State, number: int, repo: str, branch: str | None, services: tuple[str, ...], output: str) -> None:
    """Do what the App does for a pull request: check the service files and
    open (or update) the infra pull request. Uses the token in GH_AUTH_TOKEN
    and GITHUB_API_URL (GitHub Enterprise Server).

    \b
    lemi provision --pr 7 --repo acme/demo-service -s demo-service
    lemi provision --prId 7 --repoName demo-service --currentBranchName feature --service demo-service
    """
    token = os.environ.get("GH_AUTH_TOKEN")
    if not token:
        raise click.UsageError("set GH_AUTH_TOKEN to a GitHub token that can write to both repositories")
    config = state.config()
    base_url = (os.environ.get("GITHUB_API_URL") or DEFAULT_API_URL).rstrip("/")

    async def work() -> Outcome:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
            gh = GitHub(session, base_url=base_url, oauth_token=token)
            pull = await get_pull(gh, repo, number)
            if branch is not None and branch != pull.head_ref:
                raise click.BadParameter(
                    f"pull request #{number} of {repo} is branch {pull.head_ref!r}, not {branch!r}; "
                    "check --pr and --currentBranchName",
                    param_hint="--branch/--currentBranchName",
                )
            owners = Owners(config, infra=_returns(gh), installed=lambda name: repository_exists(gh, name))
            # a personal token cannot write check runs (GitHub keeps them for Apps): results are printed
            return await provision_pull_request(
                gh, gh, config, pull, owners=owners, only=list(services) or None, check_runs=False
            )

    outcome = asyncio.run(work())
    if output == "json":
        data = asdict(outcome)
        data["problems"] = [p.as_dict() for p in outcome.problems]
        emit_json({"ok": not outcome.problems and not outcome.refused, **data})
    else:
        for problem in outcome.problems:
            click.echo(problem.render(), err=True)
        if outcome.skipped:
            click.echo(f"not provisioned: {outcome.skipped}")
        for name in outcome.provisioned:
            click.echo(f"{name}: already provisioned")
        for name, url in outcome.infra_prs.items():
            click.echo(f"{name}: infra pull request {url}")
        for name, why in outcome.refused.items():
            click.echo(f"{name}: refused: {why}", err=True)
    if outcome.problems or outcome.refused:
        raise click.exceptions.Exit(1)
