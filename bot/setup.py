"""First run: register lemi's GitHub App from ``app.yml`` through GitHub's App manifest flow.

``make run`` without the App's credentials serves this page at http://localhost:8080/.
:func:`mount` is called by the server's lifespan (bot/app.py) only when the process has
*none* of ``GITHUB_APP_ID``, a private key and ``GITHUB_WEBHOOK_SECRET``; with credentials
the routes do not exist at all.

Who may register the App -- three locks, each enough on its own against a stranger:

* **This machine only.** Every route answers only a request whose *socket peer* is a
  loopback address (:func:`bot.core.peer.socket_peer`: ``lemi serve`` records it before uvicorn's
  proxy-header middleware rewrites ``scope["client"]`` from ``X-Forwarded-For``, so
  ``FORWARDED_ALLOW_IPS='*'`` cannot make a remote request look local), that carries no
  proxy header (:data:`PROXY_HEADERS`: ``Forwarded``, ``X-Forwarded-For``, ``X-Real-IP``, …;
  a proxy on this machine may be passing on someone else's request), and whose Host is a
  loopback or IP name (a DNS name pointing at 127.0.0.1 -- DNS rebinding -- is refused).
  A remote server is set up through an SSH tunnel: ``ssh -L 8080:localhost:8080 host``.
* **The one-time setup token.** :func:`mount` makes a new random token (160 bits) at each
  start, writes it to the console that started the server (``sys.stderr``, not the JSON
  log, never in a URL, so no log line or access-log line carries it) and to
  ``.lemi-setup-token`` beside .env (mode 0600, replaced at each start). The form asks for
  it and POST /setup/start compares it in constant time; a missing or wrong token is a field
  error and registers nothing. Once .env is written the token is retired and its file removed.
* **The browser that started it.** A single-use ``state`` bound to the browser's setup
  cookie, and the form's CSRF token and Origin check.

A GitHub other than github.com (Enterprise Server, or ``<name>.ghe.com``) must be confirmed
explicitly: its checkbox "I confirm that <host> is my organisation's GitHub" unticked is a
field error naming the host, and the page that sends the manifest names the host again.

    GET  /                 the form: the setup token, personal account or organisation,
                           github.com or a GitHub Enterprise Server URL (confirmed), the
                           server's public URL, the App's name
    POST /setup/start      checks the token and the fields, remembers a random single-use
                           ``state`` (1 h) bound to this browser's setup cookie, and answers
                           a page whose form POSTs the manifest to <web>/settings/apps/new?state=…
                           or <web>/organizations/<org>/settings/apps/new?state=…
    GET  /setup/callback   GitHub sends the browser back with ?code=…&state=…: state and
                           cookie are checked, the code is exchanged at
                           <api>/app-manifests/<code>/conversions (no authentication) and
                           ./.env is written with mode 0600 -- an existing .env is never
                           changed without the confirmation of GET/POST /setup/confirm
    GET  /setup/done       next steps: install the App, write lemi.yml, restart make run

The manifest is app.yml with ``hook_attributes.url`` = <public URL>/webhook and
``redirect_url`` = <this page's base URL>/setup/callback. The API URL of the exchange is
derived from the GitHub the user chose (https://api.github.com, <GHES>/api/v3, or
https://api.<name>.ghe.com), never taken from the callback's query.

``make run`` starts ``lemi serve --env-file .env``, which puts the variables of ./.env that
the environment does not set into it (:func:`load_env_file`), so the ``make run`` after the
setup serves webhooks; a plain ``lemi serve`` (Procfile, tests) reads the environment only.
The setup token, the private key, the webhook secret and the OAuth client secret are never
logged; the last three are never shown either. lemi does not use the OAuth client secret and
does not store it.
"""

from __future__ import annotations

import base64
import copy
import datetime as dt
import hmac
import ipaddress
import json
import logging
import os
import re
import secrets
import sys
import time
from collections.abc import MutableMapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlencode, urlsplit

import aiohttp
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from bot.core import yamlsafe
from bot.core.peer import socket_peer
from bot.core.settings import DEFAULT_API_URL, Settings
from bot.core.templating import environment

log = logging.getLogger("lemi.setup")

GITHUB_WEB = "https://github.com"
API_VERSION = "2022-11-28"
STATE_TTL = 3600.0  # GitHub's manifest codes live an hour too
MAX_PENDING = 32
COOKIE = "lemi_setup"
ROUTE_PREFIX = "setup:"  # names of the routes this module mounts
ENV_FILE = ".env"
TOKEN_FILE = ".lemi-setup-token"  # beside .env: the one-time setup token of the running server
TOKEN_BYTES = 20  # 160 bits
# headers that say a proxy passed the request on: the setup page refuses them all
PROXY_HEADERS = (
    "Forwarded",
    "X-Forwarded-For",
    "X-Forwarded-Host",
    "X-Forwarded-Proto",
    "X-Forwarded-Port",
    "X-Forwarded-Server",
    "X-Real-IP",
    "X-Client-IP",
    "X-Cluster-Client-IP",
    "True-Client-IP",
    "CF-Connecting-IP",
    "Fly-Client-IP",
    "Via",
)
# the variables lemi's setup writes; a confirmed replacement drops their old lines from .env
ENV_KEYS = (
    "GITHUB_APP_ID",
    "GITHUB_APP_PRIVATE_KEY",
    "GITHUB_APP_PRIVATE_KEY_PATH",
    "GITHUB_WEBHOOK_SECRET",
    "GITHUB_API_URL",
)

