"""Webhook acknowledgement: lemi's POST /webhook against a bare Starlette ceiling.

Starts two real uvicorn servers, one process each, on free 127.0.0.1 ports:

* ``lemi``: ``lemi serve`` -- the real App with a webhook secret, a lemi.yml,
  the durable SQLite queue in a temporary directory and ``LEMI_WORKERS=0``,
  so only acceptance (signature, the routing summary, ``accepts``, the synced enqueue,
  202) is measured;
* ``bare``: bench/bare_webhook.py -- one route that only checks
  X-Hub-Signature-256 and answers 202: the ceiling on this stack.

Both are driven by the same aiohttp load generator: N concurrent connections,
the real signed ``pull_request.opened`` example payload, a unique
X-GitHub-Delivery per request, a warm-up, then a fixed count per target in
alternating rounds, each bounded in time. Prints throughput and latency side
by side, the ratio, the CPU each side used (to show which side was the
bottleneck) and checks that lemi stored every delivery.

Rerun with:

    .venv/bin/python bench/ack.py                      # 5,000 per target, 64 connections
    .venv/bin/python bench/ack.py --clients 2          # load from 2 processes
    .venv/bin/python bench/ack.py --profile /tmp/prof  # py-spy lemi (pip install py-spy first)
    .venv/bin/python bench/ack.py --lemi-cmd "python my_variant.py"   # measure a candidate change

The figures depend on the machine and on what else runs on it: the table
says how much CPU other processes took meanwhile (on a busy machine both
servers starve and even the ratio is off). Compare lemi with the bare
endpoint of the same quiet run (the rounds alternate), not with another run.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import multiprocessing
import os
import resource
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import aiohttp  # noqa: E402
from app_harness import LEMI_YML, WEBHOOK_SECRET  # noqa: E402
from fakes.webhooks import example, signed  # noqa: E402

HOST = "127.0.0.1"
TARGET_RATIO = 0.70
TARGET_P99_MS = 50.0
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


# ---- servers -------------------------------------------------------------------------------------


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


@dataclass
class Server:
    name: str
    process: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def cpu_seconds(self, main_thread: bool = False) -> float:
        """User + system CPU of the server process, all its threads (/proc/<pid>/stat), or
        only of its main thread, the one that runs the event loop (/proc/<pid>/task/<pid>/stat)."""
        pid = self.process.pid
        stat = Path(f"/proc/{pid}/task/{pid}/stat" if main_thread else f"/proc/{pid}/stat")
        fields = stat.read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                tail = self.log.read_text()[-3000:]
                raise RuntimeError(f"{self.name} exited ({self.process.returncode}); see {self.log}:\n{tail}")
            try:
                with _opener.open(f"{self.url}/healthz", timeout=2) as response:
                    if json.loads(response.read()).get("app") == "ready":
                        return
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} not ready in {timeout} s; see {self.log}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


def _die_with_parent() -> None:
    """In the child: get SIGTERM if this benchmark dies, so no server outlives it (Linux)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def start(name: str, argv: list[str], env: dict[str, str], tmp: Path) -> Server:
    log = tmp / f"{name}.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            argv, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=tmp,
            preexec_fn=_die_with_parent,
        )  # fmt: skip
    return Server(name, process, int(argv[argv.index("--port") + 1]), log)


