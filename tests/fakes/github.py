"""One stateful GitHub for the whole suite, over real HTTP on 127.0.0.1.

``FakeGitHub`` is an aiohttp application running in its own thread with its
own event loop, so sync tests, async tests, starlette's TestClient and
subprocesses can all reach it at ``fake.url`` (use it as ``GITHUB_API_URL`` /
gidgethub ``base_url``: paths are exactly the OpenAPI paths, no ``/api/v3``).

Every request goes through, in order:

a. the OpenAPI check (:mod:`fakes.openapi`): an undocumented path or method is
   answered 404, an undocumented query parameter or an invalid body 422, an
   operation the fake does not implement 501 -- and every one of them is
   appended to ``fake.violations``; the ``github`` fixture fails the test at
   teardown when that list is not empty;
b. authentication like GitHub's: App JWTs (RS256, ``iss`` = app id, ``iat`` at
   most 60 s ahead, ``exp`` in the future and ``exp - iat`` <= 600 s) on
   ``/app/...`` and ``/repos/{owner}/{repo}/installation``; installation tokens
   (``ghs_...``, from ``POST /app/installations/{id}/access_tokens``, scoped to
   that installation's repositories and permissions, expiring) and personal
   tokens (:meth:`FakeGitHub.add_user_token`) elsewhere -- 401 otherwise, 404
   for a repository outside the token's installation;
c. recording in ``fake.calls`` (:class:`Call`);
d. GitHub's secondary limits on content-creating requests: per installation (or user, for a
   personal token), a POST, PATCH, PUT or DELETE beyond ``secondary_limits`` (80 in any
   minute, 500 in any hour) is answered 403 with ``retry-after`` and GitHub's "You have
   exceeded a secondary rate limit" message, as GitHub answers it; the windows are read from
   ``fake.clock`` (``time.monotonic``; a test moves time with a :class:`Clock`);
e. fault injection (:meth:`FakeGitHub.fail_next`);
f. a stateful handler answering GitHub-shaped JSON built from the documented
   examples, with GitHub's status codes; the answer is itself validated
   against the documented response schema (``kind="response"`` violations
   are defects of the fake).

State is reset with :meth:`FakeGitHub.reset` (the fixture does it per test).

GitHub Enterprise Server's layout is served too: ``<url>/api/v3/...`` is the same API
(``fake.ghes_api_url``), so a client that derives the API URL from a GHES web URL reaches
it. Besides the API, the fake serves GitHub's *web* side of the App manifest flow
(https://docs.github.com/apps/sharing-github-apps/registering-a-github-app-from-a-manifest):
a form POST of ``manifest`` to ``<url>/settings/apps/new?state=...`` or
``<url>/organizations/<org>/settings/apps/new?state=...`` is checked like GitHub checks it
(documented keys, ``url`` and ``hook_attributes.url``, permissions and their levels from the
OpenAPI ``app-permissions`` schema, known events, each event's permission, plus the fields
set with :meth:`FakeGitHub.expect_manifest`), recorded in ``fake.app_manifests``
(:class:`AppManifest`), and answered -- as if the user clicked "Create GitHub App" -- with a
302 to ``redirect_url?code=...&state=...``. A refused manifest is a ``manifest`` violation
and a 422 page. ``POST /app-manifests/{code}/conversions`` (no auth) then answers the new
App's id, slug, pem, webhook_secret, client_id and client_secret, once per code
(:meth:`FakeGitHub.register_manifest_code` registers a code without the web step).
"""

from __future__ import annotations

import asyncio
import base64
import copy
import datetime as dt
import fnmatch
import hashlib
import json
import re
import secrets
import threading
import time
import uuid
import zlib
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from html import escape as _escape_html
from typing import Any
from urllib.parse import unquote, urlencode

import jwt
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from fakes.gitobjects import Commit, ObjectStore, blob_sha, diff_files, three_way
from fakes.openapi import Operation, Violation, spec

HOST = "127.0.0.1"
DOCS = "https://docs.github.com/rest"
ROLES = ("admin", "maintain", "write", "triage", "read", "none")
LEGACY = {"admin": "admin", "maintain": "write", "write": "write", "triage": "read", "read": "read", "none": "none"}
DEFAULT_PERMISSIONS = {
    "metadata": "read",
    "contents": "write",
    "pull_requests": "write",
    "issues": "write",
    "checks": "write",
    "deployments": "write",
    "members": "read",
}
DEFAULT_EVENTS = ["pull_request", "push", "issue_comment"]
EPOCH = 1_700_000_000  # commit timestamps: deterministic shas
SECONDARY_LIMITS = (80, 500)  # content-creating requests a minute, an hour (GitHub's documented limits)
CONTENT_CREATING = frozenset({"POST", "PATCH", "PUT", "DELETE"})
SECONDARY_MESSAGE = "You have exceeded a secondary rate limit. Please wait a few minutes before you try again."
SECONDARY_DOCS = "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api#about-secondary-rate-limits"


class Clock:
    """A clock a test moves: ``fake.clock = clock.now`` for the fake's limits, and ``clock.sleep``
    for whatever would wait (lemi's writer), so minutes pass without waiting. ``auto`` (the
    default): a sleep moves the clock itself; otherwise a sleep lasts until the test
    :meth:`advance` moves the clock past its end."""

    def __init__(self, start: float = 1_000_000.0, *, auto: bool = True) -> None:
        self.time = start
        self.auto = auto
        self.slept = 0.0  # seconds the sleeps moved the clock (auto)
        self._moved: asyncio.Event | None = None

    def now(self) -> float:
        return self.time

    def advance(self, seconds: float) -> None:
        self.time += max(0.0, seconds)
        if self._moved is not None:
            self._moved.set()
            self._moved = None

    def sleep(self, seconds: float) -> Awaitable[None]:
        """Sleep until ``seconds`` after now: the end is fixed when it is called, not when
        the sleeping task first runs."""
        return self._until(self.time + max(0.0, seconds))

    async def _until(self, deadline: float) -> None:
        if self.auto:
            if deadline > self.time:
                self.slept += deadline - self.time
                self.advance(deadline - self.time)
            await asyncio.sleep(0)
            return
        while self.time < deadline:
            if self._moved is None:
                self._moved = asyncio.Event()
            await self._moved.wait()


