"""``lemi doctor``: the whole setup checked end to end, as one checklist.

In order: the App's settings and credentials (an App JWT, ``GET /app``), its webhook
configuration, permissions and events against app.yml, its installations on the infra
repository and on the service repositories the infra files name, lemi.yml, every
environment in AWS (bot/aws/env_checks.py), and the queue (bot/store/probe.py). A check
that cannot run because an earlier one failed is left out: the earlier one says what to fix.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp

from bot.aws.clients import AwsClients
from bot.aws.env_checks import environment_checks
from bot.core.config import Config
from bot.core.doctor import Check, failed, passed
from bot.core.settings import Settings
from bot.github.app_checks import (
    CREDENTIALS_FIX,
    app_credentials,
    installations,
    jwt_problem,
    webhook_and_subscriptions,
)
from bot.github.auth import AppAuth
from bot.store.probe import queue_problem

GITHUB_TIMEOUT = 20.0  # seconds a GitHub request may take before doctor reports it


@dataclass(frozen=True)
class Setup:
    """What doctor checks: the settings (or why they are invalid), lemi.yml (or why it is
    invalid, and where), and app.yml's manifest."""

    settings: Settings | None
    settings_problem: str
    config: Config | None
    config_problem: str
    config_path: str
    manifest: Mapping[str, Any]


async def doctor(setup: Setup) -> list[Check]:
    checks: list[Check] = []
    settings = setup.settings
    if settings is None:
        checks.append(failed("settings", setup.settings_problem, "fix those variables (docs/configuration.md)"))
    else:
        checks += await github_checks(settings, setup.config, setup.manifest)
    if setup.config is None:
        fix = f"correct {setup.config_path} as each problem's hint says (`lemi config check` checks it alone)"
        checks.append(failed("lemi.yml", setup.config_problem, fix))
    else:
        names = ", ".join(setup.config.environments)
        checks.append(passed("lemi.yml", f"{setup.config_path} is valid (environments: {names})"))
        async with AwsClients(setup.config) as aws:
            checks += await environment_checks(aws)
    if settings is not None:
        problem = await queue_problem(settings.queue_url)
        checks.append(
            failed("queue", problem, "fix LEMI_QUEUE or the access to it")
            if problem
            else passed("queue", f"{settings.queue_url} is writable")
        )
    return checks


async def github_checks(settings: Settings, config: Config | None, manifest: Mapping[str, Any]) -> list[Check]:
    problem = jwt_problem(settings.app_id, settings.private_key)
    if problem:
        return [failed("App credentials", problem, CREDENTIALS_FIX)]
    assert settings.app_id and settings.private_key
    timeout = aiohttp.ClientTimeout(total=GITHUB_TIMEOUT)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        auth = AppAuth(session, app_id=settings.app_id, private_key=settings.private_key, base_url=settings.api_url)
        credentials, app = await app_credentials(auth, settings.api_url)
        if app is None:
            return [credentials]
        checks = [credentials]
        checks += await webhook_and_subscriptions(auth, app, manifest, secret_here=bool(settings.webhook_secret))
        if config is not None:
            checks += await installations(auth, config)
        return checks
