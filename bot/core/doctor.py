"""``lemi doctor`` and ``/readyz``: the checklist of a setup, and the pure judgements on what
GitHub and AWS answered (bot/flows/doctor.py asks them; values in, values out here).

A :class:`Check` is one line of the checklist: its name, whether it passed, what was found
and, when it failed, how to fix it. :func:`report` is the document ``--output json`` prints
and ``/readyz`` answers.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from bot.core.names import SERVICE_RE

MAX_SERVICE_REPOS = 20  # service repositories whose installation doctor checks; the rest are counted
_LEVELS = {"read": 1, "write": 2, "admin": 3}
APP_SETTINGS = "the App's settings on GitHub (Settings → Developer settings → GitHub Apps → lemi)"


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def passed(name: str, detail: str) -> Check:
    return Check(name, True, detail)


def failed(name: str, detail: str, fix: str) -> Check:
    return Check(name, False, detail, fix)


def report(checks: Sequence[Check]) -> dict[str, Any]:
    """``{"ok": bool, "checks": [{"name", "ok", "detail", "fix"}]}``."""
    return {"ok": all(c.ok for c in checks), "checks": [c.as_dict() for c in checks]}


def missing_permissions(granted: Mapping[str, Any], wanted: Mapping[str, Any]) -> dict[str, str]:
    """The permissions of ``wanted`` (app.yml's ``default_permissions``) that ``granted`` lacks
    or grants at a lower level (read < write < admin): name -> the level wanted."""
    return {
        name: str(level)
        for name, level in sorted(wanted.items())
        if _LEVELS.get(str(granted.get(name)), 0) < _LEVELS.get(str(level), 0)
    }


def _levels(permissions: Mapping[str, str]) -> str:
    return ", ".join(f"{name}: {level}" for name, level in permissions.items())


def app_subscriptions(app: Mapping[str, Any], manifest: Mapping[str, Any]) -> list[Check]:
    """The App's permissions and subscribed events (``GET /app``) against app.yml."""
    wanted_permissions = manifest.get("default_permissions") or {}
    lacking = missing_permissions(app.get("permissions") or {}, wanted_permissions)
    if lacking:
        permissions = failed(
            "App permissions",
            f"the App lacks {_levels(lacking)} (app.yml asks for them)",
            f"in {APP_SETTINGS}, 'Permissions & events', grant {_levels(lacking)}; then accept the new "
            "permissions on each installation (Settings → Integrations → GitHub Apps → lemi → Configure)",
        )
    else:
        permissions = passed("App permissions", f"{_levels(dict(wanted_permissions))} (as app.yml)")
    subscribed = set(app.get("events") or [])
    wanted_events = [str(e) for e in manifest.get("default_events") or []]
    missing = [e for e in wanted_events if e not in subscribed]
    if missing:
        events = failed(
            "App events",
            f"the App is not subscribed to {', '.join(missing)} (app.yml subscribes to them)",
            f"in {APP_SETTINGS}, 'Permissions & events', 'Subscribe to events', tick {', '.join(missing)}",
        )
    else:
        events = passed("App events", f"subscribed to {', '.join(wanted_events)} (as app.yml)")
    return [permissions, events]


def hook_config(config: Mapping[str, Any], *, secret_here: bool) -> Check:
    """The App's webhook configuration (``GET /app/hook/config``): a URL ending in /webhook,
    content type json, a secret set on GitHub's side, and one in GITHUB_WEBHOOK_SECRET here."""
    name = "App webhook"
    url = str(config.get("url") or "")
    problems, fixes = [], []
    if not url:
        problems.append("the App has no webhook URL")
        fixes.append("set 'Webhook URL' to https://<lemi's host>/webhook and tick 'Active'")
    elif not url.split("?", 1)[0].rstrip("/").endswith("/webhook"):
        problems.append(f"the webhook URL {url} does not end in /webhook, where lemi takes deliveries")
        fixes.append("set 'Webhook URL' to https://<lemi's host>/webhook")
    if config.get("content_type") != "json":
        problems.append(f"the content type is {config.get('content_type') or 'not set'}, not json")
        fixes.append("set the content type to application/json")
    if not config.get("secret"):
        problems.append("no webhook secret is set on GitHub, so deliveries are not signed")
        fixes.append("set 'Webhook secret' to the value of GITHUB_WEBHOOK_SECRET")
    if not secret_here:
        problems.append("GITHUB_WEBHOOK_SECRET is not set here, so lemi cannot check the deliveries' signatures")
        fixes.append("set GITHUB_WEBHOOK_SECRET to the App's webhook secret")
    if problems:
        return failed(name, "; ".join(problems), f"in {APP_SETTINGS}, 'Webhook': " + "; ".join(fixes))
    return passed(name, f"{url}, content type json, secret set")


def infra_listing(path: str) -> tuple[str, re.Pattern[str]]:
    """Where the infra files of lemi.yml's ``infra.path`` are listed, and the pattern of a
    listed name that names a service: ``services/{service}.tf`` → (``services``, ``(?P<service>...)\\.tf``)."""
    parts = path.split("/")
    index = next(i for i, part in enumerate(parts) if "{service}" in part)
    before, after = parts[index].split("{service}", 1)
    name = re.compile(re.escape(before) + r"(?P<service>[a-z0-9-]+)" + re.escape(after))
    return "/".join(parts[:index]), name


def services_listed(names: Iterable[str], pattern: re.Pattern[str]) -> list[str]:
    """The services the listed names stand for (sorted, each a valid service name)."""
    found = {m.group("service") for n in names if (m := pattern.fullmatch(n))}
    return sorted(s for s in found if SERVICE_RE.fullmatch(s))


def service_installations(
    installed: Mapping[str, bool], unchecked: int, unreadable: Mapping[str, str], infra: str
) -> list[Check]:
    """The installations on the service repositories the infra files name (``installed``: each
    checked one; ``unchecked``: how many more there are) and the infra files lemi cannot read."""
    checks = []
    more = f"; {unchecked} more not checked (doctor checks {MAX_SERVICE_REPOS})" if unchecked else ""
    absent = sorted(r for r, there in installed.items() if not there)
    if absent:
        checks.append(
            failed(
                "installations: service repositories",
                f"lemi is not installed on {', '.join(absent)} (named by the infra files' `repository`){more}",
                "install the App on those repositories (Settings → Integrations → GitHub Apps → lemi → "
                "Configure → Repository access), or correct `repository` in their infra files",
            )
        )
    elif installed:
        checks.append(
            passed("installations: service repositories", f"installed on {', '.join(sorted(installed))}{more}")
        )
    else:
        checks.append(passed("installations: service repositories", f"no infra file in {infra} names a repository"))
    if unreadable:
        listed = "; ".join(f"{path}: {why}" for path, why in sorted(unreadable.items()))
        checks.append(
            failed(
                "infra files",
                f"lemi cannot read {listed}, so it refuses every action on those services",
                f'fix those files in {infra} (one module block per service, `repository = "owner/name"`)',
            )
        )
    return checks
