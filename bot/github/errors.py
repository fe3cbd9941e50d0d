"""GitHub's failures as lemi's two kinds (bot/core/errors.py).

Every call made through :class:`bot.github.client.GitHub` raises these, never gidgethub's or
aiohttp's exceptions: the client translates them in one place (:func:`translate`).

* :class:`GitHubRefused` (a :class:`UserError`): GitHub answered 4xx and would answer the same
  again: 400, 404, 405 (not mergeable), 410, 422 (validation failed), ...;
* :class:`GitHubRateLimited` (:class:`Transient`): a primary or secondary rate limit (403 or 429
  with ``retry-after``, ``x-ratelimit-remaining: 0`` or GitHub's "secondary rate limit" text);
* :class:`GitHubDenied` (:class:`Transient`): 401, 409, or a 403 that is not a rate limit --
  credentials, permissions or a concurrent change, which may settle (a token renewed, a new
  installation's permissions accepted, another write finished);
* :class:`GitHubBroken` (:class:`Transient`): 5xx;
* :class:`GitHubUnreachable` (:class:`Transient`): no answer at all (the connection failed or
  timed out).

The first four are :class:`GitHubError`\\ s: they keep the HTTP status, GitHub's message, the
response headers and, for a 422, GitHub's ``errors`` list. Callers that expect a status (a 404
for "there is no such file") catch :class:`GitHubError` and test ``status_code``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import aiohttp
from gidgethub import HTTPException, RateLimitExceeded

from bot.core.errors import Transient, UserError

RATE_LIMIT_FALLBACK = 60.0  # seconds, when GitHub says "rate limit" but not until when


class GitHubError(Exception):
    """GitHub answered with an error status. Raised only as one of the subclasses below, each
    a :class:`UserError` or a :class:`Transient`; ``str(exc)`` is GitHub's message."""

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        headers: Mapping[str, str] | None = None,
        errors: Any = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.headers: Mapping[str, str] = headers or {}
        self.errors = errors  # GitHub's "errors" of a 422, when it gave them


class GitHubRefused(GitHubError, UserError):
    """A 4xx GitHub would answer again: the request (or what it names) must change."""


class GitHubDenied(GitHubError, Transient):
    """401, 409, or a 403 that is not a rate limit: may settle without any change of lemi's."""


class GitHubRateLimited(GitHubError, Transient):
    """A primary or secondary rate limit; ``retry_after`` is the wait GitHub asked for."""

    def __init__(self, message: str, *, retry_after: float, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class GitHubBroken(GitHubError, Transient):
    """A 5xx: GitHub failed (and a POST may or may not have been applied)."""


class GitHubUnreachable(Transient):
    """No answer from GitHub: the connection failed, was cut, or timed out."""


def error_text(exc: HTTPException) -> str:
    """GitHub's message for a failed call ("Pull Request is not mergeable"), or the status phrase."""
    text = " ".join(str(a) for a in exc.args if a and not isinstance(a, int)).strip()
    status = getattr(exc.status_code, "phrase", "") or str(exc.status_code)
    return text or f"{int(exc.status_code)} {status}"


def rate_limit_wait(exc: HTTPException, now: float | None = None) -> float | None:
    """Seconds GitHub asks us to wait, or None when the error is not a rate limit."""
    headers = {k.lower(): v for k, v in (getattr(exc, "headers", None) or {}).items()}
    if exc.status_code not in (403, 429):
        return None
    if "retry-after" in headers:
        try:
            return max(0.0, float(headers["retry-after"]))
        except ValueError:
            return RATE_LIMIT_FALLBACK
    if headers.get("x-ratelimit-remaining") == "0" and "x-ratelimit-reset" in headers:
        try:
            return max(0.0, float(headers["x-ratelimit-reset"]) - (now or time.time()))
        except ValueError:
            return RATE_LIMIT_FALLBACK
    message = " ".join(str(a) for a in exc.args).lower()
    if "secondary rate limit" in message or "abuse" in message:
        return RATE_LIMIT_FALLBACK
    return None


def translate(exc: BaseException, host: str | None = None) -> Exception | None:
    """lemi's exception for one of gidgethub's or aiohttp's (None for anything else); ``host``: GitHub's,
    named when it could not be reached."""
    if isinstance(exc, HTTPException):
        status = int(exc.status_code)
        details: dict[str, Any] = {
            "status_code": status,
            "headers": dict(exc.headers or {}),
            "errors": getattr(exc, "errors", None),
        }
        message = error_text(exc)
        wait = rate_limit_wait(exc)
        if wait is None and (status == 429 or isinstance(exc, RateLimitExceeded)):
            wait = RATE_LIMIT_FALLBACK  # a rate limit that does not say until when
        if wait is not None:
            return GitHubRateLimited(message, retry_after=wait, **details)
        if status >= 500:
            return GitHubBroken(message, **details)
        if status in (401, 403, 409):
            return GitHubDenied(message, **details)
        return GitHubRefused(message, **details)
    if isinstance(exc, (aiohttp.ClientError, TimeoutError)):
        what = str(exc) or ("no answer in time" if isinstance(exc, TimeoutError) else type(exc).__name__)
        where = f" at {host}" if host and host not in what else ""
        return GitHubUnreachable(f"GitHub{where} could not be reached: {what}")
    return None
