"""Which GitHub write goes next, and when: priorities, coalescing and the budget, without I/O.

GitHub's documented secondary limits count content-creating requests (POST, PATCH, PUT,
DELETE) per identity: no more than about 80 a minute and 500 an hour, made one at a time.
:class:`Schedule` holds the writes waiting to be sent for one identity and answers two
questions with an injected clock: which write goes next (:meth:`Schedule.pop`) and how long
until one may go (:meth:`Schedule.wait`). :mod:`bot.github.writer` is the thin shell that
sends them.

* **Priorities** (:class:`Priority`): interactive writes (slash-command replies, reactions,
  pull-request checks) go before deploy results (Deployments, their statuses, deploy check
  runs), which go before progress. Within a priority, first come, first sent.
* **Shares of the budget**: a priority may use only part of each window (:data:`SHARES`), so
  the rest stays free for the priorities above it: with the defaults, results stop at 48 a
  minute and 300 an hour, progress at 28 and 175, so slash-command replies and pull-request
  checks keep 32 a minute even while a push of 200 services uses the rest (measured in
  bench/rollouts.py: smaller reserves left replies waiting for the next minute). The windows
  count every write, interactive ones too: the more replies a minute holds, the fewer results
  it lets through, so the reserve grows with the demand for it.
* **Pace**: results and progress are also spread over the minute: in any :data:`PACE` seconds,
  at most their minute's share of that time (16 results in 20 s with the defaults), counting
  results and progress only. A push of a service or two is announced at once, but a bigger
  push's results no longer take their whole share in its first seconds, and replies asked for
  later in that minute find the window still open (bench/rollouts.py: a burst of 48 results
  left a pull request's first check waiting for the next minute).
* **Coalescing**: a progress write with the key of a progress write still waiting replaces it
  (it keeps the older one's place in line; only the newest is sent), and a result or
  interactive write with that key supersedes it. Every write a sent one stands for is
  answered with its response.
* **Budget**: a write is counted when its answer came (so GitHub, which counts arrivals, never
  sees more in a window than lemi counted); a window is the ``window`` seconds up to now, an
  earlier time outside it.
* **Pauses**: a secondary-limit answer (:func:`secondary_limit`) pauses the identity for
  the time GitHub asks, longer for each refusal in a row (GitHub: "wait for an exponentially
  increasing amount of time between retries"); a refused write tried again goes back to the
  head of its lane.
"""

from __future__ import annotations

import json
import math
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Generic, TypeVar

T = TypeVar("T")

MINUTE = 60.0
HOUR = 3600.0
PACE = 20.0  # results and progress: at most their share of any PACE seconds
FALLBACK_PAUSE = 60.0  # GitHub: without retry-after, "wait at least one minute"
MAX_PAUSE = 3600.0
SECONDARY_TEXT = "secondary rate limit"


class Priority(IntEnum):
    INTERACTIVE = 0  # slash-command replies, reactions, pull-request checks
    RESULT = 1  # Deployments, deployment statuses, deploy check runs
    PROGRESS = 2  # updates that only show progress: coalesced


# the share of each window a priority may use; the rest is kept for the priorities above it
SHARES: Mapping[Priority, float] = {Priority.INTERACTIVE: 1.0, Priority.RESULT: 0.6, Priority.PROGRESS: 0.35}


@dataclass(frozen=True)
class Limits:
    """GitHub's documented secondary limits for content-creating requests, per identity."""

    per_minute: int = 80
    per_hour: int = 500

    def allowed(self, priority: Priority) -> tuple[int, int]:
        """How many writes of ``priority`` may be in the minute and the hour windows."""
        share = SHARES[priority]
        return max(1, math.floor(self.per_minute * share)), max(1, math.floor(self.per_hour * share))

    def paced(self, priority: Priority) -> int | None:
        """How many writes of results and progress there may be in any :data:`PACE` seconds
        for a write of ``priority`` to be sent; None: not paced (interactive)."""
        if priority is Priority.INTERACTIVE:
            return None
        return max(1, math.ceil(self.allowed(priority)[0] * PACE / MINUTE))


