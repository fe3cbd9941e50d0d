"""Rollouts that outlast the test's patience hold no worker.

The App runs with two workers, as a small install would; ECS rollouts (ecs_sim) are *stuck*
until the test lets them complete, so a design that waits for a rollout in a worker would
never settle the jobs these tests wait for. Everything goes through POST /webhook with real
example payloads, against the GitHub fake and moto.
"""

from __future__ import annotations

import collections
import uuid
from pathlib import Path
from typing import Any

import aws_world
import ecs_sim
import pytest
from app_harness import RunningApp, running_app
from aws_world import CLUSTER
from fakes.webhooks import ZERO_SHA, for_issue_comment, for_pull_request, for_push
from lemi_process import Server, wait_until
from moto.core.exceptions import JsonRESTError
from moto.core.responses import BaseResponse
from moto.ecs.models import EC2ContainerServiceBackend
from test_app_logs import crash_with_logs
from test_queue import make_sqs

from bot.core.compile import compile_for
from bot.core.history import DEPLOYED_AT

REPO = "acme/demo-service"
ENV = "staging"
SERVICES = ["demo-service"] + [f"demo-service-{n}" for n in range(1, 8)]  # 8 in one repository
pytestmark = pytest.mark.usefixtures("shared_api_models")


def files_of(services: list[str]) -> dict[str, str]:
    files: dict[str, str] = {}
    for name in services:
        files[f"deploy/{name}/service.yaml"] = aws_world.SERVICE_YAML.replace("name: demo-service", f"name: {name}")
        files[f"deploy/{name}/environment/staging.yaml"] = aws_world.STAGING_YAML
    return files


def provision(world: aws_world.World, names: list[str]) -> None:
    """ECS services for ``names`` (demo-service exists), as the infra team's Terraform makes them."""
    ecs = world.ecs()
    for name in names:
        if name == "demo-service":
            continue
        first = {**compile_for(world.config, world.files, ENV, "v1").task_definition, "family": f"{name}-staging"}
        arn = ecs.register_task_definition(**first)["taskDefinition"]["taskDefinitionArn"]
        ecs.create_service(cluster=CLUSTER, serviceName=name, taskDefinition=arn, desiredCount=1, launchType="FARGATE")


def revision_arn(number: int) -> str:
    return f"arn:aws:ecs:{aws_world.REGION}:{aws_world.ACCOUNT}:task-definition/demo-service-staging:{number}"


def app_for(github: Any, tmp_path: Path, **kwargs: Any) -> Any:
    kwargs.setdefault("deploy_poll_seconds", 0.05)
    kwargs.setdefault("deploy_timeout_seconds", 600.0)  # far beyond any wait of these tests
    # these tests compress minutes-long rollouts into seconds, so GitHub's one-minute window of
    # content-creating requests would still hold the announcements when the results are due: the
    # budget is raised here (and a test that writes more raises the fake's limits to match) to
    # keep these tests about workers; the writer's budget is tested in test_writer.py and measured in bench/rollouts.py
    kwargs.setdefault("github_writes_per_minute", 400)
    kwargs.setdefault("lemi_yml", aws_world.lemi_yml(0))
    return running_app(github, tmp_path, workers=2, **kwargs)


def push(app: RunningApp, github: Any, sha: str, before: str = ZERO_SHA) -> None:
    response = app.deliver("push", for_push(github, REPO, "develop", before, sha), delivery=str(uuid.uuid4()))
    assert response.status_code == 202, response.text


def settled_jobs(app: RunningApp) -> list[dict[str, Any]]:
    """Every job done, while the rollouts go on (their watches stay)."""
    rows = app.drain(timeout=30, watches=False)
    assert all(r["state"] == "done" for r in rows), rows
    return rows


def deployment_of(github: Any, service: str, sha: str) -> Any:
    (found,) = [d for d in github.deployments(REPO) if d.payload.get("service") == service and d.sha == sha]
    return found


def check_of(github: Any, sha: str, service: str) -> Any:
    name = "lemi / deploy (staging)" + ("" if service == "demo-service" else f" {service}")
    (run,) = [r for r in github.check_runs(REPO, sha=sha) if r.name == name]
    return run


