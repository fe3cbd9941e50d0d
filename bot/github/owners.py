"""Reading owners from the infra repository (the decision itself is pure: bot/core/ownership.py).

``services/<service>.tf`` is read on the infra repository's default branch (``infra.base_branch``
when set) each time a decision needs it, with a conditional request: an unchanged file is
answered 304 from its ETag (GitHub does not count that against the rate limit), a changed one
is read at once, so every process and replica sees an edit immediately. Parsing runs off the
event loop and is cached by the file's blob id.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Awaitable, Callable
from typing import Any

from cachetools import LRUCache

from bot.core.config import Config
from bot.core.names import SERVICE_RE
from bot.core.ownership import (
    MAX_INFRA_FILE,
    NotOwner,
    Record,
    Verdict,
    decide,
    longer_names,
    naming_rule_fits,
    recorded_owner,
)
from bot.github.client import GitHub
from bot.github.contents import file_entry


class Owners:
    """Reads owners from the infra repository. One per process in the App (its caches are
    shared by every job); the CLI makes one per command.

    ``infra``: the client that reads the infra repository; ``installed``: whether lemi is
    installed on a repository (the App asks GitHub with its JWT; the CLI whether the token
    can see it)."""

    def __init__(
        self,
        config: Config,
        *,
        infra: Callable[[], Awaitable[GitHub]],
        installed: Callable[[str], Awaitable[bool]],
    ) -> None:
        self.config = config
        self._infra = infra
        self._installed = installed
        self._etags: LRUCache[str, Any] = LRUCache(maxsize=1024)  # gidgethub's conditional-request cache
        self._parsed: LRUCache[tuple[str, str, str], Record] = LRUCache(maxsize=1024)

    async def record(self, service: str) -> Record:
        if not SERVICE_RE.fullmatch(service):
            raise ValueError(f"{service!r} is not a service name")
        infra = self.config.infra
        path = infra.file_for(service)
        gh = (await self._infra()).conditional(self._etags)
        entry = await file_entry(gh, infra.repository, path, infra.base_branch)
        if entry is None:
            return Record(path, False)
        if int(entry.get("size", 0)) > MAX_INFRA_FILE:
            return Record(path, True, problem=f"it is larger than {MAX_INFRA_FILE:,} bytes")
        key = (path, str(entry.get("sha", "")), service)
        found = self._parsed.get(key)
        if found is None:
            text = base64.b64decode(entry.get("content") or "")
            found = await asyncio.to_thread(recorded_owner, text, service, path)
            self._parsed[key] = found
        return found

    async def verdict(self, service: str, repository: str, record: Record | None = None) -> Verdict:
        record = record or await self.record(service)
        better = None
        if record.repository is None and not record.problem and naming_rule_fits(service, repository):
            for candidate in longer_names(service, repository):
                if await self._installed(candidate):
                    better = candidate
                    break
        return decide(service, repository, record, better=better, infra=self.config.infra.repository)

    async def require(self, service: str, repository: str) -> Verdict:
        """The verdict, or :class:`NotOwner` with the refusal."""
        verdict = await self.verdict(service, repository)
        if not verdict.allowed:
            raise NotOwner(verdict)
        return verdict
