"""What users send cannot reach further than it should.

* a protected environment gets reviewed configuration only: `/lemi deploy <tag> -e prod`
  (and verify, diff) read the environment branch's service files, never the pull request's;
  an unprotected one reads the pull request's head, and the reply names the commit;
* the service-PR marker puts jobs in another pull request's queue key only on infra PRs
  lemi opened;
* text from users echoed in lemi's comments and check runs cannot mention or link;
* lemi finds its own comments by its own login, not by a marker anyone can copy;
* a pull request's spec checks cover at most 20 changed services.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import aws_world
import pytest
from aws_world import SERVICE
from fakes.webhooks import for_pull_request
from slash_world import REPO, SERVICE_FILES, Env

import handlers
from bot.core.findings import Finding
from bot.core.markdown import ZWSP, code, fence, inert
from bot.core.problems import Problem
from bot.core.templating import render
from bot.flows.answers import CommandReply, Verified

PROD_YAML = """\
variables:
  LOG_LEVEL: warn
secrets:
  DB_PASSWORD: demo-service/db-password
"""
PR_PROD_YAML = """\
variables:
  LOG_LEVEL: debug
  EXTRA: from-the-pull-request
secrets:
  DB_PASSWORD: demo-service/db-password
"""


def _registered_env(env: Env, family: str) -> dict[str, str]:
    ecs = env.world.ecs()
    arns = ecs.list_task_definitions(familyPrefix=family)["taskDefinitionArns"]
    td = ecs.describe_task_definition(taskDefinition=arns[-1])["taskDefinition"]
    container = next(c for c in td["containerDefinitions"] if c["name"] == SERVICE)
    return {e["name"]: e["value"] for e in container.get("environment", [])}


def test_deploy_to_a_protected_environment_uses_the_environment_branchs_files(start: Callable[..., Env]) -> None:
    env = start()
    main = env.github.commit(REPO, "main", {**SERVICE_FILES, "deploy/demo-service/environment/prod.yaml": PROD_YAML})
    number = env.github.open_pull_request(
        REPO,
        "change-prod",
        files={**SERVICE_FILES, "deploy/demo-service/environment/prod.yaml": PR_PROD_YAML},
        user="alice",
    )
    head = env.github.pull(REPO, number).head_sha
    aws_world.push_image(env.world.endpoint, "v2")
    cid = env.comment("/lemi deploy v2 -e prod", "mia", number=number)
    assert env.reactions(cid) == ["eyes", "rocket"], env.replies(number)
    reply = env.replies(number)[-1]
    assert f"service files of `main` at `{main[:12]}`" in reply
    variables = _registered_env(env, "demo-service-prod")
    assert variables["LOG_LEVEL"] == "warn" and "EXTRA" not in variables  # nothing unmerged reached prod
    (deployment,) = env.github.deployments(REPO)
    assert deployment.environment == "prod" and deployment.sha == main != head
    # verify and diff read the same reviewed files
    diff = env.replies(number)[-1] if env.comment("/lemi diff -e prod", "mia", number=number) else ""
    assert f"service files of `main` at `{main[:12]}`" in diff and "matches `main`" in diff


def test_deploy_to_an_unprotected_environment_uses_the_pull_requests_head_and_names_it(
    start: Callable[..., Env],
) -> None:
    env = start()
    aws_world.push_image(env.world.endpoint, "v2")
    head = env.github.pull(REPO, env.number).head_sha
    env.comment("/lemi deploy v2", "alice")
    reply = env.replies()[-1]
    assert f"service files of this pull request at `{head[:12]}`" in reply
    (deployment,) = env.github.deployments(REPO)
    assert deployment.sha == head


def test_a_protected_environment_whose_branch_is_missing_is_refused(start: Callable[..., Env]) -> None:
    env = start(aws_world.LEMI_YML.replace("branch: main", "branch: release"))
    env.comment("/lemi verify -e prod", "mia")
    assert "`prod` deploys from the branch `release`, which acme/demo-service does not have" in env.replies()[-1]


# ---- the service-PR marker --------------------------------------------------------------------


def _ctx(login: str | None) -> Any:
    return SimpleNamespace(config=SimpleNamespace(infra=SimpleNamespace(repository="acme/infra")),
                           auth=SimpleNamespace(known_bot_login=login))  # fmt: skip


@pytest.mark.parametrize(
    "repository, author, login, key",
    [
        ("acme/infra", "lemi[bot]", "lemi[bot]", "victim/repo#1"),  # lemi's infra PR: in line with its service PR
        ("acme/infra", "mallory", "lemi[bot]", "acme/infra#7"),  # a person's PR carrying the marker
        ("acme/infra", "other[bot]", "lemi[bot]", "acme/infra#7"),  # another App's
        ("acme/service", "lemi[bot]", "lemi[bot]", "acme/service#7"),  # not the infra repository
        ("acme/infra", "lemi[bot]", None, "acme/infra#7"),  # lemi does not know its login yet
    ],
)  # fmt: skip
def test_the_service_pr_marker_is_honoured_only_on_infra_prs_lemi_opened(
    repository: str, author: str, login: str | None, key: str
) -> None:
    data = {
        "action": "closed",
        "repository": {"full_name": repository},
        "pull_request": {"number": 7, "body": "<!-- lemi:service-pr victim/repo#1 -->", "user": {"login": author}},
    }
    assert handlers.job_key("pull_request", data, _ctx(login)) == key


def test_a_pull_request_body_with_the_marker_does_not_jump_into_another_prs_queue(start: Callable[..., Env]) -> None:
    env = start()
    number = env.github.open_pull_request(
        REPO, "sneaky", files=SERVICE_FILES, user="alice", body=f"<!-- lemi:service-pr {REPO}#{env.number} -->"
    )
    env.app.deliver("pull_request", for_pull_request(env.github, REPO, number, "opened"))
    keys = [j["key"] for j in env.app.drain()]
    assert keys == [f"{REPO}#{number}"]


# ---- user text in lemi's Markdown ---------------------------------------------------------------

HOSTILE = (
    "@acme/admins see #12 and acme/x#3 at https://evil.example/x www.evil.example [click](https://e.x) <img src=x> GH-1"
)
_LIVE = [r"(?<!\w)@[A-Za-z0-9]", r"#\d", r"https?://", r"www\.", r"(?<!\\)\]\(", r"(?<!\\)<img", r"GH-\d"]


def _live(text: str) -> list[str]:
    """The patterns GitHub would turn into a mention, a reference or a link, outside code spans."""
    import re

    prose = re.sub(r"(`+).*?\1", "", text)
    return [p for p in _LIVE if re.search(p, prose)]


def test_inert_text_cannot_mention_reference_or_link() -> None:
    assert _live(HOSTILE) == _LIVE
    assert _live(inert(HOSTILE)) == []
    assert inert(HOSTILE).replace(ZWSP, "").replace("\\", "") == HOSTILE  # still reads the same
    assert inert("a\n# heading") == "a # heading"
    assert code("a`b") == "``a`b``" and code("`x") == "`` `x ``"
    assert fence(["```", "x"]) == "````"


def test_problems_and_findings_quote_user_values_inertly() -> None:
    problems = [
        Problem("deploy/@team/service.yaml", f"'{HOSTILE}' is not a valid owner", 2, 8, "owner", f"not {HOSTILE}")
    ]
    summary = render("checks/spec.md.j2", services=["@team"], problems=problems)
    assert _live(summary) == [], summary
    findings = [Finding(check="secret", subject=f"DB ({HOSTILE})", message=HOSTILE, hint=HOSTILE)]
    inv = SimpleNamespace(text="/lemi verify", user="alice")  # the template reads only these of an Invocation
    reply = render("comments/command.md.j2", reply=CommandReply(inv, Verified(findings), "/lemi verify"))  # type: ignore[arg-type]
    body = reply.split("\n", 1)[1]  # the heading mentions the commenter on purpose
    assert "DB (" in body and "❌" in body  # the finding is shown, as a failure
    assert _live(body) == [], body


def test_a_spec_check_quotes_a_hostile_owner_without_mentioning_anyone(start: Callable[..., Env]) -> None:
    env = start()
    bad = aws_world.SERVICE_YAML.replace("owner: infra", 'owner: "@acme/admins https://evil.example"')
    number = env.github.open_pull_request(REPO, "bad", files={"deploy/demo-service/service.yaml": bad}, user="alice")
    env.app.deliver("pull_request", for_pull_request(env.github, REPO, number, "opened"))
    env.app.drain()
    (run,) = env.github.check_runs(REPO, name="lemi / spec", sha=env.github.pull(REPO, number).head_sha)
    assert run.conclusion == "failure" and "is not a valid owner" in run.output["summary"]
    assert _live(run.output["summary"]) == []


# ---- lemi's own comments, by its own login --------------------------------------------------------


def test_a_copied_reply_marker_by_another_bot_does_not_stop_a_command(start: Callable[..., Env]) -> None:
    """earlier_reply looks for lemi's answer to a delivery; another bot copying that marker (or
    a person) must not make lemi believe it answered already."""
    env = start()
    delivery = "d3cc7c1d-205a-4ee5-bccd-31a1f5931dbc"
    env.github.add_comment(REPO, env.number, f"<!-- lemi:reply {delivery} --><!-- lemi:outcome ok -->",
                           user="evil[bot]", user_type="Bot")  # fmt: skip
    cid = env.comment("/lemi status", "alice", delivery=delivery)
    assert env.reactions(cid) == ["eyes", "rocket"]
    assert any("ACTIVE" in r for r in env.replies())


def test_a_link_comment_of_another_bot_is_not_taken_for_lemis(start: Callable[..., Env]) -> None:
    env = start()
    other = env.github.add_comment(
        REPO, env.number, "<!-- lemi:provision-link -->\nnot lemi", user="evil[bot]", user_type="Bot"
    )
    env.app.deliver("pull_request", for_pull_request(env.github, REPO, env.number, "opened"))
    env.app.drain()
    assert env.github.comments_by_id[other].body == "<!-- lemi:provision-link -->\nnot lemi"
    assert any("lemi:provision-link" in r for r in env.replies())


# ---- at most 20 services a pull request ------------------------------------------------------------


def test_a_pull_request_changing_more_than_20_services_gets_one_failing_check(start: Callable[..., Env]) -> None:
    env = start()
    files = {}
    for i in range(21):
        name = f"demo-service-s{i}"
        files[f"deploy/{name}/service.yaml"] = aws_world.SERVICE_YAML.replace("name: demo-service", f"name: {name}")
    number = env.github.open_pull_request(REPO, "monorepo", files=files, user="alice")
    env.app.deliver("pull_request", for_pull_request(env.github, REPO, number, "opened"))
    env.app.drain()
    runs = env.github.check_runs(REPO, sha=env.github.pull(REPO, number).head_sha)
    assert [(r.name, r.conclusion) for r in runs] == [("lemi / spec", "failure")]
    assert runs[0].output["title"] == "21 services changed: at most 20 are checked"
    assert env.github.pulls("acme/infra") == []  # nothing provisioned
    # the contents of 21 services were never read
    assert not env.github.calls_to("GET", f"/repos/{REPO}/contents/deploy/demo-service-s0/*")
    assert json.dumps(runs[0].output)
