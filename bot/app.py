"""The App's ASGI application (``bot.app:app``): routes and lifespan.

``POST /webhook`` checks the signature first (constant time), stores the
delivery durably, and answers; workers do the work from the queue.
``GET /healthz`` and ``GET /metrics`` are for operators. Configuration,
the HTTP session, the queue and the workers are opened in the lifespan,
never at import.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import aiohttp
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from . import logs
from .config import Config, load_config
from .context import Context
from .github.auth import AppAuth
from .locks import open_locks
from .metrics import CONTENT_TYPE, Metrics
from .problems import Invalid
from .queue import NewJob, Queue, QueueUnavailable, open_queue
from .redeliver import RedeliveryState, Redeliverer
from .settings import Settings, SettingsError, load_settings
from .worker import Worker, WorkerPool, WorkerSettings

log = logging.getLogger("lemi.app")

MAX_BODY = 25 * 1024 * 1024  # GitHub caps payloads at 25 MB
_DELIVERY_RE = re.compile(r"^[A-Za-z0-9-]{1,100}$")
_EVENT_RE = re.compile(r"^[a-z0-9_]{1,64}$")


def signature_ok(body: bytes, header: str | None, secret: str) -> bool:
    if not header or not header.startswith("sha256="):
        return False
    expected = "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected.encode("ascii"), header.encode("ascii", errors="replace"))


@dataclass
class Handlers:
    """The handlers' entry points, given to the app (bot/ never imports handlers/)."""

    accepts: Callable[[str, Any], bool]
    job_key: Callable[[str, dict[str, Any]], str]
    process: Callable[..., Any]
    report: Callable[..., Any]


@dataclass
class State:
    settings: Settings
    metrics: Metrics = field(default_factory=Metrics)
    config: Config | None = None
    queue: Queue | None = None
    context: Context | None = None
    status: str = "starting"  # ready | unconfigured
    problem: str = ""


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


async def webhook(request: Request) -> Response:
    state: State = request.app.state.lemi
    handlers: Handlers = request.app.state.handlers
    if state.status != "ready" or state.queue is None or state.settings.webhook_secret is None:
        state.metrics.deliveries.labels("-", "unconfigured").inc()
        return _error(503, f"lemi is not configured: {state.problem}")
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > MAX_BODY:
        state.metrics.deliveries.labels("-", "too_large").inc()
        return _error(413, "payload larger than 25 MB")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY:
            state.metrics.deliveries.labels("-", "too_large").inc()
            return _error(413, "payload larger than 25 MB")
    if not signature_ok(bytes(body), request.headers.get("x-hub-signature-256"), state.settings.webhook_secret):
        state.metrics.deliveries.labels("-", "bad_signature").inc()
        return _error(401, "missing or invalid X-Hub-Signature-256")
    event = request.headers.get("x-github-event", "")
    delivery = request.headers.get("x-github-delivery", "")
    if not _EVENT_RE.match(event) or not _DELIVERY_RE.match(delivery):
        state.metrics.deliveries.labels("-", "bad_request").inc()
        return _error(400, "missing or malformed X-GitHub-Event / X-GitHub-Delivery")
    try:
        data = _decode(bytes(body), request.headers.get("content-type", ""))
    except ValueError as exc:
        state.metrics.deliveries.labels(event, "bad_request").inc()
        return _error(400, f"malformed payload: {exc}")
    with logs.bind(delivery=delivery, event=event):
        if event == "ping":
            state.metrics.deliveries.labels(event, "pong").inc()
            return JSONResponse({"status": "pong"})
        if not handlers.accepts(event, data):
            state.metrics.deliveries.labels(event, "ignored").inc()
            return JSONResponse({"status": "ignored"})
        try:
            repository = str(data["repository"]["full_name"])
            key = handlers.job_key(event, data)
        except (KeyError, TypeError, AttributeError):
            state.metrics.deliveries.labels(event, "bad_request").inc()
            return _error(400, "malformed payload: no repository.full_name")
        job = NewJob(
            dedupe_id=delivery,
            key=key,
            kind="webhook",
            payload={"event": event, "delivery": delivery, "repository": repository, "data": data},
        )
        try:
            stored = await state.queue.put(job)
        except QueueUnavailable as exc:
            log.error("could not store delivery %s: %s", delivery, exc)
            state.metrics.deliveries.labels(event, "store_failed").inc()
            return _error(503, "could not store the delivery; redeliver it from the App's settings")
        outcome = "queued" if stored else "duplicate"
        state.metrics.deliveries.labels(event, outcome).inc()
        log.info("delivery %s %s", delivery, outcome, extra={"repository": repository})
        return JSONResponse({"status": outcome}, status_code=202)


