"""The App's ASGI application (``bot.server.app:app``): routes and lifespan.

``POST /webhook`` checks the signature first (constant time), stores the
delivery durably, and answers; workers do the work from the queue.
``GET /healthz`` (liveness), ``GET /readyz`` (readiness, bot/server/ready.py) and
``GET /metrics`` are for operators. Configuration,
the HTTP session, the queue and the workers are opened in the lifespan
(bot/server/lifespan.py), never at import.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import logging
import re
import typing
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import msgspec
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Match, Mount, Route
from starlette.types import Receive, Scope, Send

from bot.core import logs
from bot.core.config import Config
from bot.core.settings import Settings
from bot.server.lifespan import Configured, State, Unconfigured, decide_start, running
from bot.server.metrics import CONTENT_TYPE
from bot.server.ready import CHECKS, readyz
from bot.server.remote_config import ConfigStatus
from bot.server.worker import WorkerSettings
from bot.setup import create_setup_app
from bot.store.jobs import WebhookJob
from bot.store.queue import NewJob, Queue, QueueUnavailable

log = logging.getLogger("lemi.app")

MAX_BODY = 25 * 1024 * 1024  # GitHub caps payloads at 25 MB
_DELIVERY_RE = re.compile(r"^[A-Za-z0-9-]{1,100}$")
_EVENT_RE = re.compile(r"^[a-z0-9_]{1,64}$")


def signature_ok(body: bytes, header: str | None, secret: str) -> bool:
    """``X-Hub-Signature-256`` is ``sha256=`` and the body's HMAC-SHA256 under ``secret``, compared
    in constant time (one-shot ``hmac.digest``: no HMAC object per delivery)."""
    if not header or not header.startswith("sha256="):
        return False
    expected = b"sha256=" + hmac.digest(secret.encode("utf-8"), body, hashlib.sha256).hex().encode("ascii")
    return hmac.compare_digest(expected, header.encode("ascii", errors="replace"))


class QuietDeliveries(logging.Filter):
    """Leaves out uvicorn's access-log line of a ``POST /webhook`` answered 2xx: lemi's own JSON
    line of that delivery (its id, event, repository and outcome) says it already, and a second
    line per delivery was a tenth of intake's cost. Every other request (a refused delivery,
    health, metrics, the setup page) keeps its access-log line."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args  # uvicorn's: (client, method, path with query, HTTP version, status)
        if isinstance(args, tuple) and len(args) == 5 and args[1] == "POST" and isinstance(args[4], int):
            return not (200 <= args[4] < 300 and str(args[2]).split("?", 1)[0] == "/webhook")
        return True


def quiet_deliveries() -> None:
    """Install :class:`QuietDeliveries` on uvicorn's access log, once per process."""
    access = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, QuietDeliveries) for f in access.filters):
        access.addFilter(QuietDeliveries())


@dataclass
class Handlers:
    """The handlers' entry points, given to the app (bot/ never imports handlers/).

    At intake a delivery is decoded only into ``summary`` (a TypedDict of the fields the
    handlers read: the rest of the document is checked to be JSON, not built), and that
    summary is what is stored: ``accepts`` and ``job_key`` see it, and ``process`` gets it in
    a WebhookJob, parsed by ``WebhookJob.data()``. A delivery that does not fit the shape
    (valid JSON, a field of another type) is read whole, and stored whole, as received; so is
    every delivery when ``summary`` is no TypedDict (``dict[str, Any]``: keep everything)."""

    accepts: Callable[[str, Any], bool]
    job_key: Callable[[str, dict[str, Any], Any], str]  # (event, summary, the Context)
    process: Callable[..., Any]
    report: Callable[..., Any]
    summary: Any = dict[str, Any]
    decoder: Any = field(init=False, repr=False)
    compact: bool = field(init=False, repr=False)  # store the summary, not the document

    def __post_init__(self) -> None:
        self.decoder = msgspec.json.Decoder(self.summary)
        self.compact = typing.is_typeddict(self.summary)


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


