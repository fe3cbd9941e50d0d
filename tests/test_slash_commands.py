"""Slash commands in PR comments, end to end through ``POST /webhook``.

The issue: help, status, tasks, restart, deploy <tag>, rollback, stop-task <id>,
verify, diff, provision, lock/unlock. Permission comes from GitHub at the time of
the command (write for unprotected environments, maintain or admin for protected
ones, which must be named with -e); anyone else gets a reply saying why and
nothing runs. Bots (lemi included) and edited comments are ignored. lemi reacts
when it starts (eyes) and ends (rocket / confused) and answers with one comment
rendered from templates/. restart, deploy and rollback go through the durable
queue as ``command`` jobs in the service's concurrency key.

Every comment is the real ``issue_comment`` example payload of
@octokit/webhooks-examples rewritten to describe the GitHub fake, signed and
POSTed to lemi's real app; the queue's workers run it against the GitHub fake
and moto, with ECS rollouts played by tests/ecs_sim.py. A spy on moto's WSGI app
records every AWS operation lemi calls (its clients send ``lemi`` in their
User-Agent), so "nothing ran" is checked on the wire, not only on the state.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aws_world
import pytest
from aws_world import CLUSTER, SERVICE
from fakes.webhooks import for_pull_request, for_push
from moto.core.exceptions import JsonRESTError
from moto.ecs.models import EC2ContainerServiceBackend
from slash_world import (
    BOT,
    KEY,
    LEMI_ONLY_PROTECTED,
    LEMI_PROD_FIRST,
    REPO,
    REV1,
    ROLES,
    SERVICE_FILES,
    Env,
    reply_head,
)

from bot.core.compile import compile_for

# ---- 1. every command, permitted and refused ------------------------------------------------


def _nothing(env: Env) -> dict[str, Any]:
    return {}


def _tasks(env: Env) -> dict[str, Any]:
    return {"tasks": env.start_tasks(2)}


def _task_to_stop(env: Env) -> dict[str, Any]:
    tasks = env.start_tasks(2)
    return {"tasks": tasks, "task": tasks[0]}


def _image_v2(env: Env) -> dict[str, Any]:
    aws_world.push_image(env.world.endpoint, "v2")
    return {}


def _deployed_v2(env: Env) -> dict[str, Any]:
    """v1 then v2 deployed (as lemi tags them, lemi:deployed-at), v2 rolled out: rollback has
    revision 1 to go back to."""
    env.world.deployed(env.world.first_revision, "2026-01-01T00:00:00Z")
    aws_world.push_image(env.world.endpoint, "v2")
    ecs = env.world.ecs()
    td = compile_for(env.world.config, env.world.files, "staging", "v2").task_definition
    arn = ecs.register_task_definition(**td)["taskDefinition"]["taskDefinitionArn"]
    ecs.update_service(cluster=CLUSTER, service=SERVICE, taskDefinition=arn)
    ecs.describe_services(cluster=CLUSTER, services=[SERVICE])  # the simulated rollout completes
    assert env.service().deployments[0]["rolloutState"] == "COMPLETED"
    env.world.deployed(arn, "2026-01-02T00:00:00Z")
    return {"v2": arn}


def _pr_opened(env: Env) -> dict[str, Any]:
    """GitHub told lemi about the PR: its provisioning ran once (infra PR, link comment)."""
    env.app.deliver("pull_request", for_pull_request(env.github, REPO, env.number, "opened"))
    env.app.drain()
    pulls = env.github.pulls("acme/infra")
    assert len(pulls) == 1
    return {"infra_pr": pulls[0].number}


def _alice_locked(env: Env) -> dict[str, Any]:
    env.comment("/lemi lock", "alice")
    assert env.locks() == [(REPO, "staging", "alice")]
    return {}


def check_help(env: Env, reply: str, ctx: dict[str, Any]) -> None:
    assert "Usage: `/lemi <command> [-e ENV] [-s SERVICE]`" in reply
    for name in ("help", "status", "tasks", "restart", "deploy <image-tag>", "rollback", "run <task>",
                 "stop-task <task-id>", "verify", "diff", "provision", "lock", "unlock"):  # fmt: skip
        assert f"- `/lemi {name}`" in reply


def check_status(env: Env, reply: str, ctx: dict[str, Any]) -> None:
    assert "· `demo-service` in `staging`" in reply
    assert f"revision `{REV1}` · image tag `v1`" in reply
    assert "| deployment | status | rollout | revision | running | pending | failed | created |\n|---|" in reply
    deployment = env.service().deployments[0]["id"]
    assert f"| `{deployment}` | PRIMARY |" in reply and f"| `{REV1}` |" in reply
    assert "🔒" not in reply


def check_tasks(env: Env, reply: str, ctx: dict[str, Any]) -> None:
    assert "| task | status | desired | revision | health | started | zone |\n|---|" in reply
    rows = [line for line in reply.splitlines() if line.startswith("| `")]
    assert len(rows) == 2
    for task in ctx["tasks"]:
        assert any(row.startswith(f"| `{task}` |") and f"| `{REV1}` |" in row for row in rows), reply


def check_restart(env: Env, reply: str, ctx: dict[str, Any]) -> None:
    assert f"✅ `{REV1}`: 2/2 tasks running, rollout completed in" in reply
    assert env.sim.updates == 1  # one forced new deployment, same revision
    assert env.service().task_definition == env.world.first_revision
    assert [d["rolloutState"] for d in env.service().deployments] == ["COMPLETED"]
    assert env.aws_writes() == ["UpdateService", "TagResource"]  # completed: tagged lemi:deployed-at
    assert "lemi:deployed-at" in env.world.tags(env.world.first_revision)
    assert [j["key"] for j in env.command_jobs()] == [KEY]


def check_deploy(env: Env, reply: str, ctx: dict[str, Any]) -> None:
    assert "✅ Deploy success." in reply
    assert "demo-service-staging:2" in reply and "demo-service:v2" in reply
    assert env.image_of_service().endswith("/demo-service:v2")
    assert env.revisions() == [REV1, "demo-service-staging:2"]
    (deployment,) = env.github.deployments(REPO)
    assert deployment.environment == "staging" and deployment.payload["tag"] == "v2"
    assert deployment.sha == env.github.pull(REPO, env.number).head_sha
    assert deployment.statuses[-1].state == "success"
    assert [j["key"] for j in env.command_jobs()] == [KEY]


def check_rollback(env: Env, reply: str, ctx: dict[str, Any]) -> None:
    assert f"✅ `{REV1}`: 2/2 tasks running, rollout completed in" in reply
    assert env.service().task_definition == env.world.first_revision
    assert env.image_of_service().endswith("/demo-service:v1")
    assert env.aws_writes() == ["UpdateService", "TagResource"]  # no new revision registered
    assert env.world.tags(env.world.first_revision)["lemi:deployed-at"] > "2026-01-02"  # deployed again, now
    assert [j["key"] for j in env.command_jobs()] == [KEY]


def check_stop_task(env: Env, reply: str, ctx: dict[str, Any]) -> None:
    assert f"✅ Stopped task `{ctx['task']}`; ECS starts a replacement." in reply
    described = env.world.ecs().describe_tasks(cluster=CLUSTER, tasks=ctx["tasks"])["tasks"]
    by_id = {t["taskArn"].rsplit("/", 1)[-1]: t for t in described}
    stopped, other = by_id[ctx["task"]], by_id[ctx["tasks"][1]]
    assert (stopped["lastStatus"], stopped["desiredStatus"]) == ("STOPPED", "STOPPED")
    assert stopped["stoppedReason"] == "stopped by @alice via lemi"
    assert other["desiredStatus"] == "RUNNING"
    assert env.aws_writes() == ["StopTask"]


def check_verify(env: Env, reply: str, ctx: dict[str, Any]) -> None:
    assert "✅ Everything the deploy needs is in place: spec, ECS service, secrets and parameters." in reply
    assert env.aws_writes() == []


def check_diff(env: Env, reply: str, ctx: dict[str, Any]) -> None:
    assert f"No difference: `{REV1}` matches this pull request." in reply
    assert env.aws_writes() == []


def check_provision(env: Env, reply: str, ctx: dict[str, Any]) -> None:
    (pull,) = env.github.pulls("acme/infra")  # brought up to date, not opened twice
    assert pull.number == ctx["infra_pr"] and pull.state == "open"
    assert f"- **demo-service**: {env.github.html_url}/acme/infra/pull/{pull.number}" in reply
    assert env.github.file("acme/infra", "lemi/demo-service", "services/demo-service.tf")


def check_lock(env: Env, reply: str, ctx: dict[str, Any]) -> None:
    assert "🔒 Locked `staging` for @alice" in reply and "`/lemi unlock -e staging`" in reply
    assert env.locks() == [(REPO, "staging", "alice")]


def check_unlock(env: Env, reply: str, ctx: dict[str, Any]) -> None:
    assert "🔓 Unlocked `staging`" in reply
    assert env.locks() == []


@dataclass(frozen=True)
class Case:
    body: str
    prepare: Callable[[Env], dict[str, Any]]
    check: Callable[[Env, str, dict[str, Any]], None]
    refused_as: str  # the read or triage user who is refused


CASES = {
    "help": Case("/lemi help", _nothing, check_help, "rita"),
    "status": Case("/lemi status", _nothing, check_status, "tom"),
    "tasks": Case("/lemi tasks", _tasks, check_tasks, "rita"),
    "restart": Case("/lemi restart", _nothing, check_restart, "tom"),
    "deploy": Case("/lemi deploy v2", _image_v2, check_deploy, "rita"),
    "rollback": Case("/lemi rollback", _deployed_v2, check_rollback, "tom"),
    "stop-task": Case("/lemi stop-task {task}", _task_to_stop, check_stop_task, "rita"),
    "verify": Case("/lemi verify", _nothing, check_verify, "tom"),
    "diff": Case("/lemi diff", _nothing, check_diff, "rita"),
    "provision": Case("/lemi provision", _pr_opened, check_provision, "tom"),
    "lock": Case("/lemi lock", _nothing, check_lock, "rita"),
    "unlock": Case("/lemi unlock", _alice_locked, check_unlock, "tom"),
}


@pytest.mark.parametrize(
    "name", list(CASES)
)  # fmt: skip
def test_a_writer_runs_every_command(start: Callable[..., Env], name: str) -> None:
    env = start()
    case = CASES[name]
    ctx = case.prepare(env)
    body = case.body.format(**ctx)
    replies = len(env.replies())
    del env.aws_calls[:]  # the checks look at the command's own AWS calls
    cid = env.comment(body, "alice")
    new = env.replies()[replies:]
    assert len(new) == 1, new
    assert new[0].startswith(reply_head(body, "alice")), new[0]
    case.check(env, new[0], ctx)
    assert env.reactions(cid) == ["eyes", "rocket"]


@pytest.mark.parametrize(
    "name", list(CASES)
)  # fmt: skip
def test_a_reader_or_triager_is_refused_every_command_and_nothing_runs(start: Callable[..., Env], name: str) -> None:
    env = start()
    case = CASES[name]
    ctx = case.prepare(env)
    body = case.body.format(**ctx)
    user = case.refused_as
    replies, aws_mark, gh_mark = len(env.replies()), len(env.aws_calls), len(env.github.calls)
    aws_before, locks_before, jobs_before = env.aws_state(), env.locks(), env.command_jobs()
    deployments_before, infra_before = len(env.github.deployments(REPO)), len(env.github.pulls("acme/infra"))

    cid = env.comment(body, user)

    new = env.replies()[replies:]
    assert len(new) == 1, new
    assert new[0].startswith(reply_head(body, user)), new[0]
    role = ROLES[user]
    assert f"❌ Not done: @{user} has `{role}` permission on {REPO}; " in new[0]
    expected = {"provision": "provisioning", "help": "using lemi here"}.get(name, "operating `staging`")
    assert f"{expected} needs `write` or higher" in new[0]
    assert env.reactions(cid) == ["eyes", "confused"]
    # nothing ran: lemi called no AWS operation at all, and wrote nothing to GitHub but its answer
    assert env.aws_calls[aws_mark:] == []
    assert env.aws_state() == aws_before
    assert sorted(env.github_writes(gh_mark)) == sorted([
        f"POST /repos/{REPO}/issues/comments/{cid}/reactions",
        f"POST /repos/{REPO}/issues/{env.number}/comments",
        f"POST /repos/{REPO}/issues/comments/{cid}/reactions",
    ])  # fmt: skip
    assert env.locks() == locks_before
    assert env.command_jobs() == jobs_before
    assert len(env.github.deployments(REPO)) == deployments_before
    assert len(env.github.pulls("acme/infra")) == infra_before
    # GitHub was asked, at the time of the command
    assert env.github.calls_to("GET", f"/repos/{REPO}/collaborators/{user}/permission")


def test_permission_is_asked_of_github_at_the_time_of_each_command(start: Callable[..., Env]) -> None:
    env = start()
    first = env.comment("/lemi status", "bob")
    assert env.reactions(first) == ["eyes", "rocket"]
    env.github.set_permission(REPO, "bob", "read")  # demoted between two commands
    second = env.comment("/lemi status", "bob")
    assert env.reactions(second) == ["eyes", "confused"]
    assert "@bob has `read` permission on acme/demo-service" in env.replies()[-1]
    env.github.set_permission(REPO, "bob", "maintain")
    third = env.comment("/lemi status -e prod", "bob")
    assert env.reactions(third) == ["eyes", "rocket"]
    assert "· `demo-service` in `prod`" in env.replies()[-1]
    assert len(env.github.calls_to("GET", f"/repos/{REPO}/collaborators/bob/permission")) == 3


# ---- 2. protected environments ---------------------------------------------------------------


def test_protected_prod_needs_maintain_and_is_never_the_default(start: Callable[..., Env]) -> None:
    env = start()
    cid = env.comment("/lemi status", "alice")
    assert env.reactions(cid) == ["eyes", "rocket"]
    assert env.replies()[-1].startswith(reply_head("/lemi status", "alice") + " · `demo-service` in `staging`")

    cid = env.comment("/lemi restart -e prod", "alice")
    assert env.reactions(cid) == ["eyes", "confused"]
    assert ("❌ Not done: @alice has `write` permission on acme/demo-service; operating the protected "
            "environment `prod` needs `maintain` or higher") in env.replies()[-1]  # fmt: skip
    assert env.sim.updates == 0 and env.command_jobs() == [] and env.aws_writes() == []

    cid = env.comment("/lemi restart -e prod", "mia")
    assert env.reactions(cid) == ["eyes", "rocket"]
    reply = env.replies()[-1]
    assert reply.startswith(reply_head("/lemi restart -e prod", "mia") + " · `demo-service` in `prod`")
    assert "rollout completed" in reply
    assert env.sim.updates == 1
    assert [j["key"] for j in env.command_jobs()] == ["acme/demo-service:demo-service:prod"]

    cid = env.comment("/lemi status --env=prod", "ada")  # admin too
    assert env.reactions(cid) == ["eyes", "rocket"]
    assert "· `demo-service` in `prod`" in env.replies()[-1]


def test_prod_listed_first_still_defaults_to_staging(start: Callable[..., Env]) -> None:
    env = start(LEMI_PROD_FIRST)
    cid = env.comment("/lemi restart", "alice")  # a writer: prod would refuse them
    assert env.reactions(cid) == ["eyes", "rocket"]
    assert env.replies()[-1].startswith(reply_head("/lemi restart", "alice") + " · `demo-service` in `staging`")
    assert [j["key"] for j in env.command_jobs()] == [KEY]


def test_with_only_protected_environments_a_command_without_e_is_refused(start: Callable[..., Env]) -> None:
    env = start(LEMI_ONLY_PROTECTED)
    for user in ("alice", "mia"):
        cid = env.comment("/lemi restart", user)
        assert env.reactions(cid) == ["eyes", "confused"]
        assert "❌ Not done: every environment is protected; name one with `-e` (staging, prod)" in env.replies()[-1]
    assert env.sim.updates == 0 and env.command_jobs() == [] and env.aws_calls == []

    cid = env.comment("/lemi restart -e staging", "mia")
    assert env.reactions(cid) == ["eyes", "rocket"]
    assert "· `demo-service` in `staging`" in env.replies()[-1] and "rollout completed" in env.replies()[-1]


# ---- 3. comments lemi ignores -----------------------------------------------------------------


def _own_reply(env: Env) -> int:
    """The webhook GitHub sends for lemi's own answer (created through the API by the App)."""
    before = {c.id for c in env.github.comments(REPO, env.number)}
    env.comment("/lemi help", "alice")
    (own,) = [c for c in env.github.comments(REPO, env.number) if c.id not in before and c.user == BOT]
    assert own.via_app
    return int(own.id)


