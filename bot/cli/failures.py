"""What the CLI says about a failure: one line of error and a hint, as text or as JSON.

The JSON shape is stable: ``{"ok": false, "error": str, "hint": str | null, "kind": ...}`` with
``kind`` one of ``usage`` (exit 2), ``user`` (retrying cannot fix it), ``transient`` (GitHub or
AWS could not answer now, or the network failed) and ``bug``; an AWS failure adds ``code`` and
``operation``, GitHub's ``status``, a network failure ``host``.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import click

from bot.aws.errors import AwsError
from bot.core.errors import Transient, UserError, classify
from bot.github.errors import GitHubError

HINT = "\n    hint: "
NETWORK_HINT = "check the network, a proxy or VPN, and that the address is right; then run the command again"


@dataclass
class Failure:
    error: str
    hint: str | None
    kind: str
    extra: dict[str, Any] = field(default_factory=dict)

    def text(self) -> str:
        return f"error: {self.error}" + (f"{HINT}{self.hint}" if self.hint else "")

    def as_dict(self) -> dict[str, Any]:
        return {"ok": False, "error": self.error, "hint": self.hint, "kind": self.kind, **self.extra}


def _split(text: str) -> tuple[str, str | None]:
    error, _, hint = text.partition(HINT)
    return error, (hint or None)


def _host(exc: BaseException) -> str | None:
    """The host a network error was about, when the exception says."""
    if isinstance(exc, aiohttp.ClientConnectorError):
        return f"{exc.host}:{exc.port}"
    if isinstance(exc, aiohttp.ClientResponseError) and exc.request_info is not None:
        return exc.request_info.real_url.host
    return None


def network(exc: BaseException) -> bool:
    """An exception of the network that no adapter translated (a connection, DNS, a timeout)."""
    return isinstance(exc, (aiohttp.ClientError, socket.gaierror, ConnectionError, TimeoutError))


def describe(exc: BaseException) -> Failure:
    """The failure to report for ``exc`` (any exception: one lemi does not know is a bug)."""
    if isinstance(exc, click.ClickException):
        return Failure(exc.format_message(), None, "usage" if isinstance(exc, click.UsageError) else "user")
    if isinstance(exc, GitHubError):
        error, hint = _split(f"GitHub answered {exc.status_code}: {exc.message}")
        return Failure(error, hint, classify(exc), {"status": exc.status_code})
    if isinstance(exc, (UserError, Transient)):
        error, hint = _split(str(exc))
        extra: dict[str, Any] = {}
        if isinstance(exc, AwsError):
            extra = {"code": exc.code or None, "operation": exc.operation or None}
        return Failure(error, hint, classify(exc), extra)
    if network(exc):
        host = _host(exc)
        where = f"could not reach {host}" if host else "the network failed"
        return Failure(f"{where}: {str(exc) or type(exc).__name__}", NETWORK_HINT, "transient", {"host": host})
    return Failure(
        f"internal error: {type(exc).__name__}: {exc}",
        "this is a bug in lemi; run again with LEMI_DEBUG=1 for details and report it",
        "bug",
    )
