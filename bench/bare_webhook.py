"""The ceiling for bench/intake.py: a bare Starlette endpoint on the same stack as lemi.

One ``POST /webhook`` that reads the body, checks ``X-Hub-Signature-256`` with
``hmac.compare_digest`` and answers 202 -- nothing else (no JSON parse, no
queue). Served by uvicorn with the options ``lemi serve`` uses (access log on,
proxy headers), so the two servers differ only in what the endpoint does.

    GITHUB_WEBHOOK_SECRET=s .venv/bin/python bench/bare_webhook.py --port 8081
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import os

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route


def build(secret: str) -> Starlette:
    key = secret.encode("utf-8")

    async def webhook(request: Request) -> Response:
        body = await request.body()
        header = request.headers.get("x-hub-signature-256", "")
        expected = "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected.encode("ascii"), header.encode("ascii", errors="replace")):
            return JSONResponse({"error": "bad signature"}, status_code=401)
        return JSONResponse({"status": "accepted"}, status_code=202)

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok", "app": "ready"})

    return Starlette(routes=[Route("/webhook", webhook, methods=["POST"]), Route("/healthz", healthz)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    import uvicorn

    uvicorn.run(build(os.environ["GITHUB_WEBHOOK_SECRET"]), host=args.host, port=args.port, log_level="info",
                proxy_headers=True)  # fmt: skip


if __name__ == "__main__":
    main()
