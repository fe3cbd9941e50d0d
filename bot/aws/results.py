"""What a deploy, restart or rollback ends with: the rollout's verdict and, before it, the
pre-deploy tasks that ran (values; :mod:`bot.aws.rollout` and :mod:`bot.aws.predeploy` make them)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from bot.aws.ecs import StoppedTask, revision_of

Outcome = Literal["completed", "failed", "timeout"]


@dataclass
class TaskRun:
    """A one-off task that ran (a ``preDeploy`` task, ``lemi run``): how it ended, and its last
    output lines where its logs can be read."""

    task: str
    task_id: str
    revision: str
    succeeded: bool
    reason: str
    exit_code: int | None = None
    elapsed: float = 0.0
    lines: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "revision": revision_of(self.revision)}


@dataclass
class Rollout:
    outcome: Outcome
    service: str
    environment: str
    cluster: str
    task_definition: str
    deployment_id: str | None
    reason: str
    running: int = 0
    desired: int = 0
    elapsed: float = 0.0
    events: list[str] = field(default_factory=list)
    stopped_tasks: list[StoppedTask] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # a completed rollout lemi could not tag

    @property
    def ok(self) -> bool:
        return self.outcome == "completed"

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["ok"] = self.ok
        return data


@dataclass
class DeployResult:
    service: str
    environment: str
    task_definition: str
    reused: bool
    rollout: Rollout | None  # None when not waiting, or when a pre-deploy task failed
    deregistered: list[str] = field(default_factory=list)  # revisions removed by --keep
    pre_deploy: list[TaskRun] = field(default_factory=list)  # the preDeploy tasks that ran, in order

    @property
    def pre_deploy_failed(self) -> TaskRun | None:
        return next((t for t in self.pre_deploy if not t.succeeded), None)

    @property
    def ok(self) -> bool:
        return self.pre_deploy_failed is None and (self.rollout is None or self.rollout.ok)

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "service": self.service,
            "environment": self.environment,
            "task_definition": self.task_definition,
            "revision": revision_of(self.task_definition),
            "reused": self.reused,
            "rollout": self.rollout.as_dict() if self.rollout else None,
            "deregistered": self.deregistered,
            "pre_deploy": [t.as_dict() for t in self.pre_deploy],
        }
