"""``lemi worker``: the work in a process of its own, beside ``lemi serve --intake-only``.

The web process only checks, stores and answers; this process runs :func:`bot.server.lifespan.background`
(the workers and the redelivery of missed webhooks) on the same queue, at a lower scheduling
priority (the command lowers it), so that on a shared core the answers to GitHub come first.
With the embedded SQLite queue both processes open the same file; a job the web process puts
is noticed here within milliseconds (bot/store/notice.py).

A worker started before the App has its credentials or a valid lemi.yml (a fresh machine, the
setup page still open) waits and says why, looking again every few seconds (``reread`` reads
``.env`` again): once the setup page has written the credentials, it starts on its own.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable

from bot.core import logs
from bot.core.config_source import SCHEME
from bot.server.lifespan import Configured, background, decide_start, freeze_start_up, opened
from bot.server.remote_config import EVERY

log = logging.getLogger("lemi.worker")

LOOK_AGAIN_SECONDS = 2.0


async def work(
    stop: asyncio.Event,
    *,
    reread: Callable[[], None] = lambda: None,
    parent: int | None = None,
    look_again: float = LOOK_AGAIN_SECONDS,
) -> int:
    """Run the work until ``stop`` is set (or the process ``parent`` is gone); the exit code."""
    logs.setup()
    watch = asyncio.create_task(_stop_without(parent, stop)) if parent is not None else None
    try:
        start = await _configured(stop, reread, look_again)
        if start is None:
            return 0
        settings = start.settings
        if not settings.workers:
            log.error("LEMI_WORKERS=0: `lemi worker` would run no workers; set LEMI_WORKERS to 1 or more (default 4)")
            return 2
        from bot.server.app import default_handlers  # the composition root reaches the handlers

        async with opened(settings, start.config, remote=start.remote) as state:
            assert state.context is not None
            async with background(state.context, default_handlers(), settings.workers):
                if settings.worker_metrics_port:  # the work's own metrics: jobs, rollouts watched, GitHub calls
                    from prometheus_client import start_http_server

                    start_http_server(settings.worker_metrics_port, "127.0.0.1", registry=state.metrics.registry)
                    log.info("lemi worker: metrics on http://127.0.0.1:%s/metrics", settings.worker_metrics_port)
                freeze_start_up()
                log.info(
                    "lemi worker: %s workers on %s (pid %s)", settings.workers, _where(settings.queue_url), os.getpid()
                )
                await stop.wait()
            log.info("lemi worker: stopping")
        return 0
    finally:
        if watch is not None:
            watch.cancel()
        logs.flush()  # the lines the log handler still holds


async def _configured(stop: asyncio.Event, reread: Callable[[], None], every: float) -> Configured | None:
    """The App's settings and lemi.yml once they are complete; None if stopped before."""
    said = ""
    while not stop.is_set():
        reread()
        start = await decide_start(quiet=True)
        if isinstance(start, Configured):
            return start
        # lemi.yml that GitHub could not give, or gave invalid: asked again once a minute, not every few seconds
        remote = start.settings.config_path.startswith(SCHEME) and start.settings.has_app_credentials
        wait = max(every, EVERY) if remote else every
        if start.problem != said:
            said = start.problem
            log.warning("lemi worker waits for the App's configuration: %s (looking again every %ss)", said, wait)
        try:
            await asyncio.wait_for(stop.wait(), wait)
        except TimeoutError:
            pass
    return None


async def _stop_without(parent: int, stop: asyncio.Event) -> None:
    """Set ``stop`` once the process that started this one is gone (it was killed: this one was
    handed to another parent)."""
    while os.getppid() == parent:
        await asyncio.sleep(1.0)
    log.warning("lemi worker: its `lemi serve` (pid %s) is gone; stopping", parent)
    stop.set()


def _where(queue_url: str) -> str:
    return queue_url.split("?", 1)[0]
