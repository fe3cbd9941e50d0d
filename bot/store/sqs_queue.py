"""The queue on SQS FIFO, for several replicas (``LEMI_QUEUE=sqs://<queue-url>``).

* message group = the job's concurrency key: SQS delivers one message of a
  group at a time, in order, and holds the group while one is in flight;
* deduplication id = the delivery id (SQS drops a repeat within 5 minutes);
  for "processed once" beyond that, a DynamoDB table records every delivery
  id with a conditional put (``sqs://<queue-url>?dedupe_table=<table>``);
* the lease is the message's visibility timeout, extended while a job runs;
  a retry makes the message invisible for the delay (holding its group);
* ``fail`` copies the message, with the reason, to the queue's dead-letter
  queue (from its RedrivePolicy) for inspection, then deletes it.

SQS cannot be searched, so ``newer_in_key`` answers False (``searchable`` says so); deploys
also check the branch head on GitHub to notice a newer push (handlers/deploy.py). SQS has
no fencing: a replica that stalls past its visibility timeout without
extending it can still delete the message with its old receipt (within one
process lemi refuses that); keep LEMI_LEASE_SECONDS well above a stall.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import os
import re
import time
from contextlib import AsyncExitStack
from typing import Any
from urllib.parse import parse_qs, urlsplit

import msgspec
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.exceptions import BotoCoreError, ClientError

from bot.store.jobs import Message, Unreadable, WebhookJob, encode_message, read_message
from bot.store.queue import Job, NewJob, QueueUnavailable

MAX_BODY = 250_000  # SQS takes 256 KiB per message
DEDUPE_DAYS = 30
_CONFIG = AioConfig(retries={"mode": "standard", "max_attempts": 4}, connect_timeout=3, read_timeout=10)
# fields of webhook payloads lemi never reads, dropped when a payload is too big for SQS
_BULKY = ("commits", "head_commit")


def parse_url(url: str) -> tuple[str, str | None]:
    """'sqs://https://sqs.../q.fifo?dedupe_table=t' -> (queue URL, table)."""
    rest = url.removeprefix("sqs://")
    parts = urlsplit(rest)
    tables = parse_qs(parts.query).get("dedupe_table")
    table = tables[0] if tables else None
    queue_url = rest.split("?", 1)[0]
    if not queue_url.startswith(("https://", "http://")) or not queue_url.endswith(".fifo"):
        raise ValueError(f"LEMI_QUEUE=sqs://{rest}: give the URL of an SQS FIFO queue (ending in .fifo)")
    return queue_url, table


def region_of(queue_url: str) -> str | None:
    match = re.match(r"https?://sqs[.-]([a-z0-9-]+)\.amazonaws\.com", queue_url)
    if match:
        return match.group(1)
    return os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")


def _group(key: str) -> str:
    """A valid MessageGroupId for any key (at most 128 characters of a safe set)."""
    if re.fullmatch(r"[A-Za-z0-9!\"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~]{1,128}", key):
        return key
    return hashlib.sha256(key.encode()).hexdigest()


def _dedupe(dedupe_id: str) -> str:
    return hashlib.sha256(dedupe_id.encode()).hexdigest()


class _Envelope(msgspec.Struct):
    """An SQS message's body: the job's identity and its message (``payload``)."""

    dedupe_id: str
    key: str
    kind: str
    payload: msgspec.Raw


_envelope = msgspec.json.Decoder(_Envelope)


def _message(job: NewJob | Job, payload: bytes, **extra: Any) -> bytes:
    fields = {"dedupe_id": job.dedupe_id, "key": job.key, "kind": job.kind, **extra, "payload": msgspec.Raw(payload)}
    return msgspec.json.encode(fields)


def _compact(job: NewJob | Job, message: Message, **extra: Any) -> str:
    """The message body; a webhook too big for SQS loses the fields lemi never reads."""
    body = _message(job, encode_message(message), **extra)
    if len(body) <= MAX_BODY:
        return body.decode()
    if isinstance(message, WebhookJob) and message.document:
        data = msgspec.json.decode(message.document)
        if isinstance(data, dict):
            slim = {k: v for k, v in data.items() if k not in _BULKY}
            message = msgspec.structs.replace(message, document=msgspec.Raw(msgspec.json.encode(slim)))
            body = _message(job, encode_message(message), **extra)
    if len(body) > MAX_BODY:
        raise QueueUnavailable(f"delivery {job.dedupe_id} is too large for SQS ({len(body):,} bytes)")
    return body.decode()


def _read(body: str, message_id: str) -> tuple[str, str, Message | Unreadable]:
    """(dedupe id, key, message) of a message's body; a body lemi cannot read is Unreadable."""
    try:
        envelope = _envelope.decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        return message_id, "", Unreadable("", f"an SQS message is not a lemi job: {exc}", body)
    try:
        return envelope.dedupe_id, envelope.key, read_message(envelope.kind, envelope.payload)
    except ValueError as exc:
        return envelope.dedupe_id, envelope.key, Unreadable(envelope.kind, str(exc), bytes(envelope.payload).decode())


