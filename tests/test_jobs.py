"""Typed jobs (bot/store/jobs.py): one union tagged by ``kind``, a webhook's document kept as
received, and the payloads an older lemi stored still read, in every queue and lock store."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import msgspec
import pytest

from bot.core.command_parser import Command
from bot.store.jobs import (
    CommandJob,
    DeployJob,
    DeployRequest,
    Invocation,
    Target,
    WebhookJob,
    encode_message,
    read_message,
)
from bot.store.locks import LockStore
from bot.store.queue import NewJob
from bot.store.sqlite_queue import SQLiteQueue

REQUEST = DeployRequest(
    "acme/demo", "demo-service", "staging", "a" * 40, "v1.2.3", "octocat", "push", "d-1", 42, "develop"
)
INVOCATION = Invocation(
    "acme/demo", 7, 99, "octocat", "b" * 40, Command("rollback", env="prod", service="demo-service"), 42, "d-2"
)
TARGET = Target("demo-service", "prod", "c" * 40, "the main branch", False)


@pytest.mark.parametrize(
    "message",
    [
        WebhookJob("push", "d-0", "acme/demo", msgspec.Raw(b'{"ref": "refs/heads/main",  "z": [1, 2]}')),
        DeployJob(REQUEST),
        DeployJob(REQUEST, released=True),
        CommandJob(INVOCATION, TARGET, rollback_to="arn:aws:ecs:us-east-1:123456789012:task-definition/x:3"),
    ],
    ids=["webhook", "deploy", "deploy-released", "command"],
)
def test_every_message_reads_back_as_it_was(message: WebhookJob | DeployJob | CommandJob) -> None:
    kind = str(message.__struct_config__.tag)
    stored = encode_message(message)
    assert json.loads(stored)["kind"] == kind
    assert read_message(kind, stored) == message


def test_a_webhook_document_is_embedded_byte_for_byte() -> None:
    document = b'{"a": "caf\\u00e9",   "n": 123456789012345678901234567890}'
    stored = encode_message(WebhookJob("push", "d", "acme/demo", msgspec.Raw(document)))
    assert document in stored  # not re-serialised
    back = read_message("webhook", stored)
    assert isinstance(back, WebhookJob) and bytes(back.document) == document
    assert back.data() == {"a": "café", "n": 123456789012345678901234567890}


def test_a_message_stored_under_another_kind_is_refused() -> None:
    with pytest.raises(ValueError, match="stored as command holds a deploy"):
        read_message("command", encode_message(DeployJob(REQUEST)))
    with pytest.raises(ValueError, match="not JSON"):
        read_message("deploy", b'{"kind": "deploy", ')


# ---- what a lemi from before typed jobs stored --------------------------------------------------

OLD_DEPLOY = {
    "repository": "acme/demo", "service": "demo-service", "environment": "staging", "sha": "a" * 40,
    "tag": "v1.2.3", "requested_by": "octocat", "source": "push", "delivery": "d-1", "installation": 42,
    "branch": "develop",
}  # fmt: skip
OLD_COMMAND = {
    "repository": "acme/demo", "number": 7, "comment_id": 99, "user": "octocat", "head_sha": "b" * 40,
    "command": {"name": "rollback", "env": "prod", "service": "demo-service", "argument": None},
    "installation": 42, "delivery": "d-2",
    "service": "demo-service", "environment": "prod", "ref": "c" * 40, "source": "the main branch",
    "named_after": False, "rollback_to": "arn:aws:ecs:us-east-1:123456789012:task-definition/x:3",
}  # fmt: skip


def test_an_older_deploy_payload_reads_as_the_same_job() -> None:
    assert read_message("deploy", json.dumps(OLD_DEPLOY)) == DeployJob(REQUEST)
    released = read_message("deploy", json.dumps({**OLD_DEPLOY, "released": True}))
    assert released == DeployJob(REQUEST, released=True)


def test_an_older_command_payload_reads_as_the_same_job() -> None:
    expected = CommandJob(INVOCATION, TARGET, rollback_to=OLD_COMMAND["rollback_to"])
    assert read_message("command", json.dumps(OLD_COMMAND)) == expected


def test_a_command_queued_before_ref_existed_reads_the_pull_requests_head() -> None:
    old = {k: v for k, v in OLD_COMMAND.items() if k not in ("ref", "source", "named_after", "rollback_to")}
    job = read_message("command", json.dumps(old))
    assert isinstance(job, CommandJob)
    assert job.target == Target("demo-service", "prod", "b" * 40, "this pull request", True)
    assert job.rollback_to is None


async def test_jobs_an_older_lemi_left_in_the_sqlite_queue_run(tmp_path: Path) -> None:
    """Rows written by the previous version (kind + flat payload; a webhook's document in its
    row as ``data``) are leased as typed jobs after an upgrade."""
    path = tmp_path / "q.db"
    q = SQLiteQueue(path)
    await q.put(NewJob("new", "k0", DeployJob(REQUEST)))  # creates the schema
    await q.close()
    db = sqlite3.connect(path)
    webhook = {"event": "push", "delivery": "old-1", "repository": "acme/demo", "data": {"ref": "refs/heads/main"}}
    for dedupe, key, kind, payload in (
        ("old-1", "k1", "webhook", webhook),
        ("old-2", "k2", "deploy", OLD_DEPLOY),
        ("old-3", "k3", "command", OLD_COMMAND),
    ):
        db.execute(
            "INSERT INTO jobs (dedupe_id, key, kind, payload, created, updated) VALUES (?, ?, ?, ?, 0, 0)",
            (dedupe, key, kind, json.dumps(payload)),
        )
    db.commit()
    db.close()
    q = SQLiteQueue(path)
    leased = {}
    while (job := await q.lease("w", 30)) is not None:
        leased[job.dedupe_id] = job.message
        await q.complete(job)
    await q.close()
    assert leased["new"] == DeployJob(REQUEST)
    assert isinstance(leased["old-1"], WebhookJob) and leased["old-1"].data() == {"ref": "refs/heads/main"}
    assert (leased["old-1"].event, leased["old-1"].delivery) == ("push", "old-1")
    assert leased["old-2"] == DeployJob(REQUEST)
    assert leased["old-3"] == CommandJob(INVOCATION, TARGET, rollback_to=OLD_COMMAND["rollback_to"])


async def test_a_deploy_an_older_lemi_held_under_a_lock_is_released_typed(tmp_path: Path) -> None:
    store = LockStore(tmp_path / "locks.db")
    await store.acquire("acme/demo", "staging", "octocat")
    await store.hold("acme/demo", "staging", DeployJob(REQUEST))  # creates the table
    db = sqlite3.connect(tmp_path / "locks.db")
    db.execute(
        "INSERT INTO held (repository, environment, payload, created) VALUES (?, ?, ?, 0)",
        ("acme/demo", "staging", json.dumps({**OLD_DEPLOY, "tag": "v1.2.4"})),
    )
    db.commit()
    db.close()
    held = await store.release("acme/demo", "staging")
    assert [h.job.request.tag for h in held] == ["v1.2.3", "v1.2.4"]
    assert held[1].job == DeployJob(msgspec.structs.replace(REQUEST, tag="v1.2.4"))
