"""Environment locks, for both stores: SQLite (one host) and DynamoDB (every replica)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from test_queue import make_sqs

from bot.store.backends import open_locks
from bot.store.jobs import DeployJob, DeployRequest
from bot.store.locks import DynamoLockStore, Locks, LockStore


def deploy(sha: str) -> DeployJob:
    return DeployJob(DeployRequest("acme/demo", "demo", "staging", sha, f"tag-{sha}", "octocat"))


@pytest.fixture(params=["sqlite", "dynamodb"])
async def locks(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Locks]:
    if request.param == "sqlite":
        store: Locks = open_locks("sqlite:///x.db", str(tmp_path / "locks.db"))
        assert isinstance(store, LockStore)
    else:
        lemi_url, _, _ = make_sqs(request.getfixturevalue("aws_env"))
        store = open_locks(lemi_url, str(tmp_path / "unused.db"))
        assert isinstance(store, DynamoLockStore)
    yield store
    await store.close()


async def test_a_lock_is_held_by_one_user(locks: Locks) -> None:
    assert await locks.get("acme/demo", "staging") is None
    lock = await locks.acquire("acme/demo", "staging", "alice", "load test")
    assert (lock.holder, lock.reason) == ("alice", "load test")
    assert (await locks.acquire("acme/demo", "staging", "bob")).holder == "alice"
    assert (await locks.acquire("acme/demo", "prod", "bob")).holder == "bob"  # per environment
    got = await locks.get("acme/demo", "staging")
    assert got is not None and got.holder == "alice"


async def test_release_returns_held_deploys_in_order(locks: Locks) -> None:
    await locks.acquire("acme/demo", "staging", "alice")
    await locks.hold("acme/demo", "staging", deploy("1"))
    await locks.hold("acme/demo", "staging", deploy("2"))
    released = await locks.release("acme/demo", "staging")
    assert [h.job for h in released] == [deploy("1"), deploy("2")]  # held whole, in order
    assert len({h.id for h in released}) == 2
    assert await locks.get("acme/demo", "staging") is None
    assert await locks.release("acme/demo", "staging") == []


async def test_held_lists_the_held_deploys_and_leaves_them_and_the_lock(locks: Locks) -> None:
    """An unlock queues the held deploys before it releases the lock (bot/flows/runners.py)."""
    assert await locks.held("acme/demo", "staging") == []
    await locks.acquire("acme/demo", "staging", "alice")
    await locks.hold("acme/demo", "staging", deploy("1"))
    await locks.hold("acme/demo", "staging", deploy("2"))
    held = await locks.held("acme/demo", "staging")
    assert [h.job for h in held] == [deploy("1"), deploy("2")]
    assert await locks.held("acme/demo", "staging") == held  # read again: the same, nothing taken
    assert await locks.get("acme/demo", "staging") is not None
    assert await locks.release("acme/demo", "staging") == held  # the same ids: a repeat is a duplicate


async def test_a_release_that_fails_half_way_leaves_the_lock_and_the_store_usable(tmp_path: Path) -> None:
    """Work that raises inside BEGIN ... COMMIT is rolled back: the lock is still held and
    the next call does not find a transaction left open (bot/store/sqlitedb.Store)."""
    import sqlite3

    store = LockStore(tmp_path / "locks.db")
    await store.acquire("acme/demo", "staging", "alice")
    await store.hold("acme/demo", "staging", deploy("abc"))

    def broken(db: sqlite3.Connection) -> None:
        db.execute("BEGIN IMMEDIATE")
        db.execute("DELETE FROM locks")
        raise sqlite3.OperationalError("disk I/O error")

    with pytest.raises(sqlite3.OperationalError):
        await store._run(broken)
    lock = await store.get("acme/demo", "staging")
    assert lock is not None and lock.holder == "alice"
    assert [h.job for h in await store.release("acme/demo", "staging")] == [deploy("abc")]
    assert await store.get("acme/demo", "staging") is None
    await store.close()
