"""The record of missed deliveries lemi asked GitHub to redeliver (bot/server/redeliver.py
decides which): in memory, and in a table of the embedded SQLite database, so a restart neither
asks again nor re-reads the whole window, and processes sharing the file do not both ask."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from bot.store.sqlitedb import Store

T = TypeVar("T")

GITHUB_WINDOW = 3 * 24 * 3600.0  # GitHub redelivers deliveries of the past 3 days

SCHEMA = """
CREATE TABLE IF NOT EXISTS redeliveries (
    guid        TEXT PRIMARY KEY,
    delivery_id INTEGER NOT NULL,
    requested   REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS redelivery_checks (
    name        TEXT PRIMARY KEY,
    at          REAL NOT NULL
);
"""


class RedeliveryState:
    """The guids lemi asked GitHub to redeliver, and when the last check completed.

    In memory, and in SQLite at ``path`` (the queue's file) when given, so a
    restart neither asks again nor re-reads the whole window.
    """

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = None if path is None else str(path)
        self.since: float | None = None
        self.requested: set[str] = set()
        self._loaded = False
        self._store = None if self.path is None else Store(self.path, SCHEMA)

    async def _run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        assert self._store is not None
        return await self._store.run(work)

    async def load(self) -> None:
        if self._loaded:
            return
        if self.path is not None:

            def work(db: sqlite3.Connection) -> tuple[float | None, list[str]]:
                row = db.execute("SELECT at FROM redelivery_checks WHERE name = 'last'").fetchone()
                return (row[0] if row else None), [r[0] for r in db.execute("SELECT guid FROM redeliveries")]

            since, guids = await self._run(work)
            if since is not None:
                self.since = since if self.since is None else max(self.since, since)
            self.requested.update(guids)
        self._loaded = True

    async def claim(self, guid: str, delivery_id: int, now: float) -> bool:
        """Record that lemi asks for ``guid``; False when it (or another process) did already."""
        if guid in self.requested:
            return False
        self.requested.add(guid)
        if self.path is None:
            return True

        def work(db: sqlite3.Connection) -> bool:
            cursor = db.execute(
                "INSERT OR IGNORE INTO redeliveries (guid, delivery_id, requested) VALUES (?, ?, ?)",
                (guid, delivery_id, now),
            )
            return cursor.rowcount == 1

        return await self._run(work)

    async def release(self, guid: str) -> None:
        """The request did not reach GitHub: the next check may ask again."""
        self.requested.discard(guid)
        if self.path is not None:
            await self._run(lambda db: db.execute("DELETE FROM redeliveries WHERE guid = ?", (guid,)))

    async def checked(self, at: float) -> None:
        """A check that started at ``at`` completed; forget requests that left GitHub's window."""
        self.since = at
        if self.path is None:
            return

        def work(db: sqlite3.Connection) -> list[str]:
            db.execute(
                "INSERT INTO redelivery_checks (name, at) VALUES ('last', ?) "
                "ON CONFLICT (name) DO UPDATE SET at = excluded.at",
                (at,),
            )
            old = at - GITHUB_WINDOW - 24 * 3600.0
            gone = [r[0] for r in db.execute("SELECT guid FROM redeliveries WHERE requested < ?", (old,))]
            db.execute("DELETE FROM redeliveries WHERE requested < ?", (old,))
            return gone

        self.requested.difference_update(await self._run(work))

    async def close(self) -> None:
        if self._store is not None:
            await self._store.close()
