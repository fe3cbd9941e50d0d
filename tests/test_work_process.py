"""The work in a process of its own: `lemi serve --intake-only` beside `lemi worker`, and
`lemi serve --with-worker` (what `make run` starts), as real processes on one SQLite queue,
against the shared GitHub fake. And the queue's notice of a job another process put."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from app_harness import LEMI_YML, SERVICE_YAML, setup_repos
from fakes.github import serving
from fakes.webhooks import for_pull_request
from lemi_process import LOOPBACK, Server, Worker, db_jobs, free_port, wait_until

from bot.store.jobs import WebhookJob
from bot.store.queue import NewJob
from bot.store.sqlite_queue import SQLiteQueue

SERVICE = "acme/demo-service"
INFRA = "acme/infra"
SERVICE_FILES = {"deploy/demo-service/service.yaml": SERVICE_YAML}
PROVISION_CHECK = "lemi / provision"


def open_service_pr(github: Any) -> int:
    installation = setup_repos(github)
    github.add_repo("acme/other-service", files={"README.md": "x\n"}, installation=installation)
    return github.open_pull_request(SERVICE, "provision", files=SERVICE_FILES)


def other_pr(github: Any) -> dict[str, Any]:
    """A pull request that touches no service: its job reads its files and is done."""
    number = github.open_pull_request("acme/other-service", "docs", files={"README.md": "y\n"})
    return for_pull_request(github, "acme/other-service", number)


def web(github: Any, tmp_path: Path, db: Path, *args: str, **env: str) -> Server:
    return Server(github, tmp_path, db, lemi_yml=LEMI_YML, args=("serve", *args), **env)


def worker(github: Any, tmp_path: Path, db: Path, *args: str, **env: str) -> Worker:
    return Worker(github, tmp_path, db, lemi_yml=LEMI_YML, args=("worker", *args), **{"LEMI_WORKERS": "2", **env})


def provisioned_once(github: Any, number: int) -> None:
    assert len(github.pulls(INFRA)) == 1
    assert len([c for c in github.comments(SERVICE, number) if c.via_app]) == 1


# ---- the queue notices jobs other processes put ---------------------------------------------------

PUT = """
import asyncio, sys
from bot.store.jobs import WebhookJob
from bot.store.queue import NewJob
from bot.store.sqlite_queue import SQLiteQueue

async def main():
    queue = SQLiteQueue(sys.argv[1])
    await queue.put(NewJob("from-another-process", "k", WebhookJob("ping", "from-another-process", "acme/x")))
    await queue.close()

asyncio.run(main())
"""


async def quiet(queue: SQLiteQueue) -> None:
    """Past the wakes a fresh waiter gets: for a put of this process, and the notice's first look."""
    for _ in range(2):
        await queue.wait_for_work(0.5)


async def test_a_waiting_worker_notices_a_job_another_process_put(tmp_path: Path) -> None:
    """wait_for_work is asked to wait an hour: only the notice of the other process's commit ends it."""
    queue = SQLiteQueue(tmp_path / "q.db")
    await queue.put(NewJob("first", "k0", WebhookJob("ping", "first", "acme/x")))  # the file and its table exist
    assert (await queue.lease("w", 60)) is not None
    await quiet(queue)
    waiting = asyncio.create_task(queue.wait_for_work(3600))
    await asyncio.sleep(0.2)  # the notice has had its first look
    assert not waiting.done()
    put = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-c", textwrap.dedent(PUT), str(tmp_path / "q.db")], capture_output=True
    )
    assert put.returncode == 0, put.stderr.decode()
    await asyncio.wait_for(waiting, timeout=30)
    job = await queue.lease("w", 60)
    assert job is not None and job.dedupe_id == "from-another-process"
    await queue.close()


async def test_a_settled_job_wakes_nobody_but_a_new_one_does(tmp_path: Path) -> None:
    """Leases and retries written by another connection change the file but add no job."""
    mine, other = SQLiteQueue(tmp_path / "q.db"), SQLiteQueue(tmp_path / "q.db")
    await other.put(NewJob("a", "k", WebhookJob("ping", "a", "acme/x")))
    await quiet(mine)
    waiting = asyncio.create_task(mine.wait_for_work(3600))
    await asyncio.sleep(0.2)
    job = await other.lease("w", 60)
    assert job is not None
    await other.retry(job, 3600, "later")
    await asyncio.sleep(0.2)
    assert not waiting.done()
    await other.put(NewJob("b", "k2", WebhookJob("ping", "b", "acme/x")))
    await asyncio.wait_for(waiting, timeout=30)
    await other.close()
    await mine.close()


# ---- lemi serve --intake-only beside lemi worker ----------------------------------------------------


