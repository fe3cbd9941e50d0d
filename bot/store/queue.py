"""The durable job queue: a small interface, with an embedded SQLite backend.

Semantics every backend keeps:

* ``put`` stores a job durably before it returns; a second job with the same
  ``dedupe_id`` (the ``X-GitHub-Delivery``) is ignored, even after the first
  is done, so a redelivery is processed once;
* jobs of one concurrency ``key`` (repository + service + environment) run
  one at a time, in the order they were put; a job waiting for a retry
  holds back the later jobs of its key;
* ``lease`` hands a job to one worker until ``lease_until``; a worker that
  dies (even by SIGKILL) loses the lease when it runs out and the job is
  leased again; ``complete``/``retry``/``fail`` only act for the current
  holder of the lease, so a job never runs twice in parallel;
* ``retry`` puts a job back with a delay; ``fail`` is terminal (the worker
  reports it to the user first);
* a job carries a typed message (bot/store/jobs.py); a webhook's document (intake's summary
  of the delivery) is stored byte for byte as it is given (``WebhookJob.document``, never
  re-serialised) and comes back the same on ``lease``;
* a job whose message cannot be read back (a damaged store) is handed out with an
  :class:`~bot.store.jobs.Unreadable` message, which the worker fails and reports at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from bot.core.errors import Transient
from bot.store.jobs import Message, Unreadable, kind_of


@dataclass(frozen=True)
class NewJob:
    dedupe_id: str
    key: str
    message: Message

    @property
    def kind(self) -> str:
        return kind_of(self.message)


@dataclass(frozen=True)
class Job:
    id: int
    dedupe_id: str
    key: str
    message: Message | Unreadable
    attempts: int  # leases so far, this one included
    state: str
    worker: str | None = None
    last_error: str | None = None

    @property
    def kind(self) -> str:
        return kind_of(self.message)


class Queue(Protocol):
    @property
    def searchable(self) -> bool:
        """Whether ``newer_in_key`` can look into the queue (SQS cannot: it answers False)."""
        ...

    async def put(self, job: NewJob) -> bool: ...
    async def lease(self, worker: str, lease_seconds: float) -> Job | None: ...
    async def wait_for_work(self, timeout: float) -> None:
        """Return once a job may be waiting: at once when one was put in this process, else after ``timeout``."""
        ...

    async def extend(self, job: Job, lease_seconds: float) -> bool: ...
    async def complete(self, job: Job) -> bool: ...
    async def retry(self, job: Job, delay: float, error: str) -> bool: ...
    async def fail(self, job: Job, error: str) -> bool: ...
    async def newer_in_key(self, job: Job, kind: str | None = None) -> bool: ...
    async def get(self, dedupe_id: str) -> Job | None: ...
    async def depth(self) -> int: ...
    async def close(self) -> None: ...


class QueueUnavailable(Transient):
    """The queue could not store or hand out a job (disk, database, network)."""
