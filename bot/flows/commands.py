"""Slash commands: who may run one, where, and the one reply that answers it.

The parser (:mod:`bot.core.command_parser`) decides what was asked; the runners
(:mod:`bot.flows.runners`, one per command) say what each one does. This module checks
the commenter's permission with GitHub at the time of the command, resolves the service
and environment, and renders the reply from ``templates/comments/command.md.j2``
(:mod:`bot.flows.answers`).

Which service files a command reads (``deploy``, ``verify``, ``diff``): for a
protected environment, the environment branch's (reviewed, merged) files, so
configuration from an unmerged pull request never reaches it; for an
unprotected one, the pull request's files at its head. The commit is pinned when
the command is accepted and named in the reply. Commands that read no files
(status, restart, ...) find the service in the pull request. A command on a service another
repository owns is refused (:mod:`bot.core.ownership`).
"""

from __future__ import annotations

import asyncio

from bot.core.config import Config
from bot.core.errors import UserError
from bot.core.markdown import code
from bot.core.spec import ServiceFiles, parse_service_files
from bot.core.templating import render
from bot.flows.answers import Answer, CommandReply
from bot.github import comments
from bot.github.client import GitHub
from bot.github.contents import branch_sha, list_services, read_service_files, repo_vars
from bot.github.errors import GitHubError
from bot.github.owners import Owners
from bot.store.jobs import Invocation as Invocation  # a command as asked (queued with long ones)
from bot.store.jobs import Target as Target  # where it acts
from bot.store.locks import Lock, Locks

RANKS = {"none": 0, "read": 1, "triage": 2, "write": 3, "maintain": 4, "admin": 5}
REACTIONS = {"start": "eyes", "success": "rocket", "failure": "confused"}


class Refused(UserError):
    """The command will not run; the message says why (shown to the user)."""


async def role_of(gh: GitHub, repository: str, user: str) -> str:
    try:
        data = await gh.getitem(
            "/repos/{owner}/{repo}/collaborators/{username}/permission", repo_vars(repository, username=user)
        )
    except GitHubError as exc:
        if exc.status_code == 404:
            return "none"
        raise
    role = str(data.get("role_name") or data.get("permission") or "none")
    return role if role in RANKS else str(data.get("permission") or "none")


async def react(gh: GitHub, inv: Invocation, stage: str) -> None:
    await gh.post(
        "/repos/{owner}/{repo}/issues/comments/{comment_id}/reactions",
        repo_vars(inv.repository, comment_id=inv.comment_id),
        data={"content": REACTIONS[stage]},
    )


def _reply_kind(inv: Invocation) -> str:
    return f"reply {inv.delivery}"


async def reply(
    gh: GitHub, inv: Invocation, answer: Answer, *, typed: str | None = None, target: Target | None = None
) -> None:
    """The one answer to a command (headed as :meth:`CommandReply.of` says). Its hidden marker
    names the delivery and the outcome, so a retried job finds it and does not run (or answer) twice."""
    outcome = "ok" if answer.ok else "failed"
    body = render("comments/command.md.j2", reply=CommandReply.of(inv, answer, typed=typed, target=target))
    marked = f"{body[:64000]}\n{comments.marker(_reply_kind(inv))}<!-- lemi:outcome {outcome} -->"
    await comments.comment(gh, inv.repository, inv.number, marked)


async def earlier_reply(gh: GitHub, inv: Invocation) -> bool | None:
    """None when this command was not answered yet, else whether it succeeded."""
    found = await comments.find_comment(gh, inv.repository, inv.number, _reply_kind(inv))
    if found is None:
        return None
    return "<!-- lemi:outcome ok -->" in (found.get("body") or "")


def _names(items: list[str]) -> str:
    return ", ".join(code(i) for i in items) or "none"


async def resolve(gh: GitHub, config: Config, inv: Invocation, owners: Owners) -> Target:
    """The service, environment and service files a command acts on, or :class:`Refused`."""
    cmd = inv.command
    if cmd.env is not None:
        if cmd.env not in config.environments:
            raise Refused(f"there is no environment `{cmd.env}` (environments: {', '.join(config.environments)})")
        env = cmd.env
    else:
        default = config.default_environment()
        if default is None:
            raise Refused(f"every environment is protected; name one with `-e` ({', '.join(config.environments)})")
        env = default
    settings = config.environment(env)
    if settings.protected and cmd.spec.reads_files:  # reviewed configuration only: the branch's files
        ref = await branch_sha(gh, inv.repository, settings.branch)
        if ref is None:
            raise Refused(f"`{env}` deploys from the branch `{settings.branch}`, which {inv.repository} does not have")
        source, where = f"`{settings.branch}`", f"`{settings.branch}`"
    else:
        ref, source, where = inv.head_sha, "this pull request", "this pull request"
    services = await list_services(gh, inv.repository, ref)
    if cmd.service is not None:
        if cmd.service not in services:
            raise Refused(f"there is no service `{cmd.service}` in {where} (services: {_names(services)})")
        service = cmd.service
    elif len(services) == 1:
        service = services[0]
    elif not services:
        raise Refused(f"{where} has no `deploy/<service>/service.yaml`")
    else:
        raise Refused(f"this repository has several services ({_names(services)}); choose one with `-s`")
    verdict = await owners.verdict(service, inv.repository)
    if not verdict.allowed:
        raise Refused(verdict.why)
    return Target(service, env, ref, source, verdict.named_after)


def require(role: str, needed: str, inv: Invocation, what: str) -> None:
    if RANKS.get(role, 0) < RANKS[needed]:
        raise Refused(f"@{inv.user} has `{role}` permission on {inv.repository}; {what} needs `{needed}` or higher")


async def authorize(
    config: Config, inv: Invocation, target: Target, locks: Locks, role: str, *, needs: str = "write",
    open_when_locked: bool = False,
) -> None:  # fmt: skip
    """:class:`Refused` saying what is missing: the environment named, the role, the lock.

    ``needs`` is the role the command asks for; a protected environment asks for ``maintain``
    at least. Another user's lock on the environment refuses it unless ``open_when_locked``."""
    protected = config.environment(target.environment).protected
    if protected and inv.command.env is None:
        raise Refused(f"`{target.environment}` is protected: spell it out with `-e {target.environment}`")
    needed = max(needs, "maintain" if protected else "write", key=RANKS.__getitem__)
    where = f"the protected environment `{target.environment}`" if protected else f"`{target.environment}`"
    require(role, needed, inv, f"operating {where}")
    lock = await locks.get(inv.repository, target.environment)
    if lock is not None and lock.holder != inv.user and not open_when_locked:
        raise Refused(
            f"`{target.environment}` is locked by @{lock.holder}{lock_reason(lock)}; ask them to `/lemi unlock -e {target.environment}`"
        )


def lock_reason(lock: Lock) -> str:
    return f" ({lock.reason})" if lock.reason else ""


async def load_files(gh: GitHub, config: Config, inv: Invocation, target: Target) -> ServiceFiles:
    """The target's service files at the pinned commit, parsed off the event loop."""
    files = await read_service_files(gh, inv.repository, target.service, target.ref)
    return await asyncio.to_thread(
        parse_service_files,
        target.service,
        files,
        repository=inv.repository if target.named_after else None,
        known_environments=list(config.environments),
    )
