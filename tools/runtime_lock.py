"""The part of requirements.lock that lemi needs at run time, for the image (Dockerfile).

requirements.lock pins every dependency of lemi, its tests and its build, each with its hashes.
The image's build stage installs all of it (hashes checked) to build lemi's wheel, then runs
this module with that environment to print the lock's entries that lemi's own dependencies
(pyproject.toml's ``[project] dependencies``, with their extras) need on this platform, as they
are written in the lock: the runtime stage installs exactly those with ``--require-hashes
--no-deps``, so it holds no test or build package and nothing unpinned or unhashed.

    python -m tools.runtime_lock requirements.lock pyproject.toml > runtime.lock
"""

from __future__ import annotations

import re
import sys
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

_ENTRY_RE = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==", re.M)


def entries(lock: str) -> dict[str, list[str]]:
    """The lock's entries (a pin, its hashes and its `# via` lines) by package name; a package may
    have several, one per environment marker."""
    starts = [m.start() for m in _ENTRY_RE.finditer(lock)]
    out: dict[str, list[str]] = {}
    for start, end in zip(starts, [*starts[1:], len(lock)], strict=True):
        text = lock[start:end].rstrip("\n") + "\n"
        name = _ENTRY_RE.match(text)
        assert name is not None
        out.setdefault(canonicalize_name(name.group(1)), []).append(text)
    return out


def _wanted(requirement: Requirement, extras: frozenset[str]) -> bool:
    marker = requirement.marker
    return marker is None or any(marker.evaluate({"extra": extra}) for extra in extras | {""})


def closure(roots: list[str]) -> set[str]:
    """The names of the roots and of everything they require here, through the installed metadata."""
    found: set[str] = set()
    seen: set[tuple[str, frozenset[str]]] = set()
    todo = [(Requirement(r), frozenset[str]()) for r in roots]
    while todo:
        requirement, parent_extras = todo.pop()
        if not _wanted(requirement, parent_extras):
            continue
        name = canonicalize_name(requirement.name)
        extras = frozenset(requirement.extras)
        if (name, extras) in seen:
            continue
        seen.add((name, extras))
        found.add(name)
        try:
            requires = metadata.distribution(name).requires or []
        except metadata.PackageNotFoundError:
            raise SystemExit(
                f"{name} is needed at run time but not installed: install requirements.lock first"
            ) from None
        todo.extend((Requirement(r), extras) for r in requires)
    return found


def runtime_lock(lock: str, pyproject: str) -> str:
    roots = tomllib.loads(pyproject)["project"]["dependencies"]
    pinned = entries(lock)
    names = closure(roots)
    missing = sorted(names - set(pinned))
    if missing:
        raise SystemExit(f"requirements.lock has no pin for {', '.join(missing)}: run `make lock`")
    body = "".join(text for name in sorted(names) for text in pinned[name])
    return "# lemi's run-time part of requirements.lock (python -m tools.runtime_lock)\n" + body


def main(argv: list[str]) -> None:
    lock, pyproject = (Path(p).read_text(encoding="utf-8") for p in (argv or ["requirements.lock", "pyproject.toml"]))
    sys.stdout.write(runtime_lock(lock, pyproject))


if __name__ == "__main__":
    main(sys.argv[1:])
