"""The slash-command world shared by several test files: demo-service provisioned in moto,
acme/demo-service with an open PR that adds its deploy files, collaborators of every role, and
lemi's real app running against the GitHub fake (fixtures ``start`` and ``aws_calls``, registered
in conftest.py)."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aws_world
import ecs_sim
import pytest
from app_harness import LEMI_YML, running_app, setup_repos
from aws_world import CLUSTER, SERVICE
from fakes.webhooks import for_issue_comment
from moto.moto_server.werkzeug_app import DomainDispatcherApplication

REPO = "acme/demo-service"
BOT = "lemi[bot]"
KEY = "acme/demo-service:demo-service:staging"
REV1 = "demo-service-staging:1"
ROLES = {"alice": "write", "bob": "write", "mia": "maintain", "ada": "admin", "rita": "read", "tom": "triage"}
_CLUSTER_LINE = "    cluster: lemon-ecs-cluster\n"

# the harness's lemi.yml (staging unprotected, then prod protected), images never awaited
LEMI = LEMI_YML.replace(_CLUSTER_LINE, _CLUSTER_LINE + "    image_wait_seconds: 0\n")
assert LEMI.count("image_wait_seconds: 0") == 2 and LEMI.index("  staging:") < LEMI.index("  prod:")
_HEAD, _ENVS = LEMI.split("environments:\n")
_STAGING, _PROD = _ENVS.split("  prod:\n")
LEMI_PROD_FIRST = f"{_HEAD}environments:\n  prod:\n{_PROD}{_STAGING}"
LEMI_ONLY_PROTECTED = LEMI.replace(
    _CLUSTER_LINE + "    image_wait_seconds: 0\n  prod:",
    _CLUSTER_LINE + "    image_wait_seconds: 0\n    protected: true\n  prod:",
)
assert LEMI_PROD_FIRST.index("  prod:") < LEMI_PROD_FIRST.index("  staging:")
assert LEMI_ONLY_PROTECTED.count("protected: true") == 2

SERVICE_FILES = {
    "deploy/demo-service/service.yaml": aws_world.SERVICE_YAML,
    "deploy/demo-service/environment/staging.yaml": aws_world.STAGING_YAML,
}


# ---- the world ------------------------------------------------------------------------------


@dataclass
class Env:
    github: Any
    app: Any
    world: aws_world.World
    sim: ecs_sim.Sim
    number: int  # the pull request the comments go on
    aws_calls: list[str]

    def comment(self, body: str, user: str = "alice", *, number: int | None = None, user_type: str = "User",
                action: str = "created", delivery: str | None = None, drain: bool = True) -> int:  # fmt: skip
        """``user`` writes ``body``; GitHub delivers the issue_comment webhook. Returns the comment id."""
        n = self.number if number is None else number
        cid = self.github.add_comment(REPO, n, body, user=user, user_type=user_type)
        self.deliver_comment(cid, number=n, action=action, delivery=delivery, drain=drain)
        return cid

    def deliver_comment(self, cid: int, *, number: int | None = None, action: str = "created",
                        delivery: str | None = None, drain: bool = True) -> dict[str, Any]:  # fmt: skip
        n = self.number if number is None else number
        payload = for_issue_comment(self.github, REPO, n, cid, action=action,
                                    previous_body="/lemi help" if action == "edited" else None)  # fmt: skip
        response = self.app.deliver("issue_comment", payload, delivery=delivery)
        assert 200 <= response.status_code < 300, response.text
        if drain:
            self.app.drain()
        return dict(response.json())

    def replies(self, number: int | None = None) -> list[str]:
        n = self.number if number is None else number
        return [c.body for c in self.github.comments(REPO, n) if c.user == BOT]

    def reactions(self, cid: int) -> list[str]:
        found = sorted(self.github.comments_by_id[cid].reactions, key=lambda r: r.id)
        return [r.content for r in found if r.user == BOT]

    def aws_writes(self, since: int = 0) -> list[str]:
        ops = [c.rsplit(".", 1)[-1] for c in self.aws_calls[since:]]
        # a JSON protocol names its operation (X-Amz-Target); a REST one (EventBridge Scheduler) reads with GET
        return [op for op in ops if not op.startswith(("Describe", "List", "Get", "BatchGet", "GET "))]

    def github_writes(self, since: int = 0) -> list[str]:
        """Writes to GitHub since call ``since`` (minting an installation token is not a change)."""
        return [f"{c.method} {c.path}" for c in self.github.calls[since:]
                if c.method not in ("GET", "HEAD") and not c.path.endswith("/access_tokens")]  # fmt: skip

    def locks(self) -> list[tuple[str, str, str]]:
        db = sqlite3.connect(self.app.queue_path)
        try:
            return [tuple(r) for r in db.execute("SELECT repository, environment, holder FROM locks")]
        except sqlite3.OperationalError:  # no lock was ever taken
            return []
        finally:
            db.close()

    def command_jobs(self) -> list[dict[str, Any]]:
        return [j for j in self.app.jobs() if j["kind"] == "command"]

    def service(self) -> Any:
        return self.sim.service(CLUSTER, SERVICE)

    def start_tasks(self, count: int = 2) -> list[str]:
        svc = self.service()
        return [t.task_arn.rsplit("/", 1)[-1] for t in self.sim.add_tasks(svc, svc.deployments[0], count)]

    def image_of_service(self) -> str:
        td = self.world.ecs().describe_task_definition(taskDefinition=self.service().task_definition)["taskDefinition"]
        return str(next(c["image"] for c in td["containerDefinitions"] if c["name"] == SERVICE))

    def revisions(self) -> list[str]:
        return sorted(a.rsplit("/", 1)[-1] for a in self.world.ecs().list_task_definitions()["taskDefinitionArns"])

    def aws_state(self) -> dict[str, Any]:
        """ECS as lemi could have changed it (read from moto's backend: no simulated rollout step)."""
        svc = self.service()
        tasks = self.sim.backend.tasks.get(CLUSTER, {})
        return {
            "task_definition": svc.task_definition,
            "desired": svc.desired_count,
            "deployments": [(d["id"], d.get("status"), d.get("rolloutState")) for d in svc.deployments],
            "tasks": sorted((arn, t.desired_status, getattr(t, "stopped_reason", "")) for arn, t in tasks.items()),
            "revisions": self.revisions(),
            "updates": self.sim.updates,
        }


@pytest.fixture
def aws_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every AWS operation lemi sends to moto, in order (X-Amz-Target)."""
    calls: list[str] = []
    original = DomainDispatcherApplication.__call__

    def spy(self: Any, environ: dict[str, Any], start_response: Any) -> Any:
        if "lemi" in environ.get("HTTP_USER_AGENT", ""):
            calls.append(environ.get("HTTP_X_AMZ_TARGET", "") or f"{environ['REQUEST_METHOD']} {environ['PATH_INFO']}")
        return original(self, environ, start_response)

    monkeypatch.setattr(DomainDispatcherApplication, "__call__", spy)
    return calls


@pytest.fixture
def start(
    github: Any, moto_reset: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, aws_calls: list[str]
) -> Iterator[Callable[..., Env]]:
    """``start(lemi_yml=LEMI)``: demo-service provisioned in moto, acme/demo-service with an open
    PR that adds its deploy files, collaborators of every role, and lemi's app running."""
    with ExitStack() as stack:

        def make(lemi_yml: str = LEMI) -> Env:
            world = aws_world.build(moto_reset)
            sim = ecs_sim.install(monkeypatch)
            setup_repos(github)
            for login, role in ROLES.items():
                github.set_permission(REPO, login, role)
            number = github.open_pull_request(REPO, "feature", files=SERVICE_FILES, user="alice")
            app = stack.enter_context(running_app(github, tmp_path, lemi_yml=lemi_yml, deploy_poll_seconds=0.01))
            return Env(github, app, world, sim, number, aws_calls)

        yield make


def reply_head(body: str, user: str) -> str:
    return f"**`{body}`** — @{user}"
