"""Missed deliveries: ask GitHub to redeliver webhooks that never reached lemi.

GitHub does not redeliver on its own. At start, and then every
``LEMI_REDELIVER_INTERVAL_SECONDS``, lemi reads the App's delivery log
(``GET /app/hook/deliveries``, newest first, paged) back to the last check,
and asks GitHub to redeliver (``POST /app/hook/deliveries/{id}/attempts``)
each delivery that has no successful attempt, once.

The log has one entry per attempt; a redelivery is a new entry with the same
``guid`` (= ``X-GitHub-Delivery``) and ``redelivery: true``. A delivery (a
guid) is *missed* when

* none of its attempts got a 2xx answer;
* none of its attempts is a redelivery: whoever asked for it (lemi before a
  restart, or a person in the App's settings), it was asked for once already;
* lemi has not asked for it (the record below), even if GitHub does not list
  that redelivery yet;
* lemi's queue does not hold it (``Queue.get(guid)``): GitHub may log a
  failure (a timeout, a lost answer) for a delivery lemi did store;
* its latest attempt is within GitHub's redelivery window (3 days, minus a
  margin so the request is not refused on the edge) and not older than the
  last check (minus an overlap for entries logged late and for clock skew).

"Once" is kept by a record of the guids lemi asked for: in memory and in a
table of the embedded SQLite database (the queue's file), written *before*
the request (at most once: a guid is claimed with ``INSERT OR IGNORE``, so
processes sharing the file do not both ask). A request that fails for a
reason that may pass (a ``Transient``: 5xx, rate limit, network) gives the claim
back and the check is not counted as done, so the next check tries again; GitHub
refusing it (a ``UserError``: 4xx, too old, gone) is final.

"Since" is the start of the last check that completed (persisted, so a
restart reads only what it has not read yet; a fresh database reads the
whole window). Older entries were judged by that check already.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from bot.core.errors import Transient, UserError
from bot.store.queue import Queue
from bot.store.redelivery import GITHUB_WINDOW, RedeliveryState

log = logging.getLogger("lemi.redeliver")

T = TypeVar("T")

MARGIN = 3600.0  # do not ask for what is about to leave the window
WINDOW = GITHUB_WINDOW - MARGIN
OVERLAP = 600.0  # re-read this much before the last check: late log entries, clock skew
PER_PAGE = 100

Delivery = Mapping[str, Any]


# --- the decision (pure) ----------------------------------------------------------------------


def delivered_at(entry: Delivery) -> float:
    """``delivered_at`` ("2024-05-01T12:00:00Z") as a Unix time."""
    return datetime.fromisoformat(str(entry["delivered_at"]).replace("Z", "+00:00")).timestamp()


def succeeded(entry: Delivery) -> bool:
    code = entry.get("status_code")
    return isinstance(code, int) and 200 <= code < 300


def cutoff(*, since: float | None, now: float, window: float = WINDOW) -> float:
    """The oldest ``delivered_at`` worth reading: the window, or the last check minus the overlap."""
    oldest = now - window
    return oldest if since is None else max(oldest, since - OVERLAP)


def to_redeliver(
    deliveries: Iterable[Delivery],
    *,
    since: float | None,
    now: float,
    window: float = WINDOW,
    requested: Collection[str] = (),
) -> list[Delivery]:
    """The entries to redeliver: the latest attempt of each missed guid, newest first.

    ``deliveries`` are log entries in any order; ``since`` is the start of the
    last completed check (None: never checked); ``requested`` the guids lemi
    already asked for. Whether lemi's queue holds a guid is asked by the caller.
    """
    limit = cutoff(since=since, now=now, window=window)
    attempts: dict[str, list[Delivery]] = {}
    for entry in deliveries:
        attempts.setdefault(str(entry["guid"]), []).append(entry)
    chosen = []
    for guid, entries in attempts.items():
        if guid in requested or any(succeeded(e) or e.get("redelivery") for e in entries):
            continue
        latest = max(entries, key=lambda e: (delivered_at(e), int(e["id"])))
        if delivered_at(latest) >= limit:
            chosen.append(latest)
    return sorted(chosen, key=lambda e: (delivered_at(e), int(e["id"])), reverse=True)


# --- one check ----------------------------------------------------------------------------------


@dataclass
class Report:
    listed: int = 0  # log entries read
    missed: int = 0  # guids with no successful attempt and not asked for before
    stored: int = 0  # ... of which lemi's queue holds the delivery: not asked for
    requested: int = 0  # redeliveries GitHub accepted
    refused: int = 0  # GitHub said no (4xx): not asked again
    failed: int = 0  # the request may not have reached GitHub: asked again at the next check
    complete: bool = True  # False when the next check must read this span again

    def __str__(self) -> str:
        return (
            f"{self.listed} deliveries read, {self.missed} missed: {self.requested} redelivery requested, "
            f"{self.stored} already stored, {self.refused} refused, {self.failed} failed"
        )


async def recover(
    app_client: Any,
    queue: Queue,
    state: RedeliveryState,
    *,
    now: float | None = None,
    window: float = WINDOW,
) -> Report:
    """One check: read the log back to the last check, ask for each missed delivery once."""
    await state.load()
    started = time.time() if now is None else now
    limit = cutoff(since=state.since, now=started, window=window)
    report = Report()
    entries: list[Delivery] = []
    async for entry in app_client.getiter(f"/app/hook/deliveries?per_page={PER_PAGE}"):
        report.listed += 1
        if delivered_at(entry) < limit:
            break  # newest first: the rest was judged by an earlier check
        entries.append(entry)
    for entry in to_redeliver(entries, since=state.since, now=started, window=window, requested=state.requested):
        report.missed += 1
        guid, delivery_id = str(entry["guid"]), int(entry["id"])
        if await queue.get(guid) is not None:
            report.stored += 1
            continue
        if not await state.claim(guid, delivery_id, started):
            continue  # another process sharing the database asked for it
        try:
            await app_client.post(f"/app/hook/deliveries/{delivery_id}/attempts", data=b"")
        except Exception as exc:
            if isinstance(exc, UserError):
                report.refused += 1  # too old, gone: asking again would not help
                log.warning("GitHub refused to redeliver %s (%s): %s", guid, entry.get("event"), exc)
                continue
            await state.release(guid)
            if not isinstance(exc, Transient):
                raise
            report.failed += 1
            report.complete = False
            log.warning(
                "could not ask GitHub to redeliver %s (%s): %s; trying again at the next check",
                guid, entry.get("event"), exc,
            )  # fmt: skip
            continue
        report.requested += 1
        log.info("asked GitHub to redeliver %s (%s)", guid, entry.get("event"), extra={"delivery": guid})
    if report.complete:
        await state.checked(started)
    return report


# --- the background loop --------------------------------------------------------------------------


class Redeliverer:
    """Runs ``recover`` at start and then every ``interval`` seconds (0: never). Errors are logged."""

    def __init__(
        self,
        app_client: Any,
        queue: Queue,
        state: RedeliveryState,
        *,
        interval: float,
        metrics: Any = None,
    ) -> None:
        self._client = app_client
        self._queue = queue
        self.state = state
        self.interval = interval
        self._task: asyncio.Task[None] | None = None
        self._counter: Any = None
        if metrics is not None and interval > 0:
            from prometheus_client import Counter

            self._counter = Counter(
                "lemi_redeliveries", "Missed webhook deliveries found, by outcome", ["outcome"],
                registry=metrics.registry,
            )  # fmt: skip
        self.last: Report | None = None

    def start(self) -> None:
        if self.interval <= 0:
            log.info("redelivery of missed webhooks is off (LEMI_REDELIVER_INTERVAL_SECONDS=0)")
            return
        self._task = asyncio.create_task(self._loop(), name="lemi-redeliver")

    async def run_once(self) -> Report:
        report = await recover(self._client, self._queue, self.state)
        self.last = report
        if self._counter is not None:
            for outcome in ("requested", "stored", "refused", "failed"):
                if getattr(report, outcome):
                    self._counter.labels(outcome).inc(getattr(report, outcome))
        (log.info if report.missed else log.debug)("redelivery check: %s", report)
        return report

    async def _loop(self) -> None:
        while True:
            try:
                await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - the check must never take the app down
                log.exception("redelivery check failed; trying again in %.0f s", self.interval)
            await asyncio.sleep(self.interval)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            except Exception:  # noqa: BLE001 - already logged by the loop
                pass
            self._task = None
        await self.state.close()