def start_servers(tmp: Path, lemi_cmd: str | None = None) -> tuple[Server, Server, Path]:
    queue_db = tmp / "queue.db"
    (tmp / "lemi.yml").write_text(LEMI_YML)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "LEMI_", "AWS_"))}
    env.update(
        GITHUB_WEBHOOK_SECRET=WEBHOOK_SECRET,
        GITHUB_APP_ID="1",
        GITHUB_APP_PRIVATE_KEY=rsa_pem(),
        GITHUB_API_URL=f"http://{HOST}:9",  # never called: no workers
        LEMI_CONFIG=str(tmp / "lemi.yml"),
        LEMI_QUEUE=f"sqlite:///{queue_db}",
        LEMI_WORKERS="0",
        LEMI_REDELIVER_INTERVAL_SECONDS="0",  # no redelivery check against GitHub: acceptance only
        NO_PROXY="127.0.0.1,localhost",
        PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p),
    )
    lemi_bin = Path(sys.executable).with_name("lemi")
    if not lemi_bin.exists():
        raise SystemExit(f"{lemi_bin} not found: run `make venv` first")
    argv = [str(lemi_bin), "serve", "--host", HOST, "--port"] if lemi_cmd is None else lemi_cmd.split() + ["--port"]
    lemi = start("lemi", [*argv, str(free_port())], env, tmp)
    bare = start("bare", [sys.executable, str(ROOT / "bench" / "bare_webhook.py"), "--host", HOST,
                          "--port", str(free_port())], env, tmp)  # fmt: skip
    for server in (lemi, bare):
        server.wait_ready()
    return lemi, bare, queue_db


# ---- load ----------------------------------------------------------------------------------------


def payload() -> tuple[dict[str, str], bytes]:
    """The real pull_request.opened example, signed; each request gets its own delivery id."""
    headers, body = signed("pull_request", example("pull_request", "opened", with_installation=True), WEBHOOK_SECRET)
    del headers["X-GitHub-Delivery"]
    return headers, body


@dataclass
class Sample:
    latencies: list[float] = field(default_factory=list)  # seconds
    statuses: collections.Counter[str] = field(default_factory=collections.Counter)
    wall: float = 0.0
    client_cpu: float = 0.0
    stopped_by_time: bool = False
    machine_cpu: float = 0.0  # CPU-seconds every process on the machine used meanwhile (/proc/stat)

    def add(self, other: Sample) -> None:
        self.latencies += other.latencies
        self.statuses.update(other.statuses)
        self.wall += other.wall
        self.client_cpu += other.client_cpu
        self.machine_cpu += other.machine_cpu
        self.stopped_by_time = self.stopped_by_time or other.stopped_by_time


async def _drive(url: str, count: int, connections: int, time_limit: float) -> Sample:
    headers, body = payload()
    sample = Sample()
    todo = iter(range(count))
    deadline = time.perf_counter() + time_limit
    connector = aiohttp.TCPConnector(limit=connections, limit_per_host=connections)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=10)) as session:

        async def connection() -> None:
            for _ in todo:  # one shared iterator: `count` requests in all
                if time.perf_counter() > deadline:
                    sample.stopped_by_time = True
                    return
                one = {**headers, "X-GitHub-Delivery": str(uuid.uuid4())}
                began = time.perf_counter()
                try:
                    async with session.post(url, data=body, headers=one) as response:
                        await response.read()
                        status = str(response.status)
                except (TimeoutError, aiohttp.ClientError, OSError) as exc:
                    status = type(exc).__name__
                sample.latencies.append(time.perf_counter() - began)
                sample.statuses[status] += 1

        cpu, began = time.process_time(), time.perf_counter()
        await asyncio.gather(*(connection() for _ in range(connections)))
        sample.wall, sample.client_cpu = time.perf_counter() - began, time.process_time() - cpu
    return sample


def _client_process(url: str, count: int, connections: int, time_limit: float, barrier: Any, out: Any) -> None:
    barrier.wait()
    out.put(asyncio.run(_drive(url, count, connections, time_limit)))


