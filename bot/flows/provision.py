"""Provisioning: a service PR proposes its Terraform in the infra repository,
and the infra PR's fate is mirrored back (the README, "The GitHub App": the ``pull_request`` rows).

Plain functions over GitHub clients: the App's handlers and ``lemi provision``
call the same code. Every step finds what it made before (branch, file, PR,
comment, check run) and reuses it, so a redelivered or repeated event changes
nothing twice.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from bot.core import logs
from bot.core.config import Config
from bot.core.names import SERVICE_RE
from bot.core.ownership import same_repository
from bot.core.problems import Invalid, Problem, problems_text
from bot.core.spec import ServiceFiles, parse_service_files
from bot.core.templating import render
from bot.core.terraform import render_service_module
from bot.github import checks, comments
from bot.github.client import GitHub
from bot.github.contents import branch_sha, file_entry, read_file, read_service_files, repo_vars
from bot.github.owners import Owners

log = logging.getLogger("lemi.provision")

SPEC_CHECK = "lemi / spec"
PROVISION_CHECK = "lemi / provision"
BRANCH_PREFIX = "lemi/"
LINK_COMMENT = "provision-link"
REFUSED_COMMENT = "provision-refused"
# a pull request's spec checks cover at most this many changed services (a push is not
# bounded: a monorepo deploys every service)
MAX_SERVICES = 20
_SERVICE_PATH_RE = re.compile(r"^deploy/([^/]+)/(?:service\.yaml|environment/[^/]+\.ya?ml)$")
_MARKER_RE = re.compile(r"<!-- lemi:service-pr ([A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+)#(\d+) -->")


def service_pr_marker(repository: str, number: int) -> str:
    return f"<!-- lemi:service-pr {repository}#{number} -->"


def parse_service_pr_marker(body: str | None) -> tuple[str, int] | None:
    match = _MARKER_RE.search(body or "")
    return (match.group(1), int(match.group(2))) if match else None


@dataclass(frozen=True)
class PullRequest:
    repository: str
    number: int
    head_sha: str
    head_ref: str
    html_url: str
    from_fork: bool
    state: str = "open"
    merged: bool = False
    body: str = ""
    base_ref: str = ""

    @classmethod
    def from_api(cls, repository: str, pr: dict[str, Any]) -> PullRequest:
        head_repo = (pr.get("head") or {}).get("repo") or {}
        return cls(
            repository=repository,
            number=int(pr["number"]),
            head_sha=pr["head"]["sha"],
            head_ref=pr["head"]["ref"],
            html_url=pr.get("html_url", ""),
            from_fork=head_repo.get("full_name") != repository,
            state=pr.get("state", "open"),
            merged=bool(pr.get("merged")),
            body=pr.get("body") or "",
            base_ref=(pr.get("base") or {}).get("ref", ""),
        )


@dataclass
class Outcome:
    """What one provisioning run did, for the CLI and the tests."""

    services: list[str] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    provisioned: list[str] = field(default_factory=list)  # already in the infra repository
    infra_prs: dict[str, str] = field(default_factory=dict)  # service -> infra PR URL
    refused: dict[str, str] = field(default_factory=dict)  # service -> why this repository may not provision it
    skipped: str = ""  # why nothing was provisioned


async def changed_services(gh: GitHub, pr: PullRequest) -> list[str]:
    """Services whose files the PR adds or changes."""
    found: set[str] = set()
    async for item in gh.getiter(
        "/repos/{owner}/{repo}/pulls/{pull_number}/files{?per_page}",
        repo_vars(pr.repository, pull_number=pr.number, per_page=100),
    ):
        for path in (item.get("filename", ""), item.get("previous_filename", "")):
            match = _SERVICE_PATH_RE.match(path or "")
            if match and item.get("status") != "removed":
                found.add(match.group(1))
    return sorted(found)


async def load_services(
    gh: GitHub,
    config: Config,
    repository: str,
    services: list[str],
    ref: str,
    *,
    transferred: frozenset[str] = frozenset(),
) -> tuple[dict[str, ServiceFiles], list[Problem], list[str]]:
    """The services' files at ``ref``, parsed: (valid ones, every problem, the services that
    still have files). ``transferred``: services the infra file gives to ``repository`` although
    they are not named after it; the naming rule is not asked of them."""
    loaded: dict[str, ServiceFiles] = {}
    problems: list[Problem] = []
    present: list[str] = []
    for name in services:
        files = await read_service_files(gh, repository, name, ref)
        if not files:
            continue  # the service was removed by this change
        present.append(name)
        named_after = None if name in transferred else repository
        try:  # parsing is CPU work: off the event loop, which keeps answering webhooks
            loaded[name] = await asyncio.to_thread(
                parse_service_files, name, files, repository=named_after, known_environments=list(config.environments)
            )
        except Invalid as exc:
            problems.extend(exc.problems)
    return loaded, problems, present


async def report_spec(
    gh: GitHub, pr: PullRequest, services: list[str], problems: list[Problem], warnings: Sequence[Problem] = ()
) -> None:
    """The ``lemi / spec`` check run: failed by ``problems``, passed with ``warnings`` (annotated as such)."""
    ok = not problems
    title = "service files are valid" if ok else f"{problems_text(len(problems))} in the service files"
    if ok and warnings:
        title += f", {len(warnings)} warning{'s' if len(warnings) != 1 else ''}"
    await checks.upsert_check_run(
        gh,
        pr.repository,
        pr.head_sha,
        SPEC_CHECK,
        status="completed",
        conclusion="success" if ok else "failure",
        title=title,
        summary=render("checks/spec.md.j2", services=services, problems=problems, warnings=list(warnings)),
        problems=problems,
        warnings=list(warnings),
    )


async def infra_base(infra_gh: GitHub, config: Config) -> str:
    if config.infra.base_branch:
        return config.infra.base_branch
    repo = await infra_gh.getitem("/repos/{owner}/{repo}", repo_vars(config.infra.repository))
    return str(repo["default_branch"])


async def is_provisioned(infra_gh: GitHub, config: Config, service: str, base: str) -> bool:
    return await read_file(infra_gh, config.infra.repository, config.infra.file_for(service), base) is not None


async def open_infra_pr(infra_gh: GitHub, config: Config, service: str) -> dict[str, Any] | None:
    """The open pull request on lemi's infra branch of ``service``, if any."""
    return await open_pull(infra_gh, config.infra.repository, BRANCH_PREFIX + service)


