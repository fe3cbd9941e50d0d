"""Check runs: create or update one by name on a commit (idempotent)."""

from __future__ import annotations

from typing import Any

from bot.core.problems import Problem
from bot.github.client import GitHub
from bot.github.contents import repo_vars

MAX_ANNOTATIONS = 50  # per request, GitHub's limit
MAX_TEXT = 65000


def problem_annotations(problems: list[Problem], level: str = "failure") -> list[dict[str, Any]]:
    return [
        {
            "path": p.file,
            "start_line": p.line,
            "end_line": p.line,
            "annotation_level": level,
            "title": p.path or "lemi",
            "message": p.message + (f"\nhint: {p.hint}" if p.hint else ""),
        }
        for p in problems
    ]


async def find_check_run(gh: GitHub, repository: str, sha: str, name: str) -> dict[str, Any] | None:
    data = await gh.getitem(
        "/repos/{owner}/{repo}/commits/{ref}/check-runs{?check_name,filter}",
        repo_vars(repository, ref=sha, check_name=name, filter="latest"),
    )
    for run in data.get("check_runs", []):
        if run.get("name") == name:
            return dict(run)
    return None


async def upsert_check_run(
    gh: GitHub,
    repository: str,
    sha: str,
    name: str,
    *,
    status: str,
    title: str,
    summary: str,
    conclusion: str | None = None,
    problems: list[Problem] | None = None,
    warnings: list[Problem] | None = None,
    details_url: str | None = None,
    run_id: int | None = None,
) -> dict[str, Any]:
    """Create the check run ``name`` on ``sha``, or update it, ``problems`` annotated as failures and
    ``warnings`` as warnings; ``run_id``, when the caller already has the run (it created it), saves
    looking it up."""
    output: dict[str, Any] = {"title": title[:255], "summary": summary[:MAX_TEXT]}
    notes = problem_annotations(problems or []) + problem_annotations(warnings or [], "warning")
    if notes:
        output["annotations"] = notes[:MAX_ANNOTATIONS]
    body: dict[str, Any] = {"name": name, "status": status, "output": output}
    if conclusion is not None:
        body["conclusion"] = conclusion
    if details_url:
        body["details_url"] = details_url
    if run_id is None:
        existing = await find_check_run(gh, repository, sha, name)
        run_id = existing["id"] if existing is not None else None
    if run_id is None:
        run = await gh.post("/repos/{owner}/{repo}/check-runs", repo_vars(repository), data={**body, "head_sha": sha})
    else:
        run = await gh.patch(
            "/repos/{owner}/{repo}/check-runs/{check_run_id}", repo_vars(repository, check_run_id=run_id), data=body
        )
    for start in range(MAX_ANNOTATIONS, len(notes), MAX_ANNOTATIONS):
        await gh.patch(
            "/repos/{owner}/{repo}/check-runs/{check_run_id}",
            repo_vars(repository, check_run_id=run["id"]),
            data={"output": {"title": output["title"], "summary": output["summary"],
                             "annotations": notes[start : start + MAX_ANNOTATIONS]}},
        )  # fmt: skip
    return dict(run)
