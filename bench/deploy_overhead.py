"""Deploy overhead: from the push webhook to ECS UpdateService, and what it costs.

Runs the real App (create_app with the SQLite queue and workers, in-process
like tests/app_harness.running_app) against the test suite's GitHub fake and
moto on 127.0.0.1, with ecs_sim completing each rollout at its first poll, a
0.01 s deploy poll and ``image_wait_seconds: 0``. For every deploy it records

* the overhead: from POSTing the signed push webhook to the moment moto's ECS
  backend receives UpdateService (timestamped in-process), split into the
  acknowledgement, the wait in the queue (push job, then deploy job) and the
  deploy job's own work up to UpdateService;
* the GitHub and AWS calls made, and how long the fakes took to answer them
  (in this process; against real GitHub and AWS this is network + their time);

for (1) one service pushed alone, several times in a row, once with the
workers' production poll interval (0.5 s) and once with the test harness's
(0.02 s); (2) 200 services of one repository (demo-service-s001...) pushed
at once; (3) 40 of them pushed at once with every rollout taking 2 s, which
shows that a worker stays busy while it waits for a rollout. AWS's own
rollout time is excluded from each deploy's own figure -- the overhead stops
at UpdateService -- but in (3) earlier rollouts delay later services. Peak
RSS is this process's (the App, moto and the GitHub fake together).
moto's ListTaskDefinitions is patched to honour sort and maxResults as ECS
does (see honour_list_order).

Rerun with:

    .venv/bin/python bench/deploy_overhead.py                 # defaults below
    .venv/bin/python bench/deploy_overhead.py --services 50 --workers 8
    .venv/bin/python bench/deploy_overhead.py --rollout-services 0     # skip the rollout-time scenario
"""

from __future__ import annotations

import argparse
import collections
import os
import random
import resource
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import aws_world  # noqa: E402
import ecs_sim  # noqa: E402
from app_harness import LEMI_YML, RunningApp, settings_for, setup_repos  # noqa: E402
from fakes.github import FakeGitHub  # noqa: E402
from fakes.webhooks import for_push  # noqa: E402
from moto.ecs.models import EC2ContainerServiceBackend  # noqa: E402
from moto_server import MotoServer  # noqa: E402
from starlette.testclient import TestClient  # noqa: E402

import handlers  # noqa: E402
from bot.aws import clients as aws_clients  # noqa: E402
from bot.core import logs  # noqa: E402
from bot.core.config import parse_config  # noqa: E402
from bot.server.app import create_app  # noqa: E402
from bot.server.worker import WorkerSettings  # noqa: E402
from bot.store.jobs import WebhookJob  # noqa: E402
from handlers import deploy as deploy_handler  # noqa: E402

REPO = "acme/demo-service"
TARGET_MEDIAN_MS = 300.0
PRODUCTION_POLL = WorkerSettings().poll_seconds  # an idle worker looks at the queue this often
HARNESS_POLL = 0.02  # tests/app_harness.running_app

SERVICE_YAML = """\
name: {name}
owner: infra
spec:
  desiredCount: 1
  image: demo-service
  resource:
    cpu: 512
    memory: 1024
"""


# ---- instrumentation (in-process hooks, undone at the end) ---------------------------------------


@dataclass
class Probe:
    updates: dict[str, float] = field(default_factory=dict)  # service -> first UpdateService (perf_counter)
    job_start: dict[str, float] = field(default_factory=dict)  # service -> deploy job start
    job_end: dict[str, float] = field(default_factory=dict)
    push_job: list[tuple[float, float]] = field(default_factory=list)  # (start, end) of the push's own job
    aws: list[tuple[str, str]] = field(default_factory=list)
    github_spans: list[tuple[float, float]] = field(default_factory=list)  # (start, end) of each answer
    moto_spans: list[tuple[float, float]] = field(default_factory=list)

    def clear(self) -> None:
        for value in vars(self).values():
            value.clear()


class Patches:
    """Just enough of pytest's monkeypatch (ecs_sim.install takes one)."""

    def __init__(self) -> None:
        self.undo: list[tuple[Any, str, Any]] = []

    def setattr(self, target: Any, name: str, value: Any) -> None:
        self.undo.append((target, name, target.__dict__.get(name, getattr(target, name))))
        setattr(target, name, value)

    def restore(self) -> None:
        for target, name, value in reversed(self.undo):
            setattr(target, name, value)
        self.undo.clear()


