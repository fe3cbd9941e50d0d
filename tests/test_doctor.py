"""`lemi doctor` against the GitHub fake and moto: a setup that passes every check, then one
failing case per check, each named with how to fix it (exit 1, never a traceback)."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import aws_world
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from fakes.github import FakeGitHub

from bot.cli import main
from bot.core.doctor import infra_listing, missing_permissions, services_listed

INFRA_FILE = """\
module "demo-service" {
  source     = "../modules/ecs-service"
  name       = "demo-service"
  repository = "acme/demo-service"
}
"""


def infra_file(service: str, repository: str) -> str:
    return INFRA_FILE.replace("demo-service", service).replace("acme/" + service, repository)


@pytest.fixture
def setup(
    github_env: FakeGitHub, world: aws_world.World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> FakeGitHub:
    """A whole setup that works: the App installed on acme/infra and acme/demo-service, the infra
    file of demo-service naming its repository, lemi.yml's environments in moto, a queue file."""
    installation = github_env.add_installation("acme", repos=())
    github_env.add_repo("acme/infra", files={"services/demo-service.tf": INFRA_FILE}, installation=installation)
    github_env.add_repo("acme/demo-service", files={"README.md": "demo\n"}, installation=installation)
    (tmp_path / "lemi.yml").write_text(aws_world.LEMI_YML, encoding="utf-8")
    monkeypatch.setenv("LEMI_CONFIG", str(tmp_path / "lemi.yml"))
    monkeypatch.setenv("LEMI_QUEUE", f"sqlite:///{tmp_path / 'queue.db'}")
    monkeypatch.delenv("LEMI_DEBUG", raising=False)
    monkeypatch.setenv("COLUMNS", "200")
    return github_env


def doctor(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict[str, Any]]:
    code = main(["doctor", "--output", "json", *argv])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err and "internal error" not in err, err
    return code, json.loads(out)