_ORG_RE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9]|-(?=[A-Za-z0-9])){0,38}")  # GitHub logins
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9 ._-]{0,33}")  # GitHub App names: at most 34 characters
_HOST_RE = re.compile(
    r"(?=.{1,253}\Z)(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)*[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
)
_CODE_RE = re.compile(r"[A-Za-z0-9_-]{1,128}")
_TOKEN_RE = re.compile(r"[A-Za-z0-9_-]{32,64}")
_ENV_KEY_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SAFE_SECRET_RE = re.compile(r"[\x21-\x7e]{1,256}")  # printable ASCII, no space


class SetupError(ValueError):
    """Inputs that cannot be used; ``fields`` maps each form field to what is wrong with it."""

    def __init__(self, fields: dict[str, str]) -> None:
        super().__init__("; ".join(f"{k}: {v}" for k, v in fields.items()))
        self.fields = fields


class ExchangeError(RuntimeError):
    """The code could not be turned into credentials; the message is for the page."""


# --- choices -> URLs -------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """Where the App is registered: a GitHub (web and API URL) and an owner."""

    web_url: str  # https://github.com, https://ghes.example.com
    api_url: str  # https://api.github.com, https://ghes.example.com/api/v3
    org: str | None = None  # None: the personal account of whoever is signed in

    @property
    def is_dotcom(self) -> bool:
        return self.web_url == GITHUB_WEB

    @property
    def host(self) -> str:
        return urlsplit(self.web_url).netloc

    def new_app_url(self, state: str) -> str:
        path = f"/organizations/{quote(self.org, safe='')}/settings/apps/new" if self.org else "/settings/apps/new"
        return f"{self.web_url}{path}?{urlencode({'state': state})}"

    def app_settings_url(self, slug: str) -> str:
        owner = f"/organizations/{quote(self.org, safe='')}" if self.org else ""
        return f"{self.web_url}{owner}/settings/apps/{quote(slug, safe='')}"


def _is_loopback_host(host: str) -> bool:
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)  # ::ffff:127.0.0.1 (a dual-stack socket)
    return (mapped or address).is_loopback


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def local_request_problem(*, peer: str, host: str, headers: Any) -> str | None:
    """Why a request is not one this machine's user made straight to the port, or None.

    ``peer`` is the socket peer (:func:`bot.core.peer.socket_peer`), never an address from a
    header; ``host`` the Host header's name; ``headers`` the request's (lower-case) headers.
    The answer is "peer" for another machine, "proxy:<Header>" for a request that a proxy
    (on this machine) passed on, "host" for a host name that is not this machine's (DNS
    rebinding)."""
    if not _is_loopback_host(peer):
        return "peer"
    for name in PROXY_HEADERS:
        if name.lower() in headers:
            return "proxy:" + name
    host = host.lower()
    if not (_is_loopback_host(host) or _is_ip(host)):
        return "host"
    return None


def _check_url(text: str, what: str, *, allow_path: bool) -> tuple[str, str, str]:
    """(scheme, netloc, path) of an http(s) URL without credentials, query or fragment."""
    text = text.strip()
    if not text:
        raise ValueError(f"write the {what}")
    if len(text) > 2000:
        raise ValueError(f"the {what} is too long")
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        raise ValueError(f"{text!r} is not a URL") from None
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ValueError(f"the {what} must start with https:// and name a host")
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise ValueError(f"the {what} must not carry a user name or password")
    if parts.query or parts.fragment or "?" in text or "#" in text:
        raise ValueError(f"the {what} must not have a query (?…) or a fragment (#…)")
    host = parts.hostname
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if not _HOST_RE.fullmatch(host):
            raise ValueError(f"{host!r} is not a host name") from None
    if parts.scheme == "http" and not _is_loopback_host(host):
        raise ValueError(f"the {what} must use https:// (http:// only for this machine, 127.0.0.1 or localhost)")
    path = parts.path.rstrip("/")
    if path and not allow_path:
        raise ValueError(f"write the {what} without a path, e.g. https://{host}")
    if path and not re.fullmatch(r"(/[A-Za-z0-9._~!$&'()*+,;=:@%-]+)+", path):
        raise ValueError(f"the {what} has a path lemi cannot use: {path!r}")
    netloc = parts.netloc.lower() if port is None else f"{host.lower() if ':' not in host else '[' + host + ']'}:{port}"
    return parts.scheme, netloc, path