def _bot_says_lemi(env: Env) -> int:
    return int(env.github.add_comment(REPO, env.number, "/lemi restart", user=BOT, user_type="Bot"))


def _other_bot(env: Env) -> int:
    env.github.set_permission(REPO, "renovate[bot]", "write")
    return int(env.github.add_comment(REPO, env.number, "/lemi restart", user="renovate[bot]", user_type="Bot"))


def _plain(env: Env) -> int:
    return int(env.github.add_comment(REPO, env.number, "LGTM, ship it. Run /lemi restart later?", user="alice"))


def _lemi_prefix_only(env: Env) -> int:
    return int(env.github.add_comment(REPO, env.number, "/lemirestart", user="alice"))


IGNORED = {
    "lemi's own answer": (_own_reply, "created"),
    "lemi[bot] writing /lemi": (_bot_says_lemi, "created"),
    "another bot": (_other_bot, "created"),
    "an edited comment": (
        lambda env: int(env.github.add_comment(REPO, env.number, "/lemi restart", user="alice")),
        "edited",
    ),
    "a plain comment": (_plain, "created"),
    "/lemi glued to a word": (_lemi_prefix_only, "created"),
}


@pytest.mark.parametrize("kind", list(IGNORED))
def test_comments_lemi_ignores(start: Callable[..., Env], kind: str) -> None:
    env = start()
    make, action = IGNORED[kind]
    cid = make(env)
    comments, gh_mark, aws_mark = len(env.github.comments(REPO, env.number)), len(env.github.calls), len(env.aws_calls)
    stored = len(env.app.jobs())
    answer = env.deliver_comment(cid, action=action)
    assert answer == {"status": "ignored"} and len(env.app.jobs()) == stored  # acknowledged at intake, never queued
    assert env.reactions(cid) == []
    assert len(env.github.comments(REPO, env.number)) == comments
    assert env.github.calls[gh_mark:] == []  # not even a read
    assert env.aws_calls[aws_mark:] == []
    assert env.sim.updates == 0 and env.command_jobs() == []


