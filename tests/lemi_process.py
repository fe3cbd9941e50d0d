"""`lemi serve` and `lemi worker` as real processes for the tests that SIGKILL them (test_webhook,
test_faults, test_work_process), with the helpers they share: a free loopback port, a proxy-free HTTP client, the queue's
rows read straight from SQLite, and a bounded wait."""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from app_harness import WEBHOOK_SECRET
from fakes.webhooks import signed


def wait_until(predicate: Callable[[], Any], timeout: float, what: str, output: Callable[[], str] = str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s\n{output()}")
        time.sleep(0.02)


def db_jobs(db: Path) -> list[dict[str, Any]]:
    conn = sqlite3.connect(db, timeout=5)
    conn.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in conn.execute(
            "SELECT id, dedupe_id, key, kind, state, attempts, worker, last_error FROM jobs ORDER BY id")]  # fmt: skip
    except sqlite3.OperationalError:
        return []
    finally:
        conn.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


LOOPBACK = httpx.Client(trust_env=False, timeout=10)  # no proxy may see loopback traffic


class Server:
    """`lemi serve` (the venv's console script) as a real process on a free loopback port,
    its output read through a pipe (so a file-size limit on the process spares its logs)."""

    args = ("serve",)

    def __init__(
        self, github: Any, tmp_path: Path, db: Path, *, lemi_yml: str, args: tuple[str, ...] = (), **env: str
    ) -> None:
        self.args = args or self.args
        config = tmp_path / "lemi.yml"
        config.write_text(lemi_yml)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = tmp_path / f"serve-{self.port}.log"
        base = {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "LEMI_"))}
        self.env = {
            **base,  # the AWS variables of the aws_env fixture: moto, fake credentials
            "GITHUB_API_URL": github.url,
            "GITHUB_APP_ID": str(github.app_id),
            "GITHUB_APP_PRIVATE_KEY": github.private_key_pem,
            "GITHUB_WEBHOOK_SECRET": WEBHOOK_SECRET,
            "LEMI_CONFIG": str(config),
            "LEMI_QUEUE": f"sqlite:///{db}",
            "LEMI_RETRY_DELAYS": "0.1,0.2,0.4",
            "LEMI_REDELIVER_INTERVAL_SECONDS": "0",  # these tests play GitHub's redeliveries themselves
            "HOST": "127.0.0.1",
            "PORT": str(self.port),
            "NO_PROXY": "127.0.0.1,localhost",
            **env,
        }
        self.proc: subprocess.Popen[bytes] | None = None
        self._reader: threading.Thread | None = None

    def start(self) -> Server:
        lemi = Path(sys.executable).parent / "lemi"
        self.proc = subprocess.Popen(
            [str(lemi), *self.args],
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        self._reader = threading.Thread(target=self._copy, args=(self.proc,), daemon=True)
        self._reader.start()
        self.ready()
        return self

    def ready(self) -> None:
        deadline = time.monotonic() + 20
        while True:
            try:
                body = LOOPBACK.get(f"{self.url}/healthz", timeout=1).json()
                assert body.get("app") == "ready", f"lemi serve is not ready: {body}\n{self.output()}"
                return
            except httpx.TransportError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"lemi serve did not answer /healthz\n{self.output()}") from None
                time.sleep(0.05)

    def _copy(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        with open(self.log, "ab") as log:
            for line in proc.stdout:  # ends when the process is gone
                log.write(line)
                log.flush()

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def deliver(self, event: str, payload: dict[str, Any], delivery: str) -> httpx.Response:
        headers, body = signed(event, payload, WEBHOOK_SECRET, delivery=delivery)
        return LOOPBACK.post(f"{self.url}/webhook", content=body, headers=headers)

    def kill(self) -> None:
        """SIGKILL (kill -9): no lifespan shutdown, no lease given back."""
        if self.proc is not None:
            if self.proc.poll() is None:
                os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        if self._reader is not None:
            self._reader.join(timeout=5)  # the pipe ends with the process

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> int:
        """Stop it as a supervisor would (SIGTERM: the lifespan closes everything); its exit code."""
        assert self.proc is not None
        if self.proc.poll() is None:
            os.kill(self.proc.pid, sig)
        code = self.proc.wait(timeout=timeout)
        if self._reader is not None:
            self._reader.join(timeout=5)
        return code

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-6000:] if self.log.exists() else ""


class Worker(Server):
    """`lemi worker` (no HTTP): ready once it says it runs its workers."""

    args = ("worker",)

    def ready(self) -> None:
        wait_until(lambda: "workers on" in self.output() or not self.alive(), 20, "lemi worker started", self.output)
        assert self.alive(), f"lemi worker stopped\n{self.output()}"
