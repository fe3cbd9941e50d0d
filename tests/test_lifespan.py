"""bot/server/lifespan.py: what a start serves is decided once, and a configured App starts on one
path that closes what it opened, last opened first, even when start-up fails half way."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import pytest
from app_harness import LEMI_YML, settings_for
from starlette.testclient import TestClient

import bot.server.lifespan
from bot.core.config import parse_config
from bot.core.settings import Settings
from bot.server.app import create_app
from bot.server.context import Context
from bot.server.lifespan import NO_CREDENTIALS, Configured, Unconfigured, decide, running
from bot.server.redeliver import Redeliverer
from bot.server.worker import WorkerPool
from bot.store.sqlite_queue import SQLiteQueue

CREDENTIALS = ("GITHUB_APP_ID", "GITHUB_APP_PRIVATE_KEY", "GITHUB_APP_PRIVATE_KEY_PATH", "GITHUB_WEBHOOK_SECRET")


@pytest.fixture
def bare(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No credentials, lemi.yml in an empty folder (written by the test when it wants one)."""
    for name in CREDENTIALS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LEMI_CONFIG", str(tmp_path / "lemi.yml"))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_given_settings_and_config_the_app_runs(github: Any, tmp_path: Path) -> None:
    settings, config = settings_for(github, tmp_path / "q.db"), parse_config(LEMI_YML)
    assert decide(settings, config) == Configured(settings, config)


def test_invalid_settings_leave_it_unconfigured_without_the_setup_page(
    bare: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LEMI_WORKERS", "-1")
    start = decide()
    assert isinstance(start, Unconfigured) and not start.setup and start.config is None
    assert start.problem.startswith("LEMI_WORKERS='-1'") and start.settings == Settings()


def test_no_credentials_at_all_is_the_setup_page_and_lemi_yml_speaks_first(bare: Path) -> None:
    start = decide()
    assert isinstance(start, Unconfigured) and start.setup and "lemi.yml not found" in start.problem
    (bare / "lemi.yml").write_text(LEMI_YML)
    start = decide()
    assert isinstance(start, Unconfigured) and start.setup and start.problem == NO_CREDENTIALS
    assert start.config is not None and start.state().status == "unconfigured"


def test_some_credentials_are_unconfigured_without_the_setup_page(bare: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (bare / "lemi.yml").write_text(LEMI_YML)
    monkeypatch.setenv("GITHUB_APP_ID", "1")
    start = decide()
    assert isinstance(start, Unconfigured) and not start.setup and start.problem == NO_CREDENTIALS


class _Handlers:
    async def process(self, job: Any, ctx: Any) -> None: ...

    async def report(self, job: Any, ctx: Any, reason: str) -> None: ...


async def test_running_opens_then_closes_last_opened_first(
    github: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    closed: list[str] = []

    def record(cls: type, method: str, label: str) -> None:
        original = getattr(cls, method)

        async def recorded(self: Any, *args: Any, **kwargs: Any) -> Any:
            closed.append(label)
            return await original(self, *args, **kwargs)

        monkeypatch.setattr(cls, method, recorded)

    for cls, method, label in [
        (SQLiteQueue, "close", "queue"),
        (aiohttp.ClientSession, "close", "session"),
        (Context, "close", "context"),
        (WorkerPool, "stop", "workers"),
        (Redeliverer, "stop", "redelivery"),
    ]:
        record(cls, method, label)
    settings = settings_for(github, tmp_path / "q.db", workers=1)
    queue = SQLiteQueue(tmp_path / "q.db")
    async with running(settings, parse_config(LEMI_YML), _Handlers(), queue=queue) as state:
        assert (state.status, state.queue, state.settings) == ("ready", queue, settings)
        assert state.context is not None and state.context.queue is queue
        assert closed == []
    assert closed == ["redelivery", "workers", "context", "session", "queue"]
    assert github.calls == []  # redelivery is off in a Settings built in code


async def test_a_start_up_that_fails_closes_what_it_opened(
    github: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    closed: list[str] = []

    class Queue(SQLiteQueue):
        async def close(self) -> None:
            closed.append("queue")
            await super().close()

    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("no redelivery today")

    monkeypatch.setattr(bot.server.lifespan, "Redeliverer", broken)
    with pytest.raises(RuntimeError, match="no redelivery today"):
        async with running(
            settings_for(github, tmp_path / "q.db"), parse_config(LEMI_YML), _Handlers(), queue=Queue(tmp_path / "q.db")
        ):
            pytest.fail("started")
    assert closed == ["queue"]


def test_the_setup_page_takes_only_its_own_paths(bare: Path) -> None:
    """Mounted behind the App's routes: a method the App's route does not take is still 405 there."""
    app = create_app()
    with TestClient(app, base_url="http://127.0.0.1:8080", client=("127.0.0.1", 5000)) as client:
        assert client.get("/").status_code == 200  # the setup form
        assert client.get("/webhook").status_code == 405
        assert client.post("/healthz").status_code == 405
        assert client.post("/").status_code == 405  # the setup form's own route
        assert client.get("/nowhere").status_code == 404
        assert client.post("/webhook", content=b"{}").status_code == 503
        assert client.get("/healthz").json()["app"] == "unconfigured"
    assert [route.path for route in app.routes] == [
        "/webhook",
        "/healthz",
        "/readyz",
        "/metrics",
    ]  # unmounted once stopped
