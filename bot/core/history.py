"""Which revision a rollback returns to, from the revisions' tags (pure).

lemi tags a task-definition revision ``lemi:deployed-at`` (ISO-8601 UTC) when a rollout of it
completes -- truly: a circuit-breaker rollback, a FAILED rollout or a timeout tags nothing. A
rollback returns to the revision with the newest ``lemi:deployed-at`` among those lemi
registered (``managed-by=lemi``) with a lower revision number than the running one: the last
good one before it, never a revision whose rollout failed, nor one registered outside lemi (the
example Terraform module's placeholder carries no ``lemi:deployed-at``). After a rollback from
:5 to :4, the next rollback goes below :4, not back to :5.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from bot.core.conventions import MANAGED_BY

DEPLOYED_AT = "lemi:deployed-at"


def deployed_stamp(now: datetime) -> str:
    """The tag's value: ``2026-12-06T18:30:00Z``."""
    return now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def deployed_at(tags: Mapping[str, str]) -> datetime | None:
    """When lemi last completed a rollout of a revision with these tags; None: never (or it is
    not lemi's, or the tag is not a time lemi wrote)."""
    value = tags.get(DEPLOYED_AT)
    if tags.get("managed-by") != MANAGED_BY or not value:
        return None
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        return None
    return when if when.tzinfo is not None else None


@dataclass(frozen=True, slots=True)
class Revision:
    """One revision of a family: its number, ARN and tags."""

    number: int
    arn: str
    tags: Mapping[str, str]


def rollback_target(current: int, revisions: Iterable[Revision]) -> Revision | None:
    """The revision to roll back to from revision ``current``: among the lower-numbered ones
    lemi deployed successfully, the one deployed last (a tie: the higher number); None: none."""
    deployed = [(when, r.number, r) for r in revisions if r.number < current and (when := deployed_at(r.tags))]
    return max(deployed, key=lambda d: (d[0], d[1]))[2] if deployed else None
