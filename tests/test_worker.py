"""Workers: done, retried with backoff, failed and reported, never run twice.

A failure is classified by the two classes of bot/core/errors.py only: a ``UserError`` fails at
once; a ``Transient`` is retried, and so is any other exception, as it always was."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from job_harness import numbered_message, webhook_job

from bot.aws.errors import AwsRefused, AwsUnavailable, OperationError
from bot.core.errors import Transient, UserError
from bot.core.problems import Invalid, Problem
from bot.github.errors import GitHubBroken, GitHubDenied, GitHubRateLimited, GitHubRefused, GitHubUnreachable
from bot.server.metrics import Metrics
from bot.server.worker import REPORT_ATTEMPTS, Background, Permanent, Worker, WorkerSettings, retry_delay
from bot.store.queue import Job, NewJob, QueueUnavailable
from bot.store.sqlite_queue import SQLiteQueue


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def queue(tmp_path: Path, clock: Clock) -> AsyncIterator[SQLiteQueue]:
    q = SQLiteQueue(tmp_path / "q.db", clock=clock)
    await q.put(webhook_job("d-1", "k", {"n": 1}))
    yield q
    await q.close()


class Recorder:
    def __init__(self, *outcomes: BaseException | None) -> None:
        self.outcomes = list(outcomes)
        self.runs: list[int] = []
        self.reports: list[tuple[int, str]] = []

    async def process(self, job: Job) -> None:
        self.runs.append(job.attempts)
        outcome = self.outcomes.pop(0) if self.outcomes else None
        if outcome is not None:
            raise outcome

    async def report(self, job: Job, reason: str) -> None:
        self.reports.append((job.attempts, reason))


def worker(queue: SQLiteQueue, rec: Recorder, **settings: object) -> Worker:
    return Worker(queue, rec.process, rec.report, settings=WorkerSettings(**settings), name="w")  # type: ignore[arg-type]


async def test_success_completes_the_job(queue: SQLiteQueue) -> None:
    rec = Recorder()
    assert await worker(queue, rec).run_once() is True
    stored = await queue.get("d-1")
    assert stored is not None and stored.state == "done"
    assert rec.runs == [1] and rec.reports == []


def bad_gateway() -> GitHubBroken:
    return GitHubBroken("Bad Gateway", status_code=502)


async def test_a_transient_error_is_retried_with_backoff_then_succeeds(queue: SQLiteQueue, clock: Clock) -> None:
    rec = Recorder(bad_gateway(), GitHubUnreachable("GitHub could not be reached: reset"))
    w = worker(queue, rec, retry_delays=(5.0, 30.0))
    await w.run_once()
    stored = await queue.get("d-1")
    assert stored is not None and stored.state == "queued" and "GitHubBroken" in (stored.last_error or "")
    assert await w.run_once() is False  # not due yet
    clock.now += 5
    await w.run_once()
    clock.now += 29
    assert await w.run_once() is False
    clock.now += 1
    await w.run_once()
    stored = await queue.get("d-1")
    assert stored is not None and stored.state == "done"
    assert rec.runs == [1, 2, 3] and rec.reports == []


async def test_a_permanent_error_is_reported_and_failed_at_once(queue: SQLiteQueue) -> None:
    rec = Recorder(Permanent("the infra repository is archived"))
    await worker(queue, rec).run_once()
    stored = await queue.get("d-1")
    assert stored is not None and stored.state == "failed"
    assert rec.reports == [(1, "Permanent: the infra repository is archived")]


async def test_a_job_the_queue_cannot_read_back_is_reported_at_once_not_run(tmp_path: Path) -> None:
    q = SQLiteQueue(tmp_path / "q.db", inline_document=0)
    await q.put(webhook_job("d-doc", "k", b'{"ref": "refs/heads/main"}'))
    for segment in Path(q.path + ".bodies").glob("*.seg"):
        segment.unlink()  # the document file is lost (a volume restored without it, say)
    rec = Recorder()
    await worker(q, rec).run_once()
    stored = await q.get("d-doc")
    assert rec.runs == [] and stored is not None and stored.state == "failed"
    assert len(rec.reports) == 1 and "could not read this job back" in rec.reports[0][1]
    await q.close()


async def test_a_github_404_is_permanent(queue: SQLiteQueue) -> None:
    rec = Recorder(GitHubRefused("Not Found", status_code=404))
    await worker(queue, rec).run_once()
    assert rec.reports and "Not Found" in rec.reports[0][1]
    stored = await queue.get("d-1")
    assert stored is not None and stored.state == "failed" and len(rec.reports) == 1 and rec.runs == [1]


async def test_errors_that_never_stop_end_reported(queue: SQLiteQueue, clock: Clock) -> None:
    rec = Recorder(*[RuntimeError("bug")] * 10)
    w = worker(queue, rec, retry_delays=(1.0, 1.0))
    for _ in range(3):
        await w.run_once()
        clock.now += 2
    stored = await queue.get("d-1")
    assert stored is not None and stored.state == "failed"
    assert rec.runs == [1, 2, 3]
    assert rec.reports == [(3, "RuntimeError: bug")]


@pytest.mark.parametrize(
    "exc",
    [
        bad_gateway(),
        GitHubRateLimited("You have exceeded a secondary rate limit", status_code=403, retry_after=60.0),
        GitHubDenied("Conflict", status_code=409),
        GitHubUnreachable("GitHub could not be reached: no answer in time"),
        AwsUnavailable("AWS refused DescribeServices: ThrottlingException: Rate exceeded", code="ThrottlingException"),
        QueueUnavailable("the job database failed: disk I/O error"),
    ],
    ids=lambda exc: type(exc).__name__,
)
async def test_every_transient_failure_is_retried(queue: SQLiteQueue, clock: Clock, exc: Transient) -> None:
    rec = Recorder(exc)
    w = worker(queue, rec, retry_delays=(5.0,))
    await w.run_once()
    stored = await queue.get("d-1")
    assert stored is not None and stored.state == "queued" and type(exc).__name__ in (stored.last_error or "")
    clock.now += max(5.0, exc.retry_after or 0.0)  # a rate limit is not tried before GitHub's pause ends
    await w.run_once()
    stored = await queue.get("d-1")
    assert stored is not None and stored.state == "done" and rec.runs == [1, 2] and rec.reports == []


@pytest.mark.parametrize(
    "exc",
    [
        Permanent("the infra repository is archived"),
        GitHubRefused("Validation Failed", status_code=422),
        AwsRefused("AWS refused DescribeServices: AccessDeniedException: no", code="AccessDeniedException"),
        OperationError("there is no previous revision", "deploy one first"),
        Invalid([Problem("deploy/demo-service/service.yaml", "cpu must be one of 256, 512")]),
    ],
    ids=lambda exc: type(exc).__name__,
)
async def test_every_user_error_fails_at_once_and_is_reported(queue: SQLiteQueue, exc: UserError) -> None:
    rec = Recorder(exc)
    await worker(queue, rec).run_once()
    stored = await queue.get("d-1")
    assert stored is not None and stored.state == "failed" and rec.runs == [1]
    assert len(rec.reports) == 1 and rec.reports[0][1].startswith(type(exc).__name__)


def test_retry_delay_is_the_one_question() -> None:
    delays = (5.0, 30.0)
    assert [retry_delay(bad_gateway(), n, delays) for n in (1, 2, 3)] == [5.0, 30.0, None]
    assert retry_delay(Permanent("no"), 1, delays) is None
    assert retry_delay(RuntimeError("a bug"), 1, delays) == 5.0  # unknown: retried, then failed and reported
    # a rate limit that says how long GitHub pauses: not sooner than that
    limited = GitHubRateLimited("secondary rate limit", status_code=403, retry_after=90.0)
    assert [retry_delay(limited, n, delays) for n in (1, 2, 3)] == [90.0, 90.0, None]
    assert retry_delay(ConnectionError("not translated by an adapter"), 2, delays) == 30.0
    assert retry_delay(bad_gateway(), 1, ()) is None


class FailingReport:
    """A report that raises for its first ``failures`` calls (every call when None)."""

    def __init__(self, failures: int | None = None) -> None:
        self.failures = failures
        self.calls: list[tuple[int, str]] = []

    async def __call__(self, job: Job, reason: str) -> None:
        self.calls.append((job.attempts, reason))
        if self.failures is None or len(self.calls) <= self.failures:
            raise bad_gateway()


def unreported(metrics: Metrics) -> float:
    return (
        metrics.registry.get_sample_value(
            "lemi_job_duration_seconds_count", {"kind": "webhook", "outcome": "unreported"}
        )
        or 0.0
    )


async def test_a_report_that_keeps_failing_is_tried_a_few_times_then_the_job_fails_unreported(
    queue: SQLiteQueue, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    rec, report, metrics = Recorder(Permanent("the infra repository is archived")), FailingReport(), Metrics()
    w = Worker(queue, rec.process, report, settings=WorkerSettings(retry_delays=(0.01,)), metrics=metrics, name="w")
    with caplog.at_level(logging.WARNING, logger="lemi.worker"):
        await w.run_once()
    assert rec.runs == [1]  # never run again for its report's sake
    assert report.calls == [(1, "Permanent: the infra repository is archived")] * REPORT_ATTEMPTS
    stored = await queue.get("d-1")
    assert stored is not None and stored.state == "failed"
    assert "the infra repository is archived" in (stored.last_error or "") and "not reported" in (
        stored.last_error or ""
    )
    (error,) = [r for r in caplog.records if r.levelno == logging.ERROR and "could not be reported" in r.getMessage()]
    text = error.getMessage()
    assert (
        "job 1 " in text
        and "delivery d-1" in text
        and "GitHubBroken" in text
        and "infra repository is archived" in text
    )
    assert unreported(metrics) == 1
    clock.now += 10_000  # and it is over: nothing comes back, however long one waits
    assert await w.run_once() is False


async def test_a_report_that_fails_once_is_tried_again_and_the_job_failed_reported(
    queue: SQLiteQueue, caplog: pytest.LogCaptureFixture
) -> None:
    rec, report, metrics = Recorder(Permanent("nope")), FailingReport(failures=1), Metrics()
    w = Worker(queue, rec.process, report, settings=WorkerSettings(retry_delays=(0.01,)), metrics=metrics, name="w")
    await w.run_once()
    stored = await queue.get("d-1")
    assert stored is not None and stored.state == "failed" and stored.last_error == "Permanent: nope"
    assert len(report.calls) == 2 and rec.runs == [1]
    assert not [r for r in caplog.records if "could not be reported" in r.getMessage()]
    assert unreported(metrics) == 0


async def test_the_lease_is_kept_while_a_report_is_tried_again(tmp_path: Path) -> None:
    q = SQLiteQueue(tmp_path / "q.db")  # the real clock: leases run out
    await q.put(webhook_job("d-1", "k", {}))
    rec, report = Recorder(Permanent("nope")), FailingReport(failures=1)
    w = Worker(q, rec.process, report, settings=WorkerSettings(lease_seconds=0.3, retry_delays=(0.6,)), name="w")
    run = asyncio.create_task(w.run_once())
    while not report.calls:
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.45)  # past the first lease, while the worker waits to report again
    assert await q.lease("thief", 5) is None
    await asyncio.wait_for(run, timeout=3)
    stored = await q.get("d-1")
    assert stored is not None and stored.state == "failed" and len(report.calls) == 2
    await q.close()


async def test_a_job_that_keeps_killing_its_worker_is_reported_not_run(queue: SQLiteQueue, clock: Clock) -> None:
    for _ in range(3):  # three leases that never settled (the process died each time)
        assert await queue.lease("dead", 1) is not None
        clock.now += 2
    rec = Recorder()
    await worker(queue, rec, retry_delays=(1.0,)).run_once()
    assert rec.runs == []
    assert rec.reports and "never finished" in rec.reports[0][1]
    stored = await queue.get("d-1")
    assert stored is not None and stored.state == "failed" and len(rec.reports) == 1


async def test_a_job_that_kept_killing_its_worker_ends_even_when_its_report_fails(
    queue: SQLiteQueue, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    for _ in range(2):  # max_attempts leases that never settled
        assert await queue.lease("dead", 1) is not None
        clock.now += 2
    rec, report, metrics = Recorder(), FailingReport(), Metrics()
    w = Worker(queue, rec.process, report, settings=WorkerSettings(retry_delays=(0.01,)), metrics=metrics, name="w")
    await w.run_once()
    assert rec.runs == [] and len(report.calls) == REPORT_ATTEMPTS and "never finished" in report.calls[0][1]
    stored = await queue.get("d-1")
    assert stored is not None and stored.state == "failed" and "not reported" in (stored.last_error or "")
    assert unreported(metrics) == 1
    clock.now += 10_000
    assert await w.run_once() is False


async def test_a_job_whose_report_kept_killing_its_worker_fails_without_another_try(
    queue: SQLiteQueue, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    settings = WorkerSettings(retry_delays=(0.01,))
    for _ in range(settings.max_attempts + REPORT_ATTEMPTS):  # the runs, then the reports, all cut short
        assert await queue.lease("dead", 1) is not None
        clock.now += 2
    rec, report = Recorder(), FailingReport()
    await Worker(queue, rec.process, report, settings=settings, name="w").run_once()
    assert rec.runs == [] and report.calls == []
    stored = await queue.get("d-1")
    assert stored is not None and stored.state == "failed" and "not reported" in (stored.last_error or "")
    assert [r for r in caplog.records if r.levelno == logging.ERROR and "delivery d-1" in r.getMessage()]


async def test_a_worker_that_loses_its_lease_stops_the_job(tmp_path: Path) -> None:
    q = SQLiteQueue(tmp_path / "q.db")
    await q.put(webhook_job("d-1", "k", {}))
    started, finished = asyncio.Event(), []

    async def slow(job: Job) -> None:
        started.set()
        await asyncio.sleep(5)
        finished.append(job.id)

    async def never(job: Job, reason: str) -> None:
        raise AssertionError("must not report")

    w = Worker(q, slow, never, settings=WorkerSettings(lease_seconds=0.3), name="w1")
    run = asyncio.create_task(w.run_once())
    await started.wait()
    # another worker takes the job over as if w1 had stalled past its lease
    await asyncio.to_thread(
        lambda: (
            __import__("sqlite3")
            .connect(tmp_path / "q.db")
            .execute("UPDATE jobs SET worker = 'w2', attempts = attempts + 1")
            .connection.commit()
        )
    )
    await asyncio.wait_for(run, timeout=3)
    assert finished == []
    await q.close()


async def test_a_long_job_runs_in_the_background_and_the_worker_takes_the_next_delivery(tmp_path: Path) -> None:
    """Deploys (jobs of a background kind) are handed over: the one worker leases and runs the
    delivery queued behind two of them while they run; beyond the background's limit a deploy
    waits for a slot with its lease kept, and the worker is never the one waiting."""
    queue = SQLiteQueue(tmp_path / "q.db")
    release = asyncio.Event()
    ran: list[str] = []

    async def process(job: Job) -> None:
        ran.append(job.dedupe_id)
        if job.kind == "deploy":
            await release.wait()

    async def report(job: Job, reason: str) -> None:
        raise AssertionError(reason)

    try:
        await queue.put(NewJob("deploy-1", "acme/demo:svc:staging", numbered_message(1, kind="deploy")))
        await queue.put(NewJob("deploy-2", "acme/demo:other:staging", numbered_message(2, kind="deploy")))
        await queue.put(webhook_job("d-3", "acme/demo#3", {"n": 3}))
        background = Background(frozenset({"deploy"}), limit=1)
        settings = WorkerSettings(lease_seconds=0.3)
        w = Worker(queue, process, report, settings=settings, name="w", background=background)
        assert await w.run_once() and await w.run_once() and await w.run_once()  # two handed over, one run
        await asyncio.sleep(0.5)  # past a lease: the waiting deploy keeps its lease
        assert ran == ["deploy-1", "d-3"]  # deploy-2 waits for the one slot
        delivery = await queue.get("d-3")
        assert delivery is not None and delivery.state == "done"
        for dedupe in ("deploy-1", "deploy-2"):
            job = await queue.get(dedupe)
            assert job is not None and (job.state, job.attempts) == ("running", 1)
        assert await queue.lease("another", 1.0) is None  # nobody else may take them
        release.set()
        await background.drain(5)
        assert ran == ["deploy-1", "d-3", "deploy-2"]
        for dedupe in ("deploy-1", "deploy-2"):
            job = await queue.get(dedupe)
            assert job is not None and (job.state, job.attempts) == ("done", 1)
    finally:
        await queue.close()


async def test_stopping_lets_a_short_job_finish_and_releases_a_long_ones_lease(tmp_path: Path) -> None:
    """WorkerPool.stop(grace): no new job; a job that ends within the grace is done; one that does
    not (here in the background) is cancelled and queued again at once, its lease given back."""
    from bot.server.worker import RELEASED, WorkerPool

    queue = SQLiteQueue(tmp_path / "q.db")
    await queue.put(NewJob("long", "k1", numbered_message(1, kind="deploy")))  # handed to the background
    await queue.put(NewJob("short", "k2", numbered_message(2)))  # then run by the worker itself
    started: dict[str, asyncio.Event] = {"short": asyncio.Event(), "long": asyncio.Event()}

    async def process(job: Job) -> None:
        started[job.dedupe_id].set()
        await asyncio.sleep(0.5 if job.dedupe_id == "short" else 3600)

    async def report(job: Job, reason: str) -> None:
        raise AssertionError("nothing fails")

    background = Background(frozenset({"deploy"}), limit=1)
    pool = WorkerPool(
        [Worker(queue, process, report, settings=WorkerSettings(lease_seconds=300), name="w", background=background)],
        background,
    )
    pool.start()
    await asyncio.wait_for(asyncio.gather(*(e.wait() for e in started.values())), 10)
    await queue.put(NewJob("later", "k3", numbered_message(3)))  # while the worker runs the short one
    await pool.stop(grace=1.0)
    short, long_, later = [await queue.get(d) for d in ("short", "long", "later")]
    assert short is not None and short.state == "done"
    assert long_ is not None and (long_.state, long_.attempts) == ("queued", 1)
    assert later is not None and (later.state, later.attempts) == ("queued", 0)  # never taken
    rows = {job.dedupe_id for job in [await queue.lease("another", 60), await queue.lease("another", 60)] if job}
    assert rows == {"long", "later"}  # at once: no lease to run out
    stored = await queue.get("long")
    assert stored is not None and stored.last_error == RELEASED
    await queue.close()
