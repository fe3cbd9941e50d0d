"""The GitHub fake is itself tested: it must answer like GitHub and refuse what GitHub refuses.

If the fake accepted a request GitHub rejects, every test built on it could pass
against a broken product; so each refusal here is asserted, not just each success.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import aiohttp
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from fakes import webhooks
from fakes.github import FakeGitHub, teardown_failure
from fakes.openapi import spec
from gidgethub import BadRequest, GitHubBroken, HTTPException
from gidgethub.aiohttp import GitHubAPI
from gidgethub.apps import get_installation_access_token

TESTS = Path(__file__).resolve().parent
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def http(
    fake: FakeGitHub, method: str, path: str, token: str | None = None, body: Any = None, raw: bytes | None = None
) -> tuple[int, dict[str, str], Any]:
    """A plain synchronous HTTP call (as a subprocess or a sync test would make)."""
    headers = {"User-Agent": "lemi-test", "Accept": "application/vnd.github+json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    if data is not None:
        headers["Content-Type"] = "application/json"
    request = urllib.request.Request(fake.url + path, data=data, method=method, headers=headers)
    try:
        with _opener.open(request, timeout=10) as response:
            text = response.read()
            return response.status, dict(response.headers), json.loads(text) if text else None
    except urllib.error.HTTPError as exc:
        text = exc.read()
        return exc.code, dict(exc.headers), json.loads(text) if text else None


def kinds(violations: list[Any]) -> list[str]:
    return [v.kind for v in violations]


# --- the OpenAPI checker ----------------------------------------------------------------------------


def test_spec_is_parsed_once() -> None:
    first = spec()
    first.match("GET", "/rate_limit")
    assert spec() is first  # every test of the process shares one parse (how long it takes is not asserted)
    assert len(first.doc["paths"]) > 500


def test_documented_calls_have_no_violation() -> None:
    s = spec()
    assert s.check("POST", "/repos/acme/svc/issues/3/comments", body=b'{"body": "hi"}') == []
    assert s.check("GET", "/repos/acme/svc/pulls", [("state", "all"), ("head", "acme:x"), ("per_page", "100")]) == []
    assert s.check("PUT", "/repos/acme/svc/pulls/3/merge", body=b"null") == []  # nullable body
    assert s.check("PUT", "/repos/acme/svc/pulls/3/merge", body=b"") == []  # optional body
    assert s.check("GET", "/repos/acme/svc/git/trees/main", [("recursive", "1")]) == []


def test_path_templates_match_like_githubs_router() -> None:
    s = spec()

    def template(method: str, path: str) -> tuple[str, dict[str, str]] | None:
        found, _ = s.match(method, path)
        return (found.operation.template, found.params) if found else None

    assert template("GET", "/repos/o/r/contents/deploy/svc/environment/prod.yaml") == (
        "/repos/{owner}/{repo}/contents/{path}",
        {"owner": "o", "repo": "r", "path": "deploy/svc/environment/prod.yaml"},
    )
    assert template("GET", "/repos/o/r/git/ref/heads/lemi/provision-svc")[1]["ref"] == "heads/lemi/provision-svc"
    assert template("PATCH", "/repos/o/r/git/refs/heads/x")[1]["ref"] == "heads/x"
    assert template("DELETE", "/repos/o/r/git/refs/heads%2Fx")[1]["ref"] == "heads/x"  # encoded slash
    assert (
        template("GET", "/repos/o/r/commits/abc123/check-runs")[0] == "/repos/{owner}/{repo}/commits/{ref}/check-runs"
    )
    assert template("GET", "/repos/o/r/commits/abc123")[0] == "/repos/{owner}/{repo}/commits/{ref}"
    assert template("PATCH", "/repos/o/r/issues/comments/7")[0] == "/repos/{owner}/{repo}/issues/comments/{comment_id}"
    assert template("GET", "/repos/o/r/pulls/abc") is None  # integer parameter
    # {pull_number} is a single segment: no slash may hide in it
    assert template("GET", "/repos/o/r/pulls/1/2") is None


def test_undocumented_path_and_wrong_method_are_violations() -> None:
    s = spec()
    assert kinds(s.check("GET", "/repos/acme/svc/pull/1")) == ["unknown-path"]
    assert kinds(s.check("GET", "/api/v3/repos/acme/svc")) == ["unknown-path"]
    wrong = s.check("POST", "/repos/acme/svc/pulls/1")
    assert kinds(wrong) == ["method"] and "GET, PATCH" in wrong[0].message
    assert kinds(s.check("PUT", "/repos/acme/svc/issues/comments/1")) == ["method"]


def test_invalid_bodies_are_violations() -> None:
    s = spec()
    missing = s.check("POST", "/repos/acme/svc/pulls", body=json.dumps({"title": "t", "base": "main"}))
    assert kinds(missing) == ["body"] and "'head' is a required property" in missing[0].message
    wrong_type = s.check("POST", "/repos/acme/svc/issues/1/comments", body=json.dumps({"body": 5}))
    assert kinds(wrong_type) == ["body"] and "not of type 'string'" in wrong_type[0].message
    enum = s.check("POST", "/repos/acme/svc/issues/comments/1/reactions", body=json.dumps({"content": "thumbsup"}))
    assert kinds(enum) == ["body"] and "thumbsup" in enum[0].message
    nested = s.check(
        "POST",
        "/repos/acme/svc/check-runs",
        body=json.dumps(
            {
                "name": "n",
                "head_sha": "a" * 40,
                "output": {"title": "t", "summary": "s", "annotations": [{"path": "a", "start_line": 1}]},
            }
        ),
    )
    assert kinds(nested) == ["body"] * len(nested) and any("end_line" in v.message for v in nested)
    via_ref = s.check(
        "POST", "/app/installations/1/access_tokens", body=json.dumps({"permissions": {"contents": "writ"}})
    )
    assert kinds(via_ref) == ["body"]  # the enum lives behind $ref: #/components/schemas/app-permissions
    assert kinds(s.check("POST", "/repos/acme/svc/issues/1/comments", body=b"")) == ["body"]  # required body
    assert kinds(s.check("POST", "/repos/acme/svc/issues/1/comments", body=b"{not json")) == ["body"]
    typo = s.check(
        "POST", "/repos/acme/svc/pulls", body=json.dumps({"title": "t", "head": "x", "base": "main", "bodyy": "typo"})
    )
    assert kinds(typo) == ["body"] and "bodyy" in typo[0].message
    date = s.check(
        "POST",
        "/repos/acme/svc/check-runs",
        body=json.dumps({"name": "n", "head_sha": "a" * 40, "started_at": "yesterday"}),
    )
    assert kinds(date) == ["body"]
    nullable = s.check("POST", "/repos/acme/svc/deployments", body=json.dumps({"ref": "main", "environment": None}))
    assert kinds(nullable) == ["body"]  # not nullable in the description


def test_answers_are_checked_against_response_schemas() -> None:
    s = spec()
    op = s.operation("GET", "/repos/{owner}/{repo}/pulls/{pull_number}")
    good = s.example(op, 200)
    good["requested_teams"] = []  # (GitHub's own example lacks a required field there)
    assert s.check_response(op, 200, good) == []
    broken = {**good, "merged": "no"}
    del broken["head"]
    assert kinds(s.check_response(op, 200, broken)) == ["response", "response"]
    assert (
        s.check_response(op, 404, {"message": "Not Found", "documentation_url": "https://docs.github.com/rest"}) == []
    )


def test_query_parameters_are_checked() -> None:
    s = spec()
    unknown = s.check("GET", "/repos/acme/svc/pulls", [("status", "open")])
    assert kinds(unknown) == ["query"] and "'status' is not documented" in unknown[0].message
    assert kinds(s.check("GET", "/repos/acme/svc/pulls", [("state", "merged")])) == ["query"]
    assert kinds(s.check("GET", "/repos/acme/svc/pulls", [("per_page", "ten")])) == ["query"]
    assert kinds(s.check("GET", "/repos/acme/svc/contents/a.txt", [("branch", "main")])) == ["query"]


# --- authentication -----------------------------------------------------------------------------------


def test_app_jwt_rules(github: FakeGitHub) -> None:
    now = int(time.time())
    assert http(github, "GET", "/app", github.app_jwt())[0] == 200
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    refused = {
        "expired": github.app_jwt(iat=now - 700, exp=now - 100),
        "longer than 10 minutes": github.app_jwt(iat=now - 30, exp=now + 600),
        "issued in the future": github.app_jwt(iat=now + 120, exp=now + 300),
        "wrong key": github.app_jwt(key=other_key),
        "wrong issuer": github.app_jwt(iss="999"),
        "not RS256": jwt.encode(
            {"iat": now - 60, "exp": now + 500, "iss": str(github.app_id)},
            "a-shared-secret-of-32-bytes-or-more",
            algorithm="HS256",
        ),
        "garbage": "a.b.c",
    }
    for why, token in refused.items():
        status, _, body = http(github, "GET", "/app", token)
        assert status == 401, why
        assert body["message"], why
    assert http(github, "GET", "/app")[0] == 401
    installation = github.add_installation("acme", ["svc"])
    assert http(github, "GET", "/app", github.installation_token(installation))[0] == 401  # a JWT is required
    assert http(github, "GET", "/repos/acme/svc/installation", github.app_jwt())[2]["id"] == installation
    assert http(github, "GET", "/repos/acme/svc/pulls", github.app_jwt())[0] == 403  # JWT is not a repo credential


def test_installation_tokens_are_scoped_and_expire(github: FakeGitHub) -> None:
    acme = github.add_installation("acme", ["svc", "infra"])
    other = github.add_installation("umbrella", ["app"])
    status, _, body = http(github, "POST", f"/app/installations/{acme}/access_tokens", github.app_jwt(), {})
    assert status == 201 and body["token"].startswith("ghs_") and body["expires_at"].endswith("Z")
    token = body["token"]
    assert http(github, "GET", "/repos/acme/svc", token)[0] == 200
    assert http(github, "GET", "/repos/umbrella/app", token)[0] == 404  # other installation: GitHub says 404
    assert http(github, "GET", "/repos/acme/absent", token)[0] == 404
    assert http(github, "GET", "/repos/umbrella/app", github.installation_token(other))[0] == 200
    # restricted to one repository
    _, _, narrow = http(
        github, "POST", f"/app/installations/{acme}/access_tokens", github.app_jwt(), {"repositories": ["svc"]}
    )
    assert [r["full_name"] for r in narrow["repositories"]] == ["acme/svc"]
    assert http(github, "GET", "/repos/acme/svc", narrow["token"])[0] == 200
    assert http(github, "GET", "/repos/acme/infra", narrow["token"])[0] == 404
    assert (
        http(github, "POST", f"/app/installations/{acme}/access_tokens", github.app_jwt(), {"repositories": ["app"]})[0]
        == 422
    )
    assert http(github, "POST", "/app/installations/999/access_tokens", github.app_jwt(), {})[0] == 404
    # reduced permissions
    _, _, read_only = http(
        github,
        "POST",
        f"/app/installations/{acme}/access_tokens",
        github.app_jwt(),
        {"permissions": {"contents": "read"}},
    )
    assert http(github, "GET", "/repos/acme/svc/contents/README.md", read_only["token"])[0] == 200
    write = {"message": "m", "content": base64.b64encode(b"x").decode()}
    assert http(github, "PUT", "/repos/acme/svc/contents/x.txt", read_only["token"], write)[0] == 403
    assert http(github, "POST", "/repos/acme/svc/issues/1/comments", read_only["token"], {"body": "x"})[0] == 403
    # expiry and unknown tokens
    github.expire_token(token)
    assert http(github, "GET", "/repos/acme/svc", token)[0] == 401
    assert http(github, "GET", "/repos/acme/svc", "ghs_" + "x" * 36)[0] == 401
    short = github.installation_token(acme, ttl=0.2)
    assert http(github, "GET", "/repos/acme/svc", short)[0] == 200
    time.sleep(0.3)
    assert http(github, "GET", "/repos/acme/svc", short)[0] == 401


def test_personal_tokens_and_anonymous_access(github: FakeGitHub) -> None:
    github.add_repo("acme/svc")
    github.add_repo("acme/public", private=False)
    github.add_user_token("ghp_alice", "alice")
    assert http(github, "GET", "/repos/acme/svc", "ghp_alice")[0] == 200
    assert http(github, "GET", "/repos/acme/svc", "ghp_mallory")[0] == 401
    assert http(github, "GET", "/repos/acme/svc")[0] == 404  # private, anonymous
    assert http(github, "GET", "/repos/acme/public")[0] == 200
    assert http(github, "POST", "/repos/acme/public/git/refs", None, {"ref": "refs/heads/x", "sha": "a" * 40})[0] == 401
    number = github.open_pull_request("acme/svc", "feature", {"a.txt": "a"})
    status, _, comment = http(
        github, "POST", f"/repos/acme/svc/issues/{number}/comments", "ghp_alice", {"body": "/lemi status"}
    )
    assert status == 201 and comment["user"]["login"] == "alice" and comment["user"]["type"] == "User"
    assert comment["performed_via_github_app"] is None
    # check runs are for GitHub Apps only
    check = {"name": "lemi / spec", "head_sha": github.pull("acme/svc", number).head_sha}
    assert http(github, "POST", "/repos/acme/svc/check-runs", "ghp_alice", check)[0] == 403


def test_gidgethub_mints_jwt_and_installation_token(github: FakeGitHub) -> None:
    installation = github.add_installation("acme", ["svc"])

    async def run() -> dict[str, Any]:
        async with aiohttp.ClientSession() as session:
            gh = GitHubAPI(session, "lemi-test", base_url=github.url)
            return await get_installation_access_token(
                gh, installation_id=str(installation), app_id=str(github.app_id), private_key=github.private_key_pem
            )

    import asyncio

    token = asyncio.run(run())
    assert github.tokens[token["token"]].installation_id == installation
    assert github.calls[-1].auth == "app"


def test_user_agent_is_required(github: FakeGitHub) -> None:
    github.add_repo("acme/public", private=False)
    request = urllib.request.Request(github.url + "/repos/acme/public", headers={"User-Agent": ""})
    with pytest.raises(urllib.error.HTTPError) as refused:
        _opener.open(request, timeout=5)
    assert refused.value.code == 403


# --- a small flow through gidgethub --------------------------------------------------------------------


async def test_flow_with_gidgethub(github: FakeGitHub) -> None:
    installation = github.add_installation("acme", [])
    github.add_repo(
        "acme/svc", {"README.md": "# svc\n", "deploy/svc/service.yaml": "name: svc\n"}, installation=installation
    )
    token = github.installation_token(installation)
    repo = "/repos/acme/svc"
    async with aiohttp.ClientSession() as session:
        gh = GitHubAPI(session, "lemi-test", oauth_token=token, base_url=github.url)
        main = await gh.getitem(f"{repo}/git/ref/heads/main")
        ref = await gh.post(f"{repo}/git/refs", data={"ref": "refs/heads/lemi/svc", "sha": main["object"]["sha"]})
        assert ref["ref"] == "refs/heads/lemi/svc"
        with pytest.raises(BadRequest) as dup:  # 422: already exists
            await gh.post(f"{repo}/git/refs", data={"ref": "refs/heads/lemi/svc", "sha": main["object"]["sha"]})
        assert dup.value.status_code == 422

        current = await gh.getitem(
            f"{repo}/contents/{{+path}}?ref=lemi/svc", url_vars={"path": "deploy/svc/service.yaml"}
        )
        assert base64.b64decode(current["content"]) == b"name: svc\n" and current["encoding"] == "base64"
        new = base64.b64encode(b"name: svc\nowner: infra\n").decode()
        with pytest.raises(BadRequest) as no_sha:
            await gh.put(
                f"{repo}/contents/deploy/svc/service.yaml", data={"message": "m", "content": new, "branch": "lemi/svc"}
            )
        assert no_sha.value.status_code == 422
        put = await gh.put(
            f"{repo}/contents/deploy/svc/service.yaml",
            data={"message": "Set owner", "content": new, "branch": "lemi/svc", "sha": current["sha"]},
        )
        assert put["commit"]["message"] == "Set owner"
        created = await gh.put(
            f"{repo}/contents/services/svc.tf",
            data={
                "message": "Add svc",
                "content": base64.b64encode(b'module "svc" {}\n').decode(),
                "branch": "lemi/svc",
            },
        )
        assert created["content"]["path"] == "services/svc.tf"
        assert github.file("acme/svc", "lemi/svc", "services/svc.tf") == 'module "svc" {}\n'
        assert github.file("acme/svc", "main", "services/svc.tf") is None
        tree = await gh.getitem(f"{repo}/git/trees/lemi/svc?recursive=1")
        assert {e["path"] for e in tree["tree"] if e["type"] == "blob"} == {
            "README.md",
            "deploy/svc/service.yaml",
            "services/svc.tf",
        }

        pr = await gh.post(
            f"{repo}/pulls", data={"title": "Provision svc", "head": "lemi/svc", "base": "main", "body": "by lemi"}
        )
        assert (
            pr["number"] == 1 and pr["head"]["sha"] == created["commit"]["sha"] and pr["user"]["login"] == "lemi[bot]"
        )
        assert pr["head"]["repo"]["full_name"] == "acme/svc" and pr["head"]["repo"]["fork"] is False
        assert pr["merged"] is False and pr["mergeable"] is True and pr["changed_files"] == 2
        with pytest.raises(BadRequest) as again:
            await gh.post(f"{repo}/pulls", data={"title": "Provision svc", "head": "lemi/svc", "base": "main"})
        assert "already exists" in json.dumps(again.value.errors)
        found = [p async for p in gh.getiter(f"{repo}/pulls?head=acme:lemi/svc&state=open")]
        assert [p["number"] for p in found] == [1] and "merged" not in found[0]  # the list shape has no "merged"
        assert [p async for p in gh.getiter(f"{repo}/pulls?head=acme:other")] == []
        files = [f async for f in gh.getiter(f"{repo}/pulls/1/files")]
        assert sorted((f["filename"], f["status"]) for f in files) == [
            ("deploy/svc/service.yaml", "modified"),
            ("services/svc.tf", "added"),
        ]

        comment = await gh.post(f"{repo}/issues/1/comments", data={"body": "Provisioning..."})
        assert comment["user"] == {**comment["user"], "login": "lemi[bot]", "type": "Bot"}
        edited = await gh.patch(f"{repo}/issues/comments/{comment['id']}", data={"body": "Provisioned"})
        assert edited["body"] == "Provisioned"
        reaction = await gh.post(f"{repo}/issues/comments/{comment['id']}/reactions", data={"content": "rocket"})
        assert reaction["content"] == "rocket"
        assert [r["content"] async for r in gh.getiter(f"{repo}/issues/comments/{comment['id']}/reactions")] == [
            "rocket"
        ]
        assert [c["body"] async for c in gh.getiter(f"{repo}/issues/1/comments")] == ["Provisioned"]

        head = pr["head"]["sha"]
        run = await gh.post(
            f"{repo}/check-runs",
            data={"name": "lemi / provision", "head_sha": head, "status": "in_progress", "external_id": "svc"},
        )
        assert (
            run["status"] == "in_progress"
            and run["conclusion"] is None
            and [p["number"] for p in run["pull_requests"]] == [1]
        )
        annotation = {
            "path": "deploy/svc/service.yaml",
            "start_line": 2,
            "end_line": 2,
            "annotation_level": "failure",
            "message": "bad",
        }
        done = await gh.patch(
            f"{repo}/check-runs/{run['id']}",
            data={"conclusion": "failure", "output": {"title": "1 error", "summary": "s", "annotations": [annotation]}},
        )
        assert done["status"] == "completed" and done["output"]["annotations_count"] == 1
        listed = await gh.getitem(f"{repo}/commits/{head}/check-runs?check_name=lemi%20/%20provision")
        assert listed["total_count"] == 1 and listed["check_runs"][0]["conclusion"] == "failure"
        [stored] = github.check_runs("acme/svc", head, "lemi / provision")
        assert stored.annotations == [annotation] and stored.external_id == "svc"

        merged = await gh.put(f"{repo}/pulls/1/merge", data={"merge_method": "squash", "sha": head})
        assert merged["merged"] is True
        assert github.file("acme/svc", "main", "services/svc.tf") == 'module "svc" {}\n'
        assert github.pull("acme/svc", 1).merged and github.pull("acme/svc", 1).state == "closed"
        assert (await gh.getitem(f"{repo}/pulls/1"))["merge_commit_sha"] == merged["sha"]
        await gh.delete(f"{repo}/git/refs/heads/lemi/svc")
        assert github.branch_sha("acme/svc", "lemi/svc") is None

        deployment = await gh.post(
            f"{repo}/deployments",
            data={
                "ref": merged["sha"],
                "environment": "staging",
                "auto_merge": False,
                "required_contexts": [],
                "payload": {"service": "svc"},
            },
        )
        assert deployment["sha"] == merged["sha"] and deployment["creator"]["login"] == "lemi[bot]"
        status = await gh.post(
            f"{repo}/deployments/{deployment['id']}/statuses",
            data={
                "state": "success",
                "environment_url": "https://svc-internal.staging.lemon",
                "log_url": "https://logs/1",
            },
        )
        assert status["state"] == "success" and status["environment_url"] == "https://svc-internal.staging.lemon"
        assert [d["id"] async for d in gh.getiter(f"{repo}/deployments?environment=staging")] == [deployment["id"]]
        assert [s["state"] async for s in gh.getiter(f"{repo}/deployments/{deployment['id']}/statuses")] == ["success"]
        commit = await gh.getitem(f"{repo}/commits/main")
        assert commit["sha"] == merged["sha"]
    [d] = github.deployments("acme/svc")
    assert d.payload == {"service": "svc"} and d.state == "success"
    assert [c.body for c in github.comments("acme/svc", 1)] == ["Provisioned"]
    assert all(c.token == token for c in github.calls)
    assert {c.method for c in github.writes()} == {"POST", "PUT", "PATCH", "DELETE"}
    assert github.violations == []  # includes the fake's own answers, checked against the response schemas


def test_pagination_follows_link_headers(github: FakeGitHub) -> None:
    installation = github.add_installation("acme", ["svc"])
    number = github.open_pull_request("acme/svc", "feature", {"a": "a"})
    for i in range(5):
        github.add_comment("acme/svc", number, f"c{i}")
    token = github.installation_token(installation)
    status, headers, page = http(github, "GET", f"/repos/acme/svc/issues/{number}/comments?per_page=2", token)
    assert status == 200 and [c["body"] for c in page] == ["c0", "c1"]
    assert 'rel="next"' in headers["Link"] and 'rel="last"' in headers["Link"]

    async def everything() -> list[str]:
        async with aiohttp.ClientSession() as session:
            gh = GitHubAPI(session, "lemi-test", oauth_token=token, base_url=github.url)
            return [c["body"] async for c in gh.getiter(f"/repos/acme/svc/issues/{number}/comments?per_page=2")]

    import asyncio

    assert asyncio.run(everything()) == [f"c{i}" for i in range(5)]


# --- behaviour that products get wrong ---------------------------------------------------------------


def test_merge_refusals(github: FakeGitHub) -> None:
    installation = github.add_installation("acme", [])
    github.add_repo(
        "acme/infra", {"services/a.tf": "a\n"}, installation=installation, merge_methods=["merge", "squash"]
    )
    token = github.installation_token(installation)
    one = github.open_pull_request("acme/infra", "one", {"services/svc.tf": "x\n"})
    github.set_unmergeable("acme/infra", one, 'Required status check "plan" is expected.')
    status, _, body = http(github, "PUT", f"/repos/acme/infra/pulls/{one}/merge", token, {"merge_method": "squash"})
    assert (status, body["message"]) == (405, 'Required status check "plan" is expected.')
    two = github.open_pull_request("acme/infra", "two", {"services/two.tf": "2\n"})
    assert http(github, "PUT", f"/repos/acme/infra/pulls/{two}/merge", token, {"merge_method": "rebase"})[0] == 405
    assert http(github, "PUT", f"/repos/acme/infra/pulls/{two}/merge", token, {"sha": "0" * 40})[0] == 409
    three = github.open_pull_request("acme/infra", "three", {"services/a.tf": "three\n"})
    github.commit("acme/infra", "main", {"services/a.tf": "main moved\n"})
    assert http(github, "GET", f"/repos/acme/infra/pulls/{three}", token)[2]["mergeable"] is False
    assert http(github, "PUT", f"/repos/acme/infra/pulls/{three}/merge", token, {})[0] == 405  # conflict
    assert http(github, "PUT", f"/repos/acme/infra/pulls/{two}/merge", token, None)[0] == 200
    assert http(github, "PUT", f"/repos/acme/infra/pulls/{two}/merge", token, None)[0] == 405  # already merged
    assert http(github, "PUT", "/repos/acme/infra/pulls/99/merge", token, None)[0] == 404
    main = github.commit_info("acme/infra", "main")
    assert len(main.parents) == 2 and main.message.startswith(f"Merge pull request #{two}")
    assert github.pull("acme/infra", two).merged_by == "lemi[bot]"


def test_git_refs_and_contents_refusals(github: FakeGitHub) -> None:
    installation = github.add_installation("acme", ["svc"])
    token = github.installation_token(installation)
    main = github.branch_sha("acme/svc", "main")
    assert main is not None
    assert http(github, "POST", "/repos/acme/svc/git/refs", token, {"ref": "heads/x", "sha": main})[0] == 422
    assert http(github, "POST", "/repos/acme/svc/git/refs", token, {"ref": "refs/heads/x", "sha": "f" * 40})[0] == 422
    assert http(github, "GET", "/repos/acme/svc/git/ref/heads/absent", token)[0] == 404
    side = github.commit("acme/svc", "side", {"s": "s"})
    github.commit("acme/svc", "main", {"m": "m"})
    assert (
        http(
            github,
            "PATCH",
            "/repos/acme/svc/git/refs/heads/side",
            token,
            {"sha": github.branch_sha("acme/svc", "main")},
        )[0]
        == 422
    )
    forced = http(github, "PATCH", "/repos/acme/svc/git/refs/heads/side", token, {"sha": main, "force": True})
    assert forced[0] == 200 and forced[2]["object"]["sha"] == main != side
    assert http(github, "DELETE", "/repos/acme/svc/git/refs/heads/absent", token)[0] == 422
    content = {"message": "m", "content": base64.b64encode(b"new").decode()}
    assert http(github, "PUT", "/repos/acme/svc/contents/README.md", token, {**content, "sha": "0" * 40})[0] == 409
    assert http(github, "PUT", "/repos/acme/svc/contents/a.txt", token, {**content, "branch": "absent"})[0] == 404
    assert http(github, "PUT", "/repos/acme/svc/contents/a.txt", token, {**content, "content": "%%%"})[0] == 422
    assert http(github, "GET", "/repos/acme/svc/contents/README.md?ref=absent", token)[0] == 404
    root = http(github, "GET", "/repos/acme/svc/contents/", token)
    assert root[0] == 200 and [e["path"] for e in root[2]] == ["README.md", "m"]
    github.commit("acme/svc", "main", {"deploy/svc/service.yaml": "a", "deploy/svc/environment/prod.yaml": "b"})
    status, _, entries = http(github, "GET", "/repos/acme/svc/contents/deploy/svc", token)
    assert status == 200 and [(e["name"], e["type"]) for e in entries] == [
        ("environment", "dir"),
        ("service.yaml", "file"),
    ]
    big = "x" * 200
    github.commit("acme/svc", "main", {"big.txt": big})
    _, _, file = http(github, "GET", "/repos/acme/svc/contents/big.txt", token)
    assert "\n" in file["content"] and base64.b64decode(file["content"]).decode() == big  # wrapped like GitHub's
    tree = http(github, "GET", "/repos/acme/svc/git/trees/main", token)[2]
    assert "deploy/svc/service.yaml" not in {e["path"] for e in tree["tree"]}  # not recursive
    blob_sha = hashlib.sha1(b"blob 200\0" + big.encode()).hexdigest()
    assert file["sha"] == blob_sha  # real git blob ids


def test_deleting_a_head_branch_closes_its_pull_request(github: FakeGitHub) -> None:
    installation = github.add_installation("acme", ["svc"])
    number = github.open_pull_request("acme/svc", "feature", {"a": "a"})
    assert (
        http(github, "DELETE", "/repos/acme/svc/git/refs/heads/feature", github.installation_token(installation))[0]
        == 204
    )
    assert github.pull("acme/svc", number).state == "closed" and not github.pull("acme/svc", number).merged


def test_pull_request_creation_refusals(github: FakeGitHub) -> None:
    installation = github.add_installation("acme", ["svc"])
    token = github.installation_token(installation)
    github.create_branch("acme/svc", "empty")
    assert "No commits between" in json.dumps(
        http(github, "POST", "/repos/acme/svc/pulls", token, {"title": "t", "head": "empty", "base": "main"})[2]
    )
    assert (
        http(github, "POST", "/repos/acme/svc/pulls", token, {"title": "t", "head": "absent", "base": "main"})[0] == 422
    )
    github.commit("acme/svc", "feature", {"a": "a"})
    assert (
        http(github, "POST", "/repos/acme/svc/pulls", token, {"title": "t", "head": "feature", "base": "absent"})[0]
        == 422
    )
    closed = http(github, "POST", "/repos/acme/svc/pulls", token, {"title": "t", "head": "feature", "base": "main"})[2]
    status, _, body = http(github, "PATCH", f"/repos/acme/svc/pulls/{closed['number']}", token, {"state": "closed"})
    assert status == 200 and body["state"] == "closed" and body["merged"] is False


def test_deployment_rules(github: FakeGitHub) -> None:
    installation = github.add_installation("acme", ["svc"])
    token = github.installation_token(installation)
    github.create_branch("acme/svc", "develop")
    github.commit("acme/svc", "main", {"hotfix": "1"})
    develop = github.branch_sha("acme/svc", "develop")
    # GitHub's default auto_merge merges the default branch into a lagging ref instead of deploying
    status, _, body = http(
        github, "POST", "/repos/acme/svc/deployments", token, {"ref": "develop", "environment": "staging"}
    )
    assert status == 202 and "Auto-merged" in body["message"]
    assert github.branch_sha("acme/svc", "develop") != develop and github.deployments("acme/svc") == []
    # without required_contexts=[], every check must have succeeded
    sha = github.branch_sha("acme/svc", "develop")
    http(
        github,
        "POST",
        "/repos/acme/svc/check-runs",
        token,
        {"name": "lemi / deploy (staging)", "head_sha": sha, "status": "in_progress"},
    )
    status, _, body = http(
        github,
        "POST",
        "/repos/acme/svc/deployments",
        token,
        {"ref": "develop", "environment": "staging", "auto_merge": False},
    )
    assert status == 409 and body["errors"][0]["contexts"] == [
        {"context": "lemi / deploy (staging)", "state": "pending"}
    ]
    ok = {"ref": "develop", "environment": "staging", "auto_merge": False, "required_contexts": []}
    first = http(github, "POST", "/repos/acme/svc/deployments", token, ok)[2]
    second = http(github, "POST", "/repos/acme/svc/deployments", token, ok)[2]
    assert first["production_environment"] is False
    http(github, "POST", f"/repos/acme/svc/deployments/{first['id']}/statuses", token, {"state": "success"})
    http(github, "POST", f"/repos/acme/svc/deployments/{second['id']}/statuses", token, {"state": "success"})
    assert [d.state for d in github.deployments("acme/svc")] == ["inactive", "success"]  # auto_inactive
    assert (
        http(github, "POST", "/repos/acme/svc/deployments", token, {"ref": "absent", "required_contexts": []})[0] == 422
    )
    assert http(github, "POST", "/repos/acme/svc/deployments/1/statuses", token, {"state": "success"})[0] == 404


def test_check_run_rules(github: FakeGitHub) -> None:
    installation = github.add_installation("acme", ["svc"])
    token = github.installation_token(installation)
    sha = github.branch_sha("acme/svc", "main")
    assert http(github, "POST", "/repos/acme/svc/check-runs", token, {"name": "n", "head_sha": "a" * 40})[0] == 422
    assert (
        http(
            github, "POST", "/repos/acme/svc/check-runs", token, {"name": "n", "head_sha": sha, "status": "completed"}
        )[0]
        == 422
    )
    across = {
        "path": "a",
        "start_line": 1,
        "end_line": 3,
        "start_column": 1,
        "annotation_level": "warning",
        "message": "m",
    }
    body = {"name": "n", "head_sha": sha, "output": {"title": "t", "summary": "s", "annotations": [across]}}
    assert http(github, "POST", "/repos/acme/svc/check-runs", token, body)[0] == 422
    first = http(github, "POST", "/repos/acme/svc/check-runs", token, {"name": "n", "head_sha": sha})[2]
    second = http(
        github, "POST", "/repos/acme/svc/check-runs", token, {"name": "n", "head_sha": sha, "conclusion": "success"}
    )[2]
    assert first["status"] == "queued" and second["status"] == "completed"
    latest = http(github, "GET", "/repos/acme/svc/commits/main/check-runs", token)[2]
    assert [r["id"] for r in latest["check_runs"]] == [second["id"]]
    every = http(github, "GET", "/repos/acme/svc/commits/main/check-runs?filter=all", token)[2]
    assert every["total_count"] == 2


def test_collaborator_permissions(github: FakeGitHub) -> None:
    installation = github.add_installation("acme", ["svc"])
    token = github.installation_token(installation)
    for login, role in {"ada": "admin", "max": "maintain", "wes": "write", "tia": "triage", "rob": "read"}.items():
        github.set_permission("acme/svc", login, role)
    expected = {"ada": "admin", "max": "write", "wes": "write", "tia": "read", "rob": "read", "stranger": "none"}
    for login, legacy in expected.items():
        status, _, body = http(github, "GET", f"/repos/acme/svc/collaborators/{login}/permission", token)
        assert status == 200 and body["permission"] == legacy and body["user"]["login"] == login
    assert http(github, "GET", "/repos/acme/svc/collaborators/max/permission", token)[2]["role_name"] == "maintain"
    assert http(github, "GET", "/repos/acme/svc/collaborators/tia/permission", token)[2]["role_name"] == "triage"


def test_webhook_deliveries_log(github: FakeGitHub) -> None:
    ids = [github.add_delivery("push", status_code=200 if i % 2 else 500) for i in range(5)]
    status, headers, first = http(github, "GET", "/app/hook/deliveries?per_page=2", github.app_jwt())
    assert status == 200 and [d["id"] for d in first] == ids[::-1][:2]
    seen = [d["id"] for d in first]
    while "Link" in headers:
        next_url = headers["Link"].split(">")[0].lstrip("<").removeprefix(github.url)
        status, headers, page = http(github, "GET", next_url, github.app_jwt())
        seen += [d["id"] for d in page]
    assert seen == ids[::-1]
    failed = http(github, "GET", "/app/hook/deliveries?status=failure", github.app_jwt())[2]
    assert {d["status_code"] for d in failed} == {500} and failed[0]["status"] == "Invalid HTTP Response: 500"
    assert http(github, "POST", f"/app/hook/deliveries/{ids[0]}/attempts", github.app_jwt())[0] == 202
    assert [d.guid for d in github.redelivered] == [github.deliveries[0].guid] and github.redelivered[0].redelivery
    assert http(github, "POST", "/app/hook/deliveries/1/attempts", github.app_jwt())[0] == 404


# --- faults, headers, violations ----------------------------------------------------------------------


async def test_fault_injection_then_success(github: FakeGitHub) -> None:
    installation = github.add_installation("acme", ["svc"])
    token = github.installation_token(installation)
    github.fail_next("GET", r"^/repos/acme/svc$", status=502)
    github.secondary_rate_limit("POST", r"/issues/\d+/comments$")
    number = github.open_pull_request("acme/svc", "feature", {"a": "a"})
    async with aiohttp.ClientSession() as session:
        gh = GitHubAPI(session, "lemi-test", oauth_token=token, base_url=github.url)
        with pytest.raises(GitHubBroken) as broken:
            await gh.getitem("/repos/acme/svc")
        assert broken.value.status_code == 502
        assert (await gh.getitem("/repos/acme/svc"))["full_name"] == "acme/svc"
        with pytest.raises(HTTPException) as limited:
            await gh.post(f"/repos/acme/svc/issues/{number}/comments", data={"body": "x"})
        assert limited.value.status_code == 403 and limited.value.headers["retry-after"] == "1"
        assert "secondary rate limit" in str(limited.value)
        await gh.post(f"/repos/acme/svc/issues/{number}/comments", data={"body": "x"})
    assert [c.status for c in github.calls] == [502, 200, 403, 201]
    assert len(github.comments("acme/svc", number)) == 1
    assert github.faults == []
    assert "502 (installation)" in github.describe_calls()


async def test_waiting_for_background_work(github: FakeGitHub) -> None:
    import asyncio
    import threading

    github.add_repo("acme/svc")
    number = github.open_pull_request("acme/svc", "feature", {"a": "a"})
    threading.Timer(0.05, lambda: github.add_comment("acme/svc", number, "later")).start()
    comments = await github.await_for(lambda: github.comments("acme/svc", number), timeout=2)
    assert [c.body for c in comments] == ["later"]
    with pytest.raises(AssertionError, match="calls to the GitHub fake"):
        github.wait_for(lambda: github.deployments("acme/svc"), timeout=0.05)
    await asyncio.sleep(0)


def test_rate_limit_headers(github: FakeGitHub) -> None:
    installation = github.add_installation("acme", ["svc"])
    token = github.installation_token(installation)
    _, first, _ = http(github, "GET", "/repos/acme/svc", token)
    _, second, _ = http(github, "GET", "/repos/acme/svc", token)
    assert int(first["x-ratelimit-limit"]) == 5000
    assert int(second["x-ratelimit-remaining"]) == int(first["x-ratelimit-remaining"]) - 1
    assert int(first["x-ratelimit-reset"]) > time.time()
    status, _, body = http(github, "GET", "/rate_limit", token)
    assert status == 200 and body["resources"]["core"]["remaining"] == int(second["x-ratelimit-remaining"])


def test_violations_are_recorded_and_answered(github: FakeGitHub) -> None:
    recorded = github.expect_violations()
    installation = github.add_installation("acme", ["svc"])
    token = github.installation_token(installation)
    number = github.open_pull_request("acme/svc", "feature", {"a": "a"})
    status, _, body = http(github, "POST", f"/repos/acme/svc/issues/{number}/comments", token, {"bdy": "typo"})
    assert status == 422 and "Invalid request" in body["message"]
    assert http(github, "GET", "/repos/acme/svc/pull/1", token)[0] == 404
    assert http(github, "GET", "/repos/acme/svc/pulls?status=open", token)[0] == 422
    assert http(github, "GET", "/repos/acme/svc/releases", token)[0] == 501  # documented, not in the fake
    github._get_app = lambda ctx: 1 / 0  # type: ignore[method-assign]  # a bug in the fake itself...
    assert http(github, "GET", "/app", github.app_jwt())[0] == 500
    del github._get_app
    assert kinds(recorded) == ["body", "body", "unknown-path", "query", "not-implemented", "fake-error"]
    assert "ZeroDivisionError" in recorded[-1].message  # ...is reported with its traceback
    assert "'body' is a required property" in str(recorded[0]) and "bdy" in str(recorded[1])
    assert github.comments("acme/svc", number) == []  # nothing was written
    assert teardown_failure(github) is None  # expected: the fixture lets this test pass


def test_teardown_failure_reports_every_violation(github: FakeGitHub) -> None:
    assert teardown_failure(github) is None
    github.violations.append(spec().check("GET", "/nowhere")[0])
    report = teardown_failure(github)
    assert report is not None and "GET /nowhere" in report and "unknown-path" in report
    github.take_violations()
    github.expect_violations()
    assert "no request violated" in (teardown_failure(github) or "")
    github._violations_expected = False


def test_teardown_failure_reports_a_fault_that_was_never_served(github: FakeGitHub) -> None:
    github.fail_next("POST", r"/check-runs$", status=502)
    report = teardown_failure(github)
    assert report is not None and "never served" in report and "/check-runs$" in report
    github.fail_next("GET", r"/pulls$", status=502, times=1000)  # "GitHub keeps failing": may be left over
    github.faults[:] = [f for f in github.faults if f.times >= 1000]
    assert teardown_failure(github) is None
    github.faults.clear()


def test_the_github_fixture_fails_a_test_that_broke_the_api(tmp_path: Path) -> None:
    """End to end, in a child pytest: a violation turns a passing test into an error."""
    (tmp_path / "test_child.py").write_text(
        textwrap.dedent(
            """
            import json, urllib.request
            from conftest import github, github_server  # noqa: F401  (the suite's fixtures)

            def test_sends_a_typo(github):
                installation = github.add_installation("acme", ["svc"])
                request = urllib.request.Request(
                    github.url + "/repos/acme/svc/pulls",
                    data=json.dumps({"title": "t", "head": "x", "base": "main", "draftt": True}).encode(),
                    method="POST",
                    headers={"Authorization": "token " + github.installation_token(installation), "User-Agent": "t"},
                )
                try:
                    urllib.request.build_opener(urllib.request.ProxyHandler({})).open(request)
                except Exception:
                    pass  # a careless test that ignores the answer would pass
            """
        )
    )
    env = {**os.environ, "PYTHONPATH": str(TESTS)}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-p",
            "no:randomly",
            str(tmp_path / "test_child.py"),
            "--rootdir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
    )
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "1 passed, 1 error" in output, output
    assert "draftt" in output and "POST /repos/acme/svc/pulls" in output, output


# --- webhooks -----------------------------------------------------------------------------------------


def test_all_examples_are_loaded() -> None:
    examples = list(webhooks.all_examples())
    assert len({event for event, _ in examples}) == 58
    assert len(examples) > 300
    assert {"pull_request", "push", "issue_comment", "installation", "check_run"} <= {e for e, _ in examples}
    first = webhooks.example("pull_request", "opened")
    first["number"] = -1
    assert webhooks.example("pull_request", "opened")["number"] != -1  # deep copies
    with pytest.raises(KeyError):
        webhooks.example("pull_request", "exploded")


def test_signed_delivery() -> None:
    payload = webhooks.example("ping")
    headers, body = webhooks.signed("ping", payload, "s3cret", delivery="d-1")
    assert json.loads(body) == payload
    assert headers["X-GitHub-Event"] == "ping" and headers["X-GitHub-Delivery"] == "d-1"
    expected = "sha256=" + hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
    assert headers["X-Hub-Signature-256"] == expected
    assert headers["User-Agent"].startswith("GitHub-Hookshot/") and headers["Content-Type"] == "application/json"
    assert (
        webhooks.signed("ping", payload, "s3cret")[0]["X-GitHub-Delivery"]
        != webhooks.signed("ping", payload, "s3cret")[0]["X-GitHub-Delivery"]
    )


def test_pull_request_payload_describes_the_fake(github: FakeGitHub) -> None:
    installation = github.add_installation("acme", ["svc"])
    number = github.open_pull_request("acme/svc", "feature", {"deploy/svc/service.yaml": "name: svc\n"}, user="dev")
    payload = webhooks.for_pull_request(github, "acme/svc", number, "opened")
    pull = github.pull("acme/svc", number)
    assert payload["action"] == "opened" and payload["number"] == number
    assert payload["installation"]["id"] == installation
    assert payload["repository"]["full_name"] == "acme/svc" and payload["repository"]["owner"]["login"] == "acme"
    assert payload["repository"]["private"] is True and payload["repository"]["id"] == github.repo("acme/svc").id
    assert payload["organization"]["login"] == "acme"
    pr = payload["pull_request"]
    assert (pr["head"]["sha"], pr["head"]["ref"], pr["base"]["ref"]) == (pull.head_sha, "feature", "main")
    assert pr["user"]["login"] == "dev" and payload["sender"]["login"] == "dev" and pr["merged"] is False
    assert "Codertocat" not in json.dumps(payload) and "api.github.com" not in json.dumps(payload)
    # links in the payload lead to the fake
    token = github.installation_token(installation)
    assert http(github, "GET", pr["url"].removeprefix(github.url), token)[2]["number"] == number

    fork = github.open_pull_request("acme/svc", "patch", {"a": "a"}, from_fork=True, user="stranger")
    forked = webhooks.for_pull_request(github, "acme/svc", fork, "opened")["pull_request"]
    assert forked["head"]["repo"]["fork"] is True and forked["head"]["repo"]["full_name"] == "stranger/svc"
    assert forked["head"]["label"] == "stranger:patch" and forked["base"]["repo"]["full_name"] == "acme/svc"

    before = pull.head_sha
    after = github.commit("acme/svc", "feature", {"b": "b"})
    sync = webhooks.for_pull_request(github, "acme/svc", number, "synchronize")
    assert (sync["before"], sync["after"], sync["pull_request"]["head"]["sha"]) == (before, after, after)

    github.merge_pull_request("acme/svc", number, user="lead")
    closed = webhooks.for_pull_request(github, "acme/svc", number, "closed")
    assert closed["pull_request"]["merged"] is True and closed["pull_request"]["state"] == "closed"
    assert closed["pull_request"]["merge_commit_sha"] == github.branch_sha("acme/svc", "main")
    assert closed["sender"]["login"] == "lead"


def test_push_payload_describes_the_fake(github: FakeGitHub) -> None:
    installation = github.add_installation("acme", ["svc"])
    before = github.branch_sha("acme/svc", "main")
    one = github.commit("acme/svc", "main", {"deploy/svc/service.yaml": "a"}, "one")
    two = github.commit("acme/svc", "main", {"deploy/svc/service.yaml": "b", "README.md": None}, "two")
    payload = webhooks.for_push(github, "acme/svc", "main", before, two, sender="dev")
    assert payload["ref"] == "refs/heads/main" and (payload["before"], payload["after"]) == (before, two)
    assert [c["id"] for c in payload["commits"]] == [one, two] and payload["head_commit"]["id"] == two
    assert payload["commits"][0]["added"] == ["deploy/svc/service.yaml"]
    assert payload["commits"][1]["modified"] == ["deploy/svc/service.yaml"] and payload["commits"][1]["removed"] == [
        "README.md"
    ]
    assert payload["installation"]["id"] == installation and payload["repository"]["full_name"] == "acme/svc"
    assert isinstance(payload["repository"]["created_at"], int)  # push payloads keep GitHub's odd types
    assert payload["created"] is False and payload["deleted"] is False and payload["forced"] is False
    deleted = webhooks.for_push(github, "acme/svc", "old", one, None)
    assert deleted["deleted"] is True and deleted["commits"] == [] and deleted["head_commit"] is None


def test_issue_comment_payload_describes_the_fake(github: FakeGitHub) -> None:
    installation = github.add_installation("acme", ["svc"])
    number = github.open_pull_request("acme/svc", "feature", {"a": "a"})
    comment = github.add_comment("acme/svc", number, "/lemi status -e staging", user="dev")
    payload = webhooks.for_issue_comment(github, "acme/svc", number, comment)
    assert payload["action"] == "created" and payload["comment"]["id"] == comment
    assert payload["comment"]["body"] == "/lemi status -e staging" and payload["comment"]["user"]["login"] == "dev"
    assert payload["issue"]["number"] == number and "pull_request" in payload["issue"]
    assert payload["installation"]["id"] == installation and payload["sender"]["login"] == "dev"
    issue = github.open_issue("acme/svc")
    on_issue = webhooks.for_issue_comment(
        github, "acme/svc", issue, github.add_comment("acme/svc", issue, "/lemi help")
    )
    assert "pull_request" not in on_issue["issue"]
    bot = github.add_comment("acme/svc", number, "done", user="lemi[bot]", user_type="Bot")
    assert webhooks.for_issue_comment(github, "acme/svc", number, bot)["sender"]["type"] == "Bot"


def test_retarget_any_example(github: FakeGitHub) -> None:
    installation = github.add_installation("acme", ["svc"])
    payload = webhooks.retarget(github, webhooks.example("star", "created"), "acme/svc")
    assert payload["repository"]["full_name"] == "acme/svc" and payload["installation"]["id"] == installation
