"""Rollouts at scale: one push deploys 200 services whose ECS rollouts take 5 minutes.

lemi runs as ``make run`` runs it: ``lemi serve --with-worker`` as real processes (the web
process, and the ``lemi worker`` it starts at a lower priority, sharing the SQLite queue), with
default settings except the URLs (GitHub, the queue, lemi.yml; AWS through
``AWS_ENDPOINT_URL``). This process holds what lemi talks to, on 127.0.0.1: moto (with ECS's
rollouts played by the clock, tests/ecs_sim.py ``complete_in``: a rollout completes at the first
DescribeServices ``--rollout-seconds`` after its UpdateService, its tasks starting meanwhile) and
the test suite's GitHub fake. One cluster holds ``--services`` ECS services; one repository holds
their service files, and the infra repository their Terraform as lemi's provisioning wrote it (they
exist: a pull request touching one provisions nothing; ``--unprovisioned`` leaves it out, and each
probe's pull request then proposes an infra pull request, 5 more writes); the image of the pushed
commit is in ECR before the push.

Measured, from the moment the signed push webhook is POSTed:

* when each service got UpdateService (timestamped in moto's ECS backend): max and p50;
* every ``--every`` seconds while the rollouts go on, a slash command (``/lemi status -s <svc>``
  on an open pull request) and a new pull request (``pull_request`` opened, touching one
  service's file): time from POSTing the delivery to lemi's reply comment, and to the
  ``lemi / spec`` check run completed (both as the GitHub fake receives them);
* AWS calls per minute by operation (counted in moto), GitHub requests per minute (the fake's
  record), with the content-creating ones (POST, PATCH, PUT, DELETE) apart;
* each probe's time split: in the queue (put -> leased), running, its GitHub writes' waits in
  lemi's writer (lemi logs an interactive write that waited 1 s or more) and the worst
  event-loop lag lemi logged meanwhile (0.5 s or more); interactive writes per minute; the
  fake's slowest answers;
* peak RSS and CPU time of the two lemi processes (VmHWM and utime + stime from /proc);
* when every Deployment of the push is final, and how many ended in success.

Everything shares the machine: the GitHub fake and moto answer from this process, so their
time is in every figure. Rerun with:

    make bench                                                          # 200 services, 300 s
    .venv/bin/python bench/rollouts.py --services 20 --rollout-seconds 30    # a quick run
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import aws_world  # noqa: E402
import ecs_sim  # noqa: E402
from app_harness import setup_repos  # noqa: E402
from deploy_overhead import Patches, honour_list_order, pct  # noqa: E402
from fakes.github import Call, FakeGitHub  # noqa: E402
from fakes.webhooks import for_issue_comment, for_pull_request, for_push  # noqa: E402
from lemi_process import Server, wait_until  # noqa: E402
from moto.core.responses import BaseResponse  # noqa: E402
from moto.ecs.models import EC2ContainerServiceBackend  # noqa: E402
from moto_server import MotoServer  # noqa: E402

from bot.core.config import parse_config  # noqa: E402
from bot.core.spec import parse_service  # noqa: E402
from bot.core.terraform import render_service_module  # noqa: E402
from bot.github.schedule import Priority  # noqa: E402
from bot.github.writer import classify  # noqa: E402

REPO = "acme/demo-service"
USER = "alice"
FINAL = frozenset({"success", "failure", "error", "inactive"})
WRITES = frozenset({"POST", "PATCH", "PUT", "DELETE"})
SERVICE_YAML = """\
name: {name}
owner: infra
spec:
  desiredCount: {count}
  image: demo-service
  resource:
    cpu: 512
    memory: 1024
