"""Provisioning end to end (the README, "The GitHub App": the ``pull_request`` rows).

Every scenario goes through POST /webhook with real example payloads
(``fakes.webhooks.for_pull_request``) into lemi's real app, queue and workers,
against the stateful GitHub fake; ``lemi provision`` goes through
``bot.cli.main`` against the same fake.
"""

from __future__ import annotations

import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import hcl2
import pytest
from app_harness import LEMI_YML, RunningApp, running_app, setup_repos
from fakes.webhooks import for_pull_request
from hcl2.utils import SerializationOptions

from bot.cli import main
from bot.core.config import parse_config
from bot.core.spec import ServiceFile
from bot.core.terraform import render_service_module

SERVICE = "acme/demo-service"
INFRA = "acme/infra"
BRANCH = "feature/provision"
SPEC = "lemi / spec"
PROVISION = "lemi / provision"
TF = "services/demo-service.tf"
TF_ATTRIBUTES = {
    "source", "name", "owner", "repository", "image", "cpu", "memory", "desired_count", "environments", "domain",
}  # fmt: skip

STAGING_YAML = "variables:\n  LOG_LEVEL: info\nsecrets:\n  DB_PASSWORD: demo-service/db-password\n"
PROD_YAML = "desiredCount: 3\nresource: {cpu: 1024, memory: 2048}\n"


# --- helpers -------------------------------------------------------------------------------


def service_yaml(*, name: str = "demo-service", owner: str = "infra", cpu: int = 512, memory: int = 1024,
                 desired: int = 1, image: str | None = None) -> str:  # fmt: skip
    return (
        f"name: {name}\nowner: {owner}\nspec:\n  desiredCount: {desired}\n  image: {image or name}\n"
        f"  resource:\n    cpu: {cpu}\n    memory: {memory}\n"
    )


def service_files(service: str = "demo-service", **spec: Any) -> dict[str, str]:
    base = f"deploy/{service}"
    return {
        f"{base}/service.yaml": service_yaml(name=service, **spec),
        f"{base}/environment/staging.yaml": STAGING_YAML,
        f"{base}/environment/prod.yaml": PROD_YAML,
    }


def open_service_pr(github: Any, files: dict[str, str] | None = None, **kwargs: Any) -> int:
    return github.open_pull_request(SERVICE, kwargs.pop("branch", BRANCH), files or service_files(), **kwargs)


def deliver(app: RunningApp, github: Any, repository: str, number: int, action: str, *, delivery: str | None = None,
            expect: str = "queued") -> dict[str, Any]:  # fmt: skip
    """Deliver a real pull_request payload describing the fake now; wait until every job is done."""
    payload = for_pull_request(github, repository, number, action)
    response = app.deliver("pull_request", payload, delivery=delivery or str(uuid.uuid4()))
    assert response.status_code == 202, response.text
    assert response.json() == {"status": expect}
    rows = app.drain()
    assert all(r["state"] == "done" for r in rows), f"{rows}\n{github.describe_calls()}"
    return payload


def merge_infra(app: RunningApp, github: Any, number: int) -> None:
    """The infra team merges the infra PR; GitHub tells lemi."""
    github.merge_pull_request(INFRA, number, merge_method="squash", user="infra-lead")
    deliver(app, github, INFRA, number, "closed")


def head(github: Any, number: int, repository: str = SERVICE) -> str:
    return str(github.pull(repository, number).head_sha)


def check(github: Any, number: int, name: str, repository: str = SERVICE) -> Any:
    runs = github.check_runs(repository, sha=head(github, number, repository), name=name)
    assert len(runs) == 1, f"{name}: {runs}"
    return runs[0]


def lemi_comments(github: Any, repository: str, number: int) -> list[Any]:
    return [c for c in github.comments(repository, number) if c.via_app]


def only_infra_pr(github: Any, state: str = "all") -> Any:
    pulls = github.pulls(INFRA, state)
    assert len(pulls) == 1, [(p.number, p.head_ref, p.state) for p in pulls]
    return pulls[0]


def pr_url(github: Any, repository: str, number: int) -> str:
    return f"{github.html_url}/{repository}/pull/{number}"


def parse_tf(text: str) -> dict[str, Any]:
    options = SerializationOptions(with_comments=False, explicit_blocks=False, strip_string_quotes=True)
    return dict(hcl2.loads(text, serialization_options=options))