async def test_a_new_job_wakes_one_waiting_worker_and_a_lease_wakes_the_next(tmp_path: Path) -> None:
    """Every woken worker searches the queue: one job wakes one of them; the worker that leases a
    job wakes the next, which finds the second job."""
    queue = SQLiteQueue(":memory:")  # no other process: only this one's puts wake
    waiting = [asyncio.create_task(queue.wait_for_work(3600)) for _ in range(3)]
    await asyncio.sleep(0.1)
    await queue.put(NewJob("a", "ka", WebhookJob("ping", "a", "acme/x")))
    await queue.put(NewJob("b", "kb", WebhookJob("ping", "b", "acme/x")))
    await asyncio.sleep(0.1)
    assert sum(w.done() for w in waiting) == 2  # one wake each
    assert (await queue.lease("w", 60)) is not None  # wakes the third
    await asyncio.wait_for(asyncio.gather(*waiting), timeout=10)
    assert (await queue.lease("w", 60)) is not None
    assert (await queue.lease("w", 60)) is None
    await queue.close()


def test_a_delivery_the_web_process_accepts_is_run_by_the_worker_process(github: Any, tmp_path: Path) -> None:
    number = open_service_pr(github)
    db = tmp_path / "queue.db"
    metrics_port = free_port()
    intake = web(github, tmp_path, db, "--intake-only")
    work = worker(github, tmp_path, db, "--idle", LEMI_WORKER_METRICS_PORT=str(metrics_port))
    try:
        intake.start()
        work.start()
        if hasattr(os, "SCHED_IDLE"):  # --idle: the work runs only when intake leaves the core idle, every thread
            tasks = os.listdir(f"/proc/{work.pid}/task")
            assert {os.sched_getscheduler(int(t)) for t in tasks} == {os.SCHED_IDLE}, tasks
            assert os.sched_getscheduler(intake.pid) == os.SCHED_OTHER
        delivery = str(uuid.uuid4())
        response = intake.deliver("pull_request", for_pull_request(github, SERVICE, number, "opened"), delivery)
        assert (response.status_code, response.json()) == (202, {"status": "queued"})
        wait_until(lambda: db_jobs(db)[0]["state"] == "done", 20, "the job is done", work.output)
        [job] = db_jobs(db)
        assert job["worker"].startswith(f"{work.pid}-")  # the worker process ran it, not the web process
        provisioned_once(github, number)
        # the work's own metrics, from the worker process
        metrics = LOOPBACK.get(f"http://127.0.0.1:{metrics_port}/metrics").text
        assert 'lemi_job_duration_seconds_count{kind="webhook",outcome="done"} 1.0' in metrics, metrics
        assert "lemi_rollouts_watched 0.0" in metrics
        assert (work.stop(), intake.stop()) == (0, 0)  # both close cleanly on SIGTERM
    finally:
        work.kill()
        intake.kill()
    assert "lemi worker: stopping" in work.output()


def test_killing_the_worker_process_loses_nothing(github: Any, tmp_path: Path) -> None:
    """SIGKILL the worker right after GitHub applied the POST that opens the infra PR; a delivery
    accepted while no worker runs waits too. A new worker runs both, the first exactly once."""
    number = open_service_pr(github)
    db = tmp_path / "queue.db"
    intake = web(github, tmp_path, db, "--intake-only")
    first = worker(github, tmp_path, db, LEMI_LEASE_SECONDS="1")
    second = worker(github, tmp_path, db, LEMI_LEASE_SECONDS="1")
    killed = threading.Event()

    def kill_on_infra_pr(serve: Any) -> Any:
        def wrapped(method: str, raw_path: str, *args: Any, **kwargs: Any) -> Any:
            answer = serve(method, raw_path, *args, **kwargs)
            if method.upper() == "POST" and unquote(raw_path) == f"/repos/{INFRA}/pulls" and not killed.is_set():
                first.kill()  # before the answer leaves the fake
                killed.set()
            return answer

        return wrapped

    try:
        with serving(github, kill_on_infra_pr):
            intake.start()
            first.start()
            response = intake.deliver("pull_request", for_pull_request(github, SERVICE, number), str(uuid.uuid4()))
            assert response.status_code == 202
            assert killed.wait(20), f"the job never opened the infra PR\n{first.output()}"
        assert first.proc is not None and first.proc.returncode == -signal.SIGKILL
        later = intake.deliver("pull_request", other_pr(github), "later")
        assert (later.status_code, later.json()) == (202, {"status": "queued"})  # intake does not need a worker
        assert [j["state"] for j in db_jobs(db)] == ["running", "queued"]
        second.start()
        wait_until(lambda: [j["state"] for j in db_jobs(db)] == ["done", "done"], 20, "both jobs done", second.output)
    finally:
        first.kill()
        second.kill()
        intake.kill()
    assert [(j["state"], j["attempts"]) for j in db_jobs(db)] == [("done", 2), ("done", 1)]
    provisioned_once(github, number)


