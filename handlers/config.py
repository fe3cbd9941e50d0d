"""push events to the infra repository's default branch: lemi.yml is read again at once when the
App reads it from there (``LEMI_CONFIG=github://OWNER/INFRA/lemi.yml``); otherwise nothing."""

from __future__ import annotations

from gidgethub import sansio
from gidgethub.routing import Router

from bot.flows.runtime import Runtime

router = Router()


@router.register("push")
async def push(event: sansio.Event, ctx: Runtime) -> None:
    data = event.data
    repository = data.get("repository") or {}
    await ctx.config_pushed(str(repository.get("full_name", "")), data.get("ref", ""), repository.get("default_branch"))
