"""One DynamoDB client for a store of lemi's (the locks, the watches), opened on first use."""

from __future__ import annotations

from contextlib import AsyncExitStack
from typing import Any


class DynamoTable:
    """The delivery table of ``LEMI_QUEUE=sqs://...?dedupe_table=T``, and a client for it."""

    def __init__(self, table: str, region: str | None) -> None:
        self.table = table
        self.region = region
        self._client: Any = None
        self._stack: AsyncExitStack | None = None

    async def _ddb(self) -> Any:
        if self._client is None:
            from aiobotocore.session import get_session

            self._stack = AsyncExitStack()
            self._client = await self._stack.enter_async_context(
                get_session().create_client("dynamodb", region_name=self.region)
            )
        return self._client

    async def close(self) -> None:
        if self._stack is not None:
            await self._stack.aclose()
            self._client = self._stack = None
