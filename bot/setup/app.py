"""The setup page as its own small Starlette app (:func:`create_setup_app`), which ``lemi serve``
mounts while the process has none of the App's credentials.

Its lifespan makes this start's one-time setup token: written to ``.lemi-setup-token`` beside
.env (mode 0600, replaced at each start) and to the console that started the server
(``sys.stderr``, not the JSON log, never in a URL, so no log line or access-log line carries it).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TextIO

from starlette.applications import Starlette
from starlette.routing import Route

from bot.core.peer import ACCESS
from bot.core.settings import Settings
from bot.setup.access import new_setup_token
from bot.setup.envfile import ENV_FILE
from bot.setup.flow import SetupFlow, announce_token, write_token_file
from bot.setup.pages import Pages

log = logging.getLogger("lemi.setup")


def create_setup_app(
    settings: Settings, *, env_path: str | Path = ENV_FILE, console: TextIO | None = None
) -> Starlette:
    """The setup page of a server without credentials; ``app.state.setup`` is its :class:`SetupFlow`.

    Starting it (its lifespan, which a server mounting it enters from its own) makes a new setup
    token and gives it to ``console`` (``sys.stderr``) and .lemi-setup-token, never to the log."""
    flow = SetupFlow(Path(env_path).absolute(), Path(settings.config_path).absolute())

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        flow.token = new_setup_token()
        for name in ("uvicorn.access", ACCESS):  # uvicorn's access log, and lemi serve's (bot/server/peer.py)
            access = logging.getLogger(name)
            if not any(isinstance(f, RedactCallback) for f in access.filters):
                access.addFilter(RedactCallback())
        problem = write_token_file(flow)
        url = f"http://localhost:{settings.port}/"
        log.warning(
            "no GitHub App credentials: open %s on this machine to register the App, with the setup token "
            "shown on the console where lemi serve started%s",
            url,
            f" and in {flow.token_path}" if problem is None else "",
        )
        announce_token(flow, url, problem, console if console is not None else sys.stderr)
        yield

    app = Starlette(routes=routes(flow), lifespan=lifespan)
    app.state.setup = flow
    return app


def routes(flow: SetupFlow) -> list[Route]:
    pages = Pages(flow)
    return [
        Route("/", pages.form, methods=["GET"], name="form"),
        Route("/setup/start", pages.start, methods=["POST"], name="start"),
        Route("/setup/callback", pages.callback, methods=["GET"], name="callback"),
        Route("/setup/confirm", pages.confirm_page, methods=["GET"], name="confirm-page"),
        Route("/setup/confirm", pages.confirm, methods=["POST"], name="confirm"),
        Route("/setup/done", pages.done, methods=["GET"], name="done"),
    ]


class RedactCallback(logging.Filter):
    """uvicorn's access log line of the callback without the one-time code and state."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if (
            isinstance(args, tuple)
            and len(args) >= 3
            and isinstance(args[2], str)
            and args[2].startswith("/setup/callback?")
        ):
            record.args = (*args[:2], "/setup/callback?…", *args[3:])
        return True
