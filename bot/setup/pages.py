"""The setup page's routes: the form, the start of a registration, GitHub's callback, the
confirmation before .env is replaced, and the next steps.

Every route first refuses a request that is not this machine's (:mod:`bot.setup.access`); the
form asks for the one-time setup token and carries a CSRF token equal to the browser's setup
cookie (HttpOnly, SameSite=Lax), checked with the Origin on every POST. Pages are the
``templates/setup/*.html.j2`` templates, served with a nonce Content-Security-Policy.
"""

from __future__ import annotations

import hmac
import json
import logging
import re
import secrets
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from bot.core.peer import socket_peer
from bot.core.templating import environment
from bot.setup.access import local_request_problem, token_matches
from bot.setup.envfile import ENV_KEYS, EnvExists, env_line, kept_lines, render_env, write_env
from bot.setup.fields import SetupError, Target, check_app_name, normalise_public_url, parse_target, typed_host
from bot.setup.flow import STATE_TTL, Done, Pending, SetupFlow
from bot.setup.manifest import Credentials, ExchangeError, app_manifest, build_manifest, exchange_code

log = logging.getLogger("lemi.setup")

COOKIE = "lemi_setup"
_TOKEN_RE = re.compile(r"[A-Za-z0-9_-]{32,64}")
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


class Pages:
    """The route handlers of one :class:`SetupFlow`."""

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

        def pick(key: str, default: str = "") -> str:
            return str(raw.get(key, default))[:2000]

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
            ghes_host=typed_host(values.get("ghes_url", "")),
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
        names = {parsed[0] for parsed in map(env_line, existing.splitlines()) if parsed is not None}
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
            readme_path=str(Path(__file__).resolve().parents[2] / "README.md"),
            replaced=done.replaced,
            missing_secret=not app.webhook_secret,
            github=done.target,
        )
