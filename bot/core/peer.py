"""The socket peer of a request, whatever proxy headers say (pure: reads an ASGI scope).

``lemi serve`` records the peer under :data:`PEER_KEY` before uvicorn's proxy-header middleware
rewrites ``scope["client"]`` (bot/server/peer.py); :func:`socket_peer` reads what was recorded,
or ``scope["client"]`` when the app is served some other way.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

PEER_KEY = "lemi.socket_peer"
ACCESS = "lemi.access"  # the logger of ``lemi serve``'s access lines (bot/server/peer.py)


def socket_peer(scope: Mapping[str, Any]) -> str:
    """The host of the socket peer ('' when unknown, e.g. a Unix socket)."""
    client = scope[PEER_KEY] if PEER_KEY in scope else scope.get("client")
    return str(client[0]) if client else ""