def honour_list_order(patches: Patches) -> None:
    """moto's ListTaskDefinitions ignores ``sort`` and ``maxResults`` (it lists every revision,
    oldest first); ECS honours both. lemi's register() asks for the newest revision only
    (sort=DESC, maxResults=1) and describes what it gets, so against unpatched moto every
    deploy would describe every earlier revision and the figures would grow with each push."""
    from moto.core.responses import ActionResult
    from moto.ecs.responses import EC2ContainerServiceResponse

    def list_task_definitions(self: Any) -> Any:
        family, status = self._get_param("familyPrefix"), self._get_param("status", "ACTIVE")
        arns = self.ecs_backend.list_task_definitions(family, status)
        arns.sort(
            key=lambda a: (a.rsplit(":", 1)[0], int(a.rsplit(":", 1)[1])), reverse=self._get_param("sort") == "DESC"
        )
        limit = self._get_param("maxResults")
        return ActionResult({"taskDefinitionArns": arns[: int(limit)] if limit else arns})

    patches.setattr(EC2ContainerServiceResponse, "list_task_definitions", list_task_definitions)


def instrument(patches: Patches, probe: Probe, github: FakeGitHub) -> None:
    """Hooks: UpdateService in moto's backend, deploy jobs, AWS calls, time spent in the fakes."""
    update = EC2ContainerServiceBackend.update_service  # ecs_sim's, installed before this

    def timed_update(self: Any, props: dict[str, Any]) -> Any:
        probe.updates.setdefault(props["service"].split("/")[-1], time.perf_counter())
        return update(self, props)

    patches.setattr(EC2ContainerServiceBackend, "update_service", timed_update)

    run = deploy_handler.run_job  # handlers.process calls it through its module

    async def timed_run(job: Any, message: Any, ctx: Any) -> None:
        service = message.request.service
        probe.job_start.setdefault(service, time.perf_counter())
        try:
            await run(job, message, ctx)
        finally:
            probe.job_end[service] = time.perf_counter()

    patches.setattr(deploy_handler, "run_job", timed_run)

    process = handlers.process  # create_app's lifespan reads handlers.process (bot.server.app.default_handlers)

    async def timed_process(job: Any, ctx: Any) -> None:
        began = time.perf_counter()
        try:
            await process(job, ctx)
        finally:
            if isinstance(job.message, WebhookJob) and job.message.event == "push":
                probe.push_job.append((began, time.perf_counter()))

    patches.setattr(handlers, "process", timed_process)

    setup = logs.setup  # lemi logs a JSON line per delivery and job: keep warnings and errors

    def quiet_setup(level: str = "INFO") -> None:
        setup("WARNING")

    patches.setattr(logs, "setup", quiet_setup)

    original_init = aws_clients.AwsClients.__init__

    def init(self: Any, *args: Any, **kwargs: Any) -> None:
        original_init(self, *args, **kwargs)
        self.on_call(lambda service, op: probe.aws.append((service, op)))

    patches.setattr(aws_clients.AwsClients, "__init__", init)

    handle = github._handle  # before github.start(): the route takes the instance attribute

    async def timed_handle(request: Any, *args: Any, **kwargs: Any) -> Any:
        began = time.perf_counter()
        try:
            return await handle(request, *args, **kwargs)
        finally:
            probe.github_spans.append((began, time.perf_counter()))

    github._handle = timed_handle  # type: ignore[method-assign]

    from moto.server import DomainDispatcherApplication

    dispatch = DomainDispatcherApplication.__call__

    def timed_dispatch(self: Any, environ: Any, start_response: Any) -> Any:
        began = time.perf_counter()
        try:
            return dispatch(self, environ, start_response)
        finally:
            probe.moto_spans.append((began, time.perf_counter()))

    patches.setattr(DomainDispatcherApplication, "__call__", timed_dispatch)


def busy(spans: list[tuple[float, float]], start: float, end: float) -> float:
    """Seconds of [start, end] during which at least one fake request was being answered."""
    total, cursor = 0.0, start
    for s, e in sorted(spans):
        s, e = max(s, cursor), min(e, end)
        if e > s:
            total += e - s
            cursor = e
    return total


# ---- the App -------------------------------------------------------------------------------------