def drive(url: str, count: int, connections: int, clients: int, time_limit: float) -> Sample:
    """``count`` requests over ``connections`` connections, from ``clients`` processes."""
    if clients == 1:
        return asyncio.run(_drive(url, count, connections, time_limit))
    ctx = multiprocessing.get_context("fork")
    barrier, out = ctx.Barrier(clients), ctx.Queue()
    shares = [(count // clients) + (i < count % clients) for i in range(clients)]
    conns = [(connections // clients) + (i < connections % clients) for i in range(clients)]
    procs = [ctx.Process(target=_client_process, args=(url, shares[i], conns[i], time_limit, barrier, out), daemon=True)
             for i in range(clients)]  # fmt: skip
    for proc in procs:
        proc.start()
    parts: list[Sample] = [out.get(timeout=time_limit + 60) for _ in procs]
    for proc in procs:
        proc.join(10)
    merged = Sample()
    for part in parts:
        merged.add(part)
    merged.wall = max(p.wall for p in parts)  # they start together at the barrier
    return merged


# ---- report --------------------------------------------------------------------------------------


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(q / 100 * len(sorted_values) + 0.5) - 1))
    return sorted_values[index]


@dataclass
class Result:
    name: str
    sample: Sample = field(default_factory=Sample)
    server_cpu: float = 0.0
    main_cpu: float = 0.0

    def figures(self) -> dict[str, Any]:
        lat = sorted(self.sample.latencies)
        ok = sum(n for s, n in self.sample.statuses.items() if s.startswith("2"))
        wall = self.sample.wall or float("nan")
        return {
            "requests": len(lat),
            "ok_2xx": ok,
            "errors": len(lat) - ok,
            "statuses": dict(self.sample.statuses),
            "wall_s": round(wall, 3),
            "throughput_rps": round(ok / wall, 1),
            "p50_ms": round(percentile(lat, 50) * 1e3, 2),
            "p90_ms": round(percentile(lat, 90) * 1e3, 2),
            "p99_ms": round(percentile(lat, 99) * 1e3, 2),
            "max_ms": round(lat[-1] * 1e3, 2) if lat else float("nan"),
            "mean_ms": round(statistics.fmean(lat) * 1e3, 2) if lat else float("nan"),
            "server_cpu_pct": round(100 * self.server_cpu / wall, 1),
            "server_cpu_us_per_request": round(1e6 * self.server_cpu / max(1, len(lat)), 1),
            "main_cpu_us_per_request": round(1e6 * self.main_cpu / max(1, len(lat)), 1),
            "client_cpu_pct": round(100 * self.sample.client_cpu / wall, 1),
            "other_cpu_pct": round(
                max(0.0, self.sample.machine_cpu - self.server_cpu - self.sample.client_cpu) * 100 / wall, 1
            ),
            "stopped_by_time_limit": self.sample.stopped_by_time,
        }


def table(results: list[Result]) -> str:
    rows = [
        ("requests measured", "requests", "{}"),
        ("errors (non-2xx)", "errors", "{}"),
        ("throughput (req/s)", "throughput_rps", "{:.0f}"),
        ("latency p50 (ms)", "p50_ms", "{:.1f}"),
        ("latency p90 (ms)", "p90_ms", "{:.1f}"),
        ("latency p99 (ms)", "p99_ms", "{:.1f}"),
        ("latency max (ms)", "max_ms", "{:.1f}"),
        ("server CPU (% of a core)", "server_cpu_pct", "{:.0f}"),
        ("server CPU per request (us)", "server_cpu_us_per_request", "{:.0f}"),
        ("  of it in the event loop (us)", "main_cpu_us_per_request", "{:.0f}"),
        ("client CPU (% of a core)", "client_cpu_pct", "{:.0f}"),
        ("other processes' CPU (%)", "other_cpu_pct", "{:.0f}"),
    ]
    figures = [r.figures() for r in results]
    lines = [f"{'':28}" + "".join(f"{r.name:>24}" for r in results)]
    for label, key, fmt in rows:
        lines.append(f"{label:28}" + "".join(f"{fmt.format(f[key]):>24}" for f in figures))
    return "\n".join(lines)


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), "?")  # fmt: skip
    meminfo = Path("/proc/meminfo").read_text().splitlines()
    mem = int(next(line.split()[1] for line in meminfo if line.startswith("MemTotal")))
    return f"{os.cpu_count()} CPUs ({cpu}), {mem / 2**20:.1f} GiB RAM, Python {sys.version.split()[0]}"


