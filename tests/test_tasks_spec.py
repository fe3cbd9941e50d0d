"""spec.tasks, spec.preDeploy and spec.schedules in service.yaml: what a user sees.

Every refusal names the file, line, column and field and says how to fix it. Cron expressions
are AWS's six-field form, checked here because the API stand-in in tests accepts anything.
"""

from __future__ import annotations

import pytest

from bot.core.cron import CronError, parse_cron, timezone_problem
from bot.core.problems import Invalid, Problem
from bot.core.schema import schema_for
from bot.core.spec import parse_service

SERVICE = "deploy/demo-service/service.yaml"
HEAD = "name: demo-service\nowner: team-a\nspec:\n  resource: {cpu: 256, memory: 512}\n"


def parse(body: str) -> object:
    return parse_service(HEAD + body, SERVICE, repository="acme/demo-service")


def problem(body: str) -> Problem:
    with pytest.raises(Invalid) as info:
        parse(body)
    assert len(info.value.problems) == 1, info.value.problems
    return info.value.problems[0]


GOOD = """\
  tasks:
    migrate: ["bin/migrate", "--apply"]
    report: ["bin/report"]
  preDeploy: [migrate]
  schedules:
    nightly-report: {task: report, cron: "0 3 * * ? *", timezone: America/Argentina/Buenos_Aires}
"""


def test_tasks_pre_deploy_and_schedules_parse() -> None:
    spec = parse(GOOD).spec  # type: ignore[attr-defined]
    assert spec.tasks == {"migrate": ["bin/migrate", "--apply"], "report": ["bin/report"]}
    assert spec.pre_deploy == ["migrate"]
    nightly = spec.schedules["nightly-report"]
    assert (nightly.task, nightly.cron, nightly.timezone, nightly.enabled) == (
        "report",
        "0 3 * * ? *",
        "America/Argentina/Buenos_Aires",
        True,
    )


def test_all_three_are_optional() -> None:
    spec = parse("").spec  # type: ignore[attr-defined]
    assert (spec.tasks, spec.pre_deploy, spec.schedules) == ({}, [], {})


def test_a_shell_string_command_is_refused_with_the_list_it_meant() -> None:
    p = problem("  tasks:\n    migrate: bin/migrate --apply 'two words'\n")
    assert (p.file, p.path, p.line) == (SERVICE, "spec.tasks.migrate", 6)
    assert "list (exec form)" in p.message
    assert '["bin/migrate", "--apply", "two words"]' in p.hint


@pytest.mark.parametrize(
    ("body", "path", "message", "hint"),
    [
        ("  tasks:\n    migrate: []\n", "spec.tasks.migrate", "the command is empty", "bin/migrate"),
        ('  tasks:\n    migrate: ["", "x"]\n', "spec.tasks.migrate", "program is empty", "first item"),
        ('  tasks:\n    migrate: ["sleep", 5]\n', "spec.tasks.migrate[1]", "number", 'quote it: "5"'),
        ('  tasks:\n    Migrate: ["x"]\n', "spec.tasks.Migrate", "not a valid name", "lowercase"),
        ('  tasks:\n    "a b": ["x"]\n', "spec.tasks.a b", "not a valid name", "lowercase"),
    ],
)
def test_bad_tasks(body: str, path: str, message: str, hint: str) -> None:
    p = problem(body)
    assert p.path == path and message in p.message and hint in p.hint, p


def test_pre_deploy_must_name_a_task_with_a_suggestion() -> None:
    p = problem('  tasks:\n    migrate: ["bin/migrate"]\n  preDeploy: [migrat]\n')
    assert (p.path, p.line, p.column) == ("spec.preDeploy[0]", 7, 15)
    assert "not a task of spec.tasks" in p.message
    assert p.hint == "did you mean `migrate`?"


def test_pre_deploy_without_tasks_says_to_define_them() -> None:
    p = problem("  preDeploy: [migrate]\n")
    assert p.hint == "define it under spec.tasks first"


def test_pre_deploy_names_each_task_once() -> None:
    p = problem('  tasks:\n    migrate: ["bin/migrate"]\n  preDeploy: [migrate, migrate]\n')
    assert p.path == "spec.preDeploy[1]" and "twice" in p.message


