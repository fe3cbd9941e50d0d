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
* a webhook's document is stored as GitHub sent it (``NewJob.data_json``,
  never re-serialised: intake stays cheap and what GitHub sent is kept
  byte for byte) and comes back parsed, as ``payload["data"]``, on ``lease``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import msgspec


@dataclass(frozen=True)
class NewJob:
    dedupe_id: str
    key: str
    kind: str  # "webhook", "command", ...
    payload: dict[str, Any] = field(default_factory=dict)
    # the webhook's JSON document as received (already checked to be a JSON object);
    # the leased Job has it parsed as payload["data"]
    data_json: bytes | None = None


def encode_payload(payload: dict[str, Any], data_json: bytes | None = None) -> bytes:
    """The payload as stored: JSON, with ``data_json`` embedded verbatim as ``data``."""
    if data_json is not None:
        payload = {**payload, "data": msgspec.Raw(data_json)}
    return _encoder.encode(payload)


def decode_payload(stored: bytes | str) -> dict[str, Any]:
    """A stored payload. One that cannot be read (intake checks every document, so only a
    damaged store) raises ValueError; a backend then hands the job out as
    ``{"undecodable": reason}``, which the worker fails and reports at once instead of the
    queue failing on every lease."""
    try:
        return _payload_decoder.decode(stored)
    except msgspec.DecodeError as exc:
        raise ValueError(f"a stored payload is not JSON: {exc}") from None


_encoder = msgspec.json.Encoder()
_payload_decoder = msgspec.json.Decoder(dict[str, Any])


@dataclass(frozen=True)
class Job:
    id: int
    dedupe_id: str
    key: str
    kind: str
    payload: dict[str, Any]
    attempts: int  # leases so far, this one included
    state: str
    worker: str | None = None
    last_error: str | None = None


class Queue(Protocol):
    async def put(self, job: NewJob) -> bool: ...
    async def lease(self, worker: str, lease_seconds: float) -> Job | None: ...
    async def extend(self, job: Job, lease_seconds: float) -> bool: ...
    async def complete(self, job: Job) -> bool: ...
    async def retry(self, job: Job, delay: float, error: str) -> bool: ...
    async def fail(self, job: Job, error: str) -> bool: ...
    async def newer_in_key(self, job: Job, kind: str | None = None) -> bool: ...
    async def get(self, dedupe_id: str) -> Job | None: ...
    async def depth(self) -> int: ...
    async def close(self) -> None: ...


class QueueUnavailable(Exception):
    """The queue could not store or hand out a job (disk, database, network)."""


def open_queue(url: str) -> Queue:
    """``sqlite:///path.db`` (embedded, the default) or ``sqs://<fifo-queue-url>[?dedupe_table=T]``."""
    if url.startswith("sqlite:///"):
        from bot.store.sqlite_queue import SQLiteQueue

        return SQLiteQueue(url.removeprefix("sqlite:///") or "lemi-queue.db")
    if url.startswith("sqs://"):
        from bot.store.sqs_queue import SQSQueue

        return SQSQueue(url)
    raise ValueError(f"LEMI_QUEUE={url!r}: use sqlite:///path.db or sqs://<queue-url>")