def test_a_comment_on_an_issue_is_ignored(start: Callable[..., Env]) -> None:
    env = start()
    issue = env.github.open_issue(REPO, "Deploys are slow", user="alice")
    gh_mark, stored = len(env.github.calls), len(env.app.jobs())
    cid = env.github.add_comment(REPO, issue, "/lemi restart", user="alice")
    assert env.deliver_comment(cid, number=issue) == {"status": "ignored"} and len(env.app.jobs()) == stored
    assert env.reactions(cid) == []
    assert env.replies(issue) == []
    assert env.github.calls[gh_mark:] == []
    assert env.aws_calls == [] and env.sim.updates == 0 and env.command_jobs() == []


# ---- 4. answers that run nothing ---------------------------------------------------------------


def assert_answered_without_running(env: Env, cid: int, gh_mark: int, reactions: list[str]) -> str:
    assert env.reactions(cid) == reactions
    (reply,) = env.replies()
    assert sorted(env.github_writes(gh_mark)) == sorted(
        [f"POST /repos/{REPO}/issues/{env.number}/comments"]
        + [f"POST /repos/{REPO}/issues/comments/{cid}/reactions"] * len(reactions)
    )
    assert env.aws_calls == [] and env.sim.updates == 0 and env.command_jobs() == []
    return reply


