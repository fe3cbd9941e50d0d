"""GitHub App authentication: the App JWT and cached installation tokens.

One aiohttp session for the process. The App's own client signs a JWT
(issued 60 s in the past, 10 minutes long, refreshed by gidgethub before it
expires). Installation tokens are cached until five minutes before they
expire, with one lock per installation so concurrent jobs fetch a token once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import aiohttp
from cachetools import TLRUCache, TTLCache

from bot.github.client import GitHub
from bot.github.contents import repo_vars
from bot.github.errors import GitHubError
from bot.github.writer import Writers

REFRESH_MARGIN = 300.0  # seconds before expiry when a cached token is replaced


def _token_ttu(_key: Any, value: tuple[str, float], now: float) -> float:
    return value[1] - REFRESH_MARGIN


def _wall() -> float:
    return datetime.now(UTC).timestamp()


class AppAuth:
    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        app_id: str,
        private_key: str,
        base_url: str,
        sleep: Callable[[float], Awaitable[None]] | None = None,
        on_response: Callable[[str, str, int, Mapping[str, str]], None] | None = None,
        writers: Writers | None = None,
    ) -> None:
        self._session = session
        self._base_url = base_url
        self._sleep = sleep
        self._on_response = on_response
        # one writer per installation, shared by all its clients (bot/github/writer.py)
        self.writers = writers or Writers()
        self.app = GitHub(
            session,
            base_url=base_url,
            app_id=app_id,
            private_key=private_key,
            sleep=sleep,
            on_response=on_response,
            writer=self.writers.of("app"),
        )
        self._tokens: TLRUCache[int, tuple[str, float]] = TLRUCache(maxsize=4096, ttu=_token_ttu, timer=_wall)
        self._installations: TTLCache[str, int] = TTLCache(maxsize=4096, ttl=3600)
        self._locks: dict[int, asyncio.Lock] = {}
        self._bot_login: str | None = None

    async def installation_token(self, installation_id: int) -> str:
        cached = self._tokens.get(installation_id)
        if cached is not None:
            return cached[0]
        lock = self._locks.setdefault(installation_id, asyncio.Lock())
        async with lock:
            cached = self._tokens.get(installation_id)
            if cached is not None:
                return cached[0]
            response = await self.app.post(f"/app/installations/{installation_id}/access_tokens", data=b"")
            expires = datetime.fromisoformat(response["expires_at"].replace("Z", "+00:00")).timestamp()
            self._tokens[installation_id] = (response["token"], expires)
            return str(response["token"])

    async def for_installation(self, installation_id: int) -> GitHub:
        token = await self.installation_token(installation_id)
        return GitHub(
            self._session,
            base_url=self._base_url,
            oauth_token=token,
            writer=self.writers.of(installation_id),
            sleep=self._sleep,
            on_response=self._on_response,
            identity=self.bot_login,
        )

    @property
    def known_bot_login(self) -> str | None:
        """The bot login if it has been read already (intake never waits for GitHub)."""
        return self._bot_login

    async def installed(self, repository: str) -> bool:
        """Is the App installed on ``owner/name``? (A repository that does not exist is not.)"""
        try:
            await self.installation_for(repository)
        except GitHubError as exc:
            if exc.status_code == 404:
                return False
            raise
        return True

    async def bot_login(self) -> str:
        """The login the App acts as ("<slug>[bot]"), read once from GET /app."""
        if self._bot_login is None:
            app = await self.app.getitem("/app")
            self._bot_login = f"{app['slug']}[bot]"
        return self._bot_login

    async def installation_for(self, repository: str) -> int:
        """The installation of the App on ``owner/name`` (cached for an hour)."""
        if repository not in self._installations:
            data = await self.app.getitem("/repos/{owner}/{repo}/installation", repo_vars(repository))
            self._installations[repository] = int(data["id"])
        return self._installations[repository]

    async def for_repository(self, repository: str) -> GitHub:
        return await self.for_installation(await self.installation_for(repository))
