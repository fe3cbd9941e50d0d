"""The GitHub side of ``lemi doctor``: the App's credentials, its webhook configuration, its
permissions and events, and its installations on the infra and service repositories.

Asked with the App's JWT (and, to read the infra files, the infra repository's installation
token); what the answers mean is decided in bot/core/doctor.py.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Mapping
from typing import Any

from gidgethub.apps import get_jwt

from bot.core.config import Config
from bot.core.doctor import (
    MAX_SERVICE_REPOS,
    Check,
    app_subscriptions,
    failed,
    hook_config,
    infra_listing,
    passed,
    service_installations,
    services_listed,
)
from bot.core.errors import Transient
from bot.core.ownership import MAX_INFRA_FILE, recorded_owner
from bot.github.auth import AppAuth
from bot.github.contents import file_entry, list_dir
from bot.github.errors import GitHubError

MAX_INFRA_FILES = 500  # infra files read for their `repository` (the rest are not read)
CREDENTIALS_FIX = (
    "set GITHUB_APP_ID to the App's id ('About' on its settings page) and GITHUB_APP_PRIVATE_KEY "
    "(or GITHUB_APP_PRIVATE_KEY_PATH) to a private key generated there"
)


def jwt_problem(app_id: str | None, private_key: str | None) -> str | None:
    """Why an App JWT cannot be signed with these credentials (no network), or None."""
    if not app_id or not private_key:
        return "GITHUB_APP_ID or the App's private key is not set"
    try:
        get_jwt(app_id=app_id, private_key=private_key)
    except Exception as exc:  # noqa: BLE001 - PyJWT and cryptography raise several kinds for a bad key
        return f"the private key cannot sign the App's JWT ({type(exc).__name__})"
    return None


def _answer(exc: Exception) -> str:
    if isinstance(exc, GitHubError):
        return f"GitHub answered {exc.status_code}: {exc.message}"
    return str(exc) or type(exc).__name__


async def app_credentials(auth: AppAuth, api_url: str) -> tuple[Check, dict[str, Any] | None]:
    """``GET /app`` with the App's JWT: the check, and the App when GitHub answered."""
    name = "App credentials"
    try:
        app = await auth.app.getitem("/app")
    except GitHubError as exc:
        if exc.status_code == 401:
            return failed(name, f"GitHub refused the App's JWT ({_answer(exc)})", CREDENTIALS_FIX), None
        return failed(name, _answer(exc), "try again; if it persists, check GitHub's status"), None
    except Transient as exc:
        return failed(
            name, f"{api_url} could not be reached: {_answer(exc)}", "check GITHUB_API_URL and the network"
        ), None
    return passed(name, f"App {app.get('slug')} (id {app.get('id')}) at {api_url}"), app


async def webhook_and_subscriptions(
    auth: AppAuth, app: Mapping[str, Any], manifest: Mapping[str, Any], *, secret_here: bool
) -> list[Check]:
    try:
        config = await auth.app.getitem("/app/hook/config")
    except (GitHubError, Transient) as exc:
        hook = failed("App webhook", f"cannot read the App's webhook configuration: {_answer(exc)}", "try again")
    else:
        hook = hook_config(config, secret_here=secret_here)
    return [hook, *app_subscriptions(app, manifest)]


async def installations(auth: AppAuth, config: Config) -> list[Check]:
    """The App's installation on the infra repository and on the service repositories the
    infra files' ``repository`` attributes name (the first MAX_SERVICE_REPOS, the rest counted)."""
    infra = config.infra
    try:
        on_infra = await auth.installed(infra.repository)
    except (GitHubError, Transient) as exc:
        return [failed("installation: infra repository", _answer(exc), "try again")]
    if not on_infra:
        return [
            failed(
                "installation: infra repository",
                f"lemi is not installed on {infra.repository} (lemi.yml infra.repository)",
                f"install the App on {infra.repository} (Settings → Integrations → GitHub Apps → lemi → Configure), "
                "or correct infra.repository in lemi.yml",
            )
        ]
    checks = [passed("installation: infra repository", f"installed on {infra.repository}")]
    try:
        owners, unreadable = await _recorded_owners(auth, config)
    except (GitHubError, Transient) as exc:
        return [*checks, failed("infra files", f"cannot read them in {infra.repository}: {_answer(exc)}", "try again")]
    repositories = sorted(set(owners.values()), key=str.casefold)
    checked = repositories[:MAX_SERVICE_REPOS]
    try:
        found = await asyncio.gather(*(auth.installed(r) for r in checked))
    except (GitHubError, Transient) as exc:
        return [*checks, failed("installations: service repositories", _answer(exc), "try again")]
    installed = dict(zip(checked, found, strict=True))
    unchecked = len(repositories) - len(checked)
    return checks + service_installations(installed, unchecked, unreadable, infra.repository)


async def _recorded_owners(auth: AppAuth, config: Config) -> tuple[dict[str, str], dict[str, str]]:
    """service -> the repository its infra file records, and path -> why a file cannot be read."""
    infra = config.infra
    gh = await auth.for_repository(infra.repository)
    directory, pattern = infra_listing(infra.path)
    ref = infra.base_branch or await _default_branch(gh, infra.repository)
    entries = await list_dir(gh, infra.repository, directory, ref)
    services = services_listed((str(e.get("name", "")) for e in entries), pattern)[:MAX_INFRA_FILES]
    semaphore = asyncio.Semaphore(8)

    async def read(service: str) -> tuple[str, str | None, str]:
        path = infra.file_for(service)
        async with semaphore:
            entry = await file_entry(gh, infra.repository, path, ref)
        if entry is None:
            return service, None, ""
        if int(entry.get("size", 0)) > MAX_INFRA_FILE:
            return service, None, f"it is larger than {MAX_INFRA_FILE:,} bytes"
        text = base64.b64decode(entry.get("content") or "")
        record = await asyncio.to_thread(recorded_owner, text, service, path)
        return service, record.repository, record.problem

    owners: dict[str, str] = {}
    unreadable: dict[str, str] = {}
    for service, repository, problem in await asyncio.gather(*(read(s) for s in services)):
        if problem:
            unreadable[infra.file_for(service)] = problem
        elif repository:
            owners[service] = repository
    return owners, unreadable


async def _default_branch(gh: Any, repository: str) -> str:
    owner, name = repository.split("/", 1)
    data = await gh.getitem("/repos/{owner}/{repo}", {"owner": owner, "repo": name})
    return str(data["default_branch"])
