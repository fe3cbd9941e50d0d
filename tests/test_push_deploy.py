"""Push deploys end to end (the README, "The GitHub App": the ``push`` row).

Every scenario goes through POST /webhook with real example push payloads
(``fakes.webhooks.for_push``) into lemi's real app, queue and workers, against
the stateful GitHub fake and moto (with ECS rollouts simulated by ecs_sim).
"""

from __future__ import annotations

import threading
import uuid
from pathlib import Path
from typing import Any

import aws_world
import ecs_sim
import pytest
from app_harness import RunningApp, running_app
from aws_world import CLUSTER, SERVICE
from fakes.webhooks import ZERO_SHA, for_issue_comment, for_push

from bot.aws.ecs import revision_of
from bot.core.compile import compile_for

REPO = "acme/demo-service"
ENV = "staging"
FAMILY = "demo-service-staging"
CHECK = "lemi / deploy (staging)"
URL = "https://demo-service-internal.staging.lemon"
REGISTRY = f"{aws_world.ACCOUNT}.dkr.ecr.{aws_world.REGION}.amazonaws.com"
CB_REASON = "CannotPullContainerError: pull image manifest has been retried 5 time(s): not found"

SERVICE_FILES = aws_world.SERVICE_FILES
lemi_yml = aws_world.lemi_yml
pytestmark = pytest.mark.usefixtures("shared_api_models")


# ---- fixtures and helpers ------------------------------------------------------------------


def app_for(github: Any, tmp_path: Path, *, wait: int = 0, **kwargs: Any) -> Any:
    kwargs.setdefault("deploy_poll_seconds", 0.01)
    kwargs.setdefault("deploy_timeout_seconds", 10.0)
    return running_app(github, tmp_path, lemi_yml=lemi_yml(wait), **kwargs)


def push(app: RunningApp, github: Any, branch: str, before: str | None, after: str, *, sender: str = "octocat",
         delivery: str | None = None, drain: bool = True, expect: str = "queued") -> dict[str, Any]:  # fmt: skip
    payload = for_push(github, REPO, branch, before, after, sender=sender)
    response = app.deliver("push", payload, delivery=delivery or str(uuid.uuid4()))
    assert response.status_code == 202, response.text
    assert response.json() == {"status": expect}
    if drain:
        rows = app.drain()
        assert all(r["state"] == "done" for r in rows), f"{rows}\n{github.describe_calls()}"
    return payload


def revisions(world: aws_world.World, family: str = FAMILY) -> list[str]:
    arns = world.ecs().list_task_definitions(familyPrefix=family, status="ACTIVE")["taskDefinitionArns"]
    return sorted((revision_of(a) for a in arns), key=lambda r: int(r.rsplit(":", 1)[1]))


def service_state(sim: ecs_sim.Sim, name: str = SERVICE) -> str:
    """The task definition the service points at (read from moto's backend: no simulated step)."""
    return revision_of(sim.service(CLUSTER, name).task_definition)


def image_of(world: aws_world.World, revision: str) -> str:
    td = world.ecs().describe_task_definition(taskDefinition=revision)["taskDefinition"]
    return next(c["image"] for c in td["containerDefinitions"] if c["name"] == SERVICE)


def deployments_of(github: Any, service: str = SERVICE) -> list[Any]:
    return [d for d in github.deployments(REPO) if (d.payload or {}).get("service") == service]


def states(deployment: Any) -> list[str]:
    return [s.state for s in deployment.statuses]


# ---- 1. success end to end ---------------------------------------------------------------------


