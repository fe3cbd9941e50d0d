"""Webhook handlers, one module per feature, composed once here.

``process`` runs a queued job; ``report`` tells the user about a job that
failed for good; ``accepts`` decides at intake whether an event is ours at
all (anything else is acknowledged and ignored, with no API call).
"""

from __future__ import annotations

import logging
from typing import Any, TypedDict

from gidgethub import sansio
from gidgethub.routing import Router

from bot.core.templating import render
from bot.flows.provision import parse_service_pr_marker
from bot.flows.runtime import Runtime
from bot.github import comments, writer
from bot.store.jobs import CommandJob, DeployJob, WebhookJob
from bot.store.queue import Job
from handlers import commands, config, deploy, provision

log = logging.getLogger("lemi.handlers")

router = Router(provision.router, deploy.router, commands.router, config.router)


class _Repository(TypedDict, total=False):
    full_name: str
    default_branch: str  # a push: lemi.yml is read again on the infra repository's (handlers/config.py)


class _Author(TypedDict, total=False):
    login: str


class _Installation(TypedDict, total=False):
    id: int


class _Pusher(TypedDict, total=False):
    name: str


class _Branch(TypedDict, total=False):
    sha: str
    ref: str
    repo: _Repository | None  # None once a fork is deleted


class _PullRequest(TypedDict, total=False):
    number: int
    body: str | None  # as written: it may hold the service-PR marker
    user: _Author
    head: _Branch
    base: _Branch
    html_url: str
    state: str
    merged: bool | None


class _Issue(TypedDict, total=False):
    number: int
    pull_request: Any  # present on a pull request's conversation


class _User(TypedDict, total=False):
    login: str
    type: str


class _Comment(TypedDict, total=False):
    id: int
    body: str | None  # as written: the command
    user: _User
    performed_via_github_app: Any


class Summary(TypedDict, total=False):
    """What lemi keeps of a delivery: every field the handlers read, at intake (``accepts``,
    ``job_key``, the routers' ``action``) and when they run (``process``, ``report``).

    Intake decodes a delivery into this shape and stores it (a few hundred bytes of a 24 KB
    pull_request document), so a field missing here is missing for every handler: a handler
    that reads another field adds it here first. What must not change between delivery and
    work is kept as GitHub sent it: a comment's body (the command as written), a push's
    ``after`` (the pushed SHA), a pull request's head SHA and body. A delivery of another
    shape (a field of an unexpected type) is stored whole, as received."""

    action: str
    number: int
    ref: str
    after: str  # a push: the SHA pushed
    deleted: bool
    repository: _Repository
    installation: _Installation
    sender: _Author
    pusher: _Pusher
    pull_request: _PullRequest
    issue: _Issue
    comment: _Comment


# events a router takes that intake narrows further, without an API call
WANTED = {"issue_comment": commands.wanted}


def accepts(event: str, data: Any) -> bool:
    if not isinstance(data, dict) or "repository" not in data:
        return False
    if not router.fetch(sansio.Event(data, event=event, delivery_id="-")):
        return False
    return WANTED.get(event, lambda _: True)(data)


def _opened_by_lemi(repository: str, pull: dict[str, Any], ctx: Runtime | None) -> bool:
    """A pull request of the infra repository that lemi opened, by its login. Intake never asks
    GitHub: the login is known once a job has read it (the first that looks for lemi's own
    comments does); until then no marker is honoured, which costs ordering, never safety."""
    if ctx is None or repository.casefold() != ctx.config.infra.repository.casefold():
        return False
    login = ctx.auth.known_bot_login
    return login is not None and str((pull.get("user") or {}).get("login", "")).casefold() == login.casefold()


def job_key(event: str, data: dict[str, Any], ctx: Runtime | None = None) -> str:
    """Concurrency key at intake: one pull request, or one branch, at a time, in order. The
    service-PR marker puts an infra PR's events in line with its service PR's, and is
    honoured only on infra PRs lemi opened (anybody can write the marker into a PR body)."""
    repository = data["repository"]["full_name"]
    pull = data.get("pull_request") or {}
    link = parse_service_pr_marker(pull.get("body")) if _opened_by_lemi(repository, pull, ctx) else None
    if link is not None:  # an infra PR lemi opened: in line with its service PR's events
        return f"{link[0]}#{link[1]}"
    number = (pull or data.get("issue") or {}).get("number")
    if number is not None:
        return f"{repository}#{number}"
    return f"{repository}@{data.get('ref', '')}"


async def process(job: Job, ctx: Runtime) -> None:
    """Run a leased job: a delivery through the routers, or a job the handlers queued themselves."""
    message = job.message
    if isinstance(message, DeployJob):
        await deploy.run_job(job, message, ctx)
    elif isinstance(message, CommandJob):
        await commands.run_job(job, message, ctx)
    elif isinstance(message, WebhookJob):
        event = sansio.Event(message.data(), event=message.event, delivery_id=message.delivery)
        errors: list[Exception] = []
        # a delivery answers a person (a pull request's checks and infra PR, a slash command): its
        # GitHub writes go before a push's deploy results and progress (bot/github/writer.py)
        with writer.interactive():
            for callback in sorted(router.fetch(event), key=lambda c: c.__qualname__):
                try:
                    await callback(event, ctx)
                except Exception as exc:  # noqa: BLE001 - run every callback, then fail the job
                    errors.append(exc)
        if errors:
            raise errors[0]
    else:  # the worker fails an unreadable job before it gets here
        raise TypeError(f"lemi has no handler for a {job.kind} job")


async def report(job: Job, ctx: Runtime, reason: str) -> None:
    """Tell the people on the pull request that lemi gave up on this job."""
    message = job.message
    if isinstance(message, DeployJob):
        await deploy.report(job, message, ctx, reason)
        return
    if isinstance(message, CommandJob):
        await commands.report(job, message, ctx, reason)
        return
    if not isinstance(message, WebhookJob):
        log.error("job %s (%s) failed and has no pull request to report to: %s", job.id, job.kind, reason)
        return
    data = message.data()
    number = (data.get("pull_request") or data.get("issue") or {}).get("number")
    if number is None or "repository" not in data:
        log.error("job %s failed and has no pull request to report to: %s", job.id, reason)
        return
    repository = data["repository"]["full_name"]
    gh = await ctx.github(data)
    await comments.upsert_comment(
        gh,
        repository,
        int(number),
        f"failed-{message.delivery}",
        render("comments/job_failed.md.j2", event=message.event, action=data.get("action"),
               delivery=message.delivery, attempts=job.attempts, reason=reason),
    )  # fmt: skip
