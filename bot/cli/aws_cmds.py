"""Commands that act on AWS: deploy, diff, and `lemi service ...` operations."""

from __future__ import annotations

import json
import shlex
import subprocess
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any, TypeVar

import click

from bot.aws import operate, predeploy, schedules
from bot.aws.clients import AwsClients
from bot.aws.ecs import Ecs
from bot.aws.errors import OperationError
from bot.aws.exec import open_session
from bot.aws.predeploy import commands
from bot.aws.rollout import DeployResult, Progress, RolloutRequest, Wait
from bot.aws.tasks import TaskWait
from bot.aws.verify import verify_provisioned, verify_task_definition
from bot.cli import render, workspace
from bot.cli.base import (
    State,
    build_checks,
    check_cluster,
    cli,
    emit_json,
    environment_of_family,
    environment_of_task,
    load_service,
    pass_state,
    pick_environment,
    report_invalid,
    repository,
    run_aws,
    service,
    service_name,
)
from bot.cli.options import (
    TASK_DEFINITION_FILE,
    cluster_option,
    env_option,
    image_tag,
    optional_image_tag,
    output_option,
    poll_option,
    repo_option,
    service_option,
    timeout_option,
    wait_option,
)
from bot.core.compile import compile_for, effective_desired_count
from bot.core.problems import Invalid
from bot.core.schedules import SyncReport, scheduled_tasks

T = TypeVar("T")


def _wait(wait: bool, timeout: float, poll: float, output: str) -> Wait | None:
    """--wait/--no-wait, --timeout and --poll; live progress on stderr unless the output is JSON."""
    if not wait:
        return None
    on_progress: Callable[[Progress], None] | None = None if output == "json" else render.ProgressPrinter()
    return Wait(timeout=timeout, poll=poll, on_progress=on_progress)


NOT_WAITING = {
    "deploy": "schedules are updated once a rollout completes: by `lemi deploy --wait`, or by the App",
    "rollback": "the schedules still run the revision rolled back from: only --wait points them at this one",
}


def _finish_deploy(result: DeployResult, output: str, synced: SyncReport | None = None, not_waiting: str = "") -> None:
    """``synced``: the schedules made to match after a completed rollout (None: not touched);
    ``not_waiting``: what becomes of them when the rollout was not waited for."""
    if output == "json":
        emit_json({**result.as_dict(), "schedules": asdict(synced) if synced is not None else None})
    else:
        render.deploy_result(result)
        render.schedules_synced(result, synced, not_waiting)
    if not result.ok:
        raise click.exceptions.Exit(1)


