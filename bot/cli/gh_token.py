"""The developer's GitHub token, found where developers keep one.

In order: ``GH_TOKEN``, ``GITHUB_TOKEN``, ``GH_AUTH_TOKEN``, then GitHub CLI's stored login:
``gh auth token --hostname HOST`` when ``gh`` is installed (it reads the system keyring too),
else the ``oauth_token`` of HOST in gh's ``hosts.yml`` (``$GH_CONFIG_DIR``, else
``$XDG_CONFIG_HOME/gh``, else ``~/.config/gh``). HOST is GitHub's web host for GITHUB_API_URL.
The token is never printed or logged.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

from bot.core.problems import Invalid
from bot.core.yamlsafe import load

VARIABLES = ("GH_TOKEN", "GITHUB_TOKEN", "GH_AUTH_TOKEN")
GH_TIMEOUT = 10.0


def web_host(api_url: str) -> str:
    """github.com for https://api.github.com; the Enterprise host for https://HOST/api/v3."""
    host = urlsplit(api_url).hostname or "github.com"
    return "github.com" if host == "api.github.com" else host


def token(api_url: str) -> str | None:
    """The first token found (see the module), or None."""
    for found in (os.environ.get("GH_TOKEN"), os.environ.get("GITHUB_TOKEN"), os.environ.get("GH_AUTH_TOKEN")):
        if found:
            return found
    host = web_host(api_url)
    return _from_gh(host) or _from_hosts_file(host)


def _from_gh(host: str) -> str | None:
    gh = shutil.which("gh")
    if gh is None:
        return None
    try:
        done = subprocess.run(  # noqa: S603 - a fixed argv, no shell
            [gh, "auth", "token", "--hostname", host],
            capture_output=True,
            text=True,
            timeout=GH_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    value = done.stdout.strip()
    return value if done.returncode == 0 and value and "\n" not in value else None


def gh_config_dir() -> Path:
    named = os.environ.get("GH_CONFIG_DIR")
    if named:
        return Path(named)
    xdg = os.environ.get("XDG_CONFIG_HOME")
    return (Path(xdg) if xdg else Path.home() / ".config") / "gh"


def _from_hosts_file(host: str) -> str | None:
    path = gh_config_dir() / "hosts.yml"
    try:
        document = load(path.read_bytes(), str(path))
    except (OSError, Invalid):
        return None
    hosts = document.value
    entry = hosts.get(host) if isinstance(hosts, dict) else None
    value = entry.get("oauth_token") if isinstance(entry, dict) else None
    return value if isinstance(value, str) and value else None
