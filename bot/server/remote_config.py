"""lemi.yml read from the infra repository: ``LEMI_CONFIG=github://OWNER/INFRA/lemi.yml``.

The App reads the file at start with its installation on that repository (the default branch,
GitHub's contents API), and every process then reads it again:

* at most once a minute (:data:`EVERY`), with a conditional request: an unchanged file is
  answered 304 from its ETag, which GitHub does not count against the rate limit;
* at once when a push to that repository's default branch reaches the process's workers
  (handlers/config.py).

A new file that is valid replaces the configuration for every job that starts after it; one that
is invalid (or gone) is logged and kept out: the last good configuration stays in use, and
:meth:`RemoteConfig.status` says so (``/healthz``'s ``config_source``, and the readiness check).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from cachetools import LRUCache

from bot.core.config import Config, parse_config
from bot.core.config_source import RemoteSource
from bot.core.errors import Transient, UserError
from bot.core.problems import Invalid
from bot.github.auth import AppAuth
from bot.github.client import GitHub
from bot.github.contents import entry_bytes, file_entry

log = logging.getLogger("lemi.config")

EVERY = 60.0  # seconds between two reads of the file by one process


class RemoteConfigError(Exception):
    """The file could not be read or is not valid; the message says which and why."""


def etag_cache() -> LRUCache[str, Any]:
    """gidgethub's conditional-request cache (URL: ETag and the answer) of one reader."""
    return LRUCache(maxsize=8)


@dataclass(frozen=True)
class Loaded:
    config: Config
    sha: str  # the file's blob id: a file read again with the same id is the same file
    etags: LRUCache[str, Any] = field(default_factory=etag_cache, compare=False)  # the read's, for the next


async def read_remote(gh: GitHub, source: RemoteSource) -> tuple[bytes, str]:
    """The file's bytes and blob id; :class:`RemoteConfigError` when there is no such file."""
    entry = await file_entry(gh, source.repository, source.path, None)
    if entry is None:
        raise RemoteConfigError(
            f"{source}: no such file on the default branch of {source.repository}, or the App is not installed "
            "there; check LEMI_CONFIG and the App's installations"
        )
    return entry_bytes(entry), str(entry.get("sha", ""))


async def load_remote(gh: GitHub, source: RemoteSource) -> Loaded:
    """The file, read and validated; :class:`Invalid` names its lines. The read's ETag is kept
    (``etags``): the reader's first read again is conditional."""
    etags = etag_cache()
    text, sha = await read_remote(gh.conditional(etags), source)
    return Loaded(parse_config(text, str(source)), sha, etags)


@dataclass(frozen=True)
class ConfigStatus:
    """How the configuration stands: ``ok`` False while the newest file is refused (the last good
    one is in use) or could not be read."""

    ok: bool
    source: str
    sha: str
    detail: str

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "source": self.source, "sha": self.sha, "detail": self.detail}


class RemoteConfig:
    """lemi.yml in a repository, read again at most every ``every`` seconds and when told
    (:meth:`refresh`); ``on_change`` gets each new valid configuration."""

    def __init__(
        self,
        source: RemoteSource,
        first: Loaded,
        *,
        client: Callable[[], Awaitable[GitHub]],
        on_change: Callable[[Config], None],
        every: float = EVERY,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.source = source
        self.current = first
        self._client = client
        self._on_change = on_change
        self._every = every
        self._clock = clock
        self._read_at = clock()
        self._etags = first.etags
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self.problem = ""
        self._refused_sha = ""

    def status(self) -> ConfigStatus:
        detail = self.problem or f"lemi.yml from {self.source} (blob {self.current.sha[:7]})"
        return ConfigStatus(not self.problem, str(self.source), self.current.sha, detail)

    async def refresh(self, *, now: bool = True) -> bool:
        """Read the file again (``now`` False: only if ``every`` seconds have passed since the
        last read); True when a new valid configuration replaced the current one."""
        async with self._lock:
            if not now and self._clock() - self._read_at < self._every:
                return False
            self._read_at = self._clock()
            try:
                gh = (await self._client()).conditional(self._etags)
                text, sha = await read_remote(gh, self.source)
            except (RemoteConfigError, UserError, Transient) as exc:
                self._refused(f"cannot read {self.source}: {exc}")
                return False
            if sha in (self.current.sha, self._refused_sha):  # unchanged (GitHub answered 304)
                if sha == self.current.sha:
                    self.problem = ""
                return False
            try:
                config = await asyncio.to_thread(parse_config, text, str(self.source))
            except Invalid as exc:
                self._refused_sha = sha
                self._refused(f"{self.source} (blob {sha[:7]}) is not valid; the last good one stays in use: {exc}")
                return False
            self.current = Loaded(config, sha)
            self.problem = ""
            log.info("lemi.yml: %s changed (blob %s); new jobs use it", self.source, sha[:7])
            self._on_change(config)
            return True

    def _refused(self, problem: str) -> None:
        if problem != self.problem:
            log.error("lemi.yml: %s", problem)
        self.problem = problem

    def start(self) -> None:
        """Read the file again every ``every`` seconds until :meth:`stop`."""
        self._task = asyncio.create_task(self._run(), name="lemi-config")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(max(0.0, self._every - (self._clock() - self._read_at)))
            try:
                await self.refresh(now=False)
            except Exception:  # noqa: BLE001 - the loop goes on; the next minute tries again
                log.exception("lemi.yml: reading %s failed", self.source)


async def first_read(app_id: str, private_key: str, api_url: str, source: RemoteSource) -> Loaded:
    """The file at start, read with the App's installation on its repository (a session of its own)."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        auth = AppAuth(session, app_id=app_id, private_key=private_key, base_url=api_url)
        return await load_remote(await auth.for_repository(source.repository), source)