def test_an_unknown_command_gets_did_you_mean(start: Callable[..., Env]) -> None:
    env = start()
    cid = env.comment("/lemi restrat -e staging", "alice")
    reply = assert_answered_without_running(env, cid, 0, ["eyes", "confused"])
    assert "unknown command `restrat`. did you mean `restart`?" in reply


def test_help_answers_with_the_usage(start: Callable[..., Env]) -> None:
    env = start()
    cid = env.comment("/lemi help", "alice")
    reply = assert_answered_without_running(env, cid, 0, ["eyes", "rocket"])
    assert reply.startswith(reply_head("/lemi help", "alice"))
    check_help(env, reply, {})
    env.comment("/lemi", "bob")  # a bare /lemi is help too

    def usage(text: str) -> str:  # the body between the heading and lemi's hidden markers
        return text.split("\n", 1)[1].split("<!-- lemi:reply")[0]

    assert env.replies()[-1].startswith(reply_head("/lemi", "bob"))
    assert usage(env.replies()[-1]) == usage(reply)


HOSTILE = {
    "command substitution": ("/lemi deploy $(id)", "`(that value)` is not a valid image-tag"),
    "shell separator": ("/lemi restart; rm -rf /", "unknown command `(that)`. did you mean `restart`?"),
    "64 KB comment": (
        "/lemi deploy " + "a" * (65536 - len("/lemi deploy ")),
        "that command line is too long (over 500 characters)",
    ),
    "backticks and a mention": ("/lemi stop-task `whoami`@everyone", "`(that value)` is not a valid task-id"),
    "substitution in -e": ("/lemi status -e $(whoami)", "`(that value)` is not an environment name"),
}


