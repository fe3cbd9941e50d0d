"""One way to open lemi's embedded SQLite file (queue, locks, redelivery state).

WAL (readers never block the writer, several processes may share the file),
``synchronous=FULL`` (a commit is on disk when it returns) and a busy timeout.
Rows stay small: webhook documents live beside the file (queue/bodies.py).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path


def connect(path: str) -> sqlite3.Connection:
    if path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, timeout=10, isolation_level=None, check_same_thread=False)
    db.row_factory = sqlite3.Row
    db.execute("PRAGMA busy_timeout=10000")
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    return db
