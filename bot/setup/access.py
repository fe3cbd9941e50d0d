"""Who may use the setup page: this machine only, and whoever holds the one-time setup token.

* **This machine only.** A request is answered only when its *socket peer* is a loopback address
  (:func:`bot.core.peer.socket_peer`: ``lemi serve`` records it before uvicorn's proxy-header
  middleware rewrites ``scope["client"]`` from ``X-Forwarded-For``, so ``FORWARDED_ALLOW_IPS='*'``
  cannot make a remote request look local), it carries no proxy header (:data:`PROXY_HEADERS`: a
  proxy on this machine may be passing on someone else's request), and its Host is a loopback or
  IP name (a DNS name pointing at 127.0.0.1 -- DNS rebinding -- is refused).
* **The one-time setup token.** 160 random bits, made at each start, compared in constant time.
"""

from __future__ import annotations

import base64
import hmac
import ipaddress
import secrets
from typing import Any

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


def is_loopback_host(host: str) -> bool:
    """``localhost`` (and ``*.localhost``) or a loopback address, IPv4-mapped IPv6 included."""
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
    if not is_loopback_host(peer):
        return "peer"
    for name in PROXY_HEADERS:
        if name.lower() in headers:
            return "proxy:" + name
    host = host.lower()
    if not (is_loopback_host(host) or _is_ip(host)):
        return "host"
    return None


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