def module_block(text: str) -> tuple[str, dict[str, Any]]:
    """The one module block of a rendered file, and its attributes."""
    doc = parse_tf(text)
    assert set(doc) == {"module"}, doc
    assert len(doc["module"]) == 1, doc
    ((label, attributes),) = doc["module"][0].items()
    return label, attributes


def mark(github: Any) -> int:
    return len(github.calls)


def writes_since(github: Any, start: int) -> list[Any]:
    """Writes after ``start``, not counting installation tokens (authentication, not a change)."""
    calls = github.calls[start:]
    return [c for c in calls if c.method not in ("GET", "HEAD") and not c.path.endswith("/access_tokens")]


def write_kinds(calls: list[Any]) -> Counter[tuple[str, str]]:
    return Counter((c.method, str(c.template)) for c in calls)


CHECK_RUN_PATCH = ("PATCH", "/repos/{owner}/{repo}/check-runs/{check_run_id}")
CHECK_RUN_POST = ("POST", "/repos/{owner}/{repo}/check-runs")


def opened_and_proposed(app: RunningApp, github: Any, files: dict[str, str] | None = None) -> tuple[int, Any]:
    """Open the service PR, deliver it, and return it with its infra PR."""
    n = open_service_pr(github, files)
    deliver(app, github, SERVICE, n, "opened")
    return n, only_infra_pr(github)


# --- 1. open -> infra PR chain -> merged ---------------------------------------------------


def test_open_proposes_infra_pr_and_merge_completes_chain(github: Any, tmp_path: Path) -> None:
    setup_repos(github)
    with running_app(github, tmp_path) as app:
        n, infra = opened_and_proposed(app, github)
        infra_url = pr_url(github, INFRA, infra.number)

        spec = check(github, n, SPEC)
        assert (spec.status, spec.conclusion) == ("completed", "success")

        # the branch and the file on it: valid HCL with the service's values
        assert github.branch_sha(INFRA, "lemi/demo-service") is not None
        tf = github.file(INFRA, "lemi/demo-service", TF)
        assert tf is not None and github.file(INFRA, "main", TF) is None
        label, attrs = module_block(tf)
        assert label == "demo_service"
        assert attrs["name"] == "demo-service" and attrs["owner"] == "infra"
        assert (attrs["cpu"], attrs["memory"], attrs["desired_count"]) == (512, 1024, 1)
        assert attrs["repository"] == SERVICE and attrs["environments"] == ["staging", "prod"]

        # the infra PR, opened by the App, linking the service PR
        assert (infra.head_ref, infra.base_ref, infra.state) == ("lemi/demo-service", "main", "open")
        assert (infra.user, infra.user_type) == (github.bot_login, "Bot")
        assert pr_url(github, SERVICE, n) in (infra.body or "")
        assert f"<!-- lemi:service-pr {SERVICE}#{n} -->" in (infra.body or "")

        # one link comment; provision held in progress, pointing at the infra PR
        (link,) = lemi_comments(github, SERVICE, n)
        link_body = link.body  # the fake edits the Comment object in place
        assert infra_url in link_body
        provision = check(github, n, PROVISION)
        assert (provision.status, provision.conclusion) == ("in_progress", None)
        assert provision.details_url == infra_url
        assert not github.pull(SERVICE, n).merged

        mark = len(github.calls)
        merge_infra(app, github, infra.number)
        # its one service is the one just merged: the infra repository's settings are not read
        assert [c for c in github.calls[mark:] if c.method == "GET" and c.path == f"/repos/{INFRA}"] == []

        service_pr = github.pull(SERVICE, n)
        assert service_pr.merged and service_pr.merged_by == github.bot_login
        (merge_call,) = github.calls_to("PUT", f"/repos/{SERVICE}/pulls/{n}/merge")
        assert merge_call.body["merge_method"] == "squash" and merge_call.status == 200
        assert github.file(SERVICE, "main", "deploy/demo-service/service.yaml") == service_yaml()
        provision = check(github, n, PROVISION)
        assert (provision.status, provision.conclusion) == ("completed", "success")
        (updated,) = lemi_comments(github, SERVICE, n)
        assert updated.id == link.id and updated.body != link_body
        assert infra_url in updated.body and "merged" in updated.body and "squash" in updated.body


# --- 2. idempotence ---------------------------------------------------------------------------


