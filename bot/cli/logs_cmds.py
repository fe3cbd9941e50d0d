"""`lemi logs`: a service's application logs, where lemi.yml sends them to CloudWatch Logs."""

from __future__ import annotations

import asyncio
import json
import re
from datetime import UTC, datetime

import click

from bot.aws import logs
from bot.aws.clients import AwsClients
from bot.cli.base import State, check_cluster, cli, emit_json, pass_state, pick_environment, run_aws, service_name
from bot.cli.options import cluster_option, env_option, output_option, service_option
from bot.core.conventions import log_group

_DURATION = re.compile(r"([1-9][0-9]{0,5})([smhd])")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
LINES = 1000  # the most lines printed without --follow (the newest of the window)


def duration(ctx: click.Context, param: click.Parameter, value: str) -> float:
    """Callback: 30s, 10m, 2h, 1d as seconds."""
    found = _DURATION.fullmatch(value.strip())
    if not found:
        raise click.BadParameter(
            f"{value!r} is not a duration: write a whole number and a unit, s, m, h or d (e.g. 30s, 10m, 2h, 1d)"
        )
    return float(int(found.group(1)) * _UNITS[found.group(2)])


def _time(timestamp: int) -> str:
    return datetime.fromtimestamp(timestamp / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _fields(line: logs.LogLine) -> dict[str, object]:
    return {**line.as_dict(), "time": _time(line.timestamp)}


def _emit(line: logs.LogLine, output: str) -> None:
    if output == "json":  # with --follow: one JSON object a line, as each comes
        click.echo(json.dumps(_fields(line), sort_keys=True))
    else:
        click.echo(f"{_time(line.timestamp)} {line.task_id} {line.message}")


@cli.command("logs")
@service_option
@env_option
@cluster_option
@click.option("--since", default="10m", show_default=True, callback=duration,
              help="How far back to start: 30s, 10m, 2h, 1d.")  # fmt: skip
@click.option("--follow", "-f", is_flag=True, help="Keep printing new lines until Ctrl-C.")
@click.option("--task-id", help="Only the lines of this task (its id, from `lemi service list-tasks`).")
# seconds between reads with --follow; hidden: tests shorten it
@click.option("--poll", type=click.FloatRange(min=0.01), default=logs.FOLLOW_POLL, hidden=True)
@output_option
@pass_state
def logs_(
    state: State, name: str | None, env: str | None, cluster: str | None, since: float, follow: bool, task_id: str | None, poll: float,
    output: str,
) -> None:  # fmt: skip
    """Print the service's recent log lines (and new ones with --follow).

    Where lemi.yml's `logs` for the environment is `cloudwatch`: the lines of the
    service container from its log group /ecs/<service>-<env> (streams
    <service>/<service>/<task-id>), each as `time task-id message`, oldest first,
    at most the newest 1000 without --follow (with --output json: one document;
    with --follow, one JSON object a line). Where it is `datadog` (the default),
    the lines are in Datadog: lemi says which tags to search and exits 0.
    """
    config = state.config()
    env = pick_environment(config, env)
    check_cluster(config, env, cluster)
    name = service_name(name)
    if task_id is not None and not re.fullmatch(r"[A-Za-z0-9]{1,64}", task_id.rsplit("/", 1)[-1]):
        raise click.BadParameter("a task id is letters and digits (or a task ARN)", param_hint="--task-id")
    task = task_id.rsplit("/", 1)[-1] if task_id else None
    if config.environment(env).logs == "datadog":
        query = f"service:{name} env:{env}"
        if output == "json":
            emit_json({"service": name, "environment": env, "destination": "datadog", "datadog_query": query})
        else:
            click.echo(
                f"the logs of {name} in {env} are in Datadog (lemi.yml: logs: datadog), not in CloudWatch Logs: "
                f"search {query} in Datadog's Log Explorer ({config.datadog.site})"
            )
        return
    if not follow:
        lines = run_aws(config, lambda aws: logs.recent(aws, env, name, task_id=task, limit=LINES, since=since))
        if output == "json":
            emit_json({"service": name, "environment": env, "destination": "cloudwatch",
                       "log_group": log_group(name, env), "lines": [_fields(line) for line in lines]})  # fmt: skip
            return
        for line in lines:
            _emit(line, output)
        if not lines:
            click.echo(f"no lines in {log_group(name, env)} in the last {_shown(since)}", err=True)
        return

    async def tail(aws: AwsClients) -> None:
        async for line in logs.follow(aws, env, name, since=since, task_id=task, poll=poll):
            _emit(line, output)

    try:
        run_aws(config, tail)
    except (KeyboardInterrupt, asyncio.CancelledError):  # Ctrl-C: the way to stop following
        click.echo("", err=True)


def _shown(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"
