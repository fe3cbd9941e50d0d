"""When a pull request closes: a merged infra PR merges its service PR (once every service
it names is provisioned and owned by its repository), a closed one is reported on it; a
service PR closed without merging closes its infra PRs.

Every step finds what it did before (check run, comment, merge), so a redelivered event
changes nothing twice.
"""

from __future__ import annotations

from typing import Any

from bot.core.config import Config
from bot.core.templating import render
from bot.flows.provision import (
    BRANCH_PREFIX,
    LINK_COMMENT,
    PROVISION_CHECK,
    REFUSED_COMMENT,
    PullRequest,
    changed_services,
    get_pull,
    infra_base,
    is_provisioned,
    open_pull,
    parse_service_pr_marker,
    service_pr_marker,
)
from bot.github import checks, comments
from bot.github.client import GitHub, error_message
from bot.github.contents import repo_vars
from bot.github.errors import GitHubError
from bot.github.owners import Owners


async def on_infra_pr_closed(
    infra_gh: GitHub, gh: GitHub, config: Config, infra_pr: PullRequest, *, owners: Owners
) -> str:
    """Mirror a closed lemi infra PR onto its service PR. Returns what was done. The service PR
    is merged only when its repository owns every service it names (:mod:`bot.core.ownership`)."""
    link = parse_service_pr_marker(infra_pr.body)
    if link is None or not infra_pr.head_ref.startswith(BRANCH_PREFIX):
        return "not a lemi infra pull request"
    repository, number = link
    service_pr = await get_pull(gh, repository, number)
    service = infra_pr.head_ref[len(BRANCH_PREFIX) :]
    services = await changed_services(gh, service_pr)
    if service not in services:
        return f"{repository}#{number} does not add {service}: not linked"

    async def provision_check(conclusion: str, title: str, template: str, **values: Any) -> None:
        await checks.upsert_check_run(
            gh, repository, service_pr.head_sha, PROVISION_CHECK, status="completed", conclusion=conclusion,
            title=title, summary=render(template, pr=service_pr, infra_pr=infra_pr, service=service, config=config,
                                        **values),
            details_url=infra_pr.html_url,
        )  # fmt: skip

    if not infra_pr.merged:
        await provision_check("failure", "the infra pull request was closed", "checks/provision_closed.md.j2")
        await comments.upsert_comment(
            gh, repository, number, LINK_COMMENT,
            render("comments/infra_closed.md.j2", infra_pr=infra_pr, service=service),
        )  # fmt: skip
        return "infra PR closed: service PR told"
    # merged: is everything this PR needs provisioned now? (on the branch it merged into)
    others = [s for s in services if s != service]
    base = (infra_pr.base_ref or await infra_base(infra_gh, config)) if others else ""
    missing = [s for s in others if not await is_provisioned(infra_gh, config, s, base)]
    if missing:
        await checks.upsert_check_run(
            gh, repository, service_pr.head_sha, PROVISION_CHECK, status="in_progress", title=f"waiting for {', '.join(missing)}",
            summary=render("checks/provision_partial.md.j2", done=service, missing=missing), details_url=infra_pr.html_url,
        )  # fmt: skip
        return f"{service} provisioned; waiting for {', '.join(missing)}"
    refused = {}
    for name in services:
        verdict = await owners.verdict(name, repository)
        if not verdict.allowed:
            refused[name] = verdict.why
    if refused:
        await provision_check(
            "failure", "not merged: the pull request names services owned elsewhere", "checks/provision_refused.md.j2",
            refused=refused,
        )  # fmt: skip
        await comments.upsert_comment(
            gh, repository, number, REFUSED_COMMENT, render("comments/provision_refused.md.j2", refused=refused)
        )
        return f"not merged: {', '.join(refused)} owned elsewhere"
    await provision_check("success", "provisioned", "checks/provision_merged.md.j2")
    if service_pr.merged:
        return "service PR already merged"
    if service_pr.state != "open":
        await comments.upsert_comment(
            gh, repository, number, LINK_COMMENT,
            render("comments/merge_failed.md.j2", infra_pr=infra_pr, reason="this pull request is closed"),
        )  # fmt: skip
        return "service PR is closed: not merged"
    try:
        await gh.put(
            "/repos/{owner}/{repo}/pulls/{pull_number}/merge",
            repo_vars(repository, pull_number=number),
            data={"merge_method": config.infra.merge_method, "sha": service_pr.head_sha},
        )
    except GitHubError as exc:
        if exc.status_code >= 500:
            raise
        if (await get_pull(gh, repository, number)).merged:
            return "service PR already merged"  # another job got there first
        reason = error_message(exc)
        await comments.upsert_comment(
            gh, repository, number, LINK_COMMENT,
            render("comments/merge_failed.md.j2", infra_pr=infra_pr, reason=reason),
        )  # fmt: skip
        return f"could not merge the service PR: {reason}"
    await comments.upsert_comment(
        gh, repository, number, LINK_COMMENT,
        render("comments/provision_merged.md.j2", infra_pr=infra_pr, method=config.infra.merge_method),
    )  # fmt: skip
    return "service PR merged"


async def on_service_pr_closed(gh: GitHub, infra_gh: GitHub, config: Config, pr: PullRequest) -> list[str]:
    """A service PR closed without merging: close its infra PRs and delete their branches."""
    if pr.merged:
        return []
    closed = []
    infra = config.infra.repository
    marker = service_pr_marker(pr.repository, pr.number)
    for service in await changed_services(gh, pr):
        branch = BRANCH_PREFIX + service
        pull = await open_pull(infra_gh, infra, branch)
        if pull is None or marker not in (pull.get("body") or ""):
            continue
        if not await infra_gh.wrote(pull):
            continue  # the marker is honoured only on infra PRs lemi opened
        await comments.comment(
            infra_gh, infra, pull["number"], render("comments/service_closed.md.j2", pr=pr, service=service)
        )
        await infra_gh.patch(
            "/repos/{owner}/{repo}/pulls/{pull_number}",
            repo_vars(infra, pull_number=pull["number"]),
            data={"state": "closed"},
        )
        try:
            await infra_gh.delete("/repos/{owner}/{repo}/git/refs/{+ref}", repo_vars(infra, ref=f"heads/{branch}"))
        except GitHubError as exc:
            if exc.status_code not in (404, 422):
                raise
        closed.append(pull.get("html_url", ""))
    return closed
