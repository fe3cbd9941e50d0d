"""``lemi run``: a task of ``spec.tasks`` run by hand in the service's running revision."""

from __future__ import annotations

import time
from typing import Any

import click

from bot.aws import tasks as task_runs
from bot.aws.clients import AwsClients
from bot.aws.ecs import Ecs, task_id
from bot.aws.logs import in_datadog, task_lines
from bot.cli import render, workspace
from bot.cli.base import (
    State,
    check_cluster,
    cli,
    emit_json,
    load_service,
    pass_state,
    pick_environment,
    report_invalid,
    repository,
    run_aws,
    service_name,
)
from bot.cli.options import cluster_option, env_option, output_option, repo_option, service_option
from bot.core.problems import Invalid
from bot.core.tasks import TASK_NAME_RE, unknown_task


def _task_name(ctx: click.Context, param: click.Parameter, value: str) -> str:
    if not TASK_NAME_RE.fullmatch(value):
        raise click.BadParameter("a task name uses lowercase letters, digits, single - or _, starting with a letter")
    return value


@cli.command("run")
@click.argument("task", callback=_task_name)
@service_option
@env_option
@cluster_option
@click.option(
    "--timeout", type=click.FloatRange(min=1), default=None,
    help="Seconds the task may run before lemi stops it (default: the environment's task_timeout_seconds).",
)  # fmt: skip
# polling interval; hidden: tests shorten it, people never need to
@click.option("--poll", type=click.FloatRange(min=0.01), default=task_runs.DEFAULT_POLL, hidden=True)
@repo_option
@output_option
@pass_state
def run(
    state: State, task: str, name: str | None, env: str | None, cluster: str | None, timeout: float | None, poll: float,
    repo: str | None, output: str,
) -> None:  # fmt: skip
    """Run TASK of the service's spec.tasks in its running revision and wait for it.

    The command comes from deploy/<service>/service.yaml of this checkout; the
    task runs as an ECS task of the revision the service runs now, in its
    network. Exits with the task's exit code (1 when it ended without one:
    it never started, was stopped, or ran past its bound).
    """
    config = state.config()
    env = pick_environment(config, env)
    check_cluster(config, env, cluster)
    name = service_name(name)
    root = workspace.repo_root()
    try:
        files = load_service(root, name, repository(root, repo), config)
    except Invalid as exc:
        report_invalid(exc, output)
    tasks = files.service.spec.tasks
    unknown = unknown_task(task, tasks, f"deploy/{name}/service.yaml")
    if unknown is not None:
        raise click.UsageError(unknown)
    bound = timeout if timeout is not None else float(config.environment(env).task_timeout_seconds)
    on_progress = None if output == "json" else render.TaskProgress()

    async def work(aws: AwsClients) -> dict[str, Any]:
        ecs = await Ecs.open(aws, env)
        service = await ecs.describe_service(name)
        revision = service["taskDefinition"]
        started = await task_runs.start(ecs, service, revision, name, task, tasks[task])
        if on_progress is not None:
            on_progress(f"started task {started.id} ({task}) in {revision.rsplit('/', 1)[-1]}")
        began = time.monotonic()
        end = await task_runs.wait(ecs, started.arn, name, task_runs.TaskWait(bound, poll, on_progress))
        duration = round(time.monotonic() - began, 3)
        return {
            "ok": end.succeeded, "task": task, "service": name, "environment": env, "task_arn": started.arn,
            "revision": revision, "exit_code": end.exit_code, "reason": end.reason, "duration": duration,
            "lines": await task_lines(ecs, name, started.id), "logs_in_datadog": in_datadog(aws, env),
        }  # fmt: skip

    result = run_aws(config, work)
    if output == "json":
        emit_json(result)
    else:
        render.task_result(result, task_id(result["task_arn"]))
    code = 0 if result["ok"] else (result["exit_code"] or 1)
    if code:
        raise click.exceptions.Exit(code)