class SQSQueue:
    searchable = False  # newer_in_key cannot look into SQS

    def __init__(self, url: str) -> None:
        self.queue_url, self.dedupe_table = parse_url(url)
        self._region = region_of(self.queue_url)
        self._stack = AsyncExitStack()
        self._sqs: Any = None
        self._ddb: Any = None
        self._dlq_url: str | None | bool = False  # False: not looked up yet
        self._receipts: dict[tuple[int, int], str] = {}  # (job id, attempt) -> receipt handle

    async def _clients(self) -> tuple[Any, Any]:
        if self._sqs is None:
            session = get_session()
            self._sqs = await self._stack.enter_async_context(
                session.create_client("sqs", region_name=self._region, config=_CONFIG)
            )
            if self.dedupe_table:
                self._ddb = await self._stack.enter_async_context(
                    session.create_client("dynamodb", region_name=self._region, config=_CONFIG)
                )
        return self._sqs, self._ddb

    async def put(self, job: NewJob) -> bool:
        body = _compact(job, job.message)
        try:
            sqs, ddb = await self._clients()
            if ddb is not None:
                try:
                    await ddb.put_item(
                        TableName=self.dedupe_table,
                        Item={
                            "id": {"S": job.dedupe_id},
                            "expires": {"N": str(int(time.time()) + DEDUPE_DAYS * 86400)},
                        },
                        ConditionExpression="attribute_not_exists(id)",
                    )
                except ClientError as exc:
                    if exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                        return False
                    raise
            try:
                await sqs.send_message(
                    QueueUrl=self.queue_url,
                    MessageBody=body,
                    MessageGroupId=_group(job.key),
                    MessageDeduplicationId=_dedupe(job.dedupe_id),
                )
            except (ClientError, BotoCoreError):
                if ddb is not None:  # let GitHub's retry store it
                    await ddb.delete_item(TableName=self.dedupe_table, Key={"id": {"S": job.dedupe_id}})
                raise
        except (ClientError, BotoCoreError, OSError) as exc:
            raise QueueUnavailable(f"SQS did not take the job: {exc}") from exc
        return True

    async def lease(self, worker: str, lease_seconds: float) -> Job | None:
        try:
            sqs, _ = await self._clients()
            response = await sqs.receive_message(
                QueueUrl=self.queue_url,
                MaxNumberOfMessages=1,
                VisibilityTimeout=max(1, math.ceil(lease_seconds)),
                WaitTimeSeconds=0,
                MessageSystemAttributeNames=["ApproximateReceiveCount", "SequenceNumber"],
            )
        except (ClientError, BotoCoreError, OSError) as exc:
            raise QueueUnavailable(f"SQS did not answer: {exc}") from exc
        messages = response.get("Messages", [])
        if not messages:
            return None
        message = messages[0]
        dedupe_id, key, job_message = _read(message["Body"], message["MessageId"])
        attributes = message.get("Attributes", {})
        job_id = int(
            attributes.get("SequenceNumber") or int(hashlib.sha256(message["MessageId"].encode()).hexdigest()[:15], 16)
        )
        attempts = int(attributes.get("ApproximateReceiveCount", 1))
        self._receipts[(job_id, attempts)] = message["ReceiptHandle"]
        for stale in [k for k in self._receipts if k[0] == job_id and k[1] < attempts]:
            del self._receipts[stale]  # an older lease of ours on this message is over
        return Job(
            id=job_id,
            dedupe_id=dedupe_id,
            key=key,
            message=job_message,
            attempts=attempts,
            state="running",
            worker=worker,
        )

    async def _visibility(self, job: Job, seconds: float) -> bool:
        handle = self._receipts.get((job.id, job.attempts))
        if handle is None:
            return False
        sqs, _ = await self._clients()
        try:
            await sqs.change_message_visibility(
                QueueUrl=self.queue_url, ReceiptHandle=handle, VisibilityTimeout=min(43200, max(0, math.ceil(seconds)))
            )
        except ClientError:
            self._receipts.pop((job.id, job.attempts), None)  # the lease is gone (expired and taken, or deleted)
            return False
        return True

    async def wait_for_work(self, timeout: float) -> None:
        """Every replica puts work on the queue: wait ``timeout``, then look again."""
        await asyncio.sleep(timeout)

    async def extend(self, job: Job, lease_seconds: float) -> bool:
        return await self._visibility(job, lease_seconds)

    async def complete(self, job: Job) -> bool:
        handle = self._receipts.pop((job.id, job.attempts), None)
        if handle is None:
            return False
        sqs, _ = await self._clients()
        try:
            await sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=handle)
        except ClientError:
            return False
        return True

    async def retry(self, job: Job, delay: float, error: str) -> bool:
        ok = await self._visibility(job, delay)
        self._receipts.pop((job.id, job.attempts), None)
        return ok

    async def _dead_letter_url(self) -> str | None:
        if self._dlq_url is False:
            sqs, _ = await self._clients()
            attributes = await sqs.get_queue_attributes(QueueUrl=self.queue_url, AttributeNames=["RedrivePolicy"])
            policy = attributes.get("Attributes", {}).get("RedrivePolicy")
            self._dlq_url = None
            if policy:
                name = json.loads(policy)["deadLetterTargetArn"].rsplit(":", 1)[-1]
                self._dlq_url = (await sqs.get_queue_url(QueueName=name))["QueueUrl"]
        return self._dlq_url if isinstance(self._dlq_url, str) and self._dlq_url else None

    async def fail(self, job: Job, error: str) -> bool:
        if (job.id, job.attempts) not in self._receipts:
            return False
        dlq = await self._dead_letter_url()
        if dlq is not None:
            sqs, _ = await self._clients()
            body = self._dead_letter(job, error[:2000])
            await sqs.send_message(
                QueueUrl=dlq, MessageBody=body, MessageGroupId=_group(job.key),
                MessageDeduplicationId=_dedupe(f"failed:{job.dedupe_id}:{job.attempts}"),
            )  # fmt: skip
        return await self.complete(job)

    @staticmethod
    def _dead_letter(job: Job, error: str) -> str:
        """The body copied to the dead-letter queue: the job as it came, the reason, the attempts."""
        if isinstance(job.message, Unreadable):  # what the queue held, as text, for inspection
            payload = msgspec.json.encode(job.message.stored)
            return _message(job, payload, error=error, attempts=job.attempts, unreadable=job.message.reason).decode()
        try:
            return _compact(job, job.message, error=error, attempts=job.attempts)
        except QueueUnavailable:  # too big even without the bulky fields: keep what identifies it
            return _message(job, b"{}", error=error, attempts=job.attempts, truncated=True).decode()

    async def newer_in_key(self, job: Job, kind: str | None = None) -> bool:
        return False  # SQS cannot be searched; see the module docstring

    async def get(self, dedupe_id: str) -> Job | None:
        """Whether a delivery was stored (needs the dedupe table)."""
        _, ddb = await self._clients()
        if ddb is None:
            return None
        item = await ddb.get_item(TableName=self.dedupe_table, Key={"id": {"S": dedupe_id}})
        if "Item" not in item:
            return None
        kept = Unreadable("", "the dedupe table keeps only the delivery id")
        return Job(id=0, dedupe_id=dedupe_id, key="", message=kept, attempts=0, state="stored")

    async def depth(self) -> int:
        sqs, _ = await self._clients()
        attributes = await sqs.get_queue_attributes(
            QueueUrl=self.queue_url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )
        values = attributes.get("Attributes", {})
        return int(values.get("ApproximateNumberOfMessages", 0)) + int(
            values.get("ApproximateNumberOfMessagesNotVisible", 0)
        )

    async def close(self) -> None:
        await self._stack.aclose()
        self._sqs = self._ddb = None