@pytest.mark.parametrize("kind", list(HOSTILE))
def test_hostile_comments_get_a_reply_and_run_nothing(start: Callable[..., Env], kind: str) -> None:
    env = start()
    body, answer = HOSTILE[kind]
    aws_world.push_image(env.world.endpoint, "aaaa")  # a tag that exists, in case anything were deployed
    cid = env.comment(body, "alice")
    reply = assert_answered_without_running(env, cid, 0, ["eyes", "confused"])
    assert answer in reply, reply
    for echoed in ("$(id)", "rm -rf", "whoami", "@everyone", "a" * 600):
        assert echoed not in reply
    assert len(reply) < 2000


# ---- 5. locks ----------------------------------------------------------------------------------


def test_a_lock_holds_commands_of_others_until_released(start: Callable[..., Env]) -> None:
    env = start()
    cid = env.comment("/lemi lock", "alice")
    assert env.reactions(cid) == ["eyes", "rocket"]

    cid = env.comment("/lemi restart", "bob")
    assert env.reactions(cid) == ["eyes", "confused"]
    assert ("❌ Not done: `staging` is locked by @alice (locked from #1); ask them to `/lemi unlock -e staging`"
            in env.replies()[-1])  # fmt: skip
    assert env.sim.updates == 0 and env.command_jobs() == [] and env.aws_writes() == []

    cid = env.comment("/lemi lock", "bob")  # nor can bob take it over
    assert env.reactions(cid) == ["eyes", "confused"] and "locked by @alice" in env.replies()[-1]

    for viewer in ("bob", "alice"):
        cid = env.comment("/lemi status", viewer)
        assert env.reactions(cid) == ["eyes", "rocket"]
        assert "· 🔒 locked by @alice" in env.replies()[-1]

    cid = env.comment("/lemi restart", "alice")  # the holder's own commands run
    assert env.reactions(cid) == ["eyes", "rocket"] and "rollout completed" in env.replies()[-1]
    assert env.sim.updates == 1

    cid = env.comment("/lemi unlock", "bob")
    assert env.reactions(cid) == ["eyes", "confused"]
    assert "❌ Not done: `staging` is locked by @alice; only they, or a maintainer, can unlock it" in env.replies()[-1]
    assert env.locks() == [(REPO, "staging", "alice")]

    cid = env.comment("/lemi unlock", "mia")
    assert env.reactions(cid) == ["eyes", "rocket"] and "🔓 Unlocked `staging`" in env.replies()[-1]
    assert env.locks() == []

    cid = env.comment("/lemi status", "bob")
    assert "🔒" not in env.replies()[-1]
    cid = env.comment("/lemi restart", "bob")
    assert env.reactions(cid) == ["eyes", "rocket"] and env.sim.updates == 2