def by_name(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {check["name"]: check for check in doc["checks"]}


def only_failure(doc: dict[str, Any]) -> dict[str, Any]:
    failures = [check for check in doc["checks"] if not check["ok"]]
    assert len(failures) == 1, failures
    assert failures[0]["fix"], failures[0]
    return failures[0]


def test_a_working_setup_passes_every_check(setup: FakeGitHub, capsys: pytest.CaptureFixture[str]) -> None:
    code, doc = doctor(capsys)
    assert code == 0 and doc["ok"] is True, doc
    checks = by_name(doc)
    assert list(checks) == [
        "App credentials", "App webhook", "App permissions", "App events",
        "installation: infra repository", "installations: service repositories", "lemi.yml",
        "staging: AWS credentials", "staging: cluster", "staging: Datadog API key",
        "prod: AWS credentials", "prod: cluster", "prod: Datadog API key", "queue",
    ]  # fmt: skip
    assert all(set(c) == {"name", "ok", "detail", "fix"} for c in doc["checks"])
    assert "acme/demo-service" in checks["installations: service repositories"]["detail"]
    assert "lemon-ecs-cluster is ACTIVE" in checks["staging: cluster"]["detail"]
    assert "datadog/api-key exists" in checks["prod: Datadog API key"]["detail"]
    # what doctor asked GitHub: with the App's JWT, and the infra repository's files with its token
    asked = {(c.method, c.template) for c in setup.calls}
    assert {("GET", "/app"), ("GET", "/app/hook/config"), ("GET", "/repos/{owner}/{repo}/installation")} <= asked
    assert {c.template for c in setup.writes()} == {"/app/installations/{installation_id}/access_tokens"}


def test_the_text_checklist_says_ok_and_fail(setup: FakeGitHub, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["doctor"]) == 0
    out = capsys.readouterr().out
    assert "  OK App credentials: App lemi" in out and "all 14 checks passed" in out
    setup.hook_config["content_type"] = "form"
    assert main(["doctor"]) == 1
    out = capsys.readouterr().out
    assert "FAIL App webhook: the content type is form, not json" in out
    assert "fix: in the App's settings on GitHub" in out and "1 of 14 checks failed" in out


def test_app_credentials_github_refuses(
    setup: FakeGitHub, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = other.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
    ).decode()
    monkeypatch.setenv("GITHUB_APP_PRIVATE_KEY", pem)
    code, doc = doctor(capsys)
    assert code == 1 and doc["ok"] is False
    check = by_name(doc)["App credentials"]
    assert not check["ok"] and "GitHub refused the App's JWT" in check["detail"] and "401" in check["detail"]
    assert "GITHUB_APP_ID" in check["fix"] and "private key" in check["fix"]
    assert "App webhook" not in by_name(doc)  # nothing more is asked with credentials GitHub refuses


def test_app_credentials_missing(
    setup: FakeGitHub, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GITHUB_APP_ID")
    code, doc = doctor(capsys)
    check = by_name(doc)["App credentials"]
    assert code == 1 and not check["ok"] and "GITHUB_APP_ID" in check["detail"]
    assert not setup.calls  # no request without credentials


def test_github_unreachable_names_the_host(
    setup: FakeGitHub, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as closed:  # a port nothing listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    monkeypatch.setenv("GITHUB_API_URL", f"http://127.0.0.1:{port}")
    code, doc = doctor(capsys)
    check = by_name(doc)["App credentials"]
    assert code == 1 and not check["ok"] and f"http://127.0.0.1:{port} could not be reached" in check["detail"]
    assert "GITHUB_API_URL" in check["fix"]


def test_invalid_settings(
    setup: FakeGitHub, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LEMI_WORKERS", "many")
    code, doc = doctor(capsys)
    check = only_failure(doc)
    assert code == 1 and check["name"] == "settings" and "LEMI_WORKERS='many'" in check["detail"]


def test_a_queue_file_that_exists_is_probed_without_being_changed(
    setup: FakeGitHub, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    import sqlite3

    db = sqlite3.connect(tmp_path / "queue.db")
    db.execute("CREATE TABLE jobs (id INTEGER)")
    db.commit()
    db.close()
    code, doc = doctor(capsys)
    assert code == 0 and by_name(doc)["queue"]["ok"], doc
    db = sqlite3.connect(tmp_path / "queue.db")
    assert [r[0] for r in db.execute("SELECT name FROM sqlite_master")] == ["jobs"]
    db.close()


def test_installation_missing_on_the_infra_repository(
    setup: FakeGitHub, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    (tmp_path / "lemi.yml").write_text(aws_world.LEMI_YML.replace("acme/infra", "acme/platform"), encoding="utf-8")
    code, doc = doctor(capsys)
    check = only_failure(doc)
    assert code == 1 and check["name"] == "installation: infra repository"
    assert "not installed on acme/platform" in check["detail"] and "install the App on acme/platform" in check["fix"]


def test_installation_missing_on_a_service_repository_and_the_rest_counted(
    setup: FakeGitHub, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("bot.github.app_checks.MAX_SERVICE_REPOS", 2)
    files = {f"services/svc-{n}.tf": infra_file(f"svc-{n}", f"acme/svc-{n}") for n in range(4)}
    files["services/billing.tf"] = infra_file("billing", "acme/billing")
    setup.commit("acme/infra", "main", files)
    code, doc = doctor(capsys)
    check = only_failure(doc)
    assert code == 1 and check["name"] == "installations: service repositories"
    # the first two of six repositories, by name: acme/billing (absent) and acme/demo-service
    assert "not installed on acme/billing" in check["detail"] and "4 more not checked" in check["detail"]
    assert "install the App on those repositories" in check["fix"]


def test_an_infra_file_lemi_cannot_read(setup: FakeGitHub, capsys: pytest.CaptureFixture[str]) -> None:
    setup.commit("acme/infra", "main", {"services/broken.tf": 'module "broken" {\n  name = "broken"\n'})
    code, doc = doctor(capsys)
    check = only_failure(doc)
    assert code == 1 and check["name"] == "infra files"
    assert "services/broken.tf: it is not valid HCL" in check["detail"] and "acme/infra" in check["fix"]


def test_webhook_configuration(setup: FakeGitHub, capsys: pytest.CaptureFixture[str]) -> None:
    setup.hook_config.update(url="https://lemi.example.com/hooks", content_type="form")
    del setup.hook_config["secret"]
    code, doc = doctor(capsys)
    check = only_failure(doc)
    assert code == 1 and check["name"] == "App webhook"
    assert "does not end in /webhook" in check["detail"] and "content type is form" in check["detail"]
    assert "no webhook secret is set on GitHub" in check["detail"]
    assert "GITHUB_WEBHOOK_SECRET" in check["fix"] and "application/json" in check["fix"]


def test_webhook_secret_missing_here(
    setup: FakeGitHub, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GITHUB_WEBHOOK_SECRET")
    code, doc = doctor(capsys)
    check = only_failure(doc)
    assert check["name"] == "App webhook" and "GITHUB_WEBHOOK_SECRET is not set here" in check["detail"]


def test_the_settings_may_come_from_an_env_file(
    setup: FakeGitHub, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("GITHUB_WEBHOOK_SECRET")
    (tmp_path / ".env").write_text("GITHUB_WEBHOOK_SECRET=from-the-file\n", encoding="utf-8")
    code, doc = doctor(capsys, "--env-file", str(tmp_path / ".env"))
    assert code == 0 and doc["ok"], doc


def test_permissions_and_events_against_app_yml(setup: FakeGitHub, capsys: pytest.CaptureFixture[str]) -> None:
    permissions = {"metadata": "read", "contents": "read", "pull_requests": "write", "issues": "write",
                   "deployments": "write"}  # fmt: skip
    setup.app_changes = {"permissions": permissions, "events": ["push"]}
    code, doc = doctor(capsys)
    checks = by_name(doc)
    assert code == 1
    assert not checks["App permissions"]["ok"]
    assert checks["App permissions"]["detail"] == "the App lacks checks: write, contents: write (app.yml asks for them)"
    assert "Permissions & events" in checks["App permissions"]["fix"]
    assert not checks["App events"]["ok"] and "pull_request, issue_comment" in checks["App events"]["detail"]
    assert "Subscribe to events" in checks["App events"]["fix"]


def test_lemi_yml_invalid(setup: FakeGitHub, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    (tmp_path / "lemi.yml").write_text(aws_world.LEMI_YML.replace("region: us-east-1", "region: mars"), "utf-8")
    code, doc = doctor(capsys)
    check = only_failure(doc)
    assert code == 1 and check["name"] == "lemi.yml"
    assert "mars" in check["detail"] and str(tmp_path / "lemi.yml") in check["fix"]


def test_aws_credentials_missing(
    setup: FakeGitHub, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    code, doc = doctor(capsys)
    checks = by_name(doc)
    assert code == 1
    assert not checks["staging: AWS credentials"]["ok"]
    assert "give lemi AWS credentials" in checks["staging: AWS credentials"]["fix"]
    assert checks["staging: cluster"]["detail"].startswith("not checked")


def test_assumed_role_in_another_account(setup: FakeGitHub, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """AssumeRole through the environment's clients: moto answers as the role's account."""
    text = aws_world.LEMI_YML.replace(
        "    cluster: lemon-ecs-cluster\n  prod:",
        "    cluster: lemon-ecs-cluster\n    role_arn: arn:aws:iam::111111111111:role/lemi-deployer\n  prod:",
    )
    (tmp_path / "lemi.yml").write_text(text, encoding="utf-8")
    code, doc = doctor(capsys)
    failures = [c for c in doc["checks"] if not c["ok"]]
    assert code == 1 and [c["name"] for c in failures][0] == "staging: AWS credentials"
    assert "assuming arn:aws:iam::111111111111:role/lemi-deployer" in failures[0]["detail"]
    assert "acts in account 111111111111, but lemi.yml says 123456789012" in failures[0]["detail"]
    assert "account_id" in failures[0]["fix"]


def test_cluster_not_active(
    setup: FakeGitHub, world: aws_world.World, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    text = aws_world.LEMI_YML.replace("cluster: lemon-ecs-cluster\n  prod:", "cluster: gone-cluster\n  prod:")
    (tmp_path / "lemi.yml").write_text(text, encoding="utf-8")
    code, doc = doctor(capsys)
    check = only_failure(doc)
    assert code == 1 and check["name"] == "staging: cluster"
    assert "gone-cluster is missing" in check["detail"] and "create the cluster" in check["fix"]


def test_datadog_key_missing(setup: FakeGitHub, world: aws_world.World, capsys: pytest.CaptureFixture[str]) -> None:
    world_sm = aws_world.client("secretsmanager", world.endpoint)
    world_sm.delete_secret(SecretId="datadog/api-key", ForceDeleteWithoutRecovery=True)
    code, doc = doctor(capsys)
    failures = [c for c in doc["checks"] if not c["ok"]]
    assert code == 1 and [c["name"] for c in failures] == ["staging: Datadog API key", "prod: Datadog API key"]
    assert "does not exist in Secrets Manager" in failures[0]["detail"]
    assert (
        "datadog.api_key_secret" in failures[0]["fix"] and "create-secret --name datadog/api-key" in failures[0]["fix"]
    )


def test_queue_not_writable(
    setup: FakeGitHub, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "a-file").write_text("not a directory", encoding="utf-8")
    monkeypatch.setenv("LEMI_QUEUE", f"sqlite:///{tmp_path / 'a-file' / 'queue.db'}")
    code, doc = doctor(capsys)
    check = only_failure(doc)
    assert code == 1 and check["name"] == "queue" and "cannot be created" in check["detail"]
    assert "LEMI_QUEUE" in check["fix"]


def test_sqs_queue_unreachable(
    setup: FakeGitHub, world: aws_world.World, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    sqs = aws_world.client("sqs", world.endpoint)
    url = sqs.create_queue(QueueName="lemi.fifo", Attributes={"FifoQueue": "true"})["QueueUrl"]
    monkeypatch.setenv("LEMI_QUEUE", f"sqs://{url}")
    code, doc = doctor(capsys)
    assert code == 0 and by_name(doc)["queue"]["ok"], doc
    monkeypatch.setenv("LEMI_QUEUE", f"sqs://{url.replace('lemi.fifo', 'missing.fifo')}")
    code, doc = doctor(capsys)
    check = only_failure(doc)
    assert code == 1 and check["name"] == "queue" and "cannot be reached" in check["detail"]


def test_pure_parts() -> None:
    assert missing_permissions({"contents": "admin", "checks": "read"}, {"contents": "write", "checks": "write"}) == {
        "checks": "write"
    }
    directory, pattern = infra_listing("infra/services/{service}.tf")
    assert directory == "infra/services"
    assert services_listed(["a.tf", "b.tf.bak", "Bad_.tf", "c-d.tf", "README.md"], pattern) == ["a", "c-d"]
    directory, pattern = infra_listing("stacks/{service}/main.tf")
    assert directory == "stacks" and services_listed(["api", "web"], pattern) == ["api", "web"]
