"""Running slash commands: who may, where, and what each one does.

The parser (:mod:`bot.core.command_parser`) decides what was asked; this module checks
the commenter's permission with GitHub at the time of the command, resolves
the service and environment, runs the command through the same core the CLI
uses, and renders one reply from ``templates/comments/command.md.j2``.

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
from dataclasses import asdict, dataclass
from typing import Any

from gidgethub import BadRequest

from bot.aws import operate
from bot.aws.clients import AwsClients
from bot.aws.deploy import DEFAULT_POLL, DEFAULT_TIMEOUT, DeployResult, roll_out
from bot.aws.errors import OperationError
from bot.aws.verify import verify_provisioned
from bot.core.command_parser import Command
from bot.core.compile import compile_for
from bot.core.config import Config
from bot.core.markdown import code
from bot.core.problems import Invalid
from bot.core.spec import ServiceFiles, parse_service_files
from bot.core.templating import render
from bot.github import comments
from bot.github.client import GitHub
from bot.github.contents import branch_sha, list_services, read_service_files, repo_vars
from bot.github.owners import Owners
from bot.store.locks import Lock, Locks

RANKS = {"none": 0, "read": 1, "triage": 2, "write": 3, "maintain": 4, "admin": 5}
REACTIONS = {"start": "eyes", "success": "rocket", "failure": "confused"}


@dataclass(frozen=True)
class Invocation:
    repository: str
    number: int  # the pull request
    comment_id: int
    user: str
    head_sha: str
    command: Command
    installation: int | None = None
    delivery: str = ""

    def as_payload(self) -> dict[str, Any]:
        data = asdict(self)
        data["command"] = asdict(self.command)
        return data

    @classmethod
    def from_payload(cls, data: dict[str, Any]) -> Invocation:
        values = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        values["command"] = Command(**data["command"])
        return cls(**values)

    @property
    def text(self) -> str:
        c = self.command
        parts = ["/lemi", c.name] + ([c.argument] if c.argument else [])
        parts += ["-e", c.env] if c.env else []
        parts += ["-s", c.service] if c.service else []
        return " ".join(parts)


class Refused(Exception):
    """The command will not run; the message says why (shown to the user)."""


async def role_of(gh: GitHub, repository: str, user: str) -> str:
    try:
        data = await gh.getitem(
            "/repos/{owner}/{repo}/collaborators/{username}/permission", repo_vars(repository, username=user)
        )
    except BadRequest as exc:
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


async def reply(gh: GitHub, inv: Invocation, **values: Any) -> None:
    """The one answer to a command. Its hidden marker names the delivery and the outcome,
    so a retried job finds it and does not run (or answer) twice."""
    outcome = "ok" if values.get("ok", True) else "failed"
    body = render("comments/command.md.j2", inv=inv, **values)
    marked = f"{body[:64000]}\n{comments.marker(_reply_kind(inv))}<!-- lemi:outcome {outcome} -->"
    await comments.comment(gh, inv.repository, inv.number, marked)


async def earlier_reply(gh: GitHub, inv: Invocation) -> bool | None:
    """None when this command was not answered yet, else whether it succeeded."""
    found = await comments.find_comment(gh, inv.repository, inv.number, _reply_kind(inv))
    if found is None:
        return None
    return "<!-- lemi:outcome ok -->" in (found.get("body") or "")


@dataclass(frozen=True)
class Target:
    service: str
    environment: str
    ref: str = ""  # the commit whose service files the command reads
    source: str = "this pull request"  # where that commit comes from, for the reply
    named_after: bool = True  # the files follow the naming rule (not when the infra file gave it here)

    def as_payload(self) -> dict[str, str]:
        return {"service": self.service, "environment": self.environment, "ref": self.ref, "source": self.source,
                "named_after": self.named_after}  # fmt: skip

    @classmethod
    def from_payload(cls, data: dict[str, Any], head_sha: str) -> Target:
        # jobs queued before `ref` existed read the pull request's head, as they did then
        return cls(
            data["service"],
            data["environment"],
            data.get("ref") or head_sha,
            data.get("source") or "this pull request",
            bool(data.get("named_after", True)),
        )


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


async def authorize(config: Config, inv: Invocation, target: Target, locks: Locks, role: str) -> None:
    """:class:`Refused` saying what is missing: the environment named, the role, the lock."""
    protected = config.environment(target.environment).protected
    if protected and inv.command.env is None:
        raise Refused(f"`{target.environment}` is protected: spell it out with `-e {target.environment}`")
    needed = "maintain" if protected else "write"
    where = f"the protected environment `{target.environment}`" if protected else f"`{target.environment}`"
    require(role, needed, inv, f"operating {where}")
    lock = await locks.get(inv.repository, target.environment)
    if lock is not None and lock.holder != inv.user and inv.command.name not in ("help", "status", "unlock"):
        raise Refused(
            f"`{target.environment}` is locked by @{lock.holder}{_reason(lock)}; ask them to `/lemi unlock -e {target.environment}`"
        )


def _reason(lock: Lock) -> str:
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


async def run_short(
    gh: GitHub, aws: AwsClients, config: Config, locks: Locks, inv: Invocation, target: Target, role: str
) -> dict[str, Any]:
    """Commands answered at once; returns the values of the reply."""
    name, env, service = inv.command.name, target.environment, target.service
    values: dict[str, Any] = {"target": target, "ok": True}
    if name == "status":
        values["status"] = await operate.status(aws, env, service)
        values["lock"] = await locks.get(inv.repository, env)
    elif name == "tasks":
        values["tasks"] = await operate.list_tasks(aws, env, service)
    elif name == "stop-task":
        assert inv.command.argument is not None
        values["task"] = await operate.stop_task(
            aws, env, service, inv.command.argument, reason=f"stopped by @{inv.user} via lemi"
        )
    elif name == "verify":
        values["files_at"] = target
        try:
            files = await load_files(gh, config, inv, target)
        except Invalid as exc:
            return {**values, "ok": False, "problems": exc.problems}
        findings = await verify_provisioned(aws, env, files)
        values.update(ok=not findings, findings=findings)
    elif name == "diff":
        values["files_at"] = target
        try:
            files = await load_files(gh, config, inv, target)
        except Invalid as exc:
            return {**values, "ok": False, "problems": exc.problems}
        running = await operate.status(aws, env, service)
        compiled = compile_for(config, files, env, running.image_tag)
        values["diff"] = await operate.diff(aws, env, service, compiled.task_definition)
    elif name == "lock":
        lock = await locks.acquire(inv.repository, env, inv.user, f"locked from #{inv.number}")
        if lock.holder != inv.user:
            raise Refused(f"`{env}` is already locked by @{lock.holder}{_reason(lock)}")
        values["lock"] = lock
    elif name == "unlock":
        lock = await locks.get(inv.repository, env)
        if lock is None:
            values["released"] = []
            values["lock"] = None
        elif lock.holder != inv.user and RANKS.get(role, 0) < RANKS["maintain"]:
            raise Refused(f"`{env}` is locked by @{lock.holder}; only they, or a maintainer, can unlock it")
        else:
            values["released"] = await locks.release(inv.repository, env)
            values["lock"] = lock
    return values


async def run_long(
    aws: AwsClients, inv: Invocation, target: Target, *, rollback_to: str | None = None,
    poll: float = DEFAULT_POLL, timeout: float = DEFAULT_TIMEOUT,
) -> DeployResult:  # fmt: skip
    """restart and rollback: wait for the rollout, truthfully. A rollback goes to the
    revision chosen when the command was accepted, so a retried job cannot go back twice."""
    name, env, service = inv.command.name, target.environment, target.service
    if name == "restart":
        return await operate.restart(aws, env, service, poll=poll, timeout=timeout)
    if name == "rollback" and rollback_to is not None:
        return await roll_out(aws, env, service, rollback_to, poll=poll, timeout=timeout)
    raise OperationError(f"`{name}` is not a long command")
