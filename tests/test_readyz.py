"""``GET /readyz``: the quick subset of `lemi doctor`, 200 when ready, 503 naming the failing
checks; ``/healthz`` stays liveness."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from app_harness import LEMI_YML, settings_for
from fakes.github import FakeGitHub
from starlette.testclient import TestClient

import bot.server.ready as ready
from bot.core.config import parse_config
from bot.core.doctor import Check, failed
from bot.core.settings import Settings
from bot.server.app import create_app
from bot.server.lifespan import State
from bot.store.sqlite_queue import SQLiteQueue


def names(body: dict[str, object]) -> list[str]:
    return [c["name"] for c in body["checks"]]  # type: ignore[attr-defined, index]


def test_a_configured_app_is_ready(github: FakeGitHub, tmp_path: Path) -> None:
    app = create_app(settings=settings_for(github, tmp_path / "q.db"), config=parse_config(LEMI_YML), workers=0)
    with TestClient(app) as client:
        response = client.get("/readyz")
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["ok"] is True and names(body) == ["configuration", "lemi.yml source", "App credentials", "queue"]
        assert client.get("/healthz").json()["status"] == "ok"
    assert not github.calls  # local checks only: the embedded queue needs no remote call


def test_an_unconfigured_app_is_live_but_not_ready(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    settings = Settings(app_id="1", queue_url=f"sqlite:///{tmp_path / 'q.db'}")  # no key, no secret
    app = create_app(settings=settings, config=parse_config(LEMI_YML))
    with TestClient(app) as client:
        assert client.get("/healthz").status_code == 200  # alive
        response = client.get("/readyz")
        assert response.status_code == 503
        checks = {c["name"]: c for c in response.json()["checks"]}
        assert not checks["configuration"]["ok"] and "GITHUB_APP_ID" in checks["configuration"]["detail"]
        assert "lemi doctor" in checks["configuration"]["fix"]
        assert not checks["App credentials"]["ok"] and "private key" in checks["App credentials"]["detail"]
        assert checks["queue"]["ok"]


def test_a_queue_that_is_not_writable(github: FakeGitHub, tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("x", encoding="utf-8")
    settings = settings_for(github, tmp_path / "a-file" / "q.db")
    app = create_app(settings=settings, config=parse_config(LEMI_YML), queue=SQLiteQueue(tmp_path / "ok.db"), workers=0)
    with TestClient(app) as client:
        response = client.get("/readyz")
        assert response.status_code == 503
        queue = response.json()["checks"][3]
        assert queue["name"] == "queue" and not queue["ok"] and "cannot be created" in queue["detail"]
        assert "LEMI_QUEUE" in queue["fix"]


def test_more_checks_plug_in_and_a_slow_one_is_bounded(
    github: FakeGitHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ready, "READY_TIMEOUT", 0.05)

    async def config_reload(state: State) -> Check:
        return failed("config reload", "the last reload of lemi.yml failed", "fix lemi.yml")

    async def slow_check(state: State) -> Check:
        await asyncio.sleep(5)
        raise AssertionError("not reached")

    app = create_app(settings=settings_for(github, tmp_path / "q.db"), config=parse_config(LEMI_YML), workers=0)
    with TestClient(app) as client:
        app.state.ready_checks += [config_reload, slow_check]
        response = client.get("/readyz")
        assert response.status_code == 503
        body = response.json()
        assert names(body) == [
            "configuration",
            "lemi.yml source",
            "App credentials",
            "queue",
            "config reload",
            "slow check",
        ]
        assert body["checks"][5]["detail"] == "no answer within 0.05 s"


async def test_an_sqs_queue_is_asked_once_in_a_while(monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[str] = []

    async def problem(url: str) -> str | None:
        asked.append(url)
        return "the SQS queue cannot be reached"

    monkeypatch.setattr(ready, "queue_problem", problem)
    monkeypatch.setattr(ready, "_queue_answers", {})
    state = State(Settings(queue_url="sqs://https://sqs.us-east-1.amazonaws.com/123456789012/lemi.fifo"))
    first = await ready.queue_writable(state)
    second = await ready.queue_writable(state)
    assert not first.ok and first == second and len(asked) == 1
    monkeypatch.setattr(ready, "QUEUE_TTL", 0.0)
    await ready.queue_writable(state)
    assert len(asked) == 2


async def test_a_key_that_cannot_sign_the_jwt() -> None:
    bad = "-----BEGIN RSA PRIVATE KEY-----\nbm90IGEga2V5\n-----END RSA PRIVATE KEY-----\n"
    check = await ready.app_credentials(State(Settings(app_id="1", private_key=bad)))
    assert not check.ok and check.detail.startswith("the private key cannot sign the App's JWT")
    assert "GITHUB_APP_PRIVATE_KEY" in check.fix


async def test_a_refused_lemi_yml_from_the_infra_repository_is_not_ready() -> None:
    """With LEMI_CONFIG=github://..., a newer lemi.yml that was refused (the last good one serves)
    fails /readyz's "lemi.yml source" check, saying so; a file-based lemi.yml passes it."""
    from types import SimpleNamespace

    from bot.server.ready import config_source
    from bot.server.remote_config import ConfigStatus

    def state(status: ConfigStatus | None) -> Any:
        reader = SimpleNamespace(status=lambda: status) if status is not None else None
        return SimpleNamespace(context=SimpleNamespace(remote_config=reader))

    assert (await config_source(state(None))).ok
    good = ConfigStatus(True, "github://acme/infra/lemi.yml", "a" * 40, "")
    assert (await config_source(state(good))).ok
    bad = ConfigStatus(False, "github://acme/infra/lemi.yml", "b" * 40, "lemi.yml:3:5: unknown field 'enviroments'")
    check = await config_source(state(bad))
    assert not check.ok and "unknown field" in check.detail and "last good lemi.yml is in use" in check.detail