def test_push_deploys_end_to_end(
    github: Any, repos: int, world: aws_world.World, sim: ecs_sim.Sim, tmp_path: Path
) -> None:
    sha = github.commit(REPO, "develop", SERVICE_FILES)
    aws_world.push_image(world.endpoint, sha)
    with app_for(github, tmp_path) as app:
        push(app, github, "develop", ZERO_SHA, sha)
        jobs = app.jobs()
    assert sorted(j["kind"] for j in jobs) == ["deploy", "webhook"]

    (deployment,) = github.deployments(REPO)
    assert deployment.environment == ENV
    assert deployment.ref == sha and deployment.sha == sha
    assert deployment.payload["service"] == SERVICE
    assert deployment.production_environment is False
    assert deployment.creator == github.bot_login
    assert states(deployment)[0] == "in_progress"
    assert set(states(deployment)[:-1]) == {"in_progress"}
    final = deployment.statuses[-1]
    assert final.state == "success", deployment.statuses
    assert final.environment_url == URL
    (run,) = github.check_runs(REPO, sha=sha)
    assert run.name == CHECK
    assert final.log_url and final.log_url.endswith(f"/runs/{run.id}")
    assert all(s.log_url == final.log_url for s in deployment.statuses)
    assert all(not s.environment_url for s in deployment.statuses[:-1])

    assert (run.status, run.conclusion) == ("completed", "success")
    # the run lemi created is updated by its id, not looked up again (each call costs rate limit)
    lookups = [c for c in github.calls if c.method == "GET" and c.path == f"/repos/{REPO}/commits/{sha}/check-runs"]
    assert len(lookups) == 1, github.describe_calls()
    summary = run.output["summary"]
    image = f"{REGISTRY}/demo-service:{sha}"
    assert "demo-service-staging:2" in run.output["title"]
    assert "`demo-service-staging:2`" in summary
    assert f"`{image}`" in summary
    assert URL in summary
    assert "```diff" in summary
    assert "--- running (demo-service-staging:1)" in summary
    assert f'-      "image": "{REGISTRY}/demo-service:v1",' in summary
    assert f'+      "image": "{image}",' in summary

    # AWS: revision 2 registered with the image of the pushed SHA, and the service runs it
    assert revisions(world) == [f"{FAMILY}:1", f"{FAMILY}:2"]
    assert image_of(world, f"{FAMILY}:2") == image
    described = world.ecs().describe_services(cluster=CLUSTER, services=[SERVICE])["services"][0]
    assert revision_of(described["taskDefinition"]) == f"{FAMILY}:2"
    assert described["deployments"][0]["rolloutState"] == "COMPLETED"
    assert sim.updates == 1


# ---- 2. verify: missing secret, missing image, bounded wait for the image -------------------------


def assert_nothing_deployed(world: aws_world.World, sim: ecs_sim.Sim) -> None:
    assert revisions(world) == [f"{FAMILY}:1"]
    described = world.ecs().describe_services(cluster=CLUSTER, services=[SERVICE])["services"][0]
    assert described["taskDefinition"] == world.first_revision
    assert sim.updates == 0


def test_missing_secret_fails_before_registering(
    github: Any, repos: int, world: aws_world.World, sim: ecs_sim.Sim, tmp_path: Path
) -> None:
    aws_world.client("secretsmanager", world.endpoint).delete_secret(
        SecretId="demo-service/db-password", ForceDeleteWithoutRecovery=True
    )
    sha = github.commit(REPO, "develop", SERVICE_FILES)
    aws_world.push_image(world.endpoint, sha)
    with app_for(github, tmp_path) as app:
        push(app, github, "develop", ZERO_SHA, sha)

    (deployment,) = github.deployments(REPO)
    assert states(deployment)[0] == "in_progress"
    final = deployment.statuses[-1]
    assert final.state == "failure"
    assert "DB_PASSWORD (demo-service/db-password)" in final.description
    assert not final.environment_url
    assert final.log_url
    (run,) = github.check_runs(REPO, sha=sha, name=CHECK)
    assert (run.status, run.conclusion) == ("completed", "failure")
    summary = run.output["summary"]
    assert "Nothing was deployed" in summary
    assert "**secret** DB_PASSWORD (demo-service/db-password)" in summary
    assert "does not exist in Secrets Manager" in summary
    assert "DB_USER" not in summary  # only what is missing is listed
    assert_nothing_deployed(world, sim)


