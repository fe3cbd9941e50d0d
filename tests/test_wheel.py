"""lemi as pipx and `uv tool install` install it: a wheel built from this tree, installed into a
fresh virtual environment, away from the source tree, carries its templates and app.yml and runs.

Offline: the wheel is built by the pinned hatchling of the venv (no build isolation), and the
fresh venv borrows the third-party packages of this venv through a path file (pipx would fetch
them from the index) -- never lemi itself, which comes from the wheel alone."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "--no-index",
         "--wheel-dir", str(out), str(ROOT)],
        check=True, timeout=120, capture_output=True,
    )  # fmt: skip
    (built,) = out.glob("lemi-*.whl")
    return built


def test_the_wheel_holds_the_templates_and_the_manifest(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    templates = {p.relative_to(ROOT / "templates").as_posix() for p in (ROOT / "templates").rglob("*") if p.is_file()}
    assert templates and {f"bot/templates/{t}" for t in templates} <= names
    assert "bot/app.yml" in names and "bot/cli/__init__.py" in names and "handlers/__init__.py" in names
    assert not any(n.startswith(("tests/", "tools/")) for n in names)
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    assert "lemi = bot.cli:entrypoint" in zipfile.ZipFile(wheel).read(entry_points).decode()


def test_installed_from_the_wheel_lemi_runs(wheel: Path, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=60)
    python = venv / "bin" / "python"
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet", "--no-deps", "--no-index",
         str(wheel)],
        check=True, timeout=60, capture_output=True,
    )  # fmt: skip
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip
    # the dependencies, from this venv's site-packages (a path line: its own .pth files, among them
    # the editable lemi's, are not read)
    Path(site, "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    lemi = venv / "bin" / "lemi"
    away = tmp_path / "elsewhere"
    away.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "LEMI_CONFIG")}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(lemi), *args], cwd=away, env=env, capture_output=True, text=True, timeout=60)

    version = run("--version")
    assert version.returncode == 0 and version.stdout.strip() == "lemi, version 0.1.0"
    where = subprocess.run(
        [str(python), "-c", "import bot, bot.core.templating as t; print(bot.__file__); print(t.templates_dir())"],
        cwd=away, env=env, capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    assert all(line.startswith(site) for line in where), where  # lemi from the wheel, not this tree
    helped = run("--help")
    assert helped.returncode == 0 and "config" in helped.stdout and "service" in helped.stdout
    # a command that renders templates: the scaffold of a new service
    checkout = away / "demo-service"
    checkout.mkdir()
    subprocess.run(["git", "init", "--quiet", str(checkout)], check=True)
    made = subprocess.run(
        [str(lemi), "service", "new", "--service", "demo-service", "--owner", "infra", "--repo", "acme/demo-service"],
        cwd=checkout, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    assert (checkout / "deploy" / "demo-service" / "service.yaml").is_file()
