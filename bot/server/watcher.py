"""The watcher: one loop per process that carries every long wait, so no worker waits.

Each round claims the watches that are due (bot/store/watches.py: leased to this process,
taken over from a process that died once its lease ran out) and polls them together
(rollouts: bot/flows/watching.py, ten services per DescribeServices call per environment;
one-off tasks, the watches whose id starts with ``task:``: bot/flows/task_watch.py). Between
rounds it sleeps until the next watch is due, or until a deploy of this process adds one;
watches added by other processes (the web process, other replicas) are seen at the next round,
at most ``idle_seconds`` later.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
import uuid
from collections.abc import Callable

from bot.flows.task_poll import poll_tasks
from bot.flows.task_watch import PREFIX as TASK_PREFIX
from bot.flows.watch_poll import poll
from bot.flows.watching import announcements_done
from bot.server.context import Context

log = logging.getLogger("lemi.watcher")


class RolloutWatcher:
    def __init__(
        self,
        ctx: Context,
        *,
        lease_seconds: float,
        idle_seconds: float = 5.0,
        clock: Callable[[], float] = time.time,
        name: str | None = None,
    ) -> None:
        self.ctx = ctx
        self.lease_seconds = lease_seconds
        self.idle_seconds = idle_seconds
        self.clock = clock
        self.owner = name or f"watcher-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._stop.clear()
        self._task = asyncio.create_task(self.run())

    async def stop(self, grace: float = 10.0) -> None:
        end = time.monotonic() + grace  # one bound for both waits
        await announcements_done(grace)  # the deploys' GitHub writes the jobs left running
        self._stop.set()
        self.ctx.wake_watcher()
        if self._task is not None:
            try:
                await asyncio.wait_for(self._task, max(0.1, end - time.monotonic()))
            except TimeoutError:
                self._task.cancel()
                await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        try:  # the next watcher (a restart, another replica) takes them over at once
            await self.ctx.watches.release(self.owner)
        except Exception as exc:  # noqa: BLE001 - their leases run out instead
            log.warning("could not release the watches of %s: %s", self.owner, exc)

    async def run_once(self) -> int:
        """One round: claim the due watches and poll them; how many there were."""
        claimed = await self.ctx.watches.claim(self.owner, self.clock(), self.lease_seconds)
        self.ctx.metrics.watched.set(len(claimed))
        tasks = [w for w in claimed if w.id.startswith(TASK_PREFIX)]
        rollouts = [w for w in claimed if not w.id.startswith(TASK_PREFIX)]
        polls = []
        if rollouts:
            polls.append(poll(self.ctx, self.owner, rollouts, clock=self.clock))
        if tasks:
            polls.append(poll_tasks(self.ctx, self.owner, tasks, clock=self.clock))
        await asyncio.gather(*polls)
        return len(claimed)

    async def run(self) -> None:
        while not self._stop.is_set():
            self.ctx.watch_added.clear()
            try:
                await self.run_once()
                due = await self.ctx.watches.next_due()
            except Exception:  # noqa: BLE001 - the watcher must survive anything
                log.exception("watcher round failed; trying again")
                due = self.clock() + 1.0
            delay = self.idle_seconds if due is None else min(self.idle_seconds, due - self.clock())
            if delay <= 0:  # due, but another process holds it: look again after a poll's time
                delay = min(self.idle_seconds, max(0.05, self.ctx.settings.deploy_poll_seconds))
            try:
                await asyncio.wait_for(self.ctx.watch_added.wait(), delay)
            except TimeoutError:
                pass
