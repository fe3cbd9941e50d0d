"""The first-run setup page (bot/setup/): GitHub's App manifest flow against the GitHub fake.

Unit tests drive lemi's real app (no credentials) with Starlette's TestClient; the fake plays
GitHub's side: ``register_manifest_code`` is what GitHub does when the user clicks "Create
GitHub App", and ``POST /app-manifests/{code}/conversions`` hands over the credentials. Who may
use the page (the socket peer, not X-Forwarded-For; the one-time setup token) is tested on the
app composed as ``lemi serve`` serves it and on real ``lemi serve`` processes. The end-to-end
test runs ``lemi serve`` (uvicorn) on 127.0.0.1 and headless Debian Chromium: the user types the
setup token from .lemi-setup-token, the form posts the manifest to the fake's web page, the fake
redirects back, the page shows the next steps, and a second ``lemi serve`` reads .env and serves
webhooks.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import stat
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from app_harness import LEMI_YML
from fakes.github import FakeGitHub
from fakes.webhooks import signed
from starlette.testclient import TestClient

from bot import setup
from bot.cli.server import served_app
from bot.core.settings import load_settings
from bot.server import peer
from bot.server.app import create_app
from bot.setup import access

ROOT = Path(__file__).resolve().parent.parent
APP_YML = setup.app_manifest()
LOCAL = ("127.0.0.1", 50123)  # the setup page answers loopback clients only
BASE = "http://127.0.0.1:8080"
PUBLIC = "https://lemi.acme.example"
CREDENTIAL_VARS = (
    "GITHUB_APP_ID",
    "GITHUB_APP_PRIVATE_KEY",
    "GITHUB_APP_PRIVATE_KEY_PATH",
    "GITHUB_WEBHOOK_SECRET",
    "GITHUB_API_URL",
)


# --- helpers ---------------------------------------------------------------------------------------


class _Forms(HTMLParser):
    """Every form of a page: action, method and its named inputs (hidden ones included)."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[dict[str, Any]] = []
        self.links: dict[str, str] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.forms.append(
                {"action": a.get("action", ""), "method": a.get("method", "get"), "id": a.get("id"), "inputs": {}}
            )
        elif tag == "input" and self.forms and a.get("name"):
            if a.get("type") in ("radio", "checkbox") and "checked" not in a:
                return
            self.forms[-1]["inputs"][a["name"]] = a.get("value", "")
        elif tag == "a" and a.get("id"):
            self.links[a["id"]] = a.get("href", "")


def forms(html: str) -> _Forms:
    parser = _Forms()
    parser.feed(html)
    return parser


@pytest.fixture
def first_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No credentials anywhere, no lemi.yml, the working directory an empty folder (for .env)."""
    for name in CREDENTIAL_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LEMI_CONFIG", str(tmp_path / "lemi.yml"))
    monkeypatch.setenv("LEMI_QUEUE", f"sqlite:///{tmp_path / 'queue.db'}")
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def client(first_run: Path) -> Iterator[TestClient]:
    with TestClient(create_app(), base_url=BASE, client=LOCAL, follow_redirects=False) as c:
        yield c


def setup_token(folder: Path) -> str:
    """The running server's one-time setup token, from the file beside .env (as a user copies it)."""
    return (folder / setup.TOKEN_FILE).read_text().strip()


def start_form(client: TestClient, **fields: str) -> Any:
    """GET / then POST /setup/start with the page's csrf token, the setup token and ``fields``."""
    page = client.get("/")
    assert page.status_code == 200, page.text
    values = {**forms(page.text).forms[0]["inputs"], **fields}
    if "token" not in fields:
        values["token"] = setup_token(Path.cwd())
    return client.post("/setup/start", data=values, headers={"Origin": BASE})


def to_github(response: Any) -> tuple[str, str, dict[str, Any]]:
    """(action URL, state, manifest) of the page that posts the manifest to GitHub."""
    assert response.status_code == 200, response.text
    form = next(f for f in forms(response.text).forms if f["id"] == "to-github")
    assert form["method"] == "post"
    action = form["action"]
    state = parse_qs(urlsplit(action).query)["state"][0]
    return action, state, json.loads(form["inputs"]["manifest"])


def ghes_start(client: TestClient, github: FakeGitHub, **fields: str) -> tuple[str, str, dict[str, Any]]:
    values = dict(
        github="ghes", ghes_url=github.url, ghes_confirm="yes", account="organization", org="acme", public_url=PUBLIC
    )
    values.update(fields)
    return to_github(start_form(client, **values))


def secrets_of(app: dict[str, Any]) -> list[str]:
    body = "".join(app["pem"].strip().splitlines()[1:-1])
    return [app["webhook_secret"], app["client_secret"], body[:40], body[-40:]]


# --- the routes exist only without credentials ---------------------------------------------------------


def test_form_is_served_without_credentials(client: TestClient, first_run: Path) -> None:
    page = client.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    parsed = forms(page.text)
    form = parsed.forms[0]
    assert (form["action"], form["method"]) == ("/setup/start", "post")
    assert set(form["inputs"]) == {
        "csrf",
        "token",
        "github",
        "ghes_url",
        "account",
        "org",
        "public_url",
        "name",
    }  # + ghes_confirm, unticked
    assert form["inputs"]["token"] == "" and 'id="ghes_confirm"' in page.text
    # the token is asked for, with where to find it; the page never shows it
    assert str(first_run / setup.TOKEN_FILE) in page.text and "console" in page.text
    assert setup_token(first_run) not in page.text
    assert form["inputs"]["github"] == "github.com" and form["inputs"]["account"] == "personal"
    assert form["inputs"]["name"] == APP_YML["name"]
    # the csrf token is the HttpOnly, SameSite=Lax setup cookie
    cookie = page.headers["set-cookie"]
    assert f"{setup.COOKIE}={form['inputs']['csrf']}" in cookie and "HttpOnly" in cookie and "SameSite=lax" in cookie
    csp = page.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "form-action 'self'" in csp and "frame-ancestors 'none'" in csp
    assert page.headers["x-frame-options"] == "DENY" and page.headers["cache-control"] == "no-store"
    for permission, level in APP_YML["default_permissions"].items():
        assert f"{permission}: {level}" in page.text
    assert f"{BASE}/setup/callback" in page.text
    # health still says what is missing
    body = client.get("/healthz").json()
    assert body["app"] == "unconfigured" and "lemi.yml not found" in body["problem"]


@pytest.mark.parametrize("present", ["all", "only GITHUB_APP_ID", "only GITHUB_WEBHOOK_SECRET"])
def test_no_setup_routes_with_credentials(
    first_run: Path, github_env: FakeGitHub, monkeypatch: pytest.MonkeyPatch, present: str
) -> None:
    if present != "all":
        keep = present.removeprefix("only ")
        for name in CREDENTIAL_VARS:
            if name != keep:
                monkeypatch.delenv(name, raising=False)
    with TestClient(create_app(), base_url=BASE, client=LOCAL, follow_redirects=False) as c:
        assert c.get("/healthz").json()["app"] == "unconfigured"  # no lemi.yml (and maybe partial credentials)
        for method, path in [
            ("GET", "/"),
            ("POST", "/setup/start"),
            ("GET", "/setup/callback?code=x&state=y"),
            ("GET", "/setup/done"),
            ("GET", "/setup/confirm"),
            ("POST", "/setup/confirm"),
        ]:
            assert c.request(method, path).status_code == 404, (method, path)