def machine_cpu_seconds() -> float:
    """CPU-seconds spent by everything on the machine since boot (not idle, not iowait)."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(values[:8]) - values[3] - values[4]) / os.sysconf("SC_CLK_TCK")


def fsync_ms(directory: Path, n: int = 100) -> float:
    """Median fsync of a 4 KiB append in the queue's directory (what each enqueue pays at least once)."""
    path = directory / "fsync-probe"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    times = []
    try:
        for _ in range(n):
            os.write(fd, b"x" * 4096)
            began = time.perf_counter()
            os.fsync(fd)
            times.append(time.perf_counter() - began)
    finally:
        os.close(fd)
        path.unlink()
    return statistics.median(times) * 1e3


# ---- main ----------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=5000, help="measured requests per target (default 5000)")
    parser.add_argument("--warmup", type=int, default=500, help="unmeasured requests per target first (default 500)")
    parser.add_argument("--connections", type=int, default=64, help="concurrent connections (default 64)")
    parser.add_argument("--clients", type=int, default=1, help="load generator processes sharing the connections")
    parser.add_argument("--rounds", type=int, default=4, help="alternate bare/lemi this many times (default 4)")
    parser.add_argument("--time-limit", type=float, default=60.0, help="seconds per target per round (default 60)")
    parser.add_argument(
        "--lemi-cmd",
        help="serve lemi with this command instead of `lemi serve --host 127.0.0.1` "
        "(to measure a candidate change); `--port N` is appended",
    )
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument(
        "--profile", type=Path, help="py-spy lemi during its rounds; folded stacks (speedscope.app opens them) go here"
    )
    args = parser.parse_args()

    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="lemi-ack-") as tmp_name:
        tmp = Path(tmp_name)
        lemi, bare, queue_db = start_servers(tmp, args.lemi_cmd)
        results = {"bare": Result("bare starlette"), "lemi": Result("lemi (durable enqueue)")}
        try:
            probe = fsync_ms(tmp)
            print(f"machine: {machine()}; fsync in the queue's directory: {probe:.3f} ms median")
            print(f"load: {args.connections} connections from {args.clients} aiohttp client process(es), "
                  f"{args.warmup} warm-up + {args.requests} measured requests per target in {args.rounds} "
                  f"alternating rounds, <= {args.time_limit:.0f} s per round")  # fmt: skip
            servers = {"bare": bare, "lemi": lemi}
            for name, server in servers.items():
                warm = drive(f"{server.url}/webhook", args.warmup, args.connections, args.clients, args.time_limit)
                bad = {s: n for s, n in warm.statuses.items() if s != "202"}
                if bad:
                    raise SystemExit(f"{name}: warm-up answered {bad}; see {server.log}")
            per_round = [args.requests // args.rounds + (i < args.requests % args.rounds) for i in range(args.rounds)]
            for i, count in enumerate(per_round):
                for name in ("bare", "lemi") if i % 2 == 0 else ("lemi", "bare"):
                    server = servers[name]
                    spy = _start_profile(args.profile, server, i) if (args.profile and name == "lemi") else None
                    cpu, main, everything = server.cpu_seconds(), server.cpu_seconds(True), machine_cpu_seconds()
                    sample = drive(f"{server.url}/webhook", count, args.connections, args.clients, args.time_limit)
                    results[name].server_cpu += server.cpu_seconds() - cpu
                    results[name].main_cpu += server.cpu_seconds(True) - main
                    sample.machine_cpu = machine_cpu_seconds() - everything
                    results[name].sample.add(sample)
                    if spy is not None:
                        _stop_profile(spy)
                    print(f"  round {i + 1} {name}: {len(sample.latencies)} requests in {sample.wall:.2f} s")
            stored = _stored(queue_db)
        finally:
            lemi.stop()
            bare.stop()
            for server in (lemi, bare):
                text = server.log.read_text(errors="replace")
                if "Traceback" in text:
                    at = text.index("Traceback")
                    print(f"!! {server.name} logged a traceback:\n{text[max(0, at - 300) : at + 3000]}")

    order = [results["bare"], results["lemi"]]
    print()
    print(table(order))
    bare_f, lemi_f = results["bare"].figures(), results["lemi"].figures()
    ratio = lemi_f["throughput_rps"] / bare_f["throughput_rps"]
    expected = args.warmup + lemi_f["requests"]
    print(f"\nlemi stored {stored} deliveries in SQLite (expected {expected}: warm-up + measured)"
          f"{'' if stored == expected else '  !! MISMATCH'}")  # fmt: skip
    print(f"throughput ratio lemi/bare: {ratio:.2f}  (target >= {TARGET_RATIO:.2f}: "
          f"{'met' if ratio >= TARGET_RATIO else 'MISSED'})")  # fmt: skip
    print(f"lemi p99: {lemi_f['p99_ms']:.1f} ms  (target < {TARGET_P99_MS:.0f} ms: "
          f"{'met' if lemi_f['p99_ms'] < TARGET_P99_MS else 'MISSED'})")  # fmt: skip
    busiest = max(bare_f["other_cpu_pct"], lemi_f["other_cpu_pct"])
    if busiest > 25:
        print(f"!! other processes used up to {busiest:.0f}% of a core meanwhile: both servers were starved of "
              "CPU, the figures (the ratio too) are not representative; rerun on a quiet machine")  # fmt: skip
    if max(bare_f["client_cpu_pct"], lemi_f["client_cpu_pct"]) / args.clients > 85:
        print("!! the load generator was near a full core: rerun with --clients 2")
    errors = bare_f["errors"] + lemi_f["errors"]
    if errors:
        print(f"!! {errors} non-2xx answers: bare {bare_f['statuses']}, lemi {lemi_f['statuses']}")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"bench took {time.perf_counter() - started:.1f} s; load generator peak RSS {peak:.0f} MiB")
    print("rerun: .venv/bin/python bench/ack.py [--requests N] [--connections C] [--clients K] [--profile DIR] "
          "[--lemi-cmd CMD]")  # fmt: skip
    if args.json:
        figures = {"machine": machine(), "fsync_ms": probe, "ratio": ratio, "stored": stored, "bare": bare_f,
                   "lemi": lemi_f, "args": {k: str(v) for k, v in vars(args).items()}}  # fmt: skip
        args.json.write_text(json.dumps(figures, indent=2))
    return 1 if errors or stored != expected else 0


def _stored(queue_db: Path) -> int:
    db = sqlite3.connect(queue_db, timeout=10)
    try:
        return int(db.execute("SELECT COUNT(*) FROM jobs").fetchone()[0])
    finally:
        db.close()


def _start_profile(directory: Path, server: Server, round_index: int) -> subprocess.Popen[bytes]:
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(spy).exists():
        raise SystemExit("--profile needs py-spy: .venv/bin/pip install py-spy (not a project dependency)")
    directory.mkdir(parents=True, exist_ok=True)
    out = directory / f"lemi-round{round_index + 1}.folded"
    process = subprocess.Popen(
        [spy, "record", "--pid", str(server.process.pid), "--rate", "500", "--format", "raw",
         "--threads", "--idle", "--nonblocking", "--output", str(out)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    time.sleep(1.0)  # let py-spy attach
    return process


def _stop_profile(spy: subprocess.Popen[bytes]) -> None:
    spy.send_signal(signal.SIGINT)
    try:
        spy.wait(30)
    except subprocess.TimeoutExpired:
        spy.kill()
        spy.wait(5)


if __name__ == "__main__":
    sys.exit(main())
