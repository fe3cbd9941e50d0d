"""A service's application logs in CloudWatch Logs: the last lines, and following new ones.

Where an environment sends them (lemi.yml's ``logs``): with ``cloudwatch`` the service
container writes to the log group ``/ecs/<service>-<env>`` with the ``awslogs`` driver, one
stream per task, ``<service>/<service>/<task-id>`` (``<prefix>/<container>/<task-id>``, the
prefix being the service's name). With ``datadog`` (the default) they go to Datadog through
the FireLens log router and nothing here can read them: :func:`last_lines` returns no lines
and :func:`in_datadog` says so, for a caller to tell the user where to look instead.

Both readers call FilterLogEvents only (the deployer policy's ``logs:FilterLogEvents`` on
``/ecs/*`` log groups).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from typing import Any

from bot.aws.clients import AwsClients
from bot.aws.ecs import Ecs, StoppedTask
from bot.aws.errors import AwsError, OperationError
from bot.core.conventions import log_group
from bot.core.markdown import TAIL_BYTES, TAIL_LINES, tail

log = logging.getLogger("lemi.aws.logs")

DEFAULT_LIMIT = 20
# without a task, how far back last_lines looks by default (a task's own stream is read whole)
DEFAULT_SINCE = 3600.0
MAX_PAGES = 50  # FilterLogEvents pages read for one answer: a bound on a very chatty service
FOLLOW_POLL = 2.0
REPORT_TASKS = 3  # stopped tasks of a failed rollout whose lines are read (they usually fail alike)
REPORT_TIMEOUT = 10.0  # seconds a report waits for the lines before going out without them


@dataclass(frozen=True, slots=True)
class LogLine:
    """One event of the service container: when (ms since the epoch), which task, what it wrote."""

    timestamp: int
    task_id: str
    message: str
    event_id: str

    def as_dict(self) -> dict[str, Any]:
        return {"timestamp": self.timestamp, "task_id": self.task_id, "message": self.message}


def in_datadog(aws: AwsClients, env_name: str) -> bool:
    """Does ``env_name`` send application logs to Datadog (where lemi cannot read them)?"""
    return aws.environment(env_name).logs == "datadog"


def stream_name(service: str, task_id: str) -> str:
    """The stream of the service container of one task: ``<prefix>/<container>/<task-id>``."""
    return f"{service}/{service}/{task_id}"


def _line(event: Any, service: str) -> LogLine:
    stream = str(event.get("logStreamName", ""))
    prefix = f"{service}/{service}/"
    return LogLine(
        int(event.get("timestamp", 0)),
        stream[len(prefix) :] if stream.startswith(prefix) else stream,
        str(event.get("message", "")).rstrip("\r\n"),
        str(event.get("eventId", "")),
    )


class _Reader:
    """FilterLogEvents on the service's group, the service container's streams only."""

    def __init__(self, client: Any, env_name: str, service: str, task_id: str | None) -> None:
        self.client, self.env_name, self.service, self.task_id = client, env_name, service, task_id
        self.group = log_group(service, env_name)

    async def page(self, start: int, token: str | None) -> tuple[list[LogLine], str | None]:
        # interleaved: AWS always interleaves the streams by time now (the flag is deprecated, ignored);
        # moto, which the tests use, still needs it
        args: dict[str, Any] = {"logGroupName": self.group, "startTime": start, "interleaved": True}
        if self.task_id is not None:
            args["logStreamNames"] = [stream_name(self.service, self.task_id)]
        else:  # (and filtered again below: moto, which the tests use, ignores the prefix)
            args["logStreamNamePrefix"] = f"{self.service}/{self.service}/"
        if token:
            args["nextToken"] = token
        try:
            answer = await self.client.filter_log_events(**args)
        except AwsError as exc:
            if exc.code != "ResourceNotFoundException":
                raise
            if self.task_id is not None:  # the task never wrote a line (or the group is gone): nothing to read
                return [], None
            raise OperationError(
                f"the log group {self.group} does not exist in {self.env_name}",
                f"it is created with the service's infrastructure (the ecs-service module); "
                f"check -s and -e, and that {self.env_name} has `logs: cloudwatch` in lemi.yml",
            ) from None
        prefix = f"{self.service}/{self.service}/"  # the sidecars' streams are not the service's lines
        events = [e for e in answer.get("events", []) if str(e.get("logStreamName", "")).startswith(prefix)]
        lines = [_line(e, self.service) for e in events]
        return lines, answer.get("nextToken") or None


async def _reader(aws: AwsClients, env_name: str, service: str, task_id: str | None) -> _Reader:
    return _Reader(await aws.client(env_name, "logs"), env_name, service, task_id)


def _start(since: float) -> int:
    return int((time.time() - since) * 1000)


async def recent(
    aws: AwsClients, env_name: str, service: str, *, task_id: str | None = None, limit: int = DEFAULT_LIMIT,
    since: float | None = None,
) -> list[LogLine]:  # fmt: skip
    """:func:`last_lines` with each line's time and task (none where the logs go to Datadog)."""
    if in_datadog(aws, env_name) or limit <= 0:
        return []
    reader = await _reader(aws, env_name, service, task_id)
    window = since if since is not None else (None if task_id else DEFAULT_SINCE)
    start = 0 if window is None else _start(window)
    kept: deque[LogLine] = deque(maxlen=limit)
    token: str | None = None
    for _ in range(MAX_PAGES):
        lines, token = await reader.page(start, token)
        kept.extend(lines)
        if not token:
            break
    return sorted(kept, key=lambda line: line.timestamp)