def parse_target(*, github: str, ghes_url: str = "", account: str, org: str = "") -> Target:
    """The GitHub and the owner chosen on the form, validated; raises :class:`SetupError`."""
    errors: dict[str, str] = {}
    target_web, target_api = GITHUB_WEB, DEFAULT_API_URL
    if github == "ghes":
        try:
            scheme, netloc, _ = _check_url(ghes_url, "GitHub Enterprise Server URL", allow_path=False)
        except ValueError as exc:
            errors["ghes_url"] = str(exc)
        else:
            host = netloc.rsplit(":", 1)[0] if not netloc.endswith("]") else netloc
            if host in ("github.com", "www.github.com"):
                pass  # github.com typed as an Enterprise Server: it is github.com
            elif host == "api.github.com" or (host.startswith("api.") and host.endswith(".ghe.com")):
                errors["ghes_url"] = (
                    f"write the web address you sign in at (https://{host.removeprefix('api.')}), not the API's"
                )
            elif host.endswith(".ghe.com"):  # GitHub Enterprise Cloud with data residency: api.<name>.ghe.com
                target_web, target_api = f"https://{netloc}", f"https://api.{netloc}"
            else:
                target_web = f"{scheme}://{netloc}"
                target_api = f"{target_web}/api/v3"
    elif github != "github.com":
        errors["github"] = "choose github.com or GitHub Enterprise Server"
    owner: str | None = None
    if account == "organization":
        org = org.strip()
        if not org:
            errors["org"] = "write the organisation's name (its login, as in https://github.com/<name>)"
        elif not _ORG_RE.fullmatch(org):
            errors["org"] = (
                "an organisation name has at most 39 letters, digits or single hyphens, and does not start or end with a hyphen"
            )
        else:
            owner = org
    elif account != "personal":
        errors["account"] = "choose your personal account or an organisation"
    if errors:
        raise SetupError(errors)
    return Target(target_web, target_api, owner)


def normalise_public_url(text: str) -> str:
    """The server's public base URL (GitHub posts to <it>/webhook); raises ValueError."""
    scheme, netloc, path = _check_url(text, "public URL", allow_path=True)
    host = urlsplit(f"{scheme}://{netloc}").hostname or ""
    if _is_loopback_host(host):
        raise ValueError(
            "GitHub cannot deliver webhooks to this machine's loopback address: write the server's public "
            "URL, or a tunnel's (e.g. https://smee.io/…)"
        )
    return f"{scheme}://{netloc}{path.removesuffix('/webhook')}"


def _typed_host(text: str) -> str:
    """The host:port of a typed GitHub Enterprise Server URL, or '' (for the form's checkbox label)."""
    try:
        return _check_url(text, "URL", allow_path=False)[1] if text.strip() else ""
    except ValueError:
        return ""


def check_app_name(text: str) -> str:
    name = " ".join(text.split())
    if not _NAME_RE.fullmatch(name):
        raise ValueError("1 to 34 letters, digits, spaces, '.', '-' or '_', starting with a letter or digit")
    return name


# --- the manifest ------------------------------------------------------------------------------


def app_yml_path() -> Path:
    here = Path(__file__).resolve().parent
    for candidate in (here.parent / "app.yml", here / "app.yml"):  # source tree, installed wheel
        if candidate.is_file():
            return candidate
    raise RuntimeError("lemi's app.yml (the GitHub App manifest) is missing from this installation")


@lru_cache(maxsize=1)
def app_manifest() -> dict[str, Any]:
    """app.yml, read with the bounded loader; a deep copy is handed out by :func:`build_manifest`."""
    path = app_yml_path()
    doc = yamlsafe.load(path.read_bytes(), str(path))
    if not isinstance(doc.value, dict) or not isinstance(doc.value.get("hook_attributes"), dict):
        raise RuntimeError(f"{path} is not a GitHub App manifest (no hook_attributes)")
    return doc.value


def build_manifest(
    *, name: str, public_url: str, base_url: str, template: dict[str, Any] | None = None
) -> dict[str, Any]:
    """app.yml with the App's name, the webhook URL and the redirect back to this server."""
    manifest = copy.deepcopy(template if template is not None else app_manifest())
    manifest["name"] = name
    manifest["hook_attributes"] = {**manifest.get("hook_attributes", {}), "url": public_url.rstrip("/") + "/webhook"}
    manifest["redirect_url"] = base_url.rstrip("/") + "/setup/callback"
    return manifest


# --- credentials ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Credentials:
    """What the code exchange returned (secrets kept out of repr)."""

    app_id: int
    slug: str
    name: str
    html_url: str
    owner: str
    api_url: str
    pem: str = field(repr=False)
    webhook_secret: str | None = field(repr=False)


def parse_conversion(data: Any, target: Target) -> Credentials:
    """Check the answer of POST /app-manifests/{code}/conversions; raises ExchangeError."""
    if not isinstance(data, dict):
        raise ExchangeError("GitHub's answer is not a JSON object")
    app_id, slug, pem = data.get("id"), data.get("slug"), data.get("pem")
    if not isinstance(app_id, int) or isinstance(app_id, bool) or app_id <= 0:
        raise ExchangeError("GitHub's answer has no App id")
    if not isinstance(slug, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}", slug):
        raise ExchangeError("GitHub's answer has no usable App slug")
    if not isinstance(pem, str) or not _is_private_key(pem):
        raise ExchangeError("GitHub's answer has no usable private key (pem)")
    secret = data.get("webhook_secret")
    if secret is not None and (not isinstance(secret, str) or not _SAFE_SECRET_RE.fullmatch(secret) or "'" in secret):
        raise ExchangeError(
            "GitHub's webhook secret has characters lemi cannot store in .env; set a new one in the App's settings"
        )
    html_url = data.get("html_url")
    if not isinstance(html_url, str) or not html_url.startswith(target.web_url + "/"):
        html_url = f"{target.web_url}/apps/{slug}"  # only ever link to the GitHub the user chose
    owner = data.get("owner") if isinstance(data.get("owner"), dict) else {}
    login = owner.get("login") if isinstance(owner.get("login"), str) else (target.org or "")
    name = data.get("name") if isinstance(data.get("name"), str) else slug
    return Credentials(
        app_id=app_id,
        slug=slug,
        name=name,
        html_url=html_url.rstrip("/"),
        owner=login,
        api_url=target.api_url,
        pem=pem,
        webhook_secret=secret or None,
    )


