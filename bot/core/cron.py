"""AWS's six-field cron expressions and IANA time zones, as EventBridge Scheduler reads them.

``minutes hours day-of-month month day-of-week year``, for example ``0 3 * * ? *`` (03:00 every
day). The API stand-in the tests use accepts anything, so lemi checks what AWS would refuse, and
says how to fix it, before a schedule reaches AWS:

* every field's values and ranges (month and weekday names too: ``JAN``, ``MON-FRI``);
* ``, - * /`` everywhere, ``?`` only in day-of-month or day-of-week, ``L`` and ``W`` in
  day-of-month, ``L`` and ``#`` in day-of-week;
* exactly one of day-of-month and day-of-week is ``?`` (AWS refuses both and neither);
* a five-field Unix cron gets the six-field form it probably meant as a hint.

Pure: strings in, an error message and hint (or the normalised expression) out.
"""

from __future__ import annotations

import difflib
import re
import zoneinfo
from dataclasses import dataclass
from functools import cache

FIELDS = ("minutes", "hours", "day-of-month", "month", "day-of-week", "year")
MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
WEEKDAYS = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")  # AWS: 1 = SUN … 7 = SAT
MAX_LENGTH = 256


@dataclass(frozen=True)
class _Field:
    name: str
    low: int
    high: int
    names: tuple[str, ...] = ()  # names for low..low+len-1
    special: str = ""  # extra forms: ? L W #


_FIELDS = (
    _Field("minutes", 0, 59),
    _Field("hours", 0, 23),
    _Field("day-of-month", 1, 31, special="?LW"),
    _Field("month", 1, 12, MONTHS),
    _Field("day-of-week", 1, 7, WEEKDAYS, special="?L#"),
    _Field("year", 1970, 2199),
)


class CronError(ValueError):
    def __init__(self, message: str, hint: str) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


def parse_cron(text: str) -> str:
    """The expression's six fields, normalised to single spaces (``cron(…)`` unwrapped).

    Raises :class:`CronError` with what is wrong and how to fix it.
    """
    expression = text.strip()
    if expression.startswith("rate(") or expression.startswith("at("):
        raise CronError(
            f"{text!r} is not a cron expression",
            "schedules take AWS's six-field cron form, e.g. '0 3 * * ? *' for 03:00 every day",
        )
    if expression.startswith("cron(") and expression.endswith(")"):
        expression = expression[5:-1].strip()
    if len(expression) > MAX_LENGTH:
        raise CronError("the cron expression is too long", f"keep it under {MAX_LENGTH} characters")
    parts = expression.split()
    if len(parts) == 5:
        raise CronError(
            f"{text!r} has five fields; AWS cron has six: minutes hours day-of-month month day-of-week year",
            f"did you mean {_six_fields(parts)!r}?",
        )
    if len(parts) != 6:
        raise CronError(
            f"{text!r} has {len(parts)} fields; AWS cron has six: minutes hours day-of-month month day-of-week year",
            "e.g. '0 3 * * ? *' for 03:00 every day, '*/15 * * * ? *' every 15 minutes",
        )
    for field, part in zip(_FIELDS, parts, strict=True):
        _check_field(field, part)
    day_of_month, day_of_week = parts[2], parts[4]
    if (day_of_month == "?") == (day_of_week == "?"):
        raise CronError(
            f"{text!r}: exactly one of day-of-month and day-of-week must be '?'",
            "AWS needs '?' in the one you don't use, e.g. '0 3 * * ? *' (every day) or '0 3 ? * MON-FRI *'",
        )
    return " ".join(parts)


def _six_fields(parts: list[str]) -> str:
    minutes, hours, dom, month, dow = parts
    if dow in ("*", "?"):
        dow = "?"
        dom = "*" if dom in ("*", "?") else dom
    else:
        dow = re.sub(r"\d", lambda m: str((int(m.group()) % 7) + 1), dow)  # Unix 0-6 (SUN=0) -> AWS 1-7
        dom = "?"
    return f"{minutes} {hours} {dom} {month} {dow} *"


def _check_field(field: _Field, part: str) -> None:
    upper = part.upper()
    if part == "?":
        if "?" not in field.special:
            raise CronError(
                f"'?' is not allowed in the {field.name} field", "use '?' only in day-of-month or day-of-week"
            )
        return
    if field.name == "day-of-month" and re.fullmatch(r"L|LW|\d{1,2}W", upper):
        if upper.endswith("W") and upper not in ("LW",):
            _number(field, upper[:-1])
        return
    if field.name == "day-of-week" and re.fullmatch(r"[A-Z0-9]{1,3}L|L|[A-Z0-9]{1,3}#[1-5]", upper):
        if upper != "L":
            _number(field, re.split(r"[L#]", upper)[0])
        return
    for item in part.split(","):
        _check_item(field, item)


def _check_item(field: _Field, item: str) -> None:
    base, slash, step = item.partition("/")
    if slash:
        if not step.isdigit() or int(step) == 0:
            raise CronError(
                f"{item!r} in the {field.name} field has no valid step after '/'", "e.g. '*/15' for every 15th"
            )
    if base == "*":
        return
    low_text, dash, high_text = base.partition("-")
    low = _number(field, low_text)
    if dash:
        high = _number(field, high_text)
        if high < low and field.name not in ("day-of-week",):
            raise CronError(
                f"the range {base!r} in the {field.name} field runs backwards", f"write it low-high, e.g. {high}-{low}"
            )


def _number(field: _Field, text: str) -> int:
    upper = text.upper()
    if field.names and upper in field.names:
        return field.low + field.names.index(upper)
    if not text.isdigit():
        allowed = f"{field.low}-{field.high}"
        if field.names:
            allowed += f" or {field.names[0]}-{field.names[-1]}"
        raise CronError(f"{text!r} is not a value of the {field.name} field", f"use {allowed}, '*', ',', '-' or '/'")
    value = int(text)
    if not field.low <= value <= field.high:
        hint = f"the {field.name} field runs from {field.low} to {field.high}"
        if field.name == "day-of-week":
            hint += " (1 = SUN, 7 = SAT), or use SUN-SAT"
        raise CronError(f"{value} is out of range for the {field.name} field", hint)
    return value


@cache
def _zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def timezone_problem(name: str) -> tuple[str, str] | None:
    """What is wrong with ``name`` as an IANA time zone, and the hint; None when it is one."""
    zones = _zones()
    if name == "UTC" or name in zones:
        return None
    if not zones and re.fullmatch(r"[A-Za-z][A-Za-z0-9_+-]*(?:/[A-Za-z0-9_+-]+){0,2}", name):
        return None  # no time-zone database here: the shape is all that can be checked
    lowered = {z.lower(): z for z in zones}
    close = [lowered[name.lower()]] if name.lower() in lowered else difflib.get_close_matches(name, sorted(zones), 1)
    hint = (
        f"did you mean {close[0]!r}?"
        if close
        else "use an IANA name such as UTC, Europe/Berlin or America/Argentina/Buenos_Aires"
    )
    return f"{name!r} is not an IANA time zone", hint
