"""How the CLI reports a failure: with ``--output json`` a JSON document of a stable shape on
stdout (bot/cli/failures.py), a network failure naming the host it could not reach (never "a
bug in lemi"), and one spelling per option across commands.

AWS is moto's server (or an address where nothing listens); GitHub the fake, or nothing.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path

import aws_world
import pytest
from aws_world import CLUSTER, SERVICE
from checkout import make_checkout, write

import bot.aws.clients as clients_module
import bot.cli.workspace
from bot.aws.errors import translate as translate_aws
from bot.cli import main
from bot.github.errors import translate as translate_github

NOWHERE = "127.0.0.1:9"  # the discard port: nothing listens there


@pytest.fixture
def checkout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("LEMI_DEBUG", raising=False)
    root = make_checkout(tmp_path / "demo-service", "acme/demo-service")
    write(root, "deploy/demo-service/service.yaml", aws_world.SERVICE_YAML)
    write(root, "deploy/demo-service/environment/staging.yaml", aws_world.STAGING_YAML)
    monkeypatch.setenv("LEMI_CONFIG", str(write(tmp_path, "lemi.yml", aws_world.LEMI_YML)))
    monkeypatch.chdir(root)
    return root


def json_failure(capsys: pytest.CaptureFixture[str]) -> dict[str, object]:
    out, err = capsys.readouterr()
    assert err == ""  # all of it on stdout, as one document
    data = json.loads(out)
    assert data["ok"] is False and isinstance(data["error"], str) and data["error"]
    assert "hint" in data and data["kind"] in ("usage", "user", "transient", "bug")
    return data


def test_json_error_when_aws_refuses(moto_reset: str, checkout: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # no cluster in moto: ECS answers ClusterNotFoundException
    assert main(["service", "status", "-s", SERVICE, "--output", "json"]) == 1
    data = json_failure(capsys)
    assert data["kind"] == "user" and data["code"] == "ClusterNotFoundException"
    assert data["operation"] == "DescribeServices"
    assert "ClusterNotFoundException" in str(data["error"])


def test_json_error_when_aws_cannot_be_reached_names_the_host(
    moto_reset: str, checkout: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://{NOWHERE}")
    monkeypatch.setattr(  # one attempt, not five with backoff
        clients_module, "CLIENT_CONFIG",
        clients_module.CLIENT_CONFIG.merge(clients_module.AioConfig(retries={"mode": "standard", "max_attempts": 1})),
    )  # fmt: skip
    assert main(["service", "list-tasks", "-s", SERVICE, "--output", "json"]) == 1
    data = json_failure(capsys)
    assert data["kind"] == "transient" and NOWHERE in str(data["error"])
    # and as text
    assert main(["service", "list-tasks", "-s", SERVICE]) == 1
    out, err = capsys.readouterr()
    assert err.startswith("error: ") and NOWHERE in err and "bug in lemi" not in err and out == ""


def test_json_error_of_a_usage_error_found_by_the_command(checkout: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["service", "status", "-e", "qa", "--output", "json"]) == 2
    data = json_failure(capsys)
    assert data["kind"] == "usage" and "no environment 'qa' in lemi.yml" in str(data["error"])
    assert main(["service", "status", "-c", "elsewhere", "--output", "json"]) == 2
    data = json_failure(capsys)
    assert f"lemi.yml says '{CLUSTER}'" in str(data["error"])


def test_json_error_when_github_cannot_be_reached(
    checkout: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("GITHUB_API_URL", f"http://{NOWHERE}")
    monkeypatch.setenv("GH_AUTH_TOKEN", "ghp_unused")
    assert main(["provision", "--pr", "1", "--repo", "demo-service", "--output", "json"]) == 1
    data = json_failure(capsys)
    assert data["kind"] == "transient" and NOWHERE in str(data["error"]) and "GitHub" in str(data["error"])


def test_a_timeout_names_the_host() -> None:
    github = translate_github(TimeoutError(), "api.github.com")
    assert str(github) == "GitHub at api.github.com could not be reached: no answer in time"
    aws = translate_aws(TimeoutError(), "ecs.us-east-1.amazonaws.com")
    assert str(aws) == "AWS at ecs.us-east-1.amazonaws.com could not be reached: TimeoutError"


def test_a_network_error_no_adapter_translated_is_not_a_bug(
    checkout: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def unresolved(*args: object, **kwargs: object) -> Path:
        raise socket.gaierror(-2, "Name or service not known")

    monkeypatch.setattr(bot.cli.workspace, "repo_root", unresolved)
    assert main(["verify"]) == 1
    out, err = capsys.readouterr()
    assert err.startswith("error: the network failed: ") and "Name or service not known" in err
    assert "hint: check the network" in err and "bug in lemi" not in err and "Traceback" not in err
    assert main(["verify", "--output", "json"]) == 1
    assert json_failure(capsys)["kind"] == "transient"


def test_assume_role_uses_the_environment_region(
    moto_reset: str, checkout: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    """With a role_arn and no region in the environment variables, STS is called in lemi.yml's
    region (it was called with none: "no AWS region configured", and a logged traceback)."""
    aws_world.build(moto_reset)
    with_role = aws_world.LEMI_YML.replace(
        f"    cluster: {CLUSTER}\n  prod:",
        f"    cluster: {CLUSTER}\n    role_arn: arn:aws:iam::{aws_world.ACCOUNT}:role/lemi-deployer\n  prod:",
    )
    monkeypatch.setenv("LEMI_CONFIG", str(write(tmp_path, "role.yml", with_role)))
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    monkeypatch.delenv("AWS_REGION")
    assert main(["service", "status", "-s", SERVICE, "--output", "json"]) == 0, capsys.readouterr()
    out, err = capsys.readouterr()
    assert json.loads(out)["service"] == SERVICE and err == ""


def test_one_spelling_of_the_task_option(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["service", "exec", "--help"], ["service", "stop-task", "--help"]):
        assert main(argv) == 0
        out = capsys.readouterr().out
        assert "--task-id" in out and "--task " not in out


def test_compile_and_verify_default_to_the_first_unprotected_environment(
    checkout: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["compile", "-t", "v1", "-o", "-"]) == 0
    assert json.loads(capsys.readouterr().out)["family"] == f"{SERVICE}-staging"


def test_output_before_the_command(checkout: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--output", "json", "service", "status", "-e", "qa"]) == 2
    assert "no environment 'qa'" in str(json_failure(capsys)["error"])
    assert main(["--output", "json", "config", "check"]) == 0
    assert json.loads(capsys.readouterr().out)["ok"] is True
    assert main(["--output", "json", "config", "check", "--output", "text"]) == 0  # the command's own wins
    assert capsys.readouterr().out.startswith("ok: infra repository acme/infra")