_STATUS = {"queued": 202, "duplicate": 202, "ignored": 200, "pong": 200}


class _Answer(Response):
    """A Response built once and sent many times: each send gets its own list of headers, so a
    middleware that adds a header to one answer adds it to that one alone."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status_code, "headers": [*self.raw_headers]})
        await send({"type": "http.response.body", "body": self.body})


# the answers to a delivery that was read, built once (building a Response is about 1.5 µs of each answer)
_ANSWERS = {
    outcome: _Answer(b'{"status":"%s"}' % outcome.encode(), status_code=status, media_type="application/json")
    for outcome, status in _STATUS.items()
}


def _answer(outcome: str) -> Response:
    """{"status": outcome}, for a delivery that was read."""
    return _ANSWERS[outcome]


# the request headers intake reads (ASGI gives names in lower case, as bytes)
_READ = {
    name.encode("latin-1"): name
    for name in ("content-length", "content-type", "x-hub-signature-256", "x-github-event", "x-github-delivery")
}


def _headers(raw: list[tuple[bytes, bytes]]) -> dict[str, str]:
    """The headers intake reads, each one's first value (as Starlette's ``Headers.get``), in one pass
    over the request's headers instead of one pass per header."""
    found: dict[str, str] = {}
    for key, value in raw:
        name = _READ.get(key)
        if name is not None and name not in found:
            found[name] = value.decode("latin-1")
    return found


async def _read_body(request: Request) -> bytes | None:
    """The request body, or None once it is over MAX_BODY (read straight from the
    ASGI messages: a webhook is one or a few of them)."""
    body = b""
    while True:
        message = await request.receive()
        if message["type"] != "http.request":  # the client went away
            return body
        chunk: bytes = message.get("body", b"")
        body += chunk
        if len(body) > MAX_BODY:
            return None
        if not message.get("more_body", False):
            return body


async def webhook(request: Request) -> Response:
    state: State = request.app.state.lemi
    handlers: Handlers = request.app.state.handlers
    count = state.metrics.delivery
    if state.status != "ready" or state.queue is None or state.settings.webhook_secret is None:
        count("-", "unconfigured")
        return _error(503, f"lemi is not configured: {state.problem}")
    headers = _headers(request.scope["headers"])
    length = headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > MAX_BODY:
        count("-", "too_large")
        return _error(413, "payload larger than 25 MB")
    body = await _read_body(request)
    if body is None:
        count("-", "too_large")
        return _error(413, "payload larger than 25 MB")
    if not signature_ok(body, headers.get("x-hub-signature-256"), state.settings.webhook_secret):
        count("-", "bad_signature")
        return _error(401, "missing or invalid X-Hub-Signature-256")
    event = headers.get("x-github-event", "")
    delivery = headers.get("x-github-delivery", "")
    if not _EVENT_RE.match(event) or not _DELIVERY_RE.match(delivery):
        count("-", "bad_request")
        return _error(400, "missing or malformed X-GitHub-Event / X-GitHub-Delivery")
    try:
        data, document = _decode(handlers.decoder, body, headers.get("content-type", ""), compact=handlers.compact)
    except ValueError as exc:
        count(event, "bad_request")
        return _error(400, f"malformed payload: {exc}")
    if event == "ping":
        return _answered(count, event, delivery, "pong")
    if not handlers.accepts(event, data):
        return _answered(count, event, delivery, "ignored")
    try:
        repository = str(data["repository"]["full_name"])
        key = handlers.job_key(event, data, state.context)
    except (KeyError, TypeError, AttributeError):
        count(event, "bad_request")
        return _error(400, "malformed payload: no repository.full_name")
    # the summary (or, for a delivery of another shape, the document as received)
    job = NewJob(dedupe_id=delivery, key=key, message=WebhookJob(event, delivery, repository, msgspec.Raw(document)))
    where = {"delivery": delivery, "event": event, "repository": repository}
    try:
        stored = await state.queue.put(job)
    except QueueUnavailable as exc:
        log.error("could not store delivery %s: %s", delivery, exc, extra=where)
        count(event, "store_failed")
        return _error(503, "could not store the delivery; redeliver it from the App's settings")
    return _answered(count, event, delivery, "queued" if stored else "duplicate", where)


