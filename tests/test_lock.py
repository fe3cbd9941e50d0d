"""requirements.lock (what `make` installs, `make lock` writes) keeps up with pyproject.toml.

Every dependency pyproject.toml names (runtime, the test extra, the build backend) must be
pinned in the lock, at a release its specifier allows (so a floor raised past an advisory is
a floor the venv really has), and every pin must carry hashes, because `make` installs the
lock with ``pip install --require-hashes``.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
FIX = "run `make lock` and commit requirements.lock with pyproject.toml"


@dataclass(frozen=True)
class Pin:
    line: int
    name: str
    version: Version
    marker: str
    hashes: int


def declared(pyproject: dict) -> Iterator[tuple[str, Requirement]]:
    """(where in pyproject.toml, requirement) for everything the lock must pin."""
    for text in pyproject.get("build-system", {}).get("requires", []):
        yield "[build-system] requires", Requirement(text)
    for text in pyproject["project"].get("dependencies", []):
        yield "[project] dependencies", Requirement(text)
    for extra, texts in pyproject["project"].get("optional-dependencies", {}).items():
        for text in texts:
            yield f"[project.optional-dependencies] {extra}", Requirement(text)
    for group, texts in pyproject.get("dependency-groups", {}).items():
        for text in texts:
            if isinstance(text, str):  # {include-group = ...} tables name no package
                yield f"[dependency-groups] {group}", Requirement(text)


def pins(lock: str) -> tuple[dict[str, list[Pin]], list[str]]:
    """The lock's pins by canonical name (several when markers split one package), and its problems."""
    found: dict[str, list[Pin]] = {}
    problems: list[str] = []
    entry: list[str] = []
    start = 0
    for number, raw in enumerate([*lock.splitlines(), ""], start=1):
        line = raw.split(" #", 1)[0].strip() if not raw.lstrip().startswith("#") else ""
        if entry and not (raw.startswith((" ", "\t")) and line):
            text = " ".join(entry).replace("\\", " ")
            requirement, *hashes = text.split("--hash=")
            try:
                req = Requirement(requirement.strip())
            except InvalidRequirement as exc:
                problems.append(f"requirements.lock line {start}: not a requirement ({exc}): {FIX}")
            else:
                exact = [s for s in req.specifier if s.operator == "=="]
                if len(exact) != 1 or len(req.specifier) != 1:
                    problems.append(f"requirements.lock line {start}: {req} is not pinned with ==: {FIX}")
                else:
                    name = canonicalize_name(req.name)
                    pin = Pin(start, name, Version(exact[0].version), str(req.marker or ""), len(hashes))
                    found.setdefault(name, []).append(pin)
                    if not hashes:
                        problems.append(f"requirements.lock line {start}: {req} has no --hash: {FIX}")
            entry = []
        if line and not raw.startswith((" ", "\t")):
            entry, start = [line], number
        elif line and entry:
            entry.append(line)
    return found, problems


def disagreements(pyproject_text: str, lock_text: str) -> list[str]:
    """What in requirements.lock does not match pyproject.toml, one sentence each (none: they agree)."""
    found, problems = pins(lock_text)
    for where, req in declared(tomllib.loads(pyproject_text)):
        locked = found.get(canonicalize_name(req.name), [])
        if not locked:
            problems.append(f"pyproject.toml {where} names {req}, which requirements.lock does not pin: {FIX}")
        for pin in locked:
            if not req.specifier.contains(pin.version, prereleases=True):
                problems.append(
                    f"requirements.lock line {pin.line} pins {pin.name}=={pin.version}, which "
                    f"pyproject.toml {where} does not allow ({req}): {FIX}"
                )
    return problems


def test_the_lock_pins_every_dependency_of_pyproject_at_an_allowed_release() -> None:
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    lock = (ROOT / "requirements.lock").read_text(encoding="utf-8")
    assert disagreements(pyproject, lock) == []
    found, _ = pins(lock)
    assert len(found) > 50  # the whole tree was read, not just its first entry


def test_the_lock_pins_what_the_build_backend_asks_for(monkeypatch: pytest.MonkeyPatch) -> None:
    """`make` installs lemi with --no-build-isolation, so the lock's hatchling builds it, and whatever
    hatchling asks a build frontend for (editables, for an editable install) must be pinned too."""
    try:
        import hatchling.build as backend
    except ImportError:
        pytest.fail("hatchling is not in this venv: `make venv` installs it from requirements.lock")
    monkeypatch.chdir(ROOT)
    asked = [
        Requirement(r) for r in (*backend.get_requires_for_build_editable(), *backend.get_requires_for_build_wheel())
    ]
    assert asked  # editables: there is something to check
    found, _ = pins((ROOT / "requirements.lock").read_text(encoding="utf-8"))
    for req in asked:
        locked = found.get(canonicalize_name(req.name), [])
        assert locked, f"hatchling asks for {req}, which requirements.lock does not pin: put it in the build group"
        assert all(req.specifier.contains(pin.version, prereleases=True) for pin in locked), (req, locked)


PYPROJECT = """
[build-system]
requires = ["hatchling>=1.25"]
[project]
name = "x"
dependencies = ["h11>=0.16", "pyjwt[crypto]>=2.15"]
[project.optional-dependencies]
test = ["pytest>=8"]
"""

LOCK = """\
# This file was autogenerated by uv via the following command:
#    make lock
h11==0.16.0 \\
    --hash=sha256:aaaa \\
    --hash=sha256:bbbb
    # via x (pyproject.toml)
hatchling==1.33.0 \\
    --hash=sha256:cccc
pyjwt==2.15.1 \\
    --hash=sha256:dddd
    # via
    #   x (pyproject.toml)
    #   other
pytest==9.2.0 ; python_full_version >= '3.11' \\
    --hash=sha256:eeee
"""


def test_a_lock_that_matches_has_nothing_to_say() -> None:
    assert disagreements(PYPROJECT, LOCK) == []


def test_a_dependency_the_lock_does_not_pin_is_named() -> None:
    lock = LOCK.replace("h11==0.16.0", "h12==0.16.0")
    assert disagreements(PYPROJECT, lock) == [
        f"pyproject.toml [project] dependencies names h11>=0.16, which requirements.lock does not pin: {FIX}"
    ]


def test_a_pin_below_a_floor_is_named_with_its_line() -> None:
    lock = LOCK.replace("h11==0.16.0", "h11==0.14.0").replace("pytest==9.2.0", "pytest==7.4.0")
    assert disagreements(PYPROJECT, lock) == [
        f"requirements.lock line 3 pins h11==0.14.0, which pyproject.toml [project] dependencies does not "
        f"allow (h11>=0.16): {FIX}",
        f"requirements.lock line 14 pins pytest==7.4.0, which pyproject.toml "
        f"[project.optional-dependencies] test does not allow (pytest>=8): {FIX}",
    ]


@pytest.mark.parametrize(
    ("lock", "problem"),
    [
        (LOCK.replace("hatchling==1.33.0 \\\n    --hash=sha256:cccc", "hatchling==1.33.0"), "has no --hash"),
        (LOCK.replace("hatchling==1.33.0", "hatchling>=1.33.0"), "is not pinned with =="),
    ],
)
def test_a_pin_pip_would_refuse_under_require_hashes_is_named(lock: str, problem: str) -> None:
    first, *_ = disagreements(PYPROJECT, lock)
    assert first.startswith("requirements.lock line 7: ") and problem in first
