"""The queue's contract, run against every backend: SQLite (embedded) and SQS FIFO (moto)."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import sqlite3
import stat
import subprocess
import sys
import textwrap
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import boto3
import pytest
from app_harness import stored_document
from job_harness import document_of, number_of, numbered, unreadable, webhook_job

from bot.store.backends import open_queue
from bot.store.jobs import WebhookJob, encode_message
from bot.store.locks import LockStore
from bot.store.queue import NewJob, Queue, QueueUnavailable
from bot.store.sqlite_queue import SQLiteQueue
from bot.store.sqs_queue import SQSQueue, parse_url


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Backend:
    name: str
    queue: Queue
    advance: Callable[[float], Awaitable[None]]  # let time pass (a fake clock, or real time for SQS)
    dead_letters: Callable[[], list[dict]] = lambda: []


def make_sqs(endpoint: str) -> tuple[str, str, str]:
    """A FIFO queue with a dead-letter queue and a dedupe table in moto: (LEMI_QUEUE url, queue url, dlq url)."""
    name = f"lemi-{uuid.uuid4().hex[:8]}"
    sqs = boto3.client("sqs", region_name="us-east-1", endpoint_url=endpoint)
    dlq = sqs.create_queue(QueueName=f"{name}-dlq.fifo", Attributes={"FifoQueue": "true"})["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    url = sqs.create_queue(
        QueueName=f"{name}.fifo",
        Attributes={
            "FifoQueue": "true",
            "VisibilityTimeout": "30",
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 100}),
        },
    )["QueueUrl"]
    boto3.client("dynamodb", region_name="us-east-1", endpoint_url=endpoint).create_table(
        TableName=f"{name}-deliveries",
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    return f"sqs://{url}?dedupe_table={name}-deliveries", url, dlq


@pytest.fixture(params=["sqlite", "sqs"])
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    if request.param == "sqlite":
        clock = Clock()
        q: Queue = SQLiteQueue(tmp_path / "queue.db", clock=clock)

        async def tick(seconds: float) -> None:
            clock.now += seconds

        yield Backend("sqlite", q, tick)
    else:
        endpoint = request.getfixturevalue("aws_env")
        lemi_url, _, dlq = make_sqs(endpoint)
        q = open_queue(lemi_url)
        assert isinstance(q, SQSQueue)

        def dead_letters() -> list[dict]:
            sqs = boto3.client("sqs", region_name="us-east-1", endpoint_url=endpoint)
            messages = sqs.receive_message(QueueUrl=dlq, MaxNumberOfMessages=10).get("Messages", [])
            return [json.loads(m["Body"]) for m in messages]

        yield Backend("sqs", q, asyncio.sleep, dead_letters)
    await q.close()


def job(n: int | str, key: str = "acme/demo#1", kind: str = "webhook") -> NewJob:
    return numbered(n, key, kind)


async def test_a_job_goes_through(backend: Backend) -> None:
    q = backend.queue
    assert await q.put(job(1)) is True
    assert await q.depth() == 1
    leased = await q.lease("w1", 30)
    assert (
        leased is not None and leased.message == job(1).message and leased.attempts == 1 and leased.state == "running"
    )
    assert leased.key == "acme/demo#1" and leased.kind == "webhook" and leased.dedupe_id == "delivery-1"
    assert await q.lease("w2", 30) is None
    assert await q.complete(leased) is True
    assert await q.depth() == 0
    assert await q.lease("w1", 30) is None


async def test_a_delivery_is_stored_once_even_after_it_is_done(backend: Backend) -> None:
    q = backend.queue
    assert await q.put(job(1)) is True
    assert await q.put(job(1)) is False
    leased = await q.lease("w1", 30)
    assert leased is not None
    await q.complete(leased)
    assert await q.put(job(1)) is False
    assert await q.lease("w1", 30) is None
    assert await q.get("delivery-1") is not None
    assert await q.get("delivery-unknown") is None


async def test_one_key_runs_one_job_at_a_time_in_order(backend: Backend) -> None:
    q = backend.queue
    for n in (1, 2, 3):
        await q.put(job(n, key="a"))
    await q.put(job(4, key="b"))
    first = await q.lease("w1", 30)
    other = await q.lease("w2", 30)
    assert first is not None and other is not None
    assert {number_of(first), number_of(other)} == {1, 4}
    if number_of(first) == 4:
        first, other = other, first
    assert await q.lease("w3", 30) is None  # 2 waits for 1
    await q.complete(first)
    second = await q.lease("w3", 30)
    assert second is not None and number_of(second) == 2


async def test_a_retry_waits_and_holds_back_its_key(backend: Backend) -> None:
    q = backend.queue
    await q.put(job(1, key="a"))
    await q.put(job(2, key="a"))
    first = await q.lease("w1", 30)
    assert first is not None
    assert await q.retry(first, 1, "GitHubBroken: 502") is True
    assert await q.lease("w1", 30) is None  # 1 is not due, and 2 must not overtake it
    await backend.advance(1.3)
    again = await q.lease("w1", 30)
    assert again is not None and number_of(again) == 1 and again.attempts == 2


async def test_an_expired_lease_is_taken_over_and_the_old_holder_cannot_settle(backend: Backend) -> None:
    q = backend.queue
    await q.put(job(1))
    first = await q.lease("w1", 1)
    assert first is not None
    assert await q.extend(first, 2) is True
    await backend.advance(1.2)
    assert await q.lease("w2", 1) is None  # the extension holds
    await backend.advance(1.2)
    second = await q.lease("w2", 30)
    assert second is not None and second.attempts == 2
    assert await q.complete(first) is False
    assert await q.extend(first, 30) is False
    assert await q.complete(second) is True
    assert await q.depth() == 0


async def test_fail_is_terminal_and_kept_for_inspection(backend: Backend) -> None:
    q = backend.queue
    await q.put(job(1, key="a"))
    await q.put(job(2, key="a"))
    first = await q.lease("w1", 30)
    assert first is not None
    assert await q.fail(first, "boom") is True
    if backend.name == "sqlite":
        stored = await q.get("delivery-1")
        assert stored is not None and stored.state == "failed" and stored.last_error == "boom"
    else:
        [dead] = backend.dead_letters()
        assert (
            dead["dedupe_id"] == "delivery-1"
            and dead["error"] == "boom"
            and dead["payload"] == json.loads(encode_message(job(1).message))
        )
    second = await q.lease("w1", 30)
    assert second is not None and number_of(second) == 2


async def test_a_big_payload(backend: Backend) -> None:
    q = backend.queue
    bulky = webhook_job("d-big", "k", {"commits": ["x" * 1000] * 400, "ref": "refs/heads/main"})
    assert await q.put(bulky) is True
    leased = await q.lease("w1", 30)
    assert leased is not None and document_of(leased)["ref"] == "refs/heads/main"


async def test_a_webhook_document_is_stored_as_received_and_leased_parsed(backend: Backend) -> None:
    q = backend.queue
    # odd but valid JSON: spacing, key order, escapes, non-ASCII, a big integer
    document = ' {"z": 1,\n  "a": "caf\u00e9 ☕ \\"q\\"", "n": 123456789012345678901234567890, "list": [ ]} '.encode()
    assert await q.put(webhook_job("d-doc", "k", document)) is True
    leased = await q.lease("w1", 30)
    assert leased is not None
    assert leased.kind == "webhook" and isinstance(leased.message, WebhookJob) and leased.message.event == "push"
    assert document_of(leased) == json.loads(document)
    if backend.name == "sqlite":
        assert isinstance(q, SQLiteQueue)
        # byte for byte, not re-serialised (kept in its row: the value, without the blanks around it)
        assert stored_document(Path(q.path), "d-doc") == document.strip()


async def test_a_big_webhook_document_loses_only_bulky_fields_on_sqs(backend: Backend) -> None:
    q = backend.queue
    document = json.dumps({"commits": ["x" * 1000] * 400, "ref": "refs/heads/main", "after": "abc"}).encode()
    assert await q.put(webhook_job("d-big-doc", "k", document)) is True
    leased = await q.lease("w1", 30)
    assert leased is not None and isinstance(leased.message, WebhookJob) and leased.message.event == "push"
    assert document_of(leased)["ref"] == "refs/heads/main" and document_of(leased)["after"] == "abc"
    if backend.name == "sqlite":  # SQLite keeps everything
        assert document_of(leased) == json.loads(document)


# ---- SQLite specifics ------------------------------------------------------------------------


async def test_a_damaged_payload_is_handed_out_as_undecodable_not_raised(tmp_path: Path) -> None:
    q = SQLiteQueue(tmp_path / "q.db")
    await q.put(job(1, key="a"))
    await q.put(job(2, key="b"))
    db = sqlite3.connect(tmp_path / "q.db")
    db.execute("UPDATE jobs SET payload = ? WHERE dedupe_id = 'delivery-1'", (b'{"truncated": ',))
    db.commit()
    db.close()
    first = await q.lease("w1", 30)
    assert first is not None and first.dedupe_id == "delivery-1"
    assert unreadable(first)  # the worker fails it and reports it; the queue goes on
    second = await q.lease("w1", 30)
    assert second is not None and second.message == job(2).message
    await q.close()


def doc(n: int, size: int = 2000) -> NewJob:
    """A webhook job with a JSON document of about ``size`` bytes."""
    document = json.dumps({"n": n, "pad": "x" * size}).encode()
    return webhook_job(f"doc-{n}", f"k{n}", document)


def body_files(q: SQLiteQueue) -> set[str]:
    return {p.name for p in Path(q.path + ".bodies").glob("*.seg")}


async def test_a_small_document_stays_in_its_row_and_a_large_one_goes_to_a_file(tmp_path: Path) -> None:
    """Intake's summaries (a few hundred bytes) are kept in their rows: one write and one fsync;
    a document over INLINE_DOCUMENT bytes goes to the files beside the database."""
    from bot.store.sqlite_queue import INLINE_DOCUMENT

    q = SQLiteQueue(tmp_path / "q.db")
    small = json.dumps({"action": "opened", "body": "é" * 100}).encode()
    large = json.dumps({"action": "opened", "body": "x" * INLINE_DOCUMENT}).encode()
    assert await q.put(webhook_job("small", "k1", small))
    assert body_files(q) == set()
    assert await q.put(webhook_job("large", "k2", large))
    assert len(body_files(q)) == 1
    db = sqlite3.connect(tmp_path / "q.db")
    where = dict(db.execute("SELECT dedupe_id, body_file FROM jobs").fetchall())
    db.close()
    assert where["small"] is None and where["large"] is not None
    assert stored_document(Path(q.path), "small") == small and stored_document(Path(q.path), "large") == large
    leased = {job.dedupe_id: document_of(job) for job in [await q.lease("w", 30), await q.lease("w", 30)] if job}
    assert leased == {"small": json.loads(small), "large": json.loads(large)}
    await q.close()


async def test_documents_live_in_files_beside_the_database_until_their_jobs_are_done(tmp_path: Path) -> None:
    from bot.store import bodies

    q = SQLiteQueue(tmp_path / "q.db", inline_document=0)
    assert q._bodies is not None
    q._bodies.segment_bytes = 3000  # a new file every 2 documents
    for n in range(6):
        assert await q.put(doc(n))
    first = sorted(body_files(q))
    assert len(first) == 3
    db = sqlite3.connect(tmp_path / "q.db")
    assert all(len(p) < 100 for (p,) in db.execute("SELECT payload FROM jobs"))  # rows stay small
    db.close()
    # nothing is deleted while a job points at its file
    assert q._bodies.collect(lambda: {r for r in first}) == []
    leased = []
    while (job := await q.lease("w", 30)) is not None:
        assert document_of(job)["n"] == int(job.dedupe_id.split("-")[1])
        leased.append(job)
    for job in leased:
        assert await q.complete(job)
    await q.put(doc(99))  # rotates again: the files nothing needs are collected
    assert body_files(q) == {q._bodies.active}
    await q.close()
    assert bodies.SEGMENT_BYTES == 64 * 1024 * 1024


async def test_a_job_that_fails_keeps_its_document_in_its_row(tmp_path: Path) -> None:
    q = SQLiteQueue(tmp_path / "q.db", inline_document=0)
    await q.put(doc(1))
    job = await q.lease("w", 30)
    assert job is not None and await q.fail(job, "boom")
    q._bodies.segment_bytes = 1  # type: ignore[union-attr]
    await q.put(doc(2))  # rotation collects the first file: only the failed job used it
    stored = await q.get("doc-1")
    assert stored is not None and stored.state == "failed" and document_of(stored)["n"] == 1
    assert len(body_files(q)) == 1
    await q.close()


async def test_a_damaged_document_is_handed_out_as_undecodable(tmp_path: Path) -> None:
    q = SQLiteQueue(tmp_path / "q.db", inline_document=0)
    await q.put(doc(1))
    for name in body_files(q):
        path = Path(q.path + ".bodies") / name
        path.write_bytes(b"#" * path.stat().st_size)  # same length, not JSON any more
    leased = await q.lease("w", 30)
    assert leased is not None and unreadable(leased)  # not a half-read payload
    await q.close()


async def test_a_lost_document_file_fails_that_job_not_the_queue(tmp_path: Path) -> None:
    q = SQLiteQueue(tmp_path / "q.db", inline_document=0)
    await q.put(doc(1))
    for name in body_files(q):
        (Path(q.path + ".bodies") / name).unlink()
    await q.put(job(2, key="other", kind="deploy"))  # a job with no document: in its row
    first = await q.lease("w", 30)
    assert first is not None and first.dedupe_id == "doc-1" and "gone" in unreadable(first)
    second = await q.lease("w", 30)
    assert second is not None and second.message == job(2, kind="deploy").message
    await q.close()


async def test_a_failed_document_write_is_a_503_and_the_next_ones_read_back_right(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write that fails half-way (a full disk) leaves bytes in the file; later offsets must not
    be counted from where the failed write thought the file ended."""
    import os

    from bot.store import bodies

    q = SQLiteQueue(tmp_path / "q.db", inline_document=0)
    assert await q.put(doc(1))
    real_writev = os.writev

    def half_then_full(fd: int, buffers: list[bytes]) -> int:
        os.write(fd, bytes(buffers[0])[:100])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(bodies.os, "writev", half_then_full)
    with pytest.raises(QueueUnavailable):
        await q.put(doc(2))
    monkeypatch.setattr(bodies.os, "writev", real_writev)
    assert await q.put(doc(2))  # GitHub's redelivery of the same delivery is stored this time
    assert await q.put(doc(3))
    seen = {}
    while (leased := await q.lease("w", 30)) is not None:
        seen[leased.dedupe_id] = document_of(leased)["n"]
        await q.complete(leased)
    assert seen == {"doc-1": 1, "doc-2": 2, "doc-3": 3}
    await q.close()