def test_a_lock_holds_push_deploys_of_others_until_unlocked(start: Callable[..., Env]) -> None:
    env = start()
    env.comment("/lemi lock", "alice")
    sha = env.github.commit(REPO, "develop", SERVICE_FILES, "deploy files", author="bob")
    aws_world.push_image(env.world.endpoint, sha)
    env.app.deliver("push", for_push(env.github, REPO, "develop", None, sha, sender="bob"))
    env.app.drain()
    (held,) = env.github.deployments(REPO)
    assert held.payload["tag"] == sha and held.statuses[-1].state == "queued"
    assert "locked by @alice" in held.statuses[-1].description
    assert env.sim.updates == 0 and env.revisions() == [REV1]

    env.comment("/lemi unlock", "alice")
    assert "1 held deploy queued again" in env.replies()[-1]
    (deployed,) = env.github.deployments(REPO)
    assert deployed.statuses[-1].state == "success"
    assert env.image_of_service().endswith(f"/demo-service:{sha}")


# ---- 6. long commands go through the queue ------------------------------------------------------


def test_long_commands_are_command_jobs_in_the_service_key_and_run_once(start: Callable[..., Env]) -> None:
    env = start()
    cid = env.github.add_comment(REPO, env.number, "/lemi restart", user="alice")
    delivery = "72d3162e-cc78-11e3-81ab-4c9367dc0958"
    first = env.deliver_comment(cid, delivery=delivery, drain=False)
    again = env.deliver_comment(cid, delivery=delivery)  # GitHub redelivers the same delivery
    assert (first["status"], again["status"]) == ("queued", "duplicate")
    (job,) = env.command_jobs()
    assert job["key"] == KEY and job["dedupe_id"] == f"{delivery}:command" and job["state"] == "done"
    webhook_jobs = [j for j in env.app.jobs() if j["kind"] == "webhook"]
    assert [j["key"] for j in webhook_jobs] == [f"{REPO}#{env.number}"]

    assert env.deliver_comment(cid, delivery=delivery)["status"] == "duplicate"  # after it ran, too
    assert len(env.replies()) == 1 and "rollout completed" in env.replies()[0]
    assert env.reactions(cid) == ["eyes", "rocket"]
    assert env.sim.updates == 1 and env.aws_writes() == ["UpdateService", "TagResource"]
    assert len(env.command_jobs()) == 1


