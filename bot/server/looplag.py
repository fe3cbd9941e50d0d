"""How late the event loop runs: the lag of a timer, measured, logged and counted.

Every job of a process shares its event loop: while CPU-bound work holds it (or the process
gets no CPU), a reply that is ready waits. :class:`LoopLag` sleeps ``every`` seconds, again and
again, and observes how much later than asked it woke up (``lemi_event_loop_lag_seconds``);
a lag of ``log_over`` seconds or more is logged (info), so a slow reply can be told apart from
a slow API.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

log = logging.getLogger("lemi.loop")

EVERY = 0.25
LOG_OVER = 0.5


class LoopLag:
    def __init__(self, observe: Callable[[float], None], *, every: float = EVERY, log_over: float = LOG_OVER) -> None:
        self.observe = observe
        self.every = every
        self.log_over = log_over
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="lemi-loop-lag")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _run(self) -> None:
        while True:
            asked = time.monotonic() + self.every
            await asyncio.sleep(self.every)
            lag = max(0.0, time.monotonic() - asked)
            self.observe(lag)
            if lag >= self.log_over:
                log.info("the event loop ran %.2f s late (CPU-bound work in this process, or too little CPU)", lag)