def test_synchronize_reopen_and_redelivery_reuse_everything(github: Any, tmp_path: Path) -> None:
    setup_repos(github)
    with running_app(github, tmp_path) as app:
        n, infra = opened_and_proposed(app, github)
        (link,) = lemi_comments(github, SERVICE, n)
        first_sha = head(github, n)

        # a push changing cpu/memory: the same infra PR gets the new file
        github.commit(SERVICE, BRANCH, {"deploy/demo-service/service.yaml": service_yaml(cpu=1024, memory=2048)})
        assert head(github, n) != first_sha
        start = mark(github)
        deliver(app, github, SERVICE, n, "synchronize")
        assert write_kinds(writes_since(github, start)) == Counter(
            {CHECK_RUN_POST: 2, ("PUT", "/repos/{owner}/{repo}/contents/{path}"): 1}
        ), github.describe_calls()
        assert only_infra_pr(github).number == infra.number
        _, attrs = module_block(github.file(INFRA, "lemi/demo-service", TF))
        assert (attrs["cpu"], attrs["memory"]) == (1024, 2048)
        assert [c.id for c in lemi_comments(github, SERVICE, n)] == [link.id]
        assert check(github, n, SPEC).conclusion == "success"
        assert check(github, n, PROVISION).status == "in_progress"
        assert check(github, n, PROVISION).details_url == pr_url(github, INFRA, infra.number)

        # reopened, the same delivery again, and a new delivery of the same event
        delivery = str(uuid.uuid4())
        start = mark(github)
        payload = deliver(app, github, SERVICE, n, "reopened", delivery=delivery)
        first_run = writes_since(github, start)
        start = mark(github)
        response = app.deliver("pull_request", payload, delivery=delivery)
        assert (response.status_code, response.json()) == (202, {"status": "duplicate"})
        app.drain()
        assert github.calls[start:] == [], "a redelivered delivery is processed once"
        deliver(app, github, SERVICE, n, "reopened")
        second_run = writes_since(github, start)

        for run in (first_run, second_run):
            # nothing but the two check runs is touched: no ref, file, PR or comment write
            assert set(write_kinds(run)) <= {CHECK_RUN_PATCH}, github.describe_calls()
            assert len(run) <= 2
        assert only_infra_pr(github).number == infra.number
        assert sorted(github.repo(INFRA).branches) == ["lemi/demo-service", "main"]
        assert [c.id for c in lemi_comments(github, SERVICE, n)] == [link.id]
        assert len(github.check_runs(SERVICE, sha=head(github, n))) == 2


def test_owner_change_updates_the_infra_pr_body_in_place(github: Any, tmp_path: Path) -> None:
    setup_repos(github)
    with running_app(github, tmp_path) as app:
        n, infra = opened_and_proposed(app, github)
        github.commit(SERVICE, BRANCH, {"deploy/demo-service/service.yaml": service_yaml(owner="payments")})
        deliver(app, github, SERVICE, n, "synchronize")
        updated = only_infra_pr(github)
        assert updated.number == infra.number and "`payments`" in (updated.body or "")
        assert module_block(github.file(INFRA, "lemi/demo-service", TF))[1]["owner"] == "payments"
        assert len(lemi_comments(github, SERVICE, n)) == 1


# --- 3. already provisioned ---------------------------------------------------------------------


def test_already_provisioned_succeeds_at_once(github: Any, tmp_path: Path) -> None:
    setup_repos(github)
    github.commit(INFRA, "main", {TF: 'module "demo_service" {\n  name = "demo-service"\n}\n'})
    with running_app(github, tmp_path) as app:
        n = open_service_pr(github)
        deliver(app, github, SERVICE, n, "opened")
        provision = check(github, n, PROVISION)
        assert (provision.status, provision.conclusion) == ("completed", "success")
        assert check(github, n, SPEC).conclusion == "success"
        assert github.pulls(INFRA) == []
        assert sorted(github.repo(INFRA).branches) == ["main"]
        assert github.comments(SERVICE, n) == []
        assert not github.pull(SERVICE, n).merged


# --- 4. forks ---------------------------------------------------------------------------------------


def test_fork_pr_is_checked_but_never_provisioned(github: Any, tmp_path: Path) -> None:
    setup_repos(github)
    with running_app(github, tmp_path) as app:
        n = open_service_pr(github, from_fork=True, user="outsider")
        deliver(app, github, SERVICE, n, "opened")
        assert check(github, n, SPEC).conclusion == "success"
        provision = check(github, n, PROVISION)
        assert (provision.status, provision.conclusion) == ("completed", "neutral")
        assert "fork" in provision.output["title"] and "forks are never provisioned" in provision.output["summary"]
        assert github.pulls(INFRA) == [] and sorted(github.repo(INFRA).branches) == ["main"]
        assert github.comments(SERVICE, n) == []
        assert not any(c.path.startswith(f"/repos/{INFRA}") and c.method != "GET" for c in github.calls)


