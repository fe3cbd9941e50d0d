"""One round of the watcher over the watches it claimed, whatever they watch (rollouts:
bot/flows/watch_poll.py; one-off tasks: bot/flows/task_poll.py).

The watches are decoded (one lemi cannot read back is dropped, with an error log), grouped by
environment (one cluster in one account), and each group's ECS things described in one go
(``describe``); then each watch is looked at (``look``) on its own: whatever goes wrong with
one, the others go on, and it is looked at again when its lease runs out. A group ECS could not
describe is kept as it was, due again after its poll. The watches that go on are written in one
:meth:`~bot.store.watches.Watches.update_many` once every watch of the round is either kept or
being acted on (:class:`Round`).
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Generic, Protocol, TypeVar

import msgspec

from bot.aws.ecs import Ecs
from bot.core import logs
from bot.flows.runtime import Runtime
from bot.store.watches import Watch

log = logging.getLogger("lemi.watcher")


class Body(Protocol):
    @property
    def poll(self) -> float: ...

    @property
    def service(self) -> str: ...

    @property
    def environment(self) -> str: ...


B = TypeVar("B", bound=Body)


class Round:
    """What a round keeps of the watches that go on (the body, when to look again): written in one
    :meth:`~bot.store.watches.Watches.update_many` once every watch of the round is either kept
    or being acted on (a report may wait long for GitHub's write budget; the others do not)."""

    def __init__(self, ids: list[str]) -> None:
        self.kept: list[tuple[Watch, bytes, float]] = []
        self._undecided = set(ids)
        self.decided = asyncio.Event()
        if not self._undecided:
            self.decided.set()

    def keep(self, watch: Watch, body: bytes, due: float) -> None:
        self.kept.append((watch, body, due))
        self.decide(watch)

    def decide(self, watch: Watch) -> None:
        self._undecided.discard(watch.id)
        if not self._undecided:
            self.decided.set()


class Kind(Generic[B]):
    """How a round handles one kind of watch: read a body back, describe a group's ECS things, say
    which repository a body is about (for the logs), and look at one watch."""

    def __init__(
        self,
        what: str,
        decode: Callable[[bytes], B],
        describe: Callable[[Ecs, list[tuple[Watch, B]]], Awaitable[Mapping[str, Any]]],
        repository: Callable[[B], str],
        look: Callable[[Ecs, Watch, B, Mapping[str, Any], Round], Awaitable[None]],
    ) -> None:
        self.what = what
        self.decode = decode
        self.describe = describe
        self.repository = repository
        self.look = look


async def run_round(rt: Runtime, owner: str, claimed: list[Watch], kind: Kind[B], clock: Callable[[], float]) -> None:
    """Look at every claimed watch of ``kind`` once (see the module's rules)."""
    groups: dict[str, list[tuple[Watch, B]]] = defaultdict(list)
    for watch in claimed:
        try:
            groups[watch.group].append((watch, kind.decode(watch.body)))
        except msgspec.DecodeError as exc:
            log.error("dropping %s %s: lemi cannot read it back (%s)", kind.what, watch.id, exc)
            await rt.watches.remove(watch, owner)
    this = Round([w.id for items in groups.values() for w, _ in items])

    async def keep() -> None:
        await this.decided.wait()
        await rt.watches.update_many(owner, this.kept)

    async def group(environment: str, items: list[tuple[Watch, B]]) -> None:
        try:
            ecs = await Ecs.open(rt.aws(), environment)
            described = await kind.describe(ecs, items)
        except Exception as exc:  # noqa: BLE001 - every watch of the group is looked at again later
            log.warning("could not describe the %ss of %s (%s); trying again", kind.what, environment, exc)
            now = clock()
            for watch, body in items:
                this.keep(watch, watch.body, now + max(body.poll, 1.0))
            return
        await asyncio.gather(*(guarded(ecs, watch, body, described) for watch, body in items))

    async def guarded(ecs: Ecs, watch: Watch, body: B, described: Mapping[str, Any]) -> None:
        try:
            with logs.bind(repository=kind.repository(body), service=body.service, environment=body.environment):
                await kind.look(ecs, watch, body, described, this)
        except Exception:  # noqa: BLE001
            log.exception("%s %s: lemi could not look at it; trying again later", kind.what, watch.id)
        finally:
            this.decide(watch)

    await asyncio.gather(keep(), *(group(env, items) for env, items in groups.items()))