def _is_private_key(pem: str) -> bool:
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    if "PRIVATE KEY-----" not in pem:
        return False
    try:
        return isinstance(load_pem_private_key(pem.encode("ascii"), password=None), rsa.RSAPrivateKey)
    except (ValueError, TypeError, UnicodeEncodeError):
        return False


async def exchange_code(target: Target, code: str, *, timeout: float = 30.0) -> Credentials:
    """POST <api>/app-manifests/<code>/conversions (no authentication: the code is the proof)."""
    if not _CODE_RE.fullmatch(code):
        raise ExchangeError("GitHub's code is malformed")
    url = f"{target.api_url}/app-manifests/{quote(code, safe='')}/conversions"
    headers = {"Accept": "application/vnd.github+json", "User-Agent": "lemi-setup", "X-GitHub-Api-Version": API_VERSION}
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session:
            async with session.post(url, headers=headers) as response:
                status = response.status
                text = await response.text()
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise ExchangeError(f"could not reach {target.api_url}: {type(exc).__name__}") from None
    if status == 404:
        raise ExchangeError("GitHub does not know this code: it was used already or it expired (codes live one hour)")
    if status != 201:
        raise ExchangeError(f"GitHub answered {status} to the code exchange")
    try:
        data = json.loads(text)
    except ValueError:
        raise ExchangeError("GitHub's answer is not JSON") from None
    return parse_conversion(data, target)


# --- the one-time setup token --------------------------------------------------------------------


def new_setup_token() -> str:
    """160 random bits as 32 lower-case base32 characters in groups of four (easy to read out)."""
    text = base64.b32encode(secrets.token_bytes(TOKEN_BYTES)).decode("ascii").lower()
    return "-".join(text[i : i + 4] for i in range(0, len(text), 4))


def _token_key(text: str) -> bytes:
    """A typed token without spaces or hyphens, lower case (what is compared)."""
    return "".join(text.split()).replace("-", "").lower().encode("utf-8", errors="replace")


def token_matches(expected: str | None, typed: str) -> bool:
    """``typed`` is the setup token (constant time); nothing matches a retired token."""
    if expected is None:
        return False
    return hmac.compare_digest(_token_key(expected), _token_key(typed))


# --- .env ------------------------------------------------------------------------------------------


class EnvExists(FileExistsError):
    """.env exists and replacing it was not confirmed."""


def _quote_env(value: str) -> str:
    """A single-quoted .env value: literal for a shell's `.`, python-dotenv and :func:`read_env_file`."""
    if "'" in value or any(c in value for c in "\r\n\0"):
        raise ValueError("a value with a quote or a line break cannot be written to .env")
    return f"'{value}'"