# ---- lemi serve --with-worker (make run) ---------------------------------------------------------------


def worker_pids(server: Server) -> list[int]:
    return [int(pid) for pid in re.findall(r"started `lemi worker` \(pid (\d+)\)", server.output())]


def gone(pid: int) -> bool:
    try:
        Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z"


def test_serve_with_worker_starts_watches_and_stops_its_worker(github: Any, tmp_path: Path) -> None:
    number = open_service_pr(github)
    db = tmp_path / "queue.db"
    server = web(github, tmp_path, db, "--with-worker")
    try:
        server.start()
        [child] = wait_until(lambda: worker_pids(server), 10, "a worker started", server.output)
        response = server.deliver("pull_request", for_pull_request(github, SERVICE, number), str(uuid.uuid4()))
        assert response.status_code == 202
        wait_until(lambda: db_jobs(db)[0]["state"] == "done", 20, "the job is done", server.output)
        assert db_jobs(db)[0]["worker"].startswith(f"{child}-")  # the child ran it
        provisioned_once(github, number)
        # a worker that dies is started again, and runs what was accepted meanwhile
        os_kill(child)
        [_, again] = wait_until(lambda: worker_pids(server)[1:] and worker_pids(server), 20, "restarted", server.output)
        assert server.deliver("pull_request", other_pr(github), "meanwhile").status_code == 202
        wait_until(lambda: db_jobs(db)[1]["state"] == "done", 20, "the second job is done", server.output)
        assert db_jobs(db)[1]["worker"].startswith(f"{again}-")
        assert server.stop() == 0
        assert gone(again), server.output()
    finally:
        server.kill()


def os_kill(pid: int) -> None:
    import os

    os.kill(pid, signal.SIGKILL)


def test_a_fresh_machine_shows_the_setup_page_and_the_worker_starts_once_credentials_are_written(
    github: Any, tmp_path: Path
) -> None:
    """`make run` with no credentials: the setup page answers, the worker waits and says why; once
    .env has the App's credentials (the setup page writes them) the worker starts by itself."""
    db = tmp_path / "queue.db"
    server = web(github, tmp_path, db, "--with-worker", "--env-file", str(tmp_path / ".env"))
    credentials = {k: server.env.pop(k) for k in ("GITHUB_APP_ID", "GITHUB_APP_PRIVATE_KEY", "GITHUB_WEBHOOK_SECRET")}
    server.ready = lambda: wait_until(lambda: _answers(server), 20, "lemi serve answers", server.output)  # type: ignore[method-assign]
    try:
        server.start()
        assert LOOPBACK.get(f"{server.url}/healthz").json()["app"] == "unconfigured"
        page = LOOPBACK.get(f"{server.url}/")
        assert page.status_code == 200 and "setup" in page.text.lower()
        wait_until(
            lambda: "waits for the App's configuration" in server.output(), 20, "the worker waits", server.output
        )
        key = credentials["GITHUB_APP_PRIVATE_KEY"].replace("\n", "\\n")
        env = [f"GITHUB_APP_ID={credentials['GITHUB_APP_ID']}", f"GITHUB_APP_PRIVATE_KEY='{key}'"]
        env.append(f"GITHUB_WEBHOOK_SECRET={credentials['GITHUB_WEBHOOK_SECRET']}")
        (tmp_path / ".env").write_text("\n".join(env) + "\n")
        (tmp_path / ".env").chmod(0o600)
        wait_until(lambda: "workers on" in server.output(), 20, "the worker started", server.output)
        assert server.stop() == 0
    finally:
        server.kill()
    assert all(gone(pid) for pid in worker_pids(server))


def _answers(server: Server) -> bool:
    try:
        return LOOPBACK.get(f"{server.url}/healthz", timeout=1).status_code == 200
    except Exception:  # noqa: BLE001 - not listening yet
        assert server.alive(), server.output()
        return False


def test_serve_logs_the_url_it_listens_on(github: Any, tmp_path: Path) -> None:
    """`lemi serve --port N` says, in its JSON log, where it really listens: --port, not $PORT."""
    port = free_port()
    server = web(github, tmp_path, tmp_path / "queue.db", "--port", str(port), PORT=str(free_port()))
    server.port, server.url = port, f"http://127.0.0.1:{port}"
    try:
        server.start()
    finally:
        server.stop()
    said = [json.loads(line) for line in server.output().splitlines() if "listening on" in line]
    assert [(e["logger"], e["message"].split(" (pid")[0]) for e in said] == [
        ("lemi.serve", f"lemi serve: listening on http://127.0.0.1:{port}")
    ], server.output()
    # every line is a JSON line, uvicorn's own (started, shutting down) among them
    lines = [json.loads(line) for line in server.output().splitlines() if line.strip()]
    assert {"uvicorn.error"} <= {e["logger"] for e in lines}, server.output()