def test_missing_image_fails_before_registering(
    github: Any, repos: int, world: aws_world.World, sim: ecs_sim.Sim, tmp_path: Path
) -> None:
    sha = github.commit(REPO, "develop", SERVICE_FILES)  # no image pushed for it
    with app_for(github, tmp_path, wait=0) as app:
        push(app, github, "develop", ZERO_SHA, sha)

    (deployment,) = github.deployments(REPO)
    final = deployment.statuses[-1]
    assert final.state == "failure"
    assert f"image demo-service:{sha}" in final.description
    (run,) = github.check_runs(REPO, sha=sha, name=CHECK)
    assert (run.status, run.conclusion) == ("completed", "failure")
    assert f"**image** demo-service:{sha}: the image is not in ECR" in run.output["summary"]
    assert_nothing_deployed(world, sim)


def test_an_image_that_never_arrives_says_the_build_may_have_failed_and_links_its_checks(
    github: Any, repos: int, world: aws_world.World, sim: ecs_sim.Sim, tmp_path: Path
) -> None:
    """The build workflow pushes the image only if the commit's tests pass: when it never arrives
    within the bound, the failure points at the commit's checks, on the web side of the GitHub
    the App talks to (GitHub Enterprise Server here: https://HOST/api/v3 -> https://HOST)."""
    sha = github.commit(REPO, "develop", SERVICE_FILES)  # its build failed: no image is ever pushed
    with app_for(github, tmp_path, wait=1, api_url=github.ghes_api_url) as app:
        push(app, github, "develop", ZERO_SHA, sha)

    checks = f"{github.url}/{REPO}/commit/{sha}/checks"
    (deployment,) = github.deployments(REPO)
    final = deployment.statuses[-1]
    assert final.state == "failure"
    assert final.description.startswith(f"the build may have failed: image demo-service:{sha}")
    (run,) = github.check_runs(REPO, sha=sha, name=CHECK)
    assert (run.status, run.conclusion) == ("completed", "failure")
    summary = run.output["summary"]
    assert (
        f"**image** demo-service:{sha}: the image is not in ECR after waiting 1 s — the build may have failed"
        in summary
    )
    assert (
        f"The image `{sha}` never arrived in ECR, so its build may have failed: see [the commit's checks]({checks})."
        in summary
    )
    assert f"`/lemi deploy {sha} -e staging`" in summary
    assert "/api/v3" not in summary
    assert_nothing_deployed(world, sim)


def test_a_missing_secret_does_not_blame_the_build(
    github: Any, repos: int, world: aws_world.World, sim: ecs_sim.Sim, tmp_path: Path
) -> None:
    aws_world.client("secretsmanager", world.endpoint).delete_secret(
        SecretId="demo-service/db-password", ForceDeleteWithoutRecovery=True
    )
    sha = github.commit(REPO, "develop", SERVICE_FILES)
    aws_world.push_image(world.endpoint, sha)
    with app_for(github, tmp_path) as app:
        push(app, github, "develop", ZERO_SHA, sha)
    (deployment,) = github.deployments(REPO)
    assert "build" not in deployment.statuses[-1].description
    (run,) = github.check_runs(REPO, sha=sha, name=CHECK)
    assert "build may have failed" not in run.output["summary"] and "/checks" not in run.output["summary"]


def test_push_waits_for_the_build_within_the_bound(
    github: Any, repos: int, world: aws_world.World, sim: ecs_sim.Sim, tmp_path: Path
) -> None:
    sha = github.commit(REPO, "develop", SERVICE_FILES)
    build = threading.Timer(0.5, aws_world.push_image, args=(world.endpoint, sha))
    with app_for(github, tmp_path, wait=5) as app:
        build.start()
        try:
            push(app, github, "develop", ZERO_SHA, sha)
        finally:
            build.cancel()
            build.join()

    (deployment,) = github.deployments(REPO)
    assert states(deployment)[-1] == "success", deployment.statuses
    assert "failure" not in states(deployment)
    assert image_of(world, f"{FAMILY}:2") == f"{REGISTRY}/demo-service:{sha}"
    assert service_state(sim) == f"{FAMILY}:2"