async def last_lines(
    aws: AwsClients, env_name: str, service: str, *, task_id: str | None = None, limit: int = DEFAULT_LIMIT,
    since: float | None = None,
) -> list[str]:  # fmt: skip
    """The last ``limit`` lines the service container wrote to CloudWatch Logs, oldest first,
    as plain strings (the messages, without a trailing newline; not escaped: render them inert).

    ``task_id``: only that task's lines (its stream ``<service>/<service>/<task-id>``; a task that
    wrote nothing gives ``[]``). ``since``: look back this many seconds (default: a task's whole
    stream; without a task, the last hour).

    Returns ``[]`` where ``env_name`` sends its logs to Datadog (lemi.yml's ``logs``; check
    :func:`in_datadog` to say "the logs are in Datadog"). Raises :class:`OperationError` when the
    service's log group does not exist (without ``task_id``), and AWS's failures as
    :class:`~bot.aws.errors.AwsError`: a report that must go out whatever happens catches
    ``Exception`` around it (see :func:`stopped_task_lines`).
    """
    return [line.message for line in await recent(aws, env_name, service, task_id=task_id, limit=limit, since=since)]


async def follow(
    aws: AwsClients, env_name: str, service: str, *, since: float, task_id: str | None = None,
    poll: float = FOLLOW_POLL,
) -> AsyncIterator[LogLine]:  # fmt: skip
    """Every line written from ``since`` seconds ago on, in order, then new ones as they come:
    FilterLogEvents every ``poll`` seconds from the newest time seen (pages followed by
    ``nextToken``), an event already yielded (its ``eventId``) never yielded again. Runs until
    the caller stops iterating (Ctrl-C). Yields nothing where the logs go to Datadog."""
    if in_datadog(aws, env_name):
        return
    reader = await _reader(aws, env_name, service, task_id)
    start = _start(since)
    seen: set[str] = set()  # ids of the events yielded at or after ``start``
    while True:
        token: str | None = None
        fresh: list[LogLine] = []
        for _ in range(MAX_PAGES):
            lines, token = await reader.page(start, token)
            fresh.extend(line for line in lines if line.event_id not in seen)
            if not token:
                break
        for line in sorted(fresh, key=lambda item: item.timestamp):
            seen.add(line.event_id)
            yield line
        if fresh:
            newest = max(line.timestamp for line in fresh)
            if newest > start:  # events before the new start cannot come again: forget their ids
                seen = {line.event_id for line in fresh if line.timestamp == newest}
                start = newest
        if not token:
            await asyncio.sleep(poll)


async def stopped_task_lines(
    aws: AwsClients, env_name: str, service: str, tasks: list[StoppedTask], *, timeout: float = REPORT_TIMEOUT
) -> list[StoppedTask]:
    """``tasks`` (the stopped tasks of a failed rollout) with the last lines each logged, for its
    report: at most TAIL_LINES lines and TAIL_BYTES bytes in all (bot/core/markdown.py ``tail``),
    from the first REPORT_TASKS tasks. Never raises: where the logs go to Datadog, or cannot be
    read (AWS refuses, a timeout), the tasks come back as they were."""
    if not tasks or in_datadog(aws, env_name):
        return tasks

    async def read() -> list[StoppedTask]:
        out: list[StoppedTask] = []
        lines_left, bytes_left = TAIL_LINES, TAIL_BYTES
        for number, task in enumerate(tasks):
            if number >= REPORT_TASKS or lines_left <= 0 or bytes_left <= 0:
                out.append(task)
                continue
            found = await last_lines(aws, env_name, service, task_id=task.task_id, limit=lines_left)
            kept = tail(found, max_lines=lines_left, max_bytes=bytes_left)
            lines_left -= len(kept)
            bytes_left -= sum(len(line.encode("utf-8")) + 1 for line in kept)
            out.append(replace(task, lines=kept))
        return out

    try:
        return await asyncio.wait_for(read(), timeout)
    except Exception as exc:  # noqa: BLE001 - the report goes out without the lines
        log.warning("could not read the last log lines of the stopped tasks of %s in %s: %s", service, env_name, exc)
        return tasks


async def stopped_tasks(ecs: Ecs, service: str, deployment_id: str) -> list[StoppedTask]:
    """The stopped tasks of a failed rollout's deployment (:meth:`Ecs.stopped_tasks`, which may
    raise), each with its last log lines where they can be read (:func:`stopped_task_lines`)."""
    tasks = await ecs.stopped_tasks(deployment_id)
    if ecs.aws is None:
        return tasks
    return await stopped_task_lines(ecs.aws, ecs.environment, service, tasks)


async def task_lines(ecs: Ecs, service: str, task_id: str, *, timeout: float = REPORT_TIMEOUT) -> list[str]:
    """The last lines a one-off task's container wrote (a ``preDeploy`` task, ``lemi run``), for
    its result: bounded like a failed rollout's (TAIL_LINES, TAIL_BYTES). Never raises: [] where
    the logs go to Datadog, the task wrote nothing, or they cannot be read."""
    if ecs.aws is None or not task_id or in_datadog(ecs.aws, ecs.environment):
        return []
    aws = ecs.aws
    try:
        found = await asyncio.wait_for(
            last_lines(aws, ecs.environment, service, task_id=task_id, limit=TAIL_LINES), timeout
        )
    except Exception as exc:  # noqa: BLE001 - the result goes out without the lines
        log.warning("could not read the last log lines of task %s of %s: %s", task_id, service, exc)
        return []
    return tail(found, max_lines=TAIL_LINES, max_bytes=TAIL_BYTES)
