"""Graceful shutdown: SIGTERM to a real `lemi serve` or `lemi worker` process running a slow job.

The job is slow because the GitHub fake holds its first request (the pull request's files) until
the test lets it go. After SIGTERM the process leases nothing new (a second job stays queued,
never attempted), and the running job either finishes (within LEMI_SHUTDOWN_GRACE_SECONDS) or,
past it, is stopped and its lease released, so that another worker leases it at once; the
process exits 0 within the grace."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

from app_harness import LEMI_YML, setup_repos
from fakes.github import serving
from fakes.webhooks import for_pull_request
from lemi_process import Server, Worker, db_jobs

from bot.server.worker import RELEASED
from bot.store.sqlite_queue import SQLiteQueue

REPO = "acme/other-service"  # its pull requests touch no service: their job reads the files and is done


class Gate:
    """Holds the fake's answer to the first request for one pull request's files until :attr:`go` is set."""

    def __init__(self, number: int) -> None:
        self.path = f"/repos/{REPO}/pulls/{number}/files"
        self.entered = threading.Event()
        self.go = threading.Event()

    def wrap(self, serve: Any) -> Any:
        def wrapped(method: str, raw_path: str, *args: Any, **kwargs: Any) -> Any:
            if raw_path.split("?", 1)[0] == self.path and not self.entered.is_set():
                self.entered.set()
                self.go.wait(60)  # the fake answers nothing meanwhile: the job is in the middle of a step
            return serve(method, raw_path, *args, **kwargs)

        return wrapped


def pull_requests(github: Any) -> tuple[int, int]:
    installation = setup_repos(github)
    github.add_repo(REPO, files={"README.md": "x\n"}, installation=installation)
    slow = github.open_pull_request(REPO, "slow", files={"README.md": "slow\n"})
    later = github.open_pull_request(REPO, "later", files={"README.md": "later\n"})
    return slow, later


def rows(db: Path) -> dict[str, dict[str, Any]]:
    return {job["dedupe_id"]: job for job in db_jobs(db)}


def terminate(process: Server, timeout: float) -> tuple[int, float]:
    """SIGTERM, then its exit code and how long it took to exit."""
    assert process.proc is not None
    started = time.monotonic()
    os.kill(process.pid, signal.SIGTERM)
    code = process.proc.wait(timeout=timeout)
    return code, time.monotonic() - started


def test_on_sigterm_lemi_serve_lets_the_running_job_finish_and_leases_no_other(github: Any, tmp_path: Path) -> None:
    slow, later = pull_requests(github)
    db = tmp_path / "queue.db"
    server = Server(
        github, tmp_path, db, lemi_yml=LEMI_YML, args=("serve",), LEMI_WORKERS="1", LEMI_SHUTDOWN_GRACE_SECONDS="20"
    )
    gate = Gate(slow)
    try:
        with serving(github, gate.wrap):
            server.start()
            assert server.deliver("pull_request", for_pull_request(github, REPO, slow), "slow").status_code == 202
            assert gate.entered.wait(20), server.output()
            assert server.deliver("pull_request", for_pull_request(github, REPO, later), "later").status_code == 202
            assert server.proc is not None
            started = time.monotonic()
            os.kill(server.pid, signal.SIGTERM)
            time.sleep(1.5)  # the process waits for its running job
            assert server.alive(), server.output()
            assert (rows(db)["slow"]["state"], rows(db)["later"]["state"]) == ("running", "queued")
            gate.go.set()
            code = server.proc.wait(timeout=25)
            took = time.monotonic() - started
    finally:
        gate.go.set()
        server.kill()
    assert code == 0, server.output()
    assert took < 20, f"{took:.1f} s"
    jobs = rows(db)
    assert (jobs["slow"]["state"], jobs["slow"]["attempts"]) == ("done", 1)  # finished, once
    assert (jobs["later"]["state"], jobs["later"]["attempts"]) == ("queued", 0)  # never leased after SIGTERM
    assert "stopping: no new jobs" in server.output()


def test_on_sigterm_lemi_worker_releases_the_lease_of_a_job_that_outlasts_the_grace(
    github: Any, tmp_path: Path
) -> None:
    slow, later = pull_requests(github)
    db = tmp_path / "queue.db"
    intake = Server(github, tmp_path, db, lemi_yml=LEMI_YML, args=("serve", "--intake-only"))
    work = Worker(
        github, tmp_path, db, lemi_yml=LEMI_YML, args=("worker", "--nice", "0"),
        LEMI_WORKERS="1", LEMI_SHUTDOWN_GRACE_SECONDS="1", LEMI_LEASE_SECONDS="300",
    )  # fmt: skip
    gate = Gate(slow)
    try:
        with serving(github, gate.wrap):
            intake.start()
            work.start()
            assert intake.deliver("pull_request", for_pull_request(github, REPO, slow), "slow").status_code == 202
            assert gate.entered.wait(20), work.output()
            assert intake.deliver("pull_request", for_pull_request(github, REPO, later), "later").status_code == 202
            code, took = terminate(work, timeout=20)  # the job is still held by the fake
            jobs = rows(db)
            # another worker takes the released job at once (its lease had 300 s to run)
            leased = asyncio.run(lease_now(db))
    finally:
        gate.go.set()
        work.kill()
        intake.kill()
    assert code == 0, work.output()
    assert took < 1 + 5, f"{took:.1f} s"  # the grace, and the process's own exit
    assert (jobs["slow"]["state"], jobs["slow"]["attempts"], jobs["slow"]["last_error"]) == ("queued", 1, RELEASED)
    assert (jobs["later"]["state"], jobs["later"]["attempts"]) == ("queued", 0)  # never leased after SIGTERM
    assert sorted(leased) == ["later", "slow"]  # both, now: the released one waits for no lease to run out
    assert "released as lemi stops" in work.output()


async def lease_now(db: Path) -> list[str]:
    """What another worker leases now, job after job."""
    queue = SQLiteQueue(db)
    leased: list[str] = []
    try:
        while (job := await queue.lease("another-worker", 60)) is not None:
            leased.append(job.dedupe_id)
        return leased
    finally:
        await queue.close()
