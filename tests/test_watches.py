"""The watch store (bot/store/watches.py), on both backends: SQLite and DynamoDB (moto).

The same rules on each: a watch is durable once added; a claim hands a due watch to one
watcher; a watcher that stops holding it (it died: its lease ran out; or it released it)
loses it to the next claim; a newer rollout marks the older watches of its service replaced.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from test_queue import make_sqs

from bot.store.backends import open_watches
from bot.store.dynamo_watches import DynamoWatches
from bot.store.watches import SQLiteWatches, Watches

KEY = "acme/demo:demo:staging"


@pytest.fixture(params=["sqlite", "dynamodb"])
async def watches(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Watches]:
    if request.param == "sqlite":
        store: Watches = SQLiteWatches(tmp_path / "lemi.db")
    else:
        moto = request.getfixturevalue("moto_reset")
        queue_url, _, _ = make_sqs(moto)
        store = open_watches(queue_url, str(tmp_path / "unused.db"))
        assert isinstance(store, DynamoWatches)
    try:
        yield store
    finally:
        await store.close()


async def test_a_due_watch_goes_to_one_watcher_until_its_lease_runs_out(watches: Watches) -> None:
    await watches.add("w1", KEY, "staging", b"body-1", due=100.0)
    assert await watches.claim("a", now=99.0, lease_seconds=10) == []  # not due yet
    (mine,) = await watches.claim("a", now=100.0, lease_seconds=10)
    assert (mine.id, mine.body, mine.owner, mine.lease_until) == ("w1", b"body-1", "a", 110.0)
    assert await watches.claim("b", now=105.0, lease_seconds=10) == []  # a holds it
    assert [w.id for w in await watches.claim("a", now=105.0, lease_seconds=10)] == ["w1"]  # a again
    # a died: its lease runs out, and b takes the watch over
    (taken,) = await watches.claim("b", now=116.0, lease_seconds=10)
    assert taken.owner == "b"
    assert not await watches.update(mine, "a", b"stale", due=200.0)  # a lost it
    assert await watches.update(taken, "b", b"body-2", due=200.0)
    stored = await watches.get("w1")
    assert stored is not None and (stored.body, stored.due) == (b"body-2", 200.0)
    assert not await watches.remove(taken, "a")
    assert await watches.remove(taken, "b")
    assert await watches.get("w1") is None and await watches.count() == 0


async def test_release_hands_the_watches_over_at_once_and_notes_survive_updates(watches: Watches) -> None:
    await watches.add("w1", KEY, "staging", b"body", due=0.0)
    (held,) = await watches.claim("a", now=1.0, lease_seconds=60)
    assert await watches.annotate("w1", b'{"deployment_id": 7}')
    assert await watches.update(held, "a", b"body-2", due=0.0)  # the watcher's update keeps the note
    await watches.release("a")
    (taken,) = await watches.claim("b", now=2.0, lease_seconds=60)  # long before a's lease ends
    assert (taken.owner, taken.body, taken.note) == ("b", b"body-2", b'{"deployment_id": 7}')
    assert await watches.next_due() == 0.0


async def test_a_newer_rollout_marks_the_older_ones_of_its_service_replaced(watches: Watches) -> None:
    await watches.add("old", KEY, "staging", b"", due=500.0)
    await watches.add("other", "acme/demo:other:staging", "staging", b"", due=500.0)
    await watches.add("new", KEY, "staging", b"", due=500.0)
    assert await watches.replace_others(KEY, "new", "new") == 1
    old, other, new = [await watches.get(i) for i in ("old", "other", "new")]
    assert old is not None and (old.replaced_by, old.due) == ("new", 0.0)  # looked at at once
    assert other is not None and other.replaced_by == ""
    assert new is not None and new.replaced_by == ""
    await watches.unreplace(KEY, "new")  # the newer update was never sent
    old = await watches.get("old")
    assert old is not None and old.replaced_by == ""
    await watches.discard("new")
    assert await watches.get("new") is None and await watches.count() == 2


async def test_two_watchers_claiming_at_once_never_share_a_watch(watches: Watches) -> None:
    if isinstance(watches, DynamoWatches):
        # DynamoDB applies a conditional update atomically; moto's server does not (two threads
        # may both pass the condition), so only the sequential rule is checked on it (above)
        pytest.skip("moto does not make conditional updates atomic across concurrent requests")
    for n in range(20):
        await watches.add(f"w{n}", f"{KEY}{n}", "staging", b"", due=0.0)
    a, b = await asyncio.gather(watches.claim("a", 1.0, 60), watches.claim("b", 1.0, 60))
    ids_a, ids_b = {w.id for w in a}, {w.id for w in b}
    assert not ids_a & ids_b and len(ids_a | ids_b) == 20


async def test_a_rounds_updates_are_written_together_and_only_where_the_watcher_holds_them(watches: Watches) -> None:
    for ident, due in (("w1", 0.0), ("w2", 0.0), ("w3", 15.0)):
        await watches.add(ident, f"{KEY}:{ident}", "staging", b"body", due=due)
    w1, w2 = await watches.claim("a", now=1.0, lease_seconds=100)
    (w3,) = await watches.claim("b", now=15.0, lease_seconds=100)  # another watcher holds w3
    assert await watches.annotate("w1", b"note")
    assert await watches.update_many("a", [(w1, b"one", 50.0), (w2, b"two", 60.0), (w3, b"three", 70.0)]) == [
        True, True, False,
    ]  # fmt: skip
    stored = {i: await watches.get(i) for i in ("w1", "w2", "w3")}
    assert {i: (w.body, w.due, w.note) for i, w in stored.items() if w is not None} == {
        "w1": (b"one", 50.0, b"note"), "w2": (b"two", 60.0, b""), "w3": (b"body", 15.0, b""),
    }  # fmt: skip
    assert await watches.update_many("a", []) == []


async def test_a_watch_added_replacing_marks_the_older_ones_of_its_service(watches: Watches) -> None:
    await watches.add("old", KEY, "staging", b"", due=500.0)
    await watches.add("other", "acme/demo:other:staging", "staging", b"", due=500.0)
    assert await watches.add_replacing("new", KEY, "staging", b"body", due=600.0) == 1
    old, other, new = [await watches.get(i) for i in ("old", "other", "new")]
    assert old is not None and (old.replaced_by, old.due) == ("new", 0.0)
    assert other is not None and other.replaced_by == ""
    assert new is not None and (new.body, new.due, new.replaced_by) == (b"body", 600.0, "")


async def test_a_note_is_swapped_only_on_a_watch_that_exists_and_taking_returns_the_last_one(watches: Watches) -> None:
    """What a deploy waiting for a running preDeploy task relies on: its note is either set before
    the watch is taken (and the taker gets it) or finds no watch (and the deploy goes on itself)."""
    assert await watches.swap_note("chain", b"waiter-1") is None  # no such watch: nothing set
    await watches.add("chain", KEY, "staging", b"body", due=0.0)
    assert await watches.swap_note("chain", b"waiter-1") == b""
    assert await watches.swap_note("chain", b"waiter-2") == b"waiter-1"  # the older waiter comes back
    (held,) = await watches.claim("a", now=1.0, lease_seconds=60)
    assert await watches.take(held, "b") is None  # b does not hold it
    assert await watches.take(held, "a") == b"waiter-2"
    assert await watches.get("chain") is None
    assert await watches.swap_note("chain", b"waiter-3") is None