async def pending_claim(
    infra_gh: GitHub, config: Config, service: str, pr: PullRequest, pull: dict[str, Any] | None
) -> str | None:
    """Why ``pr`` may not open or update the infra PR of a service that is not provisioned yet,
    given the open pull request on lemi's branch (:func:`open_infra_pr`): another repository's
    infra PR for the same name (lemi's own, found by its login), or somebody else's pull request
    on lemi's branch. None when it may."""
    if pull is None:
        return None
    url = pull.get("html_url", "")
    if not await infra_gh.wrote(pull):
        return (
            f"the branch `{BRANCH_PREFIX}{service}` of {config.infra.repository} has an open pull request "
            f"lemi did not open ({url}); the infra team closes it or renames the branch"
        )
    link = parse_service_pr_marker(pull.get("body"))
    if link is not None and not same_repository(link[0], pr.repository):
        return (
            f"{link[0]}#{link[1]} is provisioning `{service}` already ({url}); while that infra pull request "
            f"is open, no other repository can claim the name. Choose another name, or ask in {link[0]}#{link[1]}"
        )
    return None


async def open_pull(gh: GitHub, repository: str, branch: str) -> dict[str, Any] | None:
    owner = repository.split("/", 1)[0]
    async for pull in gh.getiter(
        "/repos/{owner}/{repo}/pulls{?state,head,per_page}",
        repo_vars(repository, state="open", head=f"{owner}:{branch}", per_page=100),
    ):
        return dict(pull)
    return None


