"""The embedded queue: one SQLite file, WAL, fsync on commit.

A delivery is committed (``synchronous=FULL``) before ``put`` returns, so
the webhook's 2xx is only sent for work that is on disk. Several processes
may share the file: leases are taken inside ``BEGIN IMMEDIATE``.

A webhook's document of up to INLINE_DOCUMENT bytes (intake's summary of a delivery, nearly
always) is kept in its row. A larger one is kept in append-only files beside the database
(``<queue>.bodies/``, see bodies.py), synced before the row that points at
it is committed; a job that is done lets go of it, a job that failed for
good takes its document into its row (kept for inspection).

The database, its ``-wal`` and ``-shm`` files and the documents are readable by
lemi's user alone (0600, directories 0700), whatever the umask; ones that other
users could open are tightened when the queue opens (privatefiles.py).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import msgspec

from bot.store.bodies import Bodies, BodyError
from bot.store.jobs import NO_DOCUMENT, Message, Unreadable, WebhookJob, encode_message, read_document, read_message
from bot.store.notice import Notice
from bot.store.queue import Job, NewJob, QueueUnavailable
from bot.store.queue_sql import (
    ADMIT,
    FILES_IN_USE,
    INBOX_WAITING,
    INDEXES,
    LEASABLE,
    SCHEMA,
    STILL_LEASABLE,
    chunks,
    insert_sql,
    values,
)
from bot.store.sqlitedb import Store

T = TypeVar("T")

ADMIT_BATCH = 200  # jobs admitted from the inbox in one transaction (queue_sql.ADMIT): about 3 ms
COLLECT_EVERY = 60.0  # seconds: how often complete() looks for document files nothing needs
# a document up to this size stays in its row: intake stores a delivery's summary (a few hundred
# bytes), and a row is cheaper than a file for it (one fsync, not two, and no second write: 44 → 28 µs
# of CPU a delivery at intake); a larger one (a long pull request body, a document stored whole)
# goes to the document files
INLINE_DOCUMENT = 8 * 1024
LEASE_TRIES = 3  # another worker took the job found: look again this many times


@dataclass
class _Pending:
    """A put waiting for the next commit: the row's payload and the document for the file beside it."""

    job: NewJob
    payload: bytes
    document: bytes | None
    future: asyncio.Future[bool]


