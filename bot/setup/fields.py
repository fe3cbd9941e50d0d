"""The setup form's choices, checked: which GitHub (its web and API URL), which owner, the
server's public URL and the App's name. Pure: text in, :class:`Target` or an error out.

A GitHub other than github.com (Enterprise Server, or ``<name>.ghe.com``) is taken as typed and
must be confirmed on the form; the API URL is derived from it (https://api.github.com,
<GHES>/api/v3, or https://api.<name>.ghe.com), never taken from anything GitHub sends back.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from urllib.parse import quote, urlencode, urlsplit

from bot.core.settings import DEFAULT_API_URL
from bot.setup.access import is_loopback_host

GITHUB_WEB = "https://github.com"
_ORG_RE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9]|-(?=[A-Za-z0-9])){0,38}")  # GitHub logins
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9 ._-]{0,33}")  # GitHub App names: at most 34 characters
_HOST_RE = re.compile(
    r"(?=.{1,253}\Z)(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)*[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
)


class SetupError(ValueError):
    """Inputs that cannot be used; ``fields`` maps each form field to what is wrong with it."""

    def __init__(self, fields: dict[str, str]) -> None:
        super().__init__("; ".join(f"{k}: {v}" for k, v in fields.items()))
        self.fields = fields


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
    if parts.scheme == "http" and not is_loopback_host(host):
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
    if is_loopback_host(host):
        raise ValueError(
            "GitHub cannot deliver webhooks to this machine's loopback address: write the server's public "
            "URL, or a tunnel's (e.g. https://smee.io/…)"
        )
    return f"{scheme}://{netloc}{path.removesuffix('/webhook')}"


def typed_host(text: str) -> str:
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
