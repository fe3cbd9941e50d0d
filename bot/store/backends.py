"""The queue, the locks and the watches a ``LEMI_QUEUE`` URL names: the one place that knows every backend."""

from __future__ import annotations

from bot.store.locks import DynamoLockStore, Locks, LockStore
from bot.store.queue import Queue
from bot.store.sqlite_queue import SQLiteQueue
from bot.store.sqs_queue import SQSQueue, parse_url, region_of
from bot.store.watches import SQLiteWatches, Watches


def open_queue(url: str) -> Queue:
    """``sqlite:///path.db`` (embedded, the default) or ``sqs://<fifo-queue-url>[?dedupe_table=T]``."""
    if url.startswith("sqlite:///"):
        return SQLiteQueue(url.removeprefix("sqlite:///") or "lemi-queue.db")
    if url.startswith("sqs://"):
        return SQSQueue(url)
    raise ValueError(f"LEMI_QUEUE={url!r}: use sqlite:///path.db or sqs://<queue-url>")


def open_locks(queue_url: str, sqlite_path: str) -> Locks:
    """Locks next to the queue: DynamoDB when the queue is SQS with a table, else the SQLite file."""
    if queue_url.startswith("sqs://"):
        url, table = parse_url(queue_url)
        if table:
            return DynamoLockStore(table, region_of(url))
    return LockStore(sqlite_path)


def open_watches(queue_url: str, sqlite_path: str) -> Watches:
    """Watches beside the locks: DynamoDB when the queue is SQS with a table (every replica sees
    them, and takes over those of a replica that died), else the SQLite file."""
    if queue_url.startswith("sqs://"):
        url, table = parse_url(queue_url)
        if table:
            from bot.store.dynamo_watches import DynamoWatches

            return DynamoWatches(table, region_of(url))
    return SQLiteWatches(sqlite_path)
