"""The CLI's edge to a checkout on disk: where the repository is, its name,
its services and their files. The App reads the same files from GitHub and
hands them to the same parsers.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from bot.core.spec import ENVIRONMENT_DIR, SERVICE_FILE
from bot.core.yamlsafe import DEFAULT_LIMITS

_REMOTE_RE = re.compile(
    r"""^(?:
        (?:ssh://)?[\w.-]+@(?P<ssh_host>[\w.-]+)(?::\d+)?[:/]        # git@github.com:owner/repo, ssh://git@host/owner/repo
      | (?P<scheme>https?)://(?:[^@/]+@)?(?P<web_host>[\w.-]+(?::\d+)?)/  # https://github.com/owner/repo
    )(?P<repo>[\w.-]+/[\w.-]+?)(?:\.git)?/?$""",
    re.VERBOSE,
)


def parse_remote(url: str) -> str | None:
    """'git@github.com:acme/demo-service.git' -> 'acme/demo-service'."""
    match = _REMOTE_RE.match(url.strip())
    return match.group("repo") if match else None


def remote_web_url(url: str) -> str | None:
    """The web address of a remote's repository: 'git@github.com:acme/demo-service.git' ->
    'https://github.com/acme/demo-service' (an https remote keeps its host and port)."""
    match = _REMOTE_RE.match(url.strip())
    if match is None:
        return None
    if match.group("web_host"):
        return f"{match.group('scheme')}://{match.group('web_host')}/{match.group('repo')}"
    return f"https://{match.group('ssh_host')}/{match.group('repo')}"


def _git(root: Path, *args: str) -> str | None:
    try:
        done = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def repo_root(start: Path | None = None) -> Path:
    start = (start or Path.cwd()).resolve()
    top = _git(start, "rev-parse", "--show-toplevel")
    return Path(top) if top else start


def repository_name(root: Path) -> str | None:
    url = _git(root, "remote", "get-url", "origin")
    return parse_remote(url) if url else None


def repository_web_url(root: Path) -> str | None:
    """Where the checkout's remote ``origin`` is on the web, if it is a GitHub-like remote."""
    url = _git(root, "remote", "get-url", "origin")
    return remote_web_url(url) if url else None


def list_services(root: Path) -> list[str]:
    deploy = root / "deploy"
    if not deploy.is_dir():
        return []
    return sorted(p.name for p in deploy.iterdir() if (p / SERVICE_FILE).is_file())


def read_service_files(root: Path, service: str) -> dict[str, bytes]:
    """service.yaml and environment/*.y[a]ml, relative to deploy/<service>/.

    Reads at most one byte past the size cap so an enormous file is refused
    by the loader without being read whole.
    """
    base = root / "deploy" / service
    files: dict[str, bytes] = {}
    candidates = [base / SERVICE_FILE]
    env_dir = base / ENVIRONMENT_DIR
    if env_dir.is_dir():
        candidates += sorted(p for p in env_dir.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())
    for path in candidates:
        if path.is_file():
            with path.open("rb") as handle:
                files[path.relative_to(base).as_posix()] = handle.read(DEFAULT_LIMITS.max_bytes + 1)
    return files