# --- 5. invalid spec -----------------------------------------------------------------------------------

INVALID_SERVICE_YAML = """\
name: demo-service
owner: no
spec:
  desiredCount: 1
  image: demo-service
  replicas: 2
  resource:
    cpu: 512
    memory: 8192
"""


def test_invalid_spec_is_annotated_and_not_provisioned(github: Any, tmp_path: Path) -> None:
    setup_repos(github)
    files = {
        "deploy/demo-service/service.yaml": INVALID_SERVICE_YAML,
        "deploy/demo-service/environment/staging.yaml": "variables:\n  LOG_LEVEL: info\nsecrte: {}\n",
    }
    with running_app(github, tmp_path) as app:
        n = open_service_pr(github, files)
        deliver(app, github, SERVICE, n, "opened")
        spec = check(github, n, SPEC)
        assert (spec.status, spec.conclusion) == ("completed", "failure")
        found = {(a["path"], a["start_line"]): a for a in spec.annotations}
        service_file, staging_file = "deploy/demo-service/service.yaml", "deploy/demo-service/environment/staging.yaml"
        expected = {(service_file, 2), (service_file, 6), (service_file, 9), (staging_file, 3)}
        assert set(found) == expected, spec.annotations
        assert "boolean" in found[(service_file, 2)]["message"] and found[(service_file, 2)]["title"] == "owner"
        assert "replicas" in found[(service_file, 6)]["message"]
        assert "memory 8192 does not go with cpu 512" in found[(service_file, 9)]["message"]
        assert "secrte" in found[(staging_file, 3)]["message"]
        assert all(a["annotation_level"] == "failure" and a["end_line"] == a["start_line"] for a in spec.annotations)
        assert "4 problems" in spec.output["title"]
        provision = check(github, n, PROVISION)
        assert (provision.status, provision.conclusion) == ("completed", "failure")
        assert github.pulls(INFRA) == [] and sorted(github.repo(INFRA).branches) == ["main"]
        assert github.comments(SERVICE, n) == []


def test_a_missing_environment_file_is_a_warning_not_a_failure(github: Any, tmp_path: Path) -> None:
    """lemi.yml has staging and prod; the service has no prod file yet (prod was just added to
    lemi.yml, say): the spec check passes with a warning annotation on the missing file, and the
    service is provisioned. A deploy to prod is refused until the file exists (test_aws_verify)."""
    setup_repos(github)
    files = {k: v for k, v in service_files().items() if not k.endswith("/prod.yaml")}
    with running_app(github, tmp_path) as app:
        n, infra = opened_and_proposed(app, github, files)
        spec = check(github, n, SPEC)
        assert (spec.status, spec.conclusion) == ("completed", "success")
        [note] = spec.annotations
        assert (note["path"], note["annotation_level"]) == ("deploy/demo-service/environment/prod.yaml", "warning")
        assert note["message"].startswith("the file is missing: lemi.yml has the environment 'prod'"), note
        assert "hint: create deploy/demo-service/environment/prod.yaml" in note["message"]
        assert spec.output["title"] == "service files are valid, 1 warning"
        assert "prod.yaml" in spec.output["summary"] and "warning" in spec.output["summary"]
        assert infra.head_ref == "lemi/demo-service"  # provisioned all the same


# --- 6. infra PR closed unmerged --------------------------------------------------------------------


def test_infra_pr_closed_unmerged_fails_provision_and_push_proposes_again(github: Any, tmp_path: Path) -> None:
    setup_repos(github)
    with running_app(github, tmp_path) as app:
        n, infra = opened_and_proposed(app, github)
        (link,) = lemi_comments(github, SERVICE, n)
        github.close_pull_request(INFRA, infra.number)
        deliver(app, github, INFRA, infra.number, "closed")

        (told,) = lemi_comments(github, SERVICE, n)
        assert told.id == link.id
        assert "not provisioned" in told.body and pr_url(github, INFRA, infra.number) in told.body
        provision = check(github, n, PROVISION)
        assert (provision.status, provision.conclusion) == ("completed", "failure")
        service_pr = github.pull(SERVICE, n)
        assert service_pr.state == "open" and not service_pr.merged

        # "push to this pull request to propose it again"
        github.commit(SERVICE, BRANCH, {"deploy/demo-service/service.yaml": service_yaml(desired=2)})
        deliver(app, github, SERVICE, n, "synchronize")
        (again,) = github.pulls(INFRA, "open")
        assert again.number != infra.number and again.head_ref == "lemi/demo-service"
        (link_again,) = lemi_comments(github, SERVICE, n)
        assert link_again.id == link.id and pr_url(github, INFRA, again.number) in link_again.body
        assert check(github, n, PROVISION).status == "in_progress"