async def ensure_infra_pr(
    infra_gh: GitHub, config: Config, files: ServiceFiles, pr: PullRequest, base: str, pull: dict[str, Any] | None
) -> dict[str, Any]:
    """The infra branch, file and PR for one service, created or brought up to date. ``pull``:
    the open pull request on that branch, as :func:`open_infra_pr` found it (checked by
    :func:`pending_claim`: this PR may update it)."""
    infra = config.infra.repository
    service = files.service.name
    branch = BRANCH_PREFIX + service
    path = config.infra.file_for(service)
    content = render_service_module(files.service, config, repository=pr.repository, pull_request=pr.number)
    if await branch_sha(infra_gh, infra, branch) is None:
        base_sha = await branch_sha(infra_gh, infra, base)
        if base_sha is None:
            raise RuntimeError(f"the infra repository {infra} has no branch {base!r}")
        await infra_gh.post(
            "/repos/{owner}/{repo}/git/refs", repo_vars(infra), data={"ref": f"refs/heads/{branch}", "sha": base_sha}
        )
    existing = await file_entry(infra_gh, infra, path, branch)
    if existing is None or base64.b64decode(existing.get("content") or "") != content.encode("utf-8"):
        data: dict[str, Any] = {
            "message": f"lemi: provision {service} ({pr.repository}#{pr.number})",
            "content": base64.b64encode(content.encode("utf-8")).decode("ascii"),
            "branch": branch,
        }
        if existing is not None:
            data["sha"] = existing["sha"]
        await infra_gh.put("/repos/{owner}/{repo}/contents/{+path}", repo_vars(infra, path=path), data=data)
    title = f"Provision {service}"
    body = render(
        "comments/infra_pr.md.j2",
        marker=service_pr_marker(pr.repository, pr.number),
        service=service,
        owner=files.service.owner,
        path=path,
        pr=pr,
    )
    if pull is None:
        return dict(
            await infra_gh.post(
                "/repos/{owner}/{repo}/pulls",
                repo_vars(infra),
                data={"title": title, "head": branch, "base": base, "body": body},
            )
        )
    if pull.get("title") != title or (pull.get("body") or "") != body:
        pull = dict(
            await infra_gh.patch(
                "/repos/{owner}/{repo}/pulls/{pull_number}",
                repo_vars(infra, pull_number=pull["number"]),
                data={"title": title, "body": body},
            )
        )
    return pull


