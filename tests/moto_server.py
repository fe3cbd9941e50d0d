"""moto's AWS server, in this process, on loopback: a real AWS API for the tests.

Started once per test session (see the ``moto_endpoint`` fixture in
conftest.py). It listens on 127.0.0.1 only, on a port the OS picks (port 0,
so parallel runs never collide). State lives in moto's in-process backends
and is shared by every test until :func:`reset`.
"""

from __future__ import annotations

import logging
import urllib.request

HOST = "127.0.0.1"

# no proxy from the environment may ever see a request meant for loopback
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class MotoServer:
    def __init__(self, host: str = HOST) -> None:
        self._host = host
        self._server = None
        self.url = ""

    def start(self) -> str:
        from moto.server import ThreadedMotoServer  # heavy import: only when a test needs AWS

        # werkzeug logs every request on stderr; keep its warnings and errors only
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        server = ThreadedMotoServer(ip_address=self._host, port=0, verbose=False)
        server.start()  # returns once the socket is bound and listening
        host, port = server.get_host_and_port()
        self._server = server
        self.url = f"http://{host}:{port}"
        return self.url

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

    def reset(self) -> None:
        reset(self.url)


def reset(url: str) -> None:
    """Forget every resource in every moto backend (``POST /moto-api/reset``)."""
    request = urllib.request.Request(f"{url}/moto-api/reset", method="POST", data=b"")
    with _opener.open(request, timeout=10) as response:
        response.read()
