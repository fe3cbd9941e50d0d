"""One way to open lemi's embedded SQLite file (queue, locks, redelivery state).

WAL (readers never block the writer, several processes may share the file),
``synchronous=FULL`` (a commit is on disk when it returns) and a busy timeout.
A new file gets 64 KiB pages: a webhook's document (tens of KB of JSON) then
fits in one page instead of a chain of overflow pages, which measured about
40 % less CPU per stored delivery (BENCHMARKS.md). An existing file keeps its
page size.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

PAGE_SIZE = 65536
WAL_CHECKPOINT_BYTES = 4 * 1024 * 1024


def connect(path: str) -> sqlite3.Connection:
    if path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, timeout=10, isolation_level=None, check_same_thread=False)
    db.row_factory = sqlite3.Row
    db.execute("PRAGMA busy_timeout=10000")
    if db.execute("PRAGMA page_count").fetchone()[0] == 0:  # a new file: before its first write
        db.execute(f"PRAGMA page_size={PAGE_SIZE}")
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    # checkpoint when the WAL holds about 4 MiB (SQLite's default is 1000 pages, 64 MiB of big
    # pages: a commit that has to copy that much stalls every delivery waiting on it)
    page_size = db.execute("PRAGMA page_size").fetchone()[0]
    db.execute(f"PRAGMA wal_autocheckpoint={max(16, WAL_CHECKPOINT_BYTES // page_size)}")
    return db
