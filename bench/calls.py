"""How many GitHub and AWS API calls each flow makes (a budget to keep small).

Runs the real App (queue, workers, handlers) against the test suite's GitHub
fake and moto on 127.0.0.1, drives each flow once, and prints the calls it
made, by endpoint. Rerun with:

    make bench            # or: .venv/bin/python bench/calls.py
"""

from __future__ import annotations

import collections
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import os  # noqa: E402

import aws_world  # noqa: E402
import ecs_sim  # noqa: E402
from app_harness import LEMI_YML, SERVICE_YAML, running_app, setup_repos  # noqa: E402
from fakes.github import FakeGitHub  # noqa: E402
from fakes.webhooks import for_issue_comment, for_pull_request, for_push  # noqa: E402
from moto_server import MotoServer  # noqa: E402

from bot.aws import clients as aws_clients  # noqa: E402

AWS_CALLS: list[tuple[str, str]] = []


class _Patch:
    """Just enough of pytest's monkeypatch for ecs_sim.install."""

    def __init__(self) -> None:
        self.undo: list[tuple[Any, str, Any]] = []

    def setattr(self, target: Any, name: str, value: Any) -> None:
        self.undo.append((target, name, getattr(target, name)))
        setattr(target, name, value)


def _count_aws() -> None:
    original = aws_clients.AwsClients.__init__

    def init(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        self.on_call(lambda service, op: AWS_CALLS.append((service, op)))

    aws_clients.AwsClients.__init__ = init  # type: ignore[method-assign]


def report(title: str, github: FakeGitHub, start: int) -> None:
    calls = github.calls[start:]
    aws = AWS_CALLS[:]
    AWS_CALLS.clear()
    gh_count = collections.Counter(f"{c.method} {c.template or c.path}" for c in calls)
    aws_count = collections.Counter(f"{s}:{op}" for s, op in aws)
    writes = sum(n for k, n in gh_count.items() if not k.startswith("GET"))
    print(f"\n== {title}: {len(calls)} GitHub calls ({writes} writes), {len(aws)} AWS calls")
    for key, n in sorted(gh_count.items()):
        print(f"   {n:3d}  {key}")
    for key, n in sorted(aws_count.items()):
        print(f"   {n:3d}  {key}")


def main() -> None:
    _count_aws()
    moto = MotoServer()
    endpoint = moto.start()
    for name in [n for n in os.environ if n.startswith("AWS_")]:
        del os.environ[name]
    os.environ.update(
        AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1",
        AWS_ENDPOINT_URL=endpoint, AWS_EC2_METADATA_DISABLED="true", NO_PROXY="127.0.0.1,localhost",
    )  # fmt: skip
    github = FakeGitHub()
    github.start()
    patch = _Patch()
    try:
        world = aws_world.build(endpoint)
        sim = ecs_sim.install(patch)  # type: ignore[arg-type]
        sim.complete(after=2)
        setup_repos(github)
        lemi_yml = LEMI_YML.replace(
            "cluster: lemon-ecs-cluster", "cluster: lemon-ecs-cluster\n    image_wait_seconds: 0"
        )
        with (
            tempfile.TemporaryDirectory() as tmp,
            running_app(github, Path(tmp), lemi_yml=lemi_yml, deploy_poll_seconds=0.01) as app,
        ):
            # provisioning: a PR adds the service
            number = github.open_pull_request(
                "acme/demo-service", "provision", files={"deploy/demo-service/service.yaml": SERVICE_YAML}
            )
            start = len(github.calls)
            app.deliver("pull_request", for_pull_request(github, "acme/demo-service", number, "opened"))
            app.drain()
            report("pull_request.opened -> infra PR", github, start)
            # push deploy to staging
            sha = github.commit("acme/demo-service", "develop", {
                "deploy/demo-service/service.yaml": aws_world.SERVICE_YAML,
                "deploy/demo-service/environment/staging.yaml": aws_world.STAGING_YAML,
            })  # fmt: skip
            aws_world.push_image(endpoint, sha)
            start = len(github.calls)
            app.deliver("push", for_push(github, "acme/demo-service", "develop", "0" * 40, sha))
            app.drain()
            report("push develop -> deploy staging", github, start)
            # slash commands
            github.set_permission("acme/demo-service", "octocat", "write")
            for body in ("/lemi status", "/lemi restart"):
                comment = github.add_comment("acme/demo-service", number, body)
                start = len(github.calls)
                app.deliver("issue_comment", for_issue_comment(github, "acme/demo-service", number, comment))
                app.drain()
                report(body, github, start)
        _ = world
    finally:
        for target, name, value in reversed(patch.undo):
            setattr(target, name, value)
        github.stop()
        moto.stop()


if __name__ == "__main__":
    main()