async def provision_pull_request(
    gh: GitHub,
    infra_gh: GitHub,
    config: Config,
    pr: PullRequest,
    *,
    owners: Owners,
    only: list[str] | None = None,
    check_runs: bool = True,
) -> Outcome:
    """Validate the PR's services, check that this repository owns them (:mod:`bot.core.ownership`),
    then propose the missing ones in the infra repository.

    ``check_runs=False`` for callers that are not a GitHub App (``lemi provision``
    with a personal token): GitHub lets only Apps write check runs.
    """
    outcome = Outcome()
    services = await changed_services(gh, pr)
    if only is not None:
        services = [s for s in services if s in only] or [s for s in only if SERVICE_RE.fullmatch(s)]
    if not services:
        outcome.skipped = "the pull request changes no deploy/<service>/ files"
        return outcome
    if len(services) > MAX_SERVICES:
        outcome.services = services
        outcome.skipped = (
            f"the pull request changes {len(services)} services; lemi checks at most {MAX_SERVICES} per pull request"
        )
        if check_runs:
            await checks.upsert_check_run(
                gh, pr.repository, pr.head_sha, SPEC_CHECK, status="completed", conclusion="failure",
                title=f"{len(services)} services changed: at most {MAX_SERVICES} are checked",
                summary=render("checks/spec_too_many.md.j2", count=len(services), limit=MAX_SERVICES),
            )  # fmt: skip
        return outcome
    # who owns each service, read first: the infra file may give this repository a service
    # that is not named after it (a transfer), and then the naming rule is not asked
    records = {name: await owners.record(name) for name in services if SERVICE_RE.fullmatch(name)}
    transferred = frozenset(
        name for name, r in records.items() if r.repository is not None and same_repository(r.repository, pr.repository)
    )
    loaded, problems, present = await load_services(
        gh, config, pr.repository, services, pr.head_sha, transferred=transferred
    )
    outcome.services, outcome.problems = sorted(loaded) or services, problems
    if check_runs:
        # an environment lemi.yml has and a service has no file for yet: a warning, not a failure,
        # so adding an environment to lemi.yml does not fail every open pull request
        warnings = [p for name in sorted(loaded) for p in loaded[name].missing_environments(config.environments)]
        await report_spec(gh, pr, outcome.services, problems, warnings)
    if not present:
        outcome.skipped = "the pull request removes its services"
        return outcome

    async def provision_check(status: str, conclusion: str | None, title: str, template: str, **values: Any) -> None:
        if not check_runs:
            return
        await checks.upsert_check_run(
            gh, pr.repository, pr.head_sha, PROVISION_CHECK, status=status, conclusion=conclusion, title=title,
            summary=render(template, pr=pr, config=config, **values), details_url=values.get("details_url"),
        )  # fmt: skip

    # nothing is written to the infra repository for a PR that names a service another
    # repository owns, or one another repository's open infra PR claims
    infra_prs: dict[str, dict[str, Any] | None] = {}
    for name in present:
        if name not in records:
            continue  # not a valid name: the spec check says so
        verdict = await owners.verdict(name, pr.repository, records[name])
        why = verdict.why if not verdict.allowed else None
        if why is None and not records[name].exists and not pr.from_fork:
            infra_prs[name] = await open_infra_pr(infra_gh, config, name)
            why = await pending_claim(infra_gh, config, name, pr, infra_prs[name])
        if why is not None:
            outcome.refused[name] = why
    if outcome.refused:
        outcome.skipped = "the pull request names services this repository does not own"
        log.warning("provisioning refused: %s", "; ".join(outcome.refused.values()))
        await comments.upsert_comment(
            gh,
            pr.repository,
            pr.number,
            REFUSED_COMMENT,
            render("comments/provision_refused.md.j2", refused=outcome.refused),
        )
        await provision_check(
            "completed", "failure", f"not provisioned: {', '.join(outcome.refused)} belong{'s' if len(outcome.refused) == 1 else ''} elsewhere",
            "checks/provision_refused.md.j2", refused=outcome.refused,
        )  # fmt: skip
        return outcome
    if problems:
        outcome.skipped = "the service files are invalid"
        await provision_check("completed", "failure", "fix the service files first", "checks/provision_invalid.md.j2")
        return outcome
    if pr.from_fork:
        outcome.skipped = "pull requests from forks are never provisioned"
        await provision_check(
            "completed", "neutral", "not provisioned: pull request from a fork", "checks/provision_fork.md.j2"
        )
        return outcome
    pending: dict[str, dict[str, Any]] = {}
    base = ""
    for name, files in sorted(loaded.items()):
        with logs.bind(service=name):
            if records[name].exists:
                outcome.provisioned.append(name)
                continue
            base = base or await infra_base(infra_gh, config)
            pull = await ensure_infra_pr(infra_gh, config, files, pr, base, infra_prs.get(name))
            log.info("infra pull request %s for %s", pull.get("html_url", ""), name)
        pending[name] = pull
        outcome.infra_prs[name] = pull.get("html_url", "")
    if not pending:
        await provision_check(
            "completed", "success", "already provisioned", "checks/provision_done.md.j2", services=outcome.provisioned
        )
        return outcome
    await comments.upsert_comment(
        gh, pr.repository, pr.number, LINK_COMMENT,
        render("comments/provision_link.md.j2", pulls=pending, config=config, provisioned=outcome.provisioned),
    )  # fmt: skip
    first = next(iter(pending.values()))
    await provision_check(
        "in_progress", None, "waiting for the infra pull request to merge", "checks/provision_waiting.md.j2",
        pulls=pending, details_url=first.get("html_url"),
    )  # fmt: skip
    return outcome


async def get_pull(gh: GitHub, repository: str, number: int) -> PullRequest:
    data = await gh.getitem("/repos/{owner}/{repo}/pulls/{pull_number}", repo_vars(repository, pull_number=number))
    return PullRequest.from_api(repository, data)