def test_a_schedule_must_name_a_task() -> None:
    p = problem('  tasks:\n    report: ["r"]\n  schedules:\n    nightly: {task: reprot, cron: "0 3 * * ? *"}\n')
    assert p.path == "spec.schedules.nightly.task"
    assert p.hint == "did you mean `report`?"


def test_a_five_field_cron_gets_the_six_field_form() -> None:
    p = problem('  tasks:\n    report: ["r"]\n  schedules:\n    nightly: {task: report, cron: "0 3 * * *"}\n')
    assert (p.path, p.line) == ("spec.schedules.nightly.cron", 8)
    assert "six" in p.message and p.hint == "did you mean '0 3 * * ? *'?"


def test_an_unknown_time_zone_gets_a_suggestion() -> None:
    p = problem(
        '  tasks:\n    report: ["r"]\n  schedules:\n'
        '    nightly: {task: report, cron: "0 3 * * ? *", timezone: Europe/Berln}\n'
    )
    assert p.path == "spec.schedules.nightly.timezone"
    assert "not an IANA time zone" in p.message and p.hint == "did you mean 'Europe/Berlin'?"


def test_a_time_zone_cannot_name_a_file() -> None:
    assert timezone_problem("../../etc/passwd") is not None
    assert timezone_problem("UTC") is None


@pytest.mark.parametrize(
    "expression",
    [
        "0 3 * * ? *",
        "*/15 * * * ? *",
        "0 9 ? * MON-FRI *",
        "0 9 ? * 2-6 *",
        "0 0 L * ? *",
        "0 0 15W * ? *",
        "0 0 ? * 6#3 *",
        "0 0 ? * FRIL *",
        "0 12 1,15 JAN,JUL ? 2027",
        "5/10 8-17 ? * MON *",
        "cron(0 3 * * ? *)",
    ],
)
def test_valid_aws_cron(expression: str) -> None:
    assert len(parse_cron(expression).split()) == 6


@pytest.mark.parametrize(
    ("expression", "message", "hint"),
    [
        ("0 3 * * * *", "exactly one of day-of-month and day-of-week", "'?'"),
        ("0 3 ? * ? *", "exactly one of day-of-month and day-of-week", "'?'"),
        ("60 3 * * ? *", "out of range for the minutes field", "0 to 59"),
        ("0 24 * * ? *", "out of range for the hours field", "0 to 23"),
        ("0 3 32 * ? *", "out of range for the day-of-month field", "1 to 31"),
        ("0 3 * 13 ? *", "out of range for the month field", "1 to 12"),
        ("0 3 ? * 8 *", "out of range for the day-of-week field", "1 = SUN"),
        ("0 3 * * ? 1969", "out of range for the year field", "1970"),
        ("0 ? * * ? *", "'?' is not allowed in the hours field", "day-of-month or day-of-week"),
        ("0 3 * FOO ? *", "'FOO' is not a value of the month field", "JAN-DEC"),
        ("*/0 3 * * ? *", "no valid step", "*/15"),
        ("0 3 * *", "has 4 fields", "0 3 * * ? *"),
        ("rate(5 minutes)", "not a cron expression", "six-field"),
        ("0 5-3 * * ? *", "runs backwards", "3-5"),
    ],
)
def test_invalid_aws_cron(expression: str, message: str, hint: str) -> None:
    with pytest.raises(CronError) as info:
        parse_cron(expression)
    assert message in info.value.message and hint in info.value.hint, (info.value.message, info.value.hint)


def test_a_unix_weekday_is_translated_in_the_hint() -> None:
    with pytest.raises(CronError) as info:
        parse_cron("30 2 * * 1-5")  # Unix: Monday to Friday
    assert info.value.hint == "did you mean '30 2 ? * 2-6 *'?"


def test_the_schema_describes_tasks_and_schedules() -> None:
    spec = schema_for("service")["$defs"]["ServiceSpec"]["properties"]
    assert {"tasks", "preDeploy", "schedules"} <= set(spec)
    command = spec["tasks"]["additionalProperties"]
    assert command["type"] == "array" and command["minItems"] == 1
    assert "pattern" in spec["schedules"]["propertyNames"]
