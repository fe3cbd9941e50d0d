"""``lemi serve``: the App's web server (uvicorn), serving :func:`served_app`."""

from __future__ import annotations

import os
from typing import Any

import click

from bot.cli.base import cli


def _read_env_file(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    """--env-file is eager: its variables are in the environment before --host and --port
    (and the app's settings) read it. The environment wins over the file."""
    if value:
        from bot.setup.envfile import load_env_file

        if loaded := load_env_file(value):
            click.echo(f"lemi: read {', '.join(loaded)} from {value}", err=True)


@cli.command()
@click.option(
    "--env-file",
    type=click.Path(dir_okay=False),
    is_eager=True,
    expose_value=False,
    callback=_read_env_file,
    help="Set the variables of this file (KEY=value lines) that the environment does not set. "
    "`make run` passes ./.env, where the setup page writes the App's credentials; a missing file is fine.",
)
@click.option("--host", default=lambda: os.environ.get("HOST", "127.0.0.1"), show_default="$HOST or 127.0.0.1")
@click.option("--port", type=int, default=lambda: int(os.environ.get("PORT", "8080")), show_default="$PORT or 8080")
def serve(host: str, port: int) -> None:
    """Run the GitHub App's server (webhooks, health, metrics; without credentials, the setup page)."""
    import uvicorn

    os.environ["PORT"] = str(port)  # the settings (and the setup page's address on the console) see --port too
    uvicorn.run(served_app(), host=host, port=port, log_level="info", proxy_headers=False)


def served_app(app: Any = None, *, trusted: str | list[str] | None = None) -> Any:
    """What ``lemi serve`` hands uvicorn: the App (default ``bot.server.app:app``) behind
    :func:`bot.server.peer.served`. uvicorn's own proxy-header handling is off, and the same
    middleware runs here instead, with the same trusted hosts (``FORWARDED_ALLOW_IPS``,
    default 127.0.0.1 and ::1), after the socket peer is recorded: the setup page decides
    "this machine" on the socket, never on ``X-Forwarded-For``."""
    from bot.server.peer import served

    if app is None:
        from bot.server.app import app
    return served(app, trusted)