def test_other_machines_and_rebound_host_names_are_refused(first_run: Path) -> None:
    with TestClient(create_app(), base_url=BASE, client=("10.1.2.3", 4000), follow_redirects=False) as remote:
        page = remote.get("/")
        assert page.status_code == 403 and "ssh -L 8080:localhost:8080" in page.text
        assert remote.post("/setup/start", data={"account": "personal"}).status_code == 403
    # a DNS name that points at 127.0.0.1 (DNS rebinding) is not this machine's name
    with TestClient(create_app(), base_url="http://evil.example:8080", client=LOCAL) as rebound:
        assert rebound.get("/").status_code == 403
    with TestClient(create_app(), base_url="http://localhost:8080", client=LOCAL) as local:
        assert local.get("/").status_code == 200


# --- this machine: the socket peer decides, never X-Forwarded-For -----------------------------------------

REMOTE = ("203.0.113.9", 4000)  # another machine (TEST-NET-3)
SPOOFED = {"X-Forwarded-For": "127.0.0.1"}
FROM_ELSEWHERE = "Open the setup page from this machine"
THROUGH_A_PROXY = "Open the setup page without a proxy"


def _setup_routes(client: TestClient, token: str) -> dict[str, Any]:
    """One request to each setup route, the POSTs as complete as a stranger could make them."""
    client.cookies.set(setup.COOKIE, "c" * 43)
    fields = {
        "csrf": "c" * 43,
        "token": token,
        "github": "github.com",
        "account": "personal",
        "public_url": PUBLIC,
        "name": "lemi",
    }
    return {
        "GET /": client.get("/", headers=SPOOFED),
        "POST /setup/start": client.post("/setup/start", data=fields, headers={**SPOOFED, "Origin": BASE}),
        "GET /setup/callback": client.get("/setup/callback?code=abc123&state=" + "s" * 43, headers=SPOOFED),
        "GET /setup/confirm": client.get("/setup/confirm", headers=SPOOFED),
        "POST /setup/confirm": client.post(
            "/setup/confirm", data={"csrf": "c" * 43, "replace": "yes"}, headers={**SPOOFED, "Origin": BASE}
        ),
        "GET /setup/done": client.get("/setup/done", headers=SPOOFED),
    }