# --- 7. service PR closed unmerged ------------------------------------------------------------------


def test_service_pr_closed_closes_infra_pr_and_deletes_branch(github: Any, tmp_path: Path) -> None:
    setup_repos(github)
    with running_app(github, tmp_path) as app:
        n, infra = opened_and_proposed(app, github)
        github.close_pull_request(SERVICE, n)
        deliver(app, github, SERVICE, n, "closed")

        closed = github.pull(INFRA, infra.number)
        assert closed.state == "closed" and not closed.merged
        assert github.branch_sha(INFRA, "lemi/demo-service") is None
        (why,) = lemi_comments(github, INFRA, infra.number)
        assert pr_url(github, SERVICE, n) in why.body and "closed without merging" in why.body

        # GitHub then tells lemi the infra PR was closed: harmless for the closed service PR
        deliver(app, github, INFRA, infra.number, "closed")
        assert not github.pull(SERVICE, n).merged

        # reopening the service PR proposes it again: one open infra PR, the same link comment
        with github._lock:
            service_pr = github.pull(SERVICE, n)
            service_pr.state, service_pr.closed_at = "open", None
        deliver(app, github, SERVICE, n, "reopened")
        (again,) = github.pulls(INFRA, "open")
        assert again.number != infra.number
        (link,) = lemi_comments(github, SERVICE, n)
        assert pr_url(github, INFRA, again.number) in link.body
        assert check(github, n, PROVISION).status == "in_progress"


def test_merged_service_pr_leaves_infra_pr_alone(github: Any, tmp_path: Path) -> None:
    setup_repos(github)
    with running_app(github, tmp_path) as app:
        n, infra = opened_and_proposed(app, github)
        github.merge_pull_request(SERVICE, n)  # a human merges it early
        start = mark(github)
        deliver(app, github, SERVICE, n, "closed")
        assert writes_since(github, start) == []
        assert github.pull(INFRA, infra.number).state == "open"
        assert github.branch_sha(INFRA, "lemi/demo-service") is not None


# --- 8. merge fails --------------------------------------------------------------------------------------

UNMERGEABLE = 'Required status check "ci / test" is expected'


def _merge_refused(app: RunningApp, github: Any) -> tuple[int, Any]:
    n, infra = opened_and_proposed(app, github)
    github.set_unmergeable(SERVICE, n, UNMERGEABLE)
    merge_infra(app, github, infra.number)
    return n, infra


def test_merge_failure_is_explained_and_provision_succeeds(github: Any, tmp_path: Path) -> None:
    setup_repos(github)
    with running_app(github, tmp_path) as app:
        n, infra = _merge_refused(app, github)
        assert not github.pull(SERVICE, n).merged
        (merge_call,) = github.calls_to("PUT", f"/repos/{SERVICE}/pulls/{n}/merge")
        assert merge_call.status == 405
        provision = check(github, n, PROVISION)
        assert (provision.status, provision.conclusion) == ("completed", "success")
        (comment,) = lemi_comments(github, SERVICE, n)
        assert "could not merge" in comment.body and pr_url(github, INFRA, infra.number) in comment.body


def test_merge_failure_comment_quotes_githubs_reason(github: Any, tmp_path: Path) -> None:
    setup_repos(github)
    with running_app(github, tmp_path) as app:
        n, _ = _merge_refused(app, github)
        (comment,) = lemi_comments(github, SERVICE, n)
        assert UNMERGEABLE in comment.body, comment.body


# --- 9. HCL injection ----------------------------------------------------------------------------------

INJECTIONS = {
    "name-closes-block": ('name: "demo-service\\"}\\nresource \\"x\\" \\"y\\" {"', 1, "name"),
    "owner-quote-newline": ('owner: "infra\\"\\n  count = 0\\n  x = \\""', 2, "owner"),
    "owner-interpolation": ('owner: "${file(\\"/etc/passwd\\")}"', 2, "owner"),
    "owner-directive": ('owner: "%{ for x in [1] }x%{ endfor }"', 2, "owner"),
    "image-closes-block": ('  image: "demo\\"}\\nresource \\"x\\" \\"y\\" {"', 5, "spec.image"),
    "image-interpolation": ('  image: "${var.x}"', 5, "spec.image"),
}


