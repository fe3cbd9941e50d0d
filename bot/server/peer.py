"""Who is on the other end of the socket, whatever proxy headers say; and the access log.

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

It also writes the access log (uvicorn's is off, ``access_log=False``): a JSON line like lemi's
other logs (:class:`AccessFormatter`: the client, method, path and status as fields, and uvicorn's
line as the message), on standard output, through the ``lemi.access`` logger (:func:`access_log`),
for every request but a ``POST /webhook`` answered 2xx, whose JSON line lemi writes already.
uvicorn built that line's record for every delivery, to be dropped, and a ``POST /webhook``
went through the proxy-headers middleware, which only the access line of a refused delivery
uses: together a tenth of intake's CPU. A refused delivery gets the proxy headers applied
before its line is written, so it names the client as before.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any, cast

import msgspec
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware
from uvicorn.protocols.utils import get_client_addr, get_path_with_query_string

from bot.core.logs import BufferedStreamHandler, JsonFormatter
from bot.core.peer import ACCESS, PEER_KEY, socket_peer

# uvicorn's default when FORWARDED_ALLOW_IPS is not set (uvicorn.config.Config)
DEFAULT_TRUSTED = "127.0.0.1,::1"

Scope = dict[str, Any]


def trusted_hosts(environ: dict[str, str] | None = None) -> str:
    """The proxies uvicorn trusts: ``FORWARDED_ALLOW_IPS``, or its default."""
    env = os.environ if environ is None else environ
    return env.get("FORWARDED_ALLOW_IPS", DEFAULT_TRUSTED)


ACCESS_LINE = "%s - %s %s HTTP/%s %d"  # client, method, path, HTTP version, status: uvicorn's line, unquoted


class AccessFormatter(JsonFormatter):
    """An access line as JSON: lemi's fields, uvicorn's line as the message, and the request's
    parts as fields of their own (read from the record's arguments, as a filter left them: the
    setup page's takes the one-time code out of the path)."""

    def format(self, record: logging.LogRecord) -> str:
        args = record.args
        if not (isinstance(args, tuple) and len(args) == 5):
            return super().format(record)
        client, method, path, _, status = args
        entry = {
            "time": self._time(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "client": client,
            "method": method,
            "path": path,
            "status": status,
        }
        return _encoder.encode(entry).decode()


_encoder = msgspec.json.Encoder(enc_hook=str)


def access_log() -> logging.Logger:
    """The ``lemi.access`` logger, writing JSON access lines to standard output, in batches as
    lemi's other logs (bot/core/logs.py; its handler is added once)."""
    logger = logging.getLogger(ACCESS)
    if not logger.handlers:
        handler = BufferedStreamHandler(sys.stdout)
        handler.setFormatter(AccessFormatter())
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    return logger


async def _nothing(scope: Scope, receive: Any, send: Any) -> None:
    """An app that answers nothing: behind the proxy-headers middleware, it leaves the scope rewritten."""


class RecordPeer:
    """ASGI middleware: keep the server's ``scope["client"]`` (the socket peer) under
    :data:`PEER_KEY`, then let ``inner`` (uvicorn's proxy-headers middleware around the app)
    rewrite ``scope["client"]`` as it likes; and write each request's access line."""

    def __init__(self, inner: ProxyHeadersMiddleware, trusted: str | list[str]) -> None:
        # uvicorn types its ASGI calls more narrowly than lemi's plain-dict scopes
        self.inner: Any = inner
        self._proxied: Any = ProxyHeadersMiddleware(cast(Any, _nothing), trusted_hosts=trusted)  # same trusted hosts
        self.access = logging.getLogger(ACCESS)

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            if scope["type"] == "websocket":
                scope[PEER_KEY] = scope.get("client")
            await self.inner(scope, receive, send)
            return
        scope[PEER_KEY] = scope.get("client")
        status = 0

        async def sending(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            if scope["path"] == "/webhook" and scope["method"] == "POST":  # a delivery: straight to the app
                await self.inner.app(scope, receive, sending)
                if 200 <= status < 300:
                    status = 0  # no access line: lemi's own JSON line says it
                else:
                    await self._proxied(scope, receive, send)  # the client the proxy headers name
            else:
                await self.inner(scope, receive, sending)
        except BaseException:
            status = status or 500  # uvicorn answers 500 for an app that raised before it answered
            raise
        finally:
            if status and self.access.isEnabledFor(logging.INFO):
                where: Any = scope
                self.access.info(ACCESS_LINE, get_client_addr(where), scope["method"],
                                 get_path_with_query_string(where), scope["http_version"], status)  # fmt: skip


def served(app: Any, trusted: str | list[str] | None = None) -> RecordPeer:
    """``app`` as ``lemi serve`` serves it: the socket peer recorded, then uvicorn's proxy
    headers applied with ``trusted`` (default: :func:`trusted_hosts`), and the access log written."""
    access_log()
    hosts = trusted_hosts() if trusted is None else trusted
    return RecordPeer(ProxyHeadersMiddleware(app, trusted_hosts=hosts), hosts)


__all__ = [
    "ACCESS",
    "DEFAULT_TRUSTED",
    "PEER_KEY",
    "RecordPeer",
    "access_log",
    "served",
    "socket_peer",
    "trusted_hosts",
]
