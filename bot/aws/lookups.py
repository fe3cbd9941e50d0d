"""Lookups the deploys of one process share for a few seconds.

A push that deploys many services verifies each of them, and most of what they look up is the
same: the environment's cluster, the Datadog API key secret every service gets, the secrets,
parameters and image a monorepo's services have in common. :class:`SharedLookups` lets those
deploys ask AWS once:

* a lookup already under way is joined, whatever it finds (the deploys asked at the same moment);
* a lookup that found everything in order (the cluster ACTIVE, the secret there with its JSON
  key, the parameter, the image) is reused for ``SHARED_SECONDS`` after it was sent;
* a lookup that found a problem is never reused: the next deploy asks again, so a secret created
  a moment ago is found at once.

Only what passed is kept, so sharing cannot make a deploy fail that would succeed. It can let a
deploy pass verification on something removed in the last ``SHARED_SECONDS``: a deploy's
verification is always a look taken before a rollout of minutes, and ECS's own checks (a
secret it cannot read, a missing image) fail that rollout, which lemi reports as a failure.
Secret values are never kept: only whether the check passed.

Only deploys use it (:func:`bot.aws.verify.verify_provisioned` with ``shared``); ``lemi verify``
and ``/lemi verify`` always ask AWS.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Awaitable, Callable, Hashable, Iterable, Mapping
from typing import Any, TypeVar

K = TypeVar("K", bound=Hashable)
T = TypeVar("T")

SHARED_SECONDS = 10.0  # how long a lookup that passed is reused, from when it was sent
_PRUNE_AT = 1024  # kept lookups before the expired ones are dropped


class SharedLookups:
    """Lookups by key: one at a time per key, and what passed kept for ``seconds``."""

    def __init__(self, seconds: float = SHARED_SECONDS, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.seconds = seconds
        self._clock = clock
        self._kept: dict[Hashable, tuple[float, Any]] = {}  # key -> (expires, value)
        self._running: dict[Hashable, asyncio.Future[Any]] = {}

    async def get(self, key: Hashable, fetch: Callable[[], Awaitable[T]], passed: Callable[[T], bool]) -> T:
        """What ``fetch()`` finds for ``key``: kept from an earlier lookup that ``passed`` less than
        ``seconds`` ago, or joined while one is under way, or looked up now."""

        async def one(keys: list[K]) -> dict[K, T]:
            return {keys[0]: await fetch()}

        return (await self.get_many([key], one, passed))[key]

    async def get_many(
        self, keys: Iterable[K], fetch: Callable[[list[K]], Awaitable[Mapping[K, T]]], passed: Callable[[T], bool]
    ) -> dict[K, T]:
        """:meth:`get` for several keys at once: those neither kept nor under way are looked up
        together, by one ``fetch(keys)`` that answers every key it is given."""
        found: dict[K, T] = {}
        waiting: dict[K, asyncio.Future[Any]] = {}
        ask: list[K] = []
        now = self._clock()
        for key in dict.fromkeys(keys):
            kept = self._kept.get(key)
            if kept is not None and kept[0] > now:
                found[key] = kept[1]
                continue
            running = self._running.get(key)
            if running is None:
                running = asyncio.get_running_loop().create_future()
                self._running[key] = running
                running.add_done_callback(functools.partial(self._finished, key))
                ask.append(key)
            waiting[key] = running
        if ask:
            # a task of its own: a caller that is cancelled leaves the lookup to the others waiting for it
            lookup = asyncio.ensure_future(self._lookup(ask, [waiting[k] for k in ask], fetch, passed))
            lookup.add_done_callback(_retrieve)
        for key, running in waiting.items():
            found[key] = await asyncio.shield(running)
        return found

    async def _lookup(
        self, keys: list[K], futures: list[asyncio.Future[Any]],
        fetch: Callable[[list[K]], Awaitable[Mapping[K, T]]], passed: Callable[[T], bool],
    ) -> None:  # fmt: skip
        expires = self._clock() + self.seconds
        try:
            values = await fetch(keys)
            answers = [values[key] for key in keys]
        except BaseException as exc:
            for future in futures:
                if not future.done():
                    future.cancel() if isinstance(exc, asyncio.CancelledError) else future.set_exception(exc)
            raise
        if len(self._kept) >= _PRUNE_AT:
            now = self._clock()
            self._kept = {k: v for k, v in self._kept.items() if v[0] > now}
        for key, future, value in zip(keys, futures, answers, strict=True):
            if self.seconds > 0 and passed(value):
                self._kept[key] = (expires, value)
            if not future.done():
                future.set_result(value)

    def _finished(self, key: Hashable, done: asyncio.Future[Any]) -> None:
        if self._running.get(key) is done:
            del self._running[key]
        _retrieve(done)


def _retrieve(done: asyncio.Future[Any]) -> None:
    """Retrieve a finished future's exception (every caller waiting for it may have been cancelled)."""
    if not done.cancelled():
        done.exception()
