"""The App's lemi.yml read from the infra repository (LEMI_CONFIG=github://OWNER/INFRA/lemi.yml):
read at start with the App's installation, read again with a conditional request (304 when
unchanged) at most once a minute and at once on a push to the default branch; an invalid new
file is kept out, logged, and shown on /healthz while the last good one serves."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from app_harness import LEMI_YML, WEBHOOK_SECRET, RunningApp, settings_for, setup_repos
from fakes.webhooks import for_push
from starlette.testclient import TestClient

from bot.core.config_source import RemoteSource
from bot.server.app import create_app
from bot.server.context import Context
from bot.server.lifespan import Configured, Unconfigured, decide_start
from bot.server.remote_config import EVERY, RemoteConfig, load_remote
from bot.server.worker import WorkerSettings

SOURCE = "github://acme/infra/lemi.yml"
CONTENTS = "/repos/acme/infra/contents/lemi.yml"
CHANGED = LEMI_YML.replace("domain: lemon", "domain: example.com")
INVALID = LEMI_YML.replace("region: us-east-1", "region: mars", 1)


def app_for(github: Any, tmp_path: Path, **settings: Any) -> Any:
    return create_app(
        settings=settings_for(github, tmp_path / "queue.db", config_path=SOURCE, **settings),
        worker_settings=WorkerSettings(lease_seconds=5.0, poll_seconds=0.02, retry_delays=(0.05, 0.1, 0.2)),
    )


def context(client: TestClient) -> Context:
    ctx = client.app.state.lemi.context  # type: ignore[attr-defined]
    assert isinstance(ctx, Context)
    return ctx


def reader(client: TestClient) -> RemoteConfig:
    remote = context(client).remote_config
    assert remote is not None
    return remote


@pytest.fixture
def infra(github: Any) -> int:
    installation = setup_repos(github)
    github.commit("acme/infra", "main", {"lemi.yml": LEMI_YML})
    return installation


def test_the_app_starts_on_the_infra_repositorys_lemi_yml(github: Any, infra: int, tmp_path: Path) -> None:
    with TestClient(app_for(github, tmp_path)) as client:
        assert context(client).config.domain == "lemon"
        health = client.get("/healthz").json()
        assert health["app"] == "ready" and health["config"] == "loaded"
        assert health["config_source"]["ok"] is True and health["config_source"]["source"] == SOURCE
        (read,) = github.calls_to("GET", CONTENTS)
        assert read.installation_id == infra and not read.query.get("ref")  # the default branch


def test_unchanged_is_a_304_and_a_change_is_used_by_the_next_jobs(github: Any, infra: int, tmp_path: Path) -> None:
    with TestClient(app_for(github, tmp_path)) as client:
        ctx = context(client)
        first = ctx.config
        aws = ctx.aws()
        assert client.portal.call(reader(client).refresh) is False
        reads = github.calls_to("GET", CONTENTS)
        assert [c.status for c in reads] == [200, 304]  # read at start, then unchanged
        assert ctx.config is first

        github.commit("acme/infra", "main", {"lemi.yml": CHANGED})
        assert client.portal.call(reader(client).refresh) is True
        assert github.calls_to("GET", CONTENTS)[-1].status == 200
        assert ctx.config.domain == "example.com" and client.app.state.lemi.config is ctx.config  # type: ignore[attr-defined]
        assert ctx.aws() is not aws and ctx.aws().config is ctx.config  # made again from the new file
        assert ctx.owners.config is ctx.config


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{record.levelname} {record.getMessage()}")


@pytest.fixture
def logged() -> Any:
    lines = Lines()
    logger = logging.getLogger("lemi.config")
    logger.addHandler(lines)
    yield lines.lines
    logger.removeHandler(lines)


def test_an_invalid_update_is_kept_out_logged_and_shown(
    github: Any, infra: int, tmp_path: Path, logged: list[str]
) -> None:
    with TestClient(app_for(github, tmp_path)) as client:
        ctx = context(client)
        good = ctx.config
        github.commit("acme/infra", "main", {"lemi.yml": INVALID})
        assert client.portal.call(reader(client).refresh) is False
        assert ctx.config is good
        (line,) = logged
        assert line.startswith("ERROR ")
        assert "the last good one stays in use" in line and f"{SOURCE}:9:13" in line and "'mars'" in line
        health = client.get("/healthz").json()
        assert health["status"] == "ok" and health["config"] == "loaded"  # liveness: still serving
        status = health["config_source"]
        assert status["ok"] is False and "is not valid; the last good one stays in use" in status["detail"]
        assert "environments.staging.region" in status["detail"]

        # the same refused file is not logged again; a fixed one is taken
        assert client.portal.call(reader(client).refresh) is False
        assert len(logged) == 1
        github.commit("acme/infra", "main", {"lemi.yml": CHANGED})
        assert client.portal.call(reader(client).refresh) is True
        assert ctx.config.domain == "example.com" and client.get("/healthz").json()["config_source"]["ok"] is True


def test_a_push_to_the_default_branch_reads_it_again(github: Any, infra: int, tmp_path: Path) -> None:
    with TestClient(app_for(github, tmp_path)) as client:
        app = RunningApp(client, tmp_path / "queue.db", WEBHOOK_SECRET)
        ctx = context(client)
        reads = len(github.calls_to("GET", CONTENTS))

        before = github.branch_sha("acme/infra", "develop") or github.branch_sha("acme/infra", "main")
        other = github.commit("acme/infra", "develop", {"lemi.yml": INVALID})
        assert app.deliver("push", for_push(github, "acme/infra", "develop", before, other)).status_code == 202
        app.drain()
        assert len(github.calls_to("GET", CONTENTS)) == reads  # not the default branch: not read

        before = github.branch_sha("acme/infra", "main")
        after = github.commit("acme/infra", "main", {"lemi.yml": CHANGED})
        assert app.deliver("push", for_push(github, "acme/infra", "main", before, after)).status_code == 202
        app.drain()
        assert ctx.config.domain == "example.com"  # within the minute: the push
        assert len(github.calls_to("GET", CONTENTS)) == reads + 1


async def test_at_most_once_a_minute(github: Any, infra: int, tmp_path: Path) -> None:
    import aiohttp

    from bot.github.auth import AppAuth

    source = RemoteSource("acme/infra", "lemi.yml")
    now = [1000.0]
    changes: list[str] = []
    async with aiohttp.ClientSession() as session:
        auth = AppAuth(session, app_id=str(github.app_id), private_key=github.private_key_pem, base_url=github.url)
        first = await load_remote(await auth.for_repository("acme/infra"), source)
        remote = RemoteConfig(
            source,
            first,
            client=lambda: auth.for_repository("acme/infra"),
            on_change=lambda config: changes.append(config.domain),
            clock=lambda: now[0],
        )
        github.commit("acme/infra", "main", {"lemi.yml": CHANGED})
        reads = len(github.calls_to("GET", CONTENTS))
        now[0] += EVERY - 1
        assert await remote.refresh(now=False) is False
        assert len(github.calls_to("GET", CONTENTS)) == reads and not changes
        now[0] += 1
        assert await remote.refresh(now=False) is True
        assert changes == ["example.com"] and len(github.calls_to("GET", CONTENTS)) == reads + 1
        assert await remote.refresh(now=False) is False  # just read
        assert len(github.calls_to("GET", CONTENTS)) == reads + 1


async def test_the_periodic_reader_runs_on_its_own(github: Any, infra: int) -> None:
    import asyncio

    import aiohttp

    from bot.github.auth import AppAuth

    source = RemoteSource("acme/infra", "lemi.yml")
    changed = asyncio.Event()
    async with aiohttp.ClientSession() as session:
        auth = AppAuth(session, app_id=str(github.app_id), private_key=github.private_key_pem, base_url=github.url)
        first = await load_remote(await auth.for_repository("acme/infra"), source)
        remote = RemoteConfig(
            source,
            first,
            client=lambda: auth.for_repository("acme/infra"),
            on_change=lambda _: changed.set(),
            every=0.05,
        )
        github.commit("acme/infra", "main", {"lemi.yml": CHANGED})
        remote.start()
        try:
            await asyncio.wait_for(changed.wait(), 5)
        finally:
            await remote.stop()
        assert remote.current.config.domain == "example.com"


async def test_start_up_refuses_what_it_cannot_use(github: Any, infra: int, tmp_path: Path) -> None:
    settings = settings_for(github, tmp_path / "q.db", config_path=SOURCE)
    start = await decide_start(settings, quiet=True)
    assert isinstance(start, Configured) and start.remote is not None and start.config.domain == "lemon"

    github.commit("acme/infra", "main", {"lemi.yml": INVALID})
    start = await decide_start(settings, quiet=True)
    assert isinstance(start, Unconfigured) and not start.setup
    assert f"{SOURCE}:9:13" in start.problem

    missing = settings_for(github, tmp_path / "q.db", config_path="github://acme/infra/nowhere.yml")
    start = await decide_start(missing, quiet=True)
    assert isinstance(start, Unconfigured) and "no such file on the default branch of acme/infra" in start.problem

    bad = settings_for(github, tmp_path / "q.db", config_path="github://acme/lemi.yml")
    start = await decide_start(bad, quiet=True)
    assert isinstance(start, Unconfigured) and "write it as github://OWNER/INFRA/lemi.yml" in start.problem

    without = settings_for(github, tmp_path / "q.db", config_path=SOURCE, app_id=None)
    start = await decide_start(without, quiet=True)
    assert isinstance(start, Unconfigured) and "read through GitHub with the App's credentials" in start.problem


def test_healthz_of_a_file_config_has_no_source(github: Any, tmp_path: Path) -> None:
    from app_harness import running_app

    with running_app(github, tmp_path) as app:
        assert "config_source" not in app.client.get("/healthz").json()


def test_separate_processes_read_it_and_the_worker_takes_a_push(github: Any, infra: int, tmp_path: Path) -> None:
    """`lemi serve --intake-only` beside `lemi worker`, both on github://: the push the web process
    accepts is run by the worker process, which reads lemi.yml again at once."""
    from lemi_process import LOOPBACK, Server, Worker, wait_until

    db = tmp_path / "queue.db"
    intake = Server(github, tmp_path, db, lemi_yml="", args=("serve", "--intake-only"), LEMI_CONFIG=SOURCE)
    work = Worker(github, tmp_path, db, lemi_yml="", args=("worker",), LEMI_CONFIG=SOURCE, LEMI_WORKERS="1")
    try:
        intake.start()
        work.start()
        health = LOOPBACK.get(f"{intake.url}/healthz").json()
        assert health["app"] == "ready" and health["config_source"]["ok"] is True, health
        before = github.branch_sha("acme/infra", "main")
        after = github.commit("acme/infra", "main", {"lemi.yml": CHANGED})
        push = for_push(github, "acme/infra", "main", before, after)
        assert intake.deliver("push", push, "config-push-1").status_code == 202
        wait_until(lambda: "changed (blob" in work.output(), 20, "the worker read lemi.yml again", work.output)
        assert (work.stop(), intake.stop())[0] == 0
    finally:
        work.kill()
        intake.kill()