def test_the_access_log_leaves_out_deliveries_answered_2xx_and_names_the_forwarded_client() -> None:
    """``lemi serve`` writes uvicorn's access line itself (uvicorn's is off): every request but a
    ``POST /webhook`` answered 2xx, with the client the proxy headers name, a refused delivery too."""

    async def inner(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["path"] == "/boom":
            raise RuntimeError("a bug")
        status = 202 if scope["query_string"] == b"ok" else 401 if scope["path"] == "/webhook" else 200
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    lines: list[dict[str, Any]] = []
    handler = logging.Handler()
    handler.setFormatter(peer.AccessFormatter())  # the access log's own: one JSON object a line
    handler.emit = lambda record: lines.append(json.loads(handler.format(record)))  # type: ignore[method-assign]
    access = logging.getLogger(peer.ACCESS)
    access.addHandler(handler)
    try:
        client = TestClient(served_app(inner, trusted="*"), client=REMOTE, raise_server_exceptions=False)
        forwarded = {"X-Forwarded-For": "198.51.100.7"}
        assert client.post("/webhook?ok", headers=forwarded).status_code == 202
        assert client.post("/webhook", headers=forwarded).status_code == 401
        assert client.get("/healthz", headers=forwarded).status_code == 200
        assert client.get("/boom", headers=forwarded).status_code == 500
    finally:
        access.removeHandler(handler)
    assert [line["message"] for line in lines] == [
        "198.51.100.7:0 - POST /webhook HTTP/1.1 401",
        "198.51.100.7:0 - GET /healthz HTTP/1.1 200",
        "198.51.100.7:0 - GET /boom HTTP/1.1 500",
    ]
    assert [(x["logger"], x["level"], x["client"], x["method"], x["path"], x["status"]) for x in lines] == [
        ("lemi.access", "info", "198.51.100.7:0", "POST", "/webhook", 401),
        ("lemi.access", "info", "198.51.100.7:0", "GET", "/healthz", 200),
        ("lemi.access", "info", "198.51.100.7:0", "GET", "/boom", 500),
    ]


def test_the_served_app_records_the_socket_peer_before_proxy_headers() -> None:
    seen: list[dict[str, Any]] = []

    async def inner(scope: dict[str, Any], receive: Any, send: Any) -> None:
        seen.append(dict(scope))
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    TestClient(served_app(inner, trusted="*"), client=REMOTE).get(
        "/", headers={"X-Forwarded-For": "127.0.0.1", "X-Forwarded-Proto": "https"}
    )
    # uvicorn's proxy headers still apply (access logs, request.client, the scheme) ...
    assert (seen[0]["client"][0], seen[0]["scheme"]) == ("127.0.0.1", "https")
    # ... and the socket peer is kept beside them
    assert seen[0][peer.PEER_KEY] == REMOTE and peer.socket_peer(seen[0]) == "203.0.113.9"
    assert peer.socket_peer({"client": ("127.0.0.1", 1)}) == "127.0.0.1"  # served some other way
    assert peer.trusted_hosts({}) == "127.0.0.1,::1" and peer.trusted_hosts({"FORWARDED_ALLOW_IPS": "*"}) == "*"


def test_x_forwarded_for_does_not_make_another_machine_local(first_run: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FORWARDED_ALLOW_IPS", "*")  # common behind a PaaS router: every peer is a trusted proxy
    app = create_app()
    with TestClient(
        served_app(app), base_url=BASE, client=REMOTE, follow_redirects=False
    ) as remote:  # as `lemi serve` serves it
        answers = _setup_routes(remote, setup_token(first_run))
        assert {route: r.status_code for route, r in answers.items()} == dict.fromkeys(answers, 403)
        assert all(FROM_ELSEWHERE in r.text and "ssh -L 8080:localhost:8080" in r.text for r in answers.values())
        # the socket alone decides: without the proxy-header check, still refused
        monkeypatch.setattr(access, "PROXY_HEADERS", ())
        answers = _setup_routes(remote, setup_token(first_run))
        assert {route: r.status_code for route, r in answers.items()} == dict.fromkeys(answers, 403)
    assert app.state.setup.pending == {} and not (first_run / ".env").exists()


@pytest.mark.parametrize("header", ["Forwarded", "X-Forwarded-For", "X-Forwarded-Host", "X-Real-IP"])
def test_a_request_a_proxy_passed_on_is_refused(first_run: Path, header: str) -> None:
    """From loopback, but with a proxy header: a proxy on this machine may be passing on a stranger's request."""
    value = "for=127.0.0.1" if header == "Forwarded" else "127.0.0.1"
    app = create_app()
    with TestClient(served_app(app), base_url=BASE, client=LOCAL, follow_redirects=False) as local:
        page = local.get("/", headers={header: value})
        assert page.status_code == 403 and THROUGH_A_PROXY in page.text and f"the {header} header" in page.text
        assert local.get("/").status_code == 200  # the same, straight to the port
        fields = {
            **forms(local.get("/").text).forms[0]["inputs"],
            "token": setup_token(first_run),
            "public_url": PUBLIC,
        }
        assert local.post("/setup/start", data=fields, headers={header: value, "Origin": BASE}).status_code == 403
        assert local.get("/setup/callback?code=abc123&state=" + "s" * 43, headers={header: value}).status_code == 403
    assert app.state.setup.pending == {}


def test_served_some_other_way_proxy_headers_are_refused_all_the_same(first_run: Path) -> None:
    """`uvicorn --forwarded-allow-ips='*' bot.server.app:app`: no socket peer was recorded, and scope["client"]
    says 127.0.0.1, but the header that said so is still there."""
    from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

    with TestClient(ProxyHeadersMiddleware(create_app(), trusted_hosts="*"), base_url=BASE, client=REMOTE) as remote:  # type: ignore[arg-type]
        answers = _setup_routes(remote, setup_token(first_run))
        assert {route: r.status_code for route, r in answers.items()} == dict.fromkeys(answers, 403)


def test_the_procfiles_lines_read_dotenv_and_never_log_its_values(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Both lines pass `--env-file .env`: the variables of ./.env that the environment does not set
    (the setup page writes the App's credentials there), their names said, never their values."""
    import shlex

    from bot.cli import main, server

    procfile = (Path(__file__).parents[1] / "Procfile").read_text()
    lines = dict(line.split(": ", 1) for line in procfile.splitlines() if line.strip())
    web = shlex.split(lines["web"].replace("${PORT:-8080}", "9125"))
    worker = shlex.split(lines["worker"])
    for argv in (web, worker):
        assert argv[0] == "lemi" and argv[argv.index("--env-file") + 1] == ".env", argv
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("GITHUB_WEBHOOK_SECRET=s3cr3t-from-dotenv\nLEMI_WORKERS=3\n")
    for name in ("GITHUB_WEBHOOK_SECRET", "LEMI_WORKERS", "PORT"):
        monkeypatch.setenv(name, "x")  # restored after the test ...
        monkeypatch.delenv(name)  # ... and unset now
    monkeypatch.setenv("LEMI_WORKERS", "2")  # the environment wins over the file
    ran: list[dict[str, Any]] = []
    monkeypatch.setattr(server, "run_server", lambda app, **options: ran.append(options))
    assert main(web[1:]) == 0
    assert [(o["host"], o["port"]) for o in ran] == [("0.0.0.0", 9125)]
    assert (os.environ["GITHUB_WEBHOOK_SECRET"], os.environ["LEMI_WORKERS"]) == ("s3cr3t-from-dotenv", "2")
    out, err = capsys.readouterr()
    assert "lemi: read GITHUB_WEBHOOK_SECRET from .env" in err, err
    assert "s3cr3t-from-dotenv" not in out + err
    (tmp_path / ".env").unlink()  # no .env (the platform sets the variables): it starts all the same
    assert main(web[1:]) == 0 and len(ran) == 2


def test_lemi_serve_hands_uvicorn_the_recording_app_without_its_proxy_headers(monkeypatch: pytest.MonkeyPatch) -> None:
    from bot.cli import main, server
    from bot.server.app import app

    ran: list[tuple[Any, dict[str, Any]]] = []
    monkeypatch.setattr(server, "run_server", lambda served, **options: ran.append((served, options)))
    monkeypatch.setenv("PORT", "8080")  # restored after the test
    monkeypatch.setenv("FORWARDED_ALLOW_IPS", "10.0.0.1")
    assert main(["serve", "--port", "9123"]) == 0
    [(served, options)] = ran
    assert options["proxy_headers"] is False and options["access_log"] is False and options["port"] == 9123
    assert isinstance(served, peer.RecordPeer) and served.inner.app is app  # peer recorded, then uvicorn's middleware
    assert (
        "10.0.0.1" in served.inner.trusted_hosts and "127.0.0.1" not in served.inner.trusted_hosts
    )  # FORWARDED_ALLOW_IPS
    assert os.environ["PORT"] == "9123"  # the console names the port lemi listens on


def _this_machines_ipv4() -> str | None:
    """A non-loopback IPv4 address of this machine (traffic to it never leaves the machine), or None."""
    import ipaddress

    candidates: list[str] = []
    try:
        candidates += [str(info[4][0]) for info in socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET)]
    except OSError:
        pass
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:  # connect() on UDP sends nothing: it only picks the source address of the default route
            probe.connect(("198.51.100.1", 9))
            candidates.append(probe.getsockname()[0])
        except OSError:
            pass
    for address in candidates:
        if ipaddress.ip_address(address).is_loopback:
            continue
        try:
            with socket.socket() as sock:
                sock.bind((address, 0))  # only this machine's own addresses can be bound
        except OSError:
            continue
        return address
    return None


def test_lemi_serve_decides_on_the_socket_behind_a_trusting_proxy_setup(tmp_path: Path) -> None:
    address = _this_machines_ipv4()
    if address is None:
        pytest.skip("this machine has no non-loopback IPv4 address to connect to")
    home = tmp_path / "lemi"
    home.mkdir()
    server = Server(home, host="0.0.0.0", FORWARDED_ALLOW_IPS="*", LEMI_QUEUE=f"sqlite:///{home / 'queue.db'}")
    try:
        token = setup_token(home)
        remote = f"http://{address}:{server.port}"
        fields = {
            "csrf": "c" * 43,
            "token": token,
            "github": "github.com",
            "account": "personal",
            "public_url": PUBLIC,
            "name": "lemi",
        }
        with httpx.Client(
            base_url=remote, trust_env=False, timeout=10, follow_redirects=False, cookies={setup.COOKIE: "c" * 43}
        ) as http:
            answers = {
                "GET /": http.get("/", headers=SPOOFED),
                "POST /setup/start": http.post("/setup/start", data=fields, headers={**SPOOFED, "Origin": remote}),
                "GET /setup/callback": http.get("/setup/callback?code=abc123&state=" + "s" * 43, headers=SPOOFED),
            }
        assert {route: r.status_code for route, r in answers.items()} == dict.fromkeys(answers, 403), server.text()
        assert all(FROM_ELSEWHERE in r.text for r in answers.values())
        with httpx.Client(base_url=server.url, trust_env=False, timeout=10) as local:
            spoofed = local.get("/", headers=SPOOFED)  # this machine, through a proxy
            assert spoofed.status_code == 403 and THROUGH_A_PROXY in spoofed.text
            assert local.get("/").status_code == 200  # this machine, straight to the port
    finally:
        server.stop()
    # the access log still names the client X-Forwarded-For names (uvicorn's proxy headers, as before)
    access = [json.loads(line) for line in server.stdout().splitlines() if "GET / HTTP/1.1 403" in line]
    assert len(access) == 2, server.stdout()
    assert all(a["client"].startswith("127.0.0.1:") and address not in a["message"] for a in access), access
    assert not (home / ".env").exists()


# --- the one-time setup token ----------------------------------------------------------------------------


def test_registration_needs_the_setup_token(client: TestClient, first_run: Path) -> None:
    flow: setup.SetupFlow = client.app.state.setup  # type: ignore[attr-defined]
    token_file = first_run / setup.TOKEN_FILE
    token = setup_token(first_run)
    assert flow.token == token and token not in repr(flow)
    assert len(token.replace("-", "")) == 32  # base32: 160 bits
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    other = setup.new_setup_token()
    for typed, says in [
        ("", "paste the setup token"),
        ("  ", "paste the setup token"),
        (other, "not the setup token"),
        (token[:-1], "not the setup token"),
        (token + "a", "not the setup token"),
        ("tøken", "not the setup token"),
    ]:
        response = start_form(client, public_url=PUBLIC, token=typed)
        assert response.status_code == 400, typed
        assert 'id="token-error"' in response.text and says in response.text, typed
        assert str(token_file) in response.text and "console" in response.text  # where to find it
        assert (
            "to-github" not in response.text and "/settings/apps/new" not in response.text
        )  # no manifest goes anywhere
        assert token not in response.text
        assert flow.pending == {}
    assert not (first_run / ".env").exists()
    # the right one, typed as read out (upper case, spaces for hyphens): the flow proceeds
    action, state, _ = to_github(start_form(client, public_url=PUBLIC, token=token.upper().replace("-", " ")))
    assert action == f"https://github.com/settings/apps/new?state={state}" and list(flow.pending) == [state]


def test_the_token_is_on_the_console_and_in_the_file_never_in_the_log(
    first_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with TestClient(create_app(), base_url=BASE, client=LOCAL):
        old = setup_token(first_run)
    with TestClient(create_app(), base_url=BASE, client=LOCAL, follow_redirects=False) as second:
        token = setup_token(first_run)  # replaced at each start
        assert token != old
        assert stat.S_IMODE((first_run / setup.TOKEN_FILE).stat().st_mode) == 0o600
        refused = start_form(second, public_url=PUBLIC, token=old)
        assert refused.status_code == 400 and 'id="token-error"' in refused.text
        assert start_form(second, public_url=PUBLIC, token="nope").status_code == 400
    err = capsys.readouterr().err
    assert old in err and token in err
    logged = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    assert any(
        "setup token" in entry["message"] and str(first_run / setup.TOKEN_FILE) in entry["message"] for entry in logged
    )
    assert any("wrong setup token" in entry["message"] for entry in logged)
    for entry in logged:
        assert token not in json.dumps(entry) and old not in json.dumps(entry)


def test_the_token_is_retired_once_env_is_written(client: TestClient, github: FakeGitHub, first_run: Path) -> None:
    token = setup_token(first_run)
    _, state, manifest = ghes_start(client, github)
    code = github.register_manifest_code(
        manifest, owner="acme", owner_type="Organization", state=state, html_url=github.url
    )
    assert client.get(f"/setup/callback?code={code}&state={state}").status_code == 303
    assert (first_run / ".env").exists() and not (first_run / setup.TOKEN_FILE).exists()
    flow: setup.SetupFlow = client.app.state.setup  # type: ignore[attr-defined]
    assert flow.token is None
    assert start_form_after_done(client, token=token).status_code == 409
    # were the page to start over in this process, the old token opens nothing
    flow.done = None
    response = start_form(client, public_url=PUBLIC, token=token)
    assert response.status_code == 400 and 'id="token-error"' in response.text and flow.pending == {}


def test_lemi_serve_prints_the_token_on_its_console_only(tmp_path: Path) -> None:
    home = tmp_path / "lemi"
    home.mkdir()
    server = Server(home, LEMI_QUEUE=f"sqlite:///{home / 'queue.db'}")
    try:
        assert stat.S_IMODE((home / setup.TOKEN_FILE).stat().st_mode) == 0o600
        token = setup_token(home)
        with httpx.Client(base_url=server.url, trust_env=False, timeout=10, follow_redirects=False) as http:
            csrf = forms(http.get("/").text).forms[0]["inputs"]["csrf"]
            fields = {"csrf": csrf, "github": "github.com", "account": "personal", "public_url": PUBLIC, "name": "lemi"}
            wrong = http.post("/setup/start", data={**fields, "token": "not-it"}, headers={"Origin": server.url})
            assert wrong.status_code == 400 and 'id="token-error"' in wrong.text and "to-github" not in wrong.text
            right = http.post("/setup/start", data={**fields, "token": token}, headers={"Origin": server.url})
            assert right.status_code == 200 and 'id="to-github"' in right.text
    finally:
        server.stop()
    out, err = server.stdout(), server.stderr()
    # the console shows it (stderr, the terminal of `make run`) ...
    assert [line.strip() for line in err.splitlines() if token in line] == [token]
    # ... and no log line does: not the JSON log, not uvicorn's lines, not the access log
    logged = [line for line in err.splitlines() if line.startswith("{")]
    assert logged and all(json.loads(line) for line in logged)
    assert "POST /setup/start HTTP/1.1 400" in out and "POST /setup/start HTTP/1.1 200" in out
    for line in logged + out.splitlines():
        assert token not in line and token.replace("-", "") not in line


# --- a GitHub other than github.com is confirmed ---------------------------------------------------------------


@pytest.mark.parametrize(
    "ghes_url, host",
    [
        ("https://GHE.acme.test/", "ghe.acme.test"),
        ("https://ghe.acme.test:8443", "ghe.acme.test:8443"),
        ("https://octo.ghe.com", "octo.ghe.com"),
    ],
)
def test_a_github_other_than_github_com_must_be_confirmed(client: TestClient, ghes_url: str, host: str) -> None:
    flow: setup.SetupFlow = client.app.state.setup  # type: ignore[attr-defined]
    for unticked in ({}, {"ghes_confirm": ""}, {"ghes_confirm": "no"}):
        refused = start_form(client, github="ghes", ghes_url=ghes_url, public_url=PUBLIC, **unticked)
        assert refused.status_code == 400 and 'id="ghes_confirm-error"' in refused.text
        assert f"{host} is not github.com: tick the box to confirm that {host} is your organisation" in refused.text
        assert f'<strong id="ghes-host">{host}</strong>' in refused.text  # the box names the host it confirms
        assert "to-github" not in refused.text and flow.pending == {}
    confirmed = start_form(client, github="ghes", ghes_url=ghes_url, ghes_confirm="yes", public_url=PUBLIC)
    action, _, _ = to_github(confirmed)
    assert urlsplit(action).netloc == host
    # the page that sends the manifest names the host plainly
    assert f'Continue on <span id="github-host">{host}</span>' in confirmed.text
    assert 'id="not-dotcom"' in confirmed.text and f"{host} is not github.com" in confirmed.text


def test_github_com_needs_no_confirmation(client: TestClient) -> None:
    for fields in (
        {},
        {"github": "ghes", "ghes_url": "https://github.com"},
    ):  # github.com typed as an Enterprise Server
        response = start_form(client, public_url=PUBLIC, **fields)
        action, _, _ = to_github(response)
        assert action.startswith("https://github.com/settings/apps/new?state=")
        assert (
            'Continue on <span id="github-host">github.com</span>' in response.text
            and 'id="not-dotcom"' not in response.text
        )


# --- the manifest -------------------------------------------------------------------------------------------


def test_personal_account_on_github_com(client: TestClient) -> None:
    response = start_form(client, public_url=PUBLIC + "/", name="lemi-acme")
    action, state, manifest = to_github(response)
    assert action == f"https://github.com/settings/apps/new?state={state}"
    assert len(state) >= 40
    assert manifest == {
        **APP_YML,
        "name": "lemi-acme",
        "hook_attributes": {**APP_YML["hook_attributes"], "url": f"{PUBLIC}/webhook"},
        "redirect_url": f"{BASE}/setup/callback",
    }
    assert manifest["default_permissions"] == APP_YML["default_permissions"]
    assert manifest["default_events"] == APP_YML["default_events"] == ["pull_request", "push", "issue_comment"]
    assert manifest["hook_attributes"]["active"] is True and manifest["public"] is False
    csp = response.headers["content-security-policy"]
    assert "form-action 'self' https://github.com;" in csp  # the POST to GitHub and the redirect back
    assert "script-src 'nonce-" in csp and "<script nonce=" in response.text


def test_organisation_on_enterprise_server(client: TestClient) -> None:
    action, state, manifest = to_github(
        start_form(
            client,
            github="ghes",
            ghes_url="https://GHE.acme.test/",
            ghes_confirm="yes",
            account="organization",
            org="Acme-Corp",
            public_url="https://lemi.acme.test/ci/webhook",
        )
    )
    assert action == f"https://ghe.acme.test/organizations/Acme-Corp/settings/apps/new?state={state}"
    assert manifest["hook_attributes"]["url"] == "https://lemi.acme.test/ci/webhook"
    flow: setup.SetupFlow = client.app.state.setup  # type: ignore[attr-defined]
    assert flow.pending[state].target == setup.Target(
        "https://ghe.acme.test", "https://ghe.acme.test/api/v3", "Acme-Corp"
    )


def test_api_url_follows_the_chosen_github() -> None:
    target = setup.parse_target
    assert target(github="github.com", account="personal") == setup.Target(
        "https://github.com", "https://api.github.com", None
    )
    assert (
        target(github="ghes", ghes_url="https://ghe.acme.test:8443", account="personal").api_url
        == "https://ghe.acme.test:8443/api/v3"
    )
    assert (
        target(github="ghes", ghes_url="https://octo.ghe.com", account="organization", org="acme").api_url
        == "https://api.octo.ghe.com"
    )
    assert target(github="ghes", ghes_url="https://github.com", account="personal").api_url == "https://api.github.com"
    assert (
        target(github="ghes", ghes_url="http://127.0.0.1:9000", account="personal").api_url
        == "http://127.0.0.1:9000/api/v3"
    )
    # the org login is escaped into the path, never interpreted
    assert setup.Target("https://github.com", "https://api.github.com", "acme").new_app_url("s t") == (
        "https://github.com/organizations/acme/settings/apps/new?state=s+t"
    )


@pytest.mark.parametrize("org", ["acme", "a", "Acme-Corp-1", "a" * 39, "0day"])
def test_valid_organisation_names(client: TestClient, org: str) -> None:
    action, _, _ = to_github(start_form(client, account="organization", org=org, public_url=PUBLIC))
    assert action.startswith(f"https://github.com/organizations/{org}/settings/apps/new?state=")


@pytest.mark.parametrize(
    "org", ["", "-acme", "acme-", "ac--me", "a" * 40, "acme/../settings", "acme corp", "acme?x=1", "açme", "ac\nme"]
)
def test_invalid_organisation_names_are_refused(client: TestClient, org: str) -> None:
    response = start_form(client, account="organization", org=org, public_url=PUBLIC)
    assert response.status_code == 400
    assert 'id="org-error"' in response.text
    assert "to-github" not in response.text
    assert client.app.state.setup.pending == {}  # type: ignore[attr-defined]
    # the form comes back with what was typed, escaped
    assert forms(response.text).forms[0]["inputs"]["account"] == "organization"


@pytest.mark.parametrize(
    "fields, field",
    [
        ({"github": "ghes", "ghes_url": ""}, "ghes_url"),
        ({"github": "ghes", "ghes_url": "ftp://ghe.acme.test"}, "ghes_url"),
        ({"github": "ghes", "ghes_url": "http://ghe.acme.test"}, "ghes_url"),  # https only, except this machine
        ({"github": "ghes", "ghes_url": "https://user:pw@ghe.acme.test"}, "ghes_url"),
        ({"github": "ghes", "ghes_url": "https://ghe.acme.test/api/v3"}, "ghes_url"),
        ({"github": "ghes", "ghes_url": "https://ghe.acme.test?x=1"}, "ghes_url"),
        ({"github": "ghes", "ghes_url": "https://api.github.com"}, "ghes_url"),
        ({"github": "ghes", "ghes_url": "https://api.octo.ghe.com"}, "ghes_url"),
        ({"github": "ghes", "ghes_url": "https://ghe_acme.test"}, "ghes_url"),
        ({"github": "gitlab.com"}, "github"),
        ({"account": "enterprise"}, "account"),
        ({"public_url": ""}, "public_url"),
        ({"public_url": "http://localhost:8080"}, "public_url"),  # GitHub cannot deliver there
        ({"public_url": "https://127.0.0.1"}, "public_url"),
        ({"public_url": "javascript:alert(1)"}, "public_url"),
        ({"public_url": "http://lemi.acme.test"}, "public_url"),
        ({"name": ""}, "name"),
        ({"name": "x" * 35}, "name"),
        ({"name": "<script>"}, "name"),
    ],
)
def test_invalid_inputs_are_refused(client: TestClient, fields: dict[str, str], field: str) -> None:
    values = {"public_url": PUBLIC, **fields}
    response = start_form(client, **values)
    assert response.status_code == 400, response.text
    assert f'id="{field}-error"' in response.text or (field in ("github", "account") and "error" in response.text)
    assert "<script>" not in response.text.split("<main>")[1].replace("<script nonce", "")  # echoed input is escaped
    assert client.app.state.setup.pending == {}  # type: ignore[attr-defined]


def test_start_needs_the_pages_csrf_token(client: TestClient, first_run: Path) -> None:
    fields = {
        "github": "github.com",
        "account": "personal",
        "public_url": PUBLIC,
        "name": "lemi",
        "token": setup_token(first_run),
    }
    assert client.post("/setup/start", data=fields).status_code == 403  # no cookie, no token
    token = forms(client.get("/").text).forms[0]["inputs"]["csrf"]
    assert client.post("/setup/start", data={**fields, "csrf": "x" * 43}).status_code == 403  # wrong token
    # the right token from another site's page
    assert (
        client.post(
            "/setup/start", data={**fields, "csrf": token}, headers={"Origin": "https://evil.example"}
        ).status_code
        == 403
    )
    assert client.post("/setup/start", data={**fields, "csrf": token}, headers={"Origin": BASE}).status_code == 200


# --- the callback ---------------------------------------------------------------------------------------------


def test_callback_exchanges_the_code_and_writes_env_0600(
    client: TestClient, github: FakeGitHub, first_run: Path
) -> None:
    _, state, manifest = ghes_start(client, github)
    code = github.register_manifest_code(
        manifest, owner="acme", owner_type="Organization", state=state, html_url=github.url
    )
    done = client.get(f"/setup/callback?code={code}&state={state}")
    assert (done.status_code, done.headers["location"]) == (303, "/setup/done")
    # the code was exchanged once, without credentials, at the API of the chosen GitHub
    exchange = github.calls_to("POST", "/app-manifests/*/conversions")
    assert [(c.path, c.status, c.auth) for c in exchange] == [(f"/app-manifests/{code}/conversions", 201, None)]
    app = github.app_manifests[0].app
    assert app is not None
    env = first_run / ".env"
    assert stat.S_IMODE(env.stat().st_mode) == 0o600
    values = setup.read_env_file(env)
    assert values == {
        "GITHUB_APP_ID": str(app["id"]),
        "GITHUB_APP_PRIVATE_KEY": app["pem"].strip().replace("\n", "\\n") + "\\n",
        "GITHUB_WEBHOOK_SECRET": app["webhook_secret"],
        "GITHUB_API_URL": github.ghes_api_url,
    }
    assert "\n" not in values["GITHUB_APP_PRIVATE_KEY"] and app["client_secret"] not in env.read_text()
    settings = load_settings(values)  # what `lemi serve` will read
    assert settings.has_app_credentials and settings.private_key == app["pem"].strip() + "\n"
    assert settings.api_url == github.ghes_api_url
    # next steps
    page = client.get("/setup/done")
    assert page.status_code == 200
    assert forms(page.text).links["install"] == app["html_url"] + "/installations/new"
    assert "Next steps" in page.text and "lemi.yml" in page.text and "make run" in page.text
    assert str(env) in page.text and f"{PUBLIC}/webhook" in page.text
    for secret in secrets_of(app):
        assert secret not in page.text and secret not in done.text
    # once registered, the form sends here, and nothing starts again
    assert client.get("/").headers["location"] == "/setup/done"
    assert start_form_after_done(client).status_code == 409


def start_form_after_done(client: TestClient, token: str = "") -> Any:
    csrf = client.cookies.get(setup.COOKIE)
    fields = {
        "csrf": csrf or "",
        "token": token,
        "account": "personal",
        "github": "github.com",
        "public_url": PUBLIC,
        "name": "x",
    }
    return client.post("/setup/start", data=fields)


def test_bad_state_is_refused(client: TestClient, github: FakeGitHub, first_run: Path) -> None:
    _, state, manifest = ghes_start(client, github)
    code = github.register_manifest_code(
        manifest, owner="acme", owner_type="Organization", state=state, html_url=github.url
    )
    for query in [f"code={code}", f"code={code}&state=", f"code={code}&state=forged", f"code={code}&state={state}x"]:
        refused = client.get(f"/setup/callback?{query}")
        assert refused.status_code == 400 and "not valid" in refused.text, query
    # the right state in another browser (without this browser's setup cookie)
    other = TestClient(client.app, base_url=BASE, client=LOCAL, follow_redirects=False)  # no lifespan: the same server
    assert other.get(f"/setup/callback?code={code}&state={state}").status_code == 400
    assert github.calls_to("POST", "/app-manifests/*/conversions") == []  # no exchange for a refused state
    assert not (first_run / ".env").exists()
    # the right one works once
    assert client.get(f"/setup/callback?code={code}&state={state}").status_code == 303
    client.app.state.setup.done = None  # type: ignore[attr-defined]  # (as if the page were still open)
    assert client.get(f"/setup/callback?code={code}&state={state}").status_code == 400


def test_expired_state_is_refused(
    client: TestClient, github: FakeGitHub, first_run: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, state, manifest = ghes_start(client, github)
    code = github.register_manifest_code(manifest, state=state)
    flow: setup.SetupFlow = client.app.state.setup  # type: ignore[attr-defined]
    flow.pending[state].created -= setup.STATE_TTL + 1
    assert client.get(f"/setup/callback?code={code}&state={state}").status_code == 400
    assert not (first_run / ".env").exists()


def test_a_used_or_unknown_code_is_explained(client: TestClient, github: FakeGitHub, first_run: Path) -> None:
    _, state, _ = ghes_start(client, github)
    page = client.get(f"/setup/callback?code=0123abcd&state={state}")
    assert page.status_code == 502 and "used already or it expired" in page.text
    assert [c.status for c in github.calls_to("POST", "/app-manifests/*/conversions")] == [404]
    assert not (first_run / ".env").exists()


def test_existing_env_is_not_overwritten_without_confirmation(
    client: TestClient, github: FakeGitHub, first_run: Path
) -> None:
    env = first_run / ".env"
    before = "# mine\nAWS_PROFILE=dev\nGITHUB_APP_ID=1\nexport GITHUB_WEBHOOK_SECRET='old'\n"
    env.write_text(before)
    env.chmod(0o644)
    assert 'id="env-exists"' in client.get("/").text
    _, state, manifest = ghes_start(client, github)
    code = github.register_manifest_code(
        manifest, owner="acme", owner_type="Organization", state=state, html_url=github.url
    )
    callback = client.get(f"/setup/callback?code={code}&state={state}")
    assert (callback.status_code, callback.headers["location"]) == (303, "/setup/confirm")
    asked = client.get("/setup/confirm")
    assert asked.status_code == 200 and "existing .env" in asked.text
    assert "GITHUB_APP_ID" in asked.text and "AWS_PROFILE" in asked.text
    assert env.read_text() == before
    token = client.cookies.get(setup.COOKIE)
    # no confirmation: nothing changes
    assert client.post("/setup/confirm", data={"csrf": token}, headers={"Origin": BASE}).status_code == 400
    assert client.post("/setup/confirm", data={"csrf": "x" * 43, "replace": "yes"}).status_code == 403
    other = TestClient(
        client.app, base_url=BASE, client=LOCAL, follow_redirects=False
    )  # another browser, the same server
    assert other.post("/setup/confirm", data={"csrf": token, "replace": "yes"}).status_code == 403
    assert other.get("/setup/confirm").headers["location"] == "/"
    assert env.read_text() == before
    # confirmed: the App's lines are replaced, the others kept, mode 0600
    confirmed = client.post("/setup/confirm", data={"csrf": token, "replace": "yes"}, headers={"Origin": BASE})
    assert (confirmed.status_code, confirmed.headers["location"]) == (303, "/setup/done")
    app = github.app_manifests[0].app
    assert app is not None
    values = setup.read_env_file(env)
    assert values["AWS_PROFILE"] == "dev" and values["GITHUB_APP_ID"] == str(app["id"])
    assert values["GITHUB_WEBHOOK_SECRET"] == app["webhook_secret"]
    assert env.read_text().startswith("# mine\nAWS_PROFILE=dev\n\n# lemi's GitHub App")
    assert stat.S_IMODE(env.stat().st_mode) == 0o600
    assert "old values were replaced" in client.get("/setup/done").text


# --- .env ---------------------------------------------------------------------------------------------------


def _credentials(**overrides: Any) -> setup.Credentials:
    from cryptography.hazmat.primitives import serialization
    from fakes.github import _session_key  # a real RSA key

    pem = (
        _session_key()
        .private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
        )
        .decode()
    )
    values: dict[str, Any] = dict(
        app_id=7,
        slug="lemi",
        name="lemi",
        html_url="https://github.com/apps/lemi",
        owner="acme",
        api_url="https://api.github.com",
        pem=pem,
        webhook_secret="s3cr3t",
    )
    values.update(overrides)
    return setup.Credentials(**values)


def test_write_env_never_replaces_an_existing_file(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text("KEEP=1\n")
    with pytest.raises(setup.EnvExists):
        setup.write_env(env, "NEW=1\n")
    assert env.read_text() == "KEEP=1\n"
    link = tmp_path / "link.env"
    link.symlink_to(tmp_path / "elsewhere")  # a dangling symlink is not followed either
    with pytest.raises(setup.EnvExists):
        setup.write_env(link, "NEW=1\n")
    assert not (tmp_path / "elsewhere").exists()
    old = os.umask(0)
    try:
        setup.write_env(tmp_path / "fresh.env", "A=1\n")
        setup.write_env(env, "B=2\n", replace=True)
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "fresh.env").stat().st_mode) == 0o600
    assert stat.S_IMODE(env.stat().st_mode) == 0o600 and env.read_text() == "B=2\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == [".env", "fresh.env", "link.env"]  # no temporary file left


def test_env_file_round_trip(tmp_path: Path) -> None:
    credentials = _credentials()
    text = setup.render_env(credentials)
    assert "GITHUB_API_URL" not in text  # github.com is the default
    (tmp_path / ".env").write_text(text)
    settings = load_settings(setup.read_env_file(tmp_path / ".env"))
    assert (settings.app_id, settings.webhook_secret, settings.api_url) == ("7", "s3cr3t", "https://api.github.com")
    assert settings.private_key == credentials.pem.strip() + "\n"
    # no webhook secret from GitHub: written without it, with a note
    text = setup.render_env(_credentials(webhook_secret=None))
    assert "GITHUB_WEBHOOK_SECRET=" not in text.replace("# GITHUB_WEBHOOK_SECRET=", "")
    # replacing lemi's block keeps the rest, and no stale comment of the old block
    again = setup.kept_lines("A=1\n" + setup.render_env(_credentials()) + "B=2\n")
    assert again == ["A=1", "B=2"]
    # a name with a line break cannot break out of its comment
    (tmp_path / "named.env").write_text(setup.render_env(_credentials(name="x\nGITHUB_APP_ID=666")))
    assert setup.read_env_file(tmp_path / "named.env")["GITHUB_APP_ID"] == "7"


def test_load_env_file_never_overrides_the_environment(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text(
        "# comment\n\nexport A='one two'\nB=\"x\"\nC=plain # trailing comment\nD='#not a comment'\nnot a line\n=bad\nE=\n"
    )
    environ = {"B": "from the environment"}
    assert setup.load_env_file(env_file, environ) == ["A", "C", "D", "E"]
    assert environ == {"A": "one two", "B": "from the environment", "C": "plain", "D": "#not a comment", "E": ""}
    assert setup.load_env_file(tmp_path / "absent", environ) == []


def test_lemi_serve_reads_env_file_only_when_asked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from bot.cli import main
    from bot.cli.server import _read_env_file

    for name in ("GITHUB_APP_ID", "PORT"):
        monkeypatch.setenv(name, "x")  # recorded, so the variables are restored after the test
        monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("GITHUB_APP_ID='9'\nPORT=9090\n")
    _read_env_file(None, None, None)  # type: ignore[arg-type]  # plain `lemi serve`: the environment only
    assert "GITHUB_APP_ID" not in os.environ
    _read_env_file(None, None, ".env")  # type: ignore[arg-type]  # `make run`
    assert (os.environ["GITHUB_APP_ID"], os.environ["PORT"]) == ("9", "9090")
    assert "lemi: read GITHUB_APP_ID, PORT from .env" in capsys.readouterr().err
    assert main(["serve", "--help"]) == 0
    assert "--env-file" in capsys.readouterr().out
    makefile = (ROOT / "Makefile").read_text()
    assert "\t$(BIN)/lemi serve --with-worker --env-file .env\n" in makefile


def test_conversion_answers_are_checked() -> None:
    target = setup.Target("https://ghe.acme.test", "https://ghe.acme.test/api/v3", "acme")
    good = {
        "id": 5,
        "slug": "lemi",
        "name": "lemi",
        "pem": _credentials().pem,
        "webhook_secret": "abc",
        "html_url": "https://ghe.acme.test/github-apps/lemi",
        "owner": {"login": "acme"},
    }
    assert setup.parse_conversion(good, target).html_url == "https://ghe.acme.test/github-apps/lemi"
    # a link elsewhere is not offered: the install link stays on the chosen GitHub
    assert (
        setup.parse_conversion({**good, "html_url": "https://evil.example/apps/lemi"}, target).html_url
        == "https://ghe.acme.test/apps/lemi"
    )
    for bad in [
        {"id": "5"},
        {"pem": "not a key"},
        {"pem": "-----BEGIN RSA PRIVATE KEY-----\nxx\n-----END RSA PRIVATE KEY-----"},
        {"slug": "../x"},
        {"webhook_secret": "it's"},
        {"webhook_secret": "a\nb"},
    ]:
        with pytest.raises(setup.ExchangeError):
            setup.parse_conversion({**good, **bad}, target)
    assert "pem" not in repr(setup.parse_conversion(good, target)) and "abc" not in repr(
        setup.parse_conversion(good, target)
    )


# --- the fake's side of the flow ------------------------------------------------------------------------------


def test_the_fake_refuses_manifests_github_refuses(github: FakeGitHub) -> None:
    manifest = setup.build_manifest(name="lemi", public_url=PUBLIC, base_url=BASE)
    assert github.manifest_problems(manifest) == []
    cases = {
        "unknown manifest key 'permissions'": {"permissions": {}},
        "url is required": {"url": None},
        "unknown permission 'pull_request'": {"default_permissions": {"pull_request": "write"}},
        "'admin' is not one of": {"default_permissions": {**APP_YML["default_permissions"], "contents": "admin"}},
        "unknown event 'pull'": {"default_events": ["pull"]},
        "'push' needs the permission contents": {
            "default_permissions": {"metadata": "read"},
            "default_events": ["push"],
        },
        "isn't reachable over the public Internet": {
            "hook_attributes": {"url": "http://localhost:8080/webhook", "active": True}
        },
    }
    for problem, change in cases.items():
        found = github.manifest_problems({**manifest, **change})
        assert any(problem in p for p in found), (problem, found)
    github.expect_manifest(default_events=["push"])
    assert github.manifest_problems(manifest) == [
        "default_events: expected ['push'], got ['pull_request', 'push', 'issue_comment']"
    ]
    with pytest.raises(ValueError):
        github.register_manifest_code(manifest)


def test_the_fake_web_page_redirects_with_a_code(github: FakeGitHub) -> None:
    manifest = setup.build_manifest(name="lemi", public_url=PUBLIC, base_url="http://127.0.0.1:1")
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirect())
    data = urllib.parse.urlencode({"manifest": json.dumps(manifest)}).encode()
    with pytest.raises(urllib.error.HTTPError) as answer:
        opener.open(
            urllib.request.Request(f"{github.url}/organizations/acme/settings/apps/new?state=s1", data=data), timeout=10
        )
    assert answer.value.code == 302
    location = urlsplit(answer.value.headers["Location"])
    query = parse_qs(location.query)
    assert (location.netloc, location.path, query["state"]) == ("127.0.0.1:1", "/setup/callback", ["s1"])
    recorded = github.app_manifests[0]
    assert (recorded.owner, recorded.owner_type, recorded.state, recorded.manifest) == (
        "acme",
        "Organization",
        "s1",
        manifest,
    )
    # the code is good once, under GHES's /api/v3 layout as at the root
    request = urllib.request.Request(
        f"{github.ghes_api_url}/app-manifests/{query['code'][0]}/conversions",
        method="POST",
        headers={"User-Agent": "t"},
    )
    with opener.open(request, timeout=10) as response:
        app = json.loads(response.read())
    assert (
        response.status == 201
        and app["owner"]["login"] == "acme"
        and app["permissions"] == APP_YML["default_permissions"]
    )
    with pytest.raises(urllib.error.HTTPError) as again:
        opener.open(
            urllib.request.Request(
                f"{github.url}/app-manifests/{query['code'][0]}/conversions", method="POST", headers={"User-Agent": "t"}
            ),
            timeout=10,
        )
    assert again.value.code == 404
    # an invalid manifest: GitHub's error page, and a violation of the fake's rules
    github.expect_violations()
    with pytest.raises(urllib.error.HTTPError) as refused:
        opener.open(
            urllib.request.Request(
                f"{github.url}/settings/apps/new", data=urllib.parse.urlencode({"manifest": "{}"}).encode()
            ),
            timeout=10,
        )
    assert refused.value.code == 422
    assert [v.kind for v in github.violations] == ["manifest"]


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


# --- end to end: `lemi serve` and headless Chromium ---------------------------------------------------------------

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """`lemi serve --with-worker --env-file .env` (what `make run` starts) in ``cwd``, on <host>:<free port>
    (127.0.0.1 unless told), its stdout (uvicorn's access log) and stderr (the JSON log, the
    setup token) in two files."""

    def __init__(self, cwd: Path, *, host: str = "127.0.0.1", **env: str) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = cwd / f"serve-{self.port}.log"
        self.err = cwd / f"serve-{self.port}.err"
        environ = {k: v for k, v in os.environ.items() if k not in CREDENTIAL_VARS and k != "FORWARDED_ALLOW_IPS"}
        environ.update(PORT=str(self.port), HOST=host, LEMI_CONFIG=str(cwd / "lemi.yml"), **env)
        environ["NO_PROXY"] = environ["no_proxy"] = "127.0.0.1,localhost"
        self.output = open(self.log, "wb")  # noqa: SIM115
        self.errors = open(self.err, "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [str(Path(sys.executable).parent / "lemi"), "serve", "--with-worker", "--env-file", ".env"],
            cwd=cwd,
            env=environ,
            stdout=self.output,
            stderr=self.errors,
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                with _get(f"{self.url}/healthz") as response:
                    self.health = json.loads(response.read())
                    return
            except OSError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    self.stop()
                    raise AssertionError(f"lemi serve did not start:\n{self.text()}") from None
                time.sleep(0.1)

    def stdout(self) -> str:
        return self.log.read_text(errors="replace")

    def stderr(self) -> str:
        return self.err.read_text(errors="replace")

    def text(self) -> str:
        return self.stderr() + self.stdout()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self.output.close()
        self.errors.close()


_loopback = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _get(url: str) -> Any:
    return _loopback.open(url, timeout=5)


def _chromium(profile: Path) -> Any:
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not os.access(p, os.X_OK)]
    if missing:
        pytest.fail(
            f"{', '.join(missing)} missing: `make test` installs Debian's chromium and chromium-driver (apt-get, as root)",
            pytrace=False,
        )
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-default-apps",
        "--disable-extensions",
        "--disable-dev-shm-usage",
        "--no-default-browser-check",
        "--no-proxy-server",
        "--window-size=1100,1500",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(flag)
    service = Service(CHROMEDRIVER, log_output=str(profile.parent / "chromedriver.log"))
    return webdriver.Chrome(service=service, options=options)


def test_setup_page_end_to_end_in_chromium(github: FakeGitHub, tmp_path: Path) -> None:
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ready
    from selenium.webdriver.support.ui import WebDriverWait

    # the fake checks the manifest against app.yml as GitHub checks it against its rules
    github.expect_manifest(
        name=APP_YML["name"],
        url=APP_YML["url"],
        description=APP_YML["description"],
        public=APP_YML["public"],
        default_permissions=APP_YML["default_permissions"],
        default_events=APP_YML["default_events"],
    )
    home = tmp_path / "lemi"
    home.mkdir()
    server = Server(home, LEMI_QUEUE=f"sqlite:///{home / 'queue.db'}")
    browser = None
    try:
        assert server.health["app"] == "unconfigured"
        browser = _chromium(tmp_path / "chromium-profile")
        wait = WebDriverWait(browser, 20)
        browser.get(server.url + "/")
        assert "Register lemi's GitHub App" in browser.title
        assert not browser.find_element(By.ID, "org").is_displayed()  # shown for an organisation only
        assert not browser.find_element(By.ID, "ghes_confirm").is_displayed()  # shown for an Enterprise Server only
        # the one-time setup token: printed on the console, and in the file beside .env
        token_file = home / setup.TOKEN_FILE
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        token = setup_token(home)
        assert token in server.stderr()
        browser.find_element(By.ID, "token").send_keys(token)
        browser.find_element(By.ID, "account-org").click()
        browser.find_element(By.ID, "org").send_keys("acme")
        browser.find_element(By.ID, "github-ghes").click()
        browser.find_element(By.ID, "ghes_url").send_keys(github.url)  # the fake is the GitHub (web and /api/v3)
        # the checkbox names the host typed above, and must be ticked
        assert browser.find_element(By.ID, "ghes-host").text == urlsplit(github.url).netloc
        browser.find_element(By.ID, "ghes_confirm").click()
        browser.find_element(By.ID, "public_url").send_keys(PUBLIC)
        browser.save_screenshot("/tmp/lemi-setup-form.png")
        browser.find_element(By.ID, "create").click()
        # -> the fake's "Create GitHub App" -> 302 back to /setup/callback -> 303 /setup/done
        try:
            wait.until(ready.presence_of_element_located((By.ID, "next-steps")))
        except TimeoutException:
            browser.save_screenshot("/tmp/lemi-setup-stuck.png")
            body = browser.find_element(By.TAG_NAME, "body").text
            raise AssertionError(
                f"no next steps at {browser.current_url}:\n{body}\n--- lemi serve:\n{server.text()}"
            ) from None
        assert urlsplit(browser.current_url).path == "/setup/done"  # the one-time code is not left in the address bar
        browser.save_screenshot("/tmp/lemi-setup-done.png")
        page = browser.page_source

        assert len(github.app_manifests) == 1
        posted = github.app_manifests[0]
        assert (posted.owner, posted.owner_type, posted.converted) == ("acme", "Organization", True)
        assert posted.state and len(posted.state) >= 40
        assert posted.manifest["hook_attributes"] == {"url": f"{PUBLIC}/webhook", "active": True}
        assert posted.manifest["redirect_url"] == f"{server.url}/setup/callback"
        assert posted.manifest["default_permissions"] == APP_YML["default_permissions"]
        assert posted.manifest["default_events"] == APP_YML["default_events"]
        exchange = github.calls_to("POST", "/app-manifests/*/conversions")
        assert [(c.path, c.status) for c in exchange] == [(f"/app-manifests/{posted.code}/conversions", 201)]
        app = posted.app
        assert app is not None

        install = browser.find_element(By.ID, "install")
        assert install.get_attribute("href") == f"{github.url}/apps/{app['slug']}/installations/new"
        assert "Next steps" in page and "lemi.yml" in page and "make run" in page
        env = home / ".env"
        assert stat.S_IMODE(env.stat().st_mode) == 0o600
        assert setup.read_env_file(env) == {
            "GITHUB_APP_ID": str(app["id"]),
            "GITHUB_APP_PRIVATE_KEY": app["pem"].strip().replace("\n", "\\n") + "\\n",
            "GITHUB_WEBHOOK_SECRET": app["webhook_secret"],
            "GITHUB_API_URL": github.ghes_api_url,
        }
        for secret in secrets_of(app):
            assert secret not in page
        assert str(browser.get_cookies()).count(setup.COOKIE) == 1
        assert not token_file.exists()  # the App is registered: the token is retired
    finally:
        if browser is not None:
            browser.quit()
        server.stop()
    log = server.text()
    for secret in [*secrets_of(app), posted.code]:
        assert secret not in log  # neither the credentials nor the one-time code reach the log
    assert "/setup/callback?…" in log
    assert token not in server.stdout() and token not in log.replace(
        token, "", 1
    )  # on the console once, and nowhere else

    # the same command, now with .env and a lemi.yml: webhooks, and no setup page
    (home / "lemi.yml").write_text(LEMI_YML)
    again = Server(
        home, LEMI_QUEUE=f"sqlite:///{home / 'queue.db'}", LEMI_REDELIVER_INTERVAL_SECONDS="0", LEMI_WORKERS="1"
    )
    try:
        assert again.health["app"] == "ready", again.health
        with pytest.raises(urllib.error.HTTPError) as gone:
            _get(again.url + "/")
        assert gone.value.code == 404
        headers, body = signed("ping", {"zen": "Design for failure.", "hook_id": 1}, app["webhook_secret"])
        with _loopback.open(
            urllib.request.Request(again.url + "/webhook", data=body, headers=headers, method="POST"), timeout=5
        ) as pong:
            assert json.loads(pong.read()) == {"status": "pong"}
        assert (
            "read GITHUB_APP_ID, GITHUB_APP_PRIVATE_KEY, GITHUB_WEBHOOK_SECRET, GITHUB_API_URL from .env"
            in again.text()
        )
    finally:
        again.stop()
