"""One-off tasks, pre-deploy tasks and schedules in ``service.yaml``::

    spec:
      tasks:                          # name -> exec-form command, run in the service's image
        migrate: ["bin/migrate", "--apply"]
        report: ["bin/report"]
      preDeploy: [migrate]            # run in order before every deploy; a failure stops it
      schedules:                      # EventBridge Scheduler
        nightly-report: {task: report, cron: "0 3 * * ? *", timezone: UTC}

A command is a list (exec form): it becomes the container's ``command`` override as it is, with
no shell in between. A string would need a shell to split it, so it is refused with the list it
probably meant. Task and schedule names are narrow enough to be an EventBridge schedule name, an
ECS ``startedBy`` suffix and a word in a slash command. Pure: the models and their checks.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, Field, field_validator

from bot.core.cron import CronError, parse_cron, timezone_problem
from bot.core.names import did_you_mean
from bot.core.validation import StrictModel, fail

TASK_NAME_RE = re.compile(r"^[a-z](?:[a-z0-9]|[-_](?=[a-z0-9])){0,31}$")
MAX_ARGUMENTS = 64
MAX_COMMAND_CHARS = 4096  # ECS caps a RunTask's overrides at 8 KiB in all
MAX_TASKS = 32
MAX_SCHEDULES = 32


def _task_name(name: str) -> str:
    if not TASK_NAME_RE.fullmatch(name):
        raise fail(
            f"{name!r} is not a valid name for a task or schedule",
            "use lowercase letters, digits, single - or _, starting with a letter, at most 32 characters",
        )
    return name


def _shell_string(value: Any) -> Any:
    if isinstance(value, str):
        try:
            words = shlex.split(value)
        except ValueError:
            words = value.split()
        listed = ", ".join(f'"{w}"' for w in words) if words else '"bin/migrate"'
        raise fail(
            "a task's command is a list (exec form), not a string: lemi never runs a shell for you",
            f'write it as [{listed}]; for shell features say so: ["sh", "-c", "..."]',
        )
    return value


def _command(words: list[str]) -> list[str]:
    if not words:
        raise fail("the command is empty", 'give the program and its arguments, e.g. ["bin/migrate", "--apply"]')
    if len(words) > MAX_ARGUMENTS:
        raise fail(f"the command has {len(words)} arguments", f"keep it to {MAX_ARGUMENTS}; put the rest in a script")
    if not words[0].strip():
        raise fail("the command's program is empty", 'the first item is the program to run, e.g. "bin/migrate"')
    for i, word in enumerate(words):
        if "\x00" in word:
            raise fail("the argument contains a NUL character", "remove it", at=(i,))
    if sum(len(w) for w in words) > MAX_COMMAND_CHARS:
        raise fail("the command is too long", f"keep it under {MAX_COMMAND_CHARS} characters; use a script")
    return words


TaskName = Annotated[str, AfterValidator(_task_name)]
NAMES_SCHEMA: dict[str, Any] = {"propertyNames": {"pattern": TASK_NAME_RE.pattern}}
Command = Annotated[
    list[str],
    BeforeValidator(_shell_string),
    AfterValidator(_command),
    Field(
        description="exec form: the program and its arguments, no shell",
        json_schema_extra={"minItems": 1, "maxItems": MAX_ARGUMENTS},
    ),
]


class Schedule(StrictModel):
    """Run a task on a schedule (EventBridge Scheduler)."""

    task: str = Field(description="a task of spec.tasks")
    cron: str = Field(description="AWS's six-field cron: minutes hours day-of-month month day-of-week year")
    timezone: str = Field("UTC", description="IANA time zone the cron expression is read in")
    enabled: bool = Field(True, description="false keeps the schedule but pauses it")

    @field_validator("cron")
    @classmethod
    def _cron(cls, cron: str) -> str:
        try:
            return parse_cron(cron)
        except CronError as exc:
            raise fail(exc.message, exc.hint) from None

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, timezone: str) -> str:
        problem = timezone_problem(timezone)
        if problem:
            raise fail(*problem)
        return timezone


def task_references(tasks: dict[str, list[str]], pre_deploy: list[str], schedules: dict[str, Schedule]) -> None:
    """Every task a preDeploy entry or schedule names exists; preDeploy names each task once."""

    def unknown(name: str) -> str:
        if not tasks:
            return "define it under spec.tasks first"
        return did_you_mean(name, tasks) or f"tasks in this file: {', '.join(sorted(tasks))}"

    seen: set[str] = set()
    for i, name in enumerate(pre_deploy):
        if name not in tasks:
            raise fail(
                f"preDeploy names {name!r}, which is not a task of spec.tasks", unknown(name), at=("preDeploy", i)
            )
        if name in seen:
            raise fail(f"preDeploy names {name!r} twice", "run each task once: remove one", at=("preDeploy", i))
        seen.add(name)
    for schedule_name, schedule in schedules.items():
        if schedule.task not in tasks:
            raise fail(
                f"schedule {schedule_name!r} runs {schedule.task!r}, which is not a task of spec.tasks",
                unknown(schedule.task),
                at=("schedules", schedule_name, "task"),
            )


def unknown_task(name: str, tasks: Mapping[str, list[str]], where: str) -> str | None:
    """Why ``name`` cannot be run from ``where`` (a service file), or None: an unknown task's
    message names the file, a close name and the tasks it has."""
    if name in tasks:
        return None
    if not tasks:
        return f"{where} has no spec.tasks, so there is no task {name!r} to run; add it under spec.tasks"
    close = did_you_mean(name, tasks)
    return f"{where} has no task {name!r}: {close + ' ' if close else ''}tasks in this file: {', '.join(sorted(tasks))}"
