"""The watches of bot/store/watches.py in DynamoDB, shared by every replica (the delivery table).

One item per watch (``watch#<id>``) and one index item (``watches``) holding the set of watch
ids, so a claim reads the index and the watches themselves (BatchGetItem) and never scans the
table. Claiming is a conditional update per watch (free, or its lease ran out, or already this
owner's): two replicas never hold the same watch, and a replica that dies loses its watches to
the others when their leases run out.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

from bot.store.dynamo import DynamoTable
from bot.store.watches import Watch

INDEX = {"id": {"S": "watches"}}
_CONDITION_FAILED = "ConditionalCheckFailed"


def _key(ident: str) -> dict[str, Any]:
    return {"id": {"S": f"watch#{ident}"}}


def _watch(item: dict[str, Any]) -> Watch:
    return Watch(
        item["id"]["S"].removeprefix("watch#"), item["key"]["S"], item["grp"]["S"], bytes(item["body"]["B"]),
        float(item["due"]["N"]), float(item["created"]["N"]), item.get("replaced_by", {}).get("S", ""),
        item.get("owner", {}).get("S", ""), float(item.get("lease_until", {}).get("N", "0")),
        bytes(item.get("note", {}).get("B", b"")),
    )  # fmt: skip


def _failed_condition(exc: Exception) -> bool:
    return _CONDITION_FAILED in type(exc).__name__ + str(exc)


class DynamoWatches(DynamoTable):
    def __init__(self, table: str, region: str | None, *, clock: Any = time.time) -> None:
        super().__init__(table, region)
        self._clock = clock

    async def add(self, id: str, key: str, group: str, body: bytes, due: float) -> None:
        ddb = await self._ddb()
        item = {**_key(id), "key": {"S": key}, "grp": {"S": group}, "body": {"B": body},
                "due": {"N": repr(due)}, "created": {"N": repr(self._clock())}}  # fmt: skip
        await ddb.put_item(TableName=self.table, Item=item)
        await ddb.update_item(
            TableName=self.table,
            Key=INDEX,
            UpdateExpression="ADD ids :id",
            ExpressionAttributeValues={":id": {"SS": [id]}},
        )

    async def add_replacing(self, id: str, key: str, group: str, body: bytes, due: float) -> int:
        await self.add(id, key, group, body, due)
        return await self.replace_others(key, id, id)

    async def get(self, id: str) -> Watch | None:
        ddb = await self._ddb()
        found = await ddb.get_item(TableName=self.table, Key=_key(id), ConsistentRead=True)
        return _watch(found["Item"]) if "Item" in found else None

    async def _ids(self) -> list[str]:
        ddb = await self._ddb()
        found = await ddb.get_item(TableName=self.table, Key=INDEX, ConsistentRead=True)
        return sorted(found.get("Item", {}).get("ids", {}).get("SS", []))

    async def _all(self) -> list[Watch]:
        ddb = await self._ddb()
        ids = await self._ids()
        watches: list[Watch] = []
        for start in range(0, len(ids), 100):
            keys = [_key(i) for i in ids[start : start + 100]]
            while keys:
                got = await ddb.batch_get_item(RequestItems={self.table: {"Keys": keys, "ConsistentRead": True}})
                watches += [_watch(item) for item in got.get("Responses", {}).get(self.table, [])]
                keys = got.get("UnprocessedKeys", {}).get(self.table, {}).get("Keys", [])
        return watches

    async def claim(self, owner: str, now: float, lease_seconds: float, limit: int = 500) -> list[Watch]:
        ddb = await self._ddb()
        claimed: list[Watch] = []
        due = [w for w in await self._all() if w.due <= now and (w.owner in ("", owner) or w.lease_until < now)]
        for watch in sorted(due, key=lambda w: w.due)[:limit]:
            try:
                answer = await ddb.update_item(
                    TableName=self.table, Key=_key(watch.id),
                    UpdateExpression="SET #o = :me, lease_until = :until",
                    ConditionExpression="attribute_exists(id) AND (attribute_not_exists(#o) OR #o = :me"
                                        " OR #o = :none OR lease_until < :now)",
                    ExpressionAttributeNames={"#o": "owner"},
                    ExpressionAttributeValues={":me": {"S": owner}, ":until": {"N": repr(now + lease_seconds)},
                                               ":none": {"S": ""}, ":now": {"N": repr(now)}},
                    ReturnValues="ALL_NEW",
                )  # fmt: skip
            except Exception as exc:
                if _failed_condition(exc):  # another replica took it first
                    continue
                raise
            claimed.append(_watch(answer["Attributes"]))
        return claimed

    async def update(self, watch: Watch, owner: str, body: bytes, due: float) -> bool:
        return await self._held_update(
            watch.id, owner, "SET body = :b, due = :d", {":b": {"B": body}, ":d": {"N": repr(due)}}
        )

    async def update_many(self, owner: str, updates: Sequence[tuple[Watch, bytes, float]]) -> list[bool]:
        """One conditional update per watch (each may have been taken over on its own), sent together."""
        return list(await asyncio.gather(*(self.update(watch, owner, body, due) for watch, body, due in updates)))

    async def _held_update(self, ident: str, owner: str, expression: str, values: dict[str, Any]) -> bool:
        ddb = await self._ddb()
        try:
            await ddb.update_item(
                TableName=self.table, Key=_key(ident), UpdateExpression=expression,
                ConditionExpression="#o = :me", ExpressionAttributeNames={"#o": "owner"},
                ExpressionAttributeValues={**values, ":me": {"S": owner}},
            )  # fmt: skip
        except Exception as exc:
            if _failed_condition(exc):
                return False
            raise
        return True

    async def annotate(self, id: str, note: bytes) -> bool:
        ddb = await self._ddb()
        try:
            await ddb.update_item(
                TableName=self.table, Key=_key(id), UpdateExpression="SET note = :n",
                ConditionExpression="attribute_exists(id)", ExpressionAttributeValues={":n": {"B": note}},
            )  # fmt: skip
        except Exception as exc:
            if _failed_condition(exc):
                return False
            raise
        return True

    async def _forget(self, id: str) -> None:
        ddb = await self._ddb()
        await ddb.update_item(
            TableName=self.table, Key=INDEX, UpdateExpression="DELETE ids :id",
            ExpressionAttributeValues={":id": {"SS": [id]}},
        )  # fmt: skip

    async def remove(self, watch: Watch, owner: str) -> bool:
        ddb = await self._ddb()
        try:
            await ddb.delete_item(
                TableName=self.table, Key=_key(watch.id), ConditionExpression="#o = :me",
                ExpressionAttributeNames={"#o": "owner"}, ExpressionAttributeValues={":me": {"S": owner}},
            )  # fmt: skip
        except Exception as exc:
            if _failed_condition(exc):
                return False
            raise
        await self._forget(watch.id)
        return True

    async def swap_note(self, id: str, note: bytes) -> bytes | None:
        ddb = await self._ddb()
        try:
            answer = await ddb.update_item(
                TableName=self.table, Key=_key(id), UpdateExpression="SET note = :n",
                ConditionExpression="attribute_exists(id)", ExpressionAttributeValues={":n": {"B": note}},
                ReturnValues="UPDATED_OLD",
            )  # fmt: skip
        except Exception as exc:
            if _failed_condition(exc):
                return None
            raise
        return bytes(answer.get("Attributes", {}).get("note", {}).get("B", b""))

    async def take(self, watch: Watch, owner: str) -> bytes | None:
        ddb = await self._ddb()
        try:
            answer = await ddb.delete_item(
                TableName=self.table, Key=_key(watch.id), ConditionExpression="#o = :me",
                ExpressionAttributeNames={"#o": "owner"}, ExpressionAttributeValues={":me": {"S": owner}},
                ReturnValues="ALL_OLD",
            )  # fmt: skip
        except Exception as exc:
            if _failed_condition(exc):
                return None
            raise
        await self._forget(watch.id)
        return bytes(answer.get("Attributes", {}).get("note", {}).get("B", b""))

    async def discard(self, id: str) -> None:
        ddb = await self._ddb()
        await ddb.delete_item(TableName=self.table, Key=_key(id))
        await self._forget(id)

    async def replace_others(self, key: str, keep: str, by: str) -> int:
        ddb = await self._ddb()
        count = 0
        for watch in await self._all():
            if watch.key != key or watch.id == keep or watch.replaced_by:
                continue
            try:
                await ddb.update_item(
                    TableName=self.table, Key=_key(watch.id), UpdateExpression="SET replaced_by = :by, due = :zero",
                    ConditionExpression="attribute_exists(id)",
                    ExpressionAttributeValues={":by": {"S": by}, ":zero": {"N": "0"}},
                )  # fmt: skip
            except Exception as exc:
                if _failed_condition(exc):
                    continue
                raise
            count += 1
        return count

    async def unreplace(self, key: str, by: str) -> None:
        ddb = await self._ddb()
        for watch in await self._all():
            if watch.key == key and watch.replaced_by == by:
                await ddb.update_item(
                    TableName=self.table, Key=_key(watch.id), UpdateExpression="SET replaced_by = :none",
                    ConditionExpression="attribute_exists(id)", ExpressionAttributeValues={":none": {"S": ""}},
                )  # fmt: skip

    async def release(self, owner: str) -> None:
        for watch in await self._all():
            if watch.owner == owner:
                await self._held_update(watch.id, owner, "SET #o = :none, lease_until = :zero",
                                        {":none": {"S": ""}, ":zero": {"N": "0"}})  # fmt: skip

    async def next_due(self) -> float | None:
        watches = await self._all()
        return min((w.due for w in watches), default=None)

    async def count(self) -> int:
        return len(await self._ids())
