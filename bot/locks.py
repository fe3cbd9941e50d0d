"""Per-environment locks (``/lemi lock``): while an environment of a repository
is locked, push deploys and commands of anyone but the holder are held.

Held push deploys are remembered and queued again when the lock is released.
Stored in the embedded SQLite database next to the job queue (one file per
App); several processes on one host share it.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS locks (
    repository  TEXT NOT NULL,
    environment TEXT NOT NULL,
    holder      TEXT NOT NULL,
    reason      TEXT NOT NULL DEFAULT '',
    created     REAL NOT NULL,
    PRIMARY KEY (repository, environment)
);
CREATE TABLE IF NOT EXISTS held (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    repository  TEXT NOT NULL,
    environment TEXT NOT NULL,
    payload     TEXT NOT NULL,
    created     REAL NOT NULL
);
"""


@dataclass(frozen=True)
class Lock:
    repository: str
    environment: str
    holder: str
    reason: str
    created: float


class LockStore:
    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self._guard = threading.Lock()
        self._db: sqlite3.Connection | None = None

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            db = sqlite3.connect(self.path, timeout=10, isolation_level=None, check_same_thread=False)
            db.row_factory = sqlite3.Row
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.executescript(SCHEMA)
            self._db = db
        return self._db

    async def _run(self, work: Any) -> Any:
        def call() -> Any:
            with self._guard:
                return work(self._conn())

        return await asyncio.to_thread(call)

    async def get(self, repository: str, environment: str) -> Lock | None:
        def work(db: sqlite3.Connection) -> Lock | None:
            row = db.execute(
                "SELECT * FROM locks WHERE repository = ? AND environment = ?", (repository, environment)
            ).fetchone()
            return Lock(row["repository"], row["environment"], row["holder"], row["reason"], row["created"]) if row else None

        result: Lock | None = await self._run(work)
        return result

    async def acquire(self, repository: str, environment: str, holder: str, reason: str = "") -> Lock:
        """Take the lock, or return the lock someone else already holds."""

        def work(db: sqlite3.Connection) -> Lock:
            db.execute(
                "INSERT OR IGNORE INTO locks (repository, environment, holder, reason, created) VALUES (?, ?, ?, ?, ?)",
                (repository, environment, holder, reason, time.time()),
            )
            row = db.execute(
                "SELECT * FROM locks WHERE repository = ? AND environment = ?", (repository, environment)
            ).fetchone()
            return Lock(row["repository"], row["environment"], row["holder"], row["reason"], row["created"])

        result: Lock = await self._run(work)
        return result

    async def release(self, repository: str, environment: str) -> list[dict[str, Any]]:
        """Drop the lock; returns the held deploys, to be queued again."""

        def work(db: sqlite3.Connection) -> list[dict[str, Any]]:
            db.execute("BEGIN IMMEDIATE")
            db.execute("DELETE FROM locks WHERE repository = ? AND environment = ?", (repository, environment))
            rows = db.execute(
                "SELECT id, payload FROM held WHERE repository = ? AND environment = ? ORDER BY id",
                (repository, environment),
            ).fetchall()
            db.execute("DELETE FROM held WHERE repository = ? AND environment = ?", (repository, environment))
            db.execute("COMMIT")
            return [{**json.loads(r["payload"]), "held_id": r["id"]} for r in rows]

        result: list[dict[str, Any]] = await self._run(work)
        return result

    async def hold(self, repository: str, environment: str, payload: dict[str, Any]) -> None:
        def work(db: sqlite3.Connection) -> None:
            db.execute(
                "INSERT INTO held (repository, environment, payload, created) VALUES (?, ?, ?, ?)",
                (repository, environment, json.dumps(payload), time.time()),
            )

        await self._run(work)

    async def close(self) -> None:
        def work() -> None:
            with self._guard:
                if self._db is not None:
                    self._db.close()
                    self._db = None

        await asyncio.to_thread(work)
