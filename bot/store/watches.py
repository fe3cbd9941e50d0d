"""Durable watches: the long waits of lemi (a rollout, soon a one-off task), kept outside the job queue.

A deploy job ends right after ``UpdateService``: what remains -- watching the rollout and
reporting its end -- is a *watch*, stored here, and a watcher (bot/server/watcher.py) polls
every due watch. So a worker is never held for a rollout, a watch never sits in its
service's queue key (or SQS message group), and a newer push of the service starts at once.

The store is generic: a watch is an opaque ``body`` (bot/flows/watching.py says what is in it)
with what the store needs to hand it out:

* ``key``: the service it watches (repository + service + environment): a newer rollout of
  the same key marks the others ``replaced_by`` it (:meth:`Watches.replace_others`);
* ``group``: watches polled together (one environment: one cluster in one account);
* ``due``: when it is to be looked at next;
* a lease (``owner``, ``lease_until``): :meth:`Watches.claim` hands a due watch to one watcher
  for ``lease_seconds``; a watcher that dies (a replica, a restart) loses it when the lease runs
  out, and the next claim -- by any process sharing the store -- takes it over.

Two stores keep the same rules: the embedded SQLite file (the locks' file; processes of one
host share it) and DynamoDB (the replicas' delivery table, with ``LEMI_QUEUE=sqs://...?dedupe_table=T``).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from bot.store.sqlitedb import Store

SCHEMA = """
CREATE TABLE IF NOT EXISTS watches (
    id          TEXT PRIMARY KEY,
    key         TEXT NOT NULL,
    grp         TEXT NOT NULL,
    body        BLOB NOT NULL,
    due         REAL NOT NULL,
    created     REAL NOT NULL,
    replaced_by TEXT NOT NULL DEFAULT '',
    owner       TEXT NOT NULL DEFAULT '',
    lease_until REAL NOT NULL DEFAULT 0,
    note        BLOB NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS watches_due ON watches (due);
CREATE INDEX IF NOT EXISTS watches_key ON watches (key);
"""


@dataclass(frozen=True)
class Watch:
    id: str
    key: str
    group: str
    body: bytes
    due: float
    created: float
    replaced_by: str = ""
    owner: str = ""
    lease_until: float = 0.0
    note: bytes = b""  # what the job that made the watch learnt later (annotate), kept apart from body


class Watches(Protocol):
    async def add(self, id: str, key: str, group: str, body: bytes, due: float) -> None:
        """Store a watch durably before returning (a watch of the same id is replaced)."""
        ...

    async def add_replacing(self, id: str, key: str, group: str, body: bytes, due: float) -> int:
        """:meth:`add`, then :meth:`replace_others` of ``key`` by it (SQLite: in one transaction);
        how many it replaced."""
        ...

    async def get(self, id: str) -> Watch | None: ...

    async def claim(self, owner: str, now: float, lease_seconds: float, limit: int = 500) -> list[Watch]:
        """The watches due by ``now`` that no other watcher holds, leased to ``owner``."""
        ...

    async def update(self, watch: Watch, owner: str, body: bytes, due: float) -> bool:
        """Keep what was learnt and when to look again; False: ``owner`` no longer holds it."""
        ...

    async def update_many(self, owner: str, updates: Sequence[tuple[Watch, bytes, float]]) -> list[bool]:
        """:meth:`update` for each ``(watch, body, due)`` of a watcher's round, in one write where
        the store can (SQLite: one transaction); each False: ``owner`` no longer holds that one."""
        ...

    async def annotate(self, id: str, note: bytes) -> bool:
        """Set a watch's note whoever holds it (the job that made it adds what it learnt later;
        the watcher's updates of the body never overwrite it)."""
        ...

    async def remove(self, watch: Watch, owner: str) -> bool:
        """The watch is over; False: ``owner`` no longer holds it (another watcher finishes it)."""
        ...

    async def swap_note(self, id: str, note: bytes) -> bytes | None:
        """Set the note of watch ``id`` if it exists, atomically: its note before (b"" when it had
        none), or None when there is no such watch (nothing was set)."""
        ...

    async def take(self, watch: Watch, owner: str) -> bytes | None:
        """:meth:`remove`, atomically returning the note the watch had when it was removed (a
        :meth:`swap_note` either came before and is returned here, or finds no watch); None:
        ``owner`` no longer holds it."""
        ...

    async def discard(self, id: str) -> None:
        """Drop a watch that was never started (its update failed)."""
        ...

    async def replace_others(self, key: str, keep: str, by: str) -> int:
        """Mark every other watch of ``key`` replaced ``by`` a newer rollout; how many."""
        ...

    async def unreplace(self, key: str, by: str) -> None:
        """Take back :meth:`replace_others` (the newer rollout was never sent)."""
        ...

    async def release(self, owner: str) -> None:
        """Give up every watch ``owner`` holds (a watcher that stops), for the next claim."""
        ...

    async def next_due(self) -> float | None:
        """When the earliest watch is due (None: there is none)."""
        ...

    async def count(self) -> int: ...
    async def close(self) -> None: ...


def _watch(row: sqlite3.Row) -> Watch:
    body = row["body"]
    return Watch(
        row["id"], row["key"], row["grp"], bytes(body) if not isinstance(body, str) else body.encode(),
        row["due"], row["created"], row["replaced_by"], row["owner"], row["lease_until"], bytes(row["note"] or b""),
    )  # fmt: skip


def _replace_others(db: sqlite3.Connection, key: str, keep: str, by: str) -> int:
    cursor = db.execute(
        "UPDATE watches SET replaced_by = ?, due = 0 WHERE key = ? AND id != ? AND replaced_by = ''", (by, key, keep)
    )
    return cursor.rowcount


class SQLiteWatches:
    """Watches in the embedded SQLite file (the locks' file)."""

    def __init__(self, path: str | Path, *, clock: Any = time.time) -> None:
        self._store = Store(str(path), SCHEMA)
        self._clock = clock

    async def add(self, id: str, key: str, group: str, body: bytes, due: float) -> None:
        def work(db: sqlite3.Connection) -> None:
            db.execute(
                "INSERT OR REPLACE INTO watches (id, key, grp, body, due, created) VALUES (?, ?, ?, ?, ?, ?)",
                (id, key, group, body, due, self._clock()),
            )

        await self._store.run(work)

    async def add_replacing(self, id: str, key: str, group: str, body: bytes, due: float) -> int:
        def work(db: sqlite3.Connection) -> int:
            db.execute("BEGIN IMMEDIATE")
            db.execute(
                "INSERT OR REPLACE INTO watches (id, key, grp, body, due, created) VALUES (?, ?, ?, ?, ?, ?)",
                (id, key, group, body, due, self._clock()),
            )
            replaced = _replace_others(db, key, id, id)
            db.execute("COMMIT")
            return replaced

        return await self._store.run(work)

    async def get(self, id: str) -> Watch | None:
        def work(db: sqlite3.Connection) -> Watch | None:
            row = db.execute("SELECT * FROM watches WHERE id = ?", (id,)).fetchone()
            return _watch(row) if row is not None else None

        return await self._store.run(work)

    async def claim(self, owner: str, now: float, lease_seconds: float, limit: int = 500) -> list[Watch]:
        def work(db: sqlite3.Connection) -> list[Watch]:
            db.execute("BEGIN IMMEDIATE")
            rows = db.execute(
                "SELECT * FROM watches WHERE due <= ? AND (owner = ? OR owner = '' OR lease_until < ?)"
                " ORDER BY due LIMIT ?",
                (now, owner, now, limit),
            ).fetchall()
            ids = [r["id"] for r in rows]
            db.executemany(
                "UPDATE watches SET owner = ?, lease_until = ? WHERE id = ?",
                [(owner, now + lease_seconds, i) for i in ids],
            )
            db.execute("COMMIT")
            return [
                _watch(r) for r in db.execute(
                    f"SELECT * FROM watches WHERE id IN ({','.join('?' * len(ids))}) ORDER BY due", ids
                )
            ] if ids else []  # fmt: skip

        return await self._store.run(work)

    async def update(self, watch: Watch, owner: str, body: bytes, due: float) -> bool:
        def work(db: sqlite3.Connection) -> bool:
            cursor = db.execute(
                "UPDATE watches SET body = ?, due = ? WHERE id = ? AND owner = ?", (body, due, watch.id, owner)
            )
            return cursor.rowcount == 1

        return await self._store.run(work)

    async def update_many(self, owner: str, updates: Sequence[tuple[Watch, bytes, float]]) -> list[bool]:
        def work(db: sqlite3.Connection) -> list[bool]:
            db.execute("BEGIN IMMEDIATE")
            held = [
                db.execute(
                    "UPDATE watches SET body = ?, due = ? WHERE id = ? AND owner = ?", (body, due, watch.id, owner)
                ).rowcount
                == 1
                for watch, body, due in updates
            ]
            db.execute("COMMIT")
            return held

        return await self._store.run(work) if updates else []

    async def annotate(self, id: str, note: bytes) -> bool:
        def work(db: sqlite3.Connection) -> bool:
            return db.execute("UPDATE watches SET note = ? WHERE id = ?", (note, id)).rowcount == 1

        return await self._store.run(work)

    async def remove(self, watch: Watch, owner: str) -> bool:
        def work(db: sqlite3.Connection) -> bool:
            return db.execute("DELETE FROM watches WHERE id = ? AND owner = ?", (watch.id, owner)).rowcount == 1

        return await self._store.run(work)

    async def swap_note(self, id: str, note: bytes) -> bytes | None:
        def work(db: sqlite3.Connection) -> bytes | None:
            db.execute("BEGIN IMMEDIATE")
            row = db.execute("SELECT note FROM watches WHERE id = ?", (id,)).fetchone()
            if row is not None:
                db.execute("UPDATE watches SET note = ? WHERE id = ?", (note, id))
            db.execute("COMMIT")
            return None if row is None else bytes(row["note"] or b"")

        return await self._store.run(work)

    async def take(self, watch: Watch, owner: str) -> bytes | None:
        def work(db: sqlite3.Connection) -> bytes | None:
            row = db.execute(
                "DELETE FROM watches WHERE id = ? AND owner = ? RETURNING note", (watch.id, owner)
            ).fetchone()
            return None if row is None else bytes(row["note"] or b"")

        return await self._store.run(work)

    async def discard(self, id: str) -> None:
        await self._store.run(lambda db: db.execute("DELETE FROM watches WHERE id = ?", (id,)))

    async def replace_others(self, key: str, keep: str, by: str) -> int:
        return await self._store.run(lambda db: _replace_others(db, key, keep, by))

    async def unreplace(self, key: str, by: str) -> None:
        await self._store.run(
            lambda db: db.execute("UPDATE watches SET replaced_by = '' WHERE key = ? AND replaced_by = ?", (key, by))
        )

    async def release(self, owner: str) -> None:
        await self._store.run(
            lambda db: db.execute("UPDATE watches SET owner = '', lease_until = 0 WHERE owner = ?", (owner,))
        )

    async def next_due(self) -> float | None:
        def work(db: sqlite3.Connection) -> float | None:
            row = db.execute("SELECT MIN(due) FROM watches").fetchone()
            return None if row is None or row[0] is None else float(row[0])

        return await self._store.run(work)

    async def count(self) -> int:
        return await self._store.run(lambda db: int(db.execute("SELECT COUNT(*) FROM watches").fetchone()[0]))

    async def close(self) -> None:
        await self._store.close()
