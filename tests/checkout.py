"""A service repository on disk for CLI tests: a git checkout with an origin remote."""

from __future__ import annotations

import subprocess
from pathlib import Path

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
