"""Validate a loaded YAML document against a pydantic model, with positioned errors.

Models stay plain pydantic: strict types, ``extra="forbid"``, and custom
checks that raise :func:`fail`. This module turns pydantic's errors into
:class:`~bot.core.problems.Problem` values that name the file, line, column and
field, and says how to fix each one ("did you mean", "quote it", ...).
"""

from __future__ import annotations

import re
import types
import typing
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic_core import PydanticCustomError

from bot.core.names import did_you_mean
from bot.core.problems import Invalid, Problem
from bot.core.yamlsafe import BOOL, FLOAT, INT, NULL, TIMESTAMP, Document, describe_scalar

M = TypeVar("M", bound=BaseModel)


class StrictModel(BaseModel):
    """Base for every file model: strict types, unknown keys refused, immutable."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


def fail(message: str, hint: str = "", at: tuple[Any, ...] | None = None) -> PydanticCustomError:
    """An error for a custom check. ``at`` redirects it to a path below the current one."""
    ctx: dict[str, Any] = {"message": message, "hint": hint}
    if at is not None:
        ctx["at"] = at
    return PydanticCustomError("lemi", "{message}", ctx)


def validate(model: type[M], doc: Document, *, context: dict[str, Any] | None = None, what: str = "") -> M:
    if doc.value is None:
        raise Invalid([Problem(doc.file, "the file is empty", hint=f"it must hold {what or 'a YAML map'}")])
    try:
        return model.model_validate(doc.value, strict=True, context=context)
    except ValidationError as exc:
        problems = [_problem(model, doc, err) for err in exc.errors(include_url=False)]
        problems.sort(key=lambda p: (p.line, p.column))
        raise Invalid(problems) from None


def _problem(model: type[BaseModel], doc: Document, err: Any) -> Problem:
    loc = tuple(err["loc"])
    kind = err["type"]
    ctx = err.get("ctx") or {}
    is_key = False
    if "[key]" in loc:  # an invalid mapping key: point at the key itself
        loc = tuple(p for p in loc if p != "[key]")
        is_key = True
    if kind == "lemi":
        path = loc + tuple(ctx.get("at") or ())
        return doc.problem(path, ctx["message"], ctx.get("hint", ""), key=is_key)
    if kind == "extra_forbidden":
        allowed = _allowed_keys(model, loc[:-1])
        hint = did_you_mean(str(loc[-1]), allowed) or (
            f"allowed here: {', '.join(allowed)}" if allowed else "remove it"
        )
        return doc.problem(loc, f"unknown field {loc[-1]!r}", hint, key=True)
    if kind == "missing":
        parent = loc[:-1]
        return doc.problem(parent, f"missing required field {loc[-1]!r}", f"add `{loc[-1]}:` here")
    if kind in _TYPE_NAMES:
        return _type_problem(doc, loc, _TYPE_NAMES[kind], err.get("input"))
    if kind == "literal_error":
        expected = ctx.get("expected", "")
        scalar = doc.scalars.get(loc)
        given = describe_scalar(scalar) if scalar is not None else f"{err['input']!r} is not allowed"
        return doc.problem(loc, given, f"use one of {expected}")
    if kind in _BOUNDS:
        words, key = _BOUNDS[kind]
        return doc.problem(
            loc, f"{err['input']!r} is out of range ({words} {ctx[key]})", f"use a number {words} {ctx[key]}"
        )
    if kind == "too_short":
        return doc.problem(loc, "this needs at least one entry", "add one; see the README for an example")
    if kind == "too_long":
        return doc.problem(loc, "this has too many entries", "remove some")
    return doc.problem(loc, err["msg"], "")


_BOUNDS = {
    "greater_than_equal": ("of at least", "ge"),
    "less_than_equal": ("of at most", "le"),
    "greater_than": ("above", "gt"),
    "less_than": ("below", "lt"),
}

_TYPE_NAMES = {
    "string_type": "a string",
    "int_type": "a whole number",
    "int_from_float": "a whole number",
    "bool_type": "true or false",
    "dict_type": "a map of `key: value` lines",
    "model_type": "a map of `key: value` lines",
    "list_type": "a list",
    "float_type": "a number",
}


def _type_problem(doc: Document, loc: tuple[Any, ...], expected: str, given: Any) -> Problem:
    scalar = doc.scalars.get(loc)
    if scalar is not None and expected == "a string":
        if scalar.tag in (BOOL, INT, FLOAT, TIMESTAMP):
            return doc.problem(loc, f"expected a string, but {describe_scalar(scalar)}", f'quote it: "{scalar.text}"')
        if scalar.tag == NULL:
            return doc.problem(loc, "expected a string, but the value is empty", 'write a value, or "" for empty')
    if scalar is not None and scalar.tag == NULL:
        return doc.problem(loc, f"expected {expected}, but the value is empty", "write a value or remove the field")
    if scalar is not None:  # a YAML boolean, number or date where something else is meant
        return doc.problem(loc, f"expected {expected}, but {describe_scalar(scalar)}", _fix_for(expected))
    if isinstance(given, str) and expected in ("a whole number", "a number"):
        if _is_number(given):
            return doc.problem(
                loc, f"expected {expected}, but {given!r} is a string", f"write it without quotes: {given}"
            )
        return doc.problem(loc, f"expected {expected}, but got the text {given!r}", "write a number, e.g. 1")
    if isinstance(given, str) and expected == "true or false":
        return doc.problem(
            loc, f"expected true or false, but {given!r} is a string", "write true or false without quotes"
        )
    return doc.problem(loc, f"expected {expected}, got {_describe(given)}", "")


def _fix_for(expected: str) -> str:
    return {
        "true or false": "write true or false",
        "a whole number": "write a whole number, e.g. 1",
        "a number": "write a number",
    }.get(expected, f"write {expected}")


_NUMBER_RE = re.compile(r"[-+]?[0-9]+(?:\.[0-9]+)?")


def _is_number(text: str) -> bool:
    """Would this text be a number if its quotes were dropped? (plain decimals only)"""
    return bool(_NUMBER_RE.fullmatch(text.strip()))


def _describe(value: Any) -> str:
    if isinstance(value, dict):
        return "a map"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return f"the string {value!r}"
    return repr(value)


def _allowed_keys(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """The keys a model accepts at a path (for "did you mean")."""
    current: Any = model
    for part in loc:
        current = _unwrap(current)
        if isinstance(current, type) and issubclass(current, BaseModel):
            field = next((f for n, f in current.model_fields.items() if (f.alias or n) == part), None)
            if field is None:
                return []
            current = field.annotation
        elif typing.get_origin(current) is dict:
            current = typing.get_args(current)[1]
        else:
            return []
    current = _unwrap(current)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return [f.alias or n for n, f in current.model_fields.items()]
    return []


def _unwrap(tp: Any) -> Any:
    """Optional[X] / Annotated[X, ...] -> X."""
    while True:
        origin = typing.get_origin(tp)
        if origin is typing.Annotated:
            tp = typing.get_args(tp)[0]
        elif origin in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(tp) if a is not type(None)]
            if len(args) != 1:
                return tp
            tp = args[0]
        else:
            return tp