def _answered(
    count: Callable[[str, str], None], event: str, delivery: str, outcome: str, where: dict[str, str] | None = None
) -> Response:
    """The answer to a delivery that was read, counted and logged: one JSON line per delivery
    (uvicorn's access log leaves these out, :class:`QuietDeliveries`)."""
    count(event, outcome)
    logs.info_line(log, f"delivery {delivery} {outcome}", where or {"delivery": delivery, "event": event})
    return _answer(outcome)


# A document is accepted only if it decodes with this many levels of nesting to spare, so
# that every stored one decodes again wherever the queue reads it: in the worker's thread or
# event loop, whose stack can be a little deeper than intake's, and in an SQS message, which
# holds it two levels down. (msgspec and json stop at Python's recursion limit, counted from
# wherever they are called; an explicit depth count of the body would cost more than the decode.)
JSON_SPARE_LEVELS = 32
_SPARE_OPEN, _SPARE_CLOSE = b"[" * JSON_SPARE_LEVELS, b"]" * JSON_SPARE_LEVELS


@functools.cache
def _spared(shape: Any) -> msgspec.json.Decoder[Any]:
    """A decoder of ``shape`` inside JSON_SPARE_LEVELS arrays of exactly one item."""
    for _ in range(JSON_SPARE_LEVELS):
        shape = tuple[shape]
    return msgspec.json.Decoder(shape)


def _shape(decoder: msgspec.json.Decoder[Any]) -> Any:
    shape: Any = decoder.type
    return shape


_encoder = msgspec.json.Encoder()


def _decode(
    decoder: msgspec.json.Decoder[Any], body: bytes, content_type: str, *, compact: bool = False
) -> tuple[Any, bytes]:
    """The summary of a delivery, and the document to store: with ``compact``, the summary itself
    (as JSON), else the JSON document as received (a form-encoded delivery's ``payload``).

    The decoder skips the fields it does not keep without checking that their
    strings are UTF-8, so that is checked here: every stored document parses.
    The document is decoded inside JSON_SPARE_LEVELS extra brackets (``[[...body...]]``):
    one nested too deeply to decode with those to spare is refused. Each extra level
    must hold exactly one value (``1],[2`` is JSON only once bracketed). A document shaped
    unlike the summary is read whole, and stored whole, as received."""
    try:
        if content_type.startswith("application/x-www-form-urlencoded"):
            form = parse_qs(body.decode("utf-8", errors="strict"))
            if "payload" not in form:
                raise ValueError("no payload field")
            body = form["payload"][0].encode("utf-8")
        elif not body.isascii():
            body.decode("utf-8")
        padded = _SPARE_OPEN + body + _SPARE_CLOSE
        try:
            data = _spared(_shape(decoder)).decode(padded)
        except msgspec.ValidationError:  # JSON, shaped unlike the summary: read it all, keep it all
            data, compact = _spared(Any).decode(padded), False
        for _ in range(JSON_SPARE_LEVELS):
            data = data[0]
        return data, _encoder.encode(data) if compact else body
    except UnicodeDecodeError as exc:
        raise ValueError(f"not UTF-8: {exc}") from None
    except RecursionError:
        raise ValueError("nested too deeply") from None
    except msgspec.DecodeError:  # not JSON, or not one document (an extra level held two items, or none)
        raise ValueError(_malformed(body)) from None


def _malformed(body: bytes) -> str:
    """What is wrong with a body that is not one JSON document (msgspec's words, with byte
    offsets into the body itself rather than into the bracketed copy)."""
    try:
        msgspec.json.decode(body)
    except msgspec.DecodeError as exc:
        return str(exc)
    except RecursionError:
        return "nested too deeply"
    return "not one JSON document"


