"""Prometheus metrics of one App process (served at GET /metrics)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

CONTENT_TYPE: str = CONTENT_TYPE_LATEST  # what GET /metrics answers with


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.deliveries = Counter(
            "lemi_webhook_deliveries", "Webhook deliveries by event and outcome", ["event", "outcome"],
            registry=self.registry,
        )  # fmt: skip
        self._deliveries: dict[tuple[str, str], Any] = {}
        self.queue_depth = Gauge("lemi_queue_depth", "Jobs queued or running", registry=self.registry)
        self.watched = Gauge(
            "lemi_rollouts_watched", "Rollouts (and other long waits) the watcher of this process polled last round",
            registry=self.registry,
        )  # fmt: skip
        self.jobs = Histogram(
            "lemi_job_duration_seconds", "Time to process a job, by kind and outcome", ["kind", "outcome"],
            registry=self.registry, buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900),
        )  # fmt: skip
        self.loop_lag = Histogram(
            "lemi_event_loop_lag_seconds", "How late a timer of the event loop fired (bot/server/looplag.py)",
            registry=self.registry, buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )  # fmt: skip
        # registered at the first GitHub answer that tells it: until then it is absent from /metrics,
        # not 0, which would fire the alert on it (docs/operations.md)
        self.rate_limit: Gauge | None = None
        self.github_requests = Counter(
            "lemi_github_requests", "GitHub API requests by method and status", ["method", "status"],
            registry=self.registry,
        )  # fmt: skip

    def delivery(self, event: str, outcome: str) -> None:
        """Count one webhook delivery (the labelled child is looked up once per pair)."""
        child = self._deliveries.get((event, outcome))
        if child is None:
            child = self._deliveries[(event, outcome)] = self.deliveries.labels(event, outcome)
        child.inc()

    def github_response(self, method: str, url: str, status: int, headers: object) -> None:
        self.github_requests.labels(method, str(status)).inc()
        remaining = getattr(headers, "get", lambda *_: None)("x-ratelimit-remaining")
        if remaining is not None:
            try:
                value = float(remaining)
            except ValueError:
                return
            if self.rate_limit is None:
                self.rate_limit = Gauge(
                    "lemi_github_rate_limit_remaining", "GitHub API requests left in the current window",
                    registry=self.registry,
                )  # fmt: skip
            self.rate_limit.set(value)

    async def render(self, depth: Callable[[], Awaitable[int]] | None = None) -> bytes:
        if depth is not None:
            try:
                self.queue_depth.set(await depth())
            except Exception:  # noqa: BLE001 - a broken queue must not break /metrics
                pass
        return generate_latest(self.registry)
