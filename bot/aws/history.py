"""The deploy history lemi keeps on the task definitions themselves, where the CLI and the App
both read it: the ``lemi:deployed-at`` tag (bot/core/history.py).

:func:`mark_deployed` tags a revision whose rollout completed (the rollout wait of
bot/aws/rollout.py and the watcher's, bot/flows/watch_poll.py); a tag AWS refuses is a warning,
never a failed deploy. :func:`rollback_target` reads the tags back to choose the revision a
rollback returns to.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime

from bot.aws.ecs import Ecs, family_of, revision_number, revision_of
from bot.aws.errors import OperationError
from bot.core import history
from bot.core.history import DEPLOYED_AT, Revision

log = logging.getLogger("lemi.aws")

HISTORY_CAP = 50  # revisions below the running one whose tags a rollback reads, newest first
TAG_BATCH = 10  # ListTagsForResource calls at once


def _now() -> datetime:
    return datetime.now(UTC)


async def mark_deployed(ecs: Ecs, arn: str) -> list[str]:
    """Tag ``arn`` deployed now; the warning to report when AWS refused (none: [])."""
    stamp = history.deployed_stamp(_now())
    try:
        await ecs.client.tag_resource(resourceArn=arn, tags=[{"key": DEPLOYED_AT, "value": stamp}])
    except Exception as exc:  # noqa: BLE001 - the rollout completed whatever the tag
        log.warning("could not tag %s %s: %s", revision_of(arn), DEPLOYED_AT, exc)
        return [
            f"lemi could not record {revision_of(arn)} as deployed ({DEPLOYED_AT}: {exc}); a later rollback "
            "will not return to it (the deployer needs ecs:TagResource)"
        ]
    return []


async def rollback_target(ecs: Ecs, current: str, *, cap: int = HISTORY_CAP) -> str:
    """The revision a rollback from ``current`` (an ARN) returns to (bot/core/history.py); an
    :class:`OperationError` that says why when there is none."""
    number = revision_number(current)
    older = [a for a in await ecs.revisions(family_of(current)) if revision_number(a) < number]
    read = older[:cap]
    tags: list[Revision] = []
    for start in range(0, len(read), TAG_BATCH):
        batch = read[start : start + TAG_BATCH]
        answers = await asyncio.gather(*(ecs.client.list_tags_for_resource(resourceArn=a) for a in batch))
        for arn, answer in zip(batch, answers, strict=True):
            found = {t["key"]: t["value"] for t in answer.get("tags", []) if "key" in t and "value" in t}
            tags.append(Revision(revision_number(arn), arn, found))
    chosen = history.rollback_target(number, tags)
    if chosen is not None:
        return chosen.arn
    looked = f" (lemi looked at the newest {cap} of its {len(older)} earlier revisions)" if len(older) > cap else ""
    raise OperationError(
        f"{revision_of(current)} has no earlier revision that lemi deployed successfully to roll back to{looked}",
        "deploy a known good image tag instead: `lemi deploy -t <tag>` (or `/lemi deploy <tag>`)",
    )