def render_env(credentials: Credentials, *, now: dt.datetime | None = None, keep: list[str] | None = None) -> str:
    """The text of .env: ``keep`` (lines of other variables of an existing .env) then the App's block."""
    stamp = (now or dt.datetime.now(dt.UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")
    values = [
        ("GITHUB_APP_ID", str(credentials.app_id)),
        # one line: settings.py turns the literal \n back into line breaks
        ("GITHUB_APP_PRIVATE_KEY", credentials.pem.strip().replace("\r\n", "\n").replace("\n", "\\n") + "\\n"),
    ]
    if credentials.webhook_secret:
        values.append(("GITHUB_WEBHOOK_SECRET", credentials.webhook_secret))
    if credentials.api_url != DEFAULT_API_URL:
        values.append(("GITHUB_API_URL", credentials.api_url))
    return (
        environment()
        .get_template("setup/env.j2")
        .render(
            app=credentials,
            label=_printable(f"{credentials.name} ({credentials.html_url})"),
            stamp=stamp,
            keep=keep or [],
            values=[(k, _quote_env(v)) for k, v in values],
            missing_secret=not credentials.webhook_secret,
        )
    )


def _printable(text: str) -> str:
    return "".join(c if c.isprintable() else " " for c in text)[:200]


# the comment lines of setup/env.j2, dropped with the values they describe
_OWN_COMMENTS = (
    "# lemi's GitHub App ",
    "# Secret: this file holds",
    "# `make run` (lemi serve",
    "# GitHub returned no webhook secret",
    "# GITHUB_WEBHOOK_SECRET=",
)


def kept_lines(existing: str) -> list[str]:
    """The lines of an existing .env that a confirmed replacement keeps (other variables, comments)."""
    kept = []
    for line in existing.splitlines():
        key = _env_line(line)
        if (key is not None and key[0] in ENV_KEYS) or line.startswith(_OWN_COMMENTS):
            continue
        kept.append(line)
    while kept and not kept[-1].strip():
        kept.pop()
    return kept


def write_env(path: Path, text: str, *, replace: bool = False) -> None:
    """Write ``text`` to ``path`` with mode 0600. Without ``replace`` an existing file (or
    symlink) is never touched (O_EXCL); with it the new file is renamed over the old one."""
    data = text.encode("utf-8")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    target = path
    if replace:
        target = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    try:
        fd = os.open(target, flags, 0o600)
    except FileExistsError:
        raise EnvExists(str(path)) from None
    try:
        os.fchmod(fd, 0o600)  # exactly 0600, whatever the umask
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        os.unlink(target)
        raise
    os.close(fd)
    if replace:
        try:
            os.replace(target, path)
        except BaseException:
            os.unlink(target)
            raise
    try:  # the new directory entry survives a crash too
        dir_fd = os.open(path.parent, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)


def _env_line(line: str) -> tuple[str, str] | None:
    text = line.strip()
    if not text or text.startswith("#"):
        return None
    if text.startswith("export "):
        text = text[7:].lstrip()
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or not _ENV_KEY_RE.fullmatch(key):
        return None
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        value = value[1:-1]
    else:
        value = re.split(r"\s+#", value, maxsplit=1)[0].rstrip()
    return key, value


def read_env_file(path: str | Path) -> dict[str, str]:
    """``KEY=value`` lines (``export``, quotes and comments allowed; no expansion) of a .env file."""
    values: dict[str, str] = {}
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        parsed = _env_line(line)
        if parsed is not None:
            values[parsed[0]] = parsed[1]
    return values


def load_env_file(path: str | Path = ENV_FILE, environ: MutableMapping[str, str] | None = None) -> list[str]:
    """Put the variables of ``path`` (./.env) that ``environ`` does not set into it; returns their
    names (none when there is no such file). The environment always wins over the file."""
    env = os.environ if environ is None else environ
    file = Path(path)
    if not file.is_file():
        return []
    mode = file.stat().st_mode & 0o777
    if mode & 0o077:
        log.warning("%s is readable by other users (mode %o): chmod 600 %s", file, mode, file)
    loaded = []
    for key, value in read_env_file(file).items():
        if key not in env:
            env[key] = value
            loaded.append(key)
    return loaded


# --- the flow --------------------------------------------------------------------------------------


@dataclass
class Pending:
    state: str
    browser: str  # the setup cookie of the browser that started it
    target: Target
    public_url: str
    created: float


@dataclass
class Done:
    credentials: Credentials
    env_path: Path
    public_url: str
    target: Target
    replaced: bool


@dataclass
class SetupFlow:
    """The state of one setup, in this process only (it is a one-time, single-process step)."""

    env_path: Path
    config_path: Path
    token: str | None = field(default=None, repr=False)  # the one-time setup token; None once the App is registered
    pending: dict[str, Pending] = field(default_factory=dict)
    awaiting: tuple[str, Pending, Credentials] | None = (
        None  # (browser, pending, credentials) until .env may be replaced
    )
    done: Done | None = None

    @property
    def token_path(self) -> Path:
        return self.env_path.with_name(TOKEN_FILE)

    def retire_token(self) -> None:
        """The App is registered: the token stops working and its file goes (if it is still ours)."""
        token, self.token = self.token, None
        try:
            if token is not None and self.token_path.read_text(encoding="utf-8").strip() == token:
                self.token_path.unlink()
        except OSError:
            pass

    def remember(self, pending: Pending) -> None:
        now = time.monotonic()
        for state in [s for s, p in self.pending.items() if now - p.created > STATE_TTL]:
            del self.pending[state]
        while len(self.pending) >= MAX_PENDING:
            del self.pending[next(iter(self.pending))]
        self.pending[pending.state] = pending

    def take(self, state: str, browser: str) -> Pending | None:
        """The pending setup of ``state`` if this browser started it and it has not expired (single use)."""
        pending = self.pending.get(state)
        if pending is None or not hmac.compare_digest(pending.browser, browser):
            return None
        del self.pending[state]
        if time.monotonic() - pending.created > STATE_TTL:
            return None
        return pending


def mount(app: Starlette, settings: Settings, *, env_path: str | Path = ENV_FILE, console: Any = None) -> SetupFlow:
    """Add the setup routes to ``app`` (replacing earlier ones); bot/app.py calls it only while
    the process has none of the App's credentials. A new setup token is written to
    .lemi-setup-token (mode 0600, beside .env) and to ``console`` (sys.stderr), never to the log."""
    flow = SetupFlow(Path(env_path).absolute(), Path(settings.config_path).absolute(), token=new_setup_token())
    app.router.routes[:] = [r for r in app.router.routes if not str(getattr(r, "name", "")).startswith(ROUTE_PREFIX)]
    app.router.routes.extend(routes(flow))
    app.state.setup = flow
    access = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, _RedactCallback) for f in access.filters):
        access.addFilter(_RedactCallback())
    problem = _write_token_file(flow)
    url = f"http://localhost:{settings.port}/"
    log.warning(
        "no GitHub App credentials: open %s on this machine to register the App, with the setup token "
        "shown on the console where lemi serve started%s",
        url,
        f" and in {flow.token_path}" if problem is None else "",
    )
    announce_token(flow, url, problem, console if console is not None else sys.stderr)
    return flow


