"""Who is on the other end of the socket, whatever proxy headers say.

uvicorn's ``ProxyHeadersMiddleware`` replaces ``scope["client"]`` with the address in
``X-Forwarded-For`` when the socket peer is one of the trusted hosts (``FORWARDED_ALLOW_IPS``;
``*`` is common behind a PaaS router). That is right for access logs and wrong for deciding
that a request comes from this machine: anyone who reaches the port can write
``X-Forwarded-For: 127.0.0.1``.

``lemi serve`` therefore runs uvicorn with ``proxy_headers=False`` and serves :func:`served`,
which records the socket peer under ``scope["lemi.socket_peer"]`` and *then* applies
uvicorn's own middleware with the trusted hosts uvicorn would have used, so everything else
(access logs, ``request.client``) behaves as before. :func:`socket_peer` reads what was
recorded, or ``scope["client"]`` when the app is served some other way.
"""

from __future__ import annotations

import os
from typing import Any

from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from bot.core.peer import PEER_KEY, socket_peer

# uvicorn's default when FORWARDED_ALLOW_IPS is not set (uvicorn.config.Config)
DEFAULT_TRUSTED = "127.0.0.1,::1"

Scope = dict[str, Any]


def trusted_hosts(environ: dict[str, str] | None = None) -> str:
    """The proxies uvicorn trusts: ``FORWARDED_ALLOW_IPS``, or its default."""
    env = os.environ if environ is None else environ
    return env.get("FORWARDED_ALLOW_IPS", DEFAULT_TRUSTED)


class RecordPeer:
    """ASGI middleware: keep the server's ``scope["client"]`` (the socket peer) under
    :data:`PEER_KEY`, then let ``inner`` rewrite ``scope["client"]`` as it likes."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] in ("http", "websocket"):
            scope[PEER_KEY] = scope.get("client")
        await self.inner(scope, receive, send)


def served(app: Any, trusted: str | list[str] | None = None) -> RecordPeer:
    """``app`` as ``lemi serve`` serves it: the socket peer recorded, then uvicorn's proxy
    headers applied with ``trusted`` (default: :func:`trusted_hosts`)."""
    return RecordPeer(ProxyHeadersMiddleware(app, trusted_hosts=trusted_hosts() if trusted is None else trusted))


__all__ = ["DEFAULT_TRUSTED", "PEER_KEY", "RecordPeer", "served", "socket_peer", "trusted_hosts"]