@contextmanager
def app_running(
    github: FakeGitHub, tmp: Path, *, workers: int, poll: float, deploy_poll: float = 0.01
) -> Iterator[RunningApp]:
    """tests/app_harness.running_app, with the workers' poll interval and count exposed."""
    lemi_yml = LEMI_YML.replace("cluster: lemon-ecs-cluster", "cluster: lemon-ecs-cluster\n    image_wait_seconds: 0")
    queue_path = tmp / "queue.db"
    app = create_app(
        settings=settings_for(github, queue_path, workers=workers, deploy_poll_seconds=deploy_poll, lease_seconds=60.0),
        config=parse_config(lemi_yml),
        workers=workers,
        worker_settings=WorkerSettings(lease_seconds=60.0, poll_seconds=poll, retry_delays=(0.05, 0.1, 0.2)),
    )
    with TestClient(app) as client:
        yield RunningApp(client, queue_path)


# ---- measurements --------------------------------------------------------------------------------


@dataclass
class Push:
    services: list[str]
    posted: float
    acked: float
    settled: float
    github_calls: list[Any]
    aws_calls: list[tuple[str, str]]
    github_busy: float
    moto_busy: float
    overhead: dict[str, float]  # service -> seconds, POST -> UpdateService
    queue_wait: dict[str, float]  # service -> seconds, ack -> deploy job start
    to_push_job: float  # ack -> the push's job starts (a worker picks the delivery up)
    push_job: float  # the push's job: list the services, enqueue one deploy job each
    work: dict[str, float]  # service -> seconds, deploy job start -> UpdateService
    job: dict[str, float]  # service -> seconds, whole deploy job
    failed: list[dict[str, Any]]


def push(app: RunningApp, github: FakeGitHub, probe: Probe, sha: str, before: str, services: list[str],
         timeout: float) -> Push:  # fmt: skip
    probe.clear()
    start = len(github.calls)
    payload = for_push(github, REPO, "develop", before, sha)
    posted = time.perf_counter()
    response = app.deliver("push", payload)
    acked = time.perf_counter()
    if response.status_code != 202:
        raise SystemExit(f"push webhook answered {response.status_code}: {response.text}")
    rows = app.drain(timeout)
    settled = time.perf_counter()
    upd = probe.updates
    first_update = max(upd.values(), default=settled)
    return Push(
        services=services,
        posted=posted,
        acked=acked,
        settled=settled,
        github_calls=github.calls[start:],
        aws_calls=list(probe.aws),
        github_busy=busy(probe.github_spans, posted, first_update),
        moto_busy=busy(probe.moto_spans, posted, first_update),
        overhead={s: upd[s] - posted for s in services if s in upd},
        queue_wait={s: probe.job_start[s] - acked for s in services if s in probe.job_start},
        to_push_job=probe.push_job[0][0] - acked if probe.push_job else float("nan"),
        push_job=probe.push_job[0][1] - probe.push_job[0][0] if probe.push_job else float("nan"),
        work={s: upd[s] - probe.job_start[s] for s in services if s in upd and s in probe.job_start},
        job={s: probe.job_end[s] - probe.job_start[s] for s in services if s in probe.job_end},
        failed=[r for r in rows if r["state"] == "failed"],
    )


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))]


def ms(values: list[float]) -> str:
    if not values:
        return "n/a"
    return (f"median {statistics.median(values) * 1e3:7.1f}  p90 {pct(values, 90) * 1e3:7.1f}  "
            f"max {max(values) * 1e3:7.1f} ms")  # fmt: skip


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def calls_by_kind(pushes: list[Push]) -> tuple[collections.Counter[str], collections.Counter[str]]:
    gh: collections.Counter[str] = collections.Counter()
    aws: collections.Counter[str] = collections.Counter()
    for p in pushes:
        gh.update(f"{c.method} {c.template or c.path}" for c in p.github_calls)
        aws.update(f"{s}:{op}" for s, op in p.aws_calls)
    return gh, aws


