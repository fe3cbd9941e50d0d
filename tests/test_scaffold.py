"""`lemi service new`: scaffold -> verify -> compile, as a developer runs it."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from checkout import LEMI_YML, make_checkout, write

from bot.cli import main

JOB_ID = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")
PINNED = re.compile(r"[\w.-]+/[\w.-]+@v\d+")  # an action at a major version tag


class Yaml12Loader(yaml.SafeLoader):
    """YAML 1.2 booleans, as GitHub reads workflows: `on` is a key, not true."""


Yaml12Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}

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


def test_service_new_ends_with_the_service_contract(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The developer learns what lemi expects of the service: HTTP on 8080, /healthz, /metrics,
    the test command (here the default, `make test`), a Dockerfile."""
    assert main(NEW) == 0
    err = capsys.readouterr().err
    contract = err[err.index("what lemi expects of demo-service") :]
    assert err.rstrip().endswith(contract.rstrip())  # the last thing said
    for promise in ("port 8080", "GET /healthz", "GET /metrics", "`make test` passes", "a Dockerfile"):
        assert promise in contract, contract
    assert main([*NEW, "--test-command", "pytest -q", "--output", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert any(line.startswith("`pytest -q` passes") for line in doc["contract"]), doc["contract"]
    assert any("port 8080" in line for line in doc["contract"])


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
    build = workflow(repo, "build-demo-service.yaml")
    assert build["on"] == {"push": {"branches": ["develop", "main"]}}
    prod = credentials(build)["prod"]
    assert prod["if"] == "github.ref == 'refs/heads/main'"
    assert prod["with"] == {
        "role-to-assume": "arn:aws:iam::${{ vars.LEMI_PROD_ACCOUNT_ID }}:role/lemi-ecr-push",
        "aws-region": "${{ vars.LEMI_PROD_REGION }}",
    }


def test_environments_and_workflows_follow_lemi_yml(repo: Path) -> None:
    three = LEMI_YML + (
        '  qa:\n    branch: qa\n    region: eu-west-1\n    account_id: "333333333333"\n    cluster: qa-cluster\n'
    )
    write(repo, "lemi.yml", three)
    assert main(NEW) == 0
    envs = sorted(p.stem for p in (repo / "deploy/demo-service/environment").iterdir())
    assert envs == ["prod", "qa", "staging"]
    build = workflow(repo, "build-demo-service.yaml")
    assert build["on"] == {"push": {"branches": ["develop", "main", "qa"]}}
    assert build["permissions"] == {"contents": "read", "id-token": "write"}
    creds = credentials(build)
    assert list(creds) == ["staging", "prod", "qa"]
    for env, (account, region, branch) in {
        "staging": ("111111111111", "us-east-1", "develop"),
        "prod": ("222222222222", "us-east-1", "main"),
        "qa": ("333333333333", "eu-west-1", "qa"),
    }.items():
        assert creds[env]["if"] == f"github.ref == 'refs/heads/{branch}'"
        assert creds[env]["with"] == {
            "role-to-assume": f"arn:aws:iam::{account}:role/lemi-ecr-push",
            "aws-region": region,
        }
    text = (repo / ".github/workflows/build-demo-service.yaml").read_text()
    assert "aws-access-key-id" not in text and "secret-access-key" not in text


# ---- the workflows: the image is built only for a commit whose tests pass -----------------------


def workflow(repo: Path, name: str) -> dict[str, Any]:
    """A generated workflow, parsed and checked against GitHub Actions' structure."""
    data = yaml.load((repo / ".github/workflows" / name).read_text(), Loader=Yaml12Loader)
    assert isinstance(data, dict) and set(data) <= {"name", "on", "permissions", "concurrency", "jobs"}
    assert data["on"] and data["jobs"]
    jobs = data["jobs"]
    for job_id, job in jobs.items():
        assert JOB_ID.fullmatch(job_id), job_id
        needs = job.get("needs", [])
        assert set([needs] if isinstance(needs, str) else needs) <= set(jobs) - {job_id}, job_id
        if "uses" in job:  # a reusable workflow: no steps of its own
            assert not {"steps", "runs-on"} & set(job), job_id
            assert (repo / job["uses"]).is_file(), job["uses"]
            continue
        assert job["runs-on"] == "ubuntu-latest" and job["steps"], job_id
        for step in job["steps"]:
            assert ("uses" in step) != ("run" in step), step
            if "uses" in step:
                assert PINNED.fullmatch(step["uses"]), step["uses"]
    return data


def credentials(build: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The build job's configure-aws-credentials steps, by environment."""
    steps = build["jobs"]["build"]["steps"]
    return {
        s["name"].removeprefix("AWS credentials for "): s
        for s in steps
        if s.get("uses", "").startswith("aws-actions/configure-aws-credentials@")
    }


def test_the_image_is_built_and_pushed_only_after_the_tests_pass(repo: Path) -> None:
    write(repo, "lemi.yml", LEMI_YML)
    assert main(NEW) == 0
    build = workflow(repo, "build-demo-service.yaml")
    jobs = build["jobs"]
    assert set(jobs) == {"test", "build"}  # no deploy job: the App deploys the pushed tag
    assert not any("deploy" in name for name in jobs)
    assert jobs["test"] == {"uses": "./.github/workflows/test.yaml"}
    assert jobs["build"]["needs"] == "test"
    steps = jobs["build"]["steps"]
    push = steps[-1]
    assert push["env"]["IMAGE"] == "${{ steps.ecr.outputs.registry }}/demo-service:${{ github.sha }}"
    assert push["run"] == 'docker build -t "$IMAGE" .\ndocker push "$IMAGE"\n'
    assert steps[-2] == {"id": "ecr", "uses": "aws-actions/amazon-ecr-login@v2"}
    # OIDC for the push, and AWS credentials before the ECR login
    assert build["permissions"] == {"contents": "read", "id-token": "write"}
    assert [s.get("uses", "").split("@")[0] for s in steps[:3]] == [
        "actions/checkout", "aws-actions/configure-aws-credentials", "aws-actions/configure-aws-credentials",
    ]  # fmt: skip

    test = workflow(repo, "test.yaml")
    assert test["on"] == {"pull_request": None, "workflow_call": None}  # every PR, and called by the build
    assert test["permissions"] == {"contents": "read"}
    run = [s for s in test["jobs"]["test"]["steps"] if "run" in s]
    assert [(s["name"], s["run"], s.get("if")) for s in run] == [
        ("Test", "make test", None),
        ("The image builds", "docker build .", "github.event_name == 'pull_request'"),
    ]
    assert "lemi service new --test-command" in (repo / ".github/workflows/test.yaml").read_text()


def test_the_test_command_can_be_chosen(repo: Path) -> None:
    assert main(NEW + ["--test-command", "./gradlew test"]) == 0
    (step,) = [s for s in workflow(repo, "test.yaml")["jobs"]["test"]["steps"] if s.get("name") == "Test"]
    assert step["run"] == "./gradlew test"


@pytest.mark.parametrize("command", ["", "   ", "make test\nrm -rf /", "x" * 201])
def test_a_test_command_that_is_not_one_line_is_refused(
    repo: Path, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    assert main(NEW + ["--test-command", command]) == 2
    assert "--test-command" in capsys.readouterr().err
    assert files_under(repo) == {}


# ---- existing files: kept, unless --force (which never touches deploy/) ------------------------


def said(out: str) -> dict[str, str]:
    """What `service new` said it did with each file: {path: "action (why)"}."""
    result = {}
    for line in out.splitlines():
        action, path, *why = line.split(maxsplit=2)
        result[path] = " ".join([action, *why])
    return result


def test_existing_files_are_kept_and_each_file_says_what_happened(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(NEW) == 0
    first = said(capsys.readouterr().out)
    assert set(first.values()) == {"written"} and len(first) == 7
    service = repo / "deploy/demo-service/service.yaml"
    service.write_text(service.read_text().replace("desiredCount: 3", "desiredCount: 5"))
    build = repo / ".github/workflows/build-demo-service.yaml"
    build.write_text(build.read_text() + "# mine\n")
    (repo / ".github/workflows/test.yaml").unlink()
    assert main(NEW) == 0
    second = said(capsys.readouterr().out)
    assert second["deploy/demo-service/service.yaml"] == (
        "kept (exists; it is yours: --force never rewrites files under deploy/)"
    )
    assert second[".github/workflows/build-demo-service.yaml"] == "kept (exists and differs; use --force to rewrite it)"
    assert second[".github/workflows/test.yaml"] == "written"
    assert second["deploy/demo-service/environment/prod.yaml"] == "unchanged"
    assert second[".lemi/schema/service.schema.json"] == "unchanged"
    assert "desiredCount: 5" in service.read_text()
    assert build.read_text().endswith("# mine\n")
    assert (repo / ".github/workflows/test.yaml").is_file()


def test_force_rewrites_generated_files_but_never_deploy(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(NEW) == 0
    service = repo / "deploy/demo-service/service.yaml"
    service.write_text(service.read_text().replace("desiredCount: 3", "desiredCount: 5"))
    staging = repo / "deploy/demo-service/environment/staging.yaml"
    staging.write_text(staging.read_text() + "# my variables\n")
    build = repo / ".github/workflows/build-demo-service.yaml"
    generated = build.read_text()
    build.write_text(generated.replace("needs: test", "needs: []"))
    schema = repo / ".lemi/schema/environment.schema.json"
    schema.write_text("{}\n")
    capsys.readouterr()
    assert main(NEW + ["--force"]) == 0
    out = said(capsys.readouterr().out)
    assert out[".github/workflows/build-demo-service.yaml"] == "rewritten"
    assert out[".lemi/schema/environment.schema.json"] == "rewritten"
    assert out[".github/workflows/test.yaml"] == "unchanged"
    for rel in ("deploy/demo-service/service.yaml", "deploy/demo-service/environment/staging.yaml"):
        assert out[rel] == "kept (exists; it is yours: --force never rewrites files under deploy/)"
    assert out["deploy/demo-service/environment/prod.yaml"] == "unchanged"
    assert build.read_text() == generated
    assert json.loads(schema.read_text())["$schema"]
    assert "desiredCount: 5" in service.read_text()
    assert staging.read_text().endswith("# my variables\n")


def test_json_output_lists_each_file(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(NEW) == 0
    (repo / ".github/workflows/test.yaml").write_text("name: mine\n")
    capsys.readouterr()
    assert main(NEW + ["--output", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is True
    by_path = {f["path"]: f for f in report["files"]}
    assert by_path[".github/workflows/test.yaml"] == {
        "path": ".github/workflows/test.yaml", "action": "kept", "why": "exists and differs; use --force to rewrite it",
    }  # fmt: skip
    assert by_path["deploy/demo-service/service.yaml"]["action"] == "unchanged"


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
    assert "written  .github/workflows/build-demo-service-worker.yaml" in out
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
