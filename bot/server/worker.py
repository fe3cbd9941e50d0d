"""Workers: lease a job, run it, settle it.

A failed job is asked one question (:func:`retry_delay`), answered by the two
classes of bot/core/errors.py that the adapters translate library errors into:
a ``UserError`` fails at once (retrying cannot fix it); a ``Transient`` failure,
and any other exception (a bug in lemi, or a failure no adapter knew), goes back
to the queue with a growing delay. A job that keeps failing, or fails for good,
ends ``failed`` -- and the user is told (comment or check run) before that.
Telling them is tried REPORT_ATTEMPTS times; a job whose report keeps failing
too ends ``failed`` without one, logged as an error and counted (outcome
``unreported``), rather than holding its queue key forever.
While a job runs its lease is extended; a worker that loses its lease (it
was too slow, or the queue handed the job to another worker after a crash)
stops the job instead of running it twice in parallel.

Stopping (SIGTERM: :meth:`WorkerPool.stop`) takes no new job and gives the running ones the
shutdown's grace (``LEMI_SHUTDOWN_GRACE_SECONDS``) to finish; a job still running then is
cancelled and its lease released (:data:`RELEASED`), so another worker takes it at once rather
than after its lease runs out. A job stopped so is run again from the start, as after a crash.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from bot.core import logs
from bot.core.errors import Transient, UserError, classify
from bot.server.metrics import Metrics
from bot.store.jobs import Unreadable
from bot.store.queue import Job, Queue, QueueUnavailable

log = logging.getLogger("lemi.worker")

Process = Callable[[Job], Awaitable[None]]
Report = Callable[[Job, str], Awaitable[None]]

DEFAULT_RETRY_DELAYS = (5.0, 30.0, 120.0, 600.0, 1800.0)
# tries at telling the user that a job failed, the retry delays apart; then it fails unreported
REPORT_ATTEMPTS = 3


# why a job that a stopping worker gave back is queued again (its last_error)
RELEASED = "lemi stopped (SIGTERM) before this job finished; it runs again"


class Permanent(UserError):
    """A failure that retrying cannot fix; the message is shown to the user."""


def retry_delay(exc: BaseException, attempts: int, delays: tuple[float, ...]) -> float | None:
    """The one question asked of a job that failed its ``attempts``-th attempt: in how many
    seconds to try it again, or None to fail it now (and tell the user).

    A ``UserError`` fails at once: retrying cannot fix it. Anything else is tried again
    ``delays[attempts - 1]`` later, ``len(delays) + 1`` attempts in all: a ``Transient``
    failure may pass, and so may an exception no adapter translated (it is logged as one
    lemi did not expect when the job fails for good). A transient failure that says how long to
    wait (GitHub's ``Retry-After``) is not tried again sooner."""
    if classify(exc) == "user" or attempts > len(delays):
        return None
    delay = delays[attempts - 1]
    asked = exc.retry_after if isinstance(exc, Transient) else None
    return max(delay, asked) if asked else delay  # not before the service asked (a rate limit's pause)


def describe(exc: BaseException) -> str:
    text = " ".join(str(a) for a in getattr(exc, "args", ()) if a) or type(exc).__name__
    return f"{type(exc).__name__}: {text}"[:500]


@dataclass
class WorkerSettings:
    lease_seconds: float = 60.0
    poll_seconds: float = 0.5
    retry_delays: tuple[float, ...] = DEFAULT_RETRY_DELAYS

    @property
    def max_attempts(self) -> int:
        return len(self.retry_delays) + 1


class Background:
    """Jobs that may take a while (a deploy that waits for its image, a long command) run here,
    beside the workers: a worker that leases one hands it over and leases the next job at once,
    so deliveries and short commands never wait behind them, however many deploys a push makes.
    At most ``limit`` of them run at once; the others wait for a slot, their leases kept."""

    def __init__(self, kinds: frozenset[str], limit: int) -> None:
        self.kinds = kinds
        self.limit = limit
        self.slots = asyncio.Semaphore(limit)
        self.tasks: set[asyncio.Task[None]] = set()

    def takes(self, job: Job) -> bool:
        return job.kind in self.kinds

    def spawn(self, work: Awaitable[None]) -> None:
        task = asyncio.ensure_future(work)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def drain(self, grace: float) -> None:
        """Let the jobs running here finish within ``grace`` seconds; cancel the others (their
        leases are released: :meth:`Worker._run`)."""
        await _within(self.tasks, grace)


class Worker:
    def __init__(
        self,
        queue: Queue,
        process: Process,
        report: Report,
        *,
        settings: WorkerSettings | None = None,
        metrics: Metrics | None = None,
        name: str | None = None,
        background: Background | None = None,
    ) -> None:
        self.queue = queue
        self.process = process
        self.report = report
        self.settings = settings or WorkerSettings()
        self.metrics = metrics
        self.name = name or f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.background = background
        self._stopping: asyncio.Event | None = None

    async def run(self, stop: asyncio.Event) -> None:
        self._stopping = stop
        while not stop.is_set():
            try:
                worked = await self.run_once()
            except QueueUnavailable as exc:
                log.error("the queue is unavailable: %s", exc)
                worked = False
            except Exception:  # noqa: BLE001 - a worker must survive anything
                log.exception("worker loop error")
                worked = False
            if not worked and not stop.is_set():
                await self.queue.wait_for_work(self.settings.poll_seconds)  # at once for a job put here

    async def run_once(self) -> bool:
        """Lease and run one job (or hand it to the background); False when there was none."""
        job = await self.queue.lease(self.name, self.settings.lease_seconds)
        if job is None:
            return False
        if self._stopping is not None and self._stopping.is_set():  # leased as the stop came: give it back
            await self._release(job)
            return False
        if self.background is not None and self.background.takes(job):
            self.background.spawn(self._settle(job))
        else:
            await self._settle(job)
        return True

    async def _settle(self, job: Job) -> None:
        with logs.bind(job=job.id, delivery=job.dedupe_id, **_labels(job)):
            try:
                await self._run(job)
            except Exception:  # noqa: BLE001 - a background job has nobody else to tell
                if self.background is None:
                    raise
                log.exception("job %s: the worker could not settle it (its lease runs out, and it runs again)", job.id)

    async def _run(self, job: Job) -> None:
        started = time.monotonic()
        outcome = "done"
        if job.attempts > self.settings.max_attempts:  # it kept killing its worker
            reason = f"stopped after {job.attempts - 1} attempts that never finished"
            if job.attempts > self.settings.max_attempts + REPORT_ATTEMPTS:  # and so did reporting it
                why = f"its worker stopped while reporting it, {REPORT_ATTEMPTS} times"
                outcome = await self._fail_unreported(job, reason, why)
            else:
                outcome = await self._give_up(job, reason)
            self._observe(job, outcome, started)
            return
        task = asyncio.create_task(self._process(job))
        beat = asyncio.create_task(self._heartbeat(job, task))
        try:
            await task
        except asyncio.CancelledError:
            if beat.done() and beat.result() is False:
                log.warning("lost the lease of job %s; another worker has it", job.id)
                self._observe(job, "lost", started)
                return
            await self._release(job)  # stopped (SIGTERM, past the grace): another worker takes it at once
            self._observe(job, "released", started)
            raise
        except Exception as exc:  # noqa: BLE001
            outcome = await self._failed(job, exc)
        else:
            await self.queue.complete(job)
            log.info("job %s done", job.id)
        finally:
            beat.cancel()
        self._observe(job, outcome, started)

    async def _process(self, job: Job) -> None:
        if isinstance(job.message, Unreadable):  # the queue could not read what it stored: retrying will not help
            raise Permanent(f"lemi could not read this job back from its queue ({job.message.reason})")
        if self.background is not None and self.background.takes(job):
            async with self.background.slots:  # the lease is kept (heartbeat) while it waits
                await self.process(job)
        else:
            await self.process(job)

    async def _release(self, job: Job) -> None:
        """Give ``job`` back to the queue, ready now (a stopping worker's job; never raises)."""
        try:
            await asyncio.shield(self.queue.retry(job, 0.0, RELEASED))
            log.warning("job %s: released as lemi stops; another worker runs it again", job.id)
        except Exception as exc:  # noqa: BLE001 - then its lease runs out instead
            log.warning("job %s: could not release its lease as lemi stops (%s); it runs again once the lease "
                        "runs out", job.id, describe(exc))  # fmt: skip

    async def _heartbeat(self, job: Job, task: asyncio.Task[Any]) -> bool:
        interval = max(0.05, self.settings.lease_seconds / 3)
        while not task.done():
            await asyncio.sleep(interval)
            if task.done():
                break
            if not await self.queue.extend(job, self.settings.lease_seconds):
                task.cancel()
                return False
        return True

    async def _failed(self, job: Job, exc: Exception) -> str:
        reason = describe(exc)
        where = {k: v for k, v in getattr(exc, "lemi_log", {}).items() if k in logs.FIELDS}
        delay = retry_delay(exc, job.attempts, self.settings.retry_delays)
        if delay is None:
            if classify(exc) == "bug":
                log.error("job %s failed with an error lemi does not expect (a bug), not retried: %s",
                          job.id, reason, exc_info=exc, extra=where)  # fmt: skip
            else:
                log.error("job %s failed for good: %s", job.id, reason, exc_info=exc, extra=where)
            return await self._give_up(job, reason)
        log.warning("job %s failed (attempt %s), retrying in %ss: %s", job.id, job.attempts, delay, reason, extra=where)
        await self.queue.retry(job, delay, reason)
        return "retry"

    async def _give_up(self, job: Job, reason: str) -> str:
        """Tell the user, then fail the job for good: "failed", "unreported" or "lost".

        The report is tried REPORT_ATTEMPTS times while the job's lease is kept; a job is
        never run again for its report's sake."""
        report = asyncio.create_task(self._report(job, reason))
        beat = asyncio.create_task(self._heartbeat(job, report))
        try:
            why = await report
        except asyncio.CancelledError:
            if beat.done() and beat.result() is False:
                log.warning("lost the lease of job %s while reporting its failure; another worker has it", job.id)
                return "lost"
            raise
        finally:
            beat.cancel()
        if why is not None:
            return await self._fail_unreported(job, reason, why)
        await self.queue.fail(job, reason)
        return "failed"

    async def _report(self, job: Job, reason: str) -> str | None:
        """None once the user is told; else why it could not be."""
        why = ""
        for attempt in range(1, REPORT_ATTEMPTS + 1):
            try:
                await self.report(job, reason)
                return None
            except Exception as exc:  # noqa: BLE001 - a broken report must not lose the job's end
                why = describe(exc)
            if attempt < REPORT_ATTEMPTS:
                delay = self.settings.retry_delays[min(attempt - 1, len(self.settings.retry_delays) - 1)]
                log.warning(
                    "could not report the failure of job %s (attempt %s of %s), trying again in %ss: %s",
                    job.id, attempt, REPORT_ATTEMPTS, delay, why,
                )  # fmt: skip
                await asyncio.sleep(delay)
        return f"{REPORT_ATTEMPTS} attempts failed, the last with {why}"

    async def _fail_unreported(self, job: Job, reason: str, why: str) -> str:
        log.error(
            "job %s (delivery %s) failed and could not be reported (%s); it failed with %s",
            job.id, job.dedupe_id, why, reason,
        )  # fmt: skip
        await self.queue.fail(job, f"{reason} (not reported: {why})")
        return "unreported"

    def _observe(self, job: Job, outcome: str, started: float) -> None:
        if self.metrics is not None:
            self.metrics.jobs.labels(job.kind, outcome).observe(time.monotonic() - started)


def _labels(job: Job) -> dict[str, str]:
    return job.message.log_fields()


class WorkerPool:
    def __init__(self, workers: list[Worker], background: Background | None = None) -> None:
        self.workers = workers
        self.background = background
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._stop.clear()
        self._tasks = [asyncio.create_task(w.run(self._stop)) for w in self.workers]

    def halt(self) -> None:
        """Take no new job from now on (the running ones go on until :meth:`stop`)."""
        self._stop.set()

    async def stop(self, grace: float = 10.0) -> None:
        """Take no new job; give the running ones (the workers' and the background's) ``grace``
        seconds in all to finish, then cancel them, their leases released."""
        self._stop.set()
        end = time.monotonic() + grace
        await _within(self._tasks, grace)
        self._tasks = []
        if self.background is not None:
            await self.background.drain(max(0.0, end - time.monotonic()))


async def _within(tasks: set[asyncio.Task[None]] | list[asyncio.Task[None]], grace: float) -> None:
    """Wait up to ``grace`` seconds for ``tasks``; cancel those still running and wait for them
    to end (a cancelled job releases its lease first)."""
    if not tasks:
        return
    _, pending = await asyncio.wait(set(tasks), timeout=grace) if grace > 0 else (set(), set(tasks))
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