def report_single(title: str, pushes: list[Push]) -> dict[str, Any]:
    overhead = [v for p in pushes for v in p.overhead.values()]
    ack = [p.acked - p.posted for p in pushes]
    wait = [v for p in pushes for v in p.queue_wait.values()]
    work = [v for p in pushes for v in p.work.values()]
    job = [v for p in pushes for v in p.job.values()]
    gh_busy = [p.github_busy for p in pushes]
    moto_busy = [p.moto_busy for p in pushes]
    n = len(pushes)
    gh_calls = sum(len(p.github_calls) for p in pushes) / n
    aws_calls = sum(len(p.aws_calls) for p in pushes) / n
    failed = sum(len(p.failed) for p in pushes)
    print(f"\n== {title}: {n} pushes of one service, one after another")
    print(f"   overhead POST -> UpdateService   {ms(overhead)}")
    print(f"     acknowledgement (202)          {ms(ack)}")
    print(f"     queue: 202 -> deploy job start {ms(wait)}")
    print(f"       202 -> push job start        {ms([p.to_push_job for p in pushes])}")
    print(f"       push job (list, fan out)     {ms([p.push_job for p in pushes])}")
    handoff = [w - p.to_push_job - p.push_job for p in pushes for w in p.queue_wait.values()]
    print(f"       push job end -> deploy job   {ms(handoff)}")
    print(f"     deploy job -> UpdateService    {ms(work)}")
    print(f"     of which the fakes answering   GitHub {statistics.median(gh_busy) * 1e3:.1f} ms, "
          f"moto {statistics.median(moto_busy) * 1e3:.1f} ms (median)")  # fmt: skip
    print(f"   whole deploy job (incl. rollout wait and reporting) {ms(job)}")
    if overhead and wait and work:
        parts = {"waiting in the queue": statistics.median(wait), "the deploy job's own work": statistics.median(work)}
        top = max(parts, key=lambda k: parts[k])
        print(f"   dominated by {top}: {parts[top] * 1e3:.0f} of {statistics.median(overhead) * 1e3:.0f} ms (medians)")
    print(f"   calls per push: {gh_calls:.1f} GitHub, {aws_calls:.1f} AWS; failed jobs: {failed}")
    median = statistics.median(overhead) * 1e3 if overhead else float("nan")
    print(f"   target: median overhead < {TARGET_MEDIAN_MS:.0f} ms -> {median:.1f} ms: "
          f"{'met' if median < TARGET_MEDIAN_MS else 'MISSED'}")  # fmt: skip
    return {"median_ms": median, "failed": failed}


