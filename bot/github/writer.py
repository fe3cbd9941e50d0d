"""One writer per GitHub identity: writes within GitHub's secondary limits, the urgent first.

GitHub counts content-creating requests (POST, PATCH, PUT, DELETE) per identity and refuses
more than about 80 a minute or 500 an hour; it asks integrators to make them one at a time.
Every client of one identity in the process (an installation's, through
:class:`bot.github.auth.AppAuth`; a personal token's in the CLI) shares one :class:`Writer`,
and its writes pass through it; reads (GET, HEAD) do not. The writer sends one write at a time,
keeps within the budget (:class:`bot.github.schedule.Limits`; the App's are
``LEMI_GITHUB_WRITES_PER_MINUTE`` and ``LEMI_GITHUB_WRITES_PER_HOUR``) and picks the next write
by priority (the pure part, with the arithmetic, is :mod:`bot.github.schedule`):

1. **interactive**: comments and reactions (slash-command replies), pull-request check runs
   (``lemi / spec``, ``lemi / provision``);
2. **results**: Deployments, deployment statuses, deploy check runs (``lemi / deploy ...``),
   and every other write (infra branches and pull requests, merges);
3. **progress**: an update of a deploy check run that is still ``queued`` or ``in_progress``,
   a deployment status ``queued``, ``pending`` or ``in_progress``, and whatever a caller
   marks so. Progress is **coalesced**: a progress write waiting with the same key as a newer
   one is not sent; the newer one is, in the older one's place. The key is the URL written
   to, so a final write to the same check run or deployment supersedes the progress still
   waiting for it.

A caller says what a write is with a context manager, in one line; the default is inferred
from the method, the path and the body as above::

    from bot.github import writer

    with writer.progress():                       # key: the URL written to
        await gh.patch(check_run_url, data=body)
    with writer.progress(key=f"rollout:{service}"):  # coalesce writes to several URLs as one
        await gh.post(statuses_url, data=status)
    with writer.interactive():                    # or writer.results()
        await gh.post(comment_url, data=reply)

The mark is a context variable, so a task created inside the ``with`` carries it
(``asyncio.create_task(gh.patch(...))`` sends a progress update without waiting for it). A
progress write must carry the whole state it shows (a coalesced older one is never sent), and
marks only updates of one resource: two creations marked with one key would be coalesced into
one.

A caller awaits ``gh.post(...)`` as before: its write waits in the writer (on a future, no
polling) until it is sent, and the caller gets its answer; a coalesced write gets the answer of
the write that was sent for it. A caller that stops waiting (its job cancelled) withdraws its
write if it has not been sent.

GitHub's secondary-limit answer (403 or 429 with ``retry-after``, or its "secondary rate limit"
message) pauses the whole identity for the time GitHub asks, longer for each refusal in a row,
and the refused write is sent again after the pause, up to :data:`MAX_ATTEMPTS` tries. A pause
longer than :data:`MAX_WAIT` holds no worker: the refused write gets GitHub's answer, every
waiting write and every write made during the pause gets :class:`GitHubRateLimited`, and
their jobs go back to the queue. Waiting for the budget itself is never cut short: it is how
long GitHub takes to show that many writes.

The budget is counted per process: replicas (or a separate worker process) each keep their
own, so with several of them set the two variables to a share of GitHub's limits; a pause
GitHub asks for still reaches each of them through its own refusals.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable, Hashable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from urllib.parse import urlsplit

from bot.github.errors import GitHubRateLimited
from bot.github.schedule import Limits, Pending, Priority, Schedule, secondary_limit

Response = tuple[int, Mapping[str, str], bytes]
log = logging.getLogger("lemi.github")

MAX_WAIT = 60.0  # seconds of a pause writes wait in place; beyond it, their jobs go back to the queue
MAX_ATTEMPTS = 4  # tries of one write refused for the secondary limit
LOG_WAIT = 1.0  # an interactive write that waited this long for its turn is logged (info), with its job's fields
READS = frozenset({"GET", "HEAD"})
DEPLOY_CHECK = "lemi / deploy"  # what every deploy check run's name starts with (bot/flows/deploy.py)
UNFINISHED_CHECK = frozenset({"queued", "in_progress"})
UNFINISHED_STATUS = frozenset({"queued", "pending", "in_progress"})

_REPO = r"/repos/[^/]+/[^/]+"
_COMMENTS = re.compile(_REPO + r"/issues/(\d+/comments|comments/\d+)$")
_REACTIONS = re.compile(_REPO + r"/(issues|pulls)/(\d+/|comments/\d+/)?reactions(/\d+)?$")
_CHECK_RUNS = re.compile(_REPO + r"/check-runs(/\d+)?$")
_DEPLOYMENTS = re.compile(_REPO + r"/deployments(/\d+)?$")
_STATUSES = re.compile(_REPO + r"/deployments/\d+/statuses$")


@dataclass(frozen=True)
class Mark:
    priority: Priority
    key: str | None = None


_MARK: ContextVar[Mark | None] = ContextVar("lemi_github_write_mark", default=None)


@contextmanager
def _marked(mark: Mark) -> Iterator[None]:
    token = _MARK.set(mark)
    try:
        yield
    finally:
        _MARK.reset(token)


def progress(key: str | None = None) -> AbstractContextManager[None]:
    """Writes made inside only show progress: sent after every other write, and coalesced by
    ``key`` (default: the URL written to). See the module docstring."""
    return _marked(Mark(Priority.PROGRESS, key))


def interactive() -> AbstractContextManager[None]:
    """Writes made inside answer a person (a reply, a pull request's check): sent first."""
    return _marked(Mark(Priority.INTERACTIVE))


def results() -> AbstractContextManager[None]:
    """Writes made inside report the outcome of work (a Deployment and its final status)."""
    return _marked(Mark(Priority.RESULT))


def _body(body: bytes) -> dict[str, object]:
    try:
        data = json.loads(body) if body else {}
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def classify(method: str, url: str, body: bytes, mark: Mark | None = None) -> tuple[Priority, str]:
    """The priority of a write and its coalescing key: a caller's mark, else inferred from
    the method, the path and the body (the module docstring has the table)."""
    path = urlsplit(url).path
    if mark is not None:
        return mark.priority, mark.key or path
    if _COMMENTS.search(path) or _REACTIONS.search(path):
        return Priority.INTERACTIVE, path
    if _CHECK_RUNS.search(path):
        data = _body(body)
        if not str(data.get("name", "")).startswith(DEPLOY_CHECK):
            return Priority.INTERACTIVE, path
        unfinished = data.get("status") in UNFINISHED_CHECK and "conclusion" not in data
        # only an update is progress: two creations must never be coalesced into one
        return (Priority.PROGRESS if method == "PATCH" and unfinished else Priority.RESULT), path
    if _STATUSES.search(path):
        return (Priority.PROGRESS if _body(body).get("state") in UNFINISHED_STATUS else Priority.RESULT), path
    return Priority.RESULT, path


@dataclass(eq=False)
class _Write:
    send: Callable[[], Awaitable[Response]]
    future: asyncio.Future[Response]
    queued: float = 0.0
    sent: float | None = None  # when the request for it was first made


def _answer(write: _Write, response: Response) -> None:
    if not write.future.done():
        write.future.set_result(response)


def _fail(write: _Write, exc: BaseException) -> None:
    if not write.future.done():
        write.future.set_exception(exc)


def _abandon(write: _Write, exc: BaseException) -> None:
    """The write will not be answered: its caller gets ``exc``, or is cancelled with the sender."""
    if isinstance(exc, Exception):
        _fail(write, exc)
    elif not write.future.done():
        write.future.cancel()


def _paused_error(seconds: float) -> GitHubRateLimited:
    return GitHubRateLimited(
        f"GitHub asked lemi to pause its writes for {seconds:.0f} s (secondary rate limit); "
        "the job is tried again later",
        retry_after=seconds,
        status_code=403,
    )


class Writer:
    """The writes of one identity (see the module docstring). Use it from one event loop."""

    def __init__(
        self,
        limits: Limits | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        max_wait: float = MAX_WAIT,
    ) -> None:
        self.schedule: Schedule[_Write] = Schedule(limits or Limits(), clock)
        self._clock = clock
        self._sleep = sleep
        self._max_wait = max_wait
        self._arrived: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def limits(self) -> Limits:
        return self.schedule.limits

    @limits.setter
    def limits(self, limits: Limits) -> None:
        self.schedule.limits = limits
        if self._arrived is not None:
            self._arrived.set()  # the sender looks at the budget again

    @property
    def waiting(self) -> int:
        """Writes waiting to be sent (coalesced ones counted once)."""
        return len(self.schedule)

    async def send(self, method: str, url: str, body: bytes, send: Callable[[], Awaitable[Response]]) -> Response:
        """Queue one write (``send`` makes the request) and wait for its answer."""
        paused = self.schedule.paused_for()
        if paused > self._max_wait:
            raise _paused_error(paused)
        priority, key = classify(method, url, body, _MARK.get())
        write = _Write(send, asyncio.get_running_loop().create_future(), self._clock())
        self.schedule.add(write, priority, key)
        self._wake()
        try:
            return await write.future
        except asyncio.CancelledError:
            self.schedule.withdraw(write)
            raise
        finally:
            waited = (write.sent if write.sent is not None else self._clock()) - write.queued
            if priority is Priority.INTERACTIVE and waited >= LOG_WAIT:  # in the caller's context: names its job
                log.info(
                    "a GitHub write (%s) waited %.2f s for its turn in the writer (%s writes waiting)",
                    priority.name.lower(), waited, len(self.schedule),
                )  # fmt: skip

    def _wake(self) -> None:
        if self._arrived is not None:
            self._arrived.set()
        loop = asyncio.get_running_loop()
        if self._task is None or self._task.done() or self._task.get_loop() is not loop:
            self._task = loop.create_task(self._run(), name="lemi-github-writer")

    async def _run(self) -> None:
        """Send what waits, one at a time, then end (the next write starts it again)."""
        self._arrived = arrived = asyncio.Event()
        try:
            while (wait := self.schedule.wait()) is not None:
                if wait > 0:
                    arrived.clear()
                    await self._nap(wait, arrived)
                    continue
                pending = self.schedule.pop()
                assert pending is not None
                await self._send(pending)
        except BaseException as exc:  # cancelled with the loop, or a defect: no caller waits forever
            for waiting in self.schedule.drain():
                for write in waiting.items:
                    _abandon(write, exc)
            raise
        finally:
            self._arrived = None

    async def _nap(self, seconds: float, arrived: asyncio.Event) -> None:
        """Sleep ``seconds``, or less when a write arrives (it may go before the one waiting)."""
        sleeper = asyncio.ensure_future(self._sleep(seconds))
        woken = asyncio.ensure_future(arrived.wait())
        try:
            await asyncio.wait({sleeper, woken}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleeper.cancel()
            woken.cancel()

    async def _send(self, pending: Pending[_Write]) -> None:
        now = self._clock()
        for write in pending.items:
            write.sent = now if write.sent is None else write.sent
        try:
            response = await pending.item.send()
        except BaseException as exc:  # no answer: the caller's client decides (bot/github/client.py)
            self.schedule.sent()
            for write in pending.items:
                _abandon(write, exc)
            if isinstance(exc, Exception):
                return
            raise
        self.schedule.sent()
        refusal = secondary_limit(*response)
        if refusal is None:
            self.schedule.accepted()
            for write in pending.items:
                _answer(write, response)
            return
        pause = self.schedule.refused(pending, refusal.retry_after)
        if pause > self._max_wait or pending.refusals >= MAX_ATTEMPTS:
            for write in pending.items:
                _answer(write, response)  # GitHub's refusal: the caller raises GitHubRateLimited
            if pause > self._max_wait:
                for waiting in self.schedule.drain():
                    for write in waiting.items:
                        _fail(write, _paused_error(pause))
            return
        self.schedule.requeue(pending)


class Writers:
    """One :class:`Writer` per identity (an installation id, a token's user), shared by every
    client of that identity in the process."""

    def __init__(
        self,
        limits: Limits | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.limits = limits or Limits()
        self._clock = clock
        self._sleep = sleep
        self._writers: dict[Hashable, Writer] = {}

    def of(self, identity: Hashable) -> Writer:
        writer = self._writers.get(identity)
        if writer is None:
            writer = self._writers[identity] = Writer(self.limits, clock=self._clock, sleep=self._sleep)
        return writer

    def use(self, limits: Limits) -> None:
        """Keep within ``limits`` from now on, in every writer made and to be made."""
        self.limits = limits
        for writer in self._writers.values():
            writer.limits = limits
