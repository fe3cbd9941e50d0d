"""The queue's contract, for every backend (only SQLite today; SQS joins this suite)."""

from __future__ import annotations

import asyncio

import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.queue import NewJob, Queue, QueueUnavailable, open_queue
from bot.queue.sqlite import SQLiteQueue


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture(params=["sqlite"])
async def queue(request: pytest.FixtureRequest, tmp_path: Path, clock: Clock) -> AsyncIterator[Queue]:
    q = SQLiteQueue(tmp_path / "queue.db", clock=clock)
    yield q
    await q.close()


def job(n: int | str, key: str = "acme/demo#1", kind: str = "webhook") -> NewJob:
    return NewJob(dedupe_id=f"delivery-{n}", key=key, kind=kind, payload={"n": n})


async def test_a_job_goes_through(queue: Queue) -> None:
    assert await queue.put(job(1)) is True
    assert await queue.depth() == 1
    leased = await queue.lease("w1", 30)
    assert leased is not None and leased.payload == {"n": 1} and leased.attempts == 1 and leased.state == "running"
    assert await queue.lease("w2", 30) is None
    assert await queue.complete(leased) is True
    assert await queue.depth() == 0
    assert await queue.lease("w1", 30) is None


async def test_a_delivery_is_stored_once_even_after_it_is_done(queue: Queue) -> None:
    assert await queue.put(job(1)) is True
    assert await queue.put(job(1)) is False
    leased = await queue.lease("w1", 30)
    assert leased is not None
    await queue.complete(leased)
    assert await queue.put(job(1)) is False
    assert await queue.lease("w1", 30) is None


async def test_one_key_runs_one_job_at_a_time_in_order(queue: Queue) -> None:
    for n in (1, 2, 3):
        await queue.put(job(n, key="a"))
    await queue.put(job(4, key="b"))
    first = await queue.lease("w1", 30)
    other = await queue.lease("w2", 30)
    assert first is not None and other is not None
    assert (first.payload["n"], other.payload["n"]) == (1, 4)
    assert await queue.lease("w3", 30) is None  # 2 waits for 1
    await queue.complete(first)
    second = await queue.lease("w3", 30)
    assert second is not None and second.payload["n"] == 2


async def test_a_retry_waits_and_holds_back_its_key(queue: Queue, clock: Clock) -> None:
    await queue.put(job(1, key="a"))
    await queue.put(job(2, key="a"))
    first = await queue.lease("w1", 30)
    assert first is not None
    assert await queue.retry(first, 10, "GitHubBroken: 502") is True
    assert await queue.lease("w1", 30) is None  # 1 is not due, and 2 must not overtake it
    clock.now += 11
    again = await queue.lease("w1", 30)
    assert again is not None and again.payload["n"] == 1 and again.attempts == 2
    assert again.last_error == "GitHubBroken: 502"


async def test_an_expired_lease_is_taken_over_and_the_old_holder_cannot_settle(queue: Queue, clock: Clock) -> None:
    await queue.put(job(1))
    first = await queue.lease("w1", 30)
    assert first is not None
    clock.now += 10
    assert await queue.extend(first, 30) is True  # now held until +40
    clock.now += 25
    assert await queue.lease("w2", 30) is None
    clock.now += 10
    second = await queue.lease("w2", 30)
    assert second is not None and second.worker == "w2" and second.attempts == 2
    assert await queue.complete(first) is False
    assert await queue.extend(first, 30) is False
    assert await queue.complete(second) is True


async def test_fail_is_terminal(queue: Queue) -> None:
    await queue.put(job(1, key="a"))
    await queue.put(job(2, key="a"))
    first = await queue.lease("w1", 30)
    assert first is not None
    assert await queue.fail(first, "boom") is True
    stored = await queue.get("delivery-1")
    assert stored is not None and stored.state == "failed" and stored.last_error == "boom"
    second = await queue.lease("w1", 30)
    assert second is not None and second.payload["n"] == 2


async def test_newer_in_key(queue: Queue) -> None:
    await queue.put(job(1, key="a", kind="deploy"))
    first = await queue.lease("w1", 30)
    assert first is not None
    assert await queue.newer_in_key(first) is False
    await queue.put(job(2, key="a", kind="command"))
    assert await queue.newer_in_key(first, kind="deploy") is False
    await queue.put(job(3, key="a", kind="deploy"))
    assert await queue.newer_in_key(first, kind="deploy") is True


async def test_jobs_survive_a_reopen(tmp_path: Path, clock: Clock) -> None:
    path = tmp_path / "q.db"
    q = SQLiteQueue(path, clock=clock)
    await q.put(job(1))
    await q.close()
    q = SQLiteQueue(path, clock=clock)
    leased = await q.lease("w1", 30)
    assert leased is not None and leased.payload == {"n": 1}
    await q.close()


def test_a_killed_worker_loses_its_job_only_until_the_lease_runs_out(tmp_path: Path) -> None:
    """A process that leased a job is killed with SIGKILL; another process gets the job after the lease."""
    path = tmp_path / "q.db"
    script = textwrap.dedent(
        f"""
        import asyncio, os
        from bot.queue import NewJob
        from bot.queue.sqlite import SQLiteQueue
        async def main():
            q = SQLiteQueue({str(path)!r})
            await q.put(NewJob("d-1", "k", "webhook", {{"n": 1}}))
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
        assert job is not None and job.payload == {"n": 1} and job.attempts == 2
        assert await q.complete(job)
        await q.close()

    asyncio.run(take_over())


async def test_an_unwritable_database_is_reported_as_unavailable(tmp_path: Path) -> None:
    blocked = tmp_path / "not-a-dir"
    blocked.write_text("")
    q = SQLiteQueue(blocked / "q.db")
    with pytest.raises((QueueUnavailable, OSError)):
        await q.put(job(1))


@pytest.mark.parametrize(
    ("url", "error"),
    [("sqs://queue", "not available"), ("redis://x", "use sqlite")],
)
def test_open_queue_urls(url: str, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        open_queue(url)


def test_open_queue_sqlite(tmp_path: Path) -> None:
    assert isinstance(open_queue(f"sqlite:///{tmp_path}/q.db"), SQLiteQueue)