def test_files_of_another_live_process_are_left_alone_and_a_dead_ones_collected(tmp_path: Path) -> None:
    """A process appends under an exclusive flock; another process's collect skips that file
    while it lives and deletes it once the process is gone (SIGKILL) and no job needs it."""
    path = tmp_path / "q.db"
    script = textwrap.dedent(
        f"""
        import asyncio, json, os, sys
        import msgspec
        from bot.store.jobs import WebhookJob
        from bot.store.queue import NewJob
        from bot.store.sqlite_queue import SQLiteQueue
        async def main():
            q = SQLiteQueue({str(path)!r}, inline_document=0)
            await q.put(NewJob("orphan", "k", WebhookJob("push", "orphan", "acme/demo", msgspec.Raw(b'{{"a": 1}}'))))
            job = await q.lease("w", 30)
            await q.complete(job)  # nothing points at the file any more, but it is still being appended to
            print("ready", flush=True)
            sys.stdin.readline()
            os.kill(os.getpid(), 9)
        asyncio.run(main())
        """
    )
    child = subprocess.Popen([sys.executable, "-c", script], cwd=Path(__file__).parent.parent,
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "ready"

        async def collect() -> set[str]:
            q = SQLiteQueue(path, inline_document=0)
            await q.depth()  # opens the database, which collects
            files = body_files(q)
            await q.close()
            return files

        assert len(asyncio.run(collect())) == 1  # alive: kept
        assert child.stdin is not None
        child.stdin.write("\n")
        child.stdin.flush()
        assert child.wait(10) == -9
        assert asyncio.run(collect()) == set()  # dead and unneeded: collected
    finally:
        if child.poll() is None:
            child.kill()


async def test_puts_in_one_batch_are_stored_once_each(tmp_path: Path) -> None:
    """Concurrent puts share a commit; a delivery repeated inside the batch, or stored before, is a duplicate."""
    q = SQLiteQueue(tmp_path / "q.db")
    assert await q.put(job("old")) is True
    names = ["a", "b", "old", "a", "c"] * 1 + [f"x{i}" for i in range(300)]  # more than one statement's worth
    results = await asyncio.gather(*(q.put(job(n)) for n in names))
    assert results[:5] == [True, True, False, False, True]
    assert all(results[5:])
    ids = []
    while (leased := await q.lease("w", 30)) is not None:
        ids.append(leased.dedupe_id)
        await q.complete(leased)
    assert ids == ["delivery-old"] + [f"delivery-{n}" for n in ("a", "b", "c")] + [f"delivery-x{i}" for i in range(300)]
    await q.close()


@pytest.mark.parametrize("upsert", [True, False], ids=["one-statement", "look-up-first"])
async def test_a_small_batch_is_committed_with_each_delivery_once(tmp_path: Path, upsert: bool) -> None:
    """Up to a hundred puts are one ``INSERT ... ON CONFLICT DO NOTHING``, its own transaction;
    an SQLite before 3.24 looks the ids up first. Either way a delivery repeated in the batch or
    stored before is a duplicate, and every put that returned is committed: another connection
    sees the rows and can write at once (no transaction is left open)."""
    q = SQLiteQueue(tmp_path / "q.db")
    q._upsert = upsert  # as on an SQLite without ON CONFLICT
    assert await q.put(job("old")) is True
    assert await q.put(job("older")) is True
    results = await asyncio.gather(*(q.put(job(n)) for n in ["a", "old", "b", "a", "c", "older"]))
    assert results == [True, False, True, False, True, False]
    results = await asyncio.gather(*(q.put(job(n)) for n in ["d", "e"]))  # all new
    assert results == [True, True]
    other = sqlite3.connect(tmp_path / "q.db", timeout=0, isolation_level=None)
    try:
        rows = [row[0] for row in other.execute("SELECT dedupe_id FROM jobs ORDER BY id")]
        assert rows == [f"delivery-{n}" for n in ("old", "older", "a", "b", "c", "d", "e")]
        other.execute("BEGIN IMMEDIATE")  # the write lock is free
        other.execute("ROLLBACK")
    finally:
        other.close()
    assert await q.put(job("a")) is False
    await q.close()


def test_the_files_in_use_are_every_file_a_row_points_at_and_use_the_index(tmp_path: Path) -> None:
    """``FILES_IN_USE`` (a skip-scan of the body-file index) names what ``SELECT DISTINCT`` does."""
    from bot.store.sqlite_queue import FILES_IN_USE, INDEXES, SCHEMA

    db = sqlite3.connect(tmp_path / "q.db", isolation_level=None)
    try:
        db.executescript(SCHEMA)
        db.executescript(INDEXES)
        assert db.execute(FILES_IN_USE).fetchall() == []
        files = [None, "1-aa-1.seg", "1-aa-2.seg", "2-bb-1.seg", None, "1-aa-2.seg", "1-aa-1.seg", "3-cc-9.seg"]
        db.executemany(
            "INSERT INTO jobs (dedupe_id, key, kind, payload, created, updated, body_file) VALUES (?, 'k', 'webhook', '{}', 0, 0, ?)",
            [(f"d-{i}", name) for i, name in enumerate(files)],
        )
        assert [row[0] for row in db.execute(FILES_IN_USE)] == sorted({f for f in files if f is not None})
        plan = " ".join(str(row) for row in db.execute("EXPLAIN QUERY PLAN " + FILES_IN_USE))
        assert "jobs_body_file" in plan and "SCAN jobs" not in plan, plan
    finally:
        db.close()


async def test_jobs_put_wait_in_the_inbox_and_a_worker_admits_them_in_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Intake's rows skip the keyed index (jobs_inbox, appended); ``lease`` admits them oldest
    first, a few to a transaction here, and every key's jobs still run in the order they were put.
    Until then ``newer_in_key`` and ``depth`` see them as the queued jobs they are."""
    import bot.store.sqlite_queue as sq

    monkeypatch.setattr(sq, "ADMIT_BATCH", 3)
    q = SQLiteQueue(tmp_path / "q.db")
    order = [("a", 1), ("b", 2), ("a", 3), ("c", 4), ("b", 5), ("a", 6), ("c", 7)]
    for key, n in order:
        assert await q.put(job(n, key=key))
    db = sqlite3.connect(tmp_path / "q.db")
    assert db.execute("SELECT COUNT(*) FROM jobs WHERE admitted = 0").fetchone() == (7,)
    assert await q.depth() == 7
    got = await q.get(job(1).dedupe_id)
    assert got is not None and got.state == "queued"
    leased = []
    while (one := await q.lease("w", 30)) is not None:
        if one.dedupe_id == job(1).dedupe_id:  # unadmitted newer jobs of its key count
            assert await q.newer_in_key(one) is True
        leased.append(one)
        assert await q.complete(one)
    assert db.execute("SELECT COUNT(*) FROM jobs WHERE admitted = 0").fetchone() == (0,)
    db.close()
    for key in "abc":
        assert [j.dedupe_id for j in leased if j.key == key] == [job(n).dedupe_id for k, n in order if k == key]
    await q.close()


def test_the_queue_s_searches_use_its_indexes(tmp_path: Path) -> None:
    """Leasing, its re-check, newer_in_key and depth read indexes, never the whole table."""
    from bot.store.sqlite_queue import INDEXES, LEASABLE, SCHEMA, STILL_LEASABLE

    db = sqlite3.connect(tmp_path / "q.db", isolation_level=None)
    try:
        db.executescript(SCHEMA)
        db.executescript(INDEXES)

        def plan(sql: str, params: object) -> str:
            return " ".join(str(row) for row in db.execute("EXPLAIN QUERY PLAN " + sql, params))

        for sql in (LEASABLE, STILL_LEASABLE):
            text = plan(sql, {"now": 0, "id": 1})
            # every read of the table goes through an index (a bare "SCAN jobs" would read every row)
            assert "jobs_keyed" in text and not re.search(r"'SCAN (jobs|j|k|h)'", text), text
        text = plan("SELECT 1 FROM jobs WHERE admitted = 0 AND key = ? AND id > ? LIMIT 1", ("k", 1))
        assert "jobs_inbox" in text, text
    finally:
        db.close()


async def test_a_queue_file_from_before_the_inbox_opens_with_its_jobs_admitted(tmp_path: Path) -> None:
    path = tmp_path / "q.db"
    db = sqlite3.connect(path, isolation_level=None)
    db.executescript(
        """
        CREATE TABLE jobs (id INTEGER PRIMARY KEY AUTOINCREMENT, dedupe_id TEXT NOT NULL UNIQUE, key TEXT NOT NULL,
          kind TEXT NOT NULL, payload TEXT NOT NULL, state TEXT NOT NULL DEFAULT 'queued',
          attempts INTEGER NOT NULL DEFAULT 0, run_after REAL NOT NULL DEFAULT 0, lease_until REAL, worker TEXT,
          last_error TEXT, created REAL NOT NULL, updated REAL NOT NULL, body_file TEXT, body_offset INTEGER,
          body_length INTEGER);
        CREATE INDEX jobs_open ON jobs (key, id) WHERE state IN ('queued', 'running');
        """
    )
    db.execute(
        "INSERT INTO jobs (dedupe_id, key, kind, payload, created, updated) VALUES (?, 'k', 'deploy', ?, 0, 0)",
        ("old-1", encode_message(numbered(1, "k", "deploy").message)),
    )
    db.close()
    q = SQLiteQueue(path)
    assert await q.put(job(2, key="k"))
    first, second = await q.lease("w", 30), None
    assert first is not None and first.dedupe_id == "old-1"
    assert await q.newer_in_key(first) is True
    assert await q.complete(first)
    second = await q.lease("w", 30)
    assert second is not None and second.dedupe_id == job(2).dedupe_id
    await q.close()
    db = sqlite3.connect(path)
    indexes = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    db.close()
    assert "jobs_open" not in indexes and {"jobs_keyed", "jobs_inbox"} <= indexes


async def test_newer_in_key(tmp_path: Path) -> None:
    q = SQLiteQueue(tmp_path / "q.db")
    await q.put(job(1, key="a", kind="deploy"))
    first = await q.lease("w1", 30)
    assert first is not None
    assert await q.newer_in_key(first) is False
    await q.put(job(2, key="a", kind="command"))
    assert await q.newer_in_key(first, kind="deploy") is False
    await q.put(job(3, key="a", kind="deploy"))
    assert await q.newer_in_key(first, kind="deploy") is True
    await q.close()


async def test_jobs_survive_a_reopen(tmp_path: Path) -> None:
    path = tmp_path / "q.db"
    q = SQLiteQueue(path)
    await q.put(job(1))
    await q.close()
    q = SQLiteQueue(path)
    leased = await q.lease("w1", 30)
    assert leased is not None and leased.message == job(1).message
    await q.close()


def test_a_killed_worker_loses_its_job_only_until_the_lease_runs_out(tmp_path: Path) -> None:
    """A process that leased a job is killed with SIGKILL; another process gets the job after the lease."""
    path = tmp_path / "q.db"
    script = textwrap.dedent(
        f"""
        import asyncio, os
        import msgspec
        from bot.store.jobs import WebhookJob
        from bot.store.queue import NewJob
        from bot.store.sqlite_queue import SQLiteQueue
        async def main():
            q = SQLiteQueue({str(path)!r})
            await q.put(NewJob("d-1", "k", WebhookJob("push", "d-1", "acme/demo", msgspec.Raw(b'{{"n": 1}}'))))
            job = await q.lease("doomed", 0.5)
            assert job is not None
            os.kill(os.getpid(), 9)
        asyncio.run(main())
        """
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=Path(__file__).parent.parent, check=False)
    assert done.returncode == -9

    async def take_over() -> None:
        q = SQLiteQueue(path)
        assert await q.lease("survivor", 30) is None  # still leased
        await asyncio.sleep(0.6)
        job = await q.lease("survivor", 30)
        assert job is not None and document_of(job) == {"n": 1} and job.attempts == 2
        assert await q.complete(job)
        await q.close()

    asyncio.run(take_over())


async def test_an_unwritable_database_is_reported_as_unavailable(tmp_path: Path) -> None:
    blocked = tmp_path / "not-a-dir"
    blocked.write_text("")
    q = SQLiteQueue(blocked / "q.db")
    with pytest.raises(QueueUnavailable):
        await q.put(job(1))


# ---- who can open the files -----------------------------------------------------------------


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    """The process umask while the test runs (``indirect`` parameter; 022 unless given)."""
    value = getattr(request, "param", 0o022)
    old = os.umask(value)
    try:
        yield value
    finally:
        os.umask(old)


@pytest.mark.parametrize("umask", [0o022, 0o000, 0o277], indirect=True, ids=["022", "000", "277"])
async def test_the_queue_files_are_its_users_alone_whatever_the_umask(tmp_path: Path, umask: int) -> None:
    """The database, the -wal and -shm files SQLite makes beside it, the documents directory and
    its files, and the directories lemi creates for them: 0600 and 0700, not what the umask leaves."""
    before = mode(tmp_path)
    state = tmp_path / "var" / "lemi"  # neither exists yet
    q = SQLiteQueue(state / "q.db", inline_document=0)
    assert await q.put(doc(1))
    assert await q.put(job(2))
    documents = state / "q.db.bodies"
    segments = list(documents.glob("*.seg"))
    assert len(segments) == 1
    files = {p.name: mode(p) for p in (state / "q.db", state / "q.db-wal", state / "q.db-shm", *segments)}
    assert files == {name: 0o600 for name in files}
    assert (mode(documents), mode(state), mode(state.parent)) == (0o700, 0o700, 0o700)
    assert mode(tmp_path) == before  # a directory that was there is not lemi's to change
    await q.close()


async def test_the_lock_store_file_is_private_too(tmp_path: Path, umask: int) -> None:
    """Locks and the redelivery record use the same SQLite store (its own file when the queue is SQS)."""
    locks = LockStore(tmp_path / "lemi-locks.db")
    await locks.acquire("acme/demo", "production", "octocat")
    assert {mode(tmp_path / f"lemi-locks.db{s}") for s in ("", "-wal", "-shm")} == {0o600}
    await locks._store.close()


async def test_files_other_users_could_open_are_tightened_when_the_queue_opens(
    tmp_path: Path, umask: int, caplog: pytest.LogCaptureFixture
) -> None:
    """A queue left by an older lemi (0644 files, a 0755 documents directory) that another process
    still has open (its -wal and -shm are there, it appends to its document file): opening the queue
    takes the group and other bits away, and a warning names each file and its old mode."""
    import fcntl

    path = tmp_path / "q.db"
    older = sqlite3.connect(path, isolation_level=None)  # SQLite's own 0644 under umask 022
    older.execute("PRAGMA journal_mode=WAL")
    older.execute("CREATE TABLE t (x)")
    older.execute("INSERT INTO t VALUES (1)")
    documents = tmp_path / "q.db.bodies"
    documents.mkdir(mode=0o755)
    appending = documents / "1-0123abcd-1.seg"
    appending.write_bytes(b"{}")
    appending.chmod(0o644)
    held = os.open(appending, os.O_RDONLY)
    fcntl.flock(held, fcntl.LOCK_EX)  # its writer is alive: collect() leaves the file be
    wide = {p: mode(p) for p in (path, tmp_path / "q.db-wal", tmp_path / "q.db-shm", appending, documents)}
    assert set(wide.values()) == {0o644, 0o755}
    try:
        with caplog.at_level(logging.WARNING, logger="lemi.files"):
            q = SQLiteQueue(path)
            assert await q.depth() == 0
        assert {p: mode(p) for p in wide} == {p: 0o700 if p == documents else 0o600 for p in wide}
        warned = "\n".join(r.getMessage() for r in caplog.records)
        for p, old in wide.items():
            assert f"{p} could be opened by other users (mode {old:03o}); lemi set it to {old & 0o700:03o}" in warned
        await q.close()
    finally:
        os.close(held)
        older.close()


# ---- SQS specifics ---------------------------------------------------------------------------


async def test_sqs_unreachable_is_unavailable(aws_env: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens there
    q = SQSQueue("sqs://http://127.0.0.1:9/123456789012/lemi.fifo")
    with pytest.raises(QueueUnavailable):
        await q.put(job(1))
    await q.close()


@pytest.mark.parametrize(
    ("url", "error"),
    [("redis://x", "use sqlite"), ("sqs://https://sqs.us-east-1.amazonaws.com/1/q", "FIFO")],
)
def test_open_queue_urls(url: str, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        open_queue(url)


def test_open_queue_kinds(tmp_path: Path) -> None:
    assert isinstance(open_queue(f"sqlite:///{tmp_path}/q.db"), SQLiteQueue)
    assert parse_url("sqs://https://sqs.eu-west-1.amazonaws.com/1/q.fifo?dedupe_table=t") == (
        "https://sqs.eu-west-1.amazonaws.com/1/q.fifo",
        "t",
    )
