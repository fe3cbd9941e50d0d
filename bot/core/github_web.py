"""GitHub's web addresses, derived from its REST API's (pure).

The App knows the API it talks to (``GITHUB_API_URL``); links it writes for
people go to the web side of the same GitHub: ``https://api.github.com`` is
``https://github.com``, GitHub Enterprise Server's ``https://HOST/api/v3`` is
``https://HOST``, and GitHub Enterprise Cloud's ``https://api.NAME.ghe.com`` is
``https://NAME.ghe.com``.
"""

from __future__ import annotations

import re
from urllib.parse import quote, urlsplit

GITHUB_API = "api.github.com"
GITHUB_WEB = "https://github.com"
_COMMIT_RE = re.compile(r"[0-9a-f]{7,40}")  # a commit SHA, whole or abbreviated (lowercase, as git prints it)


def web_url(api_url: str) -> str:
    """The web address of the GitHub whose REST API is ``api_url``, without a trailing slash."""
    url = api_url.rstrip("/")
    parts = urlsplit(url)
    host = parts.hostname or ""
    if host == GITHUB_API:
        return GITHUB_WEB
    if host.startswith("api.") and host.endswith(".ghe.com"):
        return f"{parts.scheme}://{parts.netloc.removeprefix('api.')}"
    return url.removesuffix("/api/v3")


def repository_url(api_url: str, repository: str) -> str:
    """``owner/name`` on the web side of the GitHub whose REST API is ``api_url``."""
    return f"{web_url(api_url)}/{quote(repository, safe='/')}"


def commit_checks(repository_web_url: str, tag: str) -> str | None:
    """The checks of the commit an image tag names (lemi tags images with the commit SHA), on
    the web: where a build that failed says why. None when ``tag`` is not a commit SHA."""
    if not _COMMIT_RE.fullmatch(tag):
        return None
    return f"{repository_web_url.rstrip('/')}/commit/{tag}/checks"