def _write_token_file(flow: SetupFlow) -> str | None:
    """Replace .lemi-setup-token with this start's token (mode 0600); what went wrong, or None."""
    assert flow.token is not None
    try:
        write_env(flow.token_path, flow.token + "\n", replace=True)
    except OSError as exc:
        try:  # a stale token would only mislead
            flow.token_path.unlink(missing_ok=True)
        except OSError:
            pass
        return f"{type(exc).__name__}: {exc.strerror or exc}"
    return None


def announce_token(flow: SetupFlow, url: str, file_problem: str | None, console: Any) -> None:
    """Write the setup token to the console, outside the JSON log stream (a log line is stored
    and shipped; the token is for the person who started the server)."""
    text = (
        environment()
        .get_template("setup/console.txt.j2")
        .render(url=url, token=flow.token, token_path=str(flow.token_path), file_problem=file_problem)
    )
    try:
        console.write(text)
        console.flush()
    except (OSError, ValueError):  # no console (closed stderr): the file is the way
        pass


def routes(flow: SetupFlow) -> list[Route]:
    pages = _Pages(flow)
    return [
        Route("/", pages.form, methods=["GET"], name=ROUTE_PREFIX + "form"),
        Route("/setup/start", pages.start, methods=["POST"], name=ROUTE_PREFIX + "start"),
        Route("/setup/callback", pages.callback, methods=["GET"], name=ROUTE_PREFIX + "callback"),
        Route("/setup/confirm", pages.confirm_page, methods=["GET"], name=ROUTE_PREFIX + "confirm-page"),
        Route("/setup/confirm", pages.confirm, methods=["POST"], name=ROUTE_PREFIX + "confirm"),
        Route("/setup/done", pages.done, methods=["GET"], name=ROUTE_PREFIX + "done"),
    ]


MAX_FORM = 64 * 1024


async def _read_form(request: Request) -> dict[str, str] | None:
    """An application/x-www-form-urlencoded body (at most 64 KiB; first value of each field)."""
    if not request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        return None
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM:
            return None
    try:
        fields = parse_qs(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False, max_num_fields=50)
    except (UnicodeDecodeError, ValueError):
        return None
    return {key: values[0] for key, values in fields.items()}


