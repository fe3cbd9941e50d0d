"""The GitHub side of the App manifest flow: the manifest (lemi's ``app.yml`` with this server's
URLs), and the exchange of GitHub's one-time code for the new App's credentials."""

from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp

from bot.core import yamlsafe
from bot.setup.fields import Target

API_VERSION = "2022-11-28"
_CODE_RE = re.compile(r"[A-Za-z0-9_-]{1,128}")
_SAFE_SECRET_RE = re.compile(r"[\x21-\x7e]{1,256}")  # printable ASCII, no space


class ExchangeError(RuntimeError):
    """The code could not be turned into credentials; the message is for the page."""


def app_yml_path() -> Path:
    package = Path(__file__).resolve().parents[1]  # bot/
    for candidate in (package.parent / "app.yml", package / "app.yml"):  # source tree, installed wheel
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
    owner, name = data.get("owner"), data.get("name")
    login = owner.get("login") if isinstance(owner, dict) else None
    if not isinstance(login, str):
        login = target.org or ""
    if not isinstance(name, str):
        name = slug
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
