"""The SQL of the embedded queue (sqlite_queue.py): its schema, its indexes and its searches."""

from __future__ import annotations

from typing import Any, TypeVar

T = TypeVar("T")

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    dedupe_id   TEXT    NOT NULL UNIQUE,
    key         TEXT    NOT NULL,
    kind        TEXT    NOT NULL,
    payload     TEXT    NOT NULL,
    state       TEXT    NOT NULL DEFAULT 'queued',   -- queued | running | done | failed
    attempts    INTEGER NOT NULL DEFAULT 0,
    run_after   REAL    NOT NULL DEFAULT 0,
    lease_until REAL,
    worker      TEXT,
    last_error  TEXT,
    created     REAL    NOT NULL,
    updated     REAL    NOT NULL,
    body_file   TEXT,                                -- where the document is (bodies.py)
    body_offset INTEGER,
    body_length INTEGER,
    admitted    INTEGER NOT NULL DEFAULT 1           -- 0: put, not yet admitted to jobs_keyed (ADMIT)
);
"""
# after the columns exist (a file from before them gets them in _prepare). The open jobs of each key,
# in order, are in jobs_keyed once admitted; a job put is in jobs_inbox (appended: ids only grow) until
# a worker admits it (ADMIT)
INDEXES = """
DROP INDEX IF EXISTS jobs_open;
CREATE INDEX IF NOT EXISTS jobs_keyed ON jobs (key, id) WHERE state IN ('queued', 'running') AND admitted = 1;
CREATE INDEX IF NOT EXISTS jobs_inbox ON jobs (id) WHERE admitted = 0;
CREATE INDEX IF NOT EXISTS jobs_body_file ON jobs (body_file) WHERE body_file IS NOT NULL;
"""
# Intake puts a job unadmitted: its row goes into the append-only jobs_inbox, not into jobs_keyed,
# where the jobs of a burst or a backlog fall into as many pages as they have keys (half of
# intake's commit with 150,000 open jobs in 256 keys: 33 → 21 µs a delivery). A worker admits
# the inbox, oldest first, before it looks for work (``lease``), in transactions of ADMIT_BATCH.
# The admitted jobs are always those below some id, so the first admitted open job of a key is
# its first open job: the order of a key's jobs is kept.
ADMIT = "UPDATE jobs SET admitted = 1 WHERE id IN (SELECT id FROM jobs WHERE admitted = 0 ORDER BY id LIMIT ?)"
INBOX_WAITING = "SELECT 1 FROM jobs WHERE admitted = 0 LIMIT 1"
# the document files rows point at, one index seek per file (a skip-scan of jobs_body_file): intake
# asks each time it starts a new file, and SELECT DISTINCT read every entry (4.5 ms at 150,000 open
# jobs against 0.2 ms)
FILES_IN_USE = """
WITH RECURSIVE files(name) AS (
  SELECT (SELECT MIN(body_file) FROM jobs WHERE body_file IS NOT NULL)
  UNION ALL
  SELECT (SELECT MIN(body_file) FROM jobs WHERE body_file > files.name) FROM files WHERE files.name IS NOT NULL
)
SELECT name FROM files WHERE name IS NOT NULL
"""

# the first open job of each key, if it is ready. The keys are walked in the open-jobs index one
# seek at a time (a skip-scan: each key's successor, then its first job), so the search grows
# with the keys that have open jobs, not with the jobs waiting behind them (GROUP BY key read
# every open job: 8.5 ms against 1.6 ms at 20,000 open jobs in 256 keys)
LEASABLE = """
WITH RECURSIVE keys(key) AS (
  SELECT (SELECT key FROM jobs WHERE state IN ('queued', 'running') AND admitted = 1 ORDER BY key LIMIT 1)
  UNION ALL
  SELECT (
    SELECT k.key FROM jobs k
    WHERE k.state IN ('queued', 'running') AND k.admitted = 1 AND k.key > keys.key ORDER BY k.key LIMIT 1
  )
  FROM keys WHERE keys.key IS NOT NULL
)
SELECT j.* FROM keys JOIN jobs j
  ON j.id = (
    SELECT h.id FROM jobs h WHERE h.key = keys.key AND h.state IN ('queued', 'running') AND h.admitted = 1
    ORDER BY h.id LIMIT 1
  )
WHERE (j.state = 'queued' AND j.run_after <= :now) OR (j.state = 'running' AND j.lease_until < :now)
ORDER BY j.run_after, j.id
LIMIT 1
"""
# the same question about one job, inside the transaction that leases it (index lookups only)
STILL_LEASABLE = """
SELECT j.* FROM jobs j
WHERE j.id = :id AND j.state IN ('queued', 'running') AND j.admitted = 1
  AND j.id = (SELECT MIN(k.id) FROM jobs k WHERE k.key = j.key AND k.state IN ('queued', 'running') AND k.admitted = 1)
  AND ((j.state = 'queued' AND j.run_after <= :now) OR (j.state = 'running' AND j.lease_until < :now))
"""


def chunks(values: list[T], size: int) -> list[list[T]]:
    return [values[i : i + size] for i in range(0, len(values), size)]


def insert_sql(count: int, *, upsert: bool = False) -> str:
    """An INSERT of ``count`` new jobs' rows (see ``_values``)."""
    sql = (
        "INSERT INTO jobs (dedupe_id, key, kind, payload, created, updated, body_file, body_offset, body_length, "
        "admitted) VALUES " + ", ".join(["(?, ?, ?, ?, ?, ?, ?, ?, ?, 0)"] * count)
    )
    return sql + " ON CONFLICT (dedupe_id) DO NOTHING" if upsert else sql


def values(rows: list[tuple[Any, ...]]) -> list[Any]:
    return [value for row in rows for value in row]