def _with_line(line_no: int, text: str) -> str:
    lines = service_yaml().splitlines()
    lines[line_no - 1] = text
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("case", sorted(INJECTIONS))
def test_hcl_injection_is_refused_by_spec(github: Any, tmp_path: Path, case: str) -> None:
    text, line, field = INJECTIONS[case]
    setup_repos(github)
    with running_app(github, tmp_path) as app:
        n = open_service_pr(github, {"deploy/demo-service/service.yaml": _with_line(line, text)})
        deliver(app, github, SERVICE, n, "opened")
        spec = check(github, n, SPEC)
        assert spec.conclusion == "failure"
        assert [(a["path"], a["start_line"], a["title"]) for a in spec.annotations] == [
            ("deploy/demo-service/service.yaml", line, field)
        ], spec.annotations
        assert check(github, n, PROVISION).conclusion == "failure"
        assert github.pulls(INFRA) == [] and sorted(github.repo(INFRA).branches) == ["main"]
        assert not any(c.path.startswith(f"/repos/{INFRA}") and c.method != "GET" for c in github.calls)


def test_accepted_spec_renders_exactly_one_module_block(github: Any, tmp_path: Path) -> None:
    setup_repos(github)
    with running_app(github, tmp_path) as app:
        opened_and_proposed(app, github, service_files(owner="team_a-1", cpu=1024, memory=3072, desired=4,
                                                       image="acme/demo.service_x"))  # fmt: skip
    label, attrs = module_block(github.file(INFRA, "lemi/demo-service", TF))
    assert label == "demo_service"
    assert set(attrs) == TF_ATTRIBUTES
    assert {k: v for k, v in attrs.items() if k != "source"} == {
        "name": "demo-service", "owner": "team_a-1", "repository": SERVICE, "image": "acme/demo.service_x",
        "cpu": 1024, "memory": 3072, "desired_count": 4, "environments": ["staging", "prod"], "domain": "lemon",
    }  # fmt: skip


def test_renderer_escapes_hostile_strings_even_without_validation() -> None:
    """Defence in depth: bypass the spec's validation and the .tf still has one block, the same attributes."""
    hostile = '"}\nresource "x" "y" {\n  a = "${file("/etc/passwd")}%{ if true }x%{ endif }\\'
    spec = {"image": "demo-service", "resource": {"cpu": 512, "memory": 1024}}
    service = ServiceFile.model_validate({"name": "demo-service", "owner": "infra", "spec": spec})
    service = service.model_copy(update={"owner": hostile, "spec": service.spec.model_copy(update={"image": hostile})})
    text = render_service_module(service, parse_config(LEMI_YML), repository=SERVICE, pull_request=7)
    label, attrs = module_block(text)
    assert label == "demo_service" and set(attrs) == TF_ATTRIBUTES
    assert "${" not in text.replace("$${", "") and "%{" not in text.replace("%%{", "")


# --- 10. nothing to do; two services ------------------------------------------------------------------


def test_pr_without_deploy_files_does_nothing(github: Any, tmp_path: Path) -> None:
    setup_repos(github)
    with running_app(github, tmp_path) as app:
        n = open_service_pr(github, {"README.md": "better docs\n", "deploy/README.md": "how we deploy\n"})
        start = mark(github)
        deliver(app, github, SERVICE, n, "opened")
        assert writes_since(github, start) == [], github.describe_calls()
        assert github.check_runs(SERVICE) == [] and github.comments(SERVICE, n) == []
        assert github.pulls(INFRA) == []


