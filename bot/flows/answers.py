"""What a slash command answers: one dataclass per kind of answer.

Each is rendered by its block of ``templates/comments/command.md.j2`` (chosen by its
``kind``) under one heading, :class:`CommandReply`. ``ok`` decides the icon, the
final reaction and the outcome the reply's hidden marker records.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from bot.aws.operate import Diff, ServiceStatus, TaskInfo
from bot.aws.rollout import DeployResult
from bot.aws.verify import Finding
from bot.core.problems import Problem
from bot.core.schedules import SyncReport
from bot.flows.deploy import DeployReport
from bot.flows.provision import Outcome
from bot.store.jobs import Invocation, Target
from bot.store.locks import Lock


@dataclass(frozen=True)
class Said:
    """Help, or the parser's answer to a comment it could not take as a command."""

    kind: ClassVar[str] = "said"
    text: str
    error: bool = False

    @property
    def ok(self) -> bool:
        return not self.error


@dataclass(frozen=True)
class NotDone:
    """The command was refused; ``why`` is shown to the user."""

    kind: ClassVar[str] = "not_done"
    ok: ClassVar[bool] = False
    why: str


@dataclass(frozen=True)
class Failed:
    """AWS could not do it (or lemi gave up on the job): ``error`` says why."""

    kind: ClassVar[str] = "failed"
    ok: ClassVar[bool] = False
    error: str


@dataclass(frozen=True)
class StatusShown:
    kind: ClassVar[str] = "status"
    ok: ClassVar[bool] = True
    status: ServiceStatus
    lock: Lock | None


@dataclass(frozen=True)
class TasksListed:
    kind: ClassVar[str] = "tasks"
    ok: ClassVar[bool] = True
    tasks: list[TaskInfo]


@dataclass(frozen=True)
class TaskStopped:
    kind: ClassVar[str] = "task_stopped"
    ok: ClassVar[bool] = True
    task: TaskInfo


@dataclass(frozen=True)
class InvalidFiles:
    """The service files a command reads do not parse or validate."""

    kind: ClassVar[str] = "invalid_files"
    ok: ClassVar[bool] = False
    problems: list[Problem]


@dataclass(frozen=True)
class Verified:
    kind: ClassVar[str] = "verified"
    findings: list[Finding]

    @property
    def ok(self) -> bool:
        return not self.findings


@dataclass(frozen=True)
class Diffed:
    kind: ClassVar[str] = "diffed"
    ok: ClassVar[bool] = True
    diff: Diff


@dataclass(frozen=True)
class Locked:
    kind: ClassVar[str] = "locked"
    ok: ClassVar[bool] = True
    lock: Lock


@dataclass(frozen=True)
class Unlocked:
    kind: ClassVar[str] = "unlocked"
    ok: ClassVar[bool] = True
    lock: Lock | None  # None: it was not locked
    released: int = 0  # held deploys queued again


@dataclass(frozen=True)
class Provisioned:
    kind: ClassVar[str] = "provisioned"
    outcome: Outcome

    @property
    def ok(self) -> bool:
        return not self.outcome.problems


@dataclass(frozen=True)
class Deployed:
    kind: ClassVar[str] = "deployed"
    report: DeployReport

    @property
    def ok(self) -> bool:
        return self.report.outcome == "success"


@dataclass(frozen=True)
class RolledOut:
    """restart and rollback: the rollout, as it ended."""

    kind: ClassVar[str] = "rolled_out"
    result: DeployResult
    schedules: SyncReport | None = None  # a rollback's schedules, pointed at the revision it restored

    @property
    def ok(self) -> bool:
        return self.result.ok


@dataclass(frozen=True)
class TaskRan:
    """``run``: the one-off task, as it ended."""

    kind: ClassVar[str] = "task_ran"
    task: str
    task_id: str
    revision: str
    succeeded: bool
    reason: str
    exit_code: int | None
    elapsed: float
    lines: list[str]

    @property
    def ok(self) -> bool:
        return self.succeeded


@dataclass(frozen=True)
class Watched:
    """A long command whose rollout was handed to the watcher: it is answered when that ends."""

    kind: ClassVar[str] = "watched"
    ok: ClassVar[bool] = True


Answer = (
    Said | NotDone | Failed | StatusShown | TasksListed | TaskStopped | InvalidFiles | Verified | Diffed | Locked
    | Unlocked | Provisioned | Deployed | RolledOut | TaskRan
)  # fmt: skip


@dataclass(frozen=True)
class CommandReply:
    """The one comment that answers a command: a heading, then the answer."""

    inv: Invocation
    answer: Answer
    heading: str  # the command as typed (when plainly safe to echo), or as lemi read it
    target: Target | None = None  # the service and environment it acted on
    files_at: Target | None = None  # whose service files it read, at which commit

    @classmethod
    def of(
        cls, inv: Invocation, answer: Answer, *, typed: str | None = None, target: Target | None = None
    ) -> CommandReply:
        """The heading shows the command as typed (``typed``) when lemi says something or
        refuses, else as lemi read it; then, once the command ran, the service and environment
        and, for a command that reads service files, whose files at which commit."""
        heading = typed if typed is not None and isinstance(answer, (Said, NotDone)) else inv.text
        if isinstance(answer, (Said, NotDone, Failed)) or target is None:
            return cls(inv, answer, heading)
        return cls(inv, answer, heading, target, target if inv.command.spec.reads_files else None)