async def healthz(request: Request) -> JSONResponse:
    state: State = request.app.state.lemi
    body: dict[str, Any] = {"status": "ok", "app": state.status, "config": "loaded" if state.config else "missing"}
    if state.problem:
        body["problem"] = state.problem
    remote = config_status(state)
    if remote is not None:  # lemi.yml read through GitHub: whether its newest version is the one in use
        body["config_source"] = remote.as_dict()
    return JSONResponse(body)


def config_status(state: State) -> ConfigStatus | None:
    """Where lemi.yml is read through GitHub (``LEMI_CONFIG=github://...``): whether the newest
    file is the one in use (``ok`` False: it was refused or could not be read, and the last good
    one serves); None for a lemi.yml read from a file. For readiness checks."""
    reader = state.context.remote_config if state.context is not None else None
    return reader.status() if reader is not None else None


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
    """The App's server. What it serves is decided when it starts (:func:`decide`), from
    ``settings`` and ``config`` or, when not given, the environment and lemi.yml: the running
    App, the setup page (no credentials at all), or health only (saying why)."""

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        logs.setup()
        quiet_deliveries()
        chosen = handlers or default_handlers()
        app.state.handlers = chosen
        app.state.ready_checks = list(CHECKS)  # what /readyz runs: more may be added
        start = await decide_start(settings, config)
        serving: AbstractAsyncContextManager[State]
        if isinstance(start, Configured):
            serving = running(
                start.settings, start.config, chosen, queue=queue, workers=workers, worker_settings=worker_settings,
                remote=start.remote,
            )  # fmt: skip
        elif start.setup:
            serving = _with_setup_page(app, start)
        else:
            serving = nullcontext(start.state())
        try:
            async with serving as state:
                app.state.lemi = state
                yield
        finally:
            logs.flush()  # the lines the log handler still holds

    return _App(
        routes=[
            Route("/webhook", webhook, methods=["POST"]),
            Route("/healthz", healthz),
            Route("/readyz", readyz),
            Route("/metrics", metrics),
        ],
        lifespan=lifespan,
    )


class _App(Starlette):
    """Starlette, with a ``POST /webhook`` taken straight to :func:`webhook`: GitHub's deliveries are
    nearly all the traffic, and Starlette's router and its two exception middlewares cost about
    5 µs of each (in-process, 40 → 36 µs a delivery). An error escaping the endpoint (which sends
    nothing itself) is answered 500 and raised to the server, which logs it, as Starlette's
    ``ServerErrorMiddleware`` does. Every other request (and a webhook with another method, or a
    trailing slash) goes through Starlette as before."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == "/webhook" and scope["method"] == "POST":
            scope["app"] = self
            try:
                response = await webhook(Request(scope, receive))
            except Exception:
                await PlainTextResponse("Internal Server Error", status_code=500)(scope, receive, send)
                raise
            await response(scope, receive, send)
            return
        await super().__call__(scope, receive, send)


@asynccontextmanager
async def _with_setup_page(app: Starlette, start: Unconfigured) -> AsyncIterator[State]:
    """Unconfigured, with the first-run setup app (bot/setup/) mounted behind the App's routes
    while the server runs; ``app.state.setup`` is its flow."""
    setup = create_setup_app(start.settings)
    mount = _Behind("", app=setup, name="setup")
    app.state.setup = setup.state.setup
    app.router.routes.append(mount)
    try:
        async with setup.router.lifespan_context(setup):
            yield start.state()
    finally:
        app.router.routes.remove(mount)


class _Behind(Mount):
    """An app mounted at the root behind the App's own routes, taking only the paths it has
    routes for: any other path is answered as without it (404, or 405 from the App's route)."""

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        match, child = super().matches(scope)
        if match is Match.FULL and all(route.matches({**scope, **child})[0] is Match.NONE for route in self.routes):
            return Match.NONE, {}
        return match, child


def default_handlers() -> Handlers:
    import handlers  # the composition root: the one place bot/ reaches handlers/

    return Handlers(handlers.accepts, handlers.job_key, handlers.process, handlers.report, handlers.Summary)


app = create_app()
