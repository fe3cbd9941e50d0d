"""``GET /readyz``: is this process ready to take deliveries? (``/healthz`` is liveness only.)

The quick subset of ``lemi doctor`` (bot/flows/doctor.py), fast and local: the App is
configured (settings and lemi.yml loaded and valid), the App's JWT can be signed with its
credentials (no network), and the queue is writable. The one remote call is an SQS queue's
``GetQueueAttributes``, bounded by READY_TIMEOUT and its answer kept for QUEUE_TTL seconds;
the embedded SQLite queue is probed locally each time.

The checks are a list of callables (``app.state.ready_checks``, :data:`CHECKS` by default),
each ``async (State) -> Check``: a readiness condition of another part of lemi is one more
item of that list. Answers 200 ``{"ok": true, "checks": [...]}``, or 503 with the same
document where a check failed.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import JSONResponse

from bot.core.doctor import Check, failed, passed, report
from bot.github.app_checks import CREDENTIALS_FIX, jwt_problem
from bot.server.lifespan import State
from bot.store.probe import queue_problem

READY_TIMEOUT = 3.0  # seconds a readiness check may take before it counts as failed
QUEUE_TTL = 30.0  # seconds an SQS queue's answer is kept

ReadyCheck = Callable[[State], Awaitable[Check]]


async def configured(state: State) -> Check:
    if state.status == "ready" and state.config is not None:
        return passed("configuration", f"settings and lemi.yml loaded ({len(state.config.environments)} environments)")
    return failed(
        "configuration",
        state.problem or f"the App is {state.status}",
        "fix the settings or lemi.yml as the problem says and restart lemi; `lemi doctor` checks the whole setup",
    )


@functools.lru_cache(maxsize=4)
def _jwt_problem(app_id: str | None, private_key: str | None) -> str | None:
    return jwt_problem(app_id, private_key)


async def app_credentials(state: State) -> Check:
    problem = _jwt_problem(state.settings.app_id, state.settings.private_key)
    if problem:
        return failed("App credentials", problem, CREDENTIALS_FIX)
    return passed("App credentials", "the App's JWT can be signed")


_queue_answers: dict[str, tuple[float, str | None]] = {}


async def queue_writable(state: State) -> Check:
    url = state.settings.queue_url
    if url.startswith("sqs://"):
        kept = _queue_answers.get(url)
        if kept is None or time.monotonic() - kept[0] > QUEUE_TTL:
            kept = (time.monotonic(), await queue_problem(url))
            _queue_answers[url] = kept
        problem = kept[1]
    else:
        problem = await queue_problem(url)
    if problem:
        return failed("queue", problem, "fix LEMI_QUEUE or lemi's access to it")
    return passed("queue", "writable")


async def config_source(state: State) -> Check:
    """Where lemi.yml is read from the infra repository (``LEMI_CONFIG=github://...``): the newest
    file is the one in use. One that was refused or could not be read fails this check while the
    last good one keeps serving."""
    reader = state.context.remote_config if state.context is not None else None
    status = reader.status() if reader is not None else None
    if status is None:
        return passed("lemi.yml source", "read from a file")
    if status.ok:
        return passed("lemi.yml source", f"{status.source} at {status.sha[:12]}")
    return failed(
        "lemi.yml source",
        f"{status.source}: {status.detail} (the last good lemi.yml is in use)",
        "fix lemi.yml in the infra repository (`lemi config check` validates it); lemi reads it again on the push",
    )


CHECKS: list[ReadyCheck] = [configured, config_source, app_credentials, queue_writable]


async def _bounded(check: ReadyCheck, state: State) -> Check:
    name = getattr(check, "__name__", "check").replace("_", " ")
    try:
        return await asyncio.wait_for(check(state), READY_TIMEOUT)
    except TimeoutError:
        return failed(name, f"no answer within {READY_TIMEOUT:g} s", "see lemi's log; `lemi doctor` says more")
    except Exception as exc:  # noqa: BLE001 - a readiness probe answers, whatever a check raised
        return failed(name, f"{type(exc).__name__}: {exc}", "see lemi's log; `lemi doctor` says more")


async def readyz(request: Request) -> JSONResponse:
    state: State = request.app.state.lemi
    checks: list[ReadyCheck] = getattr(request.app.state, "ready_checks", CHECKS)
    results = await asyncio.gather(*(_bounded(check, state) for check in checks))
    body = report(results)
    return JSONResponse(body, status_code=200 if body["ok"] else 503)
