"""Terminal rendering of results: tables and live progress (rich)."""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from bot.aws.ecs import revision_of
from bot.aws.operate import ServiceStatus, TaskInfo
from bot.aws.results import TaskRun
from bot.aws.rollout import DeployResult, Progress
from bot.aws.verify import Finding
from bot.cli.base import emit_json
from bot.core.doctor import Check
from bot.core.problems import problems_text
from bot.core.schedules import SyncReport


def _console(stderr: bool = False) -> Console:
    # the current sys streams, so CliRunner and capsys see the output; no emoji codes
    # (":secret:" in an ARN must print as written); piped output is not cut to 80 columns
    stream = sys.stderr if stderr else sys.stdout
    width = None if stream.isatty() else 250
    return Console(file=stream, highlight=False, soft_wrap=True, emoji=False, width=width)


def _table(*columns: str, keep: Sequence[Sequence[str]] = (), keep_columns: Sequence[int] = (0,)) -> Table:
    """A table whose id-like columns are never shortened (they are pasted into other commands)."""
    table = Table(highlight=False)
    for index, name in enumerate(columns):
        if index in keep_columns:
            width = max([len(name)] + [len(row[index]) for row in keep])
            table.add_column(name, no_wrap=True, min_width=width)
        else:
            table.add_column(name, overflow="fold")
    return table


class ProgressPrinter:
    """Prints a line whenever the rollout's state changes (on stderr)."""

    def __init__(self) -> None:
        self._last: tuple[Any, ...] | None = None
        self._console = _console(stderr=True)
        self._started = time.monotonic()

    def __call__(self, p: Progress) -> None:
        key = (p.deployment_id, p.rollout_state, p.running, p.desired, p.pending, p.failed)
        if key == self._last:
            return
        self._last = key
        failed = f", {p.failed} failed" if p.failed else ""
        self._console.print(
            f"[{p.elapsed:5.0f}s] {p.deployment_id} {p.rollout_state}: "
            f"running {p.running}/{p.desired}, pending {p.pending}{failed}"
        )


def task_progress(line: str) -> None:
    """A one-off task's progress, on stderr."""
    print(f"  task: {line}", file=sys.stderr)


def task_runs(runs: Sequence[TaskRun]) -> None:
    console = _console()
    for run in runs:
        code = f"exit {run.exit_code}" if run.exit_code is not None else "no exit code"
        mark = "[green]ok[/green]" if run.succeeded else "[red]failed[/red]"
        console.print(f"preDeploy task {run.task} {mark}: {run.reason} ({code}, task {run.task_id}, {run.elapsed:g} s)")
        for line in run.lines:
            console.print(f"    {line}", markup=False)


def deploy_result(result: DeployResult) -> None:
    console = _console()
    revision = revision_of(result.task_definition)
    reused = " (existing revision reused)" if result.reused else ""
    rollout = result.rollout
    task_runs(result.pre_deploy)
    failed = result.pre_deploy_failed
    if failed is not None:
        console.print(
            f"[red]deploy failed[/red] (preDeploy): task {failed.task} {failed.reason}; "
            f"{result.service} in {result.environment} was not updated ({revision} is registered, not deployed)"
        )
        return
    if rollout is None:
        console.print(f"updated {result.service} in {result.environment} to {revision}{reused}; not waiting")
        return
    if rollout.ok:
        console.print(
            f"[green]deployed[/green] {result.service} to {result.environment}: {revision}{reused}, "
            f"{rollout.running}/{rollout.desired} tasks running ({rollout.elapsed:g} s)"
        )
        if result.deregistered:
            console.print(f"deregistered old revisions: {', '.join(result.deregistered)}")
        for warning in rollout.warnings:
            console.print(f"warning: {warning}", markup=False)
        return
    console.print(
        f"[red]deploy failed[/red] ({rollout.outcome}): {result.service} in {result.environment}, {revision}{reused}"
    )
    console.print(f"  reason: {rollout.reason}", markup=False)
    if rollout.stopped_tasks:
        console.print("  stopped tasks:")
        for task in rollout.stopped_tasks:
            extra = f" [{'; '.join(task.containers)}]" if task.containers else ""
            console.print(f"    {task.task_id}: {task.stopped_reason}{extra}", markup=False)
            if task.lines:
                console.print("      its last log lines:")
                for line in task.lines:
                    console.print(f"        {line}", markup=False)
    if rollout.events:
        console.print("  recent service events:")
        for line in rollout.events:
            console.print(f"    {line}", markup=False)


def schedules_synced(result: DeployResult, synced: SyncReport | None, not_waiting: str = "") -> None:
    """What became of the schedules after a rollout; ``not_waiting``: what to say when it was not waited for."""
    console = _console()
    if result.rollout is None:
        if not_waiting:
            console.print(not_waiting, markup=False)
    elif synced is not None and synced.error:
        console.print(f"[yellow]the schedules could not be updated[/yellow]: {synced.error}", highlight=False)
    elif synced is not None and (synced.changed or synced.unchanged):
        console.print(synced.summary(), markup=False)


