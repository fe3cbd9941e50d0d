"""Two App replicas on one SQS FIFO queue (moto): every delivery processed exactly
once, the jobs of one key in order, whichever replica took the webhook."""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter, defaultdict
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from app_harness import LEMI_YML, WEBHOOK_SECRET, settings_for
from fakes.webhooks import example, signed
from starlette.testclient import TestClient
from test_queue import make_sqs

from bot.core.config import parse_config
from bot.server.app import Handlers, create_app
from bot.server.worker import WorkerSettings
from bot.store.jobs import WebhookJob
from bot.store.queue import Job

DELIVERIES = 500
KEYS = 10


class Recorder:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.seen: list[tuple[str, str, int, str]] = []  # delivery, key, sequence, replica
        self.running: dict[str, int] = defaultdict(int)
        self.overlaps = 0

    def handlers(self, replica: str) -> Handlers:
        async def process(job: Job, ctx: Any) -> None:
            with self.lock:
                self.running[job.key] += 1
                self.overlaps += self.running[job.key] > 1  # two jobs of one key at once
            try:
                time.sleep(0.001)  # hold the key a moment, so a violation would show
                assert isinstance(job.message, WebhookJob)
                data = job.message.data()
                with self.lock:
                    self.seen.append((job.dedupe_id, job.key, int(data["lemi_sequence"]), replica))
            finally:
                with self.lock:
                    self.running[job.key] -= 1

        async def report(job: Job, ctx: Any, reason: str) -> None:
            raise AssertionError(f"job {job.dedupe_id} failed: {reason}")

        return Handlers(
            accepts=lambda event, data: event == "pull_request",
            job_key=lambda event, data, ctx: f"{data['repository']['full_name']}#{data['number']}",
            process=process,
            report=report,
        )


def test_two_replicas_process_each_delivery_once_in_key_order(github: Any, aws_env: str, tmp_path: Path) -> None:
    queue_url, _, _ = make_sqs(aws_env)
    recorder = Recorder()
    config = parse_config(LEMI_YML)
    with ExitStack() as stack:
        replicas = []
        for name in ("a", "b"):
            app = create_app(
                handlers=recorder.handlers(name),
                settings=settings_for(github, tmp_path / f"{name}.db", queue_url=queue_url, workers=4),
                config=config,
                worker_settings=WorkerSettings(lease_seconds=30, poll_seconds=0.2, retry_delays=(1.0,)),
            )
            replicas.append(stack.enter_context(TestClient(app)))
        base = example("pull_request", "opened")
        sent: list[str] = []
        for i in range(DELIVERIES):
            payload = {**base, "number": i % KEYS, "lemi_sequence": i}
            delivery = str(uuid.uuid4())
            headers, body = signed("pull_request", payload, WEBHOOK_SECRET, delivery=delivery)
            response = replicas[i % 2].post("/webhook", content=body, headers=headers)
            assert response.status_code == 202, response.text
            sent.append(delivery)
            if i % 50 == 0:  # a redelivery of an earlier one, to the other replica: stored once
                again = replicas[(i + 1) % 2].post("/webhook", content=body, headers=headers)
                assert again.json() == {"status": "duplicate"}
        deadline = time.monotonic() + 90
        while len(recorder.seen) < DELIVERIES and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)  # anything processed twice would show up now

    counts = Counter(d for d, _, _, _ in recorder.seen)
    assert set(counts) == set(sent) and max(counts.values()) == 1, "each delivery exactly once"
    by_key: dict[str, list[int]] = defaultdict(list)
    for _, key, sequence, _ in recorder.seen:
        by_key[key].append(sequence)
    for key, sequences in by_key.items():
        assert sequences == sorted(sequences), f"{key} out of order"
    assert recorder.overlaps == 0, "two jobs of one key ran at once"
    replicas_used = Counter(r for _, _, _, r in recorder.seen)
    assert set(replicas_used) == {"a", "b"}, replicas_used  # both replicas did work


@pytest.fixture(autouse=True)
def _no_github_calls(github: Any) -> Any:
    yield
    assert [c for c in github.calls if not c.path.startswith("/app/")] == []
