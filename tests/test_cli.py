"""The CLI shell: help, exit codes (0 ok, 1 invalid, 2 usage), JSON output, no tracebacks."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
from checkout import LEMI_YML, make_checkout, write

import bot.cli.files
from bot.cli import main
from bot.cli.workspace import parse_remote

SERVICE = """\
name: demo-service
owner: infra
spec:
  desiredCount: 1
  image: demo-service
  resource:
    cpu: 512
    memory: 1024
"""

# every command a user can see; a command that is not built must not be listed
COMMANDS = {
    "compile",
    "config",
    "deploy",
    "diff",
    "doctor",
    "logs",
    "provision",
    "run",
    "schema",
    "serve",
    "service",
    "verify",
    "worker",
}
SERVICE_COMMANDS = {"deploy", "exec", "list-tasks", "new", "prune", "restart", "rollback", "status", "stop-task"}


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("LEMI_CONFIG", raising=False)
    monkeypatch.delenv("LEMI_DEBUG", raising=False)
    root = make_checkout(tmp_path / "demo-service")
    monkeypatch.chdir(root)
    write(root, "deploy/demo-service/service.yaml", SERVICE)
    return root


def test_help_lists_exactly_the_built_commands(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    listed = {line.split()[0] for line in out.split("Commands:")[1].splitlines() if line.strip()}
    assert listed == COMMANDS
    assert main(["service", "--help"]) == 0
    out = capsys.readouterr().out
    assert {line.split()[0] for line in out.split("Commands:")[1].splitlines() if line.strip()} == SERVICE_COMMANDS


@pytest.mark.parametrize(
    "argv",
    [
        ["verify"],
        ["compile"],
        ["deploy"],
        ["diff"],
        ["logs"],
        ["run"],
        ["schema"],
        ["serve"],
        ["worker"],
        ["config", "check"],
    ]
    + [["service", name] for name in sorted(SERVICE_COMMANDS)],
)
def test_every_command_has_help(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv + ["--help"]) == 0
    assert "Usage: lemi " + " ".join(argv) in capsys.readouterr().out


def test_verify_ok(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["verify", "--check", "spec"]) == 0
    assert "ok: demo-service" in capsys.readouterr().out


def test_verify_reports_every_problem_with_position_and_exits_1(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write(repo, "deploy/demo-service/service.yaml", SERVICE.replace("memory: 1024", "memory: 8192"))
    write(repo, "deploy/demo-service/environment/staging.yaml", "variables:\n  COUNTRY: no\n")
    assert main(["verify"]) == 1
    err = capsys.readouterr().err
    assert "deploy/demo-service/service.yaml:8:13: spec.resource.memory: memory 8192 does not go with cpu 512" in err
    assert "deploy/demo-service/environment/staging.yaml:2:12: variables.COUNTRY: expected a string" in err
    assert 'hint: quote it: "no"' in err
    assert "2 problems found" in err
    assert "Traceback" not in err


def test_verify_json_output(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write(repo, "deploy/demo-service/service.yaml", SERVICE.replace("owner: infra", "ownr: infra"))
    assert main(["verify", "--output", "json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is False
    [problem] = [p for p in report["problems"] if p["path"] == "ownr"]
    assert problem == {
        "file": "deploy/demo-service/service.yaml",
        "line": 2,
        "column": 1,
        "path": "ownr",
        "message": "unknown field 'ownr'",
        "hint": "did you mean `owner`?",
    }


def test_verify_checks_environment_files_against_lemi_yml(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write(repo, "lemi.yml", LEMI_YML)
    write(repo, "deploy/demo-service/environment/stagin.yaml", "")
    assert main(["verify"]) == 1
    err = capsys.readouterr().err
    assert "environment/stagin.yaml" in err and "did you mean `staging`?" in err


def test_service_name_must_match_the_repository(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["verify", "--repo", "acme/other"]) == 1
    assert "must be named after its repository: 'other'" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["verify", "--check", "bogus"], "unknown check 'bogus'"),
        (["verify", "--bogus"], "No such option"),
        (["verify", "-s", "nope"], "no service 'nope'"),
        (["bogus"], "No such command"),
        (["schema", "everything"], "Invalid value"),
        (["compile", "-e", "staging"], "Missing option"),
    ],
)
def test_usage_errors_exit_2(repo: Path, capsys: pytest.CaptureFixture[str], argv: list[str], needle: str) -> None:
    assert main(argv) == 2
    assert needle in capsys.readouterr().err


def test_without_a_remote_the_repository_must_be_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    write(tmp_path, "deploy/demo-service/service.yaml", SERVICE)
    assert main(["verify"]) == 2
    assert "--repo" in capsys.readouterr().err
    assert main(["verify", "--repo", "acme/demo-service"]) == 0


@pytest.mark.parametrize(
    ("url", "repo"),
    [
        ("git@github.com:acme/demo-service.git", "acme/demo-service"),
        ("https://github.com/acme/demo-service.git", "acme/demo-service"),
        ("https://github.com/acme/demo-service", "acme/demo-service"),
        ("https://x-access-token:abc@github.example.com/acme/demo.svc/", "acme/demo.svc"),
        ("ssh://git@github.com:22/acme/demo-service.git", "acme/demo-service"),
        ("/srv/git/demo-service", None),
    ],
)
def test_repository_name_from_remote(url: str, repo: str | None) -> None:
    assert parse_remote(url) == repo


def test_config_check(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write(repo, "lemi.yml", LEMI_YML)
    assert main(["config", "check"]) == 0
    out = capsys.readouterr().out
    assert "prod: branch main -> lemon-ecs-cluster in 222222222222/us-east-1 (protected)" in out
    assert main(["config", "check", "--output", "json"]) == 0
    cfg = json.loads(capsys.readouterr().out)["config"]
    assert cfg["environments"]["staging"]["branch"] == "develop"


def test_config_check_invalid(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(repo, "other.yml", LEMI_YML.replace('"222222222222"', "222222222222"))
    assert main(["--config", str(path), "config", "check"]) == 1
    err = capsys.readouterr().err
    assert f"{path}:16:17: environments.prod.account_id" in err and 'quote it: "222222222222"' in err


def test_config_from_environment_variable(
    repo: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("LEMI_CONFIG", str(repo / "missing.yml"))
    assert main(["config", "check"]) == 1
    assert "missing.yml" in capsys.readouterr().err


@pytest.mark.parametrize("kind", ["service", "environment", "config"])
def test_schema_is_a_json_schema(kind: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema", kind]) == 0
    jsonschema.Draft202012Validator.check_schema(json.loads(capsys.readouterr().out))


def test_an_internal_error_is_a_message_not_a_traceback(
    repo: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def boom(*args: object, **kwargs: object) -> None:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(bot.cli.files, "load_service", boom)
    assert main(["verify"]) == 1
    err = capsys.readouterr().err
    assert "internal error: RuntimeError: disk on fire" in err and "LEMI_DEBUG=1" in err
    assert "Traceback" not in err


def test_config_check_refuses_a_references_pattern_no_name_could_match(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(repo, "lemi.yml", LEMI_YML + 'references:\n  secrets: ["{service}/*", "team secrets/*"]\n'
                 '  parameters: ["{service}/*"]\n')  # fmt: skip
    line = LEMI_YML.count("\n") + 2
    assert main(["--config", str(path), "config", "check"]) == 1
    err = capsys.readouterr().err
    assert (f"{path}:{line}:28: references.secrets[1]: 'team secrets/*' is not a secret pattern: "
            "' ' cannot appear in a secret name") in err  # fmt: skip
    assert f"{path}:{line + 1}:16: references.parameters[0]: '{{service}}/*' can never match" in err
    assert "hint: start it with /, e.g. /{service}/*" in err and "2 problems found" in err
    write(repo, "lemi.yml", LEMI_YML + 'references:\n  secrets: ["{service}/*"]\n')
    assert main(["--config", str(path), "config", "check", "--output", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["config"]["references"] == {
        "secrets": ["{service}/*"],
        "parameters": None,
    }
