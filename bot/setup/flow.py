"""The state of one setup, in this process only (a one-time, single-process step): the setup
token of this start, the registrations started (each bound to a single-use ``state`` and the
browser's setup cookie), the credentials awaiting a confirmed .env replacement, and the end."""

from __future__ import annotations

import hmac
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bot.core.templating import environment
from bot.setup.envfile import write_env
from bot.setup.fields import Target
from bot.setup.manifest import Credentials

STATE_TTL = 3600.0  # GitHub's manifest codes live an hour too
MAX_PENDING = 32
TOKEN_FILE = ".lemi-setup-token"  # beside .env: the one-time setup token of the running server


@dataclass
class Pending:
    state: str
    browser: str  # the setup cookie of the browser that started it
    target: Target
    public_url: str
    created: float


@dataclass
class Done:
    credentials: Credentials
    env_path: Path
    public_url: str
    target: Target
    replaced: bool


@dataclass
class SetupFlow:
    """The state of one setup, in this process only (it is a one-time, single-process step)."""

    env_path: Path
    config_path: Path
    token: str | None = field(default=None, repr=False)  # the one-time setup token; None once the App is registered
    pending: dict[str, Pending] = field(default_factory=dict)
    awaiting: tuple[str, Pending, Credentials] | None = (
        None  # (browser, pending, credentials) until .env may be replaced
    )
    done: Done | None = None

    @property
    def token_path(self) -> Path:
        return self.env_path.with_name(TOKEN_FILE)

    def retire_token(self) -> None:
        """The App is registered: the token stops working and its file goes (if it is still ours)."""
        token, self.token = self.token, None
        try:
            if token is not None and self.token_path.read_text(encoding="utf-8").strip() == token:
                self.token_path.unlink()
        except OSError:
            pass

    def remember(self, pending: Pending) -> None:
        now = time.monotonic()
        for state in [s for s, p in self.pending.items() if now - p.created > STATE_TTL]:
            del self.pending[state]
        while len(self.pending) >= MAX_PENDING:
            del self.pending[next(iter(self.pending))]
        self.pending[pending.state] = pending

    def take(self, state: str, browser: str) -> Pending | None:
        """The pending setup of ``state`` if this browser started it and it has not expired (single use)."""
        pending = self.pending.get(state)
        if pending is None or not hmac.compare_digest(pending.browser, browser):
            return None
        del self.pending[state]
        if time.monotonic() - pending.created > STATE_TTL:
            return None
        return pending


def write_token_file(flow: SetupFlow) -> str | None:
    """Replace .lemi-setup-token with this start's token (mode 0600); what went wrong, or None."""
    assert flow.token is not None
    try:
        write_env(flow.token_path, flow.token + "\n", replace=True)
    except OSError as exc:
        try:  # a stale token would only mislead
            flow.token_path.unlink(missing_ok=True)
        except OSError:
            pass
        return f"{type(exc).__name__}: {exc.strerror or exc}"
    return None


def announce_token(flow: SetupFlow, url: str, file_problem: str | None, console: Any) -> None:
    """Write the setup token to the console, outside the JSON log stream (a log line is stored
    and shipped; the token is for the person who started the server)."""
    text = (
        environment()
        .get_template("setup/console.txt.j2")
        .render(url=url, token=flow.token, token_path=str(flow.token_path), file_problem=file_problem)
    )
    try:
        console.write(text)
        console.flush()
    except (OSError, ValueError):  # no console (closed stderr): the file is the way
        pass
