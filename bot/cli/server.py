"""``lemi serve``: the App's web server."""

from __future__ import annotations

import os

import click

from .base import cli


@cli.command()
@click.option("--host", default=lambda: os.environ.get("HOST", "127.0.0.1"), show_default="$HOST or 127.0.0.1")
@click.option("--port", type=int, default=lambda: int(os.environ.get("PORT", "8080")), show_default="$PORT or 8080")
def serve(host: str, port: int) -> None:
    """Run the GitHub App's server (webhooks, health, metrics)."""
    import uvicorn

    uvicorn.run("bot.app:app", host=host, port=port, log_level="info", proxy_headers=True)