@dataclass(eq=False)
class Pending(Generic[T]):
    """One write waiting to be sent; ``items`` are every write it stands for (coalesced), oldest
    first; the newest (:attr:`item`) is the one sent."""

    priority: Priority
    key: str | None
    items: list[T]
    refusals: int = 0

    @property
    def item(self) -> T:
        return self.items[-1]


@dataclass
class Schedule(Generic[T]):
    """The writes of one identity waiting to be sent (see the module docstring)."""

    limits: Limits = field(default_factory=Limits)
    clock: Callable[[], float] = time.monotonic

    def __post_init__(self) -> None:
        self._lanes: dict[Priority, deque[Pending[T]]] = {p: deque() for p in Priority}
        self._progress: dict[str, Pending[T]] = {}  # coalescing: progress waiting, by key
        self._sent: deque[float] = deque()  # when each answer came, within the last hour
        self._background: deque[float] = deque()  # the same, of results and progress, within PACE
        self._in_flight = Priority.INTERACTIVE  # the priority of the write popped last
        self._paused_until = -math.inf
        self._refused_in_a_row = 0

    def __len__(self) -> int:
        return sum(len(lane) for lane in self._lanes.values())

    def waiting(self, priority: Priority | None = None) -> int:
        """Writes waiting (of one priority), coalesced ones counted once."""
        if priority is None:
            return len(self)
        return len(self._lanes[priority])

    # -- what is waiting ----------------------------------------------------------------

    def add(self, item: T, priority: Priority, key: str | None = None) -> Pending[T]:
        """Queue ``item``. A progress write replaces a waiting progress write with the same
        key (in its place); any other write supersedes it (and takes the newer place)."""
        earlier = self._progress.get(key) if key is not None else None
        if earlier is not None and priority is Priority.PROGRESS:
            earlier.items.append(item)
            return earlier
        if earlier is not None and key is not None:
            del self._progress[key]
        pending = Pending(priority, key, [item])
        if earlier is not None:
            self._lanes[earlier.priority].remove(earlier)
            pending.items[:0] = earlier.items
        self._lanes[priority].append(pending)
        if priority is Priority.PROGRESS and key is not None:
            self._progress[key] = pending
        return pending

    def withdraw(self, item: T) -> bool:
        """Forget ``item`` (its caller stopped waiting); a coalesced write then sends the newest
        one still wanted. False when it is not waiting (sent, or being sent)."""
        for lane in self._lanes.values():
            for pending in lane:
                if any(i is item for i in pending.items):
                    pending.items = [i for i in pending.items if i is not item]
                    if not pending.items:
                        lane.remove(pending)
                        if pending.key is not None and self._progress.get(pending.key) is pending:
                            del self._progress[pending.key]
                    return True
        return False

    def drain(self) -> list[Pending[T]]:
        """Take every waiting write out (to give them all back at once)."""
        taken = [pending for priority in Priority for pending in self._lanes[priority]]
        for lane in self._lanes.values():
            lane.clear()
        self._progress.clear()
        return taken

    # -- what goes next, and when -------------------------------------------------------

    def _top(self) -> Pending[T] | None:
        for priority in Priority:
            if self._lanes[priority]:
                return self._lanes[priority][0]
        return None

    def paused_for(self) -> float:
        """Seconds left of a pause GitHub asked for (0 when none)."""
        return max(0.0, self._paused_until - self.clock())

    def wait(self) -> float | None:
        """Seconds until the next write may be sent (0: now), None when nothing waits."""
        top = self._top()
        if top is None:
            return None
        return self.wait_for(top.priority)

    def wait_for(self, priority: Priority) -> float:
        """Seconds until a write of ``priority`` may be sent: a pause, then each window."""
        now = self.clock()
        self._forget(now)
        wait = max(0.0, self._paused_until - now)
        per_minute, per_hour = self.limits.allowed(priority)
        windows = [(self._sent, MINUTE, per_minute), (self._sent, HOUR, per_hour)]
        paced = self.limits.paced(priority)
        if paced is not None:
            windows.append((self._background, PACE, paced))
        for sent, window, allowed in windows:
            inside = [t for t in sent if t > now - window]
            if len(inside) >= allowed:
                # the allowed-th most recent must leave the window first
                wait = max(wait, inside[-allowed] + window - now)
        return wait

    def pop(self) -> Pending[T] | None:
        """The write to send now (taken out), or None when nothing may go yet."""
        if self.wait() != 0.0:
            return None
        top = self._top()
        assert top is not None
        self._lanes[top.priority].popleft()
        if top.key is not None and self._progress.get(top.key) is top:
            del self._progress[top.key]
        self._in_flight = top.priority
        return top

    # -- what happened ------------------------------------------------------------------

    def sent(self) -> None:
        """The write popped last was answered (whatever the answer): it counts in the windows
        from now (and in the pace, when it is a result or progress)."""
        now = self.clock()
        self._sent.append(now)
        if self._in_flight is not Priority.INTERACTIVE:
            self._background.append(now)
        self._forget(now)

    def accepted(self) -> None:
        """A write was not refused for a limit: the next refusal is a first one again."""
        self._refused_in_a_row = 0

    def refused(self, pending: Pending[T], retry_after: float | None) -> float:
        r"""GitHub refused ``pending`` for a secondary limit: pause for the time it asked (the
        fallback without ``retry-after``), doubled for each refusal in a row. Returns the pause
        in seconds; the caller then gives the write back or :meth:`requeue`\ s it."""
        self._refused_in_a_row += 1
        base = FALLBACK_PAUSE if retry_after is None else max(0.0, retry_after)
        pause = min(MAX_PAUSE, base * 2.0 ** (self._refused_in_a_row - 1))
        self._paused_until = max(self._paused_until, self.clock() + pause)
        pending.refusals += 1
        return pause

    def requeue(self, pending: Pending[T]) -> None:
        """Put a write that was taken out back at the head of its lane (a newer progress write
        with its key, queued meanwhile, keeps standing for both)."""
        newer = self._progress.get(pending.key) if pending.key is not None else None
        if newer is not None and pending.priority is Priority.PROGRESS:
            newer.items[:0] = pending.items
            return
        self._lanes[pending.priority].appendleft(pending)
        if pending.priority is Priority.PROGRESS and pending.key is not None:
            self._progress[pending.key] = pending

    def _forget(self, now: float) -> None:
        while self._sent and self._sent[0] <= now - HOUR:
            self._sent.popleft()
        while self._background and self._background[0] <= now - PACE:
            self._background.popleft()


@dataclass(frozen=True)
class Refusal:
    """GitHub refused a write for its secondary limit; ``retry_after`` is the wait it asked for
    (None when it did not say)."""

    retry_after: float | None


def secondary_limit(status: int, headers: Mapping[str, str], body: bytes) -> Refusal | None:
    """The refusal in an answer to a write, when it is GitHub's secondary limit: 403 or 429
    with ``retry-after``, or with GitHub's "secondary rate limit" message. None for any other
    answer, the primary limit (``x-ratelimit-remaining: 0``) included: the client waits for that."""
    if status not in (403, 429):
        return None
    lower = {k.lower(): v for k, v in headers.items()}
    if lower.get("x-ratelimit-remaining") == "0":
        return None
    if "retry-after" in lower:
        try:
            return Refusal(max(0.0, float(lower["retry-after"])))
        except ValueError:
            return Refusal(None)
    try:
        message = str(json.loads(body).get("message", ""))
    except (ValueError, AttributeError):
        message = body.decode("utf-8", "replace")
    if SECONDARY_TEXT in message.lower() or status == 429:
        return Refusal(None)
    return None