@cli.command()
@service_option
@env_option
@cluster_option
@click.option("-t", "--tag", callback=optional_image_tag, help="Image tag to deploy.")
@click.option(
    "--task-definition", "td_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help=f"Deploy this task definition JSON (from `lemi compile`) instead of compiling (default without -t: ./{TASK_DEFINITION_FILE}).",
)  # fmt: skip
@click.option("--keep", type=click.IntRange(min=1), help="After success, deregister all but the newest N revisions.")
@wait_option
@timeout_option
@poll_option
@repo_option
@output_option
@pass_state
def deploy(
    state: State, name: str | None, env: str | None, cluster: str | None, tag: str | None, td_file: Path | None,
    keep: int | None, wait: bool, timeout: float, poll: float, repo: str | None, output: str,
) -> None:  # fmt: skip
    """Deploy an image tag (or a compiled task definition) and wait for the rollout.

    Both are checked first and nothing is registered if a check fails. A
    --task-definition file must be this environment's (family, roles, image
    registry, secret ARNs, DD_ENV, log group) and its image tag, secrets and
    parameters must exist; the task count comes from the service's files.

    Success means the deployment this update started reached COMPLETED with
    every task running; a circuit-breaker rollback, a failed rollout or a
    timeout exits 1 with the reason and the stopped tasks' reasons.

    After a completed rollout, --wait makes the service's EventBridge Scheduler
    schedules match spec.schedules and run the deployed revision (a failure to
    do so is reported, and does not fail the deploy); without --wait, the
    schedules are updated by the next `lemi deploy --wait` or by the App.

    With neither -t nor --task-definition, lemi deploys ./task-definition.json
    (what `lemi compile` wrote), to the environment of its family unless -e
    says which.
    """
    if tag is not None and td_file is not None:
        raise click.UsageError("give one of -t/--tag and --task-definition, not both")
    if tag is None and td_file is None:
        td_file = Path(TASK_DEFINITION_FILE)
        if not td_file.is_file():
            raise click.UsageError(
                f"nothing to deploy: give -t TAG, or --task-definition FILE; there is no ./{TASK_DEFINITION_FILE} "
                "here (write it with `lemi compile -s SERVICE -e ENV -t TAG`)"
            )
    config = state.config()
    name = service_name(name)
    if td_file is not None:
        try:
            task_definition = json.loads(td_file.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise click.BadParameter(f"{td_file} is not JSON: {exc}", param_hint="--task-definition") from None
        if not isinstance(task_definition, dict) or not isinstance(task_definition.get("family"), str):
            raise click.BadParameter(f"{td_file} is not a task definition", param_hint="--task-definition")
        env = environment_of_family(config, env, name, task_definition["family"], str(td_file))
    else:
        env = pick_environment(config, env)
    check_cluster(config, env, cluster)
    root = workspace.repo_root()
    try:  # the service's files: the tag's task definition, or a file's task count
        files = load_service(root, name, repository(root, repo), config)
    except Invalid as exc:
        report_invalid(exc, output)
    if td_file is None:
        assert tag is not None
        compiled = compile_for(config, files, env, tag)
        task_definition = compiled.task_definition
    desired_count = effective_desired_count(files.service, files.environment(env))

    async def work(aws: AwsClients) -> tuple[DeployResult, SyncReport | None] | list[Any]:
        if td_file is None:
            findings = await verify_provisioned(aws, env, files, tag=tag)
        else:
            findings = await verify_task_definition(aws, env, name, task_definition)
        if findings:
            return findings
        request = RolloutRequest(name, task_definition, desired_count=desired_count)
        ecs = await Ecs.open(aws, env)
        on_task = None if output == "json" else render.task_progress
        how = TaskWait(timeout=config.environment(env).task_timeout_seconds, poll=poll, on_progress=on_task)
        result = await predeploy.deploy(ecs, request, _wait(wait, timeout, poll, output), commands(files.service), how)
        synced = None
        if result.rollout is not None and result.ok:
            wanted = scheduled_tasks(files.service.spec.tasks, files.service.spec.schedules)
            synced = await schedules.sync_report(aws, env, name, wanted, result.task_definition)
        if keep and result.ok:
            result.deregistered = (await operate.prune(aws, env, name, keep=keep)).deregistered
        return result, synced

    done = run_aws(config, work)
    if isinstance(done, list):
        render.findings(done, output, build_checks=build_checks(root, done), service=name, environment=env)
        raise click.exceptions.Exit(1)
    result, synced = done
    _finish_deploy(result, output, synced, NOT_WAITING["deploy"])


# the seed's spelling: `lemi service deploy -s S --tag T`, the same command
service.add_command(deploy, "deploy")


@cli.command()
@service_option
@env_option
@cluster_option
@click.option("-t", "--tag", required=True, callback=image_tag, help="Image tag to compile with.")
@repo_option
@output_option
@pass_state
def diff(
    state: State, name: str | None, env: str | None, cluster: str | None, tag: str, repo: str | None, output: str
) -> None:
    """Show how the running task definition differs from the compiled one.

    Exit 0 when they are the same, 1 when they differ.
    """
    config = state.config()
    env = pick_environment(config, env)
    check_cluster(config, env, cluster)
    root = workspace.repo_root()
    name = service_name(name)
    try:
        files = load_service(root, name, repository(root, repo), config)
    except Invalid as exc:
        report_invalid(exc, output)
    compiled = compile_for(config, files, env, tag)
    result = run_aws(config, lambda aws: operate.diff(aws, env, name, compiled.task_definition))
    if output == "json":
        emit_json(result.as_dict())
    elif result.different:
        click.echo(result.text, nl=False)
    else:
        click.echo(f"no difference: {name} in {env} runs {result.running}, identical to the compiled definition")
    if result.different:
        raise click.exceptions.Exit(1)


@service.command("status")
@service_option
@env_option
@cluster_option
@output_option
@pass_state
def status(state: State, name: str | None, env: str | None, cluster: str | None, output: str) -> None:
    """Tasks, revision, image, deployments and recent events of a service."""
    config = state.config()
    env = pick_environment(config, env)
    check_cluster(config, env, cluster)
    name = service_name(name)
    result = run_aws(config, lambda aws: operate.status(aws, env, name))
    if output == "json":
        emit_json(result.as_dict())
    else:
        render.status(result)


@service.command("list-tasks")
@service_option
@env_option
@cluster_option
@click.option("--stopped", is_flag=True, help="List recently stopped tasks instead of running ones.")
@output_option
@pass_state
def list_tasks(
    state: State, name: str | None, env: str | None, cluster: str | None, stopped: bool, output: str
) -> None:
    """The service's running (or stopped) tasks."""
    config = state.config()
    env = pick_environment(config, env)
    check_cluster(config, env, cluster)
    name = service_name(name)
    tasks = run_aws(config, lambda aws: operate.list_tasks(aws, env, name, stopped=stopped))
    if output == "json":
        emit_json({"service": name, "environment": env, "tasks": [t.__dict__ for t in tasks]})
    else:
        render.tasks(tasks, name, env)


@service.command("stop-task")
@service_option
@click.option(
    "-e", "--env", "env",
    help="Environment from lemi.yml (default: the one of the task ARN's account, region and cluster; for a bare "
    "task id, the first unprotected one).",
)  # fmt: skip
@cluster_option
@click.option("--task-id", required=True, help="Task id or ARN (from list-tasks).")
@click.option("--reason", default="stopped with lemi", show_default=True, help="Recorded as the stop reason.")
@output_option
@pass_state
def stop_task(
    state: State, name: str | None, env: str | None, cluster: str | None, task_id: str, reason: str, output: str
) -> None:
    """Stop one task of the service; ECS starts a replacement."""
    config = state.config()
    env = environment_of_task(config, env, task_id)
    check_cluster(config, env, cluster)
    name = service_name(name)
    task = run_aws(config, lambda aws: operate.stop_task(aws, env, name, task_id, reason=reason))
    if output == "json":
        emit_json(task.__dict__)
    else:
        click.echo(f"stopped task {task.task_id} of {name} in {env}; ECS will start a replacement")


def _rollout_command(command: str, operation: Callable[..., Awaitable[DeployResult]], summary: str) -> None:
    """`lemi service restart|rollback`: one operation that rolls out and waits, truthfully."""

    @service_option
    @env_option
    @cluster_option
    @wait_option
    @timeout_option
    @poll_option
    @output_option
    @pass_state
    def run(
        state: State, name: str | None, env: str | None, cluster: str | None, wait: bool, timeout: float, poll: float,
        output: str,
    ) -> None:  # fmt: skip
        config = state.config()
        env = pick_environment(config, env)
        check_cluster(config, env, cluster)
        name = service_name(name)

        async def work(aws: AwsClients) -> tuple[DeployResult, SyncReport | None]:
            result = await operation(aws, env, name, wait=_wait(wait, timeout, poll, output))
            if command != "rollback" or result.rollout is None or not result.ok:
                return result, None  # a restart runs the same revision: its schedules stay as they are
            return result, await schedules.repoint_report(aws, env, name, result.task_definition)

        try:
            result, synced = run_aws(config, work)
        except OperationError as exc:  # refused before any rollout (no revision to roll back to)
            if output != "json":
                raise
            emit_json({"ok": False, "service": name, "environment": env, "error": exc.message, "hint": exc.hint})
            raise click.exceptions.Exit(1) from None
        _finish_deploy(result, output, synced, NOT_WAITING.get(command, ""))

    run.__doc__ = summary
    service.command(command)(run)


_rollout_command("restart", operate.restart, "Replace every task (a forced new deployment) and wait for it.")
_rollout_command(
    "rollback", operate.rollback,
    "Redeploy the last revision lemi deployed successfully before the running one and wait for it; the service's "
    "schedules then run it too.",
)  # fmt: skip


@service.command("prune")
@service_option
@env_option
@cluster_option
@click.option("--keep", type=int, required=True, help="Revisions to keep (the newest N, plus any in use).")
@output_option
@pass_state
def prune(state: State, name: str | None, env: str | None, cluster: str | None, keep: int, output: str) -> None:
    """Deregister old task-definition revisions of the service."""
    config = state.config()
    env = pick_environment(config, env)
    check_cluster(config, env, cluster)
    name = service_name(name)
    result = run_aws(config, lambda aws: operate.prune(aws, env, name, keep=keep))
    if output == "json":
        emit_json(result.as_dict())
    else:
        click.echo(f"kept {', '.join(result.kept) or 'none'}")
        click.echo(f"deregistered {', '.join(result.deregistered) or 'none'}")


@service.command("exec", context_settings={"ignore_unknown_options": True})
@service_option
@env_option
@cluster_option
@click.option("--task-id", "task", help="Task id or ARN (default: the first running task).")
@click.option("--task", "task_alias", hidden=True)  # the earlier spelling of --task-id
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@pass_state
def exec_(
    state: State, name: str | None, env: str | None, cluster: str | None, task: str | None, task_alias: str | None,
    command: tuple[str, ...],
) -> None:  # fmt: skip
    """Open a shell (or run COMMAND) in a running task with ECS Exec.

    \b
    lemi service exec -s demo-service -e staging
    lemi service exec -s demo-service -c lemon-ecs-cluster /bin/bash
    lemi service exec -s demo-service -e staging -- sh -c 'echo $HOSTNAME'
    """
    config = state.config()
    env = pick_environment(config, env)
    check_cluster(config, env, cluster)
    task = task or task_alias
    name = service_name(name)
    line = shlex.join(command) if command else "/bin/sh"
    session = run_aws(config, lambda aws: open_session(aws, env, name, command=line, task=task))
    click.echo(f"connecting to task {session.task_id} ({session.container}) ...", err=True)
    done = subprocess.run(session.argv, check=False)  # noqa: S603 - argv list, no shell
    if done.returncode:
        raise click.exceptions.Exit(done.returncode)
