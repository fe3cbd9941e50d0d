"""Webhook inputs: the real example payloads of @octokit/webhooks-examples.

* :func:`example` -- a deep copy of one real payload (``event``, ``action``);
* :func:`all_examples` -- every (event, payload) in the package (58 events);
* :func:`signed` -- the headers and exact body bytes GitHub would POST, signed
  with ``X-Hub-Signature-256`` (and the legacy ``X-Hub-Signature``);
* :func:`retarget` -- rewrite any example so it describes a repository and an
  installation of a :class:`~fakes.github.FakeGitHub` (URLs point at the fake);
* builders that start from the real example and make it describe the fake's
  state: :func:`for_pull_request`, :func:`for_push`, :func:`for_issue_comment`.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import hmac
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fakes.github import FakeGitHub

EXAMPLES_PATH = (
    Path(__file__).resolve().parent.parent
    / "npm"
    / "node_modules"
    / "@octokit"
    / "webhooks-examples"
    / "api.github.com"
    / "index.json"
)
ZERO_SHA = "0" * 40


@functools.cache
def _index() -> dict[str, dict[str, Any]]:
    with open(EXAMPLES_PATH, "rb") as handle:
        return {entry["name"]: entry for entry in json.load(handle)}


def events() -> list[str]:
    return sorted(_index())


def example(
    event: str, action: str | None = None, index: int = 0, *, with_installation: bool = False
) -> dict[str, Any]:
    """A deep copy of the ``index``-th real example of ``event`` (with ``action``, when given;
    ``with_installation``: only examples that carry an ``installation``)."""
    entry = _index().get(event)
    if entry is None:
        raise KeyError(f"no webhook examples for {event!r}; known: {', '.join(events())}")
    found = [
        p
        for p in entry["examples"]
        if (action is None or p.get("action") == action) and (not with_installation or "installation" in p)
    ]
    if not found:
        raise KeyError(f"no {event} example with action={action!r} (actions: {entry['actions']})")
    return copy.deepcopy(found[index])


def all_examples() -> Iterator[tuple[str, dict[str, Any]]]:
    """Every (event, payload) in the package, payloads deep-copied."""
    for name, entry in sorted(_index().items()):
        for payload in entry["examples"]:
            yield name, copy.deepcopy(payload)


def signature(secret: str | bytes, body: bytes) -> str:
    key = secret.encode() if isinstance(secret, str) else secret
    return "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest()


def signed(
    event: str,
    payload: Any,
    secret: str | bytes,
    delivery: str | None = None,
    *,
    hook_id: int = 1,
    target_id: int | None = None,
) -> tuple[dict[str, str], bytes]:
    """(headers, body) of a delivery exactly as GitHub sends it."""
    body = json.dumps(payload, separators=(",", ":")).encode()
    key = secret.encode() if isinstance(secret, str) else secret
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "GitHub-Hookshot/2a3b4c5",
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery or str(uuid.uuid4()),
        "X-GitHub-Hook-ID": str(hook_id),
        "X-GitHub-Hook-Installation-Target-Type": "integration",
        "X-GitHub-Hook-Installation-Target-ID": str(target_id if target_id is not None else 424242),
        "X-Hub-Signature": "sha1=" + hmac.new(key, body, hashlib.sha1).hexdigest(),
        "X-Hub-Signature-256": signature(key, body),
    }
    return headers, body


# --- making an example describe the fake ----------------------------------------------------------


def _replace(value: Any, pairs: list[tuple[str, str]]) -> Any:
    if isinstance(value, str):
        for old, new in pairs:
            value = value.replace(old, new)
        return value
    if isinstance(value, dict):
        return {k: _replace(v, pairs) for k, v in value.items()}
    if isinstance(value, list):
        return [_replace(v, pairs) for v in value]
    return value


def _user(fake: FakeGitHub, template: dict[str, Any] | None, login: str, type_: str | None = None) -> dict[str, Any]:
    """The fake's user, keeping the extra keys of the example's shape (``name``/``email`` in pushes)."""
    user = fake.user_json(login, type_)
    if template:
        merged = {
            **template,
            **{k: v for k, v in user.items() if k in template or k in ("login", "id", "node_id", "type")},
        }
        if "name" in template:
            merged["name"] = login
        if "email" in template:
            merged["email"] = f"{user['id']}+{login}@users.noreply.github.com"
        return merged
    return user


def retarget(
    fake: FakeGitHub,
    payload: dict[str, Any],
    full_name: str | None = None,
    *,
    sender: str | None = None,
    installation: int | None = None,
) -> dict[str, Any]:
    """Rewrite a real example in place so it speaks of ``full_name`` in the fake: every URL
    points at the fake, ``repository`` (id, names, owner, private, fork, default branch),
    ``organization``, ``installation`` (the repository's, or ``installation``) and ``sender``."""
    old = payload.get("repository", {}).get("full_name")
    pairs: list[tuple[str, str]] = []
    repo = fake.repo(full_name) if full_name else None
    if old and repo:
        pairs.append((old, repo.full_name))
    pairs += [("https://api.github.com", fake.url), ("https://github.com", fake.html_url)]
    payload.update(_replace(payload, pairs))
    if repo is not None and "repository" in payload:
        data = payload["repository"]
        owner = _user(fake, data.get("owner"), repo.owner)
        data.update(
            id=repo.id,
            node_id=fake.repo_json(repo.full_name)["node_id"],
            name=repo.name,
            full_name=repo.full_name,
            owner=owner,
            private=repo.private,
            fork=repo.fork,
            default_branch=repo.default_branch,
        )
        if "visibility" in data:
            data["visibility"] = "private" if repo.private else "public"
        if "master_branch" in data:
            data["master_branch"] = repo.default_branch
        if owner.get("type") == "Organization":
            org = payload.get("organization") or {}
            payload["organization"] = {
                **org,
                "login": repo.owner,
                "id": owner["id"],
                "node_id": owner["node_id"],
                "url": f"{fake.url}/orgs/{repo.owner}",
                "repos_url": f"{fake.url}/orgs/{repo.owner}/repos",
                "events_url": f"{fake.url}/orgs/{repo.owner}/events",
                "hooks_url": f"{fake.url}/orgs/{repo.owner}/hooks",
                "issues_url": f"{fake.url}/orgs/{repo.owner}/issues",
                "members_url": f"{fake.url}/orgs/{repo.owner}/members{{/member}}",
                "public_members_url": f"{fake.url}/orgs/{repo.owner}/public_members{{/member}}",
                "avatar_url": owner["avatar_url"],
                "description": org.get("description"),
            }
        else:
            payload.pop("organization", None)
    installation_id = installation if installation is not None else (repo.installation_id if repo is not None else None)
    if installation_id is not None:
        payload["installation"] = {"id": installation_id, "node_id": _installation_node(installation_id)}
    if sender is not None:
        payload["sender"] = _user(fake, payload.get("sender"), sender)
    return payload


def _installation_node(installation_id: int) -> str:
    import base64

    text = f"IntegrationInstallation{installation_id}"
    return base64.b64encode(f"023:{text}".encode()).decode()


def for_pull_request(
    fake: FakeGitHub,
    full_name: str,
    number: int,
    action: str = "opened",
    *,
    sender: str | None = None,
    before: str | None = None,
    after: str | None = None,
) -> dict[str, Any]:
    """A ``pull_request`` delivery about PR ``number`` as the fake has it now (head, base,
    user, state, merged, merge_commit_sha...). ``synchronize`` gets ``before``/``after``
    (``after`` defaults to the head sha)."""
    try:
        payload = example("pull_request", action, with_installation=True)
    except KeyError:
        payload = example("pull_request", "opened", with_installation=True)
        payload["action"] = action
    pull = fake.pull(full_name, number)
    retarget(
        fake,
        payload,
        full_name,
        sender=sender or (pull.merged_by if action == "closed" and pull.merged_by else pull.user),
    )
    payload["number"] = number
    payload["pull_request"] = {**payload["pull_request"], **fake.pull_json(full_name, number)}
    if action == "synchronize":
        payload["before"] = before or (fake.commit_info(pull.head_repo, pull.head_sha).parents or [ZERO_SHA])[0]
        payload["after"] = after or pull.head_sha
    else:
        payload.pop("before", None)
        payload.pop("after", None)
    return payload


def for_push(
    fake: FakeGitHub,
    full_name: str,
    branch: str,
    before: str | None,
    after: str | None,
    *,
    sender: str = "octocat",
) -> dict[str, Any]:
    """A ``push`` delivery of ``branch`` moving from ``before`` to ``after`` (None or 40 zeros:
    created/deleted), with the commits in between as the fake has them."""
    before = before or ZERO_SHA
    after = after or ZERO_SHA
    payload = example("push", index=0, with_installation=True)
    retarget(fake, payload, full_name, sender=sender)
    repo = fake.repo(full_name)
    objects = fake.objects
    shas = [] if after == ZERO_SHA else objects.commits_between(None if before == ZERO_SHA else before, after)
    if before == ZERO_SHA and shas:
        # a new branch: only the commits not already on the default branch are "distinct"
        default = repo.refs.get(f"heads/{repo.default_branch}")
        if default and default != after:
            shas = objects.commits_between(default, after) or shas[-1:]
        else:
            shas = shas[-1:]
    commits = [_push_commit(fake, repo.full_name, sha, sender) for sha in shas[-20:]]
    short = lambda sha: sha[:12]  # noqa: E731
    payload.update(
        ref=f"refs/heads/{branch}",
        before=before,
        after=after,
        created=before == ZERO_SHA,
        deleted=after == ZERO_SHA,
        forced=before != ZERO_SHA and after != ZERO_SHA and not objects.is_ancestor(before, after),
        base_ref=None,
        compare=f"{fake.html_url}/{repo.full_name}/compare/{short(before)}...{short(after)}",
        commits=commits,
        head_commit=commits[-1]
        if commits
        else (None if after == ZERO_SHA else _push_commit(fake, repo.full_name, after, sender)),
        pusher={"name": sender, "email": f"{sender}@users.noreply.github.com"},
    )
    return payload


def _push_commit(fake: FakeGitHub, full_name: str, sha: str, login: str) -> dict[str, Any]:
    c = fake.objects.commits[sha]
    before = fake.objects.commits[c.parents[0]].files if c.parents else {}
    person = {"name": c.author, "email": f"{c.author}@users.noreply.github.com", "username": c.author}
    return {
        "id": sha,
        "tree_id": c.tree_sha,
        "distinct": True,
        "message": c.message,
        "timestamp": c.date.replace("Z", "+00:00"),
        "url": f"{fake.html_url}/{full_name}/commit/{sha}",
        "author": person,
        "committer": person,
        "added": sorted(p for p in c.files if p not in before),
        "removed": sorted(p for p in before if p not in c.files),
        "modified": sorted(p for p in c.files if p in before and before[p] != c.files[p]),
    }


def for_issue_comment(
    fake: FakeGitHub,
    full_name: str,
    number: int,
    comment_id: int,
    action: str = "created",
    *,
    sender: str | None = None,
    previous_body: str | None = None,
) -> dict[str, Any]:
    """An ``issue_comment`` delivery about comment ``comment_id`` (see ``fake.add_comment``) on
    issue or PR ``number``; ``issue.pull_request`` is present exactly when it is a PR."""
    payload = example("issue_comment", action, with_installation=False)
    comment = fake.comments_by_id[comment_id]
    retarget(fake, payload, full_name, sender=sender or comment.user)
    issue = fake.issue_json(full_name, number)
    merged_issue = {**payload["issue"], **issue}
    if "pull_request" not in issue:
        merged_issue.pop("pull_request", None)
    if "reactions" in payload["issue"]:
        merged_issue["reactions"] = {
            **payload["issue"]["reactions"],
            "url": f"{issue['url']}/reactions",
            "total_count": 0,
            **{k: 0 for k in ("+1", "-1", "laugh", "hooray", "confused", "heart", "rocket", "eyes")},
        }
    payload["issue"] = merged_issue
    payload["comment"] = {**payload["comment"], **fake.comment_json(comment_id)}
    if action == "edited":
        payload["changes"] = {"body": {"from": previous_body if previous_body is not None else ""}}
    else:
        payload.pop("changes", None)
    return payload
