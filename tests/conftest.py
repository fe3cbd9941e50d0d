"""Fixtures shared by the whole suite: fakes of the outside world on 127.0.0.1.

No test may reach a real service. AWS is moto's server, in this process:

* ``moto_endpoint`` (session): its URL, http://127.0.0.1:<free port>;
* ``aws_env``: the process environment pointed at it with fake credentials
  (use it in every test that builds an AWS client, directly or through lemi);
* ``moto_reset``: ``aws_env`` on an empty moto (every resource forgotten first).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from moto_server import MotoServer, reset

AWS_REGION = "us-east-1"


@pytest.fixture(autouse=True)
def no_pulled_config(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """The developer's own lemi.yml (`lemi config pull`) and gh login stay out of every test."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path_factory.getbasetemp() / "xdg-config-home"))
    monkeypatch.delenv("GH_CONFIG_DIR", raising=False)


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    server = MotoServer()
    url = server.start()
    try:
        yield url
    finally:
        server.stop()


@pytest.fixture
def aws_env(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> str:
    """Fake credentials and every AWS endpoint on moto; returns moto's URL."""
    for name in list(os.environ):
        # a per-service endpoint (AWS_ENDPOINT_URL_ECS...) would beat AWS_ENDPOINT_URL,
        # and AWS_IGNORE_CONFIGURED_ENDPOINT_URLS=true would send clients to real AWS
        if name.startswith("AWS_ENDPOINT_URL_") or name in (
            "AWS_PROFILE",
            "AWS_DEFAULT_PROFILE",
            "AWS_SESSION_TOKEN",
            "AWS_SECURITY_TOKEN",
            "AWS_ROLE_ARN",
            "AWS_WEB_IDENTITY_TOKEN_FILE",
            "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
            "AWS_CONTAINER_CREDENTIALS_FULL_URI",
            "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS",
        ):
            monkeypatch.delenv(name)
    # no ~/.aws/config or credentials file (profiles, credential_process, endpoints) may apply
    absent = tmp_path_factory.getbasetemp() / "no-aws-config"
    monkeypatch.setenv("AWS_CONFIG_FILE", str(absent))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(absent))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", AWS_REGION)
    monkeypatch.setenv("AWS_REGION", AWS_REGION)
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    # loopback never goes through a proxy
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.setenv(name, ",".join(filter(None, ["127.0.0.1,localhost", os.environ.get(name)])))
    return moto_endpoint


@pytest.fixture
def moto_reset(aws_env: str) -> str:
    """``aws_env`` on a moto with no resources; returns moto's URL."""
    reset(aws_env)
    return aws_env


# --- GitHub: one shared fake (tests/fakes/), for the whole suite -------------------------------
#
# ``github_server`` (session): a FakeGitHub serving http://127.0.0.1:<free port> from its own
# thread (reachable from sync and async tests, TestClient and subprocesses).
# ``github``: that server with fresh state for this test (reset, not restarted). At teardown
# the test FAILS when any request broke GitHub's OpenAPI description (undocumented path,
# method or query parameter, invalid or missing body, endpoint not implemented by the fake,
# an answer of the fake that breaks the documented schema). A test that provokes violations
# on purpose calls ``github.expect_violations()`` (then it fails if none was recorded).
# ``github_env``: ``github`` plus the App's environment (GITHUB_API_URL, GITHUB_APP_ID,
# GITHUB_APP_PRIVATE_KEY, GITHUB_WEBHOOK_SECRET=WEBHOOK_SECRET); returns the fake.
# Full API: tests/fakes/__init__.py.

from typing import TYPE_CHECKING, Any  # noqa: E402

if TYPE_CHECKING:
    import aws_world
    import ecs_sim
    import ecs_tasks
    from fakes.github import FakeGitHub

WEBHOOK_SECRET = "lemi-test-webhook-secret"


@pytest.fixture(scope="session")
def github_server() -> Iterator[FakeGitHub]:
    from fakes.github import FakeGitHub

    fake = FakeGitHub()
    fake.start()
    try:
        yield fake
    finally:
        fake.stop()


@pytest.fixture
def github(github_server: FakeGitHub) -> Iterator[FakeGitHub]:
    from fakes.github import teardown_failure

    github_server.reset()
    yield github_server
    problem = teardown_failure(github_server)
    github_server.reset()
    if problem:
        pytest.fail(problem, pytrace=False)


@pytest.fixture
def github_env(github: FakeGitHub, monkeypatch: pytest.MonkeyPatch) -> FakeGitHub:
    monkeypatch.setenv("GITHUB_API_URL", github.url)
    monkeypatch.setenv("GITHUB_APP_ID", str(github.app_id))
    monkeypatch.setenv("GITHUB_APP_PRIVATE_KEY", github.private_key_pem)
    monkeypatch.delenv("GITHUB_APP_PRIVATE_KEY_PATH", raising=False)
    monkeypatch.setenv("GITHUB_WEBHOOK_SECRET", WEBHOOK_SECRET)
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.setenv(name, ",".join(filter(None, ["127.0.0.1,localhost", os.environ.get(name)])))
    return github


# ---- a provisioned service in moto (tests/aws_world.py), driven by ECS-like rollouts ----------
# ``world``: the service, its cluster, roles, secrets, parameters and image repository, built in
# moto (a file may override it, e.g. to install more of ECS's behaviour first); ``sim``: rollouts
# that progress like ECS's (tests/ecs_sim.py); ``repos``: the service and infra repositories in
# the GitHub fake; ``shared_api_models``: opt in with
# ``pytestmark = pytest.mark.usefixtures("shared_api_models")`` where many AwsClients are made.


@pytest.fixture
def world(moto_reset: str) -> aws_world.World:
    import aws_world

    return aws_world.build(moto_reset)


@pytest.fixture
def sim(world: aws_world.World, monkeypatch: pytest.MonkeyPatch) -> ecs_sim.Sim:
    import ecs_sim

    return ecs_sim.install(monkeypatch)


@pytest.fixture
def tasks(world: aws_world.World, monkeypatch: pytest.MonkeyPatch) -> ecs_tasks.TaskSim:
    """One-off tasks that follow the test's scripts (tests/ecs_tasks.py), not moto's exit code 0."""
    import ecs_tasks

    return ecs_tasks.install(monkeypatch)


@pytest.fixture
def repos(github: FakeGitHub) -> int:
    from app_harness import setup_repos

    return setup_repos(github)


@pytest.fixture
def shared_api_models(monkeypatch: pytest.MonkeyPatch) -> None:
    """Speed only: every AwsClients session shares one loader of botocore's API models
    (read-only JSON); each new session would otherwise parse them again (~0.1 s a client)."""
    from aiobotocore.session import get_session

    import bot.aws.clients as clients_module

    global _MODELS
    if _MODELS is None:
        _MODELS = get_session().get_component("data_loader")

    def session() -> Any:
        fresh = get_session()
        fresh.register_component("data_loader", _MODELS)
        return fresh

    monkeypatch.setattr(clients_module, "get_session", session)


_MODELS: Any = None


# the slash-command world (tests/slash_world.py): ``start`` and ``aws_calls``
from slash_world import aws_calls, start  # noqa: E402, F401