class GitHubError(Exception):
    """Raised by a handler: answered as GitHub would (status + JSON body)."""

    def __init__(self, status: int, message: str = "Not Found", errors: list[Any] | None = None, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.body: dict[str, Any] = {"message": message, "documentation_url": DOCS, **extra}
        if errors is not None:
            self.body["errors"] = errors
        self.body["status"] = str(status)


def _not_found() -> GitHubError:
    return GitHubError(404, "Not Found")


def _validation(
    resource: str, field_: str | None = None, code: str = "invalid", message: str | None = None
) -> GitHubError:
    error: dict[str, Any] = {"resource": resource, "code": code}
    if field_:
        error["field"] = field_
    if message:
        error["message"] = message
    return GitHubError(422, "Validation Failed", [error])


# --- state --------------------------------------------------------------------------------


@dataclass
class Installation:
    id: int
    account: str
    account_type: str
    repositories: set[str]  # full names
    permissions: dict[str, str]
    events: list[str]
    repository_selection: str = "selected"
    suspended: bool = False


@dataclass
class Token:
    token: str
    kind: str  # "installation" | "user"
    expires_at: float | None
    installation_id: int | None = None
    login: str | None = None
    repositories: set[str] | None = None  # full names; None = all of the installation
    permissions: dict[str, str] = field(default_factory=dict)


@dataclass
class Repo:
    full_name: str
    id: int
    private: bool
    default_branch: str
    installation_id: int | None
    refs: dict[str, str] = field(default_factory=dict)  # "heads/main" -> sha, "tags/v1" -> sha
    fork: bool = False
    parent: str | None = None
    merge_methods: frozenset[str] = frozenset({"merge", "squash", "rebase"})
    created_at: str = ""
    permissions: dict[str, str] = field(default_factory=dict)  # login -> role
    next_number: int = 1

    @property
    def owner(self) -> str:
        return self.full_name.split("/")[0]

    @property
    def name(self) -> str:
        return self.full_name.split("/")[1]

    @property
    def branches(self) -> dict[str, str]:
        return {k[6:]: v for k, v in self.refs.items() if k.startswith("heads/")}


@dataclass
class User:
    login: str
    type: str = "User"  # User | Bot | Organization


@dataclass
class PullRequest:
    repo: str  # base repository full name
    number: int
    id: int
    head_repo: str
    head_ref: str
    head_sha: str
    base_ref: str
    title: str
    body: str | None
    user: str
    user_type: str = "User"
    state: str = "open"
    draft: bool = False
    merged: bool = False
    merged_at: str | None = None
    merged_by: str | None = None
    merge_commit_sha: str | None = None
    closed_at: str | None = None
    created_at: str = ""
    updated_at: str = ""
    unmergeable: str | None = None  # set_unmergeable(): the 405 message
    maintainer_can_modify: bool = False


@dataclass
class Issue:
    repo: str
    number: int
    id: int
    title: str
    body: str | None
    user: str
    state: str = "open"
    created_at: str = ""


@dataclass
class Reaction:
    id: int
    content: str
    user: str
    user_type: str
    created_at: str


@dataclass
class Comment:
    repo: str
    issue_number: int
    id: int
    body: str
    user: str
    user_type: str
    created_at: str
    updated_at: str
    via_app: bool = False
    reactions: list[Reaction] = field(default_factory=list)


@dataclass
class CheckRun:
    repo: str
    id: int
    name: str
    head_sha: str
    status: str
    conclusion: str | None
    started_at: str | None
    completed_at: str | None
    output: dict[str, Any]  # title, summary, text
    annotations: list[dict[str, Any]]
    external_id: str | None
    details_url: str | None
    check_suite_id: int
    actions: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class DeploymentStatus:
    id: int
    state: str
    description: str
    environment: str
    target_url: str
    log_url: str
    environment_url: str
    creator: str
    creator_type: str
    created_at: str


@dataclass
class Deployment:
    repo: str
    id: int
    sha: str
    ref: str
    task: str
    environment: str
    original_environment: str
    payload: Any
    description: str | None
    creator: str
    creator_type: str
    created_at: str
    transient_environment: bool
    production_environment: bool
    statuses: list[DeploymentStatus] = field(default_factory=list)

    @property
    def state(self) -> str | None:
        return self.statuses[-1].state if self.statuses else None


@dataclass
class Delivery:
    id: int
    guid: str
    delivered_at: str
    redelivery: bool
    status_code: int
    event: str
    action: str | None
    installation_id: int | None
    repository_id: int | None
    duration: float = 0.1
    payload: Any = None

    @property
    def status(self) -> str:
        return "OK" if 200 <= self.status_code < 300 else f"Invalid HTTP Response: {self.status_code}"


@dataclass
class AppManifest:
    """One App created through the manifest flow (web POST or :meth:`FakeGitHub.register_manifest_code`)."""

    code: str
    manifest: dict[str, Any]
    owner: str
    owner_type: str  # User | Organization
    state: str | None
    html_base: str  # the web host the App lives on
    created: float
    converted: bool = False
    app: dict[str, Any] | None = None  # the conversion's answer (with pem and secrets)


# keys GitHub documents for an App manifest, and which permission each event needs
MANIFEST_KEYS = frozenset(
    {
        "name",
        "url",
        "hook_attributes",
        "redirect_url",
        "callback_urls",
        "setup_url",
        "description",
        "public",
        "default_events",
        "default_permissions",
        "request_oauth_on_install",
        "setup_on_update",
    }
)
EVENT_PERMISSIONS = {
    "check_run": ("checks",),
    "check_suite": ("checks",),
    "create": ("contents",),
    "delete": ("contents",),
    "deployment": ("deployments",),
    "deployment_status": ("deployments",),
    "issue_comment": ("issues", "pull_requests"),
    "issues": ("issues",),
    "label": ("metadata",),
    "pull_request": ("pull_requests",),
    "pull_request_review": ("pull_requests",),
    "pull_request_review_comment": ("pull_requests",),
    "push": ("contents",),
    "release": ("contents",),
    "repository": ("metadata",),
    "status": ("statuses",),
    "workflow_run": ("actions",),
}
MANIFEST_CODE_TTL = 3600.0


@dataclass
class Call:
    method: str
    path: str  # decoded path, no query
    query: dict[str, str]
    body: Any  # parsed JSON, or the raw text, or None
    auth: str | None  # "app" | "installation" | "user" | None
    token: str | None
    installation_id: int | None
    login: str | None
    operation: str | None  # operationId
    template: str | None
    params: dict[str, str]
    status: int = 0
    response: Any = None
    limited: bool = False  # refused for the secondary limits

    def __str__(self) -> str:
        return f"{self.method} {self.path} -> {self.status}"


@dataclass
class Fault:
    method: str
    pattern: re.Pattern[str]
    status: int
    times: int
    headers: dict[str, str]
    body: Any


@dataclass
class _Ctx:
    method: str
    path: str
    query: dict[str, str]
    body: Any
    params: dict[str, str]
    op: Operation
    auth: str | None = None
    token: Token | None = None
    repo: Repo | None = None

    bot_login: str = "lemi[bot]"

    @property
    def actor(self) -> User:
        if self.token is None:
            return User("ghost")
        if self.token.kind == "installation":
            return User(self.bot_login, "Bot")
        return User(self.token.login or "ghost")

    @property
    def via_app(self) -> bool:
        return self.token is not None and self.token.kind == "installation"


_ROUTES: dict[tuple[str, str], tuple[str, str]] = {}


def route(method: str, template: str, auth: str = "repo") -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register a handler for one documented operation. auth: repo | app | any."""

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        _ROUTES[(method, template)] = (fn.__name__, auth)
        return fn

    return decorate


# permission needed by an installation token, per path template prefix (after /repos/{owner}/{repo})
_PERMISSIONS = [
    ("/pulls/{pull_number}/merge", "contents"),
    ("/pulls", "pull_requests"),
    ("/issues", "issues|pull_requests"),
    ("/check-runs", "checks"),
    ("/commits/{ref}/check-runs", "checks"),
    ("/deployments", "deployments"),
    ("/contents", "contents"),
    ("/git", "contents"),
    ("/commits", "contents"),
    ("/collaborators", "metadata"),
    ("", "metadata"),
]


def _now_iso(seconds: float | None = None) -> str:
    return dt.datetime.fromtimestamp(time.time() if seconds is None else seconds, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _node_id(kind: str, number: int | str) -> str:
    text = f"{kind}{number}"
    return base64.b64encode(f"0{len(kind)}:{text}".encode()).decode()


def _uid(login: str) -> int:
    return 10_000 + zlib.crc32(login.encode()) % 90_000_000


def _rewrite(value: Any, replacements: list[tuple[str, str]]) -> Any:
    if isinstance(value, str):
        for old, new in replacements:
            value = value.replace(old, new)
        return value
    if isinstance(value, dict):
        return {k: _rewrite(v, replacements) for k, v in value.items()}
    if isinstance(value, list):
        return [_rewrite(v, replacements) for v in value]
    return value


def _text(data: str | bytes) -> bytes:
    return data.encode() if isinstance(data, str) else data


_KEY_LOCK = threading.Lock()
_KEY: rsa.RSAPrivateKey | None = None


def _session_key() -> rsa.RSAPrivateKey:
    """One RSA key per process: generating one costs ~0.1 s."""
    global _KEY
    with _KEY_LOCK:
        if _KEY is None:
            _KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        return _KEY


# --- the fake -----------------------------------------------------------------------------


class FakeGitHub:
    """GitHub's REST API for one App, on http://127.0.0.1:<port> (see the module docstring)."""

    def __init__(
        self,
        *,
        app_id: int = 424242,
        slug: str = "lemi",
        html_url: str = "https://github.com",
        check_responses: bool = True,
    ) -> None:
        self.app_id = app_id
        self.app_slug = slug
        self.bot_login = f"{slug}[bot]"
        self.html_url = html_url.rstrip("/")
        self.check_responses = check_responses
        key = _session_key()
        self.private_key = key
        self.private_key_pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
        ).decode()
        self.public_key_pem = (
            key.public_key()
            .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
            .decode()
        )
        self.url = ""
        self.port = 0
        self.spec = spec()
        self._lock = threading.RLock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self.reset()

    # -- lifecycle ----------------------------------------------------------------------

    def start(self) -> str:
        """Serve on 127.0.0.1:<free port> from a thread of its own; returns the URL."""
        if self._thread is not None:
            return self.url
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            self._loop = loop
            try:
                app = web.Application(client_max_size=64 * 1024 * 1024)
                # GitHub's web side of the App manifest flow, then GHES's /api/v3 layout, then the API
                app.router.add_route("POST", "/settings/apps/new", self._web_new_app)
                app.router.add_route("POST", "/organizations/{org}/settings/apps/new", self._web_new_app)
                app.router.add_route("*", "/api/v3/{tail:.*}", self._handle_ghes)
                app.router.add_route("*", "/{tail:.*}", self._handle)
                runner = web.AppRunner(app, access_log=None, handle_signals=False)
                loop.run_until_complete(runner.setup())
                site = web.TCPSite(runner, HOST, 0)
                loop.run_until_complete(site.start())
                self.port = runner.addresses[0][1]
                self.url = f"http://{HOST}:{self.port}"
            except BaseException as exc:  # pragma: no cover - startup failure
                failure.append(exc)
                ready.set()
                return
            ready.set()
            try:
                loop.run_forever()
            finally:
                loop.run_until_complete(runner.cleanup())
                loop.close()

        self._thread = threading.Thread(target=run, name="fake-github", daemon=True)
        self._thread.start()
        ready.wait(30)
        if failure:
            raise failure[0]
        return self.url

    @property
    def ghes_api_url(self) -> str:
        """The same API under GitHub Enterprise Server's layout (``<url>/api/v3``)."""
        return f"{self.url}/api/v3"

    def stop(self) -> None:
        if self._thread is None or self._loop is None:
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._thread = None
        self._loop = None

    def __enter__(self) -> FakeGitHub:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def __aenter__(self) -> FakeGitHub:
        return self.__enter__()

    async def __aexit__(self, *exc: object) -> None:
        self.stop()

    def reset(self) -> None:
        """Forget all state, calls, faults and violations (keeps the server, the App and its key)."""
        with self._lock:
            self.violations: list[Violation] = []
            self.calls: list[Call] = []
            self.faults: list[Fault] = []
            self.installations: dict[int, Installation] = {}
            self.tokens: dict[str, Token] = {}
            self.repos: dict[str, Repo] = {}  # lower-case full name -> Repo
            self.objects = ObjectStore()
            self.pulls_by_repo: dict[str, dict[int, PullRequest]] = {}
            self.issues_by_repo: dict[str, dict[int, Issue]] = {}
            self.comments_by_id: dict[int, Comment] = {}
            self.check_runs_by_id: dict[int, CheckRun] = {}
            self.deployments_by_id: dict[int, Deployment] = {}
            self.deliveries: list[Delivery] = []
            self.redelivered: list[Delivery] = []
            self.token_ttl = 3600.0
            self.redelivery_status_code = 200
            self.on_redelivery: Callable[[Delivery], None] | None = None
            self.rate_limit = 5000
            self.rate_used: dict[str, int] = {}
            self.not_modified = 0  # conditional GETs answered 304
            self.app_manifests: list[AppManifest] = []
            # the App's own settings: GET /app's fields replaced (permissions, events...) and
            # its webhook configuration (GET /app/hook/config; GitHub masks a set secret as ********)
            self.app_changes: dict[str, Any] = {}
            self.hook_config: dict[str, Any] = {
                "url": "https://lemi.example.com/webhook",
                "content_type": "json",
                "secret": "********",
                "insecure_ssl": "0",
            }
            self.manifest_expectations: dict[str, Any] = {}
            self.web_login = "octocat"  # who is signed in on the web side
            self._violations_expected = False
            self._clock = 0
            self.clock: Callable[[], float] = time.monotonic
            self.secondary_limits = SECONDARY_LIMITS
            self._content_writes: dict[str, deque[float]] = {}  # identity -> when each was accepted
            self._ids = {
                "installation": 10_000,
                "repo": 700_000_000,
                "pull": 1_900_000_000,
                "issue": 2_100_000_000,
                "comment": 2_300_000_000,
                "reaction": 250_000_000,
                "check_run": 31_000_000_000,
                "check_suite": 29_000_000_000,
                "deployment": 1_500_000_000,
                "status": 3_300_000_000,
                "delivery": 90_000_000_000,
                "app": 900_000,
            }

    def _next_id(self, kind: str) -> int:
        self._ids[kind] += 1
        return self._ids[kind]

    def _tick(self) -> tuple[int, str]:
        self._clock += 1
        ts = EPOCH + self._clock
        return ts, _now_iso(ts)

    # -- violations ---------------------------------------------------------------------

    def expect_violations(self) -> list[Violation]:
        """Mark this test as provoking violations on purpose: the fixture then does not fail
        on them (it fails instead when none was recorded). Returns the live list."""
        self._violations_expected = True
        return self.violations

    def take_violations(self) -> list[Violation]:
        """Return and forget the violations recorded so far."""
        with self._lock:
            taken, self.violations = self.violations, []
            return taken

    def violation_report(self) -> str:
        return "\n".join(f"  - {v}" for v in self.violations)

    # -- faults -------------------------------------------------------------------------

    def fail_next(
        self,
        method: str,
        path_regex: str,
        status: int = 502,
        times: int = 1,
        headers: Mapping[str, str] | None = None,
        body: Any = None,
    ) -> None:
        """The next ``times`` requests whose method matches (``"*"``: any) and whose decoded path
        matches ``path_regex`` (``re.search``) are answered ``status`` with ``body``/``headers``
        (after the OpenAPI check and authentication, and recorded in ``calls``)."""
        if body is None:
            body = {"message": "Server Error"} if status >= 500 else {"message": "Error", "documentation_url": DOCS}
        with self._lock:
            self.faults.append(Fault(method.upper(), re.compile(path_regex), status, times, dict(headers or {}), body))

    def secondary_rate_limit(self, method: str, path_regex: str, times: int = 1, retry_after: int = 1) -> None:
        self.fail_next(
            method,
            path_regex,
            403,
            times,
            {"retry-after": str(retry_after)},
            {"message": SECONDARY_MESSAGE, "documentation_url": SECONDARY_DOCS},
        )

    def secondary_limited(self) -> list[Call]:
        """The requests refused for the secondary limits (not the injected refusals)."""
        return [c for c in self.calls if c.status == 403 and c.limited]

    def _over_secondary_limits(self, token: Token) -> int | None:
        """Seconds until one more content-creating request of ``token``'s identity is accepted
        (None: accepted now, and counted). GitHub counts per installation, or per user."""
        identity = f"installation:{token.installation_id}" if token.kind == "installation" else f"user:{token.login}"
        now = self.clock()
        accepted = self._content_writes.setdefault(identity, deque())
        while accepted and accepted[0] <= now - 3600:
            accepted.popleft()
        per_minute, per_hour = self.secondary_limits
        in_minute = [t for t in accepted if t > now - 60]
        wait = 0.0
        if len(in_minute) >= per_minute:
            wait = in_minute[-per_minute] + 60 - now
        if len(accepted) >= per_hour:
            wait = max(wait, accepted[-per_hour] + 3600 - now)
        if wait > 0:
            return max(1, int(-(-wait // 1)))
        accepted.append(now)
        return None

    def primary_rate_limit(self, method: str, path_regex: str, times: int = 1, reset_in: int = 1) -> None:
        self.fail_next(
            method,
            path_regex,
            403,
            times,
            {"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(int(time.time()) + reset_in)},
            {"message": "API rate limit exceeded for installation.", "documentation_url": DOCS},
        )

    # -- test helpers: setup ------------------------------------------------------------

    def add_installation(
        self,
        account: str,
        repos: Iterable[str] = (),
        *,
        account_type: str = "Organization",
        permissions: Mapping[str, str] | None = None,
        events: Iterable[str] = DEFAULT_EVENTS,
        repository_selection: str = "selected",
    ) -> int:
        """An installation of the App on ``account``; ``repos``: names or full names (created
        empty, with a README on main, when they do not exist yet). Returns its id."""
        with self._lock:
            installation = Installation(
                self._next_id("installation"),
                account,
                account_type,
                set(),
                dict(permissions or DEFAULT_PERMISSIONS),
                list(events),
                repository_selection,
            )
            self.installations[installation.id] = installation
            for name in repos:
                full = name if "/" in name else f"{account}/{name}"
                if full.lower() in self.repos:
                    self.repos[full.lower()].installation_id = installation.id
                else:
                    self.add_repo(full, installation=installation.id)
                installation.repositories.add(self._repo(full).full_name)
            return installation.id

    def add_repo(
        self,
        full_name: str,
        files: Mapping[str, str | bytes] | None = None,
        default_branch: str = "main",
        installation: int | None = None,
        *,
        private: bool = True,
        merge_methods: Iterable[str] = ("merge", "squash", "rebase"),
        empty: bool = False,
    ) -> Repo:
        """A repository with one commit holding ``files`` (default: a README) on
        ``default_branch`` (``empty=True``: no commit at all)."""
        with self._lock:
            if full_name.lower() in self.repos:
                raise ValueError(f"{full_name} exists")
            _, created = self._tick()
            repo = Repo(full_name, self._next_id("repo"), private, default_branch, installation, created_at=created)
            repo.merge_methods = frozenset(merge_methods)
            self.repos[full_name.lower()] = repo
            self.pulls_by_repo[full_name.lower()] = {}
            self.issues_by_repo[full_name.lower()] = {}
            if installation is not None:
                self.installations[installation].repositories.add(full_name)
            if not empty:
                content = {
                    k: _text(v) for k, v in (files if files is not None else {"README.md": f"# {repo.name}\n"}).items()
                }
                commit = self._write_commit(content, [], "Initial commit", repo.owner)
                repo.refs[f"heads/{default_branch}"] = commit.sha
            return repo

    def create_branch(self, full_name: str, branch: str, from_ref: str | None = None) -> str:
        with self._lock:
            repo = self._repo(full_name)
            sha = self._resolve(repo, from_ref or repo.default_branch)
            if sha is None:
                raise ValueError(f"{full_name}: no ref {from_ref}")
            self._set_ref(repo, f"heads/{branch}", sha)
            return sha

    def commit(
        self,
        full_name: str,
        branch: str,
        files: Mapping[str, str | bytes | None],
        message: str = "Update files",
        author: str = "octocat",
    ) -> str:
        """Commit ``files`` (None deletes a path) on ``branch`` (created from the default branch
        when missing); open pull requests from that branch follow. Returns the commit sha."""
        with self._lock:
            repo = self._repo(full_name)
            parent = repo.refs.get(f"heads/{branch}")
            if parent is None:
                parent = repo.refs.get(f"heads/{repo.default_branch}")
            tree = dict(self.objects.commits[parent].files) if parent else {}
            for path, data in files.items():
                if data is None:
                    tree.pop(path, None)
                else:
                    tree[path] = _text(data)
            commit = self._write_commit(tree, [parent] if parent else [], message, author)
            self._set_ref(repo, f"heads/{branch}", commit.sha)
            return commit.sha

    def open_pull_request(
        self,
        full_name: str,
        head_branch: str,
        files: Mapping[str, str | bytes | None] | None = None,
        base: str | None = None,
        *,
        from_fork: bool = False,
        user: str = "octocat",
        title: str | None = None,
        body: str | None = "",
        draft: bool = False,
    ) -> int:
        """Create ``head_branch`` (in ``user``'s fork when ``from_fork``) with a commit of
        ``files`` and open a PR into ``base`` (default branch). Returns its number."""
        with self._lock:
            repo = self._repo(full_name)
            base = base or repo.default_branch
            head_repo = repo
            if from_fork:
                fork_name = f"{user}/{repo.name}"
                if fork_name.lower() not in self.repos:
                    fork = self.add_repo(
                        fork_name, default_branch=repo.default_branch, private=repo.private, empty=True
                    )
                    fork.fork, fork.parent = True, repo.full_name
                    fork.refs = {k: v for k, v in repo.refs.items() if k.startswith("heads/")}
                head_repo = self._repo(fork_name)
            if f"heads/{head_branch}" not in head_repo.refs:
                self._set_ref(head_repo, f"heads/{head_branch}", repo.refs[f"heads/{base}"])
            if files:
                self.commit(head_repo.full_name, head_branch, files, f"Change {', '.join(files)}", author=user)
            number = self._new_number(repo)
            _, now = self._tick()
            pull = PullRequest(
                repo.full_name,
                number,
                self._next_id("pull"),
                head_repo.full_name,
                head_branch,
                head_repo.refs[f"heads/{head_branch}"],
                base,
                title or f"Update {head_branch}",
                body,
                user,
                created_at=now,
                updated_at=now,
                draft=draft,
            )
            self.pulls_by_repo[repo.full_name.lower()][number] = pull
            return number

    def open_issue(
        self, full_name: str, title: str = "An issue", body: str | None = None, user: str = "octocat"
    ) -> int:
        with self._lock:
            repo = self._repo(full_name)
            number = self._new_number(repo)
            _, now = self._tick()
            self.issues_by_repo[repo.full_name.lower()][number] = Issue(
                repo.full_name, number, self._next_id("issue"), title, body, user, created_at=now
            )
            return number

    def close_pull_request(self, full_name: str, number: int) -> None:
        with self._lock:
            pull = self.pull(full_name, number)
            pull.state, pull.closed_at = "closed", self._tick()[1]

    def merge_pull_request(
        self, full_name: str, number: int, merge_method: str = "merge", user: str = "octocat"
    ) -> str:
        """A human merges the PR (as the merge button would). Returns the merge commit sha."""
        with self._lock:
            return self._merge(
                self._repo(full_name), self.pull(full_name, number), merge_method, None, None, User(user)
            )

    def set_unmergeable(self, full_name: str, number: int, message: str = "Pull Request is not mergeable") -> None:
        """PUT .../merge of this PR answers 405 with ``message``; ``mergeable`` becomes false."""
        with self._lock:
            self.pull(full_name, number).unmergeable = message

    def set_permission(self, full_name: str, login: str, role: str) -> None:
        """``role``: admin | maintain | write | triage | read | none."""
        if role not in ROLES:
            raise ValueError(f"role must be one of {ROLES}")
        with self._lock:
            self._repo(full_name).permissions[login] = role

    def add_user_token(self, token: str, login: str, expires_in: float | None = None) -> str:
        """A personal token (``token X`` or ``Bearer X``) acting as ``login`` on every repository."""
        with self._lock:
            self.tokens[token] = Token(
                token, "user", None if expires_in is None else time.time() + expires_in, login=login
            )
            return token

    def installation_token(
        self, installation_id: int, *, repositories: Iterable[str] | None = None, ttl: float | None = None
    ) -> str:
        """Mint an installation token directly (as POST .../access_tokens would)."""
        with self._lock:
            installation = self.installations[installation_id]
            token = Token(
                "ghs_" + secrets.token_urlsafe(27).replace("-", "A").replace("_", "b")[:36],
                "installation",
                time.time() + (self.token_ttl if ttl is None else ttl),
                installation_id=installation_id,
                repositories=None
                if repositories is None
                else {self._repo(r if "/" in r else f"{installation.account}/{r}").full_name for r in repositories},
                permissions=dict(installation.permissions),
            )
            self.tokens[token.token] = token
            return token.token

    def expire_token(self, token: str) -> None:
        with self._lock:
            self.tokens[token].expires_at = time.time() - 1

    def app_jwt(self, *, iat: float | None = None, exp: float | None = None, iss: Any = None, key: Any = None) -> str:
        """A JWT for the App as GitHub expects it (override claims or the key to break it)."""
        now = int(time.time())
        claims = {
            "iat": int(now - 60 if iat is None else iat),
            "exp": int(now + 540 if exp is None else exp),
            "iss": str(self.app_id) if iss is None else iss,
        }
        return jwt.encode(claims, key or self.private_key_pem, algorithm="RS256")

    def add_comment(
        self, full_name: str, number: int, body: str, user: str = "octocat", user_type: str = "User"
    ) -> int:
        """A comment written by someone else (e.g. a slash command). Returns its id."""
        with self._lock:
            repo = self._repo(full_name)
            self._issue_or_pull(repo, number)
            _, now = self._tick()
            comment = Comment(repo.full_name, number, self._next_id("comment"), body, user, user_type, now, now)
            self.comments_by_id[comment.id] = comment
            return comment.id

    def add_delivery(
        self,
        event: str,
        action: str | None = None,
        *,
        guid: str | None = None,
        status_code: int = 200,
        installation_id: int | None = None,
        repository: str | None = None,
        redelivery: bool = False,
        payload: Any = None,
        delivered_at: str | None = None,
    ) -> int:
        """One entry of the App's webhook delivery log (GET /app/hook/deliveries). Returns its id."""
        with self._lock:
            delivery = Delivery(
                self._next_id("delivery"),
                guid or str(uuid.uuid4()),
                delivered_at or _now_iso(),
                redelivery,
                status_code,
                event,
                action,
                installation_id,
                self._repo(repository).id if repository else None,
                payload=payload,
            )
            self.deliveries.append(delivery)
            return delivery.id

    def expect_manifest(self, **fields: Any) -> None:
        """Manifests posted from now on must have these top-level values (e.g. app.yml's
        ``default_permissions`` and ``default_events``); any other is refused as GitHub
        would refuse an invalid one (a ``manifest`` violation)."""
        with self._lock:
            self.manifest_expectations = copy.deepcopy(fields)

    def register_manifest_code(
        self,
        manifest: Mapping[str, Any],
        *,
        owner: str | None = None,
        owner_type: str = "User",
        state: str | None = None,
        html_url: str | None = None,
    ) -> str:
        """What GitHub does when the user clicks "Create GitHub App": check ``manifest`` (raises
        ValueError listing the problems) and return the one-time code that
        ``POST /app-manifests/{code}/conversions`` exchanges for the new App's credentials."""
        with self._lock:
            problems = self.manifest_problems(manifest)
            if problems:
                raise ValueError("; ".join(problems))
            code = secrets.token_hex(10)
            self.app_manifests.append(
                AppManifest(
                    code,
                    copy.deepcopy(dict(manifest)),
                    owner or self.web_login,
                    owner_type,
                    state,
                    (html_url or self.html_url).rstrip("/"),
                    time.time(),
                )
            )
            return code

    def manifest_problems(self, manifest: Any) -> list[str]:
        """Why GitHub would refuse this App manifest (empty: it is valid)."""
        if not isinstance(manifest, dict):
            return ["the manifest is not a JSON object"]
        problems = [f"unknown manifest key {key!r}" for key in sorted(set(manifest) - MANIFEST_KEYS)]

        def url_ok(value: Any) -> bool:
            return isinstance(value, str) and re.fullmatch(r"https?://[^\s/?#@]+(/[^\s]*)?", value) is not None

        if not url_ok(manifest.get("url")):
            problems.append("url is required: the App's homepage, an http(s) URL")
        name = manifest.get("name")
        if name is not None and (not isinstance(name, str) or not 1 <= len(name.strip()) <= 34):
            problems.append("name must be 1 to 34 characters")
        hook = manifest.get("hook_attributes")
        if hook is not None:
            if not isinstance(hook, dict) or set(hook) - {"url", "active"}:
                problems.append("hook_attributes takes url and active")
            elif not url_ok(hook.get("url")):
                problems.append("hook_attributes.url is required: an http(s) URL")
            elif re.match(r"https?://(localhost|127\.|\[::1\])", hook["url"]):
                problems.append(
                    "hook_attributes.url is not supported because it isn't reachable over the public Internet (localhost)"
                )
            elif "active" in hook and not isinstance(hook["active"], bool):
                problems.append("hook_attributes.active must be a boolean")
        for key in ("redirect_url", "setup_url"):
            if key in manifest and not url_ok(manifest[key]):
                problems.append(f"{key} must be an http(s) URL")
        if "callback_urls" in manifest and (
            not isinstance(manifest["callback_urls"], list)
            or not all(url_ok(u) for u in manifest["callback_urls"])
            or len(manifest["callback_urls"]) > 10
        ):
            problems.append("callback_urls must be at most 10 http(s) URLs")
        for key in ("public", "request_oauth_on_install", "setup_on_update"):
            if key in manifest and not isinstance(manifest[key], bool):
                problems.append(f"{key} must be a boolean")
        if "description" in manifest and not isinstance(manifest["description"], (str, type(None))):
            problems.append("description must be a string")
        permissions = manifest.get("default_permissions", {})
        known = self.spec.doc["components"]["schemas"]["app-permissions"]["properties"]
        if not isinstance(permissions, dict):
            problems.append("default_permissions must be an object")
            permissions = {}
        for perm, level in permissions.items():
            if perm not in known:
                problems.append(f"default_permissions: unknown permission {perm!r}")
            elif level not in known[perm].get("enum", ["read", "write"]):
                problems.append(f"default_permissions.{perm}: {level!r} is not one of {known[perm].get('enum')}")
        events = manifest.get("default_events", [])
        if not isinstance(events, list) or not all(isinstance(e, str) for e in events):
            problems.append("default_events must be a list of event names")
            events = []
        if events and hook is None:
            problems.append("default_events need hook_attributes (a webhook URL)")
        from fakes.webhooks import events as webhook_events

        for event in events:
            if event not in webhook_events():
                problems.append(f"default_events: unknown event {event!r}")
            elif event in EVENT_PERMISSIONS and not any(p in permissions for p in EVENT_PERMISSIONS[event]):
                problems.append(
                    f"default_events: {event!r} needs the permission {' or '.join(EVENT_PERMISSIONS[event])}"
                )
        for key, expected in self.manifest_expectations.items():
            if manifest.get(key) != expected:
                problems.append(f"{key}: expected {expected!r}, got {manifest.get(key)!r}")
        return problems

    # -- test helpers: reading ----------------------------------------------------------

    def repo(self, full_name: str) -> Repo:
        return self._repo(full_name)

    def pull(self, full_name: str, number: int) -> PullRequest:
        pull = self.pulls_by_repo[self._repo(full_name).full_name.lower()].get(number)
        if pull is None:
            raise KeyError(f"{full_name}#{number} is not a pull request")
        return pull

    def pulls(self, full_name: str, state: str = "all") -> list[PullRequest]:
        found = self.pulls_by_repo[self._repo(full_name).full_name.lower()].values()
        return [p for p in found if state == "all" or p.state == state]

    def comments(self, full_name: str, number: int) -> list[Comment]:
        name = self._repo(full_name).full_name
        return sorted(
            (c for c in self.comments_by_id.values() if c.repo == name and c.issue_number == number), key=lambda c: c.id
        )

    def check_runs(self, full_name: str, sha: str | None = None, name: str | None = None) -> list[CheckRun]:
        repo = self._repo(full_name)
        if sha is not None and len(sha) != 40:
            sha = self._resolve(repo, sha)
        return sorted(
            (
                r
                for r in self.check_runs_by_id.values()
                if r.repo == repo.full_name and (sha is None or r.head_sha == sha) and (name is None or r.name == name)
            ),
            key=lambda r: r.id,
        )

    def deployments(self, full_name: str) -> list[Deployment]:
        name = self._repo(full_name).full_name
        return sorted((d for d in self.deployments_by_id.values() if d.repo == name), key=lambda d: d.id)

    def branch_sha(self, full_name: str, branch: str) -> str | None:
        return self._repo(full_name).refs.get(f"heads/{branch}")

    def files(self, full_name: str, ref: str) -> dict[str, str]:
        """Every file at ``ref`` (branch, tag or sha) as text."""
        repo = self._repo(full_name)
        sha = self._resolve(repo, ref)
        if sha is None:
            raise KeyError(f"{full_name}: no ref {ref}")
        return {k: v.decode("utf-8", "replace") for k, v in self.objects.commits[sha].files.items()}

    def file(self, full_name: str, branch: str, path: str) -> str | None:
        """Text of ``path`` at ``branch`` (or any ref), None when absent."""
        try:
            return self.files(full_name, branch).get(path)
        except KeyError:
            return None

    def commit_info(self, full_name: str, ref: str) -> Commit:
        repo = self._repo(full_name)
        sha = self._resolve(repo, ref)
        if sha is None:
            raise KeyError(ref)
        return self.objects.commits[sha]

    def writes(self) -> list[Call]:
        """Recorded calls that are not GET/HEAD."""
        return [c for c in self.calls if c.method not in ("GET", "HEAD")]

    def calls_to(self, method: str, pattern: str) -> list[Call]:
        """Recorded calls of ``method`` ("*": any) whose path matches ``pattern`` (fnmatch glob)."""
        return [
            c
            for c in self.calls
            if (method == "*" or c.method == method.upper()) and fnmatch.fnmatchcase(c.path, pattern)
        ]

    def describe_calls(self) -> str:
        """The recorded calls, one a line (for assertion messages)."""
        return "\n".join(
            f"  {c.method} {c.path}{'?' + urlencode(c.query) if c.query else ''} -> {c.status} ({c.auth or 'anonymous'})"
            for c in self.calls
        )

    def wait_for(self, predicate: Callable[[], Any], timeout: float = 5.0, interval: float = 0.02) -> Any:
        """Poll ``predicate`` (e.g. ``lambda: fake.comments("o/r", 1)``) until it is truthy; return
        its value. For products that work in the background (queue workers, subprocesses)."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                value = predicate()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"condition not met within {timeout} s; calls to the GitHub fake:\n{self.describe_calls()}"
                )
            time.sleep(interval)

    async def await_for(self, predicate: Callable[[], Any], timeout: float = 5.0, interval: float = 0.02) -> Any:
        """``wait_for`` for async tests (does not block the test's event loop)."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                value = predicate()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"condition not met within {timeout} s; calls to the GitHub fake:\n{self.describe_calls()}"
                )
            await asyncio.sleep(interval)

    # -- JSON shapes (also used by fakes.webhooks) -----------------------------------------

    def user_json(self, login: str, type_: str | None = None) -> dict[str, Any]:
        if type_ is None:
            type_ = (
                "Bot"
                if login.endswith("[bot]")
                else (
                    "Organization"
                    if any(i.account == login and i.account_type == "Organization" for i in self.installations.values())
                    else "User"
                )
            )
        user = copy.deepcopy(_templates()["user"])
        user = _rewrite(
            user,
            [
                ("https://api.github.com/users/octocat", f"{self.url}/users/{login}"),
                ("https://github.com/octocat", f"{self.html_url}/{login}"),
                ("https://api.github.com", self.url),
            ],
        )
        user.update(
            login=login,
            id=_uid(login),
            node_id=_node_id("User" if type_ != "Bot" else "Bot", _uid(login)),
            type=type_,
            site_admin=False,
        )
        user["avatar_url"] = f"https://avatars.githubusercontent.com/u/{_uid(login)}?v=4"
        if type_ == "Bot":
            user["html_url"] = f"{self.html_url}/apps/{login.removesuffix('[bot]')}"
        return user

    def _repo_replacements(self, repo: Repo) -> list[tuple[str, str]]:
        return [
            ("https://api.github.com/repos/octocat/Hello-World", f"{self.url}/repos/{repo.full_name}"),
            ("https://github.com/octocat/Hello-World", f"{self.html_url}/{repo.full_name}"),
            ("git:github.com/octocat/Hello-World.git", f"git://{self.html_url.split('://')[-1]}/{repo.full_name}.git"),
            ("git@github.com:octocat/Hello-World.git", f"git@{self.html_url.split('://')[-1]}:{repo.full_name}.git"),
            ("https://svn.github.com/octocat/Hello-World", f"{self.html_url}/{repo.full_name}"),
            ("https://api.github.com", self.url),
            ("https://github.com", self.html_url),
        ]

    def repo_json(self, full_name: str, *, full: bool = False) -> dict[str, Any]:
        """The ``repository`` object (``full=True``: ``full-repository`` of GET /repos/{owner}/{repo})."""
        repo = self._repo(full_name)
        data = copy.deepcopy(_templates()["full_repo" if full else "repo"])
        data = _rewrite(data, self._repo_replacements(repo))
        data.update(
            id=repo.id,
            node_id=_node_id("Repository", repo.id),
            name=repo.name,
            full_name=repo.full_name,
            owner=self.user_json(repo.owner),
            private=repo.private,
            visibility="private" if repo.private else "public",
            fork=repo.fork,
            default_branch=repo.default_branch,
            description=None,
            homepage=None,
            language=None,
            archived=False,
            disabled=False,
            is_template=False,
            topics=[],
            created_at=repo.created_at,
            updated_at=repo.created_at,
            pushed_at=repo.created_at,
            allow_merge_commit="merge" in repo.merge_methods,
            allow_squash_merge="squash" in repo.merge_methods,
            allow_rebase_merge="rebase" in repo.merge_methods,
            allow_auto_merge=False,
            delete_branch_on_merge=False,
            open_issues_count=sum(1 for p in self.pulls_by_repo[repo.full_name.lower()].values() if p.state == "open"),
            forks_count=sum(1 for r in self.repos.values() if r.parent == repo.full_name),
            license=None,
            mirror_url=None,
        )
        data["open_issues"] = data["watchers"] = data["open_issues_count"]
        data["forks"] = data["forks_count"]
        data["permissions"] = {"admin": False, "maintain": False, "push": True, "triage": True, "pull": True}
        for key in ("temp_clone_token", "template_repository"):
            data.pop(key, None)
        if full:
            data.pop("parent", None)
            data.pop("source", None)
            if repo.fork and repo.parent:
                parent = self.repo_json(repo.parent)
                data["parent"] = data["source"] = parent
            owner = self.user_json(repo.owner)
            if owner["type"] == "Organization":
                data["organization"] = owner
            else:
                data.pop("organization", None)
        return data

    def installation_json(self, installation_id: int) -> dict[str, Any]:
        installation = self.installations[installation_id]
        data = _rewrite(
            copy.deepcopy(_templates()["installation"]),
            [("https://api.github.com", self.url), ("https://github.com", self.html_url)],
        )
        data.update(
            id=installation.id,
            account=self.user_json(installation.account, installation.account_type),
            repository_selection=installation.repository_selection,
            access_tokens_url=f"{self.url}/app/installations/{installation.id}/access_tokens",
            repositories_url=f"{self.url}/installation/repositories",
            html_url=f"{self.html_url}/organizations/{installation.account}/settings/installations/{installation.id}",
            app_id=self.app_id,
            client_id=f"Iv1.{self.app_id:016x}",
            target_id=_uid(installation.account),
            target_type=installation.account_type,
            permissions=dict(installation.permissions),
            events=list(installation.events),
            app_slug=self.app_slug,
            single_file_name=None,
            has_multiple_single_files=False,
            single_file_paths=[],
            suspended_at=_now_iso() if installation.suspended else None,
            suspended_by=None,
        )
        return data

    def app_json(self) -> dict[str, Any]:
        data = _rewrite(
            copy.deepcopy(_templates()["app"]),
            [("https://api.github.com", self.url), ("https://github.com", self.html_url)],
        )
        data.update(
            id=self.app_id,
            slug=self.app_slug,
            client_id=f"Iv1.{self.app_id:016x}",
            node_id=_node_id("Integration", self.app_id),
            owner=self.user_json("lemi-dev", "Organization"),
            name=self.app_slug,
            description="A paved road to production on AWS ECS Fargate",
            external_url="https://example.com/lemi",
            html_url=f"{self.html_url}/apps/{self.app_slug}",
            permissions=dict(DEFAULT_PERMISSIONS),
            events=list(DEFAULT_EVENTS),
            installations_count=len(self.installations),
        )
        data.update(copy.deepcopy(self.app_changes))
        return data

    def pull_json(self, full_name: str, number: int, *, simple: bool = False) -> dict[str, Any]:
        """The ``pull-request`` object (``simple=True``: the shape of the list endpoint)."""
        repo = self._repo(full_name)
        pull = self.pull(full_name, number)
        head_repo = self._repo(pull.head_repo)
        data = copy.deepcopy(_templates()["pull"])
        data = _rewrite(data, self._repo_replacements(repo))
        base_sha = repo.refs.get(f"heads/{pull.base_ref}") or pull.head_sha
        api = f"{self.url}/repos/{repo.full_name}"
        data.update(
            url=f"{api}/pulls/{number}",
            id=pull.id,
            node_id=_node_id("PullRequest", pull.id),
            html_url=f"{self.html_url}/{repo.full_name}/pull/{number}",
            diff_url=f"{self.html_url}/{repo.full_name}/pull/{number}.diff",
            patch_url=f"{self.html_url}/{repo.full_name}/pull/{number}.patch",
            issue_url=f"{api}/issues/{number}",
            commits_url=f"{api}/pulls/{number}/commits",
            review_comments_url=f"{api}/pulls/{number}/comments",
            comments_url=f"{api}/issues/{number}/comments",
            statuses_url=f"{api}/statuses/{pull.head_sha}",
            number=number,
            state=pull.state,
            locked=False,
            title=pull.title,
            user=self.user_json(pull.user, pull.user_type),
            body=pull.body,
            labels=[],
            milestone=None,
            active_lock_reason=None,
            created_at=pull.created_at,
            updated_at=pull.updated_at,
            closed_at=pull.closed_at,
            merged_at=pull.merged_at,
            merge_commit_sha=pull.merge_commit_sha,
            assignee=None,
            assignees=[],
            requested_reviewers=[],
            requested_teams=[],
            author_association=self._association(repo, pull.user),
            auto_merge=None,
            draft=pull.draft,
        )
        data["head"] = {
            "label": f"{head_repo.owner}:{pull.head_ref}",
            "ref": pull.head_ref,
            "sha": pull.head_sha,
            "user": self.user_json(head_repo.owner),
            "repo": self.repo_json(head_repo.full_name),
        }
        data["base"] = {
            "label": f"{repo.owner}:{pull.base_ref}",
            "ref": pull.base_ref,
            "sha": base_sha,
            "user": self.user_json(repo.owner),
            "repo": self.repo_json(repo.full_name),
        }
        data["_links"] = {
            "self": {"href": f"{api}/pulls/{number}"},
            "html": {"href": f"{self.html_url}/{repo.full_name}/pull/{number}"},
            "issue": {"href": f"{api}/issues/{number}"},
            "comments": {"href": f"{api}/issues/{number}/comments"},
            "review_comments": {"href": f"{api}/pulls/{number}/comments"},
            "review_comment": {"href": f"{api}/pulls/comments{{/number}}"},
            "commits": {"href": f"{api}/pulls/{number}/commits"},
            "statuses": {"href": f"{api}/statuses/{pull.head_sha}"},
        }
        if simple:
            return {k: v for k, v in data.items() if k in _templates()["pull_simple_keys"]}
        base_mb = self.objects.merge_base(base_sha, pull.head_sha)
        files = self._pull_files(repo, pull)
        conflicts = self._conflicts(repo, pull)
        mergeable = pull.state == "open" and not pull.merged and not conflicts and pull.unmergeable is None
        data.update(
            merged=pull.merged,
            mergeable=mergeable if pull.state == "open" else None,
            rebaseable=mergeable if pull.state == "open" else None,
            mergeable_state=("clean" if mergeable else "dirty") if pull.state == "open" else "unknown",
            merged_by=self.user_json(pull.merged_by) if pull.merged_by else None,
            comments=len(self.comments(repo.full_name, number)),
            review_comments=0,
            maintainer_can_modify=pull.maintainer_can_modify,
            commits=len(self.objects.commits_between(base_mb, pull.head_sha)),
            additions=sum(int(f["additions"]) for f in files),
            deletions=sum(int(f["deletions"]) for f in files),
            changed_files=len(files),
        )
        return data

    def issue_json(self, full_name: str, number: int) -> dict[str, Any]:
        """The ``issue`` object of an issue or a pull request (as in issue_comment payloads)."""
        repo = self._repo(full_name)
        item = self._issue_or_pull(repo, number)
        api = f"{self.url}/repos/{repo.full_name}"
        is_pull = isinstance(item, PullRequest)
        data: dict[str, Any] = {
            "url": f"{api}/issues/{number}",
            "repository_url": api,
            "labels_url": f"{api}/issues/{number}/labels{{/name}}",
            "comments_url": f"{api}/issues/{number}/comments",
            "events_url": f"{api}/issues/{number}/events",
            "html_url": f"{self.html_url}/{repo.full_name}/{'pull' if is_pull else 'issues'}/{number}",
            "id": item.id,
            "node_id": _node_id("PullRequest" if is_pull else "Issue", item.id),
            "number": number,
            "title": item.title,
            "user": self.user_json(item.user),
            "labels": [],
            "state": item.state,
            "locked": False,
            "assignee": None,
            "assignees": [],
            "milestone": None,
            "comments": len(self.comments(repo.full_name, number)),
            "created_at": item.created_at,
            "updated_at": item.created_at,
            "closed_at": getattr(item, "closed_at", None),
            "author_association": self._association(repo, item.user),
            "active_lock_reason": None,
            "body": item.body,
            "performed_via_github_app": None,
            "state_reason": None,
        }
        if is_pull:
            data["draft"] = item.draft
            data["pull_request"] = {
                "url": f"{api}/pulls/{number}",
                "html_url": f"{self.html_url}/{repo.full_name}/pull/{number}",
                "diff_url": f"{self.html_url}/{repo.full_name}/pull/{number}.diff",
                "patch_url": f"{self.html_url}/{repo.full_name}/pull/{number}.patch",
                "merged_at": item.merged_at,
            }
        return data

    def comment_json(self, comment_id: int) -> dict[str, Any]:
        comment = self.comments_by_id[comment_id]
        repo = self._repo(comment.repo)
        api = f"{self.url}/repos/{repo.full_name}"
        item = self._issue_or_pull(repo, comment.issue_number)
        kind = "pull" if isinstance(item, PullRequest) else "issues"
        data = copy.deepcopy(_templates()["comment"])
        data.update(
            id=comment.id,
            node_id=_node_id("IssueComment", comment.id),
            url=f"{api}/issues/comments/{comment.id}",
            html_url=f"{self.html_url}/{repo.full_name}/{kind}/{comment.issue_number}#issuecomment-{comment.id}",
            body=comment.body,
            user=self.user_json(comment.user, comment.user_type),
            created_at=comment.created_at,
            updated_at=comment.updated_at,
            issue_url=f"{api}/issues/{comment.issue_number}",
            author_association="NONE" if comment.user_type == "Bot" else self._association(repo, comment.user),
            performed_via_github_app=self.app_json() if comment.via_app else None,
            reactions=self._reaction_rollup(comment),
        )
        data.pop("pin", None)
        data.pop("minimized", None)
        return data

    def check_run_json(self, run_id: int) -> dict[str, Any]:
        run = self.check_runs_by_id[run_id]
        repo = self._repo(run.repo)
        api = f"{self.url}/repos/{repo.full_name}"
        data = copy.deepcopy(_templates()["check_run"])
        data.update(
            id=run.id,
            head_sha=run.head_sha,
            node_id=_node_id("CheckRun", run.id),
            external_id=run.external_id or "",
            url=f"{api}/check-runs/{run.id}",
            html_url=f"{self.html_url}/{repo.full_name}/runs/{run.id}",
            details_url=run.details_url or f"{self.html_url}/{repo.full_name}/runs/{run.id}",
            status=run.status,
            conclusion=run.conclusion,
            started_at=run.started_at,
            completed_at=run.completed_at,
            output={
                "title": run.output.get("title"),
                "summary": run.output.get("summary"),
                "text": run.output.get("text"),
                "annotations_count": len(run.annotations),
                "annotations_url": f"{api}/check-runs/{run.id}/annotations",
            },
            name=run.name,
            check_suite={"id": run.check_suite_id},
            app=self.app_json(),
            pull_requests=[
                {
                    "url": f"{api}/pulls/{p.number}",
                    "id": p.id,
                    "number": p.number,
                    "head": {
                        "ref": p.head_ref,
                        "sha": p.head_sha,
                        "repo": {"id": repo.id, "url": api, "name": repo.name},
                    },
                    "base": {
                        "ref": p.base_ref,
                        "sha": repo.refs.get(f"heads/{p.base_ref}", p.head_sha),
                        "repo": {"id": repo.id, "url": api, "name": repo.name},
                    },
                }
                for p in self.pulls_by_repo[repo.full_name.lower()].values()
                if p.state == "open" and p.head_sha == run.head_sha and p.head_repo == repo.full_name
            ],
        )
        data.pop("deployment", None)
        return data

    def deployment_json(self, deployment_id: int) -> dict[str, Any]:
        d = self.deployments_by_id[deployment_id]
        api = f"{self.url}/repos/{d.repo}"
        data = copy.deepcopy(_templates()["deployment"])
        data.update(
            url=f"{api}/deployments/{d.id}",
            id=d.id,
            node_id=_node_id("Deployment", d.id),
            sha=d.sha,
            ref=d.ref,
            task=d.task,
            payload=d.payload,
            original_environment=d.original_environment,
            environment=d.environment,
            description=d.description,
            creator=self.user_json(d.creator, d.creator_type),
            created_at=d.created_at,
            updated_at=d.statuses[-1].created_at if d.statuses else d.created_at,
            statuses_url=f"{api}/deployments/{d.id}/statuses",
            repository_url=api,
            transient_environment=d.transient_environment,
            production_environment=d.production_environment,
        )
        data["performed_via_github_app"] = self.app_json() if d.creator_type == "Bot" else None
        return data

    def deployment_status_json(self, deployment_id: int, status_id: int) -> dict[str, Any]:
        d = self.deployments_by_id[deployment_id]
        s = next(s for s in d.statuses if s.id == status_id)
        api = f"{self.url}/repos/{d.repo}"
        data = copy.deepcopy(_templates()["deployment_status"])
        data.update(
            url=f"{api}/deployments/{d.id}/statuses/{s.id}",
            id=s.id,
            node_id=_node_id("DeploymentStatus", s.id),
            state=s.state,
            creator=self.user_json(s.creator, s.creator_type),
            description=s.description,
            environment=s.environment,
            target_url=s.target_url,
            created_at=s.created_at,
            updated_at=s.created_at,
            deployment_url=f"{api}/deployments/{d.id}",
            repository_url=api,
            environment_url=s.environment_url,
            log_url=s.log_url,
            performed_via_github_app=self.app_json() if s.creator_type == "Bot" else None,
        )
        return data

    def commit_json(self, full_name: str, sha: str) -> dict[str, Any]:
        repo = self._repo(full_name)
        c = self.objects.commits[sha]
        api = f"{self.url}/repos/{repo.full_name}"
        parent_files = self.objects.commits[c.parents[0]].files if c.parents else {}
        files = diff_files(parent_files, c.files)
        for f in files:
            f["blob_url"] = f"{self.html_url}/{repo.full_name}/blob/{sha}/{f['filename']}"
            f["raw_url"] = f"{self.html_url}/{repo.full_name}/raw/{sha}/{f['filename']}"
            f["contents_url"] = f"{api}/contents/{f['filename']}?ref={sha}"
        person = {"name": c.author, "email": f"{c.author}@users.noreply.github.com", "date": c.date}
        return {
            "url": f"{api}/commits/{sha}",
            "sha": sha,
            "node_id": _node_id("Commit", sha),
            "html_url": f"{self.html_url}/{repo.full_name}/commit/{sha}",
            "comments_url": f"{api}/commits/{sha}/comments",
            "commit": {
                "url": f"{api}/git/commits/{sha}",
                "author": person,
                "committer": person,
                "message": c.message,
                "tree": {"url": f"{api}/git/trees/{c.tree_sha}", "sha": c.tree_sha},
                "comment_count": 0,
                "verification": {
                    "verified": False,
                    "reason": "unsigned",
                    "signature": None,
                    "payload": None,
                    "verified_at": None,
                },
            },
            "author": self.user_json(c.author),
            "committer": self.user_json(c.author),
            "parents": [
                {"url": f"{api}/commits/{p}", "html_url": f"{self.html_url}/{repo.full_name}/commit/{p}", "sha": p}
                for p in c.parents
            ],
            "stats": {
                "additions": sum(int(f["additions"]) for f in files),
                "deletions": sum(int(f["deletions"]) for f in files),
                "total": sum(int(f["changes"]) for f in files),
            },
            "files": files,
        }

    # -- internals: state -----------------------------------------------------------------

    def _repo(self, full_name: str) -> Repo:
        repo = self.repos.get(full_name.lower())
        if repo is None:
            raise KeyError(f"no repository {full_name} in the fake")
        return repo

    def _new_number(self, repo: Repo) -> int:
        number = repo.next_number
        repo.next_number += 1
        return number

    def _issue_or_pull(self, repo: Repo, number: int) -> PullRequest | Issue:
        key = repo.full_name.lower()
        item = self.pulls_by_repo[key].get(number) or self.issues_by_repo[key].get(number)
        if item is None:
            raise KeyError(f"{repo.full_name}#{number} does not exist")
        return item

    def _write_commit(self, files: dict[str, bytes], parents: list[str], message: str, author: str) -> Commit:
        ts, date = self._tick()
        return self.objects.write_commit(files, parents, message, author, ts, date)

    def _resolve(self, repo: Repo, ref: str | None) -> str | None:
        """A branch, tag, refs/..., heads/..., full or abbreviated (>= 7) sha -> commit sha."""
        if not ref:
            return repo.refs.get(f"heads/{repo.default_branch}")
        if ref.startswith("refs/"):
            return repo.refs.get(ref[5:])
        for candidate in (f"heads/{ref}", f"tags/{ref}", ref):
            if candidate in repo.refs:
                return repo.refs[candidate]
        if re.fullmatch(r"[0-9a-f]{7,40}", ref):
            matches = [sha for sha in self.objects.commits if sha.startswith(ref)]
            if len(matches) == 1:
                return matches[0]
        return None

    def _set_ref(self, repo: Repo, ref: str, sha: str | None) -> None:
        """Move (or with sha=None delete) a ref; open PRs follow their head branch like GitHub's."""
        if sha is None:
            repo.refs.pop(ref, None)
        else:
            repo.refs[ref] = sha
        if not ref.startswith("heads/"):
            return
        branch = ref[6:]
        for pulls in self.pulls_by_repo.values():
            for pull in pulls.values():
                if pull.state != "open":
                    continue
                if pull.head_repo == repo.full_name and pull.head_ref == branch:
                    if sha is None:  # deleting the head branch closes the PR
                        pull.state, pull.closed_at = "closed", self._tick()[1]
                    else:
                        pull.head_sha, pull.updated_at = sha, self._tick()[1]
                elif sha is None and pull.repo == repo.full_name and pull.base_ref == branch:
                    pull.state, pull.closed_at = "closed", self._tick()[1]

    def _association(self, repo: Repo, login: str) -> str:
        if login == repo.owner:
            return "OWNER"
        role = repo.permissions.get(login)
        if role in ("admin", "maintain", "write", "triage"):
            return "MEMBER" if self.user_json(repo.owner)["type"] == "Organization" else "COLLABORATOR"
        return (
            "CONTRIBUTOR"
            if any(p.user == login and p.merged for p in self.pulls_by_repo[repo.full_name.lower()].values())
            else "NONE"
        )

    def _reaction_rollup(self, comment: Comment) -> dict[str, Any]:
        counts = {k: 0 for k in ("+1", "-1", "laugh", "confused", "heart", "hooray", "eyes", "rocket")}
        for r in comment.reactions:
            counts[r.content] += 1
        return {
            "url": f"{self.url}/repos/{comment.repo}/issues/comments/{comment.id}/reactions",
            "total_count": len(comment.reactions),
            **counts,
        }

    def _pull_files(self, repo: Repo, pull: PullRequest) -> list[dict[str, Any]]:
        base_sha = repo.refs.get(f"heads/{pull.base_ref}")
        mb = self.objects.merge_base(base_sha, pull.head_sha) if base_sha else None
        if pull.merged and pull.merge_commit_sha:
            # after the merge GitHub keeps showing the PR's own changes
            mb = self.objects.merge_base(self.objects.commits[pull.merge_commit_sha].parents[0], pull.head_sha)
        before = self.objects.commits[mb].files if mb else {}
        return diff_files(before, self.objects.commits[pull.head_sha].files)

    def _conflicts(self, repo: Repo, pull: PullRequest) -> list[str]:
        base_sha = repo.refs.get(f"heads/{pull.base_ref}")
        if base_sha is None or pull.state != "open":
            return []
        mb = self.objects.merge_base(base_sha, pull.head_sha)
        _, conflicts = three_way(
            self.objects.commits[mb].files if mb else {},
            self.objects.commits[base_sha].files,
            self.objects.commits[pull.head_sha].files,
        )
        return conflicts

    def _merge(
        self, repo: Repo, pull: PullRequest, method: str, title: str | None, message: str | None, actor: User
    ) -> str:
        base_sha = repo.refs.get(f"heads/{pull.base_ref}")
        if base_sha is None:
            raise GitHubError(422, "Base branch was modified. Review and try the merge again.")
        mb = self.objects.merge_base(base_sha, pull.head_sha)
        merged, conflicts = three_way(
            self.objects.commits[mb].files if mb else {},
            self.objects.commits[base_sha].files,
            self.objects.commits[pull.head_sha].files,
        )
        if conflicts:
            raise GitHubError(405, "Pull Request is not mergeable")
        head_repo = self._repo(pull.head_repo)
        if method == "merge":
            text = (
                (title or f"Merge pull request #{pull.number} from {head_repo.owner}/{pull.head_ref}")
                + "\n\n"
                + (message if message is not None else pull.title)
            )
            commit = self._write_commit(merged, [base_sha, pull.head_sha], text, actor.login)
        elif method == "squash":
            text = (title or f"{pull.title} (#{pull.number})") + ("\n\n" + message if message else "")
            commit = self._write_commit(merged, [base_sha], text, pull.user)
        else:  # rebase: replay each commit of the PR on the base
            parent = base_sha
            current = dict(self.objects.commits[base_sha].files)
            for sha in self.objects.commits_between(mb, pull.head_sha):
                c = self.objects.commits[sha]
                previous = self.objects.commits[c.parents[0]].files if c.parents else {}
                current, _ = three_way(previous, current, c.files)
                parent = self._write_commit(current, [parent], c.message, c.author).sha
            commit = self.objects.commits[parent]
        _, now = self._tick()
        pull.merged, pull.state, pull.merged_at, pull.closed_at = True, "closed", now, now
        pull.merged_by, pull.merge_commit_sha, pull.updated_at = actor.login, commit.sha, now
        self._set_ref(repo, f"heads/{pull.base_ref}", commit.sha)
        return commit.sha

    # -- HTTP -------------------------------------------------------------------------------

    async def _handle(self, request: web.Request, raw_path: str | None = None) -> web.StreamResponse:
        body = await request.read()
        status, headers, payload = self.serve(
            request.method,
            raw_path or request.rel_url.raw_path,
            list(request.rel_url.query.items()),
            body,
            request.headers,
        )
        if payload is None:
            return web.Response(status=status, headers=headers)
        return web.Response(
            status=status,
            headers=headers,
            body=json.dumps(payload).encode(),
            content_type="application/json",
            charset="utf-8",
        )

    async def _handle_ghes(self, request: web.Request) -> web.StreamResponse:
        """GitHub Enterprise Server serves the REST API under /api/v3."""
        return await self._handle(request, request.rel_url.raw_path.removeprefix("/api/v3") or "/")

    async def _web_new_app(self, request: web.Request) -> web.StreamResponse:
        """GitHub's "Create GitHub App" page, already clicked: check the posted manifest, then
        redirect to its redirect_url with a one-time code and the state."""
        org = request.match_info.get("org")
        form = await request.post()
        raw = form.get("manifest")
        state = request.rel_url.query.get("state")
        with self._lock:
            try:
                manifest = json.loads(raw) if isinstance(raw, str) else None
            except ValueError:
                manifest = None
            problems = (
                self.manifest_problems(manifest) if manifest is not None else ["no manifest field (JSON) in the form"]
            )
            if not problems and not isinstance(manifest.get("redirect_url"), str):
                problems = ["redirect_url is required for the manifest flow (where GitHub sends the code)"]
            if org is not None and not re.fullmatch(r"[A-Za-z0-9](?:[A-Za-z0-9]|-(?=[A-Za-z0-9])){0,38}", org):
                problems.append(f"no organisation {org!r}")
            if problems:
                self.violations.append(Violation("POST", request.rel_url.raw_path, "manifest", "; ".join(problems)))
                text = (
                    "<h1>Invalid GitHub App manifest</h1><ul>"
                    + "".join(f"<li>{_escape_html(p)}</li>" for p in problems)
                    + "</ul>"
                )
                return web.Response(status=422, text=text, content_type="text/html")
            code = self.register_manifest_code(
                manifest,
                owner=org or self.web_login,
                owner_type="Organization" if org else "User",
                state=state,
                html_url=self.url,
            )
        redirect = manifest["redirect_url"]
        query = urlencode({"code": code, **({"state": state} if state is not None else {})})
        return web.Response(status=302, headers={"Location": f"{redirect}{'&' if '?' in redirect else '?'}{query}"})

    def serve(
        self, method: str, raw_path: str, query: list[tuple[str, str]], body: bytes, headers: Mapping[str, str]
    ) -> tuple[int, dict[str, str], Any]:
        """One request, synchronously (the HTTP server calls this; tests may too)."""
        with self._lock:
            return self._serve(method.upper(), raw_path, query, body, {k.lower(): v for k, v in headers.items()})

    def _serve(
        self, method: str, raw_path: str, query: list[tuple[str, str]], raw_body: bytes, headers: dict[str, str]
    ) -> tuple[int, dict[str, str], Any]:
        path = unquote(raw_path)
        qdict = dict(query)
        try:
            parsed: Any = json.loads(raw_body) if raw_body else None
        except ValueError:
            parsed = raw_body.decode("utf-8", "replace")
        call = Call(method, path, qdict, parsed, None, None, None, None, None, None, {})
        self.calls.append(call)

        def answer(
            status: int, payload: Any, extra: Mapping[str, str] | None = None
        ) -> tuple[int, dict[str, str], Any]:
            call.status, call.response = status, payload
            out = self._headers(call)
            out.update(extra or {})
            if status == 204 or method == "HEAD":
                payload = None
            return status, out, payload

        matched, violation = self.spec.match(method, raw_path)
        if violation is not None:
            self.violations.append(violation)
            return answer(404, {"message": "Not Found", "documentation_url": DOCS, "status": "404"})
        assert matched is not None
        op = matched.operation
        call.operation, call.template, call.params = op.operation_id, op.template, matched.params
        problems = self.spec.check_operation(op, raw_path, query, raw_body)
        if problems:
            self.violations.extend(problems)
            details = "\n".join(p.message for p in problems)
            return answer(
                422, {"message": f"Invalid request.\n\n{details}", "documentation_url": DOCS, "status": "422"}
            )
        handler = _ROUTES.get((method, op.template))
        if handler is None:
            self.violations.append(
                Violation(
                    method,
                    raw_path,
                    "not-implemented",
                    "not implemented in the fake (add it to tests/fakes/github.py)",
                    op.operation_id,
                )
            )
            return answer(
                501, {"message": f"not implemented in the fake: {op.operation_id}", "documentation_url": DOCS}
            )
        name, auth_kind = handler
        ctx = _Ctx(
            method, path, qdict, parsed if parsed is not None else {}, matched.params, op, bot_login=self.bot_login
        )
        try:
            if not headers.get("user-agent"):
                raise GitHubError(
                    403,
                    "Request forbidden by administrative rules. Please make sure your request has a User-Agent header "
                    "(https://docs.github.com/en/rest/overview/resources-in-the-rest-api#user-agent-required). "
                    "Check https://developer.github.com for other possible causes.",
                )
            self._authenticate(ctx, headers.get("authorization", ""), auth_kind)
            call.auth = ctx.auth
            call.token = ctx.token.token if ctx.token else None
            call.installation_id = ctx.token.installation_id if ctx.token else None
            call.login = ctx.actor.login if ctx.token else None
            if method in CONTENT_CREATING and ctx.token is not None:
                retry_after = self._over_secondary_limits(ctx.token)
                if retry_after is not None:
                    call.limited = True
                    body = {"message": SECONDARY_MESSAGE, "documentation_url": SECONDARY_DOCS}
                    return answer(403, body, {"retry-after": str(retry_after)})
            for fault in self.faults:
                if fault.method in ("*", method) and fault.pattern.search(path):
                    fault.times -= 1
                    if fault.times <= 0:
                        self.faults.remove(fault)
                    return answer(fault.status, copy.deepcopy(fault.body), fault.headers)
            result = getattr(self, name)(ctx)
            status, payload, extra = result if len(result) == 3 else (*result, None)
        except GitHubError as exc:
            status, payload, extra = exc.status, exc.body, None
        except Exception as exc:  # a defect of the fake: fail the test loudly
            import traceback

            self.violations.append(
                Violation(method, raw_path, "fake-error", "".join(traceback.format_exception(exc)), op.operation_id)
            )
            status, payload, extra = 500, {"message": f"fake error: {exc!r}"}, None
        if self.check_responses and payload is not None:
            self.violations.extend(self.spec.check_response(op, status, payload))
        if method == "GET" and status == 200 and payload is not None:
            # GitHub answers every GET with an ETag; a conditional request that matches it gets
            # 304 with no body, which does not count against the rate limit
            etag = f'W/"{hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()}"'
            extra = {**(extra or {}), "etag": etag}
            if headers.get("if-none-match") in (etag, etag.removeprefix("W/")):
                call.status, call.response = 304, None
                self.not_modified += 1
                return 304, {"etag": etag, "x-github-request-id": uuid.uuid4().hex[:20].upper()}, None
        return answer(status, payload, extra)

    def _headers(self, call: Call) -> dict[str, str]:
        key = call.token or ("app" if call.auth == "app" else "anonymous")
        limit = 60 if key == "anonymous" else self.rate_limit
        if call.operation != "rate-limit/get":
            self.rate_used[key] = self.rate_used.get(key, 0) + 1
        used = self.rate_used.get(key, 0)
        return {
            "x-ratelimit-limit": str(limit),
            "x-ratelimit-remaining": str(max(0, limit - used)),
            "x-ratelimit-reset": str(int(time.time()) + 3600),
            "x-ratelimit-used": str(used),
            "x-ratelimit-resource": "core",
            "x-github-media-type": "github.v3; format=json",
            "x-github-api-version-selected": "2022-11-28",
            "x-github-request-id": uuid.uuid4().hex[:20].upper(),
        }

    # -- auth -------------------------------------------------------------------------------

    def _authenticate(self, ctx: _Ctx, header: str, kind: str) -> None:
        scheme, _, credential = header.strip().partition(" ")
        credential = credential.strip()
        if header and scheme.lower() not in ("bearer", "token"):
            raise GitHubError(401, "Bad credentials")
        is_jwt = credential.count(".") == 2 and not credential.startswith(
            ("ghs_", "ghp_", "gho_", "ghu_", "github_pat_")
        )
        if kind == "app":
            if not credential:
                raise GitHubError(401, "A JSON web token could not be decoded" if header else "Requires authentication")
            if not is_jwt:
                raise GitHubError(401, "A JSON web token could not be decoded")
            self._verify_jwt(credential)
            ctx.auth = "app"
            return
        if credential and is_jwt:
            if kind == "any":
                self._verify_jwt(credential)
                ctx.auth = "app"
                return
            raise GitHubError(403, "Resource not accessible by integration")
        if credential:
            token = self.tokens.get(credential)
            if token is None or (token.expires_at is not None and token.expires_at <= time.time()):
                raise GitHubError(401, "Bad credentials")
            ctx.token = token
            ctx.auth = token.kind
        if "owner" in ctx.params and "repo" in ctx.params:
            self._authorize_repo(ctx)
        elif kind == "repo" and ctx.token is None:
            raise GitHubError(401, "Requires authentication")

    def _verify_jwt(self, credential: str) -> None:
        try:
            claims = jwt.decode(
                credential,
                self.public_key_pem,
                algorithms=["RS256"],
                options={
                    "verify_exp": False,
                    "verify_iat": False,
                    "verify_nbf": False,
                    "verify_aud": False,
                    "verify_iss": False,
                },
            )
        except jwt.PyJWTError:
            raise GitHubError(401, "A JSON web token could not be decoded") from None
        now = time.time()
        iat, exp = claims.get("iat"), claims.get("exp")
        if not isinstance(iat, int) or iat > now + 60:
            raise GitHubError(
                401, "'Issued at' claim ('iat') must be an Integer representing the time that the assertion was issued."
            )
        if not isinstance(exp, int) or exp <= now:
            raise GitHubError(
                401,
                "'Expiration time' claim ('exp') must be a numeric value representing the future time at which the assertion expires.",
            )
        if exp - iat > 600:
            raise GitHubError(401, "'Expiration time' claim ('exp') is too far in the future.")
        if str(claims.get("iss")) != str(self.app_id):
            raise GitHubError(401, "'Issuer' claim ('iss') must be an Integer.")

    def _authorize_repo(self, ctx: _Ctx) -> None:
        full = f"{ctx.params['owner']}/{ctx.params['repo']}"
        repo = self.repos.get(full.lower())
        token = ctx.token
        if token is None:
            if repo is None or repo.private:
                raise _not_found()
            if ctx.method not in ("GET", "HEAD"):
                raise GitHubError(401, "Requires authentication")
            ctx.repo = repo
            return
        if repo is None:
            raise _not_found()
        if token.kind == "installation":
            if repo.installation_id != token.installation_id or (
                token.repositories is not None and repo.full_name not in token.repositories
            ):
                raise _not_found()
            needed = self._permission_for(ctx.op.template)
            level = "read" if ctx.method in ("GET", "HEAD") else "write"
            if not any(self._grants(token.permissions.get(p), level) for p in needed.split("|")):
                raise GitHubError(403, "Resource not accessible by integration")
        ctx.repo = repo

    @staticmethod
    def _permission_for(template: str) -> str:
        rest = template.removeprefix("/repos/{owner}/{repo}")
        for prefix, permission in _PERMISSIONS:
            if rest.startswith(prefix):
                return permission
        return "metadata"

    @staticmethod
    def _grants(have: str | None, need: str) -> bool:
        order = {None: 0, "read": 1, "write": 2, "admin": 3}
        return order.get(have, 0) >= order[need]

    # -- pagination ---------------------------------------------------------------------------

    def _paginate(self, ctx: _Ctx, items: list[Any]) -> tuple[list[Any], dict[str, str]]:
        per_page = max(1, min(100, int(ctx.query.get("per_page", 30))))
        page = max(1, int(ctx.query.get("page", 1)))
        last = max(1, -(-len(items) // per_page))
        chunk = items[(page - 1) * per_page : page * per_page]
        links = []

        def link(n: int, rel: str) -> str:
            query = {**ctx.query, "per_page": str(per_page), "page": str(n)}
            return f'<{self.url}{ctx.path}?{urlencode(query)}>; rel="{rel}"'

        if page > 1:
            links += [link(page - 1, "prev"), link(1, "first")]
        if page < last:
            links += [link(page + 1, "next"), link(last, "last")]
        return chunk, ({"Link": ", ".join(links)} if links else {})

    # -- handlers: App ------------------------------------------------------------------------

    @route("GET", "/app", auth="app")
    def _get_app(self, ctx: _Ctx) -> tuple[int, Any]:
        return 200, self.app_json()

    @route("GET", "/app/hook/config", auth="app")
    def _get_hook_config(self, ctx: _Ctx) -> tuple[int, Any]:
        return 200, dict(self.hook_config)

    @route("GET", "/user", auth="any")
    def _get_authenticated_user(self, ctx: _Ctx) -> tuple[int, Any]:
        """The user a personal token belongs to; an installation token or the App's JWT is not a user."""
        if ctx.token is None and ctx.auth != "app":
            raise GitHubError(401, "Requires authentication")
        if ctx.token is None or ctx.token.kind != "user":
            raise GitHubError(403, "Resource not accessible by integration")
        login = ctx.token.login or "octocat"
        user = self.user_json(login, "User")
        user.update(
            name=None,
            company=None,
            blog="",
            location=None,
            email=None,
            hireable=None,
            bio=None,
            public_repos=0,
            public_gists=0,
            followers=0,
            following=0,
            created_at="2020-01-01T00:00:00Z",
            updated_at="2020-01-01T00:00:00Z",
        )
        return 200, user

    @route("POST", "/app-manifests/{code}/conversions", auth="any")
    def _convert_manifest(self, ctx: _Ctx) -> tuple[int, Any]:
        found = next((m for m in self.app_manifests if m.code == ctx.params["code"]), None)
        if found is None or found.converted or time.time() - found.created > MANIFEST_CODE_TTL:
            raise _not_found()
        found.converted = True
        manifest = found.manifest
        app_id = self._next_id("app")
        slug = (
            re.sub(r"[^a-z0-9]+", "-", str(manifest.get("name") or f"app-{app_id}").lower()).strip("-")
            or f"app-{app_id}"
        )
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
        ).decode()
        data = self.app_json()
        _, now = self._tick()
        data.update(
            id=app_id,
            slug=slug,
            node_id=_node_id("Integration", app_id),
            client_id=f"Iv23li{secrets.token_hex(7)}",
            owner=self.user_json(found.owner, found.owner_type),
            name=str(manifest.get("name") or slug),
            description=manifest.get("description") or "",
            external_url=manifest["url"],
            html_url=f"{found.html_base}/apps/{slug}",
            created_at=now,
            updated_at=now,
            permissions=dict(manifest.get("default_permissions", {})),
            events=list(manifest.get("default_events", [])),
            installations_count=0,
            client_secret=secrets.token_hex(20),
            webhook_secret=secrets.token_hex(20) if manifest.get("hook_attributes") else None,
            pem=pem,
        )
        found.app = copy.deepcopy(data)
        return 201, data

    @route("GET", "/app/installations", auth="app")
    def _list_installations(self, ctx: _Ctx) -> tuple[int, Any, dict[str, str]]:
        items = [self.installation_json(i) for i in sorted(self.installations)]
        return (200, *self._paginate(ctx, items))

    @route("GET", "/app/installations/{installation_id}", auth="app")
    def _get_installation(self, ctx: _Ctx) -> tuple[int, Any]:
        if int(ctx.params["installation_id"]) not in self.installations:
            raise _not_found()
        return 200, self.installation_json(int(ctx.params["installation_id"]))

    @route("POST", "/app/installations/{installation_id}/access_tokens", auth="app")
    def _create_token(self, ctx: _Ctx) -> tuple[int, Any]:
        installation = self.installations.get(int(ctx.params["installation_id"]))
        if installation is None:
            raise _not_found()
        if installation.suspended:
            raise GitHubError(403, "This installation has been suspended")
        body = ctx.body or {}
        selected: set[str] | None = None
        if body.get("repositories") or body.get("repository_ids"):
            selected = set()
            by_name = {self._repo(r).name: self._repo(r) for r in installation.repositories}
            by_id = {r.id: r for r in by_name.values()}
            for name in body.get("repositories", []):
                if name not in by_name:
                    raise GitHubError(
                        422,
                        "There is at least one repository that does not exist or is not accessible to the parent installation.",
                    )
                selected.add(by_name[name].full_name)
            for rid in body.get("repository_ids", []):
                if rid not in by_id:
                    raise GitHubError(
                        422,
                        "There is at least one repository that does not exist or is not accessible to the parent installation.",
                    )
                selected.add(by_id[rid].full_name)
        permissions = dict(installation.permissions)
        if body.get("permissions"):
            for name, level in body["permissions"].items():
                if not self._grants(
                    installation.permissions.get(name), level if level in ("read", "write") else "admin"
                ):
                    raise GitHubError(422, "The permissions requested are not granted to this installation.")
            permissions = dict(body["permissions"])
        token = self.installation_token(installation.id, repositories=selected)
        self.tokens[token].permissions = permissions
        expires = self.tokens[token].expires_at or 0
        out: dict[str, Any] = {
            "token": token,
            "expires_at": _now_iso(expires),
            "permissions": permissions,
            "repository_selection": "selected" if selected is not None else installation.repository_selection,
        }
        if selected is not None:
            out["repositories"] = [self.repo_json(r) for r in sorted(selected)]
        return 201, out

    @route("GET", "/repos/{owner}/{repo}/installation", auth="app")
    def _repo_installation(self, ctx: _Ctx) -> tuple[int, Any]:
        repo = self.repos.get(f"{ctx.params['owner']}/{ctx.params['repo']}".lower())
        if repo is None or repo.installation_id is None:
            raise _not_found()
        return 200, self.installation_json(repo.installation_id)

    @route("GET", "/app/hook/deliveries", auth="app")
    def _list_deliveries(self, ctx: _Ctx) -> tuple[int, Any, dict[str, str]]:
        per_page = max(1, min(100, int(ctx.query.get("per_page", 30))))
        items = sorted(self.deliveries, key=lambda d: d.id, reverse=True)
        status = ctx.query.get("status")
        if status == "success":
            items = [d for d in items if 200 <= d.status_code < 400]
        elif status == "failure":
            items = [d for d in items if d.status_code >= 400]
        cursor = ctx.query.get("cursor")
        if cursor:
            match = re.fullmatch(r"v1_(\d+)", cursor)
            if match is None:
                raise GitHubError(400, "Invalid cursor")
            items = [d for d in items if d.id <= int(match.group(1))]
        page, rest = items[:per_page], items[per_page:]
        headers = {}
        if rest:
            query = {k: v for k, v in ctx.query.items() if k != "cursor"}
            query.update(per_page=str(per_page), cursor=f"v1_{rest[0].id}")
            headers["Link"] = f'<{self.url}{ctx.path}?{urlencode(query)}>; rel="next"'
        return 200, [self._delivery_json(d) for d in page], headers

    def _delivery_json(self, d: Delivery) -> dict[str, Any]:
        return {
            "id": d.id,
            "guid": d.guid,
            "delivered_at": d.delivered_at,
            "redelivery": d.redelivery,
            "duration": d.duration,
            "status": d.status,
            "status_code": d.status_code,
            "event": d.event,
            "action": d.action,
            "installation_id": d.installation_id,
            "repository_id": d.repository_id,
            "throttled_at": None,
        }

    @route("POST", "/app/hook/deliveries/{delivery_id}/attempts", auth="app")
    def _redeliver(self, ctx: _Ctx) -> tuple[int, Any]:
        original = next((d for d in self.deliveries if d.id == int(ctx.params["delivery_id"])), None)
        if original is None:
            raise _not_found()
        again = Delivery(
            self._next_id("delivery"),
            original.guid,
            _now_iso(),
            True,
            self.redelivery_status_code,
            original.event,
            original.action,
            original.installation_id,
            original.repository_id,
            payload=original.payload,
        )
        self.deliveries.append(again)
        self.redelivered.append(again)
        if self.on_redelivery is not None:
            # off the server thread: the callback may well call the fake (or a product that does)
            threading.Thread(
                target=self.on_redelivery, args=(again,), name="fake-github-redelivery", daemon=True
            ).start()
        return 202, {}

    @route("GET", "/rate_limit", auth="any")
    def _rate_limit(self, ctx: _Ctx) -> tuple[int, Any]:
        data = self.spec.component_example("rate-limit-overview")
        key = ctx.token.token if ctx.token else "anonymous"
        limit = self.rate_limit if ctx.token else 60
        used = self.rate_used.get(key, 0)
        core = {"limit": limit, "used": used, "remaining": max(0, limit - used), "reset": int(time.time()) + 3600}
        data["resources"]["core"] = core
        data["rate"] = dict(core)
        return 200, data

    # -- handlers: repository, contents, git ----------------------------------------------------

    @route("GET", "/repos/{owner}/{repo}")
    def _get_repo(self, ctx: _Ctx) -> tuple[int, Any]:
        assert ctx.repo is not None
        data = self.repo_json(ctx.repo.full_name, full=True)
        if ctx.token is not None and ctx.token.kind == "user":
            role = ctx.repo.permissions.get(ctx.token.login or "", "none" if ctx.repo.private else "read")
            data["permissions"] = {
                "admin": role == "admin",
                "maintain": role in ("admin", "maintain"),
                "push": role in ("admin", "maintain", "write"),
                "triage": role in ("admin", "maintain", "write", "triage"),
                "pull": role != "none",
            }
        return 200, data

    @route("GET", "/repos/{owner}/{repo}/branches/{branch}")
    def _get_branch(self, ctx: _Ctx) -> tuple[int, Any]:
        repo = ctx.repo
        assert repo is not None
        sha = repo.refs.get(f"heads/{ctx.params['branch']}")
        if sha is None:
            raise GitHubError(404, "Branch not found")
        commit = self.commit_json(repo.full_name, sha)
        commit.pop("files")
        commit.pop("stats")
        api = f"{self.url}/repos/{repo.full_name}"
        return 200, {
            "name": ctx.params["branch"],
            "commit": commit,
            "_links": {
                "self": f"{api}/branches/{ctx.params['branch']}",
                "html": f"{self.html_url}/{repo.full_name}/tree/{ctx.params['branch']}",
            },
            "protected": False,
            "protection": {
                "enabled": False,
                "required_status_checks": {"enforcement_level": "off", "contexts": [], "checks": []},
            },
            "protection_url": f"{api}/branches/{ctx.params['branch']}/protection",
        }

    def _content_entry(self, repo: Repo, ref: str, path: str, entry_type: str, sha: str, size: int) -> dict[str, Any]:
        api = f"{self.url}/repos/{repo.full_name}"
        kind = "blobs" if entry_type == "file" else "trees"
        html = f"{self.html_url}/{repo.full_name}/{'blob' if entry_type == 'file' else 'tree'}/{ref}/{path}"
        return {
            "type": entry_type,
            "size": size,
            "name": path.rsplit("/", 1)[-1],
            "path": path,
            "sha": sha,
            "url": f"{api}/contents/{path}?ref={ref}",
            "git_url": f"{api}/git/{kind}/{sha}",
            "html_url": html,
            "download_url": f"https://raw.githubusercontent.com/{repo.full_name}/{ref}/{path}"
            if entry_type == "file"
            else None,
            "_links": {"self": f"{api}/contents/{path}?ref={ref}", "git": f"{api}/git/{kind}/{sha}", "html": html},
        }

    @route("GET", "/repos/{owner}/{repo}/contents/{path}")
    def _get_contents(self, ctx: _Ctx) -> tuple[int, Any]:
        repo = ctx.repo
        assert repo is not None
        ref = ctx.query.get("ref") or repo.default_branch
        sha = self._resolve(repo, ref)
        if sha is None:
            raise GitHubError(404, f"No commit found for the ref {ref}")
        files = self.objects.commits[sha].files
        path = ctx.params["path"].strip("/")
        if path in files:
            data = files[path]
            entry = self._content_entry(repo, ref, path, "file", _blob(data), len(data))
            if len(data) > 1024 * 1024:
                entry.update(encoding="none", content="")
            else:
                encoded = base64.b64encode(data).decode()
                entry.update(
                    encoding="base64", content="".join(encoded[i : i + 60] + "\n" for i in range(0, len(encoded), 60))
                )
            return 200, entry
        prefix = path + "/" if path else ""
        children: dict[str, tuple[str, str, int]] = {}
        for name, data in files.items():
            if name.startswith(prefix):
                rest = name[len(prefix) :]
                head = rest.split("/", 1)[0]
                if "/" in rest:
                    children.setdefault(head, ("dir", "", 0))
                else:
                    children[head] = ("file", _blob(data), len(data))
        if not children:
            raise _not_found()
        tree_sha = self.objects.commits[sha].tree_sha
        dir_shas = {p: e.sha for p, e in self.objects.walk(tree_sha, recursive=True) if e.type == "tree"}
        listing = []
        for name, (kind, blob, size) in sorted(children.items()):
            full = prefix + name
            listing.append(self._content_entry(repo, ref, full, kind, blob if kind == "file" else dir_shas[full], size))
        return 200, listing

    @route("PUT", "/repos/{owner}/{repo}/contents/{path}")
    def _put_contents(self, ctx: _Ctx) -> tuple[int, Any]:
        repo = ctx.repo
        assert repo is not None
        body = ctx.body
        path = ctx.params["path"].strip("/")
        branch = body.get("branch") or repo.default_branch
        try:
            data = base64.b64decode(body["content"], validate=True)
        except ValueError:
            raise GitHubError(422, "content is not valid Base64") from None
        parent = repo.refs.get(f"heads/{branch}")
        if parent is None and (repo.refs or branch != repo.default_branch):
            raise GitHubError(404, f"Branch {branch} not found")
        files = dict(self.objects.commits[parent].files) if parent else {}
        if any(p.startswith(path + "/") for p in files) or any(path.startswith(p + "/") for p in files):
            raise GitHubError(422, "Invalid request.\n\npath conflicts with an existing file or directory")
        existing = files.get(path)
        if existing is not None:
            if "sha" not in body:
                raise GitHubError(422, 'Invalid request.\n\n"sha" wasn\'t supplied.')
            if body["sha"] != _blob(existing):
                raise GitHubError(409, f"{path} does not match {body['sha']}")
        elif "sha" in body and body["sha"]:
            # GitHub ignores a sha for a file that does not exist
            pass
        files[path] = data
        commit = self._write_commit(files, [parent] if parent else [], body["message"], ctx.actor.login)
        self._set_ref(repo, f"heads/{branch}", commit.sha)
        api = f"{self.url}/repos/{repo.full_name}"
        content = self._content_entry(repo, branch, path, "file", _blob(data), len(data))
        commit_data = {
            "sha": commit.sha,
            "node_id": _node_id("Commit", commit.sha),
            "url": f"{api}/git/commits/{commit.sha}",
            "html_url": f"{self.html_url}/{repo.full_name}/commit/{commit.sha}",
            "author": {
                "date": commit.date,
                "name": commit.author,
                "email": f"{commit.author}@users.noreply.github.com",
            },
            "committer": {
                "date": commit.date,
                "name": commit.author,
                "email": f"{commit.author}@users.noreply.github.com",
            },
            "message": commit.message,
            "tree": {"url": f"{api}/git/trees/{commit.tree_sha}", "sha": commit.tree_sha},
            "parents": [
                {"url": f"{api}/git/commits/{p}", "html_url": f"{self.html_url}/{repo.full_name}/commit/{p}", "sha": p}
                for p in commit.parents
            ],
            "verification": {
                "verified": False,
                "reason": "unsigned",
                "signature": None,
                "payload": None,
                "verified_at": None,
            },
        }
        return (200 if existing is not None else 201), {"content": content, "commit": commit_data}

    @route("GET", "/repos/{owner}/{repo}/git/trees/{tree_sha}")
    def _get_tree(self, ctx: _Ctx) -> tuple[int, Any]:
        repo = ctx.repo
        assert repo is not None
        wanted = ctx.params["tree_sha"]
        tree_sha = wanted if wanted in self.objects.trees else None
        if tree_sha is None:
            sha = self._resolve(repo, wanted)
            if sha is None:
                raise _not_found()
            tree_sha = self.objects.commits[sha].tree_sha
        api = f"{self.url}/repos/{repo.full_name}"
        entries = []
        for path, e in self.objects.walk(tree_sha, recursive="recursive" in ctx.query):
            item: dict[str, Any] = {
                "path": path,
                "mode": e.mode,
                "type": e.type,
                "sha": e.sha,
                "url": f"{api}/git/{e.type}s/{e.sha}",
            }
            if e.type == "blob":
                item["size"] = e.size
            entries.append(item)
        return 200, {"sha": tree_sha, "url": f"{api}/git/trees/{tree_sha}", "tree": entries, "truncated": False}

    def _ref_json(self, repo: Repo, ref: str) -> dict[str, Any]:
        api = f"{self.url}/repos/{repo.full_name}"
        sha = repo.refs[ref]
        return {
            "ref": f"refs/{ref}",
            "node_id": _node_id("Ref", f"{repo.id}:{ref}"),
            "url": f"{api}/git/refs/{ref}",
            "object": {"type": "commit", "sha": sha, "url": f"{api}/git/commits/{sha}"},
        }

    @route("GET", "/repos/{owner}/{repo}/git/ref/{ref}")
    def _get_ref(self, ctx: _Ctx) -> tuple[int, Any]:
        repo = ctx.repo
        assert repo is not None
        ref = ctx.params["ref"].removeprefix("refs/")
        if ref not in repo.refs:
            raise _not_found()
        return 200, self._ref_json(repo, ref)

    @route("GET", "/repos/{owner}/{repo}/git/matching-refs/{ref}")
    def _matching_refs(self, ctx: _Ctx) -> tuple[int, Any]:
        repo = ctx.repo
        assert repo is not None
        prefix = ctx.params["ref"].removeprefix("refs/")
        return 200, [self._ref_json(repo, r) for r in sorted(repo.refs) if r.startswith(prefix)]

    @route("POST", "/repos/{owner}/{repo}/git/refs")
    def _create_ref(self, ctx: _Ctx) -> tuple[int, Any]:
        repo = ctx.repo
        assert repo is not None
        ref, sha = ctx.body["ref"], ctx.body["sha"]
        if not ref.startswith("refs/") or ref.count("/") < 2:
            raise GitHubError(422, "Reference name must start with 'refs/' and have at least two slashes.")
        if sha not in self.objects.commits:
            raise GitHubError(422, "Object does not exist")
        name = ref[5:]
        if name in repo.refs:
            raise GitHubError(422, "Reference already exists")
        self._set_ref(repo, name, sha)
        return 201, self._ref_json(repo, name)

    @route("PATCH", "/repos/{owner}/{repo}/git/refs/{ref}")
    def _update_ref(self, ctx: _Ctx) -> tuple[int, Any]:
        repo = ctx.repo
        assert repo is not None
        name = ctx.params["ref"].removeprefix("refs/")
        sha = ctx.body["sha"]
        if name not in repo.refs:
            raise GitHubError(422, "Reference does not exist")
        if sha not in self.objects.commits:
            raise GitHubError(422, "Object does not exist")
        if not ctx.body.get("force") and not self.objects.is_ancestor(repo.refs[name], sha):
            raise GitHubError(422, "Update is not a fast forward")
        self._set_ref(repo, name, sha)
        return 200, self._ref_json(repo, name)

    @route("DELETE", "/repos/{owner}/{repo}/git/refs/{ref}")
    def _delete_ref(self, ctx: _Ctx) -> tuple[int, Any]:
        repo = ctx.repo
        assert repo is not None
        name = ctx.params["ref"].removeprefix("refs/")
        if name not in repo.refs:
            raise GitHubError(422, "Reference does not exist")
        self._set_ref(repo, name, None)
        return 204, None

    @route("GET", "/repos/{owner}/{repo}/commits/{ref}")
    def _get_commit(self, ctx: _Ctx) -> tuple[int, Any]:
        repo = ctx.repo
        assert repo is not None
        sha = self._resolve(repo, ctx.params["ref"])
        if sha is None:
            raise GitHubError(422, f"No commit found for SHA: {ctx.params['ref']}")
        return 200, self.commit_json(repo.full_name, sha)

    # -- handlers: pull requests ----------------------------------------------------------------

    @route("GET", "/repos/{owner}/{repo}/pulls")
    def _list_pulls(self, ctx: _Ctx) -> tuple[int, Any, dict[str, str]]:
        repo = ctx.repo
        assert repo is not None
        state = ctx.query.get("state", "open")
        pulls = [p for p in self.pulls_by_repo[repo.full_name.lower()].values() if state == "all" or p.state == state]
        if "head" in ctx.query:
            owner, _, branch = ctx.query["head"].partition(":")
            # GitHub wants "owner:branch"; a bare branch name filters nothing (every PR comes back)
            if branch:
                pulls = [
                    p for p in pulls if self._repo(p.head_repo).owner.lower() == owner.lower() and p.head_ref == branch
                ]
        if "base" in ctx.query:
            pulls = [p for p in pulls if p.base_ref == ctx.query["base"]]
        sort = ctx.query.get("sort", "created")
        direction = ctx.query.get("direction", "desc" if sort == "created" else "desc")
        key = (lambda p: p.updated_at) if sort in ("updated", "popularity", "long-running") else (lambda p: p.number)
        pulls.sort(key=key, reverse=direction == "desc")
        chunk, headers = self._paginate(ctx, pulls)
        return 200, [self.pull_json(repo.full_name, p.number, simple=True) for p in chunk], headers

    @route("POST", "/repos/{owner}/{repo}/pulls")
    def _create_pull(self, ctx: _Ctx) -> tuple[int, Any]:
        repo = ctx.repo
        assert repo is not None
        body = ctx.body
        if not body.get("title") and "issue" not in body:
            raise _validation("PullRequest", "title", "missing_field")
        head = body["head"]
        owner, _, branch = head.rpartition(":")
        head_repo = repo
        if body.get("head_repo"):
            head_repo = self.repos.get(body["head_repo"].lower())  # type: ignore[assignment]
        elif owner and owner.lower() != repo.owner.lower():
            head_repo = next(
                (
                    r
                    for r in self.repos.values()
                    if r.owner.lower() == owner.lower() and (r.parent == repo.full_name or r.name == repo.name)
                ),
                None,
            )  # type: ignore[assignment]
        if head_repo is None or f"heads/{branch}" not in head_repo.refs:
            raise _validation("PullRequest", "head")
        base = body["base"]
        if f"heads/{base}" not in repo.refs:
            raise _validation("PullRequest", "base")
        head_sha = head_repo.refs[f"heads/{branch}"]
        for p in self.pulls_by_repo[repo.full_name.lower()].values():
            if p.state == "open" and p.head_repo == head_repo.full_name and p.head_ref == branch and p.base_ref == base:
                raise _validation(
                    "PullRequest",
                    code="custom",
                    message=f"A pull request already exists for {head_repo.owner}:{branch}.",
                )
        if self.objects.is_ancestor(head_sha, repo.refs[f"heads/{base}"]):
            raise _validation("PullRequest", code="custom", message=f"No commits between {base} and {branch}")
        number = self._new_number(repo)
        _, now = self._tick()
        actor = ctx.actor
        pull = PullRequest(
            repo.full_name,
            number,
            self._next_id("pull"),
            head_repo.full_name,
            branch,
            head_sha,
            base,
            body.get("title") or f"Issue #{body.get('issue')}",
            body.get("body"),
            actor.login,
            actor.type,
            created_at=now,
            updated_at=now,
            draft=bool(body.get("draft", False)),
            maintainer_can_modify=bool(body.get("maintainer_can_modify", False)),
        )
        self.pulls_by_repo[repo.full_name.lower()][number] = pull
        return 201, self.pull_json(repo.full_name, number)

    def _pull_of(self, ctx: _Ctx, param: str = "pull_number") -> PullRequest:
        assert ctx.repo is not None
        pull = self.pulls_by_repo[ctx.repo.full_name.lower()].get(int(ctx.params[param]))
        if pull is None:
            raise _not_found()
        return pull

    @route("GET", "/repos/{owner}/{repo}/pulls/{pull_number}")
    def _get_pull(self, ctx: _Ctx) -> tuple[int, Any]:
        pull = self._pull_of(ctx)
        return 200, self.pull_json(pull.repo, pull.number)

    @route("PATCH", "/repos/{owner}/{repo}/pulls/{pull_number}")
    def _update_pull(self, ctx: _Ctx) -> tuple[int, Any]:
        repo = ctx.repo
        assert repo is not None
        pull = self._pull_of(ctx)
        body = ctx.body
        if "base" in body and f"heads/{body['base']}" not in repo.refs:
            raise _validation("PullRequest", "base")
        if body.get("state") == "open" and pull.state == "closed":
            if pull.merged:
                raise _validation("PullRequest", code="custom", message="Cannot reopen a merged pull request")
            head_repo = self._repo(pull.head_repo)
            if f"heads/{pull.head_ref}" not in head_repo.refs:
                raise _validation(
                    "PullRequest",
                    "state",
                    code="custom",
                    message="state cannot be changed. The head branch was deleted.",
                )
            pull.state, pull.closed_at = "open", None
            pull.head_sha = head_repo.refs[f"heads/{pull.head_ref}"]
        elif body.get("state") == "closed" and pull.state == "open":
            pull.state, pull.closed_at = "closed", self._tick()[1]
        for key in ("title", "body", "maintainer_can_modify"):
            if key in body:
                setattr(pull, key, body[key])
        if "base" in body:
            pull.base_ref = body["base"]
        pull.updated_at = self._tick()[1]
        return 200, self.pull_json(pull.repo, pull.number)

    @route("GET", "/repos/{owner}/{repo}/pulls/{pull_number}/files")
    def _pull_files_handler(self, ctx: _Ctx) -> tuple[int, Any, dict[str, str]]:
        repo = ctx.repo
        assert repo is not None
        pull = self._pull_of(ctx)
        files = self._pull_files(repo, pull)
        api = f"{self.url}/repos/{repo.full_name}"
        for f in files:
            f["blob_url"] = f"{self.html_url}/{repo.full_name}/blob/{pull.head_sha}/{f['filename']}"
            f["raw_url"] = f"{self.html_url}/{repo.full_name}/raw/{pull.head_sha}/{f['filename']}"
            f["contents_url"] = f"{api}/contents/{f['filename']}?ref={pull.head_sha}"
        return (200, *self._paginate(ctx, files))

    @route("PUT", "/repos/{owner}/{repo}/pulls/{pull_number}/merge")
    def _merge_pull(self, ctx: _Ctx) -> tuple[int, Any]:
        repo = ctx.repo
        assert repo is not None
        pull = self._pull_of(ctx)
        body = ctx.body or {}
        method = body.get("merge_method", "merge")
        if pull.state != "open" or pull.merged:
            raise GitHubError(405, "Pull Request is not mergeable")
        if pull.unmergeable is not None:
            raise GitHubError(405, pull.unmergeable)
        if method not in repo.merge_methods:
            label = {"merge": "Merge commits", "squash": "Squash merges", "rebase": "Rebase merges"}[method]
            raise GitHubError(405, f"{label} are not allowed on this repository.")
        if body.get("sha") and body["sha"] != pull.head_sha:
            raise GitHubError(409, "Head branch was modified. Review and try the merge again.")
        sha = self._merge(repo, pull, method, body.get("commit_title"), body.get("commit_message"), ctx.actor)
        return 200, {"sha": sha, "merged": True, "message": "Pull Request successfully merged"}

    # -- handlers: comments and reactions ---------------------------------------------------------

    def _issue_exists(self, ctx: _Ctx) -> int:
        assert ctx.repo is not None
        number = int(ctx.params["issue_number"])
        try:
            self._issue_or_pull(ctx.repo, number)
        except KeyError:
            raise _not_found() from None
        return number

    @route("GET", "/repos/{owner}/{repo}/issues/{issue_number}")
    def _get_issue(self, ctx: _Ctx) -> tuple[int, Any]:
        assert ctx.repo is not None
        number = self._issue_exists(ctx)
        return 200, self.issue_json(ctx.repo.full_name, number)

    @route("GET", "/repos/{owner}/{repo}/issues/{issue_number}/comments")
    def _list_comments(self, ctx: _Ctx) -> tuple[int, Any, dict[str, str]]:
        assert ctx.repo is not None
        number = self._issue_exists(ctx)
        comments = self.comments(ctx.repo.full_name, number)
        if "since" in ctx.query:
            comments = [c for c in comments if c.updated_at >= ctx.query["since"]]
        chunk, headers = self._paginate(ctx, comments)
        return 200, [self.comment_json(c.id) for c in chunk], headers

    def _check_comment_body(self, body: str) -> None:
        if not body.strip():
            raise _validation("IssueComment", "body", "missing_field")
        if len(body) > 65536:
            raise _validation("IssueComment", "body", "custom", "Body is too long (maximum is 65536 characters)")

    @route("POST", "/repos/{owner}/{repo}/issues/{issue_number}/comments")
    def _create_comment(self, ctx: _Ctx) -> tuple[int, Any]:
        assert ctx.repo is not None
        number = self._issue_exists(ctx)
        self._check_comment_body(ctx.body["body"])
        actor = ctx.actor
        _, now = self._tick()
        comment = Comment(
            ctx.repo.full_name,
            number,
            self._next_id("comment"),
            ctx.body["body"],
            actor.login,
            actor.type,
            now,
            now,
            ctx.via_app,
        )
        self.comments_by_id[comment.id] = comment
        return 201, self.comment_json(comment.id)

    def _comment_of(self, ctx: _Ctx) -> Comment:
        assert ctx.repo is not None
        comment = self.comments_by_id.get(int(ctx.params["comment_id"]))
        if comment is None or comment.repo != ctx.repo.full_name:
            raise _not_found()
        return comment

    @route("GET", "/repos/{owner}/{repo}/issues/comments/{comment_id}")
    def _get_comment(self, ctx: _Ctx) -> tuple[int, Any]:
        return 200, self.comment_json(self._comment_of(ctx).id)

    @route("PATCH", "/repos/{owner}/{repo}/issues/comments/{comment_id}")
    def _update_comment(self, ctx: _Ctx) -> tuple[int, Any]:
        comment = self._comment_of(ctx)
        self._check_comment_body(ctx.body["body"])
        comment.body = ctx.body["body"]
        comment.updated_at = self._tick()[1]
        return 200, self.comment_json(comment.id)

    def _reaction_json(self, r: Reaction) -> dict[str, Any]:
        return {
            "id": r.id,
            "node_id": _node_id("Reaction", r.id),
            "user": self.user_json(r.user, r.user_type),
            "content": r.content,
            "created_at": r.created_at,
        }

    @route("POST", "/repos/{owner}/{repo}/issues/comments/{comment_id}/reactions")
    def _create_reaction(self, ctx: _Ctx) -> tuple[int, Any]:
        comment = self._comment_of(ctx)
        actor = ctx.actor
        content = ctx.body["content"]
        for r in comment.reactions:
            if r.user == actor.login and r.content == content:
                return 200, self._reaction_json(r)
        reaction = Reaction(self._next_id("reaction"), content, actor.login, actor.type, self._tick()[1])
        comment.reactions.append(reaction)
        return 201, self._reaction_json(reaction)

    @route("GET", "/repos/{owner}/{repo}/issues/comments/{comment_id}/reactions")
    def _list_reactions(self, ctx: _Ctx) -> tuple[int, Any, dict[str, str]]:
        comment = self._comment_of(ctx)
        reactions = [r for r in comment.reactions if "content" not in ctx.query or r.content == ctx.query["content"]]
        chunk, headers = self._paginate(ctx, reactions)
        return 200, [self._reaction_json(r) for r in chunk], headers

    # -- handlers: check runs -----------------------------------------------------------------

    def _apply_check_run(self, run: CheckRun, body: dict[str, Any]) -> None:
        for key in ("name", "external_id", "details_url", "started_at", "completed_at"):
            if key in body:
                setattr(run, key, body[key])
        if "actions" in body:
            run.actions = list(body["actions"])
        if "status" in body:
            run.status = body["status"]
            if run.status != "completed":
                run.conclusion = None
        if "conclusion" in body:
            run.conclusion = body["conclusion"]
            run.status = "completed"
        if run.status == "completed":
            if run.conclusion is None:
                raise GitHubError(422, 'Invalid request.\n\n"conclusion" wasn\'t supplied.')
            run.completed_at = body.get("completed_at") or run.completed_at or _now_iso()
        if "output" in body:
            output = body["output"]
            for a in output.get("annotations", []):
                if ("start_column" in a or "end_column" in a) and a["start_line"] != a["end_line"]:
                    raise GitHubError(
                        422,
                        "Invalid request.\n\nAnnotations only support start_column and end_column on the same line.",
                    )
                if a["end_line"] < a["start_line"]:
                    raise GitHubError(422, "Invalid request.\n\nend_line must be greater than or equal to start_line.")
            for key in ("title", "summary", "text"):
                if key in output:
                    run.output[key] = output[key]
            run.annotations.extend(copy.deepcopy(output.get("annotations", [])))

    @route("POST", "/repos/{owner}/{repo}/check-runs")
    def _create_check_run(self, ctx: _Ctx) -> tuple[int, Any]:
        repo = ctx.repo
        assert repo is not None
        if not ctx.via_app:
            raise GitHubError(403, "You must authenticate via a GitHub App.")
        body = ctx.body
        if body["head_sha"] not in self.objects.commits:
            raise _validation("CheckRun", "head_sha", message=f"No commit found for SHA: {body['head_sha']}")
        run = CheckRun(
            repo.full_name,
            self._next_id("check_run"),
            body["name"],
            body["head_sha"],
            "queued",
            None,
            _now_iso(),
            None,
            {"title": None, "summary": None, "text": None},
            [],
            None,
            None,
            self._suite_for(repo.full_name, body["head_sha"]),
        )
        self._apply_check_run(run, body)
        self.check_runs_by_id[run.id] = run
        return 201, self.check_run_json(run.id)

    def _suite_for(self, full_name: str, sha: str) -> int:
        for run in self.check_runs_by_id.values():
            if run.repo == full_name and run.head_sha == sha:
                return run.check_suite_id
        return self._next_id("check_suite")

    def _check_run_of(self, ctx: _Ctx) -> CheckRun:
        assert ctx.repo is not None
        run = self.check_runs_by_id.get(int(ctx.params["check_run_id"]))
        if run is None or run.repo != ctx.repo.full_name:
            raise _not_found()
        return run

    @route("GET", "/repos/{owner}/{repo}/check-runs/{check_run_id}")
    def _get_check_run(self, ctx: _Ctx) -> tuple[int, Any]:
        return 200, self.check_run_json(self._check_run_of(ctx).id)

    @route("PATCH", "/repos/{owner}/{repo}/check-runs/{check_run_id}")
    def _update_check_run(self, ctx: _Ctx) -> tuple[int, Any]:
        if not ctx.via_app:
            raise GitHubError(403, "You must authenticate via a GitHub App.")
        run = self._check_run_of(ctx)
        before = copy.deepcopy(run)
        try:
            self._apply_check_run(run, ctx.body)
        except GitHubError:
            self.check_runs_by_id[run.id] = before
            raise
        return 200, self.check_run_json(run.id)

    @route("GET", "/repos/{owner}/{repo}/commits/{ref}/check-runs")
    def _list_check_runs(self, ctx: _Ctx) -> tuple[int, Any, dict[str, str]]:
        repo = ctx.repo
        assert repo is not None
        sha = self._resolve(repo, ctx.params["ref"])
        if sha is None:
            raise GitHubError(422, f"No commit found for SHA: {ctx.params['ref']}")
        runs = [r for r in self.check_runs_by_id.values() if r.repo == repo.full_name and r.head_sha == sha]
        if "check_name" in ctx.query:
            runs = [r for r in runs if r.name == ctx.query["check_name"]]
        if "status" in ctx.query:
            runs = [r for r in runs if r.status == ctx.query["status"]]
        if "app_id" in ctx.query and int(ctx.query["app_id"]) != self.app_id:
            runs = []
        runs.sort(key=lambda r: r.id, reverse=True)
        if ctx.query.get("filter", "latest") == "latest":
            seen: set[str] = set()
            latest = []
            for r in runs:
                if r.name not in seen:
                    seen.add(r.name)
                    latest.append(r)
            runs = latest
        chunk, headers = self._paginate(ctx, runs)
        return 200, {"total_count": len(runs), "check_runs": [self.check_run_json(r.id) for r in chunk]}, headers

    # -- handlers: deployments ----------------------------------------------------------------

    @route("POST", "/repos/{owner}/{repo}/deployments")
    def _create_deployment(self, ctx: _Ctx) -> tuple[int, Any]:
        repo = ctx.repo
        assert repo is not None
        body = ctx.body
        ref = body["ref"]
        sha = self._resolve(repo, ref)
        if sha is None:
            raise GitHubError(422, f"No ref found for: {ref}")
        is_branch = f"heads/{ref}" in repo.refs or ref.startswith("refs/heads/")
        default_sha = repo.refs.get(f"heads/{repo.default_branch}")
        branch = ref.removeprefix("refs/heads/")
        if (
            body.get("auto_merge", True)
            and is_branch
            and default_sha
            and branch != repo.default_branch
            and not self.objects.is_ancestor(default_sha, sha)
        ):
            # GitHub merges the default branch into the ref first (and creates no deployment)
            mb = self.objects.merge_base(default_sha, sha)
            merged, conflicts = three_way(
                self.objects.commits[mb].files if mb else {},
                self.objects.commits[sha].files,
                self.objects.commits[default_sha].files,
            )
            if conflicts:
                raise GitHubError(409, f"Conflict merging {repo.default_branch} into {branch}.")
            commit = self._write_commit(
                merged, [sha, default_sha], f"Merge {repo.default_branch} into {branch}", ctx.actor.login
            )
            self._set_ref(repo, f"heads/{branch}", commit.sha)
            return 202, {"message": f"Auto-merged {repo.default_branch} into {branch} on deployment."}
        required = body.get("required_contexts")
        runs: dict[str, CheckRun] = {}
        for run in sorted(self.check_runs_by_id.values(), key=lambda r: r.id):
            if run.repo == repo.full_name and run.head_sha == sha:
                runs[run.name] = run
        # check runs count as contexts; only "success" passes (a skipped or neutral check fails it)
        names = list(runs) if required is None else list(required)
        contexts = []
        for name in names:
            run = runs.get(name)
            state = "missing" if run is None else (run.conclusion if run.status == "completed" else "pending")
            contexts.append({"context": name, "state": state})
        if any(c["state"] != "success" for c in contexts):
            raise GitHubError(
                409,
                f"Conflict: Commit status checks failed for {ref}.",
                [{"contexts": contexts, "resource": "Deployment", "field": "required_contexts", "code": "invalid"}],
            )
        actor = ctx.actor
        environment = body.get("environment", "production")
        deployment = Deployment(
            repo.full_name,
            self._next_id("deployment"),
            sha,
            ref,
            body.get("task", "deploy"),
            environment,
            environment,
            body.get("payload", {}) if body.get("payload") != "" else "",
            body.get("description"),
            actor.login,
            actor.type,
            self._tick()[1],
            bool(body.get("transient_environment", False)),
            bool(body.get("production_environment", environment == "production")),
        )
        self.deployments_by_id[deployment.id] = deployment
        return 201, self.deployment_json(deployment.id)

    @route("GET", "/repos/{owner}/{repo}/deployments")
    def _list_deployments(self, ctx: _Ctx) -> tuple[int, Any, dict[str, str]]:
        repo = ctx.repo
        assert repo is not None
        found = [d for d in self.deployments(repo.full_name)]
        for key in ("sha", "ref", "task", "environment"):
            if key in ctx.query:
                found = [d for d in found if getattr(d, key) == ctx.query[key]]
        found.sort(key=lambda d: d.id, reverse=True)
        chunk, headers = self._paginate(ctx, found)
        return 200, [self.deployment_json(d.id) for d in chunk], headers

    def _deployment_of(self, ctx: _Ctx) -> Deployment:
        assert ctx.repo is not None
        d = self.deployments_by_id.get(int(ctx.params["deployment_id"]))
        if d is None or d.repo != ctx.repo.full_name:
            raise _not_found()
        return d

    @route("GET", "/repos/{owner}/{repo}/deployments/{deployment_id}")
    def _get_deployment(self, ctx: _Ctx) -> tuple[int, Any]:
        return 200, self.deployment_json(self._deployment_of(ctx).id)

    @route("POST", "/repos/{owner}/{repo}/deployments/{deployment_id}/statuses")
    def _create_deployment_status(self, ctx: _Ctx) -> tuple[int, Any]:
        d = self._deployment_of(ctx)
        body = ctx.body
        actor = ctx.actor
        if body.get("environment"):
            d.environment = body["environment"]
        status = DeploymentStatus(
            self._next_id("status"),
            body["state"],
            body.get("description", ""),
            d.environment,
            body.get("target_url", "") or body.get("log_url", ""),
            body.get("log_url", "") or body.get("target_url", ""),
            body.get("environment_url", ""),
            actor.login,
            actor.type,
            self._tick()[1],
        )
        d.statuses.append(status)
        if status.state == "success" and body.get("auto_inactive", True):
            for other in self.deployments(d.repo):
                if (
                    other.id != d.id
                    and other.environment == d.environment
                    and not other.transient_environment
                    and not other.production_environment
                    and other.state == "success"
                ):
                    other.statuses.append(
                        DeploymentStatus(
                            self._next_id("status"),
                            "inactive",
                            "",
                            other.environment,
                            "",
                            "",
                            "",
                            actor.login,
                            actor.type,
                            self._tick()[1],
                        )
                    )
        return 201, self.deployment_status_json(d.id, status.id)

    @route("GET", "/repos/{owner}/{repo}/deployments/{deployment_id}/statuses")
    def _list_deployment_statuses(self, ctx: _Ctx) -> tuple[int, Any, dict[str, str]]:
        d = self._deployment_of(ctx)
        chunk, headers = self._paginate(ctx, list(reversed(d.statuses)))
        return 200, [self.deployment_status_json(d.id, s.id) for s in chunk], headers

    # -- handlers: collaborators ----------------------------------------------------------------

    @route("GET", "/repos/{owner}/{repo}/collaborators/{username}/permission")
    def _permission(self, ctx: _Ctx) -> tuple[int, Any]:
        repo = ctx.repo
        assert repo is not None
        login = ctx.params["username"]
        role = repo.permissions.get(login)
        if role is None:
            role = "admin" if login == repo.owner else ("none" if repo.private else "read")
        user = self.user_json(login)
        user["role_name"] = role
        user["permissions"] = {
            "admin": role == "admin",
            "maintain": role in ("admin", "maintain"),
            "push": role in ("admin", "maintain", "write"),
            "triage": role in ("admin", "maintain", "write", "triage"),
            "pull": role != "none",
        }
        return 200, {"permission": LEGACY[role], "role_name": role, "user": user}


def _blob(data: bytes) -> str:
    return blob_sha(data)


_TEMPLATES: dict[str, Any] = {}


def _templates() -> dict[str, Any]:
    """Documented example objects, the starting point of every answer (cached)."""
    if not _TEMPLATES:
        s = spec()
        pull = s.component_example("pull-request")
        _TEMPLATES.update(
            user=pull["user"],
            repo=pull["head"]["repo"],
            full_repo=s.component_example("full-repository-default-response"),
            pull=pull,
            pull_simple_keys=frozenset(s.component_example("pull-request-simple-items")[0]),
            installation=s.component_example("installation"),
            app=s.component_example("integration"),
            comment=s.component_example("issue-comment"),
            check_run=s.component_example("check-run-example-of-completed-conclusion"),
            deployment=s.component_example("deployment-simple-example"),
            deployment_status=s.component_example("deployment-status"),
        )
    return _TEMPLATES


@contextmanager
def serving(github: FakeGitHub, wrapper: Callable[[Any], Any]) -> Iterator[None]:
    """Wrap the shared fake's ``serve`` (request in, answer out) for one test."""
    github.serve = wrapper(FakeGitHub.serve.__get__(github))  # type: ignore[method-assign]
    try:
        yield
    finally:
        del github.serve


# a fault armed this many times or more stands for "GitHub keeps failing": left over is fine
PERSISTENT_FAULT = 100


def teardown_failure(fake: FakeGitHub) -> str | None:
    """Why the test using ``fake`` must fail at teardown, or None (used by the ``github`` fixture)."""
    with fake._lock:
        if fake._violations_expected:
            if not fake.violations:
                return "the test called github.expect_violations() but no request violated GitHub's API description"
            return None
        if fake.violations:
            return (
                f"{len(fake.violations)} request(s) to the GitHub fake broke GitHub's OpenAPI description "
                f"(@octokit/openapi api.github.com.json):\n{fake.violation_report()}"
            )
        unserved = [
            f"{f.method} {f.pattern.pattern} ({f.times} left)" for f in fake.faults if f.times < PERSISTENT_FAULT
        ]
        if unserved:  # a fault the test armed never happened: the test did not exercise what it says
            return "faults armed but never served: " + "; ".join(unserved)
        return None
