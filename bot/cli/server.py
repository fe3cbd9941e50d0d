"""``lemi serve`` and ``lemi worker``: the App's web server (uvicorn, serving :func:`served_app`)
and the process that does its work.

Three ways to run the App on one embedded queue:

* ``lemi serve``: one process, intake and ``LEMI_WORKERS`` workers together;
* ``lemi serve --intake-only`` and ``lemi worker``: the Procfile's ``web`` and ``worker``;
* ``lemi serve --with-worker`` (``make run``): the two of them, the worker started, watched and
  stopped by ``lemi serve``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from bot.cli.base import cli

log = logging.getLogger("lemi.serve")

FC = TypeVar("FC", bound=Callable[..., Any])

WORKER_NICE = 10  # `lemi worker` lowers its priority by this much: intake first on a shared core
RESTART_SECONDS = 1.0  # a `--with-worker` worker that exits is started again after this


def _read_env_file(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """--env-file is eager: its variables are in the environment before --host and --port
    (and the app's settings) read it. The environment wins over the file."""
    if value:
        from bot.setup.envfile import load_env_file

        if loaded := load_env_file(value):
            click.echo(f"lemi: read {', '.join(loaded)} from {value}", err=True)
    return value


def env_file_option(help: str) -> Callable[[FC], FC]:
    return click.option(
        "--env-file", type=click.Path(dir_okay=False), is_eager=True, callback=_read_env_file, help=help
    )


@cli.command()
@env_file_option(
    "Set the variables of this file (KEY=value lines) that the environment does not set. "
    "`make run` passes ./.env, where the setup page writes the App's credentials; a missing file is fine."
)
@click.option("--host", default=lambda: os.environ.get("HOST", "127.0.0.1"), show_default="$HOST or 127.0.0.1")
@click.option("--port", type=int, default=lambda: int(os.environ.get("PORT", "8080")), show_default="$PORT or 8080")
@click.option(
    "--intake-only",
    is_flag=True,
    help="Only accept deliveries (check, store, answer); a `lemi worker` process does the work. "
    "The Procfile's web line.",
)
@click.option(
    "--with-worker",
    is_flag=True,
    help="Intake here, and the work in a `lemi worker` process that this one starts, starts again if it "
    "exits, and stops with it (`make run`).",
)
def serve(env_file: str | None, host: str, port: int, intake_only: bool, with_worker: bool) -> None:
    """Run the GitHub App's server (webhooks, health, metrics; without credentials, the setup page).

    Without --intake-only or --with-worker it also runs LEMI_WORKERS workers in this process.
    SIGTERM stops it gracefully, exit code 0: no new connection or job, the running jobs get
    LEMI_SHUTDOWN_GRACE_SECONDS to finish (or are given back to the queue)."""
    os.environ["PORT"] = str(port)  # the settings (and the setup page's address on the console) see --port too
    app = None
    if intake_only or with_worker:
        from bot.server.app import create_app

        app = create_app(workers=0)
    companion = Companion(env_file, grace=_worker_grace()) if with_worker else None
    # uvicorn shuts down on SIGTERM, then raises it again: here, where it ends the command (exit 0)
    previous = signal.signal(signal.SIGTERM, _terminated)
    if companion is not None:
        companion.start()
    try:
        if app is None:
            from bot.server.app import app
        run_server(
            served_app(app), host=host, port=port, log_level="info", proxy_headers=False, access_log=False,
            on_exit=lambda: _stop_taking_jobs(app),
        )  # fmt: skip
    except Terminated:
        pass  # stopped as asked
    finally:
        if companion is not None:
            companion.stop()
        signal.signal(signal.SIGTERM, previous)
        from bot.core import logs

        logs.flush()


def run_server(app: Any, *, on_exit: Callable[[], None] = lambda: None, **options: Any) -> None:
    """uvicorn serving ``app`` with ``options`` (uvicorn.Config's), saying where it listens once it
    does; ``on_exit`` is called (in the event loop) as soon as a signal asks it to stop."""
    import uvicorn

    class Listening(uvicorn.Server):
        def handle_exit(self, sig: int, frame: Any) -> None:
            super().handle_exit(sig, frame)
            try:  # a signal handler: leave it to the loop
                asyncio.get_running_loop().call_soon_threadsafe(on_exit)
            except RuntimeError:  # no loop runs (yet): nothing has taken a job
                pass

        async def startup(self, sockets: Any = None) -> None:
            await super().startup(sockets)
            if self.started:
                urls = [_url(sock.getsockname()) for server in self.servers for sock in server.sockets]
                log.info("lemi serve: listening on %s (pid %s)", ", ".join(urls), os.getpid())

    from bot.core import logs

    # uvicorn's own lines (started, stopping, errors) as lemi's JSON lines, not its plain-text format
    logs.setup()
    logs.adopt("uvicorn")
    config = uvicorn.Config(app, log_config=None, **options)
    Listening(config).run()


def _worker_grace() -> float:
    """How long a stopping `lemi worker` may take: its jobs' grace (LEMI_SHUTDOWN_GRACE_SECONDS), and
    a few seconds to give their leases back and close."""
    from bot.core.settings import SettingsError, load_settings

    try:
        return load_settings().shutdown_grace_seconds + 5.0
    except SettingsError:  # the worker says what is wrong with them
        return 25.0


def _stop_taking_jobs(app: Any) -> None:
    """SIGTERM: the workers of this process (if any) take no new job, before the connections drain."""
    state = getattr(getattr(app, "state", None), "lemi", None)
    halt = getattr(state, "stop_taking_jobs", None)
    if halt is not None:
        halt()


def _url(address: Any) -> str:
    """The URL of a bound socket's address (host and port; an IPv6 host in brackets)."""
    if isinstance(address, tuple):
        host, port = address[0], address[1]
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
    return f"unix:{address}"


class Terminated(Exception):
    """SIGTERM, once uvicorn has shut down."""


def _terminated(sig: int, frame: Any) -> None:
    raise Terminated()


@cli.command()
@env_file_option(
    "As `lemi serve --env-file`; read again while the App's credentials are missing, so a worker "
    "started before the setup page wrote them starts once they are there."
)
@click.option(
    "--nice",
    type=click.IntRange(0, 19),
    default=WORKER_NICE,
    show_default=True,
    help="Lower this process's scheduling priority by this much (os.nice), so that intake, in the web "
    "process, comes first on a shared core; 0 keeps it.",
)
@click.option(
    "--idle/--no-idle",
    default=False,
    show_default=True,
    help="On Linux, also run at the idle scheduling class (SCHED_IDLE): on a core that intake keeps busy "
    "the work runs only when intake waits, rather than taking a share of it as --nice alone does. Only "
    "where nothing else keeps the core busy for long: the work then gets no CPU at all and its leases "
    "run out (LEMI_LEASE_SECONDS).",
)
@click.option("--parent", type=int, hidden=True, help="Stop when this process is gone (`lemi serve --with-worker`).")
def worker(env_file: str | None, nice: int, idle: bool, parent: int | None) -> None:
    """Run the App's work: LEMI_WORKERS workers on the queue and the redelivery of missed webhooks,
    without intake (the Procfile's worker line, beside `lemi serve --intake-only`)."""
    from bot.server.work import work

    lower_priority(nice, idle)
    reread = _rereader(env_file)

    async def main() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        return await work(stop, reread=reread, parent=parent)

    code = asyncio.run(main())
    if code:
        raise click.exceptions.Exit(code)


def lower_priority(nice: int, idle: bool) -> None:
    """This process (and the threads it starts after) below intake: ``nice``, and the idle
    scheduling class where the system has one. The idle class alone would do on Linux; the nice
    value is what remains where it is missing or refused (a container without the permission)."""
    if nice:
        os.nice(nice)
    if idle and hasattr(os, "SCHED_IDLE"):
        try:
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
        except OSError as exc:
            log.warning("lemi worker: cannot use the idle scheduling class (%s); running at nice %s", exc, nice)


def _rereader(env_file: str | None) -> Any:
    """Read ``env_file`` again when it changed (the setup page wrote it): unset variables only."""
    if not env_file:
        return lambda: None
    from bot.setup.envfile import load_env_file

    seen: list[float | None] = [_mtime(env_file)]

    def reread() -> None:
        now = _mtime(env_file)
        if now != seen[0]:
            seen[0] = now
            if loaded := load_env_file(env_file):
                log.info("read %s from %s", ", ".join(loaded), env_file)

    return reread


def _mtime(path: str) -> float | None:
    try:
        return Path(path).stat().st_mtime
    except OSError:
        return None


class Companion:
    """The `lemi worker` process of `lemi serve --with-worker`: started in a session of its own (a
    Ctrl-C reaches this process, which stops it), started again when it exits, stopped (SIGTERM,
    then SIGKILL after ``grace`` seconds) when this one stops. It stops by itself if this
    process is killed."""

    def __init__(self, env_file: str | None, *, grace: float = 15.0) -> None:
        self.argv = [sys.executable, "-c", "from bot.cli import entrypoint; entrypoint()", "worker"]
        self.argv += ["--parent", str(os.getpid())] + (["--env-file", env_file] if env_file else [])
        self.grace = grace
        self._stopping = threading.Event()
        self._proc: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._keep, name="lemi-worker-companion", daemon=True)

    def start(self) -> None:
        self._spawn()
        self._thread.start()

    def _spawn(self) -> None:
        with self._lock:
            if not self._stopping.is_set():
                self._proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, start_new_session=True)
                click.echo(f"lemi: started `lemi worker` (pid {self._proc.pid})", err=True)

    def _keep(self) -> None:
        while not self._stopping.is_set():
            proc = self._proc
            assert proc is not None
            code = proc.wait()
            if self._stopping.wait(RESTART_SECONDS):
                return
            if code == 2:  # its configuration says it cannot run (it said why): starting it again cannot help
                click.echo("lemi: `lemi worker` cannot run (above); fix that and start lemi again", err=True)
                return
            click.echo(f"lemi: `lemi worker` (pid {proc.pid}) exited with {code}; starting it again", err=True)
            self._spawn()

    def stop(self) -> None:
        with self._lock:
            self._stopping.set()
            proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(self.grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def served_app(app: Any = None, *, trusted: str | list[str] | None = None) -> Any:
    """What ``lemi serve`` hands uvicorn: the App (default ``bot.server.app:app``) behind
    :func:`bot.server.peer.served`. uvicorn's own proxy-header handling is off, and the same
    middleware runs here instead, with the same trusted hosts (``FORWARDED_ALLOW_IPS``,
    default 127.0.0.1 and ::1), after the socket peer is recorded: the setup page decides
    "this machine" on the socket, never on ``X-Forwarded-For``. uvicorn's access log is off
    too: :func:`~bot.server.peer.served` writes the same lines, but not a delivery's answered 2xx."""
    from bot.server.peer import served

    if app is None:
        from bot.server.app import app
    return served(app, trusted)
