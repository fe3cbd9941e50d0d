"""Slash commands in PR comments: ``body -> Command | Reply | Ignore`` (pure).

Only the first line of a comment is read, and only when it starts with
``/lemi``. Arguments are whitespace-separated words checked against narrow
patterns (image tags, task ids, service and environment names); nothing
from a comment is ever passed to a shell.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from bot.core.names import ENV_RE, IMAGE_TAG_RE, SERVICE_RE, did_you_mean
from bot.core.tasks import TASK_NAME_RE

PREFIX = "/lemi"
MAX_LINE = 500
_TASK_ID_RE = re.compile(
    r"^(?:arn:aws(?:-cn|-us-gov)?:ecs:[a-z0-9-]+:\d{12}:task/[A-Za-z0-9_-]+/)?[a-f0-9]{32}$|^[a-f0-9-]{36}$"
)


@dataclass(frozen=True)
class Spec:
    summary: str
    argument: str | None = None  # name of the one positional argument
    long: bool = False  # runs through the durable queue (restart, deploy, rollback)
    writes: bool = True  # changes something (needs write/maintain); reads need only write too
    # reads the service files: for a protected environment, the environment branch's
    reads_files: bool = False


COMMANDS: dict[str, Spec] = {
    "help": Spec("show this help", writes=False),
    "status": Spec("tasks, revision, image and recent events", writes=False),
    "tasks": Spec("the running tasks", writes=False),
    "restart": Spec("replace every task and wait for the rollout", long=True),
    "deploy": Spec("deploy an image tag and wait for the rollout", argument="image-tag", long=True, reads_files=True),
    "rollback": Spec("redeploy the last revision lemi deployed successfully before this one", long=True),
    "run": Spec(
        "run a task of the service's spec.tasks and reply with its exit code",
        argument="task",
        long=True,
        reads_files=True,
    ),
    "stop-task": Spec("stop one task (ECS starts a replacement)", argument="task-id"),
    "verify": Spec("check the spec and everything the deploy needs in AWS", writes=False, reads_files=True),
    "diff": Spec("running task definition vs this PR's compiled one", writes=False, reads_files=True),
    "provision": Spec("run provisioning for this pull request again"),
    "lock": Spec("hold push deploys and commands of others in an environment"),
    "unlock": Spec("release the environment's lock"),
}


@dataclass(frozen=True)
class Command:
    name: str
    env: str | None = None
    service: str | None = None
    argument: str | None = None

    @property
    def spec(self) -> Spec:
        return COMMANDS[self.name]


@dataclass(frozen=True)
class Reply:
    """Answer without doing anything: help, or why the command was not understood."""

    text: str
    error: bool = True


@dataclass(frozen=True)
class Ignore:
    reason: str


Parsed = Command | Reply | Ignore


def usage() -> str:
    lines = ["Usage: `/lemi <command> [-e ENV] [-s SERVICE]`", ""]
    for name, spec in COMMANDS.items():
        arg = f" <{spec.argument}>" if spec.argument else ""
        lines.append(f"- `/lemi {name}{arg}`: {spec.summary}")
    lines += [
        "",
        "`-e/--env` is required for protected environments (otherwise the first unprotected one);",
        "`-s/--service` defaults to the repository's only service.",
    ]
    return "\n".join(lines)


def parse(body: str | None) -> Parsed:
    text = (body or "").lstrip()
    first = text.split("\n", 1)[0].rstrip("\r").strip()
    if not first.startswith(PREFIX) or (len(first) > len(PREFIX) and not first[len(PREFIX)].isspace()):
        return Ignore("not a /lemi command")
    if len(first) > MAX_LINE:
        return Reply(f"that command line is too long (over {MAX_LINE} characters)")
    words = first.split()[1:]
    if not words:
        return Reply(usage(), error=False)
    name, rest = words[0], words[1:]
    if name in ("-h", "--help"):
        return Reply(usage(), error=False)
    if name not in COMMANDS:
        hint = did_you_mean(name, COMMANDS)
        shown = name if _printable(name) else "(that)"
        return Reply(f"unknown command `{shown}`. {hint or 'See `/lemi help`.'}".strip())
    spec = COMMANDS[name]
    env: str | None = None
    service: str | None = None
    positional: list[str] = []
    i = 0
    while i < len(rest):
        word = rest[i]
        if word in ("-e", "--env", "-s", "--service"):
            if i + 1 >= len(rest):
                return Reply(f"`{word}` needs a value")
            value = rest[i + 1]
            if word in ("-e", "--env"):
                if not ENV_RE.fullmatch(value):
                    return Reply(f"`{_safe(value)}` is not an environment name")
                env = value
            else:
                if not SERVICE_RE.fullmatch(value):
                    return Reply(f"`{_safe(value)}` is not a service name")
                service = value
            i += 2
            continue
        if word.startswith(("--env=", "--service=")):
            key, value = word.split("=", 1)
            rest[i : i + 1] = [key, value]
            continue
        if word.startswith("-"):
            return Reply(f"unknown option `{_safe(word)}` for `{name}`; options are -e/--env and -s/--service")
        positional.append(word)
        i += 1
    if spec.argument is None and positional:
        return Reply(f"`{name}` takes no argument (got `{_safe(positional[0])}`)")
    if spec.argument is not None:
        if len(positional) != 1:
            return Reply(f"`{name}` needs exactly one <{spec.argument}>, e.g. `/lemi {name} {_example(spec.argument)}`")
        value = positional[0]
        if not _ARGUMENT_RE[spec.argument].fullmatch(value):
            return Reply(f"`{_safe(value)}` is not a valid {spec.argument}{_HINTS.get(spec.argument, '')}")
        return Command(name, env, service, value)
    if name == "help":
        return Reply(usage(), error=False)
    return Command(name, env, service)


_ARGUMENT_RE = {"image-tag": IMAGE_TAG_RE, "task-id": _TASK_ID_RE, "task": TASK_NAME_RE}
_HINTS = {"task": " name: a task of the service's spec.tasks (lowercase letters, digits, - and _)"}
_EXAMPLES = {"image-tag": "3f2c1ab", "task-id": "0123456789abcdef0123456789abcdef", "task": "migrate"}


def _example(argument: str) -> str:
    return _EXAMPLES[argument]


def _printable(word: str) -> bool:
    return bool(re.fullmatch(r"[A-Za-z0-9_.:/=+-]{1,40}", word))


def _safe(word: str) -> str:
    """Echo user input back only when it cannot break out of a code span or mention anyone."""
    return word if _printable(word) else "(that value)"