# ---- 3. rollout failed: circuit breaker ----------------------------------------------------------


def test_circuit_breaker_reports_stopped_tasks_and_events(
    github: Any, repos: int, world: aws_world.World, sim: ecs_sim.Sim, tmp_path: Path
) -> None:
    sim.circuit_breaker(after=2, reason=CB_REASON)
    sha = github.commit(REPO, "develop", SERVICE_FILES)
    aws_world.push_image(world.endpoint, sha)
    with app_for(github, tmp_path) as app:
        push(app, github, "develop", ZERO_SHA, sha)

    (deployment,) = github.deployments(REPO)
    final = deployment.statuses[-1]
    assert final.state == "failure", deployment.statuses
    assert "failed" in final.description and "circuit breaker" in final.description
    assert not final.environment_url
    (run,) = github.check_runs(REPO, sha=sha, name=CHECK)
    assert (run.status, run.conclusion) == ("completed", "failure")
    summary = run.output["summary"]
    assert "did not complete" in summary and "`demo-service-staging:2`" in summary
    assert "Stopped tasks:" in summary
    assert summary.count(CB_REASON) == 2  # both stopped tasks, each with its reason
    assert "exit 1" in summary
    assert "deployment failed: tasks failed to start." in summary
    assert "rolling back to deployment" in summary
    assert "```diff" in summary
    # registered and rolled out, then ECS rolled back to revision 1
    assert revisions(world) == [f"{FAMILY}:1", f"{FAMILY}:2"]
    assert sim.updates == 1
    assert service_state(sim) == f"{FAMILY}:1"


# ---- 4. a newer push supersedes a deploy that has not started rolling out -------------------------


def test_newer_push_supersedes_older_deploy(
    github: Any, repos: int, world: aws_world.World, sim: ecs_sim.Sim, tmp_path: Path
) -> None:
    sha1 = github.commit(REPO, "develop", SERVICE_FILES)
    sha2 = github.commit(REPO, "develop", {"README.md": "demo v2\n"})
    aws_world.push_image(world.endpoint, sha1)
    aws_world.push_image(world.endpoint, sha2)
    # both deliveries are stored before any worker runs
    with app_for(github, tmp_path, workers=0) as app:
        push(app, github, "develop", ZERO_SHA, sha1, drain=False)
        push(app, github, "develop", sha1, sha2, drain=False)
        assert [j["state"] for j in app.jobs()] == ["queued", "queued"]
    assert github.writes() == []
    # one worker: both pushes fan out before the first deploy starts
    with app_for(github, tmp_path, workers=1) as app:
        rows = app.drain()
    assert all(r["state"] == "done" for r in rows), rows

    first, second = github.deployments(REPO)
    assert (first.sha, second.sha) == (sha1, sha2)
    assert first.state == "inactive", first.statuses
    assert "superseded" in first.statuses[-1].description
    assert "success" not in states(first) and "failure" not in states(first)
    (run1,) = github.check_runs(REPO, sha=sha1, name=CHECK)
    assert (run1.status, run1.conclusion) == ("completed", "cancelled")
    assert "newer push" in run1.output["summary"]

    assert second.state == "success", second.statuses
    (run2,) = github.check_runs(REPO, sha=sha2, name=CHECK)
    assert (run2.status, run2.conclusion) == ("completed", "success")
    assert sim.updates == 1
    assert revisions(world) == [f"{FAMILY}:1", f"{FAMILY}:2"]
    assert image_of(world, f"{FAMILY}:2") == f"{REGISTRY}/demo-service:{sha2}"
    assert service_state(sim) == f"{FAMILY}:2"


# ---- 5. pushes that deploy nothing ----------------------------------------------------------------


