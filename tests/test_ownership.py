"""A service is operated only from its own repository (bot/ownership.py), on every path.

The owner is the ``repository`` of the service's module block in the infra repository's
``services/<service>.tf``; without one, the naming rule, where the longest repository
name lemi is installed on wins. Tried as a company would: one App installed on the
whole organisation, a second repository (``acme/intruder``) and a ``-prefix`` one
(``acme/demo``) acting on ``demo-service``, which ``acme/demo-service`` owns. Every
attempt is refused with a reply or check run naming the owner, and nothing reaches AWS.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import aiohttp
import aws_world
import pytest
from app_harness import LEMI_YML
from aws_world import SERVICE
from fakes.webhooks import for_issue_comment, for_pull_request, for_push
from slash_world import REPO, SERVICE_FILES, Env

from bot.core.config import parse_config
from bot.core.ownership import Record, decide, longer_names, recorded_owner
from bot.core.spec import parse_service
from bot.core.terraform import render_service_module
from bot.github.client import GitHub
from bot.github.owners import Owners

INFRA = "acme/infra"
TF = "services/demo-service.tf"
INTRUDER = "acme/intruder"
PREFIX = "acme/demo"
CONFIG = parse_config(LEMI_YML)


def module_block(repository: str | None) -> str:
    text = render_service_module(
        parse_service(aws_world.SERVICE_YAML, "s.yaml"), CONFIG, repository=repository or "x/y"
    )
    if repository is None:
        text = "\n".join(line for line in text.splitlines() if not line.strip().startswith("repository")) + "\n"
    return text


# ---- the pure part ----------------------------------------------------------------------------


def test_the_owner_is_read_from_lemis_own_module_block() -> None:
    assert recorded_owner(module_block("acme/demo-service").encode(), SERVICE, TF) == Record(
        TF, True, "acme/demo-service"
    )
    assert recorded_owner(module_block(None).encode(), SERVICE, TF) == Record(TF, True, None)
    # another service's block, or none at all: no owner recorded
    assert (
        recorded_owner(module_block("acme/x").replace('"demo-service"', '"other"').encode(), SERVICE, TF).repository
        is None
    )


@pytest.mark.parametrize(
    "text, problem",
    [
        ('module "a" {\n  name = "demo-service"\n  repository = "${var.repo}"\n}\n', "not a literal"),
        ('module "a" {\n  name = "demo-service"\n  repository = local.repo\n}\n', "not a literal"),
        ('module "a" {\n  name = "demo-service"\n  repository = "not a repo"\n}\n', "not a literal"),
        ('module "a" {\n  name = "demo-service"\n', "not valid HCL"),
        ('module "a" {\n  name = "demo-service"\n}\nmodule "b" {\n  name = "demo-service"\n  repository = "acme/x"\n}\n',
         "2 module blocks"),
    ],
)  # fmt: skip
def test_an_infra_file_lemi_cannot_read_strictly_fails_closed(text: str, problem: str) -> None:
    record = recorded_owner(text.encode(), SERVICE, TF)
    assert problem in record.problem
    verdict = decide(SERVICE, REPO, record, better=None, infra=INFRA)
    assert not verdict.allowed and "cannot be read" in verdict.why and "infra team" in verdict.why


def test_precedence_file_then_naming_rule_then_the_longest_installed_name() -> None:
    recorded = Record(TF, True, "acme/Demo-Service")
    assert decide(
        SERVICE, "acme/demo-service", recorded, better=None, infra=INFRA
    ).allowed  # names are case-insensitive
    refused = decide(SERVICE, INTRUDER, recorded, better=None, infra=INFRA)
    assert not refused.allowed and refused.owner == "acme/Demo-Service"
    assert "`demo-service` is owned by acme/Demo-Service" in refused.why and TF in refused.why
    # a transfer is an edit of the file: the file wins over the naming rule
    assert decide(SERVICE, INTRUDER, Record(TF, True, INTRUDER), better=None, infra=INFRA).allowed
    # no repository recorded (or no file yet): the naming rule
    for record in (Record(TF, True), Record(TF, False)):
        assert decide(SERVICE, "acme/demo-service", record, better=None, infra=INFRA).allowed
        assert not decide(SERVICE, INTRUDER, record, better=None, infra=INFRA).allowed
        assert decide(SERVICE, PREFIX, record, better=None, infra=INFRA).allowed
        prefix = decide(SERVICE, PREFIX, record, better="acme/demo-service", infra=INFRA)
        assert not prefix.allowed and "named after acme/demo-service" in prefix.why
    assert longer_names("api-gateway-v2", "acme/api") == ["acme/api-gateway-v2", "acme/api-gateway"]
    assert longer_names("api", "acme/api") == []


def test_the_infra_file_is_read_conditionally_and_a_change_is_seen_at_once(github: Any) -> None:
    """Two replicas read the owner; unchanged, GitHub answers 304 (no rate limit spent); an edit
    of the file is seen by both on their next read."""
    installation = github.add_installation("acme", repos=())
    github.add_repo(INFRA, files={TF: module_block("acme/demo-service")}, installation=installation)
    github.add_repo("acme/demo-service", files={"README.md": "x\n"}, installation=installation)
    token = github.installation_token(installation)

    async def main() -> list[str | None]:
        async with aiohttp.ClientSession() as session:
            gh = GitHub(session, base_url=github.url, oauth_token=token)

            async def installed(name: str) -> bool:
                return False

            async def infra() -> GitHub:
                return gh

            replicas = [Owners(CONFIG, infra=infra, installed=installed) for _ in range(2)]
            seen = [(await r.record(SERVICE)).repository for r in replicas]
            before = github.not_modified
            seen += [(await r.record(SERVICE)).repository for r in replicas]
            assert github.not_modified == before + 2  # both answered 304
            github.commit(INFRA, "main", {TF: module_block(INTRUDER)})
            seen += [(await r.record(SERVICE)).repository for r in replicas]
            return seen

    assert asyncio.run(main()) == ["acme/demo-service"] * 4 + [INTRUDER] * 2
    conditional = [c for c in github.calls_to("GET", f"/repos/{INFRA}/contents/*")]
    assert len(conditional) == 6


# ---- end to end: a second repository and a -prefix repository ---------------------------------


def provisioned(env: Env, owner: str | None = "acme/demo-service") -> None:
    env.github.commit(INFRA, "main", {TF: module_block(owner)})


def add_repo(env: Env, name: str, files: dict[str, str] | None = None) -> int:
    """``name`` under the same installation, with an open PR adding deploy/demo-service/ (or
    ``files``); every test user may maintain it (an attacker maintains their own repository)."""
    installation = next(iter(env.github.installations))
    env.github.add_repo(name, files={"README.md": "x\n"}, installation=installation)
    for login in ("alice", "mia"):
        env.github.set_permission(name, login, "maintain")
    return env.github.open_pull_request(name, "feature", files=files or SERVICE_FILES, user="alice")


EXTRA = "demo-service-extra"
EXTRA_FILES = {f"deploy/{EXTRA}/service.yaml": aws_world.SERVICE_YAML.replace("name: demo-service", f"name: {EXTRA}")}


def comment(env: Env, repository: str, number: int, body: str, user: str = "mia") -> str:
    cid = env.github.add_comment(repository, number, body, user=user)
    response = env.app.deliver("issue_comment", for_issue_comment(env.github, repository, number, cid))
    assert response.status_code == 202, response.text
    env.app.drain()
    replies = [c.body for c in env.github.comments(repository, number) if c.user == "lemi[bot]"]
    assert replies, "no reply"
    return replies[-1]


COMMANDS = [
    "/lemi status -s demo-service",
    "/lemi tasks -s demo-service",
    "/lemi restart -s demo-service -e prod",
    "/lemi rollback -s demo-service -e prod",
    "/lemi stop-task 0123456789abcdef0123456789abcdef -s demo-service",
    "/lemi deploy v1 -s demo-service -e prod",
    "/lemi verify -s demo-service",
    "/lemi diff -s demo-service",
    "/lemi lock -s demo-service",
]


@pytest.mark.parametrize("owner", ["acme/demo-service", None])
def test_another_repository_cannot_operate_a_service_it_does_not_own(
    start: Callable[..., Env], owner: str | None
) -> None:
    env = start()
    provisioned(env, owner)  # recorded, or only the naming rule
    number = add_repo(env, INTRUDER)
    # the intruder's own (release) branch has the service too, for the protected environment
    env.github.commit(INTRUDER, "main", SERVICE_FILES)
    state = env.aws_state()
    del env.aws_calls[:]
    for body in COMMANDS:
        reply = comment(env, INTRUDER, number, body)
        assert "❌ Not done:" in reply, (body, reply)
        if owner:
            assert "`demo-service` is owned by acme/demo-service" in reply, reply
        else:
            assert "`demo-service` is not named after acme/intruder" in reply, reply
    assert env.aws_calls == []  # nothing asked of AWS, let alone changed
    assert env.aws_state() == state
    assert env.command_jobs() == [] and env.locks() == []
    assert env.github.deployments(INTRUDER) == []


def test_a_prefix_repository_cannot_claim_a_service_named_after_a_longer_one(start: Callable[..., Env]) -> None:
    """acme/demo fits `demo-service` by the `<repo>-<suffix>` rule, but acme/demo-service exists
    with lemi installed, so it owns the name even before its infra file exists."""
    env = start()
    number = add_repo(env, PREFIX)
    reply = comment(env, PREFIX, number, "/lemi restart -s demo-service")
    assert "❌ Not done: `demo-service` is named after acme/demo-service" in reply
    provisioned(env, "acme/demo-service")
    reply = comment(env, PREFIX, number, "/lemi status -s demo-service")
    assert "`demo-service` is owned by acme/demo-service" in reply
    assert env.aws_calls == []


def test_a_push_to_another_repositorys_environment_branch_deploys_nothing(start: Callable[..., Env]) -> None:
    env = start()
    provisioned(env)
    add_repo(env, INTRUDER)
    aws_world.push_image(env.world.endpoint, "v2")
    before = env.github.branch_sha(INTRUDER, "main")
    sha = env.github.commit(INTRUDER, "develop", SERVICE_FILES)
    state = env.aws_state()
    del env.aws_calls[:]
    env.app.deliver("push", for_push(env.github, INTRUDER, "develop", None, sha))
    env.app.drain()
    (run,) = env.github.check_runs(INTRUDER, sha)
    assert run.name == "lemi / deploy (staging) demo-service" and run.conclusion == "failure"
    assert run.output["title"] == "not deployed: demo-service belongs to acme/demo-service"
    assert "`demo-service` is owned by acme/demo-service" in run.output["summary"]
    assert env.github.deployments(INTRUDER) == []
    assert env.aws_calls == [] and env.aws_state() == state
    assert before is not None


def test_the_owner_still_deploys_and_a_transfer_is_an_edit_of_the_infra_file(start: Callable[..., Env]) -> None:
    env = start()
    provisioned(env)
    number = add_repo(env, INTRUDER)
    assert "lemi:outcome ok" in comment(env, REPO, env.number, "/lemi status", user="alice")
    assert "is owned by acme/demo-service" in comment(env, INTRUDER, number, "/lemi status -s demo-service")
    provisioned(env, INTRUDER)  # the infra team moves the service: seen at once
    assert "lemi:outcome ok" in comment(env, INTRUDER, number, "/lemi status -s demo-service")
    assert "is owned by acme/intruder" in comment(env, REPO, env.number, "/lemi status", user="alice")
    # its files need not be named after acme/intruder any more: the infra file decides
    assert "Everything the deploy needs is in place" in comment(env, INTRUDER, number, "/lemi verify -s demo-service")
    env.app.deliver("pull_request", for_pull_request(env.github, INTRUDER, number, "opened"))
    env.app.drain()
    runs = {r.name: r.conclusion for r in env.github.check_runs(INTRUDER)}
    assert runs == {"lemi / spec": "success", "lemi / provision": "success"}


def test_provisioning_a_name_another_repositorys_open_infra_pr_claims_is_refused(start: Callable[..., Env]) -> None:
    """acme/demo-service opens a PR for `demo-service-extra` (it fits `<repo>-<suffix>`, and no
    better-named repository exists yet): its infra PR is pending. Then acme/demo-service-extra is
    created and opens a PR for the same name: while the first infra PR is open it is refused,
    with a comment naming the first, and the pending infra PR is not rewritten."""
    env = start()
    first = env.github.open_pull_request(REPO, "extra", files=EXTRA_FILES, user="alice")
    env.app.deliver("pull_request", for_pull_request(env.github, REPO, first, "opened"))
    env.app.drain()
    (infra_pr,) = env.github.pulls(INFRA)
    body, branch_sha = infra_pr.body, env.github.branch_sha(INFRA, f"lemi/{EXTRA}")
    assert f"{REPO}#{first}" in body
    later = f"acme/{EXTRA}"
    second = add_repo(env, later, EXTRA_FILES)
    env.app.deliver("pull_request", for_pull_request(env.github, later, second, "opened"))
    env.app.drain()
    (refusal,) = [c.body for c in env.github.comments(later, second) if c.user == "lemi[bot]"]
    assert f"{REPO}#{first} is provisioning `{EXTRA}` already" in refusal
    (run,) = env.github.check_runs(later, name="lemi / provision")
    assert run.conclusion == "failure" and f"{REPO}#{first}" in run.output["summary"]
    (still,) = env.github.pulls(INFRA)
    assert still.body == body and env.github.branch_sha(INFRA, f"lemi/{EXTRA}") == branch_sha


def test_provisioning_a_service_another_repository_owns_writes_nothing(start: Callable[..., Env]) -> None:
    env = start()
    provisioned(env)
    number = add_repo(env, PREFIX)
    writes = len(env.github.writes())
    env.app.deliver("pull_request", for_pull_request(env.github, PREFIX, number, "opened"))
    env.app.drain()
    assert [c for c in env.github.writes()[writes:] if "/acme/infra/" in c.path] == []
    (run,) = env.github.check_runs(PREFIX, name="lemi / provision")
    assert run.conclusion == "failure" and "is owned by acme/demo-service" in run.output["summary"]


def test_threads_that_parse_at_once_build_the_hcl_parser_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """python-hcl2 caches its parser with an lru_cache, which lets every thread that asks before
    the first build ends build its own (a second of CPU each without its cache file)."""
    import threading

    import hcl2.parser

    built = []
    open_lark = hcl2.parser.Lark.open

    def counted(*args: Any, **kwargs: Any) -> Any:
        built.append(1)
        return open_lark(*args, **kwargs)

    monkeypatch.setattr(hcl2.parser.Lark, "open", counted)
    hcl2.parser.parser.cache_clear()
    text = module_block("acme/demo-service").encode()
    start = threading.Barrier(6)
    results: list[Record] = []

    def decide_one() -> None:
        start.wait()
        results.append(recorded_owner(text, SERVICE, TF))

    threads = [threading.Thread(target=decide_one) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert built == [1] and len(results) == 6 and {r.repository for r in results} == {"acme/demo-service"}
