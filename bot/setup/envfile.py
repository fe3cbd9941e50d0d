""".env: the file the setup page writes the App's credentials to, and ``lemi serve --env-file``
reads (``make run``). Written with mode 0600, never over an existing file unless replacing it was
confirmed; read as ``KEY=value`` lines, the environment always winning over the file."""

from __future__ import annotations

import datetime as dt
import logging
import os
import re
import secrets
from collections.abc import MutableMapping
from pathlib import Path

from bot.core.settings import DEFAULT_API_URL
from bot.core.templating import environment
from bot.setup.manifest import Credentials

log = logging.getLogger("lemi.setup")

ENV_FILE = ".env"
# the variables lemi's setup writes; a confirmed replacement drops their old lines from .env
ENV_KEYS = (
    "GITHUB_APP_ID",
    "GITHUB_APP_PRIVATE_KEY",
    "GITHUB_APP_PRIVATE_KEY_PATH",
    "GITHUB_WEBHOOK_SECRET",
    "GITHUB_API_URL",
)
_ENV_KEY_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class EnvExists(FileExistsError):
    """.env exists and replacing it was not confirmed."""


def _quote_env(value: str) -> str:
    """A single-quoted .env value: literal for a shell's `.`, python-dotenv and :func:`read_env_file`."""
    if "'" in value or any(c in value for c in "\r\n\0"):
        raise ValueError("a value with a quote or a line break cannot be written to .env")
    return f"'{value}'"


def render_env(credentials: Credentials, *, now: dt.datetime | None = None, keep: list[str] | None = None) -> str:
    """The text of .env: ``keep`` (lines of other variables of an existing .env) then the App's block."""
    stamp = (now or dt.datetime.now(dt.UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")
    values = [
        ("GITHUB_APP_ID", str(credentials.app_id)),
        # one line: settings.py turns the literal \n back into line breaks
        ("GITHUB_APP_PRIVATE_KEY", credentials.pem.strip().replace("\r\n", "\n").replace("\n", "\\n") + "\\n"),
    ]
    if credentials.webhook_secret:
        values.append(("GITHUB_WEBHOOK_SECRET", credentials.webhook_secret))
    if credentials.api_url != DEFAULT_API_URL:
        values.append(("GITHUB_API_URL", credentials.api_url))
    return (
        environment()
        .get_template("setup/env.j2")
        .render(
            app=credentials,
            label=_printable(f"{credentials.name} ({credentials.html_url})"),
            stamp=stamp,
            keep=keep or [],
            values=[(k, _quote_env(v)) for k, v in values],
            missing_secret=not credentials.webhook_secret,
        )
    )


def _printable(text: str) -> str:
    return "".join(c if c.isprintable() else " " for c in text)[:200]


# the comment lines of setup/env.j2, dropped with the values they describe
_OWN_COMMENTS = (
    "# lemi's GitHub App ",
    "# Secret: this file holds",
    "# `make run` (lemi serve",
    "# GitHub returned no webhook secret",
    "# GITHUB_WEBHOOK_SECRET=",
)


def kept_lines(existing: str) -> list[str]:
    """The lines of an existing .env that a confirmed replacement keeps (other variables, comments)."""
    kept = []
    for line in existing.splitlines():
        key = env_line(line)
        if (key is not None and key[0] in ENV_KEYS) or line.startswith(_OWN_COMMENTS):
            continue
        kept.append(line)
    while kept and not kept[-1].strip():
        kept.pop()
    return kept


def write_env(path: Path, text: str, *, replace: bool = False) -> None:
    """Write ``text`` to ``path`` with mode 0600. Without ``replace`` an existing file (or
    symlink) is never touched (O_EXCL); with it the new file is renamed over the old one."""
    data = text.encode("utf-8")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    target = path
    if replace:
        target = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    try:
        fd = os.open(target, flags, 0o600)
    except FileExistsError:
        raise EnvExists(str(path)) from None
    try:
        os.fchmod(fd, 0o600)  # exactly 0600, whatever the umask
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        os.unlink(target)
        raise
    os.close(fd)
    if replace:
        try:
            os.replace(target, path)
        except BaseException:
            os.unlink(target)
            raise
    try:  # the new directory entry survives a crash too
        dir_fd = os.open(path.parent, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)


def env_line(line: str) -> tuple[str, str] | None:
    """(key, value) of a ``KEY=value`` line of .env, or None for a comment, a blank or anything else."""
    text = line.strip()
    if not text or text.startswith("#"):
        return None
    if text.startswith("export "):
        text = text[7:].lstrip()
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or not _ENV_KEY_RE.fullmatch(key):
        return None
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        value = value[1:-1]
    else:
        value = re.split(r"\s+#", value, maxsplit=1)[0].rstrip()
    return key, value


def read_env_file(path: str | Path) -> dict[str, str]:
    """``KEY=value`` lines (``export``, quotes and comments allowed; no expansion) of a .env file."""
    values: dict[str, str] = {}
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        parsed = env_line(line)
        if parsed is not None:
            values[parsed[0]] = parsed[1]
    return values


def load_env_file(path: str | Path = ENV_FILE, environ: MutableMapping[str, str] | None = None) -> list[str]:
    """Put the variables of ``path`` (./.env) that ``environ`` does not set into it; returns their
    names (none when there is no such file). The environment always wins over the file."""
    env = os.environ if environ is None else environ
    file = Path(path)
    if not file.is_file():
        return []
    mode = file.stat().st_mode & 0o777
    if mode & 0o077:
        log.warning("%s is readable by other users (mode %o): chmod 600 %s", file, mode, file)
    loaded = []
    for key, value in read_env_file(file).items():
        if key not in env:
            env[key] = value
            loaded.append(key)
    return loaded