def test_two_services_merge_only_after_both_infra_prs(github: Any, tmp_path: Path) -> None:
    setup_repos(github)
    files = {**service_files(), **service_files("demo-service-worker")}
    with running_app(github, tmp_path) as app:
        n = open_service_pr(github, files)
        deliver(app, github, SERVICE, n, "opened")
        pulls = {p.head_ref: p for p in github.pulls(INFRA)}
        assert sorted(pulls) == ["lemi/demo-service", "lemi/demo-service-worker"]
        (link,) = lemi_comments(github, SERVICE, n)
        for pull in pulls.values():
            assert pr_url(github, INFRA, pull.number) in link.body
        worker_tf = github.file(INFRA, "lemi/demo-service-worker", "services/demo-service-worker.tf")
        assert module_block(worker_tf)[0] == "demo_service_worker"
        assert check(github, n, PROVISION).status == "in_progress"

        merge_infra(app, github, pulls["lemi/demo-service"].number)
        assert not github.pull(SERVICE, n).merged
        assert github.calls_to("PUT", f"/repos/{SERVICE}/pulls/{n}/merge") == []
        provision = check(github, n, PROVISION)
        assert (provision.status, provision.conclusion) == ("in_progress", None)
        assert "demo-service-worker" in provision.output["title"]

        merge_infra(app, github, pulls["lemi/demo-service-worker"].number)
        assert github.pull(SERVICE, n).merged
        provision = check(github, n, PROVISION)
        assert (provision.status, provision.conclusion) == ("completed", "success")
        assert len(lemi_comments(github, SERVICE, n)) == 1


def test_both_infra_prs_merged_at_once_report_the_merge(github: Any, tmp_path: Path) -> None:
    setup_repos(github)
    files = {**service_files(), **service_files("demo-service-worker")}
    with running_app(github, tmp_path) as app:
        n = open_service_pr(github, files)
        deliver(app, github, SERVICE, n, "opened")
        numbers = [p.number for p in github.pulls(INFRA)]
        for number in numbers:
            github.merge_pull_request(INFRA, number, merge_method="squash", user="infra-lead")
        # the first merge attempt waits 1 s (secondary rate limit): the other job overlaps it deterministically
        github.secondary_rate_limit("PUT", rf"^/repos/{SERVICE}/pulls/{n}/merge$", retry_after=1)
        for number in numbers:
            response = app.deliver("pull_request", for_pull_request(github, INFRA, number, "closed"))
            assert response.json() == {"status": "queued"}
        assert all(r["state"] == "done" for r in app.drain())
        assert github.pull(SERVICE, n).merged
        assert check(github, n, PROVISION).conclusion == "success"
        (comment,) = lemi_comments(github, SERVICE, n)
        assert "not merged" not in comment.body, comment.body
        assert "merged" in comment.body and "squash" in comment.body, comment.body  # the merge is reported
        assert github.faults == []  # the rate limit that makes the two jobs overlap was served
        merges = github.calls_to("PUT", f"/repos/{SERVICE}/pulls/{n}/merge")
        assert [c.status for c in merges].count(200) == 1, [c.status for c in merges]


# --- 11. spoofed infra PRs ------------------------------------------------------------------------------


def _spoof(app: RunningApp, github: Any, user: str, user_type: str) -> int:
    n = open_service_pr(github)
    marker = f"<!-- lemi:service-pr {SERVICE}#{n} -->"
    spoof = github.open_pull_request(
        INFRA, "lemi/demo-service", {TF: 'module "demo_service" {}\n'}, user=user, title="Provision demo-service",
        body=f"{marker}\nStatic infrastructure for **demo-service**",
    )  # fmt: skip
    with github._lock:
        github.pull(INFRA, spoof).user_type = user_type
    start = mark(github)
    merge_infra(app, github, spoof)
    assert github.pull(INFRA, spoof).merged
    assert not github.pull(SERVICE, n).merged, "lemi merged a service PR for an infra PR it did not open"
    assert not any(c.path.startswith(f"/repos/{SERVICE}/") for c in writes_since(github, start))
    return n


def test_spoofed_infra_pr_by_a_human_does_not_merge_service_pr(github: Any, tmp_path: Path) -> None:
    setup_repos(github)
    with running_app(github, tmp_path) as app:
        n = _spoof(app, github, "mallory", "User")
        assert github.check_runs(SERVICE) == [] and github.comments(SERVICE, n) == []


def test_spoofed_infra_pr_by_another_bot_does_not_merge_service_pr(github: Any, tmp_path: Path) -> None:
    setup_repos(github)
    with running_app(github, tmp_path) as app:
        _spoof(app, github, "github-actions[bot]", "Bot")


def test_infra_pr_marker_pointing_elsewhere_does_not_merge_an_unrelated_pr(github: Any, tmp_path: Path) -> None:
    setup_repos(github)
    with running_app(github, tmp_path) as app:
        n, infra = opened_and_proposed(app, github)
        unrelated = github.open_pull_request(SERVICE, "unrelated", {"src/app.py": "print('unreviewed')\n"})
        with github._lock:
            pull = github.pull(INFRA, infra.number)
            pull.body = (pull.body or "").replace(f"{SERVICE}#{n} -->", f"{SERVICE}#{unrelated} -->")
        merge_infra(app, github, infra.number)
        assert not github.pull(SERVICE, unrelated).merged


