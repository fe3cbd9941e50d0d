"""One way to open lemi's embedded SQLite file (queue, locks, redelivery state).

WAL (readers never block the writer, several processes may share the file),
``synchronous=FULL`` (a commit is on disk when it returns) and a busy timeout.
Rows stay small: webhook documents live beside the file (queue/bodies.py).

The file is lemi's alone (privatefiles.py): it is created with mode 0600 before SQLite
opens it, because SQLite gives the ``-wal``, ``-shm`` and ``-journal`` files it makes the
database file's mode (umask or not); directories it needs are created 0700. A database,
``-wal`` or ``-shm`` file that other users can open is tightened when it is opened.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from bot.store.privatefiles import create_dirs, private_file, tighten

T = TypeVar("T")

# files SQLite keeps beside the database (a crashed process leaves them behind)
SIDE_FILES = ("-wal", "-shm", "-journal")


def _prepare_file(path: str) -> None:
    create_dirs(Path(path).parent)
    private_file(path)
    for suffix in SIDE_FILES:
        tighten(path + suffix)


def connect(path: str) -> sqlite3.Connection:
    if path not in ("", ":memory:"):  # "" is SQLite's private temporary database
        _prepare_file(path)
    db = sqlite3.connect(path, timeout=10, isolation_level=None, check_same_thread=False)
    db.row_factory = sqlite3.Row
    db.execute("PRAGMA busy_timeout=10000")
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    return db


class Store:
    """One SQLite file used from asyncio: the connection is opened on first use (its
    ``schema`` created, then ``prepare`` run on it), and every piece of work runs in a
    thread, one at a time, rolled back if it fails half-way."""

    def __init__(self, path: str, schema: str, *, prepare: Callable[[sqlite3.Connection], None] | None = None) -> None:
        self.path = path
        self._schema = schema
        self._prepare = prepare
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None

    def _connection(self) -> sqlite3.Connection:
        if self._db is None:
            db = connect(self.path)
            try:
                db.executescript(self._schema)
                if self._prepare is not None:
                    self._prepare(db)
            except BaseException:
                db.close()
                raise
            self._db = db
        return self._db

    def run_now(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """``work`` in this thread (the queue's thread already)."""
        with self._lock:
            db = self._connection()
            try:
                return work(db)
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise

    async def run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        return await asyncio.to_thread(self.run_now, work)

    async def close(self, also: Callable[[], None] | None = None) -> None:
        """Close the connection (and run ``also`` under the same lock)."""

        def call() -> None:
            with self._lock:
                if self._db is not None:
                    db, self._db = self._db, None
                    db.close()
                if also is not None:
                    also()

        await asyncio.to_thread(call)
