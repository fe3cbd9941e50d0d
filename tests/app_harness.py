"""The App under test: lemi's real Starlette app, its real SQLite queue and
workers, talking to the shared GitHub fake over HTTP.

    with running_app(github, tmp_path) as app:
        app.deliver("pull_request", payload)      # signed, through POST /webhook
        app.drain()                               # until every job is settled
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fakes.webhooks import signed
from starlette.testclient import TestClient

from bot.core.config import Config, parse_config
from bot.core.settings import Settings
from bot.server.app import create_app
from bot.server.worker import WorkerSettings
from bot.store.jobs import WebhookJob, read_message

WEBHOOK_SECRET = "lemi-test-webhook-secret"

LEMI_YML = """\
infra:
  repository: acme/infra
  path: services/{service}.tf
  merge_method: squash
domain: lemon
environments:
  staging:
    branch: develop
    region: us-east-1
    account_id: "123456789012"
    cluster: lemon-ecs-cluster
  prod:
    branch: main
    region: us-east-1
    account_id: "123456789012"
    cluster: lemon-ecs-cluster
    protected: true
"""

SERVICE_YAML = """\
name: demo-service
owner: infra
spec:
  desiredCount: 1
  image: demo-service
  resource:
    cpu: 512
    memory: 1024
"""


def stored_document(queue_path: Path, dedupe_id: str) -> bytes:
    """The bytes the SQLite queue keeps for a job's webhook document (its file, or its row)."""
    db = sqlite3.connect(queue_path)
    db.row_factory = sqlite3.Row
    try:
        row = db.execute("SELECT * FROM jobs WHERE dedupe_id = ?", (dedupe_id,)).fetchone()
    finally:
        db.close()
    assert row is not None, f"no job {dedupe_id}"
    if row["body_file"] is None:  # kept in the row's message
        message = read_message(row["kind"], row["payload"])
        assert isinstance(message, WebhookJob)
        return bytes(message.document)
    with open(f"{queue_path}.bodies/{row['body_file']}", "rb") as file:
        file.seek(row["body_offset"])
        return file.read(row["body_length"])


def settings_for(github: Any, queue_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = dict(
        app_id=str(github.app_id),
        private_key=github.private_key_pem,
        webhook_secret=WEBHOOK_SECRET,
        api_url=github.url,
        queue_url=f"sqlite:///{queue_path}",
        workers=2,
        lease_seconds=5.0,
        retry_delays=(0.05, 0.1, 0.2),
    )
    values.update(overrides)
    return Settings(**values)


@dataclass
class RunningApp:
    client: TestClient
    queue_path: Path
    secret: str = WEBHOOK_SECRET

    def deliver(
        self, event: str, payload: dict[str, Any], *, delivery: str | None = None
    ) -> Any:  # the TestClient response
        headers, body = signed(event, payload, self.secret, delivery=delivery)
        return self.client.post("/webhook", content=body, headers=headers)

    def jobs(self) -> list[dict[str, Any]]:
        db = sqlite3.connect(self.queue_path)
        db.row_factory = sqlite3.Row
        try:
            return [
                dict(r) for r in db.execute("SELECT id, dedupe_id, key, kind, state, attempts, last_error FROM jobs")
            ]
        except sqlite3.OperationalError:
            return []
        finally:
            db.close()

    def watches(self) -> list[dict[str, Any]]:
        """The rollouts being watched (bot/store/watches.py), in the queue's file."""
        db = sqlite3.connect(self.queue_path)
        db.row_factory = sqlite3.Row
        try:
            return [dict(r) for r in db.execute("SELECT id, key, due, replaced_by, owner FROM watches")]
        except sqlite3.OperationalError:
            return []
        finally:
            db.close()

    def drain(self, timeout: float = 15.0, *, watches: bool = True) -> list[dict[str, Any]]:
        """Wait until no job is queued or running and (``watches``) every watched rollout has
        been reported; returns every job row."""
        deadline = time.monotonic() + timeout
        while True:
            rows = self.jobs()
            if all(r["state"] in ("done", "failed") for r in rows) and not (watches and self.watches()):
                return rows
            if time.monotonic() > deadline:
                raise AssertionError(f"jobs did not settle in {timeout} s: {rows} (watches: {self.watches()})")
            time.sleep(0.02)


@contextmanager
def running_app(
    github: Any,
    tmp_path: Path,
    *,
    config: Config | None = None,
    lemi_yml: str = LEMI_YML,
    workers: int | None = None,
    **settings: Any,
) -> Iterator[RunningApp]:
    queue_path = tmp_path / "queue.db"
    app = create_app(
        settings=settings_for(github, queue_path, **settings),
        config=config or parse_config(lemi_yml),
        workers=workers,
        worker_settings=WorkerSettings(
            lease_seconds=settings.get("lease_seconds", 5.0),
            poll_seconds=0.02,
            retry_delays=settings.get("retry_delays", (0.05, 0.1, 0.2)),
        ),
    )
    with TestClient(app) as client:
        yield RunningApp(client, queue_path)


def setup_repos(github: Any, *, service_files: dict[str, str] | None = None) -> int:
    """acme/demo-service and acme/infra under one installation of the App; returns its id."""
    installation = github.add_installation("acme", repos=())
    github.add_repo("acme/infra", files={"README.md": "infra\n"}, installation=installation)
    github.add_repo(
        "acme/demo-service", files={"README.md": "demo\n", **(service_files or {})}, installation=installation
    )
    return installation
