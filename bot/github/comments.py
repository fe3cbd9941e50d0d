"""Comments lemi owns, found again by a hidden marker and updated in place."""

from __future__ import annotations

from typing import Any

from bot.github.client import GitHub
from bot.github.contents import repo_vars


def marker(kind: str) -> str:
    return f"<!-- lemi:{kind} -->"


async def find_comment(gh: GitHub, repository: str, number: int, kind: str) -> dict[str, Any] | None:
    """lemi's comment of this kind: its marker, written by this client's own login (a marker
    copied into anybody else's comment, a bot's included, is never taken for lemi's)."""
    tag = marker(kind)
    async for comment in gh.getiter(
        "/repos/{owner}/{repo}/issues/{issue_number}/comments{?per_page}",
        repo_vars(repository, issue_number=number, per_page=100),
    ):
        if tag in (comment.get("body") or "") and await gh.wrote(comment):
            return dict(comment)
    return None


async def upsert_comment(gh: GitHub, repository: str, number: int, kind: str, body: str) -> dict[str, Any]:
    """One comment of this kind on the PR: created once, then edited, never duplicated."""
    text = f"{marker(kind)}\n{body}"
    existing = await find_comment(gh, repository, number, kind)
    if existing is None:
        return dict(
            await gh.post(
                "/repos/{owner}/{repo}/issues/{issue_number}/comments",
                repo_vars(repository, issue_number=number),
                data={"body": text},
            )
        )
    if existing.get("body") == text:
        return existing
    return dict(
        await gh.patch(
            "/repos/{owner}/{repo}/issues/comments/{comment_id}",
            repo_vars(repository, comment_id=existing["id"]),
            data={"body": text},
        )
    )


async def comment(gh: GitHub, repository: str, number: int, body: str) -> dict[str, Any]:
    return dict(
        await gh.post(
            "/repos/{owner}/{repo}/issues/{issue_number}/comments",
            repo_vars(repository, issue_number=number),
            data={"body": body},
        )
    )
