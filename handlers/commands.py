"""issue_comment events: ``/lemi`` slash commands on pull requests."""

from __future__ import annotations

import re
from typing import Any

from gidgethub import sansio
from gidgethub.routing import Router

from bot.aws.errors import OperationError
from bot.aws.operate import previous_revision
from bot.core import logs
from bot.core.command_parser import Command, Ignore, Reply, parse
from bot.flows.commands import (
    Invocation,
    Refused,
    Target,
    authorize,
    earlier_reply,
    react,
    reply,
    require,
    resolve,
    role_of,
    run_long,
    run_short,
)
from bot.flows.deploy import DeployRequest, run_deploy
from bot.flows.provision import PullRequest, get_pull, provision_pull_request
from bot.flows.runtime import Runtime
from bot.store.queue import Job, NewJob
from handlers.deploy import deploy_key

router = Router()


def _is_bot(comment: dict[str, Any]) -> bool:
    user = comment.get("user") or {}
    return user.get("type") == "Bot" or bool(comment.get("performed_via_github_app"))


def wanted(data: dict[str, Any]) -> bool:
    """Is this new comment a ``/lemi`` line, by a person, on a pull request? Pure: intake
    asks it too, so other comments are acknowledged and never stored."""
    issue, comment = data.get("issue") or {}, data.get("comment") or {}
    return "pull_request" in issue and not _is_bot(comment) and not isinstance(parse(comment.get("body")), Ignore)


@router.register("issue_comment", action="created")
async def comment_created(event: sansio.Event, ctx: Runtime) -> None:
    data = event.data
    if not wanted(data):
        return
    issue, comment = data["issue"], data["comment"]
    parsed = parse(comment.get("body"))
    repository = data["repository"]["full_name"]
    gh = await ctx.github(data)
    pull = await get_pull(gh, repository, int(issue["number"]))
    inv = Invocation(
        repository, int(issue["number"]), int(comment["id"]), comment["user"]["login"], pull.head_sha,
        parsed if isinstance(parsed, Command) else Command("help"),
        (data.get("installation") or {}).get("id"), event.delivery_id,
    )  # fmt: skip
    with logs.bind(repository=repository):
        answered = await earlier_reply(gh, inv)
        if answered is not None:  # a retried job: the command ran and was answered
            await react(gh, inv, "success" if answered else "failure")
            return
        await react(gh, inv, "start")
        heading = _heading(comment.get("body"))
        try:
            role = await role_of(gh, repository, inv.user)
            if isinstance(parsed, Reply):
                require(role, "write", inv, "using lemi here")
                await reply(gh, inv, heading=heading, message=parsed.text, ok=not parsed.error)
                await react(gh, inv, "failure" if parsed.error else "success")
                return
            await _run(gh, ctx, inv, pull, role)
        except Refused as exc:
            await reply(gh, inv, heading=heading, refused=str(exc), ok=False)
            await react(gh, inv, "failure")
        except OperationError as exc:
            await reply(gh, inv, error=str(exc), ok=False)
            await react(gh, inv, "failure")


def _heading(body: str | None) -> str:
    """The command as typed, shown back only when it is plainly safe to echo."""
    first = (body or "").strip().split("\n", 1)[0].strip()
    return first if re.fullmatch(r"/lemi[A-Za-z0-9 _.:/=+-]{0,80}", first) else "/lemi"


async def _run(gh: Any, ctx: Runtime, inv: Invocation, pull: PullRequest, role: str) -> None:
    if inv.command.name == "provision":
        require(role, "write", inv, "provisioning")
        infra_gh = await ctx.github_for_repo(ctx.config.infra.repository)
        outcome = await provision_pull_request(gh, infra_gh, ctx.config, pull, owners=ctx.owners)
        await reply(gh, inv, provision=outcome, ok=not outcome.problems)
        await react(gh, inv, "failure" if outcome.problems else "success")
        return
    target = await resolve(gh, ctx.config, inv, ctx.owners)
    await authorize(ctx.config, inv, target, ctx.locks, role)
    with logs.bind(service=target.service, environment=target.environment):
        if inv.command.spec.long:
            extra: dict[str, Any] = {}
            if inv.command.name == "rollback":  # pinned now: a retried job must not go back twice
                _, extra["rollback_to"] = await previous_revision(ctx.aws(), target.environment, target.service)
            await ctx.queue.put(
                NewJob(
                    dedupe_id=f"{inv.delivery}:command",
                    key=deploy_key(inv.repository, target.service, target.environment),
                    kind="command",
                    payload={**inv.as_payload(), **target.as_payload(), **extra},
                )
            )
            return
        values = await run_short(gh, ctx.aws(), ctx.config, ctx.locks, inv, target, role)
        for held in values.get("released", []):
            await ctx.queue.put(
                NewJob(
                    dedupe_id=f"{held.get('delivery')}:released:{held['held_id']}",
                    key=deploy_key(inv.repository, held["service"], held["environment"]),
                    kind="deploy",
                    payload={**{k: v for k, v in held.items() if k != "held_id"}, "released": True},
                )
            )
        await reply(gh, inv, **values)
        await react(gh, inv, "success" if values.get("ok", True) else "failure")


async def run_job(job: Job, ctx: Runtime) -> None:
    """A long command (restart, rollback, deploy <tag>) in its service's concurrency key."""
    inv = Invocation.from_payload(job.payload)
    target = Target.from_payload(job.payload, inv.head_sha)
    gh = await ctx.github_for_installation(inv.installation, inv.repository)
    poll, timeout = ctx.settings.deploy_poll_seconds, ctx.settings.deploy_timeout_seconds
    with logs.bind(repository=inv.repository, service=target.service, environment=target.environment):
        answered = await earlier_reply(gh, inv)
        if answered is not None:  # the rollout ran and was answered before this retry
            await react(gh, inv, "success" if answered else "failure")
            return
        try:
            if inv.command.name == "deploy":
                assert inv.command.argument is not None
                # the service files of the commit pinned when the command was accepted: the
                # environment branch's for a protected environment, the pull request's otherwise
                req = DeployRequest(
                    inv.repository, target.service, target.environment, target.ref, inv.command.argument,
                    inv.user, "command", inv.delivery, inv.installation,
                )  # fmt: skip
                report = await run_deploy(
                    gh, ctx.aws(), ctx.config, req, owners=ctx.owners, superseded=_never, poll=poll, timeout=timeout
                )
                ok = report.outcome == "success"
                await reply(gh, inv, target=target, files_at=target, deploy_report=report, ok=ok)
            else:
                result = await run_long(
                    ctx.aws(), inv, target, rollback_to=job.payload.get("rollback_to"), poll=poll, timeout=timeout
                )
                ok = result.ok
                await reply(gh, inv, target=target, result=result, ok=ok)
        except OperationError as exc:
            await reply(gh, inv, error=str(exc), ok=False)
            ok = False
        await react(gh, inv, "success" if ok else "failure")


async def _never() -> bool:
    return False


async def report(job: Job, ctx: Runtime, reason: str) -> None:
    inv = Invocation.from_payload(job.payload)
    gh = await ctx.github_for_installation(inv.installation, inv.repository)
    await reply(gh, inv, error=f"lemi gave up after {job.attempts} attempts: {reason}", ok=False)
    await react(gh, inv, "failure")