def findings(
    items: Sequence[Finding],
    output: str,
    *,
    tail: str = "; nothing was deployed",
    build_checks: str | None = None,
    **extra: Any,
) -> None:
    """``build_checks``: where the commit of an image that never arrived says how its build went."""
    if output == "json":
        link = {"build_checks": build_checks} if build_checks else {}
        emit_json({"ok": not items, **extra, **link, "findings": [f.as_dict() for f in items]})
        return
    for item in items:
        print(item.render(), file=sys.stderr)
    if build_checks:
        print(f"the commit's checks (did its build fail?): {build_checks}", file=sys.stderr)
    print(f"{problems_text(len(items))} found{tail}", file=sys.stderr)


def status(s: ServiceStatus) -> None:
    console = _console()
    console.print(
        f"{s.service} in {s.environment} ({s.cluster}): {s.status}, "
        f"running {s.running}/{s.desired}, pending {s.pending}; {s.revision}, image tag {s.image_tag}",
        markup=False,
    )
    rows = [
        [d.id, d.status, d.rollout_state or "-", d.revision, f"{d.running}/{d.desired}", str(d.pending),
         str(d.failed), d.created]
        for d in s.deployments
    ]  # fmt: skip
    table = _table("deployment", "status", "rollout", "revision", "running", "pending", "failed", "created",
                   keep=rows, keep_columns=(0, 3))  # fmt: skip
    for row in rows:
        table.add_row(*row)
    console.print(table)
    if s.schedules:
        rows = [[c.name, c.expression, c.timezone, c.task or " ".join(c.command), c.state, c.revision]
                for c in s.schedules]  # fmt: skip
        table = _table("schedule", "cron", "time zone", "task", "state", "revision", keep=rows, keep_columns=(0, 1))
        for row in rows:
            table.add_row(*row)
        console.print(table)
    if s.schedules_error:
        console.print(f"schedules could not be read: {s.schedules_error}", markup=False)
    if s.events:
        console.print("recent events:")
        for line in s.events:
            console.print(f"  {line}", markup=False)


def tasks(items: Sequence[TaskInfo], service: str, env: str) -> None:
    console = _console()
    if not items:
        console.print(f"{service} has no tasks to show in {env}")
        return
    rows = [
        [t.task_id, t.last_status, t.desired_status, t.revision, t.health, t.started, t.availability_zone,
         t.stopped_reason or "-"]
        for t in items
    ]  # fmt: skip
    table = _table("task", "status", "desired", "revision", "health", "started", "zone", "stopped reason",
                   keep=rows, keep_columns=(0, 3))  # fmt: skip
    for row in rows:
        table.add_row(*row)
    console.print(table)


class TaskProgress:
    """Prints a one-off task's state whenever it changes (on stderr)."""

    def __init__(self) -> None:
        self._console = _console(stderr=True)
        self._started = time.monotonic()

    def __call__(self, line: str) -> None:
        self._console.print(f"[{time.monotonic() - self._started:5.0f}s] {line}", markup=False)


def task_result(result: dict[str, Any], task_id: str) -> None:
    """``lemi run``'s result: the task, how it ended, how long it took, where its output is."""
    console = _console()
    where = f"{result['task']} of {result['service']} in {result['environment']} ({revision_of(result['revision'])})"
    code = "no exit code" if result["exit_code"] is None else f"exit code {result['exit_code']}"
    if result["ok"]:
        console.print(f"[green]task ran[/green] {where}: {code}, {result['duration']:g} s", highlight=False)
    else:
        console.print(f"[red]task failed[/red] {where}: {code}, {result['duration']:g} s", highlight=False)
        console.print(f"  reason: {result['reason']}", markup=False)
    if result.get("lines"):
        console.print(f"task {task_id}; its last output lines:", markup=False)
        for line in result["lines"]:
            console.print(f"    {line}", markup=False)
    elif result.get("logs_in_datadog"):
        console.print(f"task {task_id}; output: in Datadog (service:{result['service']} env:{result['environment']})",
                      markup=False)  # fmt: skip
    else:
        console.print(f"task {task_id}; output: see the service's logs (task {task_id})", markup=False)


def checklist(checks: Sequence[Check]) -> None:
    """``lemi doctor``'s checklist: a line per check, OK or FAIL, and how to fix each failure."""
    console = _console()
    for check in checks:
        mark = "[green]  OK[/green]" if check.ok else "[red]FAIL[/red]"
        detail = check.detail.replace("\n", "\n       ")  # lemi.yml's problems are a line each
        console.print(f"{mark} {escape(check.name)}: {escape(detail)}")
        if not check.ok and check.fix:
            console.print(f"       fix: {check.fix}", markup=False)
    failures = sum(not check.ok for check in checks)
    if failures:
        console.print(f"[red]{failures} of {len(checks)} checks failed[/red]")
    else:
        console.print(f"[green]all {len(checks)} checks passed[/green]")
