"""What the App's server is, decided once at start, and the one start-up path of a configured App.

:func:`decide` reads the settings and lemi.yml (unless given) and answers :class:`Configured`
or :class:`Unconfigured` (health, metrics and a 503 at ``/webhook``, saying why; the setup page
too while the process has none of the App's credentials). :func:`running` starts a configured
App: what intake and the work share (:func:`opened`: the queue, the HTTP session, the App's
authentication, the handlers' Context with the locks) and, in a process that does the work,
:func:`background` (the workers and the redelivery of missed webhooks), in that order; it
yields the ready :class:`State` and closes them, last opened first. ``lemi worker`` runs
:func:`opened` and :func:`background` without intake (bot/server/work.py).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

import aiohttp

from bot.core.config import Config, load_config
from bot.core.config_source import SCHEME, RemoteSource, SourceError, remote_source
from bot.core.errors import Transient, UserError
from bot.core.ownership import hcl_parser
from bot.core.problems import Invalid
from bot.core.settings import Settings, SettingsError, load_settings
from bot.github.auth import AppAuth
from bot.server.context import Context
from bot.server.looplag import LoopLag
from bot.server.metrics import Metrics
from bot.server.redeliver import Redeliverer
from bot.server.remote_config import Loaded, RemoteConfig, RemoteConfigError, first_read
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
    # the workers of this process take no new job from now on (SIGTERM: `lemi serve` calls it at once,
    # before the connections drain and the workers are stopped); None without workers
    stop_taking_jobs: Callable[[], None] | None = None


@dataclass(frozen=True)
class Configured:
    """Settings with the App's credentials, and a valid lemi.yml: the App runs. ``remote``: where
    lemi.yml was read through GitHub (``LEMI_CONFIG=github://...``), read again while it runs."""

    settings: Settings
    config: Config
    remote: Remote | None = None


@dataclass(frozen=True)
class Remote:
    source: RemoteSource
    first: Loaded


@dataclass(frozen=True)
class Unconfigured:
    """Health and metrics only, saying why (``problem``); with ``setup``, the setup page too."""

    settings: Settings
    problem: str
    config: Config | None = None
    setup: bool = False

    def state(self) -> State:
        return State(self.settings, config=self.config, status="unconfigured", problem=self.problem)


def decide(
    settings: Settings | None = None, config: Config | None = None, *, quiet: bool = False
) -> Configured | Unconfigured:
    """What this start serves, from ``settings`` and ``config`` or, when not given, the environment
    and lemi.yml. Settings that are invalid must be fixed first (no setup page); a process with none
    of the App's credentials gets the setup page, whatever lemi.yml says; one with only some of
    them, or without a valid lemi.yml, is unconfigured. lemi.yml's problem is the one reported
    (logged, unless ``quiet``: the caller says it)."""
    try:
        loaded = settings or load_settings()
    except SettingsError as exc:
        if not quiet:
            log.error("settings: %s", exc)
        return Unconfigured(Settings(), str(exc))
    problem = ""
    if config is None and loaded.config_path.startswith(SCHEME):
        problem = f"LEMI_CONFIG={loaded.config_path}: lemi.yml is read through GitHub with the App's credentials"
    elif config is None:
        try:
            config = load_config(loaded.config_path)
        except Invalid as exc:
            problem = str(exc)
    if not loaded.has_app_credentials:
        problem = problem or NO_CREDENTIALS
    if problem or config is None:
        if not quiet:
            log.warning("serving health only: %s", problem)
        none_at_all = not (loaded.app_id or loaded.private_key or loaded.webhook_secret)
        return Unconfigured(loaded, problem, config, setup=none_at_all)
    return Configured(loaded, config)


async def decide_start(
    settings: Settings | None = None, config: Config | None = None, *, quiet: bool = False
) -> Configured | Unconfigured:
    """:func:`decide`, with lemi.yml read through GitHub when ``LEMI_CONFIG`` names it there
    (``github://OWNER/INFRA/lemi.yml``, bot/server/remote_config.py) and the App has its credentials."""
    if config is None:
        try:
            settings = loaded = settings or load_settings()
        except SettingsError:
            return decide(settings, config, quiet=quiet)  # which says what is wrong
        try:
            source = remote_source(loaded.config_path)
        except SourceError as exc:
            if not quiet:
                log.warning("serving health only: %s", exc)
            return Unconfigured(loaded, str(exc))
        if source is not None and loaded.has_app_credentials:
            assert loaded.app_id and loaded.private_key
            try:
                first = await first_read(loaded.app_id, loaded.private_key, loaded.api_url, source)
            except (Invalid, RemoteConfigError, UserError, Transient) as exc:
                if not quiet:
                    log.warning("serving health only: lemi.yml: %s", exc)
                return Unconfigured(loaded, f"lemi.yml: {exc}")
            return Configured(loaded, first.config, Remote(source, first))
    return decide(settings, config, quiet=quiet)


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
    remote: Remote | None = None,
) -> AsyncIterator[State]:
    """The configured App, started; everything opened is closed on exit, last opened first.

    With ``workers`` (default ``LEMI_WORKERS``) above 0 the process also does the work
    (:func:`background`): one process for everything. With 0 it only accepts deliveries and
    a ``lemi worker`` process does the work. ``queue`` and ``worker_settings`` replace what
    the settings say (tests)."""
    count = settings.workers if workers is None else workers
    async with opened(settings, config, queue=queue, remote=remote) as state, AsyncExitStack() as work:
        if count:
            assert state.context is not None
            pool = await work.enter_async_context(background(state.context, handlers, count, worker_settings))
            state.stop_taking_jobs = pool.halt
        state.status = "ready"
        freeze_start_up()
        yield state


