"""The App's ASGI application (``bot.app:app``): routes and lifespan.

Until the webhook flow lands this serves health only; configuration is read
in the lifespan, never at import.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from .config import config_path, load_config
from .problems import Invalid

log = logging.getLogger("lemi")


async def healthz(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok", "config": request.app.state.config_status})


def create_app() -> Starlette:
    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        path = config_path()
        if path.exists():
            try:
                app.state.config = load_config()
                app.state.config_status = "loaded"
            except Invalid as exc:
                log.error("lemi.yml is invalid:\n%s", exc)
                app.state.config = None
                app.state.config_status = "invalid"
        else:
            log.warning("no lemi.yml at %s; serving health only", path)
            app.state.config = None
            app.state.config_status = "missing"
        yield

    return Starlette(routes=[Route("/healthz", healthz)], lifespan=lifespan)


app = create_app()