# ---- 7. failures are reported ------------------------------------------------------------------


def test_a_failed_restart_is_reported_with_the_reason(start: Callable[..., Env]) -> None:
    env = start()
    env.sim.circuit_breaker(reason="CannotPullContainerError: pull access denied")
    cid = env.comment("/lemi restart", "alice")
    assert env.reactions(cid) == ["eyes", "confused"]
    (reply,) = env.replies()
    assert f"❌ The rollout of `{REV1}` did not complete: **failed** — ECS deployment circuit breaker" in reply
    assert "CannotPullContainerError: pull access denied" in reply
    assert "rollout completed" not in reply and "✅" not in reply
    assert env.aws_writes() == ["UpdateService"]  # a circuit-breaker rollback is not deployed: no tag
    assert "lemi:deployed-at" not in env.world.tags(env.world.first_revision)


def test_a_restart_whose_tag_aws_refuses_succeeds_with_a_warning(
    start: Callable[..., Env], monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(self: EC2ContainerServiceBackend, arn: str, tags: dict[str, str]) -> None:
        raise JsonRESTError("AccessDeniedException", "not authorized to perform: ecs:TagResource")

    env = start()
    monkeypatch.setattr(EC2ContainerServiceBackend, "tag_resource", refuse)
    cid = env.comment("/lemi restart", "alice")
    assert env.reactions(cid) == ["eyes", "rocket"]
    (reply,) = env.replies()
    assert f"✅ `{REV1}`: 2/2 tasks running, rollout completed in" in reply
    assert f"⚠️ lemi could not record {REV1} as deployed" in reply and "ecs:TagResource" in reply


def test_deploying_a_missing_image_is_reported_and_registers_nothing(start: Callable[..., Env]) -> None:
    env = start()
    cid = env.comment("/lemi deploy missing-tag", "alice")
    assert env.reactions(cid) == ["eyes", "confused"]
    (reply,) = env.replies()
    assert "❌ Deploy failure." in reply
    assert "demo-service:missing-tag" in reply and "not in ECR" in reply
    assert env.revisions() == [REV1]
    assert env.sim.updates == 0 and env.aws_writes() == []
    (deployment,) = env.github.deployments(REPO)
    assert deployment.payload["tag"] == "missing-tag" and deployment.statuses[-1].state == "failure"


@pytest.mark.parametrize(
    "body, answer",
    [
        ("/lemi rollback", f"❌ {REV1} has no earlier revision that lemi deployed successfully to roll back to"),
        ("/lemi stop-task 0123456789abcdef0123456789abcdef",
         "❌ there is no task 0123456789abcdef0123456789abcdef in cluster lemon-ecs-cluster (staging)"),
    ],
    ids=["rollback without an earlier revision", "stop-task of an unknown task"],
)  # fmt: skip
def test_a_command_that_cannot_be_done_says_why(start: Callable[..., Env], body: str, answer: str) -> None:
    env = start()
    cid = env.comment(body, "alice")
    assert env.reactions(cid) == ["eyes", "confused"]
    (reply,) = env.replies()
    assert reply.startswith(reply_head(body, "alice")) and answer in reply and "hint:" in reply
    assert env.aws_writes() == [] and env.sim.updates == 0


def _roll_out(env: Env, *tags: str) -> None:
    """Deploy each tag in turn with boto3, each rollout complete and tagged as lemi tags it."""
    ecs = env.world.ecs()
    for day, tag in enumerate(tags, start=1):
        aws_world.push_image(env.world.endpoint, tag)
        td = compile_for(env.world.config, env.world.files, "staging", tag).task_definition
        arn = ecs.register_task_definition(**td)["taskDefinition"]["taskDefinitionArn"]
        ecs.update_service(cluster=CLUSTER, service=SERVICE, taskDefinition=arn)
        ecs.describe_services(cluster=CLUSTER, services=[SERVICE])  # rolled out
        env.world.deployed(arn, f"2026-01-{day:02d}T00:00:00Z")


def test_a_rollback_goes_back_past_a_deploy_that_failed_to_the_last_good_one(start: Callable[..., Env]) -> None:
    """v2 deployed by lemi; `/lemi deploy v3` fails (FAILED, no rollback: :3 runs, never tagged);
    `/lemi rollback` returns to :2, the last revision lemi deployed successfully."""
    env = start()
    _roll_out(env, "v2")
    aws_world.push_image(env.world.endpoint, "v3")
    env.sim.failed(after=2)
    env.comment("/lemi deploy v3", "alice")
    assert env.image_of_service().endswith(":v3")
    env.sim.complete(after=2)
    cid = env.comment("/lemi rollback", "alice")
    assert env.reactions(cid) == ["eyes", "rocket"]
    assert "✅ `demo-service-staging:2`: 2/2 tasks running, rollout completed in" in env.replies()[-1]
    assert env.image_of_service().endswith(":v2")
    assert env.revisions() == [REV1, "demo-service-staging:2", "demo-service-staging:3"]


def test_a_rollback_retried_after_its_reply_failed_goes_to_the_revision_pinned_at_intake(
    start: Callable[..., Env],
) -> None:
    """The reply is lost, so the watcher, which answers when the rollout ends, sends it again:
    the service stays on the revision chosen when the command was accepted (v2), not the one
    before the service's new current (v1), and nothing is rolled back again."""
    env = start()
    _roll_out(env, "v2", "v3")
    env.sim.complete(after=30)
    cid = env.github.add_comment(REPO, env.number, "/lemi rollback", user="alice")
    env.deliver_comment(cid, drain=False)
    env.github.wait_for(lambda: env.github.comments_by_id[cid].reactions)  # eyes: the command is queued
    env.github.fail_next("POST", rf"/repos/{REPO}/issues/{env.number}/comments$", status=502)  # the reply
    env.app.drain()
    (job,) = env.command_jobs()
    assert job["state"] == "done" and job["attempts"] == 1 and env.github.faults == []  # the 502 was served
    assert env.image_of_service().endswith(":v2"), env.image_of_service()
    assert env.sim.updates == 3  # v2, v3, one rollback; the reply sent again sent no rollout again
    assert len(env.replies()) == 1


def test_a_rollback_whose_last_reaction_failed_does_not_roll_back_twice(start: Callable[..., Env]) -> None:
    env = start()
    _roll_out(env, "v2", "v3")
    assert env.image_of_service().endswith(":v3")
    env.sim.complete(after=30)  # the rollback takes 30 polls: time to arm the fault below
    cid = env.github.add_comment(REPO, env.number, "/lemi rollback", user="alice")
    env.deliver_comment(cid, drain=False)
    env.github.wait_for(lambda: env.github.comments_by_id[cid].reactions)  # eyes: the command is queued
    env.github.fail_next("POST", r"/issues/comments/\d+/reactions$", status=502)  # the final reaction
    env.app.drain()
    (job,) = env.command_jobs()
    assert job["state"] == "done"
    # the 502 was served; the watcher, which answers, found its reply and only reacted again
    assert env.github.faults == [] and job["attempts"] == 1
    assert env.reactions(cid) == ["eyes", "rocket"]
    assert env.image_of_service().endswith(":v2"), env.image_of_service()  # one step back, not two
    assert env.sim.updates == 3  # v2, v3, then one rollback
    assert len(env.replies()) == 1
