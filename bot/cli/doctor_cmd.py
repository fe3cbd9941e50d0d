"""``lemi doctor``: checks the whole setup and prints a checklist (bot/flows/doctor.py)."""

from __future__ import annotations

import asyncio

import click

from bot.cli.base import State, cli, emit_json, pass_state
from bot.cli.options import output_option
from bot.cli.render import checklist
from bot.cli.server import env_file_option
from bot.core.config import Config, config_path, load_config
from bot.core.doctor import report
from bot.core.problems import Invalid
from bot.core.settings import Settings, SettingsError, load_settings
from bot.flows.doctor import Setup, doctor
from bot.setup.manifest import app_manifest


@cli.command("doctor")
@env_file_option(
    "Set the variables of this file (KEY=value lines) that the environment does not set, as `lemi serve "
    "--env-file` does (the setup page writes the App's credentials to ./.env)."
)
@output_option
@pass_state
def doctor_command(state: State, env_file: str | None, output: str) -> None:
    """Check the whole setup end to end and print a checklist: the GitHub App's credentials,
    webhook, permissions, events and installations (infra and service repositories), lemi.yml,
    every environment in AWS (credentials, cluster, Datadog API key) and the queue. Reads the
    App's settings as `lemi serve` does (GITHUB_APP_ID, the private key, LEMI_QUEUE...).
    Exits 1 when a check fails."""
    settings: Settings | None = None
    settings_problem = ""
    try:
        settings = load_settings()
    except SettingsError as exc:
        settings_problem = str(exc)
    path = config_path(state.config_option or (settings.config_path if settings else None))
    config: Config | None = None
    config_problem = ""
    try:
        config = load_config(str(path))
    except Invalid as exc:
        config_problem = str(exc)
    setup = Setup(settings, settings_problem, config, config_problem, str(path), app_manifest())
    checks = asyncio.run(doctor(setup))
    if output == "json":
        emit_json(report(checks))
    else:
        checklist(checks)
    if not all(check.ok for check in checks):
        raise click.exceptions.Exit(1)
