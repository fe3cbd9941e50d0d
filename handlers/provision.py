"""pull_request events: provision new services, mirror the infra PR's fate."""

from __future__ import annotations

from typing import Any

from gidgethub import sansio
from gidgethub.routing import Router

from bot.core import logs
from bot.flows.merge import on_infra_pr_closed, on_service_pr_closed
from bot.flows.provision import PullRequest, parse_service_pr_marker, provision_pull_request
from bot.flows.runtime import Runtime

router = Router()


def _repository(event: sansio.Event) -> str:
    return str(event.data["repository"]["full_name"])


def _is_infra(event: sansio.Event, ctx: Runtime) -> bool:
    return _repository(event).lower() == ctx.config.infra.repository.lower()


@router.register("pull_request", action="opened")
@router.register("pull_request", action="reopened")
@router.register("pull_request", action="synchronize")
async def service_pr_changed(event: sansio.Event, ctx: Runtime) -> None:
    if _is_infra(event, ctx):
        return
    repository = _repository(event)
    pr = PullRequest.from_api(repository, event.data["pull_request"])
    gh = await ctx.github(event.data)
    infra_gh = await ctx.github_for_repo(ctx.config.infra.repository)
    with logs.bind(repository=repository):
        await provision_pull_request(gh, infra_gh, ctx.config, pr, owners=ctx.owners)


@router.register("pull_request", action="closed")
async def pr_closed(event: sansio.Event, ctx: Runtime) -> None:
    repository = _repository(event)
    data: dict[str, Any] = event.data["pull_request"]
    pr = PullRequest.from_api(repository, data)
    if _is_infra(event, ctx):
        link = parse_service_pr_marker(pr.body)
        user = data.get("user") or {}
        if link is None or pr.from_fork or user.get("login") != await ctx.auth.bot_login():
            return  # not a pull request lemi opened
        infra_gh = await ctx.github(event.data)
        gh = await ctx.github_for_repo(link[0])
        with logs.bind(repository=link[0]):
            await on_infra_pr_closed(infra_gh, gh, ctx.config, pr, owners=ctx.owners)
        return
    if pr.merged:
        return
    gh = await ctx.github(event.data)
    infra_gh = await ctx.github_for_repo(ctx.config.infra.repository)
    with logs.bind(repository=repository):
        await on_service_pr_closed(gh, infra_gh, ctx.config, pr)
