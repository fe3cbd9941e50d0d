"""``lemi config pull``: the infra repository's lemi.yml, for a developer's commands.

The file is read from the root of the infra repository's default branch (GitHub's contents API,
``GITHUB_API_URL`` honoured) with the developer's token (bot/cli/gh_token.py), validated, and
written atomically into the user's configuration directory (bot/core/config_source.py): an
invalid file is reported, line by line, and not written.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from pathlib import Path

import aiohttp
import click

from bot.cli import gh_token
from bot.cli.base import LemiError, emit_json, report_invalid
from bot.cli.files import config
from bot.cli.options import output_option
from bot.core.config import config_path, parse_config
from bot.core.config_source import FILE_NAME, user_config_file
from bot.core.names import GITHUB_REPO_RE
from bot.core.problems import Invalid
from bot.core.settings import DEFAULT_API_URL
from bot.github.client import GitHub
from bot.github.contents import entry_bytes, file_entry


def _infra(ctx: click.Context, param: click.Parameter, value: str | None) -> str:
    value = value or os.environ.get("LEMI_INFRA_REPOSITORY")
    if not value:
        raise click.UsageError(
            "which infra repository? pass --from OWNER/INFRA or set LEMI_INFRA_REPOSITORY (e.g. acme/infra)"
        )
    if not GITHUB_REPO_RE.fullmatch(value):
        raise click.BadParameter(f"{value!r}: write it as OWNER/NAME, e.g. acme/infra", param_hint="'--from'")
    return value


@config.command("pull")
@click.option(
    "--from",
    "infra",
    metavar="OWNER/INFRA",
    callback=_infra,
    help="The infra repository holding lemi.yml at its root (default: $LEMI_INFRA_REPOSITORY).",
)
@output_option
def config_pull(infra: str, output: str) -> None:
    """Fetch lemi.yml from the infra repository into your configuration directory.

    Commands look for lemi.yml there after ./lemi.yml. The token is the first of GH_TOKEN,
    GITHUB_TOKEN, GH_AUTH_TOKEN, or GitHub CLI's login (`gh auth login`); GITHUB_API_URL
    points at GitHub Enterprise Server."""
    base_url = (os.environ.get("GITHUB_API_URL") or DEFAULT_API_URL).rstrip("/")
    token = gh_token.token(base_url)
    if token is None:
        raise click.UsageError(
            "no GitHub token: set GH_TOKEN (or GITHUB_TOKEN, GH_AUTH_TOKEN) to a token that can read "
            f"{infra}, or log in with `gh auth login`"
        )
    text, sha = asyncio.run(_fetch(base_url, token, infra))
    shown = f"{infra}:{FILE_NAME}"
    try:
        parse_config(text, shown)
    except Invalid as exc:
        if output != "json":
            click.echo(f"{shown} is not valid; nothing was written", err=True)
        report_invalid(exc, output, repository=infra, written=None)
    target = user_config_file(os.environ, Path.home())
    _write(target, text)
    if output == "json":
        emit_json({"ok": True, "repository": infra, "sha": sha, "written": str(target), "problems": []})
    else:
        click.echo(f"wrote {target} ({shown} at blob {sha[:7]}); commands use it when there is no ./lemi.yml")
        used = config_path()
        if used.resolve() != target.resolve():
            click.echo(f"note: commands run here read {used} first (--config, $LEMI_CONFIG or ./lemi.yml)", err=True)


async def _fetch(base_url: str, token: str, infra: str) -> tuple[bytes, str]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        gh = GitHub(session, base_url=base_url, oauth_token=token)
        entry = await file_entry(gh, infra, FILE_NAME, None)
    if entry is None:
        raise LemiError(
            f"{infra} has no {FILE_NAME} at the root of its default branch, or this token cannot read it: "
            f"check the name, and that the token can read {infra}"
        )
    return entry_bytes(entry), str(entry.get("sha", ""))


def _write(target: Path, text: bytes) -> None:
    """``text`` into ``target`` whole or not at all: a temporary file beside it, renamed over it."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
        try:
            with os.fdopen(fd, "wb") as file:
                file.write(text)
                file.flush()
                os.fsync(file.fileno())
            os.chmod(temporary, 0o644)
            os.replace(temporary, target)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise LemiError(f"cannot write {target}: {exc.strerror}; check the directory's permissions") from None