def test_non_environment_pushes_do_nothing(
    github: Any, repos: int, world: aws_world.World, sim: ecs_sim.Sim, tmp_path: Path
) -> None:
    feature = github.commit(REPO, "feature/x", SERVICE_FILES)
    develop = github.commit(REPO, "develop", SERVICE_FILES)
    for sha in (feature, develop):
        aws_world.push_image(world.endpoint, sha)
    tag = for_push(github, REPO, "develop", ZERO_SHA, develop)
    tag.update(ref="refs/tags/v1", base_ref="refs/heads/develop")
    deleted = for_push(github, REPO, "develop", develop, None)
    assert deleted["deleted"] is True and deleted["after"] == ZERO_SHA
    before = len(github.calls)
    with app_for(github, tmp_path) as app:
        push(app, github, "feature/x", ZERO_SHA, feature)
        for payload in (deleted, tag):
            response = app.deliver("push", payload)
            assert response.status_code == 202, response.text
        rows = app.drain()
    assert [(r["kind"], r["state"]) for r in rows] == [("webhook", "done")] * 3
    assert github.calls[before:] == []  # not even a token was asked for
    assert github.deployments(REPO) == [] and github.check_runs(REPO) == []
    assert_nothing_deployed(world, sim)


# ---- 6. several services deploy independently ------------------------------------------------------

WORKER = "demo-service-worker"
WORKER_YAML = aws_world.SERVICE_YAML.replace("name: demo-service", f"name: {WORKER}")  # same ECR image
WORKER_STAGING_YAML = "variables:\n  QUEUE: jobs\nsecrets:\n  QUEUE_TOKEN: demo-service-worker/queue-token\n"


def provision_worker(world: aws_world.World) -> None:
    """The worker's ECS service in the same cluster, as the infra team's Terraform would make it."""
    ecs = world.ecs()
    first = {**compile_for(world.config, world.files, ENV, "v1").task_definition, "family": f"{WORKER}-staging"}
    arn = ecs.register_task_definition(**first)["taskDefinition"]["taskDefinitionArn"]
    ecs.create_service(cluster=CLUSTER, serviceName=WORKER, taskDefinition=arn, desiredCount=1, launchType="FARGATE")


def test_services_deploy_independently(
    github: Any, repos: int, world: aws_world.World, sim: ecs_sim.Sim, tmp_path: Path
) -> None:
    provision_worker(world)
    sha = github.commit(REPO, "develop", {
        **SERVICE_FILES,
        f"deploy/{WORKER}/service.yaml": WORKER_YAML,
        f"deploy/{WORKER}/environment/staging.yaml": WORKER_STAGING_YAML,  # its secret does not exist
    })  # fmt: skip
    aws_world.push_image(world.endpoint, sha)
    with app_for(github, tmp_path) as app:
        push(app, github, "develop", ZERO_SHA, sha)
        jobs = app.jobs()
    assert {j["key"] for j in jobs if j["kind"] == "deploy"} == {f"{REPO}:{SERVICE}:{ENV}", f"{REPO}:{WORKER}:{ENV}"}

    (main_deployment,) = deployments_of(github, SERVICE)
    (worker_deployment,) = deployments_of(github, WORKER)
    assert main_deployment.environment == worker_deployment.environment == ENV
    assert main_deployment.task != worker_deployment.task
    assert states(main_deployment)[-1] == "success", main_deployment.statuses
    assert main_deployment.statuses[-1].environment_url == URL
    assert states(worker_deployment)[-1] == "failure", worker_deployment.statuses
    assert "QUEUE_TOKEN (demo-service-worker/queue-token)" in worker_deployment.statuses[-1].description

    runs = {r.name: r for r in github.check_runs(REPO, sha=sha)}
    assert set(runs) == {CHECK, f"{CHECK} {WORKER}"}
    assert runs[CHECK].conclusion == "success"
    assert runs[f"{CHECK} {WORKER}"].conclusion == "failure"
    assert "QUEUE_TOKEN" in runs[f"{CHECK} {WORKER}"].output["summary"]
    assert "QUEUE_TOKEN" not in runs[CHECK].output["summary"]

    assert service_state(sim) == f"{FAMILY}:2"
    assert service_state(sim, WORKER) == f"{WORKER}-staging:1"
    assert revisions(world, f"{WORKER}-staging") == [f"{WORKER}-staging:1"]
    assert sim.updates == 1