"""


def infra_files(names: list[str]) -> dict[str, str | bytes | None]:
    """The infra repository's Terraform of services that exist, as lemi's provisioning wrote it
    (each service's pull request merged): a pull request touching one of them provisions nothing."""
    config = parse_config(aws_world.LEMI_YML)
    return {
        config.infra.file_for(name): render_service_module(
            parse_service(SERVICE_YAML.format(name=name, count=2), f"deploy/{name}/service.yaml"),
            config,
            repository=REPO,
        )  # fmt: skip
        for name in names
    }


def service_files(names: list[str], note: str = "") -> dict[str, str | bytes | None]:
    files: dict[str, str | bytes | None] = {}
    for name in names:
        files[f"deploy/{name}/service.yaml"] = SERVICE_YAML.format(name=name, count=2) + note
        files[f"deploy/{name}/environment/staging.yaml"] = aws_world.STAGING_YAML
    return files


# ---- what is recorded (in this process: moto and the GitHub fake) -------------------------------


@dataclass
class Record:
    updates: dict[str, float] = field(default_factory=dict)  # service -> first UpdateService (monotonic)
    aws: list[tuple[float, str]] = field(default_factory=list)  # (when, "service:Operation") at moto
    github: list[tuple[float, Call]] = field(default_factory=list)  # (when answered, the fake's call)
    github_took: list[tuple[float, float, Call]] = field(default_factory=list)  # (answered, seconds, call)


def instrument(patches: Patches, record: Record, github: FakeGitHub) -> None:
    update = EC2ContainerServiceBackend.update_service  # ecs_sim's, installed before this

    def timed_update(self: Any, props: dict[str, Any]) -> Any:
        record.updates.setdefault(props["service"].split("/")[-1], time.monotonic())
        return update(self, props)

    patches.setattr(EC2ContainerServiceBackend, "update_service", timed_update)
    call_action = BaseResponse.call_action

    def counted(self: Any) -> Any:
        record.aws.append((time.monotonic(), f"{self.service_name}:{self._get_action()}"))
        return call_action(self)

    patches.setattr(BaseResponse, "call_action", counted)
    serve = github.serve

    def timed_serve(*args: Any, **kwargs: Any) -> Any:
        with github._lock:  # the call serve() appends is the last one
            began = time.monotonic()
            out = serve(*args, **kwargs)
            now = time.monotonic()
            record.github.append((now, github.calls[-1]))
            record.github_took.append((now, now - began, github.calls[-1]))
        return out

    github.serve = timed_serve  # type: ignore[method-assign]


# ---- lemi as `make run` runs it ------------------------------------------------------------------


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def usage(pid: int | str) -> tuple[float, float, float]:
    """(peak RSS in MiB, CPU seconds, seconds its live threads waited for a CPU) of a live process."""
    status = Path(f"/proc/{pid}/status").read_text()
    peak = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:")) / 1024
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    waited = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            waited += int((task / "schedstat").read_text().split()[1])
        except (OSError, IndexError):
            continue
    return peak, (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK"), waited / 1e9


class QueueWatch(threading.Thread):
    """Reads lemi's queue (SQLite, read only) a few times a second: when each job was put,
    first seen running, and done (its ``updated``); epoch seconds, as lemi writes them."""

    def __init__(self, db: Path) -> None:
        super().__init__(daemon=True)
        self.db, self.stop = db, threading.Event()
        self.jobs: dict[int, dict[str, Any]] = {}

    def run(self) -> None:
        import sqlite3

        while not self.stop.wait(0.2):
            try:
                conn = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=1)
                rows = conn.execute("SELECT id, kind, key, state, created, updated, dedupe_id FROM jobs").fetchall()
                conn.close()
            except sqlite3.Error:
                continue
            now = time.time()
            for ident, kind, key, state, created, updated, dedupe in rows:
                job = self.jobs.setdefault(ident, {"kind": kind, "key": key, "created": created, "dedupe": dedupe})
                if state != "queued":
                    job.setdefault("leased", now if state == "running" else updated)
                if state in ("done", "failed"):
                    job.setdefault("done", updated)


@contextmanager
def lemi(github: FakeGitHub, tmp: Path, env: dict[str, str], profile: Path | None) -> Iterator[Server]:
    """``lemi serve --with-worker``; with ``profile``, ``lemi serve --intake-only`` and ``lemi worker``
    under cProfile instead (the same two processes, the worker at its usual priority), its profile
    written to ``profile`` when it stops."""
    args = ("serve", "--intake-only") if profile else ("serve", "--with-worker")
    server = Server(github, tmp, tmp / "queue.db", lemi_yml=aws_world.LEMI_YML, args=args, **env)
    for name in ("LEMI_RETRY_DELAYS", "LEMI_REDELIVER_INTERVAL_SECONDS"):  # the defaults, as `make run` has them
        server.env.pop(name)
    server.start()
    worker = None
    try:
        if profile:
            worker = subprocess.Popen(
                ["nice", "-n", "10", sys.executable, "-m", "cProfile", "-o", str(profile), str(Path(sys.executable).parent / "lemi"), "worker",
                 "--nice", "0"],
                env=server.env, stdout=open(tmp / "worker.log", "wb"), stderr=subprocess.STDOUT,
            )  # fmt: skip
            wait_until(lambda: "workers on" in (tmp / "worker.log").read_text(), 30, "lemi worker started")
        else:
            wait_until(lambda: "workers on" in server.output(), 30, "lemi worker started", server.output)
        yield server
    finally:
        if worker is not None:
            worker.send_signal(signal.SIGTERM)
            worker.wait(60)
        # SIGTERM: jobs still waiting on GitHub's write budget (a 200-service push's results take
        # hours) get LEMI_SHUTDOWN_GRACE_SECONDS (20 s) before their leases are given back, and the
        # web process waits for its worker: more than the 20 s a test allows
        server.stop(timeout=60)


# ---- interactive probes while the rollouts go on ---------------------------------------------------


@dataclass
class Probe:
    kind: str  # "slash" | "pr"
    sent: float
    match: str  # the reply's marker (slash) or the pull request's head sha (pr)
    service: str
    delivery: str


def send_probes(server: Server, github: FakeGitHub, names: list[str], status_pr: int, every: float,
                stop: threading.Event, probes: list[Probe]) -> None:  # fmt: skip
    i = 0
    while not stop.wait(0 if i == 0 else every):
        service = names[(i * 7) % len(names)]
        comment = github.add_comment(REPO, status_pr, f"/lemi status -s {service}", user=USER)
        delivery = str(uuid.uuid4())
        payload = for_issue_comment(github, REPO, status_pr, comment)
        sent = time.monotonic()
        server.deliver("issue_comment", payload, delivery)
        probes.append(Probe("slash", sent, f"reply {delivery}", service, delivery))
        files = {f"deploy/{service}/service.yaml": SERVICE_YAML.format(name=service, count=3)}
        number = github.open_pull_request(REPO, f"feature/probe-{i}", files, user=USER)
        payload = for_pull_request(github, REPO, number)
        delivery = str(uuid.uuid4())
        sent = time.monotonic()
        server.deliver("pull_request", payload, delivery)
        probes.append(Probe("pr", sent, github.pull(REPO, number).head_sha, service, delivery))
        i += 1


def answered(probe: Probe, calls: list[tuple[float, Call]]) -> float | None:
    """When the GitHub fake received the probe's answer (monotonic), if it did."""
    for when, call in calls:
        if when < probe.sent or call.method not in WRITES or not isinstance(call.response, dict):
            continue
        if probe.kind == "slash" and probe.match in str(call.response.get("body", "")):
            return when
        response = call.response
        if probe.kind == "pr" and response.get("name") == "lemi / spec" and response.get("head_sha") == probe.match:
            if response.get("status") == "completed":
                return when
    return None


# ---- the run -------------------------------------------------------------------------------------


@dataclass
class Outcome:
    pushed: float
    acked: float
    final_at: float | None
    states: collections.Counter[str]
    probes: list[Probe]
    answers: dict[int, float | None]
    usage: dict[str, tuple[float, float, float]]
    log: str
    jobs: dict[int, dict[str, Any]]
    pushed_epoch: float


def final_states(github: FakeGitHub, sha: str) -> list[str]:
    with github._lock:
        return [d.statuses[-1].state if d.statuses else "" for d in github.deployments(REPO) if d.sha == sha]


def run(server: Server, github: FakeGitHub, names: list[str], sha: str, status_pr: int, args: argparse.Namespace,
        record: Record) -> Outcome:  # fmt: skip
    stop, probes = threading.Event(), []  # type: ignore[var-annotated]
    payload = for_push(github, REPO, "develop", github.branch_sha(REPO, "develop"), sha)
    queue = QueueWatch(Path(server.env["LEMI_QUEUE"].removeprefix("sqlite:///")))
    queue.start()
    pushed_epoch, pushed = time.time(), time.monotonic()
    response = server.deliver("push", payload, str(uuid.uuid4()))
    acked = time.monotonic()
    if response.status_code != 202:
        raise SystemExit(f"the push was answered {response.status_code}: {response.text}")
    prober = threading.Thread(target=send_probes, args=(server, github, names, status_pr, args.every, stop, probes))
    prober.start()
    final_at, deadline = None, pushed + args.timeout
    try:
        while time.monotonic() < deadline:
            states = final_states(github, sha)
            if len(states) == len(names) and all(s in FINAL for s in states):
                final_at = time.monotonic()
                break
            time.sleep(0.5)
    finally:
        stop.set()
        prober.join()
    deadline = time.monotonic() + 60  # the last probes' answers
    while time.monotonic() < deadline and not all(answered(p, list(record.github)) for p in probes):
        time.sleep(0.5)
    answers = {i: answered(p, list(record.github)) for i, p in enumerate(probes)}
    queue.stop.set()
    used = {"web (lemi serve --with-worker)": usage(server.pid)}
    for child in children(server.pid):
        used[f"worker (lemi worker, pid {child})"] = usage(child)
    used["this process (moto, GitHub fake)"] = usage("self")
    return Outcome(pushed, acked, final_at, collections.Counter(final_states(github, sha)), probes, answers, used,
                   server.log.read_text(errors="replace"), dict(queue.jobs), pushed_epoch)  # fmt: skip


# ---- the report ----------------------------------------------------------------------------------


def seconds(values: list[float]) -> str:
    if not values:
        return "n/a"
    return (f"p50 {statistics.median(values):7.2f}  p95 {pct(values, 95):7.2f}  max {max(values):7.2f} s  "
            f"(n={len(values)})")  # fmt: skip


def per_minute(stamps: list[tuple[float, str]], start: float, end: float) -> list[collections.Counter[str]]:
    minutes = [collections.Counter[str]() for _ in range(int((end - start) // 60) + 1)]
    for when, key in stamps:
        if start <= when <= end:
            minutes[int((when - start) // 60)][key] += 1
    return minutes


def interactive(call: Call) -> bool:
    """Whether lemi's writer sends this write first: by its path and body, or as a write of a
    delivery (a pull request's infra branch, file and pull request)."""
    body = json.dumps(call.body).encode() if isinstance(call.body, dict) else b""
    return classify(call.method, call.path, body)[0] is Priority.INTERACTIVE or call.path.startswith(
        "/repos/acme/infra/"
    )


def log_entries(text: str) -> list[dict[str, Any]]:
    entries = []
    for line in text.splitlines():
        if line.startswith("{"):
            try:
                entries.append(json.loads(line))
            except ValueError:
                continue
    return entries


def probe_split(out: Outcome) -> None:
    """Each probe's time, split: the queue (put -> leased), its run (leased -> done), its GitHub
    writes' waits in lemi's writer (logged when 1 s or more), and the worst event-loop lag
    logged while it was open (the log's times are whole seconds)."""
    entries = log_entries(out.log)
    waits: dict[str, list[float]] = collections.defaultdict(list)
    lags: list[tuple[float, float]] = []
    for entry in entries:
        message = str(entry.get("message", ""))
        if "waited" in message and "in the writer" in message and entry.get("delivery"):
            waits[str(entry["delivery"])].append(float(message.split(" waited ", 1)[1].split(" ", 1)[0]))
        elif message.startswith("the event loop ran"):
            when = time.mktime(time.strptime(str(entry["time"]), "%Y-%m-%dT%H:%M:%S"))
            lags.append((when, float(message.split(" ran ", 1)[1].split(" ", 1)[0])))
    jobs = {j["dedupe"]: j for j in out.jobs.values()}
    print("\n   each probe: t = sent after the push; queue = put -> leased; run = leased -> done;")
    print("   writer = its GitHub writes' waits for their turn (each of 1 s or more); lag = worst event-loop lag")
    print("   kind    t(s)  answer   queue     run  writer (n)    lag")
    for i, probe in enumerate(out.probes):
        answer = out.answers[i]
        sent = out.pushed_epoch + (probe.sent - out.pushed)
        job = jobs.get(probe.delivery, {})
        queue = job["leased"] - job["created"] if "leased" in job else float("nan")
        ran = job["done"] - job["leased"] if "done" in job and "leased" in job else float("nan")
        until = sent + (answer - probe.sent if answer is not None else 60.0)
        lag = max((v for when, v in lags if sent - 1 <= when <= until + 1), default=0.0)
        mine = waits.get(probe.delivery, [])
        took = f"{answer - probe.sent:6.2f}" if answer is not None else "  none"
        print(f"   {probe.kind:5} {probe.sent - out.pushed:6.1f}  {took}  {queue:6.2f}  {ran:6.2f}  "
              f"{sum(mine):6.2f} ({len(mine)})  {lag:5.2f}")  # fmt: skip
    print(
        f"   event-loop lags of 0.5 s or more logged: {len(lags)}, worst {max((v for _, v in lags), default=0):.2f} s"
    )


def report(args: argparse.Namespace, names: list[str], record: Record, out: Outcome, log_path: Path) -> int:
    t0 = out.pushed
    end = out.final_at or time.monotonic()
    span = max(end - t0, 1.0)
    updates = [record.updates[n] - t0 for n in names if n in record.updates]
    print(f"\n== {len(names)} services pushed at once, rollouts of {args.rollout_seconds:g} s "
          f"(lemi serve --with-worker, {args.env or 'default settings'})")  # fmt: skip
    print(f"   push answered                      {(out.acked - t0) * 1e3:7.1f} ms")
    print(f"   UpdateService reached               {len(updates)}/{len(names)} services")
    if updates:
        print(f"   push -> UpdateService               p50 {statistics.median(updates):7.2f}  "
              f"p95 {pct(updates, 95):7.2f}  max {max(updates):7.2f} s")  # fmt: skip
    for kind, title in (("slash", "/lemi status -s <svc> -> reply"), ("pr", "new PR -> lemi / spec completed")):
        mine = [(p, out.answers[i]) for i, p in enumerate(out.probes) if p.kind == kind]
        times = [a - p.sent for p, a in mine if a is not None]
        missing = sum(1 for _, a in mine if a is None)
        print(f"   {title:35} {seconds(times)}" + (f"; {missing} never answered" if missing else ""))
    if out.final_at:
        print(f"   every Deployment final              {out.final_at - t0:7.1f} s after the push")
    else:
        print(f"   every Deployment final              NOT within {args.timeout:g} s")
    print(f"   Deployment states                   {dict(sorted(out.states.items()))}")
    for name, (peak, cpu, waited) in out.usage.items():
        print(f"   {name:35} peak RSS {peak:6.0f} MiB, CPU {cpu:6.1f} s, waited for a CPU {waited:6.1f} s")
    print("   lemi's jobs (its queue, read 5 times a second): wait = put -> running, run = running -> done")
    kinds: dict[str, list[dict[str, Any]]] = collections.defaultdict(list)
    for job in out.jobs.values():
        kind = job["kind"] if job["kind"] != "webhook" else ("webhook (push)" if "#" not in job["key"] else
                                                              "webhook (PR, comment)")  # fmt: skip
        kinds[kind].append(job)
    for kind, jobs in sorted(kinds.items()):
        waits = [j["leased"] - j["created"] for j in jobs if "leased" in j]
        runs = [j["done"] - j["leased"] for j in jobs if "done" in j and "leased" in j]
        print(f"   {kind:22} {len(jobs):4d}  wait {seconds(waits)}")
        print(f"   {'':22} {'':4}  run  {seconds(runs)}")

    gh = [(w, f"{c.method} {c.template or c.path}") for w, c in record.github]
    writes = [(w, k) for w, k in gh if k.split(" ", 1)[0] in WRITES]
    urgent = [(w, "i") for w, c in record.github if c.method in WRITES and interactive(c)]
    aws = record.aws
    print(f"\n   per minute after the push (GitHub fake and moto, {span:.0f} s in all)")
    print("   minute  GitHub  writes  interactive   AWS  UpdateService  DescribeServices")
    gh_min, wr_min, aws_min = per_minute(gh, t0, end), per_minute(writes, t0, end), per_minute(aws, t0, end)
    ur_min = per_minute(urgent, t0, end)
    for i, (g, w, u, a) in enumerate(zip(gh_min, wr_min, ur_min, aws_min, strict=True)):
        print(f"   {i:6d}  {sum(g.values()):6d}  {sum(w.values()):6d}  {sum(u.values()):11d}  {sum(a.values()):4d}  "
              f"{a['ecs:UpdateService']:13d}  {a['ecs:DescribeServices']:16d}")  # fmt: skip
    peak_writes = max((sum(w.values()) for w in wr_min), default=0)
    print(f"   GitHub writes: peak {peak_writes}/min (GitHub's secondary limit: about 80/min, 500/h per installation)")
    for title, stamps in (("AWS calls", aws), ("GitHub requests", gh)):
        counts = collections.Counter(k for w, k in stamps if t0 <= w <= end)
        print(f"\n   {title} by operation: {sum(counts.values())} in all, {sum(counts.values()) / span * 60:.0f}/min")
        for key, n in counts.most_common():
            print(f"   {n:6d}  {n / span * 60:7.1f}/min  {key}")

    probe_split(out)
    slow = sorted(record.github_took, key=lambda t: -t[1])[:5]
    print("\n   the GitHub fake's slowest answers (it answers one request at a time):")
    for when, took, call in slow:
        print(f"   {took:6.2f} s at {when - t0:6.1f} s  {call.method} {call.path}")
    levels = collections.Counter()  # type: ignore[var-annotated]
    notes = collections.Counter()  # type: ignore[var-annotated]
    for line in out.log.splitlines():
        if '"level":"warning"' in line or '"level":"error"' in line:
            level = "error" if '"level":"error"' in line else "warning"
            levels[level] += 1
            message = line.split('"message":"', 1)[-1].split('"', 1)[0]
            notes[f"{level}: {message[:110]}"] += 1
    print(f"\n   lemi's log ({log_path}): {dict(levels) or 'no warnings or errors'}")
    for text, n in notes.most_common(8):
        print(f"   {n:6d}  {text}")
    ok = out.final_at is not None and len(updates) == len(names) and all(out.answers.values())
    return 0 if ok else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--services", type=int, default=200, help="ECS services one push deploys (default 200)")
    parser.add_argument("--rollout-seconds", type=float, default=300.0, help="each rollout's time (default 300)")
    parser.add_argument("--every", type=float, default=10.0, help="seconds between interactive probes (default 10)")
    parser.add_argument("--timeout", type=float, default=0.0,
                        help="seconds the push may take to be final (default: rollout + 600)")  # fmt: skip
    parser.add_argument("--unprovisioned", action="store_true",
                        help="the infra repository lacks the services' Terraform (each probe PR proposes it)")  # fmt: skip
    parser.add_argument("--log", type=Path, default=None, help="keep lemi's log in this file")
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                        help="a setting for lemi (an experiment; the recorded run sets none)")  # fmt: skip
    parser.add_argument("--profile-worker", type=Path, default=None, metavar="FILE",
                        help="run the worker process under cProfile and write its profile here")  # fmt: skip
    args = parser.parse_args()
    args.timeout = args.timeout or args.rollout_seconds + 600
    env = dict(item.split("=", 1) for item in args.env)
    started = time.monotonic()
    load = os.getloadavg()
    names = [f"demo-service-s{i:03d}" for i in range(1, args.services + 1)]
    patches, record = Patches(), Record()
    moto, github = MotoServer(), FakeGitHub(check_responses=False)  # the tests check the contract
    code = 1
    try:
        endpoint = moto.start()
        for name in [n for n in os.environ if n.startswith("AWS_")]:
            del os.environ[name]
        os.environ.update(
            AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION=aws_world.REGION,
            AWS_ENDPOINT_URL=endpoint, AWS_EC2_METADATA_DISABLED="true", NO_PROXY="127.0.0.1,localhost",
        )  # fmt: skip
        world = aws_world.build(endpoint)
        ecs = world.ecs()
        for name in names:
            ecs.create_service(cluster=aws_world.CLUSTER, serviceName=name, taskDefinition=world.first_revision,
                               desiredCount=2, launchType="FARGATE")  # fmt: skip
        sim = ecs_sim.install(patches)  # type: ignore[arg-type]
        sim.complete_in(args.rollout_seconds)
        honour_list_order(patches)
        instrument(patches, record, github)
        github.start()
        setup_repos(github)
        github.set_permission(REPO, USER, "write")
        github.commit(REPO, "develop", service_files(names), message=f"{len(names)} services")
        if not args.unprovisioned:
            github.commit("acme/infra", "main", infra_files(names), message=f"provision {len(names)} services")
        status_pr = github.open_pull_request(REPO, "feature/status", {"README.md": "status\n"}, user=USER)
        sha = github.commit(REPO, "develop", service_files(names, "# rollout 1\n"), message="touch every service")
        aws_world.push_image(endpoint, sha)
        print(f"machine: {os.cpu_count()} CPUs, load average {load[0]:.2f} at the start; Python "
              f"{sys.version.split()[0]}; set up ({args.services} ECS services, moto, GitHub fake) "
              f"in {time.monotonic() - started:.1f} s")  # fmt: skip
        with (
            tempfile.TemporaryDirectory(prefix="lemi-rollouts-") as tmp,
            lemi(github, Path(tmp), env, args.profile_worker) as server,
        ):
            outcome = run(server, github, names, sha, status_pr, args, record)
            log_path = args.log or server.log
            if args.log:
                args.log.write_text(outcome.log)
            code = report(args, names, record, outcome, log_path)
        print(f"\nload average {os.getloadavg()[0]:.2f} at the end; bench took {time.monotonic() - started:.0f} s")
        print(f"rerun: .venv/bin/python bench/rollouts.py --services {args.services} "
              f"--rollout-seconds {args.rollout_seconds:g}")  # fmt: skip
    finally:
        patches.restore()
        github.stop()
        moto.stop()
    return code


if __name__ == "__main__":
    sys.exit(main())