def test_a_monorepo_push_starts_every_rollout_and_the_app_keeps_answering(
    github: Any, repos: int, world: aws_world.World, sim: ecs_sim.Sim, tmp_path: Path
) -> None:
    provision(world, SERVICES)
    sha = github.commit(REPO, "develop", files_of(SERVICES))
    aws_world.push_image(world.endpoint, sha)
    github.set_permission(REPO, "alice", "write")
    github.secondary_limits = (400, 2000)
    sim.stuck()
    with app_for(github, tmp_path) as app:
        push(app, github, sha)
        rows = settled_jobs(app)
        # every service reached UpdateService, though no rollout has ended and there are 2 workers
        assert sorted(r["kind"] for r in rows) == ["deploy"] * 8 + ["webhook"]
        assert sim.updates == 8
        assert len(app.watches()) == 8
        for service in SERVICES:
            assert check_of(github, sha, service).status == "in_progress"
            assert deployment_of(github, service, sha).statuses[-1].state == "in_progress"

        # while the 8 rollouts go on: a new pull request gets its `lemi / spec` check ...
        number = github.open_pull_request(REPO, "feature/x", {"deploy/demo-service/service.yaml":
                                          aws_world.SERVICE_YAML.replace("desiredCount: 2", "desiredCount: 3")},
                                          user="alice")  # fmt: skip
        response = app.deliver("pull_request", for_pull_request(github, REPO, number))
        assert response.status_code == 202, response.text
        settled_jobs(app)
        head = github.pull(REPO, number).head_sha
        (spec,) = github.check_runs(REPO, sha=head, name="lemi / spec")
        assert spec.status == "completed" and spec.conclusion == "success"
        # ... and a slash command is answered
        comment_id = github.add_comment(REPO, number, "/lemi status -s demo-service", user="alice")
        response = app.deliver("issue_comment", for_issue_comment(github, REPO, number, comment_id))
        assert response.status_code == 202, response.text
        settled_jobs(app)
        replies = [c for c in github.comments(REPO, number) if c.via_app and c.id > comment_id]
        assert len(replies) == 1, replies
        # the rollout as ECS shows it mid-way: the new revision is PRIMARY and not yet running
        assert "| PRIMARY | IN_PROGRESS | `demo-service-staging:2` | 0/2 |" in replies[0].body, replies[0].body
        assert len(app.watches()) == 8  # still rolling out

        sim.complete()
        app.drain(timeout=30)
    for service in SERVICES:
        deployment = deployment_of(github, service, sha)
        assert deployment.statuses[-1].state == "success", (service, deployment.statuses)
        run = check_of(github, sha, service)
        assert (run.status, run.conclusion) == ("completed", "success")
    assert sim.updates == 8


