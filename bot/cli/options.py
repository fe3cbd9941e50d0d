"""Options shared by lemi's commands, defined once."""

from __future__ import annotations

import click

from bot.aws.rollout import DEFAULT_POLL, DEFAULT_TIMEOUT
from bot.core.names import IMAGE_TAG_RE

TASK_DEFINITION_FILE = "task-definition.json"  # what `lemi compile` writes and `lemi deploy` reads by default

output_option = click.option(
    "--output",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="Output format; json is for machines.",
)

repo_option = click.option(
    "--repo",
    metavar="OWNER/NAME",
    help="The repository's name (default: read from the git remote 'origin').",
)


env_option = click.option("-e", "--env", "env", help="Environment from lemi.yml (default: the first unprotected one).")
cluster_option = click.option(
    "-c", "--cluster", metavar="NAME",
    help="The environment's ECS cluster, checked against lemi.yml (lemi.yml names the cluster; this only confirms it).",
)  # fmt: skip
service_option = click.option("-s", "--service", "name", help="Service (default: the repository's only service).")
timeout_option = click.option(
    "--timeout", type=click.FloatRange(min=1), default=DEFAULT_TIMEOUT, show_default=True,
    help="Seconds to wait for the rollout.",
)  # fmt: skip
wait_option = click.option(
    "--wait/--no-wait", default=True, show_default=True, help="Wait until the rollout completes or fails."
)
# polling interval; hidden: tests shorten it, people never need to
poll_option = click.option("--poll", type=click.FloatRange(min=0.01), default=DEFAULT_POLL, hidden=True)


def image_tag(ctx: click.Context, param: click.Parameter, value: str) -> str:
    """Callback: an image tag as Docker and ECR accept it."""
    if not IMAGE_TAG_RE.fullmatch(value):
        raise click.BadParameter("an image tag uses letters, digits, _ . - (at most 128, not starting with . or -)")
    return value


def optional_image_tag(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    return None if value is None else image_tag(ctx, param, value)
