"""push events: deploy every service of an environment branch at the pushed SHA.

The push itself only fans out: one ``deploy`` job per service, keyed by
repository + service + environment, so services deploy independently and a
newer push waits behind (and supersedes) an older deploy of the same service.
"""

from __future__ import annotations

import asyncio

from gidgethub import sansio
from gidgethub.routing import Router

from bot.core import logs
from bot.flows.deploy import (
    DeployRequest,
    branch_moved,
    deployment_status,
    find_or_create_deployment,
    report_gave_up,
    run_deploy,
)
from bot.flows.runtime import Runtime
from bot.flows.watching import DeployWatches, RolloutWatches
from bot.github.contents import list_services
from bot.store.jobs import DeployJob, service_key
from bot.store.queue import Job, NewJob

router = Router()
ZERO_SHA = "0" * 40


@router.register("push")
async def push(event: sansio.Event, ctx: Runtime) -> None:
    data = event.data
    ref = data.get("ref", "")
    sha = data.get("after", ZERO_SHA)
    if data.get("deleted") or sha == ZERO_SHA or not ref.startswith("refs/heads/"):
        return
    environment = ctx.config.environment_for_branch(ref.removeprefix("refs/heads/"))
    if environment is None:
        return
    repository = data["repository"]["full_name"]
    gh = await ctx.github(data)
    installation = (data.get("installation") or {}).get("id")
    sender = (data.get("sender") or {}).get("login") or (data.get("pusher") or {}).get("name", "")
    jobs = []
    for service in await list_services(gh, repository, sha):
        req = DeployRequest(
            repository, service, environment, sha, sha, sender, "push", event.delivery_id, installation,
            ref.removeprefix("refs/heads/"),
        )  # fmt: skip
        jobs.append(
            NewJob(
                dedupe_id=f"{event.delivery_id}:{service}:{environment}",
                key=service_key(repository, service, environment),
                message=DeployJob(req),
            )
        )
    # put together: the queue commits them in one batch (each service has its own key, so their
    # order does not matter)
    await asyncio.gather(*(ctx.queue.put(job) for job in jobs))


async def run_job(job: Job, deploy: DeployJob, ctx: Runtime) -> None:
    """``deploy`` is ``job``'s message."""
    req = deploy.request
    with logs.bind(repository=req.repository, service=req.service, environment=req.environment):
        gh = await ctx.github_for_installation(req.installation, req.repository)
        lock = await ctx.locks.get(req.repository, req.environment)
        if lock is not None and lock.holder != req.requested_by:
            deployment = await find_or_create_deployment(gh, req, ctx.config)
            await deployment_status(
                gh, req, deployment["id"], "queued",
                f"held: {req.environment} is locked by @{lock.holder}; it deploys when unlocked",
            )  # fmt: skip
            await ctx.locks.hold(req.repository, req.environment, deploy)
            return

        async def superseded() -> bool:
            if await ctx.queue.newer_in_key(job, kind="deploy"):
                return True
            # a queue that cannot be searched (SQS): a newer push has moved the branch
            return not ctx.queue.searchable and await branch_moved(gh, req)

        await run_deploy(
            gh, ctx.aws(), ctx.config, req,
            owners=ctx.owners,
            superseded=superseded,
            poll=ctx.settings.deploy_poll_seconds, timeout=ctx.settings.deploy_timeout_seconds,
            released=deploy.released,
            resumed=job.attempts > 1,
            watch=DeployWatches(RolloutWatches(ctx.watches, ctx.wake_watcher)),
        )  # fmt: skip


async def report(job: Job, deploy: DeployJob, ctx: Runtime, reason: str) -> None:
    req = deploy.request
    gh = await ctx.github_for_installation(req.installation, req.repository)
    await report_gave_up(gh, ctx.config, req, reason)
