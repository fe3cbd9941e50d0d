"""Per-environment locks (``/lemi lock``): while an environment of a repository
is locked, push deploys and commands of anyone but the holder are held.

Held push deploys are remembered (as their :class:`~bot.store.jobs.DeployJob`) and queued
again when the lock is released. :class:`Locks` is what both stores do: the embedded SQLite
database next to the job queue (one file per App; several processes on one host share it),
or DynamoDB for replicas on SQS.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from bot.store.dynamo import DynamoTable
from bot.store.jobs import DeployJob, encode_message, read_message
from bot.store.sqlitedb import Store

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


@dataclass(frozen=True)
class Held:
    """A deploy a lock held, numbered in the order it was held."""

    id: int
    job: DeployJob


class Locks(Protocol):
    async def get(self, repository: str, environment: str) -> Lock | None: ...

    async def acquire(self, repository: str, environment: str, holder: str, reason: str = "") -> Lock:
        """Take the lock, or return the lock someone else already holds."""
        ...

    async def hold(self, repository: str, environment: str, job: DeployJob) -> None:
        """Remember a deploy the lock holds back."""
        ...

    async def held(self, repository: str, environment: str) -> list[Held]:
        """The deploys the lock holds back, in order, left where they are (an unlock queues them
        before it releases the lock, so that failing in between loses none)."""
        ...

    async def release(self, repository: str, environment: str) -> list[Held]:
        """Drop the lock; returns the held deploys, in order, to be queued again."""
        ...

    async def close(self) -> None: ...


def _held(index: int, stored: str) -> Held:
    """A held deploy as stored: a DeployJob, or the payload an older lemi held (ValueError if neither)."""
    job = read_message("deploy", stored)
    assert isinstance(job, DeployJob)  # read_message checks the kind
    return Held(index, job)


class LockStore:
    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self._store = Store(self.path, SCHEMA)
        self._run = self._store.run

    async def get(self, repository: str, environment: str) -> Lock | None:
        def work(db: sqlite3.Connection) -> Lock | None:
            row = db.execute(
                "SELECT * FROM locks WHERE repository = ? AND environment = ?", (repository, environment)
            ).fetchone()
            return (
                Lock(row["repository"], row["environment"], row["holder"], row["reason"], row["created"])
                if row
                else None
            )

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

    async def held(self, repository: str, environment: str) -> list[Held]:
        def work(db: sqlite3.Connection) -> list[Held]:
            rows = db.execute(
                "SELECT id, payload FROM held WHERE repository = ? AND environment = ? ORDER BY id",
                (repository, environment),
            ).fetchall()
            return [_held(r["id"], r["payload"]) for r in rows]

        result: list[Held] = await self._run(work)
        return result

    async def release(self, repository: str, environment: str) -> list[Held]:
        """Drop the lock; returns the held deploys, to be queued again."""

        def work(db: sqlite3.Connection) -> list[Held]:
            db.execute("BEGIN IMMEDIATE")
            db.execute("DELETE FROM locks WHERE repository = ? AND environment = ?", (repository, environment))
            rows = db.execute(
                "SELECT id, payload FROM held WHERE repository = ? AND environment = ? ORDER BY id",
                (repository, environment),
            ).fetchall()
            held = [_held(r["id"], r["payload"]) for r in rows]  # unreadable: rolled back, the lock stays
            db.execute("DELETE FROM held WHERE repository = ? AND environment = ?", (repository, environment))
            db.execute("COMMIT")
            return held

        result: list[Held] = await self._run(work)
        return result

    async def hold(self, repository: str, environment: str, job: DeployJob) -> None:
        def work(db: sqlite3.Connection) -> None:
            db.execute(
                "INSERT INTO held (repository, environment, payload, created) VALUES (?, ?, ?, ?)",
                (repository, environment, encode_message(job).decode(), time.time()),
            )

        await self._run(work)

    async def close(self) -> None:
        await self._store.close()


class DynamoLockStore(DynamoTable):
    """The same locks in DynamoDB, shared by every replica (with ``LEMI_QUEUE=sqs://...?dedupe_table=T``).

    One item per lock (``lock#<repository>#<environment>``) in the delivery table;
    held deploys are a list on the lock item, so releasing returns them atomically.
    """

    @staticmethod
    def _key(repository: str, environment: str) -> dict[str, Any]:
        return {"id": {"S": f"lock#{repository}#{environment}"}}

    @staticmethod
    def _lock(repository: str, environment: str, item: dict[str, Any]) -> Lock:
        return Lock(repository, environment, item["holder"]["S"], item.get("reason", {}).get("S", ""),
                    float(item["created"]["N"]))  # fmt: skip

    async def get(self, repository: str, environment: str) -> Lock | None:
        ddb = await self._ddb()
        found = await ddb.get_item(TableName=self.table, Key=self._key(repository, environment), ConsistentRead=True)
        return self._lock(repository, environment, found["Item"]) if "Item" in found else None

    async def acquire(self, repository: str, environment: str, holder: str, reason: str = "") -> Lock:
        ddb = await self._ddb()
        item = {**self._key(repository, environment), "holder": {"S": holder}, "reason": {"S": reason},
                "created": {"N": str(time.time())}, "held": {"L": []}}  # fmt: skip
        try:
            await ddb.put_item(TableName=self.table, Item=item, ConditionExpression="attribute_not_exists(id)")
        except Exception as exc:  # noqa: BLE001 - ConditionalCheckFailed: someone holds it
            if "ConditionalCheckFailed" not in type(exc).__name__ + str(exc):
                raise
        lock = await self.get(repository, environment)
        assert lock is not None
        return lock

    async def hold(self, repository: str, environment: str, job: DeployJob) -> None:
        ddb = await self._ddb()
        await ddb.update_item(
            TableName=self.table,
            Key=self._key(repository, environment),
            UpdateExpression="SET held = list_append(if_not_exists(held, :empty), :p)",
            ExpressionAttributeValues={":p": {"L": [{"S": encode_message(job).decode()}]}, ":empty": {"L": []}},
        )

    async def held(self, repository: str, environment: str) -> list[Held]:
        ddb = await self._ddb()
        found = await ddb.get_item(TableName=self.table, Key=self._key(repository, environment), ConsistentRead=True)
        held = found.get("Item", {}).get("held", {}).get("L", [])
        return [_held(index + 1, entry["S"]) for index, entry in enumerate(held)]

    async def release(self, repository: str, environment: str) -> list[Held]:
        ddb = await self._ddb()
        gone = await ddb.delete_item(
            TableName=self.table, Key=self._key(repository, environment), ReturnValues="ALL_OLD"
        )
        held = gone.get("Attributes", {}).get("held", {}).get("L", [])
        return [_held(index + 1, entry["S"]) for index, entry in enumerate(held)]
