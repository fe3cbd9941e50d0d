"""A command's arguments as lemi reads them before click does.

* ``-s=NAME`` is ``-s NAME`` (click would keep the ``=`` in the value of a short option); only
  for the command's own short options that take a value;
* ``--config PATH`` (a group option) is accepted after the subcommand too.

Both stop at ``--`` and, in a command that takes a command line of its own (``lemi service exec
... /bin/bash -c=x``), at its first positional argument: what follows is that command's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import click

GROUP_OPTIONS = ("--config",)


@dataclass(frozen=True)
class Parsed:
    args: list[str]
    config: str | None  # --config given after the subcommand


def _value_options(command: click.Command) -> tuple[set[str], set[str]]:
    """(short options taking a value, all options taking a value) of ``command``."""
    short: set[str] = set()
    every: set[str] = set()
    for param in command.params:
        if not isinstance(param, click.Option) or param.is_flag or param.count:
            continue
        for opt in param.opts:  # secondary_opts are the --no-x of flags only
            every.add(opt)
            if len(opt) == 2 and opt[0] == "-" and opt[1] != "-":
                short.add(opt)
    return short, every


def _variadic(command: click.Command) -> bool:
    return any(isinstance(p, click.Argument) and p.nargs == -1 for p in command.params)


def normalise(command: click.Command, args: Sequence[str]) -> Parsed:
    """``args`` of ``command`` with ``-x=value`` split and a trailing ``--config`` taken out."""
    short, every = _value_options(command)
    own = {opt for p in command.params for opt in getattr(p, "opts", [])}
    hoisted = [g for g in GROUP_OPTIONS if g not in own]
    out: list[str] = []
    config: str | None = None
    items = list(args)
    i = 0
    while i < len(items):
        token = items[i]
        if token == "--":
            out.extend(items[i:])
            break
        name, eq, value = token.partition("=")
        if name in hoisted:
            if eq:
                config = value
                i += 1
            elif i + 1 < len(items):
                config = items[i + 1]
                i += 2
            else:  # `--config` with nothing after it: click says what is missing
                out.append(token)
                i += 1
            continue
        if eq and name in short:
            out.extend([name, value])
        elif token in every and i + 1 < len(items):
            out.extend([token, items[i + 1]])
            i += 1
        elif not token.startswith("-") and _variadic(command):
            out.extend(items[i:])  # the command's own command line: left as it is
            break
        else:
            out.append(token)
        i += 1
    return Parsed(out, config)