class _RedactCallback(logging.Filter):
    """uvicorn's access log line of the callback without the one-time code and state."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if (
            isinstance(args, tuple)
            and len(args) >= 3
            and isinstance(args[2], str)
            and args[2].startswith("/setup/callback?")
        ):
            record.args = (*args[:2], "/setup/callback?…", *args[3:])
        return True


class _Pages:
    def __init__(self, flow: SetupFlow) -> None:
        self.flow = flow

    # -- plumbing ------------------------------------------------------------------------------

    def _page(
        self,
        request: Request,
        template: str,
        *,
        status: int = 200,
        form_action: str = "",
        browser: str | None = None,
        **values: Any,
    ) -> HTMLResponse:
        nonce = secrets.token_urlsafe(16)
        html = environment().get_template(f"setup/{template}").render(nonce=nonce, csrf=browser or "", **values)
        response = HTMLResponse(html, status_code=status)
        actions = " ".join(["'self'", *([form_action] if form_action else [])])
        response.headers["Content-Security-Policy"] = (
            f"default-src 'none'; style-src 'nonce-{nonce}'; script-src 'nonce-{nonce}'; img-src 'self' data:; "
            f"form-action {actions}; base-uri 'none'; frame-ancestors 'none'"
        )
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["Referrer-Policy"] = "strict-origin-when-cross-origin"  # "no-referrer" would send Origin: null
        response.headers["Cache-Control"] = "no-store"
        response.headers["X-Content-Type-Options"] = "nosniff"
        if browser is not None and request.cookies.get(COOKIE) != browser:
            response.set_cookie(
                COOKIE,
                browser,
                max_age=int(STATE_TTL) * 24,
                path="/",
                httponly=True,
                samesite="lax",
                secure=request.url.scheme == "https",
            )
        return response

    def _error(self, request: Request, status: int, title: str, message: str, **values: Any) -> HTMLResponse:
        return self._page(request, "error.html.j2", status=status, title=title, message=message, **values)

    @staticmethod
    def _browser(request: Request) -> str | None:
        value = request.cookies.get(COOKIE, "")
        return value if _TOKEN_RE.fullmatch(value) else None

    def _refused(self, request: Request) -> HTMLResponse | None:
        """Only this machine may use the setup page: the socket peer is a loopback address (not
        what X-Forwarded-For says), no proxy passed the request on, and the host name is a
        loopback or IP one (a DNS name pointing at 127.0.0.1 -- DNS rebinding -- is refused)."""
        problem = local_request_problem(
            peer=socket_peer(request.scope), host=request.url.hostname or "", headers=request.headers
        )
        if problem is None:
            return None
        if problem.startswith("proxy:"):
            return self._error(
                request,
                403,
                "Open the setup page without a proxy",
                f"This request carries the {problem.removeprefix('proxy:')} header, which proxies add, and lemi's setup page "
                "answers only requests made on this machine straight to its port. Open http://localhost:PORT/ in a browser "
                "on this machine; for a remote server, forward the port with `ssh -L 8080:localhost:8080 <server>` and "
                "open http://localhost:8080/.",
            )
        return self._error(
            request,
            403,
            "Open the setup page from this machine",
            "lemi's setup page answers only on this machine (http://localhost:PORT/). For a remote server, "
            "forward the port with `ssh -L 8080:localhost:8080 <server>` and open http://localhost:8080/.",
        )

    def _same_origin(self, request: Request, form: Any) -> bool:
        browser = self._browser(request)
        sent = form.get("csrf")
        if browser is None or not isinstance(sent, str) or not hmac.compare_digest(sent, browser):
            return False
        origin = request.headers.get("origin")
        if origin is not None and origin != "null":
            base = str(request.base_url).rstrip("/")
            return origin.rstrip("/") == base
        return origin is None

    def _form_values(self, raw: Any = None) -> dict[str, str]:
        raw = raw or {}
        pick = lambda key, default="": str(raw.get(key, default))[:2000]  # noqa: E731
        return {
            "account": pick("account", "personal"),
            "org": pick("org"),
            "github": pick("github", "github.com"),
            "ghes_url": pick("ghes_url"),
            "ghes_confirm": pick("ghes_confirm"),
            "public_url": pick("public_url"),
            "name": pick("name", str(app_manifest().get("name", "lemi"))),
            "token": pick("token")[:200],
        }

    def _render_form(
        self, request: Request, *, values: dict[str, str], errors: dict[str, str] | None = None, status: int = 200
    ) -> HTMLResponse:
        browser = self._browser(request) or secrets.token_urlsafe(32)
        manifest = app_manifest()
        return self._page(
            request,
            "form.html.j2",
            status=status,
            browser=browser,
            values=values,
            errors=errors or {},
            env_path=str(self.flow.env_path),
            env_exists=self.flow.env_path.exists(),
            token_path=str(self.flow.token_path),
            ghes_host=_typed_host(values.get("ghes_url", "")),
            redirect_url=str(request.base_url).rstrip("/") + "/setup/callback",
            permissions=sorted(manifest.get("default_permissions", {}).items()),
            events=list(manifest.get("default_events", [])),
        )

    # -- routes ------------------------------------------------------------------------------

    async def form(self, request: Request) -> Response:
        if (refused := self._refused(request)) is not None:
            return refused
        if self.flow.done is not None:
            return RedirectResponse("/setup/done", status_code=303)
        return self._render_form(request, values=self._form_values())

    async def start(self, request: Request) -> Response:
        if (refused := self._refused(request)) is not None:
            return refused
        if self.flow.done is not None:
            return self._error(
                request, 409, "The App is registered", "Its credentials are in .env already; restart `make run`."
            )
        form = await _read_form(request)
        if form is None:
            return self._error(
                request, 400, "Malformed form", "Reload the setup page and send the form again.", again=True
            )
        if not self._same_origin(request, form):
            return self._error(
                request, 403, "This form expired", "Reload the setup page and send the form again.", again=True
            )
        values = self._form_values(form)
        errors: dict[str, str] = {}
        if not values["token"].strip():
            errors["token"] = (
                f"paste the setup token: it is printed on the console where `make run` (lemi serve) started, and is in {self.flow.token_path}"
            )
        elif not token_matches(self.flow.token, values["token"]):
            log.warning("setup: a wrong setup token was sent; nothing was registered")
            errors["token"] = (
                f"this is not the setup token of this server: copy it from the console where `make run` (lemi serve) "
                f"started, or from {self.flow.token_path} (a new one is made at every start)"
            )
            values["token"] = ""  # paste it afresh
        target: Target | None = None
        try:
            target = parse_target(
                github=values["github"], ghes_url=values["ghes_url"], account=values["account"], org=values["org"]
            )
        except SetupError as exc:
            errors.update(exc.fields)
        if target is not None and not target.is_dotcom and values["ghes_confirm"] != "yes":
            errors["ghes_confirm"] = (
                f"{target.host} is not github.com: tick the box to confirm that {target.host} is your organisation's GitHub "
                "(lemi registers the App there and takes its private key from it)"
            )
        try:
            public_url = normalise_public_url(values["public_url"])
        except ValueError as exc:
            errors["public_url"] = str(exc)
        try:
            name = check_app_name(values["name"])
        except ValueError as exc:
            errors["name"] = str(exc)
        if errors or target is None:
            return self._render_form(request, values=values, errors=errors, status=400)
        browser = self._browser(request)
        assert browser is not None
        state = secrets.token_urlsafe(32)
        manifest = build_manifest(name=name, public_url=public_url, base_url=str(request.base_url))
        self.flow.remember(Pending(state, browser, target, public_url, time.monotonic()))
        action = target.new_app_url(state)
        log.info(
            "setup: registering the GitHub App %r on %s (%s)", name, target.web_url, target.org or "personal account"
        )
        return self._page(
            request,
            "redirect.html.j2",
            form_action=target.web_url,
            action=action,
            manifest_json=json.dumps(manifest, sort_keys=True),
            target=target,
            name=name,
        )

    async def callback(self, request: Request) -> Response:
        if (refused := self._refused(request)) is not None:
            return refused
        if self.flow.done is not None:
            return RedirectResponse("/setup/done", status_code=303)
        code = request.query_params.get("code", "")
        state = request.query_params.get("state", "")
        browser = self._browser(request)
        pending = self.flow.take(state, browser) if state and browser else None
        if pending is None:
            log.warning("setup: a callback with an unknown, expired or foreign state was refused")
            return self._error(
                request,
                400,
                "This link is not valid",
                "It expired, was used already, or was started in another browser. Nothing was written. "
                "If GitHub created an App anyway, delete it in its settings, then start again.",
                again=True,
            )
        try:
            credentials = await exchange_code(pending.target, code)
        except ExchangeError as exc:
            log.warning("setup: code exchange failed: %s", exc)
            return self._error(
                request, 502, "GitHub did not hand over the App's credentials", str(exc) + ".", again=True
            )
        if self.flow.env_path.exists():
            self.flow.awaiting = (browser or "", pending, credentials)
            return RedirectResponse("/setup/confirm", status_code=303)  # (the used code leaves the address bar)
        return self._store(request, pending, credentials, replace=False)

    def _confirm_page(self, request: Request, credentials: Credentials, status: int = 200) -> HTMLResponse:
        existing = (
            self.flow.env_path.read_text(encoding="utf-8", errors="replace") if self.flow.env_path.exists() else ""
        )
        names = {parsed[0] for parsed in map(_env_line, existing.splitlines()) if parsed is not None}
        replaced, kept = sorted(names & set(ENV_KEYS)), sorted(names - set(ENV_KEYS))
        return self._page(
            request,
            "confirm.html.j2",
            status=status,
            browser=self._browser(request) or "",
            app=credentials,
            env_path=str(self.flow.env_path),
            replaced=replaced,
            kept=kept,
        )

    async def confirm_page(self, request: Request) -> Response:
        if (refused := self._refused(request)) is not None:
            return refused
        awaiting = self.flow.awaiting
        if awaiting is None or not hmac.compare_digest(awaiting[0], self._browser(request) or ""):
            return RedirectResponse("/setup/done" if self.flow.done else "/", status_code=303)
        return self._confirm_page(request, awaiting[2])

    async def confirm(self, request: Request) -> Response:
        if (refused := self._refused(request)) is not None:
            return refused
        form = await _read_form(request) or {}
        awaiting = self.flow.awaiting
        if (
            awaiting is None
            or not self._same_origin(request, form)
            or not hmac.compare_digest(awaiting[0], self._browser(request) or "")
        ):
            return self._error(
                request,
                403,
                "Nothing to confirm",
                "This confirmation expired or belongs to another browser.",
                again=True,
            )
        browser, pending, credentials = awaiting
        if form.get("replace") != "yes":
            return self._confirm_page(request, credentials, status=400)
        self.flow.awaiting = None
        return self._store(request, pending, credentials, replace=True)

    def _store(self, request: Request, pending: Pending, credentials: Credentials, *, replace: bool) -> Response:
        path = self.flow.env_path
        try:
            keep = kept_lines(path.read_text(encoding="utf-8", errors="replace")) if replace and path.exists() else []
            write_env(path, render_env(credentials, keep=keep), replace=replace)
        except EnvExists:  # appeared since the check: ask
            self.flow.awaiting = (self._browser(request) or "", pending, credentials)
            return RedirectResponse("/setup/confirm", status_code=303)
        except (OSError, ValueError) as exc:
            log.error("setup: could not write %s: %s", path, type(exc).__name__)
            self.flow.awaiting = (self._browser(request) or "", pending, credentials)
            return self._error(
                request,
                500,
                f"Could not write {path}",
                f"{type(exc).__name__}: {getattr(exc, 'strerror', None) or 'see the server log'}. Fix it and reload this page "
                "to try again; the credentials are kept in this server's memory until it stops.",
            )
        self.flow.done = Done(credentials, path, pending.public_url, pending.target, replace)
        self.flow.retire_token()
        log.info(
            "setup: GitHub App %s (id %s) registered; credentials written to %s (mode 0600)",
            credentials.slug,
            credentials.app_id,
            path,
        )
        return RedirectResponse("/setup/done", status_code=303)

    async def done(self, request: Request) -> Response:
        if (refused := self._refused(request)) is not None:
            return refused
        done = self.flow.done
        if done is None:
            return RedirectResponse("/", status_code=303)
        app = done.credentials
        return self._page(
            request,
            "done.html.j2",
            app=app,
            install_url=app.html_url + "/installations/new",
            settings_url=done.target.app_settings_url(app.slug),
            webhook_url=done.public_url + "/webhook",
            env_path=str(done.env_path),
            config_path=str(self.flow.config_path),
            config_exists=self.flow.config_path.exists(),
            readme_path=str(Path(__file__).resolve().parent.parent / "README.md"),
            replaced=done.replaced,
            missing_secret=not app.webhook_secret,
            github=done.target,
        )


__all__ = [
    "Credentials",
    "EnvExists",
    "ExchangeError",
    "SetupError",
    "SetupFlow",
    "Target",
    "app_manifest",
    "build_manifest",
    "exchange_code",
    "announce_token",
    "kept_lines",
    "load_env_file",
    "local_request_problem",
    "mount",
    "new_setup_token",
    "normalise_public_url",
    "parse_conversion",
    "parse_target",
    "read_env_file",
    "render_env",
    "routes",
    "token_matches",
    "write_env",
]