# --- 12. lemi provision (CLI) ------------------------------------------------------------------------------


TOKENS = [
    pytest.param("personal"),
    pytest.param("installation"),  # e.g. a CI job's App installation token
]


@pytest.fixture
def cli_env(github: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> list[str]:
    installation = setup_repos(github)
    config = tmp_path / "lemi.yml"
    config.write_text(LEMI_YML)
    if getattr(request, "param", "personal") == "installation":
        token = github.installation_token(installation)
    else:
        token = github.add_user_token("ghp_provisionflowtoken", "octocat")
    monkeypatch.setenv("GITHUB_API_URL", github.url)
    monkeypatch.setenv("GH_AUTH_TOKEN", token)
    monkeypatch.delenv("LEMI_CONFIG", raising=False)
    return ["--config", str(config)]


def test_cli_provision_without_token_is_a_usage_error(
    github: Any, cli_env: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    n = open_service_pr(github)
    monkeypatch.delenv("GH_AUTH_TOKEN")
    assert main([*cli_env, "provision", "--pr", str(n), "--repo", SERVICE]) == 2
    assert "GH_AUTH_TOKEN" in capsys.readouterr().err
    assert github.calls == []


@pytest.mark.parametrize("cli_env", TOKENS, indirect=True)
def test_cli_provision_opens_the_infra_pr(github: Any, cli_env: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    n = open_service_pr(github)
    code = main([*cli_env, "provision", "--pr", str(n), "--repo", SERVICE, "-s", "demo-service"])
    out, err = capsys.readouterr()
    assert code == 0, err
    infra = only_infra_pr(github)
    assert f"demo-service: infra pull request {pr_url(github, INFRA, infra.number)}" in out
    assert infra.head_ref == "lemi/demo-service" and f"{SERVICE}#{n}" in (infra.body or "")
    assert module_block(github.file(INFRA, "lemi/demo-service", TF))[1]["name"] == "demo-service"
    # run again: the same PR, reused
    assert main([*cli_env, "provision", "--pr", str(n), "--repo", SERVICE, "-s", "demo-service"]) == 0
    assert only_infra_pr(github).number == infra.number
    assert len(github.calls_to("POST", f"/repos/{INFRA}/pulls")) == 1


@pytest.mark.parametrize("cli_env", TOKENS, indirect=True)
def test_cli_provision_lists_problems_of_an_invalid_spec(
    github: Any, cli_env: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    n = open_service_pr(github, {"deploy/demo-service/service.yaml": INVALID_SERVICE_YAML})
    code = main([*cli_env, "provision", "--pr", str(n), "--repo", SERVICE, "-s", "demo-service"])
    out, err = capsys.readouterr()
    assert code == 1
    assert "deploy/demo-service/service.yaml:9:" in err and "memory 8192 does not go with cpu 512" in err
    assert "deploy/demo-service/service.yaml:2:" in err and "deploy/demo-service/service.yaml:6:" in err
    assert "not provisioned" in out
    assert github.pulls(INFRA) == []


@pytest.mark.parametrize("cli_env", TOKENS, indirect=True)
def test_cli_provision_refuses_a_service_another_repository_owns(
    github: Any, cli_env: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """`lemi provision` goes through the same ownership check as the App: the infra file names
    acme/demo-service as the owner, so acme/intruder's PR for the same service writes nothing."""
    github.commit(
        INFRA,
        "main",
        {TF: 'module "demo_service" {\n  name       = "demo-service"\n  repository = "acme/demo-service"\n}\n'},
    )
    installation = next(iter(github.installations))
    github.add_repo("acme/intruder", files={"README.md": "x\n"}, installation=installation)
    github.set_permission("acme/intruder", "octocat", "admin")
    n = github.open_pull_request("acme/intruder", BRANCH, service_files())
    writes = len(github.writes())
    code = main([*cli_env, "provision", "--pr", str(n), "--repo", "acme/intruder"])
    out, err = capsys.readouterr()
    assert code == 1
    assert "demo-service: refused: `demo-service` is owned by acme/demo-service" in err
    assert [c.path for c in github.writes()[writes:] if c.path.startswith(f"/repos/{INFRA}/")] == []