@asynccontextmanager
async def opened(
    settings: Settings, config: Config, *, queue: Queue | None = None, remote: Remote | None = None
) -> AsyncIterator[State]:
    """What intake and the work both use, opened in this order and closed in reverse: the queue,
    the HTTP session, the App's authentication, the handlers' Context (with the locks) and, with
    ``remote``, the reader of lemi.yml in the infra repository (bot/server/remote_config.py)."""
    app_id, private_key = settings.app_id, settings.private_key
    assert app_id and private_key, "the App needs its credentials (decide() checks them)"
    state = State(settings, config=config)
    async with AsyncExitStack() as stack:
        state.queue = jobs = queue or open_queue(settings.queue_url)
        stack.push_async_callback(jobs.close)
        session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
        stack.push_async_callback(session.close)
        auth = AppAuth(
            session,
            app_id=app_id,
            private_key=private_key,
            base_url=settings.api_url,
            on_response=state.metrics.github_response,
        )
        locks = open_locks(settings.queue_url, settings.locks_path)
        state.context = ctx = Context(config, settings, auth, jobs, locks, state.metrics)
        stack.push_async_callback(ctx.close)
        if remote is not None:

            def changed(new: Config) -> None:
                ctx.use_config(new)
                state.config = new

            infra = remote.source.repository
            ctx.remote_config = reader = RemoteConfig(
                remote.source, remote.first, client=lambda: auth.for_repository(infra), on_change=changed
            )
            reader.start()
            stack.push_async_callback(reader.stop)
        yield state


@asynccontextmanager
async def background(
    ctx: Context, handlers: JobHandlers, workers: int, tuning: WorkerSettings | None = None
) -> AsyncIterator[WorkerPool]:
    """The work, apart from intake, started in this order and stopped in reverse: the rollout
    watcher (bot/server/watcher.py), ``workers`` workers on the queue (deploys and long commands
    beside them, up to ``LEMI_BACKGROUND_JOBS``) and the redelivery of missed webhooks
    (bot/server/redeliver.py). ``lemi worker`` runs it in a process of its own; ``lemi serve``
    runs it beside intake when it has workers (``LEMI_WORKERS`` > 0 without ``--intake-only``).

    Stopping it is bounded by ``LEMI_SHUTDOWN_GRACE_SECONDS`` (:class:`Grace`), counted from the
    start of the stop: the workers take no new job, the running ones finish or are stopped with
    their leases released (bot/server/worker.py), and the watcher releases its watches."""
    settings = ctx.settings
    grace = Grace(settings.shutdown_grace_seconds)
    tuning = tuning or WorkerSettings(lease_seconds=settings.lease_seconds, retry_delays=settings.retry_delays)
    async with AsyncExitStack() as started:
        lag = LoopLag(ctx.metrics.loop_lag.observe)  # a reply that waits for the loop, told apart
        lag.start()
        started.push_async_callback(lag.stop)
        # the HCL parser the ownership decisions use, built in a thread now rather than by the
        # first jobs that need it (bot/core/ownership.py)
        warm = asyncio.create_task(asyncio.to_thread(hcl_parser))
        started.push_async_callback(lambda: asyncio.gather(warm, return_exceptions=True))
        # rollouts are watched here, not by a worker; stopped after the workers (their deploys
        # leave it rollouts, and GitHub writes to finish)
        watcher = RolloutWatcher(ctx, lease_seconds=tuning.lease_seconds)
        watcher.start()
        started.push_async_callback(lambda: watcher.stop(grace.left(floor=1.0)))
        beside = Background(BACKGROUND_KINDS, settings.background_jobs)
        pool = WorkerPool(
            [
                Worker(
                    ctx.queue,
                    lambda job: handlers.process(job, ctx),
                    lambda job, reason: handlers.report(job, ctx, reason),
                    settings=tuning,
                    metrics=ctx.metrics,
                    background=beside,
                )
                for _ in range(workers)
            ],
            beside,
        )
        pool.start()
        started.push_async_callback(lambda: pool.stop(grace.left()))
        # missed deliveries: ask GitHub to redeliver them, at start and periodically
        redeliverer = Redeliverer(
            ctx.auth.app,
            ctx.queue,
            RedeliveryState(settings.locks_path),
            interval=settings.redeliver_interval_seconds,
            metrics=ctx.metrics,
        )
        redeliverer.start()
        started.push_async_callback(redeliverer.stop)
        started.push_async_callback(grace.begin)  # the first to run as it stops
        yield pool


class Grace:
    """The one bound of a stop (``seconds``), shared by what stops in turn: counted from
    :meth:`begin`, each part gets what is :meth:`left`."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._end: float | None = None

    async def begin(self) -> None:
        self._end = time.monotonic() + self.seconds
        log.info("stopping: no new jobs; the running ones have %ss to finish", self.seconds)

    def left(self, floor: float = 0.0) -> float:
        end = self._end if self._end is not None else time.monotonic() + self.seconds
        return max(floor, end - time.monotonic())


_frozen = False


def freeze_start_up() -> None:
    """What start-up built (modules, botocore's models, ...) lives as long as the process:
    leave it out of the cyclic GC, whose full passes over it were lemi's p99 (BENCHMARKS.md).
    Once per process: an app started again in the same process (tests) freezes nothing more."""
    global _frozen
    if not _frozen:
        _frozen = True
        gc.freeze()
