"""issue_comment events: ``/lemi`` slash commands on pull requests."""

from __future__ import annotations

from typing import Any

from gidgethub import sansio
from gidgethub.routing import Router

from bot import logs
from bot.aws.errors import OperationError
from bot.commands import Command, Ignore, Reply, parse
from bot.context import Context
from bot.deploys import DeployRequest, run_deploy
from bot.github.files import repo_vars
from bot.provision import PullRequest, provision_pull_request
from bot.queue import Job, NewJob
from bot.slash import RANKS, Invocation, Refused, Target, authorize, react, reply, resolve, role_of, run_long, run_short

from .deploy import deploy_key

router = Router()


def _is_bot(comment: dict[str, Any]) -> bool:
    user = comment.get("user") or {}
    return user.get("type") == "Bot" or bool(comment.get("performed_via_github_app"))


@router.register("issue_comment", action="created")
async def comment_created(event: sansio.Event, ctx: Context) -> None:
    data = event.data
    issue, comment = data.get("issue") or {}, data.get("comment") or {}
    if "pull_request" not in issue or _is_bot(comment):
        return
    parsed = parse(comment.get("body"))
    if isinstance(parsed, Ignore):
        return
    repository = data["repository"]["full_name"]
    gh = await ctx.github(data)
    pull = await gh.getitem("/repos/{owner}/{repo}/pulls/{pull_number}", repo_vars(repository, pull_number=issue["number"]))
    command = parsed if isinstance(parsed, Command) else Command("help")
    inv = Invocation(
        repository, int(issue["number"]), int(comment["id"]), comment["user"]["login"], pull["head"]["sha"], command,
        (data.get("installation") or {}).get("id"), event.delivery_id,
    )  # fmt: skip
    with logs.bind(repository=repository):
        if isinstance(parsed, Reply):
            await reply(gh, inv, message=parsed.text, ok=not parsed.error)
            if parsed.error:
                await react(gh, inv, "failure")
            return
        await react(gh, inv, "start")
        try:
            await _run(gh, ctx, inv, pull)
        except Refused as exc:
            await reply(gh, inv, refused=str(exc), ok=False)
            await react(gh, inv, "failure")
        except OperationError as exc:
            await reply(gh, inv, error=str(exc), ok=False)
            await react(gh, inv, "failure")


async def _run(gh: Any, ctx: Context, inv: Invocation, pull: dict[str, Any]) -> None:
    if inv.command.name == "provision":
        role = await role_of(gh, inv.repository, inv.user)
        if RANKS.get(role, 0) < RANKS["write"]:
            raise Refused(f"@{inv.user} has `{role}` permission on {inv.repository}; provisioning needs `write` or higher")
        infra_gh = await ctx.github_for_repo(ctx.config.infra.repository)
        outcome = await provision_pull_request(gh, infra_gh, ctx.config, PullRequest.from_api(inv.repository, pull))
        await reply(gh, inv, provision=outcome, ok=not outcome.problems)
        await react(gh, inv, "failure" if outcome.problems else "success")
        return
    target = await resolve(gh, ctx.config, inv)
    role = await authorize(gh, ctx.config, inv, target, ctx.locks)
    with logs.bind(service=target.service, environment=target.environment):
        if inv.command.spec.long:
            await ctx.queue.put(
                NewJob(
                    dedupe_id=f"{inv.delivery}:command",
                    key=deploy_key(inv.repository, target.service, target.environment),
                    kind="command",
                    payload={**inv.as_payload(), "service": target.service, "environment": target.environment},
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


async def run_job(job: Job, ctx: Context) -> None:
    """A long command (restart, rollback, deploy <tag>) in its service's concurrency key."""
    inv = Invocation.from_payload(job.payload)
    target = Target(job.payload["service"], job.payload["environment"])
    gh = await ctx.github_for_installation(inv.installation, inv.repository)
    poll, timeout = ctx.settings.deploy_poll_seconds, ctx.settings.deploy_timeout_seconds
    with logs.bind(repository=inv.repository, service=target.service, environment=target.environment):
        try:
            if inv.command.name == "deploy":
                assert inv.command.argument is not None
                req = DeployRequest(
                    inv.repository, target.service, target.environment, inv.head_sha, inv.command.argument,
                    inv.user, "command", inv.delivery, inv.installation,
                )  # fmt: skip
                report = await run_deploy(
                    gh, ctx.aws(), ctx.config, req, superseded=_never, poll=poll, timeout=timeout
                )
                ok = report.outcome == "success"
                await reply(gh, inv, target=target, deploy_report=report, ok=ok)
            else:
                result = await run_long(gh, ctx.aws(), ctx.config, inv, target, poll=poll, timeout=timeout)
                ok = result.ok
                await reply(gh, inv, target=target, result=result, ok=ok)
        except OperationError as exc:
            await reply(gh, inv, error=str(exc), ok=False)
            ok = False
        await react(gh, inv, "success" if ok else "failure")


async def _never() -> bool:
    return False


async def report(job: Job, ctx: Context, reason: str) -> None:
    inv = Invocation.from_payload(job.payload)
    gh = await ctx.github_for_installation(inv.installation, inv.repository)
    await reply(gh, inv, error=f"lemi gave up after {job.attempts} attempts: {reason}", ok=False)
    await react(gh, inv, "failure")