def test_two_successful_services_both_stay_successful(
    github: Any, repos: int, world: aws_world.World, sim: ecs_sim.Sim, tmp_path: Path
) -> None:
    """Deploying the worker does not turn the other service's live Deployment inactive."""
    provision_worker(world)
    sha = github.commit(REPO, "develop", {
        **SERVICE_FILES,
        f"deploy/{WORKER}/service.yaml": WORKER_YAML,
        f"deploy/{WORKER}/environment/staging.yaml": "variables:\n  QUEUE: jobs\n",
    })  # fmt: skip
    aws_world.push_image(world.endpoint, sha)
    with app_for(github, tmp_path) as app:
        push(app, github, "develop", ZERO_SHA, sha)
    assert sim.updates == 2
    for service in (SERVICE, WORKER):
        (deployment,) = deployments_of(github, service)
        assert "success" in states(deployment), deployment.statuses
        assert deployment.state == "success", f"{service}: {states(deployment)}"


# ---- 7. /lemi lock holds the push deploys of others ------------------------------------------------


def comment(app: RunningApp, github: Any, number: int, body: str, user: str) -> None:
    comment_id = github.add_comment(REPO, number, body, user=user)
    response = app.deliver("issue_comment", for_issue_comment(github, REPO, number, comment_id))
    assert response.status_code == 202, response.text
    rows = app.drain()
    assert all(r["state"] == "done" for r in rows), rows
    (reply,) = [c for c in github.comments(REPO, number) if c.via_app and c.id > comment_id][-1:]
    assert "refused" not in reply.body.lower(), reply.body


@pytest.fixture
def locked(github: Any, repos: int) -> int:
    """An open PR of acme/demo-service, alice and bob with write permission; returns the PR."""
    for user in ("alice", "bob"):
        github.set_permission(REPO, user, "write")
    return github.open_pull_request(REPO, "feature/lock", SERVICE_FILES, user="alice")


def test_lock_holds_push_deploy_until_unlock(
    github: Any, locked: int, world: aws_world.World, sim: ecs_sim.Sim, tmp_path: Path
) -> None:
    sha = github.commit(REPO, "develop", SERVICE_FILES, author="bob")
    aws_world.push_image(world.endpoint, sha)
    with app_for(github, tmp_path) as app:
        comment(app, github, locked, "/lemi lock -e staging", "alice")
        push(app, github, "develop", ZERO_SHA, sha, sender="bob")

        (deployment,) = github.deployments(REPO)
        assert states(deployment) == ["queued"]
        assert "locked by @alice" in deployment.statuses[-1].description
        assert_nothing_deployed(world, sim)
        assert github.check_runs(REPO, sha=sha, name=CHECK) == []

        comment(app, github, locked, "/lemi unlock -e staging", "alice")

    (deployment,) = github.deployments(REPO)  # the same Deployment, picked up again
    assert states(deployment)[0] == "queued"
    assert states(deployment)[-1] == "success", deployment.statuses
    assert deployment.statuses[-1].environment_url == URL
    (run,) = github.check_runs(REPO, sha=sha, name=CHECK)
    assert run.conclusion == "success"
    assert service_state(sim) == f"{FAMILY}:2"
    assert image_of(world, f"{FAMILY}:2") == f"{REGISTRY}/demo-service:{sha}"