def test_a_monorepo_push_asks_aws_once_for_what_its_services_share(
    github: Any, repos: int, world: aws_world.World, sim: ecs_sim.Sim, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its 8 services have the cluster, the secrets, the parameter and the image in common: the
    deploys running at once ask for them once, not once each (a deploy that starts 10 s after
    another asks again); each service is described once before its UpdateService."""
    calls: list[tuple[str, list[str], str]] = []  # (operation, services described, family registered)
    call_action = BaseResponse.call_action

    def counted(self: BaseResponse) -> Any:
        action = self._get_action()
        services = self._get_param("services") if action == "DescribeServices" else []
        family = self._get_param("family") if action == "RegisterTaskDefinition" else ""
        calls.append((action, services or [], family or ""))
        return call_action(self)

    monkeypatch.setattr(BaseResponse, "call_action", counted)
    provision(world, SERVICES)
    sha = github.commit(REPO, "develop", files_of(SERVICES))
    aws_world.push_image(world.endpoint, sha)
    github.secondary_limits = (400, 2000)
    sim.stuck()
    calls.clear()
    with app_for(github, tmp_path) as app:
        push(app, github, sha)
        settled_jobs(app)
        assert sim.updates == 8
        ops = collections.Counter(action for action, _, _ in calls)
        # one for each service
        for op in ("UpdateService", "RegisterTaskDefinition", "ListTaskDefinitions", "DescribeTaskDefinition"):
            assert ops[op] == 8, ops
        # each service described once before its new revision is registered (the watcher's
        # descriptions come after: its watch is recorded once the revision is)
        for service in SERVICES:
            registered = calls.index(("RegisterTaskDefinition", [], f"{service}-staging"))
            assert calls[:registered].count(("DescribeServices", [service], "")) == 1, service
        # shared: fewer than one each (once, unless a deploy started 10 s after another)
        for op, each in (("DescribeClusters", 1), ("DescribeSecret", 3), ("GetSecretValue", 1),
                         ("GetParameters", 1), ("DescribeImages", 1)):  # fmt: skip
            assert each <= ops[op] < 8 * each, ops


def test_a_watch_resumes_after_a_restart(
    github: Any, repos: int, world: aws_world.World, sim: ecs_sim.Sim, tmp_path: Path
) -> None:
    sha = github.commit(REPO, "develop", files_of(["demo-service"]))
    aws_world.push_image(world.endpoint, sha)
    sim.stuck()
    with app_for(github, tmp_path) as app:
        push(app, github, sha)
        settled_jobs(app)
        assert len(app.watches()) == 1
    # lemi stopped mid-rollout: the Deployment still says in progress, the watch is on disk
    assert deployment_of(github, "demo-service", sha).statuses[-1].state == "in_progress"
    sim.complete()
    with app_for(github, tmp_path) as app:  # the same queue file: a restart
        app.drain(timeout=30)
        assert app.watches() == []
    deployment = deployment_of(github, "demo-service", sha)
    assert deployment.statuses[-1].state == "success", deployment.statuses
    assert check_of(github, sha, "demo-service").conclusion == "success"
    assert sim.updates == 1  # watched, never sent again
    assert DEPLOYED_AT in world.tags(revision_arn(2))  # the watcher saw it complete: rollback's history


def test_a_newer_push_starts_at_once_and_the_older_rollout_is_reported_replaced(
    github: Any, repos: int, world: aws_world.World, sim: ecs_sim.Sim, tmp_path: Path
) -> None:
    first = github.commit(REPO, "develop", files_of(["demo-service"]))
    aws_world.push_image(world.endpoint, first)
    sim.stuck()
    with app_for(github, tmp_path) as app:
        push(app, github, first)
        settled_jobs(app)
        second = github.commit(REPO, "develop", {"deploy/demo-service/service.yaml": aws_world.SERVICE_YAML + "# v2\n"})
        aws_world.push_image(world.endpoint, second)
        push(app, github, second, before=first)
        settled_jobs(app)  # the newer deploy did not wait for the older rollout
        assert sim.updates == 2
        sim.complete()
        app.drain(timeout=30)
    older, newer = deployment_of(github, "demo-service", first), deployment_of(github, "demo-service", second)
    assert newer.statuses[-1].state == "success", newer.statuses
    assert older.statuses[-1].state == "inactive", older.statuses
    assert "replaced by a newer rollout" in older.statuses[-1].description
    assert "failure" not in [s.state for s in older.statuses]  # replaced is not a rollback
    run = check_of(github, first, "demo-service")
    assert run.conclusion == "cancelled" and second[:12] in run.output["title"]
    assert "ECS replaced this deployment" in run.output["summary"]
    assert check_of(github, second, "demo-service").conclusion == "success"
    assert DEPLOYED_AT not in world.tags(revision_arn(2)) and DEPLOYED_AT in world.tags(revision_arn(3))


def test_a_circuit_breaker_rollback_seen_by_the_watcher_is_a_failure(
    github: Any, repos: int, world: aws_world.World, sim: ecs_sim.Sim, tmp_path: Path
) -> None:
    sha = github.commit(REPO, "develop", files_of(["demo-service"]))
    aws_world.push_image(world.endpoint, sha)
    sim.circuit_breaker(after=3, reason="Essential container in task exited")
    with app_for(github, tmp_path) as app:
        push(app, github, sha)
        app.drain(timeout=30)
    deployment = deployment_of(github, "demo-service", sha)
    assert deployment.statuses[-1].state == "failure", deployment.statuses
    run = check_of(github, sha, "demo-service")
    assert run.conclusion == "failure"
    assert "Essential container in task exited" in run.output["summary"]
    assert DEPLOYED_AT not in world.tags(revision_arn(2))  # failed: not a revision to roll back to
    assert DEPLOYED_AT not in world.tags(world.first_revision)  # ECS's rollback is not lemi's rollout


def test_a_completed_rollout_whose_tag_aws_refuses_is_a_success_with_a_warning(
    github: Any, repos: int, world: aws_world.World, sim: ecs_sim.Sim, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(self: EC2ContainerServiceBackend, arn: str, tags: dict[str, str]) -> None:
        raise JsonRESTError("AccessDeniedException", "not authorized to perform: ecs:TagResource")

    monkeypatch.setattr(EC2ContainerServiceBackend, "tag_resource", refuse)
    sha = github.commit(REPO, "develop", files_of(["demo-service"]))
    aws_world.push_image(world.endpoint, sha)
    sim.complete(after=2)
    with app_for(github, tmp_path) as app:
        push(app, github, sha)
        app.drain(timeout=30)
    assert deployment_of(github, "demo-service", sha).statuses[-1].state == "success"
    run = check_of(github, sha, "demo-service")
    assert run.conclusion == "success"
    assert "⚠️ lemi could not record demo-service-staging:2 as deployed" in run.output["summary"]
    assert DEPLOYED_AT not in world.tags(revision_arn(2))


def test_a_failure_seen_by_the_watcher_shows_the_stopped_tasks_last_log_lines(
    github: Any, repos: int, world: aws_world.World, sim: ecs_sim.Sim, tmp_path: Path
) -> None:
    sha = github.commit(REPO, "develop", files_of(["demo-service"]))
    aws_world.push_image(world.endpoint, sha)
    crash_with_logs(sim, world, ["booting", "KeyError: 'DATABASE_URL' @oncall"], after=3)
    lemi_yml = aws_world.lemi_yml(0).replace("    cluster:", "    logs: cloudwatch\n    cluster:")
    with app_for(github, tmp_path, lemi_yml=lemi_yml) as app:
        push(app, github, sha)
        app.drain(timeout=30)
    run = check_of(github, sha, "demo-service")
    assert run.conclusion == "failure"
    summary = run.output["summary"]
    assert summary.count("Its last log lines (CloudWatch Logs):") == 2  # both stopped tasks
    assert "  ```\n  booting\n  KeyError: 'DATABASE_URL' @oncall\n  ```" in summary


def test_a_restart_while_a_deploy_rolls_out_replaces_it_and_is_answered_when_its_rollout_ends(
    github: Any, repos: int, world: aws_world.World, sim: ecs_sim.Sim, tmp_path: Path
) -> None:
    sha = github.commit(REPO, "develop", files_of(["demo-service"]))
    aws_world.push_image(world.endpoint, sha)
    github.set_permission(REPO, "alice", "write")
    number = github.open_pull_request(REPO, "feature/r", files_of(["demo-service"]), user="alice")
    sim.stuck()
    with app_for(github, tmp_path) as app:
        push(app, github, sha)
        settled_jobs(app)
        comment_id = github.add_comment(REPO, number, "/lemi restart -s demo-service", user="alice")
        response = app.deliver("issue_comment", for_issue_comment(github, REPO, number, comment_id))
        assert response.status_code == 202, response.text
        rows = settled_jobs(app)  # the restart job ended once its rollout was sent: no worker waits
        said = [c.body for c in github.comments(REPO, number) if c.via_app and c.id > comment_id]
        assert [r["kind"] for r in rows].count("command") == 1 and sim.updates == 2, said
        wait_until(lambda: deployment_of(github, "demo-service", sha).statuses[-1].state == "inactive", 10,
                   "the deploy reported replaced by the restart")  # fmt: skip
        assert [c for c in github.comments(REPO, number) if c.via_app and c.id > comment_id] == []  # not yet
        sim.complete()
        app.drain(timeout=30)
    (answer,) = [c for c in github.comments(REPO, number) if c.via_app and c.id > comment_id]
    assert "completed" in answer.body.lower(), answer.body
    assert [r.content for r in github.comments_by_id[comment_id].reactions][-1:] == ["rocket"]
    assert (
        "replaced by a newer rollout (restart)" in deployment_of(github, "demo-service", sha).statuses[-1].description
    )


def test_on_sqs_a_watch_resumes_on_another_replica_when_its_replica_dies(
    github: Any, repos: int, world: aws_world.World, sim: ecs_sim.Sim, tmp_path: Path
) -> None:
    """Replica 1 (a real `lemi serve` process) sends the update and dies (SIGKILL) mid-rollout;
    replica 2 takes the watch over once its lease runs out, and reports the rollout's end."""
    queue_url, _, _ = make_sqs(world.endpoint)
    table = queue_url.rsplit("dedupe_table=", 1)[1]
    sha = github.commit(REPO, "develop", files_of(["demo-service"]))
    aws_world.push_image(world.endpoint, sha)
    sim.stuck()
    lease = "2"

    def deployment_state() -> str:
        return deployment_state_of(github, sha)

    first = Server(github, tmp_path, tmp_path / "replica-1.db", lemi_yml=aws_world.lemi_yml(0), LEMI_QUEUE=queue_url,
                   LEMI_LEASE_SECONDS=lease, LEMI_DEPLOY_POLL_SECONDS="0.1",
                   LEMI_DEPLOY_TIMEOUT_SECONDS="600").start()  # fmt: skip
    try:
        response = first.deliver("push", for_push(github, REPO, "develop", ZERO_SHA, sha), str(uuid.uuid4()))
        assert response.status_code == 202, response.text
        ddb = aws_world.client("dynamodb", world.endpoint)

        def watched() -> list[str]:
            item = ddb.get_item(TableName=table, Key={"id": {"S": "watches"}}, ConsistentRead=True).get("Item", {})
            return item.get("ids", {}).get("SS", [])

        wait_until(lambda: sim.updates == 1 and watched() and deployment_state() == "in_progress", 30,
                   "replica 1 sent the update and watches the rollout", first.output)  # fmt: skip
    finally:
        first.kill()
    assert deployment_state() == "in_progress"
    sim.complete()
    replica = tmp_path / "replica-2"
    replica.mkdir()
    with app_for(github, replica, queue_url=queue_url, lease_seconds=float(lease), deploy_poll_seconds=0.1):
        wait_until(lambda: deployment_state() == "success", 30, "replica 2 reported the rollout")
        wait_until(lambda: not watched(), 10, "the watch is over")
    assert sim.updates == 1
    assert check_of(github, sha, "demo-service").conclusion == "success"


def deployment_state_of(github: Any, sha: str) -> str:
    found = [d for d in github.deployments(REPO) if d.sha == sha]
    return found[0].statuses[-1].state if found and found[0].statuses else ""


def test_a_rollout_timed_by_the_clock_is_watched_until_it_completes(
    github: Any, repos: int, world: aws_world.World, sim: ecs_sim.Sim, tmp_path: Path
) -> None:
    """ecs_sim's ``complete_in`` (bench/rollouts.py's ECS): however often the watcher describes the
    service, the rollout completes only once its time has passed, its tasks starting meanwhile."""
    now = [0.0]
    sim.clock = lambda: now[0]
    sim.complete_in(300)
    sha = github.commit(REPO, "develop", files_of(["demo-service"]))
    aws_world.push_image(world.endpoint, sha)
    with app_for(github, tmp_path) as app:
        push(app, github, sha)
        settled_jobs(app)
        now[0] = 150.0  # half way: one of the two tasks runs
        wait_until(lambda: sim.service(CLUSTER, "demo-service").deployments[0]["runningCount"] == 1, 10,
                   "the watcher saw the first task running")  # fmt: skip
        assert len(app.watches()) == 1
        assert deployment_of(github, "demo-service", sha).statuses[-1].state == "in_progress"
        now[0] = 300.0
        app.drain(timeout=30)
    assert deployment_of(github, "demo-service", sha).statuses[-1].state == "success"
    assert check_of(github, sha, "demo-service").conclusion == "success"
    assert sim.updates == 1
