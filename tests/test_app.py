"""The App's server: it starts (as `make run` starts it) and answers GET /healthz."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from checkout import LEMI_YML, write
from starlette.testclient import TestClient

from bot.server.app import create_app


def test_healthz_without_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # the setup page writes its token beside ./.env
    monkeypatch.setenv("LEMI_CONFIG", str(tmp_path / "absent.yml"))
    with TestClient(create_app()) as client:
        response = client.get("/healthz")
    assert response.status_code == 200
    body = response.json()
    assert (body["status"], body["app"], body["config"]) == ("ok", "unconfigured", "missing")
    assert "lemi.yml not found" in body["problem"]


def test_healthz_with_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # the setup page writes its token beside ./.env
    monkeypatch.setenv("LEMI_CONFIG", str(write(tmp_path, "lemi.yml", LEMI_YML)))
    for name in ("GITHUB_APP_ID", "GITHUB_APP_PRIVATE_KEY", "GITHUB_APP_PRIVATE_KEY_PATH", "GITHUB_WEBHOOK_SECRET"):
        monkeypatch.delenv(name, raising=False)
    with TestClient(create_app()) as client:
        body = client.get("/healthz").json()
    assert (body["status"], body["app"], body["config"]) == ("ok", "unconfigured", "loaded")
    assert "GITHUB_APP_ID" in body["problem"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_lemi_serve_starts_and_answers_health(tmp_path: Path) -> None:
    lemi = Path(sys.executable).parent / "lemi"
    port = _free_port()
    env = {**os.environ, "LEMI_CONFIG": str(tmp_path / "absent.yml"), "PORT": str(port)}
    proc = subprocess.Popen(
        [str(lemi), "serve"], env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as response:
                    assert response.status == 200
                    break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise AssertionError("lemi serve did not answer /healthz") from None
                time.sleep(0.1)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
