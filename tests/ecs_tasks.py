"""One-off tasks on moto, the way ECS runs them.

moto's RunTask does not behave like ECS: it steps a task to STOPPED on every DescribeTasks with
the container's exit code 0 although nothing ran, and it refuses (TypeError) a task definition
without container-level memory, which Fargate does not need. This module patches moto's
in-process ECS backend (the moto server runs in the test process) so that every task lemi runs
follows a *script* the test chose, one step per DescribeTasks call -- deterministic, no sleeping:

* ``exits(code, after)``: RUNNING (``startedAt`` set) for ``after`` looks, then STOPPED with the
  container's exit code (``EssentialContainerExited``);
* ``quick_exit(code)``: PENDING at the first look, STOPPED with an exit code at the next -- it ran
  between two looks;
* ``never_starts(reason)``: PENDING, then STOPPED (``TaskFailedToStart``) without ever running;
* ``moto_default()``: STOPPED with exit code 0 and no ``startedAt`` (moto's own behaviour);
* ``stopped_by_someone(after)``: RUNNING, then StopTask by a person (``UserInitiated``);
* ``forever()``: RUNNING until somebody stops it.

``script(name, ...)`` sets the script of the next run of task ``name`` (by its RunTask group,
``lemi-task:<name>``); ``default`` is used otherwise. ``runs`` records every RunTask as ECS got it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
from moto.ecs.models import EC2ContainerServiceBackend, Task, ecs_backends

from bot.aws.tasks import GROUP_PREFIX

ACCOUNT = "123456789012"
REGION = "us-east-1"


@dataclass
class Script:
    kind: str
    exit_code: int | None = 0
    after: int = 1
    reason: str = ""


def exits(code: int = 0, after: int = 1) -> Script:
    return Script("exits", code, after)


def quick_exit(code: int = 0) -> Script:
    return Script("quick_exit", code)


def never_starts(reason: str = "CannotPullContainerError: pull image manifest has been retried 5 time(s)") -> Script:
    return Script("never_starts", None, 1, reason)


def moto_default() -> Script:
    return Script("moto_default", 0, 0)


def stopped_by_someone(after: int = 1, reason: str = "Task stopped by user alice") -> Script:
    return Script("stopped_by_someone", None, after, reason)


def forever() -> Script:
    return Script("forever", None, 10**9)


@dataclass
class Run:
    """One RunTask, as ECS got it, and how far its script went."""

    name: str
    task: Any
    script: Script
    params: dict[str, Any]
    looks: int = 0

    @property
    def command(self) -> list[str]:
        overrides = self.task.overrides.get("containerOverrides") or self.task.overrides.get("container_overrides")
        return list(overrides[0]["command"])

    @property
    def revision(self) -> str:
        return str(self.task.task_definition_arn)


@dataclass
class TaskSim:
    backend: EC2ContainerServiceBackend
    default: Script = field(default_factory=exits)
    scripts: dict[str, list[Script]] = field(default_factory=dict)
    runs: list[Run] = field(default_factory=list)
    on_run: Callable[[Run], None] | None = None

    def script(self, name: str, *scripts: Script) -> None:
        """The scripts of the next runs of task ``name``, in order."""
        self.scripts.setdefault(name, []).extend(scripts)

    def named(self, name: str) -> list[Run]:
        return [r for r in self.runs if r.name == name]

    def _next(self, name: str) -> Script:
        queued = self.scripts.get(name)
        return queued.pop(0) if queued else self.default

    # ---- ECS behaviour ---------------------------------------------------------------------
    def started(self, task: Any, params: dict[str, Any]) -> None:
        group = str(getattr(task, "group", ""))
        name = group[len(GROUP_PREFIX) :] if group.startswith(GROUP_PREFIX) else group
        run = Run(name, task, self._next(name), params)
        task.last_status = "PENDING" if run.script.kind != "moto_default" else "STOPPED"
        task.desired_status = "RUNNING"
        for container in task.containers:
            container.exitCode = None
            container.last_status = "PENDING"
        if run.script.kind == "moto_default":
            for container in task.containers:
                container.exitCode = 0
                container.last_status = "STOPPED"
        self.runs.append(run)
        if self.on_run is not None:
            self.on_run(run)

    def look(self, task: Any) -> None:
        run = next((r for r in self.runs if r.task is task), None)
        if run is None or task.last_status == "STOPPED":
            return
        run.looks += 1
        s = run.script
        if s.kind in ("exits", "stopped_by_someone", "forever"):
            if run.looks <= s.after:
                self._running(task)
            elif s.kind == "exits":
                self._exit(task, s.exit_code)
            elif s.kind == "stopped_by_someone":
                self._stop(task, "UserInitiated", s.reason, exit_code=143)
        elif s.kind == "quick_exit":
            if run.looks >= 2:
                task.started_at = datetime.now(UTC)
                self._exit(task, s.exit_code)
        elif s.kind == "never_starts" and run.looks >= 2:
            task.stopped_reason = "Task failed to start"
            task.stop_code = "TaskFailedToStart"
            task.last_status = task.desired_status = "STOPPED"
            for container in task.containers:
                container.reason = s.reason
                container.last_status = "STOPPED"

    def _running(self, task: Any) -> None:
        if task.last_status != "RUNNING":
            task.last_status = "RUNNING"
            task.started_at = datetime.now(UTC)
            for container in task.containers:
                container.last_status = "RUNNING"

    def _exit(self, task: Any, code: int | None) -> None:
        self._stop(task, "EssentialContainerExited", "Essential container in task exited", exit_code=code)

    def _stop(self, task: Any, stop_code: str, reason: str, *, exit_code: int | None) -> None:
        task.last_status = task.desired_status = "STOPPED"
        task.stop_code = stop_code
        task.stopped_reason = reason
        task.stopped_at = datetime.now(UTC)
        for container in task.containers:
            container.exitCode = exit_code
            container.last_status = "STOPPED"


def install(monkeypatch: pytest.MonkeyPatch, account: str = ACCOUNT, region: str = REGION) -> TaskSim:
    sim = TaskSim(ecs_backends[account][region])
    original_run = EC2ContainerServiceBackend.run_task
    original_stop = EC2ContainerServiceBackend.stop_task

    def run_task(
        self: EC2ContainerServiceBackend, cluster_str: str, task_definition_str: str, *args: Any, **kw: Any
    ) -> Any:
        tasks = original_run(self, cluster_str, task_definition_str, *args, **kw)
        if self is sim.backend:
            names = ("count", "overrides", "started_by", "tags", "launch_type", "networking_configuration", "group",
                     "platform_version", "capacity_provider_strategy")  # fmt: skip
            params = {
                "cluster": cluster_str,
                "task_definition": task_definition_str,
                **dict(zip(names, args, strict=False)),
                **kw,
            }
            for task in tasks:
                sim.started(task, params)
        return tasks

    def describe_tasks(self: EC2ContainerServiceBackend, cluster_str: str, tasks: list[str]) -> list[Task]:
        self._get_cluster(cluster_str)
        found = []
        for cluster_tasks in self.tasks.values():
            for arn, task in cluster_tasks.items():
                if arn in tasks or any(arn.endswith("/" + t) for t in tasks):
                    if self is sim.backend:
                        sim.look(task)
                    found.append(task)
        return found

    def stop_task(self: EC2ContainerServiceBackend, cluster_str: str, task_str: str, reason: str) -> Any:
        task = original_stop(self, cluster_str, task_str, reason)
        if self is sim.backend and any(r.task is task for r in sim.runs):
            sim._stop(task, "UserInitiated", reason, exit_code=143)
        return task

    def requirements(task_definition: Any) -> dict[str, Any]:
        # Fargate sizes a task at the task level; moto sums container memory (None here)
        return {"CPU": int(task_definition.cpu or 0), "MEMORY": int(task_definition.memory or 0), "PORTS": [],
                "PORTS_UDP": []}  # fmt: skip

    monkeypatch.setattr(EC2ContainerServiceBackend, "run_task", run_task)
    monkeypatch.setattr(EC2ContainerServiceBackend, "describe_tasks", describe_tasks)
    monkeypatch.setattr(EC2ContainerServiceBackend, "stop_task", stop_task)
    monkeypatch.setattr(EC2ContainerServiceBackend, "_calculate_task_resource_requirements", staticmethod(requirements))
    return sim
