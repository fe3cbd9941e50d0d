"""A service repository on disk for CLI tests: a git checkout with an origin remote."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

LEMI_YML = """\
infra:
  repository: acme/infra
  path: services/{service}.tf
  merge_method: squash
domain: lemon
environments:
  staging:
    branch: develop
    region: us-east-1
    account_id: "111111111111"
    cluster: lemon-ecs-cluster
    role_arn: arn:aws:iam::111111111111:role/lemi-deployer
  prod:
    branch: main
    region: us-east-1
    account_id: "222222222222"
    cluster: lemon-ecs-cluster
    protected: true
"""


def make_checkout(path: Path, repo: str = "acme/demo-service") -> Path:
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["git", "init", "-q", str(path)], check=True)
    subprocess.run(["git", "-C", str(path), "remote", "add", "origin", f"git@github.com:{repo}.git"], check=True)
    return path


def write(root: Path, rel: str, text: str) -> Path:
    target = root / rel
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text, encoding="utf-8")
    return target


def service_checkout(
    tmp_path: Path, monkeypatch: Any, *, service_yaml: str, staging_yaml: str, lemi_yml: str,
    repo: str = "acme/demo-service",
) -> Path:  # fmt: skip
    """A git checkout of ``repo`` with deploy/demo-service/ and, beside it, lemi.yml: the CWD of a
    CLI test (a wide terminal, no LEMI_CONFIG or LEMI_DEBUG from the environment)."""
    monkeypatch.delenv("LEMI_CONFIG", raising=False)
    monkeypatch.delenv("LEMI_DEBUG", raising=False)
    monkeypatch.setenv("COLUMNS", "200")
    root = make_checkout(tmp_path / "demo-service", repo)
    write(root, "deploy/demo-service/service.yaml", service_yaml)
    write(root, "deploy/demo-service/environment/staging.yaml", staging_yaml)
    write(tmp_path, "lemi.yml", lemi_yml)
    monkeypatch.chdir(root)
    return root


def lemi_here(*argv: str) -> int:
    """``lemi --config ../lemi.yml ARGV`` in a :func:`service_checkout` (the CWD)."""
    from bot.cli import main

    return main(["--config", str(Path.cwd().parent / "lemi.yml"), *argv])
