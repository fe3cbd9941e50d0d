"""`lemi service new`: scaffold -> verify -> compile, as a developer runs it."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml
from checkout import LEMI_YML, make_checkout, write

from bot.cli import main

NEW = ["service", "new", "--service", "demo-service", "--cpu", "512", "--memory", "1024",
       "--desired-count", "3", "--owner", "infra"]  # fmt: skip


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("LEMI_CONFIG", raising=False)
    root = make_checkout(tmp_path / "demo-service")
    monkeypatch.chdir(root)
    return root


def files_under(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): p.read_text()
        for p in sorted(root.rglob("*"))
        if p.is_file() and ".git" not in p.relative_to(root).parts
    }


def test_scaffold_verify_compile_round_trip(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write(repo, "lemi.yml", LEMI_YML)
    assert main(NEW) == 0
    assert set(files_under(repo)) == {
        "lemi.yml",
        "deploy/demo-service/service.yaml",
        "deploy/demo-service/environment/staging.yaml",
        "deploy/demo-service/environment/prod.yaml",
        ".github/workflows/test.yaml",
        ".github/workflows/build-demo-service.yaml",
        ".lemi/schema/service.schema.json",
        ".lemi/schema/environment.schema.json",
    }
    capsys.readouterr()
    assert main(["verify", "--check", "spec", "--output", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report == {"ok": True, "services": ["demo-service"], "checks": ["spec"], "problems": []}
    for env, account in (("staging", "111111111111"), ("prod", "222222222222")):
        assert main(["compile", "-s", "demo-service", "-e", env, "-t", "0123abc"]) == 0
        task = json.loads(capsys.readouterr().out)
        assert task["family"] == f"demo-service-{env}"
        assert (task["cpu"], task["memory"]) == ("512", "1024")
        app = task["containerDefinitions"][0]
        assert app["image"] == f"{account}.dkr.ecr.us-east-1.amazonaws.com/demo-service:0123abc"
        assert {"name": "LOG_LEVEL", "value": "info"} in app["environment"]


def test_generated_files_point_editors_at_the_schema_and_satisfy_it(repo: Path) -> None:
    assert main(NEW) == 0
    for rel, kind in (
        ("deploy/demo-service/service.yaml", "service"),
        ("deploy/demo-service/environment/staging.yaml", "environment"),
        ("deploy/demo-service/environment/prod.yaml", "environment"),
    ):
        path = repo / rel
        first = path.read_text().splitlines()[0]
        assert first.startswith("# yaml-language-server: $schema=")
        schema_path = (path.parent / first.split("$schema=", 1)[1]).resolve()
        assert schema_path == (repo / f".lemi/schema/{kind}.schema.json").resolve()
        schema = json.loads(schema_path.read_text())
        jsonschema.Draft202012Validator.check_schema(schema)
        jsonschema.validate(yaml.safe_load(path.read_text()), schema)


def test_schema_refuses_what_the_loader_refuses(repo: Path) -> None:
    assert main(NEW) == 0
    schema = json.loads((repo / ".lemi/schema/service.schema.json").read_text())
    bad = {"name": "demo-service", "owner": "infra", "spec": {"resource": {"cpu": 512, "memory": 8192}}}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, schema)
    bad = {"name": "demo-service", "owner": "infra", "spec": {"resource": {"cpu": 512, "memory": 1024}, "x": 1}}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, schema)


def test_without_lemi_yml_staging_and_prod_are_scaffolded(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(NEW) == 0
    assert (repo / "deploy/demo-service/environment/staging.yaml").is_file()
    assert (repo / "deploy/demo-service/environment/prod.yaml").is_file()
    assert "no lemi.yml found" in capsys.readouterr().err
    build = yaml.safe_load((repo / ".github/workflows/build-demo-service.yaml").read_text())
    steps = build["jobs"]["prod"]["steps"]
    creds = next(s for s in steps if s.get("uses", "").startswith("aws-actions/configure-aws-credentials"))
    assert creds["with"]["role-to-assume"] == "arn:aws:iam::${{ vars.LEMI_PROD_ACCOUNT_ID }}:role/lemi-ecr-push"


def test_environments_and_workflows_follow_lemi_yml(repo: Path) -> None:
    three = LEMI_YML + (
        '  qa:\n    branch: qa\n    region: eu-west-1\n    account_id: "333333333333"\n    cluster: qa-cluster\n'
    )
    write(repo, "lemi.yml", three)
    assert main(NEW) == 0
    envs = sorted(p.stem for p in (repo / "deploy/demo-service/environment").iterdir())
    assert envs == ["prod", "qa", "staging"]
    build = yaml.safe_load((repo / ".github/workflows/build-demo-service.yaml").read_text())
    assert build[True]["push"]["branches"]  # PyYAML (YAML 1.1) reads the key `on` as true == ["develop", "main", "qa"]
    assert build["permissions"] == {"contents": "read", "id-token": "write"}
    for job, (account, region, branch) in {
        "staging": ("111111111111", "us-east-1", "develop"),
        "prod": ("222222222222", "us-east-1", "main"),
        "qa": ("333333333333", "eu-west-1", "qa"),
    }.items():
        spec = build["jobs"][job]
        assert spec["if"] == f"github.ref == 'refs/heads/{branch}'"
        creds = next(s for s in spec["steps"] if s.get("uses", "").startswith("aws-actions/configure-aws-credentials"))
        assert creds["with"] == {
            "role-to-assume": f"arn:aws:iam::{account}:role/lemi-ecr-push",
            "aws-region": region,
        }
        push = spec["steps"][-1]
        assert push["env"]["IMAGE"] == "${{ steps.ecr.outputs.registry }}/demo-service:${{ github.sha }}"
        assert 'docker push "$IMAGE"' in push["run"]
    text = (repo / ".github/workflows/build-demo-service.yaml").read_text()
    assert "aws-access-key-id" not in text and "secret-access-key" not in text
    test = yaml.safe_load((repo / ".github/workflows/test.yaml").read_text())
    assert "pull_request" in test[True]
    assert [s.get("run") for s in test["jobs"]["test"]["steps"]][1:] == ["make test", "docker build ."]


def test_never_overwrites_without_force(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(NEW) == 0
    edited = repo / "deploy/demo-service/service.yaml"
    edited.write_text(edited.read_text().replace("desiredCount: 3", "desiredCount: 5"))
    (repo / ".github/workflows/test.yaml").unlink()
    before = files_under(repo)
    capsys.readouterr()
    assert main(NEW) == 1
    err = capsys.readouterr().err
    assert "deploy/demo-service/service.yaml" in err and "--force" in err
    assert files_under(repo) == before  # nothing written, not even the missing file
    assert main(NEW + ["--force"]) == 0
    assert "desiredCount: 3" in edited.read_text()
    assert (repo / ".github/workflows/test.yaml").is_file()


def test_rerun_is_idempotent_and_a_second_service_shares_the_test_workflow(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(NEW) == 0
    before = files_under(repo)
    capsys.readouterr()
    assert main(NEW) == 0
    assert "unchanged" in capsys.readouterr().out
    assert files_under(repo) == before
    worker = ["service", "new", "--service", "demo-service-worker", "--owner", "infra", "--image", "demo-worker"]
    assert main(worker) == 0
    out = capsys.readouterr().out
    assert "created  .github/workflows/build-demo-service-worker.yaml" in out
    assert "unchanged  .github/workflows/test.yaml" in out
    assert main(["verify", "--check", "spec"]) == 0


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--cpu", "300"], "--cpu"),
        (["--cpu", "512", "--memory", "8192"], "--memory"),
        (["--service", "Demo_Service"], "--service"),
        (["--service", "other-repo"], "named after its repository"),
        (["--owner", "a b"], "--owner"),
        (["--owner", 'x"; rm -rf /'], "--owner"),
        (["--desired-count", "-1"], "--desired-count"),
        (["--image", "UPPER"], "--image"),
        (["--cpu", "lots"], "--cpu"),
    ],
)
def test_bad_values_are_usage_errors_naming_the_option(
    repo: Path, capsys: pytest.CaptureFixture[str], args: list[str], needle: str
) -> None:
    argv = list(NEW)
    for i in range(0, len(args), 2):
        flag, value = args[i], args[i + 1]
        if flag in argv:
            argv[argv.index(flag) + 1] = value
        else:
            argv += [flag, value]
    assert main(argv) == 2
    assert needle in capsys.readouterr().err
    assert files_under(repo) == {}
