"""Read a repository's files at a ref through the contents API."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

from bot.core.spec import ENVIRONMENT_DIR, SERVICE_FILE
from bot.core.yamlsafe import DEFAULT_LIMITS
from bot.github.client import GitHub
from bot.github.errors import GitHubError

CONTENTS = "/repos/{owner}/{repo}/contents/{+path}{?ref}"


def repo_vars(repository: str, **more: Any) -> dict[str, Any]:
    owner, name = repository.split("/", 1)
    return {"owner": owner, "repo": name, **more}


async def _contents(gh: GitHub, repository: str, path: str, ref: str | None) -> Any:
    try:
        return await gh.getitem(CONTENTS, repo_vars(repository, path=path, ref=ref))
    except GitHubError as exc:
        if exc.status_code == 404:
            return None
        raise


async def branch_sha(gh: GitHub, repository: str, branch: str) -> str | None:
    """The commit a branch points at, or None when there is no such branch."""
    try:
        ref = await gh.getitem("/repos/{owner}/{repo}/git/ref/{+ref}", repo_vars(repository, ref=f"heads/{branch}"))
    except GitHubError as exc:
        if exc.status_code == 404:
            return None
        raise
    return str(ref["object"]["sha"])


async def repository_exists(gh: GitHub, repository: str) -> bool:
    """Can this client see ``owner/name``? (GitHub answers 404 for a repository it hides.)"""
    try:
        await gh.getitem("/repos/{owner}/{repo}", repo_vars(repository))
    except GitHubError as exc:
        if exc.status_code == 404:
            return False
        raise
    return True


async def file_entry(gh: GitHub, repository: str, path: str, ref: str | None) -> dict[str, Any] | None:
    """The contents API's entry for a file (content, sha, size), or None. ``ref`` None: the
    repository's default branch."""
    data = await _contents(gh, repository, path, ref)
    return data if isinstance(data, dict) and data.get("type") == "file" else None


async def read_file(gh: GitHub, repository: str, path: str, ref: str) -> bytes | None:
    """The file's bytes, or None when it does not exist. Files over lemi's cap are not downloaded."""
    data = await file_entry(gh, repository, path, ref)
    return None if data is None else entry_bytes(data)


def entry_bytes(data: dict[str, Any]) -> bytes:
    """The bytes of a file's contents entry (:func:`file_entry`); over lemi's cap, bytes the YAML
    loader refuses by their size, with its message."""
    if int(data.get("size", 0)) > DEFAULT_LIMITS.max_bytes:
        return b"\0" * (DEFAULT_LIMITS.max_bytes + 1)
    return base64.b64decode(data.get("content") or "")


async def list_dir(gh: GitHub, repository: str, path: str, ref: str) -> list[dict[str, Any]]:
    data = await _contents(gh, repository, path, ref)
    return data if isinstance(data, list) else []


async def list_services(gh: GitHub, repository: str, ref: str) -> list[str]:
    entries = await list_dir(gh, repository, "deploy", ref)
    return sorted(e["name"] for e in entries if e.get("type") == "dir")


async def read_service_files(gh: GitHub, repository: str, service: str, ref: str) -> dict[str, bytes]:
    """service.yaml and environment/*.y[a]ml of deploy/<service>/, keyed relative to it (read at once)."""
    base = f"deploy/{service}"

    async def environment_files() -> list[tuple[str, bytes | None]]:
        names = [
            entry["name"]
            for entry in await list_dir(gh, repository, f"{base}/{ENVIRONMENT_DIR}", ref)
            if entry.get("type") == "file" and str(entry.get("name", "")).endswith((".yaml", ".yml"))
        ]
        contents = await asyncio.gather(
            *(read_file(gh, repository, f"{base}/{ENVIRONMENT_DIR}/{name}", ref) for name in names)
        )
        return [(f"{ENVIRONMENT_DIR}/{name}", content) for name, content in zip(names, contents, strict=True)]

    spec, environments = await asyncio.gather(
        read_file(gh, repository, f"{base}/{SERVICE_FILE}", ref), environment_files()
    )
    files: dict[str, bytes] = {}
    if spec is not None:
        files[SERVICE_FILE] = spec
    files.update((path, content) for path, content in environments if content is not None)
    return files