def report_burst(p: Push, workers: int, poll: float, rollout: float = 0.0, calls: bool = True) -> dict[str, Any]:
    n = len(p.services)
    overhead = list(p.overhead.values())
    gh, aws = calls_by_kind([p])
    wall = p.settled - p.posted
    first = min(overhead, default=float("nan"))
    each = f", each rollout taking {rollout:g} s" if rollout else ", each rollout completing at its first poll"
    print(f"\n== {n} services pushed at once ({workers} workers polling every {poll:g} s{each})")
    print(f"   UpdateService reached for {len(overhead)}/{n} services; failed jobs: {len(p.failed)}")
    print(f"   overhead POST -> UpdateService   {ms(overhead)}  (first {first * 1e3:.1f} ms)")
    print(f"     queue: 202 -> deploy job start {ms(list(p.queue_wait.values()))}")
    print(f"       202 -> push job start {p.to_push_job * 1e3:.1f} ms, "
          f"push job (list, fan out {n}) {p.push_job * 1e3:.1f} ms")  # fmt: skip
    print(f"     deploy job -> UpdateService    {ms(list(p.work.values()))}")
    print(f"   whole deploy job                 {ms(list(p.job.values()))}")
    print(f"   wall time POST -> every job settled: {wall:.2f} s ({n / wall:.1f} deploys/s)")
    if p.queue_wait and overhead:
        share = statistics.median(p.queue_wait.values()) / statistics.median(overhead)
        print(f"   dominated by waiting for one of the {workers} workers: {share:.0%} of the median overhead")
    print(f"   fakes busy until the last UpdateService: GitHub {p.github_busy:.2f} s, moto {p.moto_busy:.2f} s")
    print(f"   calls: {len(p.github_calls)} GitHub ({len(p.github_calls) / n:.1f}/deploy), "
          f"{len(p.aws_calls)} AWS ({len(p.aws_calls) / n:.1f}/deploy)")  # fmt: skip
    refused = Counter(f"{c.method} {c.template or c.path} -> {c.status}" for c in p.github_calls if c.status >= 400)
    for key, count in sorted(refused.items()):
        print(f"   refused by GitHub: {count} x {key}")
    for key, count in sorted(gh.items()) if calls else ():
        print(f"   {count:6d}  {key}")
    for key, count in sorted(aws.items()) if calls else ():
        print(f"   {count:6d}  {key}")
    if rollout:
        slots = -(-n // workers)
        print(f"   a worker waits for each rollout, so service k starts after ~k/{workers} earlier deploys and "
              f"their rollouts: last UpdateService ~ ({slots} - 1) x (work + {rollout:g} s)")  # fmt: skip
    return {"median_ms": statistics.median(overhead) * 1e3 if overhead else float("nan"), "failed": len(p.failed)}


def print_calls(title: str, p: Push) -> None:
    gh, aws = calls_by_kind([p])
    writes = sum(n for k, n in gh.items() if not k.startswith("GET"))
    print(f"\n   calls of one push deploy ({title}): {sum(gh.values())} GitHub ({writes} writes), "
          f"{sum(aws.values())} AWS")  # fmt: skip
    for key, count in sorted(gh.items()):
        print(f"   {count:4d}  {key}")
    for key, count in sorted(aws.items()):
        print(f"   {count:4d}  {key}")


# ---- scenarios -----------------------------------------------------------------------------------


def single_series(app: RunningApp, github: FakeGitHub, probe: Probe, endpoint: str, count: int, label: str,
                  timeout: float, jitter: float = 0.0) -> list[Push]:  # fmt: skip
    """``jitter``: sleep up to this long (uniformly, seeded) before each push, so pushes do not
    fall in step with the idle workers' polling."""
    pushes = []
    rng = random.Random(42)
    for i in range(count):
        time.sleep(rng.uniform(0, jitter))
        before = github.branch_sha(REPO, "develop") or "0" * 40
        sha = github.commit(REPO, "develop", {"deploy/demo-service/environment/staging.yaml":
                                              aws_world.STAGING_YAML + f"# {label} {i}\n"})  # fmt: skip
        aws_world.push_image(endpoint, sha)
        pushes.append(push(app, github, probe, sha, before, ["demo-service"], timeout))
    return pushes


def burst(app: RunningApp, github: FakeGitHub, probe: Probe, endpoint: str, names: list[str], timeout: float,
          *, remove: list[str] = ()) -> Push:  # fmt: skip
    """One push that deploys exactly ``names`` (``remove``: services whose files the commit deletes)."""
    before = github.branch_sha(REPO, "develop") or "0" * 40
    files: dict[str, str | None] = {}
    for name in ["demo-service", *remove]:
        files[f"deploy/{name}/service.yaml"] = None
        files[f"deploy/{name}/environment/staging.yaml"] = None
    for name in names:
        files[f"deploy/{name}/service.yaml"] = SERVICE_YAML.format(name=name)
        files[f"deploy/{name}/environment/staging.yaml"] = aws_world.STAGING_YAML
    sha = github.commit(REPO, "develop", files, message=f"{len(names)} services")
    aws_world.push_image(endpoint, sha)
    return push(app, github, probe, sha, before, names, timeout)


def create_services(endpoint: str, names: list[str], task_definition: str) -> None:
    ecs = aws_world.client("ecs", endpoint)
    for name in names:
        ecs.create_service(cluster=aws_world.CLUSTER, serviceName=name, taskDefinition=task_definition,
                           desiredCount=1, launchType="FARGATE")  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=15, help="single-service pushes per poll setting (default 15)")
    parser.add_argument("--services", type=int, default=200, help="services pushed at once (default 200)")
    parser.add_argument("--workers", type=int, default=4, help="App workers (default 4, LEMI_WORKERS's default)")
    parser.add_argument(
        "--burst-poll",
        type=float,
        default=PRODUCTION_POLL,
        help=f"worker poll interval for the burst (default {PRODUCTION_POLL:g} s, production)",
    )
    parser.add_argument(
        "--rollout-services",
        type=int,
        default=40,
        help="then push this many services whose rollouts take --rollout-seconds (0: skip; default 40)",
    )
    parser.add_argument("--rollout-seconds", type=float, default=2.0, help="rollout time for that push (default 2)")
    parser.add_argument("--timeout", type=float, default=180.0, help="seconds any one push may take to settle")
    args = parser.parse_args()

    started = time.perf_counter()
    patches, probe = Patches(), Probe()
    moto = MotoServer()
    github = FakeGitHub(check_responses=False)  # the tests check the contract; here it would only add fake time
    names = [f"demo-service-s{i:03d}" for i in range(1, args.services + 1)]
    results: dict[str, Any] = {}
    try:
        endpoint = moto.start()
        for name in [n for n in os.environ if n.startswith("AWS_")]:
            del os.environ[name]
        os.environ.update(
            AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1",
            AWS_ENDPOINT_URL=endpoint, AWS_EC2_METADATA_DISABLED="true", NO_PROXY="127.0.0.1,localhost",
        )  # fmt: skip
        world = aws_world.build(endpoint)
        sim = ecs_sim.install(patches)  # type: ignore[arg-type]
        sim.complete(after=1)  # every rollout completes at its first DescribeServices
        honour_list_order(patches)
        instrument(patches, probe, github)
        github.start()
        setup_repos(github)
        github.commit(REPO, "develop", {
            "deploy/demo-service/service.yaml": aws_world.SERVICE_YAML,
            "deploy/demo-service/environment/staging.yaml": aws_world.STAGING_YAML,
        })  # fmt: skip
        create_services(endpoint, names, world.first_revision)
        print(f"machine: {os.cpu_count()} CPUs, Python {sys.version.split()[0]}; "
              f"setup (moto, GitHub fake, {args.services} ECS services) done, RSS {rss_mib():.0f} MiB")  # fmt: skip
        rss_setup = peak_rss_mib()
        with tempfile.TemporaryDirectory(prefix="lemi-deploy-") as tmp:
            for label, poll in (("production poll", PRODUCTION_POLL), ("harness poll", HARNESS_POLL)):
                with app_running(github, Path(tmp) / label.replace(" ", "-"), workers=args.workers, poll=poll) as app:
                    warm = single_series(app, github, probe, endpoint, 1, f"warm-{label}", args.timeout)
                    if label == "production poll":
                        rss_first = peak_rss_mib()
                        cold = warm[0].overhead.get("demo-service", float("nan")) * 1e3
                        print(f"first push after start (installation token, AWS clients): {cold:.1f} ms "
                              "to UpdateService")  # fmt: skip
                    pushes = single_series(app, github, probe, endpoint, args.repeat, label, args.timeout, jitter=poll)
                    results[label] = report_single(f"one deploy, workers poll every {poll:g} s ({label})", pushes)
                    if label == "production poll":
                        print_calls("steady state", pushes[-1])
            rss_single = peak_rss_mib()
            with app_running(github, Path(tmp) / "burst", workers=args.workers, poll=args.burst_poll) as app:
                single_series(app, github, probe, endpoint, 1, "warm-burst", args.timeout)  # token, caches
                results["burst"] = report_burst(
                    burst(app, github, probe, endpoint, names, args.timeout), args.workers, args.burst_poll
                )
            rss_burst = peak_rss_mib()
            if args.rollout_services and args.rollout_seconds > 0:
                subset = names[: args.rollout_services]
                sim.complete(after=2)  # in progress at the first poll after the update, done at the second
                with app_running(github, Path(tmp) / "rollouts", workers=args.workers, poll=args.burst_poll,
                                 deploy_poll=args.rollout_seconds) as app:  # fmt: skip
                    # warm-up (token, clients): a push of the first service alone
                    burst(app, github, probe, endpoint, subset[:1], args.timeout, remove=names[1:])
                    results["rollouts"] = report_burst(
                        burst(app, github, probe, endpoint, subset, args.timeout, remove=names[len(subset):]),
                        args.workers, args.burst_poll, rollout=args.rollout_seconds, calls=False,
                    )  # fmt: skip
        print(f"\npeak RSS of this process (App + moto + GitHub fake): {rss_setup:.0f} MiB before the App started, "
              f"{rss_first:.0f} MiB after its first deploy, {rss_single:.0f} MiB after the single deploys, "
              f"{rss_burst:.0f} MiB after the burst of {args.services}")  # fmt: skip
    finally:
        patches.restore()
        github.stop()
        moto.stop()
    print(f"bench took {time.perf_counter() - started:.1f} s")
    print("rerun: .venv/bin/python bench/deploy_overhead.py [--repeat N] [--services N] [--workers N] [--burst-poll S]")
    return 1 if any(r.get("failed") for r in results.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
