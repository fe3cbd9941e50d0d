"""First run: register lemi's GitHub App from ``app.yml`` through GitHub's App manifest flow.

``make run`` without the App's credentials serves this page at http://localhost:8080/: the
server mounts :func:`create_setup_app` only when the process has *none* of ``GITHUB_APP_ID``,
a private key and ``GITHUB_WEBHOOK_SECRET``; with credentials the routes do not exist at all.

Who may register the App -- three locks, each enough on its own against a stranger:

* **This machine only** (:mod:`bot.setup.access`): the socket peer is a loopback address, no
  proxy passed the request on, and the Host is a loopback or IP name. A remote server is set
  up through an SSH tunnel: ``ssh -L 8080:localhost:8080 host``.
* **The one-time setup token** (:mod:`bot.setup.app`): a new random token (160 bits) at each
  start, on the console that started the server and in ``.lemi-setup-token`` beside .env (mode
  0600). The form asks for it and POST /setup/start compares it in constant time; a missing or
  wrong token is a field error and registers nothing. Once .env is written the token is retired
  and its file removed.
* **The browser that started it** (:mod:`bot.setup.pages`): a single-use ``state`` bound to the
  browser's setup cookie, and the form's CSRF token and Origin check.

A GitHub other than github.com (Enterprise Server, or ``<name>.ghe.com``) must be confirmed
explicitly: its checkbox "I confirm that <host> is my organisation's GitHub" unticked is a
field error naming the host, and the page that sends the manifest names the host again.

    GET  /                 the form: the setup token, personal account or organisation,
                           github.com or a GitHub Enterprise Server URL (confirmed), the
                           server's public URL, the App's name
    POST /setup/start      checks the token and the fields, remembers a random single-use
                           ``state`` (1 h) bound to this browser's setup cookie, and answers
                           a page whose form POSTs the manifest to <web>/settings/apps/new?state=…
                           or <web>/organizations/<org>/settings/apps/new?state=…
    GET  /setup/callback   GitHub sends the browser back with ?code=…&state=…: state and
                           cookie are checked, the code is exchanged at
                           <api>/app-manifests/<code>/conversions (no authentication) and
                           ./.env is written with mode 0600 -- an existing .env is never
                           changed without the confirmation of GET/POST /setup/confirm
    GET  /setup/done       next steps: install the App, write lemi.yml, restart make run

The manifest (:mod:`bot.setup.manifest`) is app.yml with ``hook_attributes.url`` = <public
URL>/webhook and ``redirect_url`` = <this page's base URL>/setup/callback. The API URL of the
exchange is derived from the GitHub the user chose (:mod:`bot.setup.fields`), never taken from
the callback's query.

``make run`` starts ``lemi serve --env-file .env``, which puts the variables of ./.env that
the environment does not set into it (:func:`bot.setup.envfile.load_env_file`), so the
``make run`` after the setup serves webhooks; a plain ``lemi serve`` (Procfile, tests) reads the
environment only. The setup token, the private key, the webhook secret and the OAuth client
secret are never logged; the last three are never shown either. lemi does not use the OAuth
client secret and does not store it.

The modules, each one job: ``access`` (this machine, the token), ``fields`` (the form's choices
checked), ``manifest`` (app.yml and the code exchange), ``envfile`` (.env written and read),
``flow`` (one setup's state), ``pages`` (the routes), ``app`` (the Starlette app).
"""

from bot.setup.access import local_request_problem, new_setup_token, token_matches
from bot.setup.app import create_setup_app, routes
from bot.setup.envfile import ENV_FILE, EnvExists, kept_lines, load_env_file, read_env_file, render_env, write_env
from bot.setup.fields import SetupError, Target, check_app_name, normalise_public_url, parse_target
from bot.setup.flow import STATE_TTL, TOKEN_FILE, SetupFlow, announce_token
from bot.setup.manifest import Credentials, ExchangeError, app_manifest, build_manifest, exchange_code, parse_conversion
from bot.setup.pages import COOKIE

__all__ = [
    "COOKIE",
    "ENV_FILE",
    "STATE_TTL",
    "TOKEN_FILE",
    "Credentials",
    "EnvExists",
    "ExchangeError",
    "SetupError",
    "SetupFlow",
    "Target",
    "announce_token",
    "app_manifest",
    "build_manifest",
    "check_app_name",
    "create_setup_app",
    "exchange_code",
    "kept_lines",
    "load_env_file",
    "local_request_problem",
    "new_setup_token",
    "normalise_public_url",
    "parse_conversion",
    "parse_target",
    "read_env_file",
    "render_env",
    "routes",
    "token_matches",
    "write_env",
]
