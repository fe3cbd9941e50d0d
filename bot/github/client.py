"""gidgethub client with lemi's retry policy.

* 5xx on reads and idempotent writes (GET/PUT/PATCH/DELETE) are retried with
  backoff; a POST that got a 5xx may have been applied, so it is not retried
  here -- the job is, and handlers find what they made before;
* primary and secondary rate limits (403/429 with ``retry-after`` or
  ``x-ratelimit-remaining: 0``) are retried after the time GitHub asks for,
  up to a bound (longer waits go back to the queue as a job retry);
* writes (POST, PATCH, PUT, DELETE) go through the identity's writer (bot/github/writer.py):
  one at a time, within GitHub's secondary limits, the urgent first; it also waits out a
  secondary-limit answer to a write, so the client retries only the primary limit of a write;
* what still fails leaves the client as lemi's exceptions, a user error or a transient
  one (bot/github/errors.py), never as gidgethub's or aiohttp's.

A client knows whose it is (:meth:`GitHub.login`): the App's bot login for an
installation token, the token's user for a personal token. lemi finds the
comments and pull requests it made by that login only.
"""

from __future__ import annotations

import asyncio
import copy
import functools
import urllib.parse
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from typing import Any

import aiohttp
from gidgethub import HTTPException
from gidgethub.abc import JSON_CONTENT_TYPE
from gidgethub.aiohttp import GitHubAPI
from uritemplate import variable

from bot.github.errors import GitHubError, rate_limit_wait, translate
from bot.github.writer import READS, Writer

REQUESTER = "lemi"
MAX_ATTEMPTS = 4
MAX_WAIT = 60.0  # seconds: beyond this, give the job back to the queue
IDEMPOTENT = frozenset({"GET", "PUT", "PATCH", "DELETE", "HEAD"})


def error_message(exc: GitHubError) -> str:
    """GitHub's message for a failed call ("Pull Request is not mergeable"), or the status phrase."""
    return exc.message


def _primary(exc: HTTPException) -> bool:
    """Is this the primary rate limit (the hourly request quota)?"""
    return {k.lower(): v for k, v in (exc.headers or {}).items()}.get("x-ratelimit-remaining") == "0"


def backoff(attempt: int, base: float = 0.5, cap: float = 8.0) -> float:
    return min(cap, base * 2.0 ** (attempt - 1))


class GitHub(GitHubAPI):
    """One GitHub identity (App JWT, installation token or personal token)."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        base_url: str,
        oauth_token: str | None = None,
        app_id: str | None = None,
        private_key: str | None = None,
        writer: Writer | None = None,
        sleep: Callable[[float], Awaitable[None]] | None = None,
        on_response: Callable[[str, str, int, Mapping[str, str]], None] | None = None,
        identity: Callable[[], Awaitable[str]] | None = None,
    ) -> None:
        super().__init__(
            session, REQUESTER, oauth_token=oauth_token, app_id=app_id, private_key=private_key, base_url=base_url
        )
        self._writer = writer or Writer()  # a client of its own (the CLI's token) keeps its own budget
        self._sleep = sleep or asyncio.sleep
        self._on_response = on_response
        self._identity = identity
        self._login: str | None = None
        self._asked = False

    @property
    def writer(self) -> Writer:
        """Where this client's writes wait their turn (shared by every client of its identity)."""
        return self._writer

    async def login(self) -> str | None:
        """Whose this client is: the App's ``<slug>[bot]`` (given by :class:`AppAuth`), or the
        user of a personal token (``GET /user``, once). None for an installation token that is
        not the App's own (``GITHUB_TOKEN`` in Actions, say): GitHub does not tell such a token
        which bot it writes as, so callers fall back to "written by a bot"."""
        if not self._asked:
            if self._identity is not None:
                self._login = await self._identity()
            else:
                try:
                    self._login = str((await self.getitem("/user"))["login"])
                except GitHubError as exc:
                    if exc.status_code != 403:
                        raise
            self._asked = True
        return self._login

    async def wrote(self, item: Mapping[str, Any]) -> bool:
        """Did this client's identity write ``item`` (a comment or a pull request)?"""
        user = item.get("user") or {}
        own = await self.login()
        if own is None:
            return user.get("type") == "Bot"
        return str(user.get("login", "")).casefold() == own.casefold()

    def conditional(self, cache: MutableMapping[str, Any]) -> GitHub:
        """This client, with GETs made conditional on ``cache`` (shared by the caller across
        clients and jobs): an unchanged resource is answered 304 from its ETag, which GitHub
        does not count against the rate limit, and a changed one is read again at once."""
        clone = copy.copy(self)
        clone._cache = cache
        return clone

    async def sleep(self, seconds: float) -> None:
        await self._sleep(seconds)

    async def _make_request(
        self,
        method: str,
        url: str,
        url_vars: Mapping[str, variable.VariableValue] | None,
        data: Any,
        accept: str,
        jwt: str | None = None,
        oauth_token: str | None = None,
        content_type: str = JSON_CONTENT_TYPE,
        extra_headers: dict[str, str] | None = None,
    ) -> tuple[bytes, str | None, int]:
        """Every call goes through here: gidgethub's and aiohttp's exceptions leave it as
        lemi's (bot/github/errors.py), after the retries below."""
        try:
            return await super()._make_request(
                method, url, url_vars, data, accept, jwt=jwt, oauth_token=oauth_token,
                content_type=content_type, extra_headers=extra_headers,
            )  # fmt: skip
        except (HTTPException, aiohttp.ClientError, TimeoutError) as exc:
            translated = translate(exc, urllib.parse.urlsplit(self.base_url).netloc or None)
            if translated is None:  # pragma: no cover - translate knows every class caught here
                raise
            raise translated from exc

    async def _request(
        self, method: str, url: str, headers: Mapping[str, str], body: bytes = b""
    ) -> tuple[int, Mapping[str, str], bytes]:
        attempt = 0
        while True:
            attempt += 1
            try:
                if method in READS:
                    response = await super()._request(method, url, headers, body)
                else:
                    response = await self._writer.send(
                        method, url, body, functools.partial(super()._request, method, url, headers, body)
                    )
            except (TimeoutError, aiohttp.ClientConnectionError):
                # nothing reached GitHub, or a read that can be repeated
                if attempt >= MAX_ATTEMPTS or (method not in IDEMPOTENT and attempt > 1):
                    raise
                await self.sleep(backoff(attempt))
                continue
            if self._on_response is not None:
                self._on_response(method, url, response[0], response[1])
            return response

    async def handle_rate_limit_error(self, *, method: str, url: str, exception: HTTPException, attempt: int) -> bool:
        if attempt >= MAX_ATTEMPTS:
            return False
        if method not in READS and exception.status_code in (403, 429) and not _primary(exception):
            return False  # the writer has waited for GitHub's secondary limit already
        wait = rate_limit_wait(exception)
        if wait is None:
            if exception.status_code >= 500 and method in IDEMPOTENT:
                wait = backoff(attempt)
            else:
                return False
        if wait > MAX_WAIT:
            return False
        await self.sleep(wait)
        return True
