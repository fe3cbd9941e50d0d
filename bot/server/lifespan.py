"""What the App's server is, decided once at start, and the one start-up path of a configured App.

:func:`decide` reads the settings and lemi.yml (unless given) and answers :class:`Configured`
or :class:`Unconfigured` (health, metrics and a 503 at ``/webhook``, saying why; the setup page
too while the process has none of the App's credentials). :func:`running` starts a configured
App: the queue, the HTTP session, the App's authentication, the handlers' Context (with the
locks), the workers and the redelivery of missed webhooks, in that order; it yields the ready
:class:`State` and closes them, last opened first.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

import aiohttp

from bot.core.config import Config, load_config
from bot.core.problems import Invalid
from bot.core.settings import Settings, SettingsError, load_settings
from bot.github.auth import AppAuth
from bot.server.context import Context
from bot.server.metrics import Metrics
from bot.server.redeliver import Redeliverer
from bot.server.watcher import RolloutWatcher
from bot.server.worker import Background, Worker, WorkerPool, WorkerSettings
from bot.store.backends import open_locks, open_queue
from bot.store.queue import Queue
from bot.store.redelivery import RedeliveryState

log = logging.getLogger("lemi.app")

# jobs that may take a while run in the background, so deliveries never wait behind them
BACKGROUND_KINDS = frozenset({"deploy", "command"})
NO_CREDENTIALS = "GITHUB_APP_ID, the private key and GITHUB_WEBHOOK_SECRET are not set"


@dataclass
class State:
    """The server as its routes see it (``app.state.lemi``)."""

    settings: Settings
    metrics: Metrics = field(default_factory=Metrics)
    config: Config | None = None
    queue: Queue | None = None
    context: Context | None = None
    status: str = "starting"  # ready | unconfigured
    problem: str = ""


@dataclass(frozen=True)
class Configured:
    """Settings with the App's credentials, and a valid lemi.yml: the App runs."""

    settings: Settings
    config: Config


@dataclass(frozen=True)
class Unconfigured:
    """Health and metrics only, saying why (``problem``); with ``setup``, the setup page too."""

    settings: Settings
    problem: str
    config: Config | None = None
    setup: bool = False

    def state(self) -> State:
        return State(self.settings, config=self.config, status="unconfigured", problem=self.problem)


def decide(settings: Settings | None = None, config: Config | None = None) -> Configured | Unconfigured:
    """What this start serves, from ``settings`` and ``config`` or, when not given, the environment
    and lemi.yml. Settings that are invalid must be fixed first (no setup page); a process with none
    of the App's credentials gets the setup page, whatever lemi.yml says; one with only some of
    them, or without a valid lemi.yml, is unconfigured. lemi.yml's problem is the one reported."""
    try:
        loaded = settings or load_settings()
    except SettingsError as exc:
        log.error("settings: %s", exc)
        return Unconfigured(Settings(), str(exc))
    problem = ""
    if config is None:
        try:
            config = load_config(loaded.config_path)
        except Invalid as exc:
            problem = str(exc)
    if not loaded.has_app_credentials:
        problem = problem or NO_CREDENTIALS
    if problem or config is None:
        log.warning("serving health only: %s", problem)
        none_at_all = not (loaded.app_id or loaded.private_key or loaded.webhook_secret)
        return Unconfigured(loaded, problem, config, setup=none_at_all)
    return Configured(loaded, config)


class JobHandlers(Protocol):
    """What the workers call, with the Context: ``process(job, ctx)``, and ``report(job, ctx,
    reason)`` for a job that failed for good."""

    @property
    def process(self) -> Callable[..., Any]: ...

    @property
    def report(self) -> Callable[..., Any]: ...


@asynccontextmanager
async def running(
    settings: Settings,
    config: Config,
    handlers: JobHandlers,
    *,
    queue: Queue | None = None,
    workers: int | None = None,
    worker_settings: WorkerSettings | None = None,
) -> AsyncIterator[State]:
    """The configured App, started; everything opened is closed on exit, last opened first.
    ``queue``, ``workers`` and ``worker_settings`` replace what the settings say (tests)."""
    app_id, private_key = settings.app_id, settings.private_key
    assert app_id and private_key, "running() needs the App's credentials (decide() checks them)"
    state = State(settings, config=config)
    async with AsyncExitStack() as opened:
        state.queue = jobs = queue or open_queue(settings.queue_url)
        opened.push_async_callback(jobs.close)
        session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
        opened.push_async_callback(session.close)
        auth = AppAuth(
            session,
            app_id=app_id,
            private_key=private_key,
            base_url=settings.api_url,
            on_response=state.metrics.github_response,
        )
        locks = open_locks(settings.queue_url, settings.locks_path)
        state.context = ctx = Context(config, settings, auth, jobs, locks, state.metrics)
        opened.push_async_callback(ctx.close)
        tuning = worker_settings or WorkerSettings(
            lease_seconds=settings.lease_seconds, retry_delays=settings.retry_delays
        )
        background = Background(BACKGROUND_KINDS, settings.background_jobs)
        pool = WorkerPool(
            [
                Worker(
                    jobs,
                    lambda job: handlers.process(job, ctx),
                    lambda job, reason: handlers.report(job, ctx, reason),
                    settings=tuning,
                    metrics=state.metrics,
                    background=background,
                )
                for _ in range(settings.workers if workers is None else workers)
            ],
            background,
        )
        pool.start()
        opened.push_async_callback(pool.stop)
        # rollouts are watched here, not by a worker (bot/server/watcher.py)
        if (settings.workers if workers is None else workers) > 0:
            watcher = RolloutWatcher(ctx, lease_seconds=tuning.lease_seconds)
            watcher.start()
            opened.push_async_callback(watcher.stop)
        # missed deliveries: ask GitHub to redeliver them, at start and periodically (bot/server/redeliver.py)
        redeliverer = Redeliverer(
            auth.app,
            jobs,
            RedeliveryState(settings.locks_path),
            interval=settings.redeliver_interval_seconds,
            metrics=state.metrics,
        )
        redeliverer.start()
        opened.push_async_callback(redeliverer.stop)
        state.status = "ready"
        _freeze_start_up()
        yield state


_frozen = False


def _freeze_start_up() -> None:
    """What start-up built (modules, botocore's models, ...) lives as long as the process:
    leave it out of the cyclic GC, whose full passes over it were lemi's p99 (BENCHMARKS.md).
    Once per process: an app started again in the same process (tests) freezes nothing more."""
    global _frozen
    if not _frozen:
        _frozen = True
        gc.freeze()