def _decode(body: bytes, content_type: str) -> Any:
    if content_type.startswith("application/x-www-form-urlencoded"):
        form = parse_qs(body.decode("utf-8"))
        if "payload" not in form:
            raise ValueError("no payload field")
        return json.loads(form["payload"][0])
    try:
        return json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(str(exc)) from None


async def healthz(request: Request) -> JSONResponse:
    state: State = request.app.state.lemi
    body = {"status": "ok", "app": state.status, "config": "loaded" if state.config else "missing"}
    if state.problem:
        body["problem"] = state.problem
    return JSONResponse(body)


async def metrics(request: Request) -> Response:
    state: State = request.app.state.lemi
    depth = state.queue.depth if state.queue is not None else None
    return Response(await state.metrics.render(depth), media_type=CONTENT_TYPE)


def create_app(
    *,
    handlers: Handlers | None = None,
    settings: Settings | None = None,
    config: Config | None = None,
    queue: Queue | None = None,
    workers: int | None = None,
    worker_settings: WorkerSettings | None = None,
) -> Starlette:
    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        logs.setup()
        chosen = handlers or default_handlers()
        app.state.handlers = chosen
        try:
            loaded = settings or load_settings()
        except SettingsError as exc:
            app.state.lemi = State(Settings(), status="unconfigured", problem=str(exc))
            log.error("settings: %s", exc)
            yield
            return
        state = State(loaded)
        app.state.lemi = state
        state.config = config
        if state.config is None:
            try:
                state.config = load_config(loaded.config_path)
            except Invalid as exc:
                state.problem = str(exc)
        if not loaded.has_app_credentials:
            state.problem = state.problem or "GITHUB_APP_ID, the private key and GITHUB_WEBHOOK_SECRET are not set"
        if state.problem or state.config is None:
            state.status = "unconfigured"
            # --- first-run setup page (bot/setup.py): only while the App has no credentials at all ---
            if not (loaded.app_id or loaded.private_key or loaded.webhook_secret):
                from . import setup

                setup.mount(app, loaded)
            # --- end of the setup page ---
            log.warning("serving health only: %s", state.problem)
            yield
            return
        assert loaded.app_id and loaded.private_key
        state.queue = queue or open_queue(loaded.queue_url)
        session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
        auth = AppAuth(
            session,
            app_id=loaded.app_id,
            private_key=loaded.private_key,
            base_url=loaded.api_url,
            on_response=state.metrics.github_response,
        )
        ctx = Context(state.config, loaded, auth, state.queue, open_locks(loaded.queue_url, loaded.locks_path), state.metrics)
        state.context = ctx
        tuning = worker_settings or WorkerSettings(
            lease_seconds=loaded.lease_seconds, retry_delays=loaded.retry_delays
        )
        pool = WorkerPool(
            [
                Worker(
                    state.queue,
                    lambda job: chosen.process(job, ctx),
                    lambda job, reason: chosen.report(job, ctx, reason),
                    settings=tuning,
                    metrics=state.metrics,
                )
                for _ in range(loaded.workers if workers is None else workers)
            ]
        )
        pool.start()
        # missed deliveries: ask GitHub to redeliver them, at start and periodically (bot/redeliver.py)
        redeliverer = Redeliverer(
            auth.app,
            state.queue,
            RedeliveryState(loaded.locks_path),
            interval=loaded.redeliver_interval_seconds,
            metrics=state.metrics,
        )
        redeliverer.start()
        state.status = "ready"
        try:
            yield
        finally:
            await redeliverer.stop()
            await pool.stop()
            await ctx.close()
            await session.close()
            await state.queue.close()

    return Starlette(
        routes=[
            Route("/webhook", webhook, methods=["POST"]),
            Route("/healthz", healthz),
            Route("/metrics", metrics),
        ],
        lifespan=lifespan,
    )


def default_handlers() -> Handlers:
    import handlers  # the composition root: the one place bot/ reaches handlers/

    return Handlers(handlers.accepts, handlers.job_key, handlers.process, handlers.report)


app = create_app()
