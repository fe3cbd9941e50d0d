"""Jobs for queue and worker tests: typed messages (bot/store/jobs.py) made in one line.

``webhook_job`` is a delivery as intake stores it (its document as bytes, received as is);
``numbered`` makes a job of any kind that carries a number ``n``, read back by ``number_of``,
so a test can tell jobs apart after they went through a queue.
"""

from __future__ import annotations

import json
from typing import Any

import msgspec

from bot.core.command_parser import Command
from bot.store.jobs import CommandJob, DeployJob, DeployRequest, Invocation, Message, Target, Unreadable, WebhookJob
from bot.store.queue import Job, NewJob

REPOSITORY = "acme/demo"


def webhook_job(
    dedupe_id: str, key: str, document: bytes | dict[str, Any], *, event: str = "push", repository: str = REPOSITORY
) -> NewJob:
    raw = document if isinstance(document, bytes) else json.dumps(document).encode()
    return NewJob(dedupe_id, key, WebhookJob(event, dedupe_id, repository, msgspec.Raw(raw)))


def numbered_message(n: int | str, kind: str = "webhook", delivery: str = "") -> Message:
    if kind == "webhook":
        return WebhookJob("push", delivery, REPOSITORY, msgspec.Raw(json.dumps({"n": n}).encode()))
    if kind == "deploy":
        return DeployJob(DeployRequest(REPOSITORY, "demo-service", "staging", "a" * 40, str(n), "octocat"))
    if kind == "command":
        invocation = Invocation(REPOSITORY, 1, 1, "octocat", "b" * 40, Command("restart", argument=str(n)))
        return CommandJob(invocation, Target("demo-service", "staging"))
    raise ValueError(kind)


def numbered(n: int | str, key: str = "acme/demo#1", kind: str = "webhook") -> NewJob:
    dedupe_id = f"delivery-{n}"
    return NewJob(dedupe_id=dedupe_id, key=key, message=numbered_message(n, kind, dedupe_id))


def document_of(job: Job) -> dict[str, Any]:
    """The parsed document of a leased webhook job."""
    assert isinstance(job.message, WebhookJob), job.message
    return job.message.data()


def number_of(job: Job) -> Any:
    """The ``n`` a job of :func:`numbered` carries."""
    message = job.message
    if isinstance(message, WebhookJob):
        return message.data()["n"]
    if isinstance(message, DeployJob):
        return message.request.tag
    if isinstance(message, CommandJob):
        return message.invocation.command.argument
    raise AssertionError(f"no number in {message!r}")


def unreadable(job: Job) -> str:
    """Why the queue could not read ``job`` back (it must not have)."""
    assert isinstance(job.message, Unreadable), job.message
    return job.message.reason