def test_an_unlock_that_fails_as_it_queues_the_held_deploy_loses_it_not(
    github: Any, locked: int, world: aws_world.World, sim: ecs_sim.Sim, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """The held deploy is queued before the lock is released: the queue failing at that moment
    fails the unlock's attempt, which is tried again and finds the lock and the deploy still there."""
    from bot.store import sqlite_queue

    real_put, failures = sqlite_queue.SQLiteQueue.put, []

    async def put(self: Any, job: Any) -> bool:
        if ":released:" in job.dedupe_id and not failures:
            failures.append(job.dedupe_id)
            raise OSError("the queue went away")
        return await real_put(self, job)

    monkeypatch.setattr(sqlite_queue.SQLiteQueue, "put", put)
    sha = github.commit(REPO, "develop", SERVICE_FILES, author="bob")
    aws_world.push_image(world.endpoint, sha)
    with app_for(github, tmp_path) as app:
        comment(app, github, locked, "/lemi lock -e staging", "alice")
        push(app, github, "develop", ZERO_SHA, sha, sender="bob")
        comment(app, github, locked, "/lemi unlock -e staging", "alice")
    assert failures, "queuing the held deploy never failed: the test tested nothing"
    (deployment,) = github.deployments(REPO)
    assert states(deployment)[-1] == "success", deployment.statuses
    assert service_state(sim) == f"{FAMILY}:2"


def test_lock_holder_push_deploys(
    github: Any, locked: int, world: aws_world.World, sim: ecs_sim.Sim, tmp_path: Path
) -> None:
    sha = github.commit(REPO, "develop", SERVICE_FILES, author="alice")
    aws_world.push_image(world.endpoint, sha)
    with app_for(github, tmp_path) as app:
        comment(app, github, locked, "/lemi lock -e staging", "alice")
        push(app, github, "develop", ZERO_SHA, sha, sender="alice")
    (deployment,) = github.deployments(REPO)
    assert "queued" not in states(deployment)
    assert deployment.state == "success", deployment.statuses
    assert service_state(sim) == f"{FAMILY}:2"


def test_held_deploy_is_superseded_by_a_newer_push(
    github: Any, locked: int, world: aws_world.World, sim: ecs_sim.Sim, tmp_path: Path
) -> None:
    """bob's push is held; alice (the holder) pushes a newer commit, which deploys; on unlock
    bob's older deploy must not roll the environment back to his older commit."""
    sha1 = github.commit(REPO, "develop", SERVICE_FILES, author="bob")
    sha2 = github.commit(REPO, "develop", {"README.md": "demo v2\n"}, author="alice")
    for sha in (sha1, sha2):
        aws_world.push_image(world.endpoint, sha)
    with app_for(github, tmp_path) as app:
        comment(app, github, locked, "/lemi lock -e staging", "alice")
        push(app, github, "develop", ZERO_SHA, sha1, sender="bob")
        push(app, github, "develop", sha1, sha2, sender="alice")
        assert service_state(sim) == f"{FAMILY}:2"
        comment(app, github, locked, "/lemi unlock -e staging", "alice")

    held = next(d for d in github.deployments(REPO) if d.sha == sha1)
    assert "success" not in states(held), held.statuses
    assert held.state == "inactive" and "superseded" in held.statuses[-1].description
    # staging still runs alice's newer commit
    assert image_of(world, service_state(sim)) == f"{REGISTRY}/demo-service:{sha2}"
    assert sim.updates == 1


def test_several_held_pushes_release_only_the_newest(
    github: Any, locked: int, world: aws_world.World, sim: ecs_sim.Sim, tmp_path: Path
) -> None:
    sha1 = github.commit(REPO, "develop", SERVICE_FILES, author="bob")
    sha2 = github.commit(REPO, "develop", {"README.md": "demo v2\n"}, author="bob")
    for sha in (sha1, sha2):
        aws_world.push_image(world.endpoint, sha)
    with app_for(github, tmp_path, workers=1) as app:
        comment(app, github, locked, "/lemi lock -e staging", "alice")
        push(app, github, "develop", ZERO_SHA, sha1, sender="bob")
        push(app, github, "develop", sha1, sha2, sender="bob")
        assert [states(d) for d in github.deployments(REPO)] == [["queued"], ["queued"]]
        comment(app, github, locked, "/lemi unlock -e staging", "alice")

    first, second = github.deployments(REPO)
    assert (first.sha, second.sha) == (sha1, sha2)
    assert first.state == "inactive" and "superseded" in first.statuses[-1].description, first.statuses
    assert second.state == "success", second.statuses
    assert sim.updates == 1
    assert image_of(world, service_state(sim)) == f"{REGISTRY}/demo-service:{sha2}"


# ---- 8. prod: protected only gates commands, pushes to main deploy ---------------------------------


def test_push_to_main_deploys_prod(
    github: Any, repos: int, world: aws_world.World, sim: ecs_sim.Sim, tmp_path: Path
) -> None:
    sha = github.commit(
        REPO, "main", {**SERVICE_FILES, "deploy/demo-service/environment/prod.yaml": aws_world.STAGING_YAML}
    )
    aws_world.push_image(world.endpoint, sha)
    with app_for(github, tmp_path) as app:
        push(app, github, "main", ZERO_SHA, sha, sender="octocat")  # octocat has no permission at all
    (deployment,) = github.deployments(REPO)
    assert deployment.environment == "prod"
    assert deployment.production_environment is True
    assert deployment.state == "success", deployment.statuses
    assert deployment.statuses[-1].environment_url == "https://demo-service-internal.prod.lemon"
    (run,) = github.check_runs(REPO, sha=sha)
    assert (run.name, run.conclusion) == ("lemi / deploy (prod)", "success")
    assert "demo-service-prod:1" in run.output["summary"]
    assert service_state(sim) == "demo-service-prod:1"
    assert revisions(world) == [f"{FAMILY}:1"]  # staging's family untouched


# ---- 9. a redelivered push is processed once -------------------------------------------------------


def test_redelivered_push_is_processed_once(
    github: Any, repos: int, world: aws_world.World, sim: ecs_sim.Sim, tmp_path: Path
) -> None:
    sha = github.commit(REPO, "develop", SERVICE_FILES)
    aws_world.push_image(world.endpoint, sha)
    delivery = str(uuid.uuid4())
    with app_for(github, tmp_path) as app:
        payload = push(app, github, "develop", ZERO_SHA, sha, delivery=delivery)
        response = app.deliver("push", payload, delivery=delivery)
        assert response.status_code == 202 and response.json() == {"status": "duplicate"}
        rows = app.drain()
    assert sorted(r["kind"] for r in rows) == ["deploy", "webhook"]
    (deployment,) = github.deployments(REPO)
    assert deployment.state == "success"
    assert len(github.check_runs(REPO, sha=sha)) == 1
    assert sim.updates == 1
    assert revisions(world) == [f"{FAMILY}:1", f"{FAMILY}:2"]


# ---- a deploy retried after a GitHub error does nothing twice ---------------------------------------


def test_retried_deploy_picks_up_where_it_was(
    github: Any, repos: int, world: aws_world.World, sim: ecs_sim.Sim, tmp_path: Path
) -> None:
    sha = github.commit(REPO, "develop", SERVICE_FILES)
    aws_world.push_image(world.endpoint, sha)
    # the first Deployment status ("verifying") is answered 502 (a POST is not retried in place: it
    # may have been applied): the deploy's AWS work does not wait for it, its job ends after
    # UpdateService, and the watcher, finding the deploy unannounced, finds the Deployment and
    # check run the job made (it makes none twice) before it reports the rollout
    github.fail_next("POST", r"/deployments/\d+/statuses$", 502)
    with app_for(github, tmp_path) as app:
        push(app, github, "develop", ZERO_SHA, sha)
        deploy_job = next(j for j in app.jobs() if j["kind"] == "deploy")
    assert deploy_job["attempts"] == 1
    (deployment,) = github.deployments(REPO)
    assert deployment.state == "success", deployment.statuses
    (run,) = github.check_runs(REPO, sha=sha)
    assert run.conclusion == "success"
    assert sim.updates == 1  # the service was not updated again
    assert revisions(world) == [f"{FAMILY}:1", f"{FAMILY}:2"]  # the revision was reused, not registered again
