"""issue_comment events: ``/lemi`` slash commands on pull requests.

Routing only: parse the comment, check the commenter's permission, and dispatch to the
command's runner (:data:`bot.flows.runners.RUNNERS`): answered at once, or queued as a
``command`` job in the service's concurrency key and answered when that job ends.
"""

from __future__ import annotations

import re
from typing import Any

from gidgethub import sansio
from gidgethub.routing import Router

from bot.aws.errors import OperationError
from bot.core import logs
from bot.core.command_parser import Command, Ignore, parse
from bot.flows.answers import Answer, Failed, NotDone, Watched
from bot.flows.commands import (
    Invocation,
    Refused,
    authorize,
    earlier_reply,
    react,
    reply,
    require,
    resolve,
    role_of,
)
from bot.flows.provision import get_pull
from bot.flows.runners import RUNNERS, Call, PullRequestRunner, QueuedRunner, runner_for
from bot.flows.runtime import Runtime
from bot.store.jobs import CommandJob, Target, service_key
from bot.store.queue import Job, NewJob

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
    if isinstance(parsed, Ignore):  # wanted() said it is not
        return
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
        typed = _heading(comment.get("body"))
        runner = runner_for(parsed)
        target: Target | None = None
        answer: Answer
        try:
            role = await role_of(gh, repository, inv.user)
            call = Call(gh, ctx, inv, role)
            if isinstance(runner, PullRequestRunner):
                require(role, runner.role, inv, runner.what)
                answer = await runner.run(call, pull)
            else:
                target = await resolve(gh, ctx.config, inv, ctx.owners)
                await authorize(
                    ctx.config, inv, target, ctx.locks, role, needs=runner.role,
                    open_when_locked=runner.open_when_locked,
                )  # fmt: skip
                with logs.bind(service=target.service, environment=target.environment):
                    if isinstance(runner, QueuedRunner):  # answered when its job ends (run_job)
                        job = await runner.accept(call, target)
                        key = service_key(repository, target.service, target.environment)
                        await ctx.queue.put(NewJob(f"{inv.delivery}:command", key, job))
                        return
                    answer = await runner.run(call, target)
        except Refused as exc:
            answer = NotDone(str(exc))
        except OperationError as exc:
            answer = Failed(str(exc))
        await reply(gh, inv, answer, typed=typed, target=target)
        await react(gh, inv, "success" if answer.ok else "failure")


def _heading(body: str | None) -> str:
    """The command as typed, shown back only when it is plainly safe to echo."""
    first = (body or "").strip().split("\n", 1)[0].strip()
    return first if re.fullmatch(r"/lemi[A-Za-z0-9 _.:/=+-]{0,80}", first) else "/lemi"


async def run_job(job: Job, command: CommandJob, ctx: Runtime) -> None:
    """A long command (restart, rollback, deploy <tag>) in its service's concurrency key;
    ``command`` is ``job``'s message."""
    inv, target = command.invocation, command.target
    gh = await ctx.github_for_installation(inv.installation, inv.repository)
    with logs.bind(repository=inv.repository, service=target.service, environment=target.environment):
        answered = await earlier_reply(gh, inv)
        if answered is not None:  # the rollout ran and was answered before this retry
            await react(gh, inv, "success" if answered else "failure")
            return
        runner = RUNNERS[inv.command.name]
        answer: Answer | Watched
        try:
            if not isinstance(runner, QueuedRunner):
                raise OperationError(f"`{inv.command.name}` is not a long command")
            answer = await runner.run(Call(gh, ctx, inv, resumed=job.attempts > 1), command)
        except OperationError as exc:
            answer = Failed(str(exc))
        if isinstance(answer, Watched):  # the watcher answers when the rollout ends
            return
        await reply(gh, inv, answer, target=target)
        await react(gh, inv, "success" if answer.ok else "failure")


async def report(job: Job, command: CommandJob, ctx: Runtime, reason: str) -> None:
    inv = command.invocation
    gh = await ctx.github_for_installation(inv.installation, inv.repository)
    await reply(gh, inv, Failed(f"lemi gave up after {job.attempts} attempts: {reason}"))
    await react(gh, inv, "failure")
