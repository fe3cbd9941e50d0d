"""Positioned, user-facing problems: what is wrong, where, and how to fix it.

Every check in lemi that looks at a user's file reports a :class:`Problem`.
The CLI prints them, the App turns them into check-run annotations; both
read the same fields, so the wording is written once.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from bot.core.errors import UserError


@dataclass(frozen=True, slots=True)
class Problem:
    file: str
    message: str
    line: int = 1  # 1-based
    column: int = 1  # 1-based
    path: str = ""  # dotted field path, e.g. "spec.resource.cpu"
    hint: str = ""

    def render(self) -> str:
        where = f"{self.file}:{self.line}:{self.column}"
        field_ = f" {self.path}:" if self.path else ""
        text = f"{where}:{field_} {self.message}"
        if self.hint:
            text += f"\n    hint: {self.hint}"
        return text

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Invalid(UserError):
    """Raised when a file (or several) cannot be accepted; carries every problem found (a
    :class:`UserError`: the files must change before trying again helps)."""

    problems: list[Problem] = field(default_factory=list)

    def __str__(self) -> str:
        return "\n".join(p.render() for p in self.problems)


def dotted(path: tuple[Any, ...] | list[Any]) -> str:
    """Render a field path: ("spec", "resource", "cpu") -> "spec.resource.cpu"."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def problems_text(n: int) -> str:
    """'1 problem', '3 problems'."""
    return f"{n} problem{'s' if n != 1 else ''}"