class SQLiteQueue:
    searchable = True

    def __init__(
        self, path: str | Path, *, clock: Callable[[], float] = time.time, inline_document: int = INLINE_DOCUMENT
    ) -> None:
        self.path = str(path)
        self._clock = clock
        self._inline = inline_document  # documents up to this size stay in their rows
        self._store = Store(self.path, SCHEMA, prepare=self._prepare)
        self._upsert = sqlite3.sqlite_version_info >= (3, 24, 0)  # INSERT ... ON CONFLICT
        # documents beside the database (in memory: inside the rows)
        self._bodies = Bodies(self.path + ".bodies") if self.path != ":memory:" else None
        self._collected = 0.0
        # group commit: puts that arrive while a commit is on disk share the next one
        self._pending: list[_Pending] = []
        self._flusher: asyncio.Task[None] | None = None
        # waiting workers, woken one at a time (a wake with nobody waiting is kept for the next one)
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self._woken = False
        self._work_loop: asyncio.AbstractEventLoop | None = None
        self._notice: Notice | None = None  # jobs other processes put (started by the first wait_for_work)
        self._notice_loop: asyncio.AbstractEventLoop | None = None

    def _prepare(self, db: sqlite3.Connection) -> None:
        columns = {row["name"] for row in db.execute("PRAGMA table_info(jobs)")}
        for column, kind in (
            ("body_file", "TEXT"),  # a queue file from before the document files
            ("body_offset", "INTEGER"),
            ("body_length", "INTEGER"),
            ("admitted", "INTEGER NOT NULL DEFAULT 1"),  # from before the inbox: every job is admitted
        ):
            if column not in columns:
                db.execute(f"ALTER TABLE jobs ADD COLUMN {column} {kind}")
        db.executescript(INDEXES)
        if self._bodies is not None:
            self._bodies.make_private()  # 0700 / 0600, like the database (privatefiles.py)
        self._collect(db)  # files left by processes that are gone

    def _collect(self, db: sqlite3.Connection) -> None:
        """Delete the document files no job needs (in the queue's thread, under its lock)."""
        if self._bodies is not None:
            self._collected = self._clock()
            self._bodies.collect(lambda: [row[0] for row in db.execute(FILES_IN_USE)])

    async def _run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        try:
            return await self._store.run(work)
        except (sqlite3.Error, OSError) as exc:
            raise QueueUnavailable(f"the job database {self.path} failed: {exc}") from exc

    def _document(self, row: sqlite3.Row) -> bytes | None:
        if row["body_file"] is None or self._bodies is None:
            return None
        return self._bodies.read(row["body_file"], row["body_offset"], row["body_length"])

    def _message(self, row: sqlite3.Row) -> Message:
        """The row's message, with its document if it is kept in a file (ValueError, BodyError)."""
        message = read_message(row["kind"], row["payload"])
        document = self._document(row)
        if document is not None:
            if not isinstance(message, WebhookJob):
                raise ValueError(f"a {row['kind']} job points at a document")
            message = msgspec.structs.replace(message, document=read_document(document))
        return message

    def _job(self, row: sqlite3.Row) -> Job:
        message: Message | Unreadable
        try:
            message = self._message(row)
        except (BodyError, ValueError) as exc:  # the worker fails the job and reports it; the queue goes on
            message = Unreadable(row["kind"], str(exc))
        return Job(
            id=row["id"],
            dedupe_id=row["dedupe_id"],
            key=row["key"],
            message=message,
            attempts=row["attempts"],
            state=row["state"],
            worker=row["worker"],
            last_error=row["last_error"],
        )

    async def put(self, job: NewJob) -> bool:
        """Stored (True) or a duplicate (False) once it is committed to disk.

        Puts that arrive while a commit is in progress are written together in
        the next transaction: one fsync for many deliveries, each answered only
        after its row is durable."""
        message, document = job.message, None
        if isinstance(message, WebhookJob) and len(message.document) > self._inline and self._bodies is not None:
            # a large document goes to a file beside the database; the row keeps the rest
            message, document = msgspec.structs.replace(message, document=NO_DOCUMENT), bytes(message.document)
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._pending.append(_Pending(job, encode_message(message), document, future))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush())
        stored = await future
        if stored:
            self._signal()
        return stored

    async def _flush(self) -> None:
        while self._pending:
            batch, self._pending = self._pending, []
            now = self._clock()

            def work(db: sqlite3.Connection, batch: list[_Pending] = batch, now: float = now) -> list[bool]:
                # the documents first, synced: every committed row can read its own
                where: dict[int, tuple[str, int, int]] = {}
                with_document = [(i, p.document) for i, p in enumerate(batch) if p.document is not None]
                if self._bodies is not None and with_document:
                    rotated_from = self._bodies.active
                    where = dict(
                        zip(
                            (i for i, _ in with_document),
                            self._bodies.append([d for _, d in with_document]),
                            strict=True,
                        )
                    )
                    if rotated_from and rotated_from != self._bodies.active:
                        self._collect(db)
                # then the rows (a delivery twice in one batch: the first is stored)
                first: dict[str, int] = {}
                for i, p in enumerate(batch):
                    first.setdefault(p.job.dedupe_id, i)
                new = self._insert_new(
                    db,
                    [
                        (p.job.dedupe_id, p.job.key, p.job.kind, p.payload, now, now, *where.get(i, (None, None, None)))
                        for i, p in enumerate(batch)
                        if first[p.job.dedupe_id] == i
                    ],
                )
                stored = [first[p.job.dedupe_id] == i and p.job.dedupe_id in new for i, p in enumerate(batch)]
                return stored

            try:
                results = await self._run(work)
            except BaseException as exc:  # noqa: BLE001 - every waiting put learns of it
                for p in batch:
                    if not p.future.done():
                        p.future.set_exception(exc if isinstance(exc, Exception) else QueueUnavailable(str(exc)))
                if not isinstance(exc, Exception):
                    raise
                continue
            for p, stored in zip(batch, results, strict=True):
                if not p.future.done():
                    p.future.set_result(stored)

    def _insert_new(self, db: sqlite3.Connection, rows: list[tuple[Any, ...]]) -> set[str]:
        """Store the rows whose ``dedupe_id`` is not stored yet, committed when this returns; their ids.

        Up to a hundred rows: one ``INSERT ... ON CONFLICT DO NOTHING``, its own transaction, one
        step. After every SQLite call the thread takes the GIL back from the busy event loop, so
        fewer calls answer sooner (``RETURNING`` would be one call per row). When it stored fewer
        rows than it was given (a redelivery: rare), the new ones are those with the highest ids
        among the batch's (AUTOINCREMENT: a new row's id is above every id before it). More rows,
        or an SQLite before 3.24 (no ``ON CONFLICT``): look the ids up, then insert, in one transaction."""
        parts = chunks(rows, 100)  # SQLite binds at most 999 values before 3.32
        if not parts:
            return set()
        ids = [row[0] for row in rows]
        if self._upsert and len(parts) == 1:
            stored = db.execute(insert_sql(len(rows), upsert=True), values(rows)).rowcount
            if stored == len(rows):
                return set(ids)
            found = db.execute(
                f"SELECT dedupe_id FROM jobs WHERE dedupe_id IN ({', '.join('?' * len(ids))}) ORDER BY id DESC", ids
            ).fetchall()
            return {row[0] for row in found[:stored]}
        db.execute("BEGIN IMMEDIATE")
        seen: set[str] = set()
        for chunk in chunks(ids, 500):
            marks = ", ".join("?" * len(chunk))
            seen.update(row[0] for row in db.execute(f"SELECT dedupe_id FROM jobs WHERE dedupe_id IN ({marks})", chunk))
        fresh = [row for row in rows if row[0] not in seen]
        for chunk in chunks(fresh, 100):
            db.execute(insert_sql(len(chunk)), values(chunk))
        db.execute("COMMIT")
        return {row[0] for row in fresh}

    def _signal(self) -> None:
        """Wake one waiting worker (or the next to wait). One, not all: each woken worker searches the
        queue, and a worker that leases a job wakes the next (``lease``), so a burst of jobs still
        reaches every worker while a single new job costs one search, not one per worker."""
        loop = asyncio.get_running_loop()
        if self._work_loop is not loop:  # the queue moved to another event loop (tests)
            self._waiters.clear()
            self._work_loop = loop
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self._woken = True

    async def wait_for_work(self, timeout: float) -> None:
        """Return when a job was put: in this process at once, by another process (``lemi serve``
        beside ``lemi worker``) within notice.INTERVAL; else after ``timeout`` (retries coming due)."""
        loop = asyncio.get_running_loop()
        if self._work_loop is not loop:
            self._waiters.clear()
            self._woken, self._work_loop = False, loop
        if self._bodies is not None and (self._notice is None or self._notice_loop is not loop):
            if self._notice is not None:  # the queue moved to another event loop (tests)
                self._notice.stop()
            # a file other processes may share: notice the jobs they put
            self._notice, self._notice_loop = Notice(self.path, lambda: _call_in(loop, self._signal)), loop
            self._notice.start()
        if self._woken:
            self._woken = False
            return
        waiter: asyncio.Future[None] = loop.create_future()
        self._waiters.append(waiter)
        try:
            await asyncio.wait_for(waiter, timeout=timeout)
        except TimeoutError:
            pass
        finally:
            if not waiter.done() or waiter.cancelled():
                with contextlib.suppress(ValueError):  # a wake already took it off
                    self._waiters.remove(waiter)

    async def lease(self, worker: str, lease_seconds: float) -> Job | None:
        """The oldest ready job at the head of its key, leased to ``worker``.

        The search reads a snapshot, outside any transaction: with many jobs waiting it is the
        long part, and it does not hold the write lock intake's commits need (WAL: readers do
        not block the writer). Only the lease itself is written under ``BEGIN IMMEDIATE``, after
        checking that the job found is still ready (another worker may have taken it). Jobs put
        since the last look are admitted from the inbox first (``_admit``), a batch at a time until
        a job is found or the inbox is empty."""

        def work(db: sqlite3.Connection) -> Job | None:
            tries = 0
            while tries < LEASE_TRIES:
                admitted = self._admit(db)
                now = self._clock()
                row = db.execute(LEASABLE, {"now": now}).fetchone()
                if row is None:
                    if admitted:  # the inbox holds more: admit on until it is empty or a job is found
                        continue
                    return None
                tries += 1
                db.execute("BEGIN IMMEDIATE")
                if db.execute(STILL_LEASABLE, {"id": row["id"], "now": now}).fetchone() is None:
                    db.execute("COMMIT")
                    continue
                db.execute(
                    "UPDATE jobs SET state = 'running', worker = ?, lease_until = ?, attempts = attempts + 1, "
                    "updated = ? WHERE id = ?",
                    (worker, now + lease_seconds, now, row["id"]),
                )
                leased = db.execute("SELECT * FROM jobs WHERE id = ?", (row["id"],)).fetchone()
                db.execute("COMMIT")
                return self._job(leased)
            return None

        leased = await self._run(work)
        if leased is not None:
            self._signal()  # there may be more: the next waiting worker looks
        return leased

    @staticmethod
    def _admit(db: sqlite3.Connection) -> bool:
        """Admit the oldest ADMIT_BATCH jobs of the inbox, if any wait there (True then).

        Small transactions: a worker runs at a low priority beside intake, and intake's commits
        wait for its write lock. Not synced: an admission is no promise to anybody, and one that a
        crash loses is made again (the next commit, a lease's, syncs it along with its own)."""
        if db.execute(INBOX_WAITING).fetchone() is None:
            return False
        db.execute("PRAGMA synchronous=NORMAL")
        try:
            db.execute("BEGIN IMMEDIATE")
            db.execute(ADMIT, (ADMIT_BATCH,))
            db.execute("COMMIT")
        finally:
            db.execute("PRAGMA synchronous=FULL")
        return True

    @staticmethod
    def _held(db: sqlite3.Connection, job: Job, sql: str, *params: Any) -> bool:
        """Run an UPDATE on the job only while this lease holds it (same worker, same attempt)."""
        cursor = db.execute(
            sql + " WHERE id = ? AND worker = ? AND state = 'running' AND attempts = ?",
            (*params, job.id, job.worker, job.attempts),
        )
        return cursor.rowcount == 1

    async def _settle(self, job: Job, sql: str, *params: Any) -> bool:
        return await self._run(lambda db: self._held(db, job, sql, *params))

    async def extend(self, job: Job, lease_seconds: float) -> bool:
        now = self._clock()
        return await self._settle(job, "UPDATE jobs SET lease_until = ?, updated = ?", now + lease_seconds, now)

    async def complete(self, job: Job) -> bool:
        now = self._clock()
        done = await self._settle(
            job,
            "UPDATE jobs SET state = 'done', lease_until = NULL, payload = '{}', body_file = NULL, "
            "body_offset = NULL, body_length = NULL, updated = ?",
            now,
        )
        if done and self._bodies is not None and now - self._collected >= COLLECT_EVERY:
            await self._run(self._collect)
        return done

    async def retry(self, job: Job, delay: float, error: str) -> bool:
        now = self._clock()
        return await self._settle(
            job,
            "UPDATE jobs SET state = 'queued', lease_until = NULL, run_after = ?, last_error = ?, updated = ?",
            now + delay,
            error[:2000],
            now,
        )

    async def fail(self, job: Job, error: str) -> bool:
        """Terminal; the job's document moves into its row, kept for inspection."""
        now = self._clock()

        def work(db: sqlite3.Connection) -> bool:
            row = db.execute("SELECT * FROM jobs WHERE id = ?", (job.id,)).fetchone()
            if row is None:
                return False
            payload, where = row["payload"], (row["body_file"], row["body_offset"], row["body_length"])
            if row["body_file"] is not None:
                try:
                    payload, where = encode_message(self._message(row)), (None, None, None)
                except (BodyError, ValueError):
                    pass  # keep pointing at it: what is left can still be looked at
            return self._held(
                db, job,
                "UPDATE jobs SET state = 'failed', lease_until = NULL, last_error = ?, payload = ?, body_file = ?, "
                "body_offset = ?, body_length = ?, updated = ?",
                error[:2000], payload, *where, now,
            )  # fmt: skip

        return await self._run(work)

    async def newer_in_key(self, job: Job, kind: str | None = None) -> bool:
        """Is a later job of the same key waiting? (A newer push supersedes an older deploy.)"""

        def work(db: sqlite3.Connection) -> bool:
            of_kind, params = ("", ()) if kind is None else (" AND kind = ?", (kind,))
            for sql in (  # among the admitted jobs, then the inbox (where every job is queued)
                "SELECT 1 FROM jobs WHERE key = ? AND id > ? AND state IN ('queued', 'running') AND admitted = 1",
                "SELECT 1 FROM jobs WHERE admitted = 0 AND key = ? AND id > ?",
            ):
                if db.execute(sql + of_kind + " LIMIT 1", (job.key, job.id, *params)).fetchone() is not None:
                    return True
            return False

        return await self._run(work)

    async def get(self, dedupe_id: str) -> Job | None:
        def work(db: sqlite3.Connection) -> Job | None:
            row = db.execute("SELECT * FROM jobs WHERE dedupe_id = ?", (dedupe_id,)).fetchone()
            return self._job(row) if row else None

        return await self._run(work)

    async def depth(self) -> int:
        def work(db: sqlite3.Connection) -> int:
            return int(
                db.execute(
                    "SELECT (SELECT COUNT(*) FROM jobs WHERE state IN ('queued', 'running') AND admitted = 1)"
                    " + (SELECT COUNT(*) FROM jobs WHERE admitted = 0)"
                ).fetchone()[0]
            )

        return await self._run(work)

    async def close(self) -> None:
        if self._notice is not None:
            notice, self._notice = self._notice, None
            await asyncio.to_thread(notice.stop)
        await self._store.close(also=self._bodies.close if self._bodies is not None else None)


def _call_in(loop: asyncio.AbstractEventLoop, callback: Callable[[], None]) -> None:
    """``callback`` in ``loop``, from another thread (nothing once the loop is closed)."""
    try:
        loop.call_soon_threadsafe(callback)
    except RuntimeError:
        pass
