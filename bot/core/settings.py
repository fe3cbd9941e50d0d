"""Settings from the process environment (the README, "Configuration").

Read once, in the server's lifespan or at the CLI's entry, never at import.
Secrets are kept out of ``repr`` so they cannot reach a log line.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_API_URL = "https://api.github.com"
DEFAULT_QUEUE = "sqlite:///lemi-queue.db"


class SettingsError(ValueError):
    """A setting that is missing or malformed; the message says which and how to fix it."""


@dataclass(frozen=True)
class Settings:
    app_id: str | None = None
    private_key: str | None = field(default=None, repr=False)
    webhook_secret: str | None = field(default=None, repr=False)
    api_url: str = DEFAULT_API_URL
    config_path: str = "lemi.yml"
    queue_url: str = DEFAULT_QUEUE
    port: int = 8080
    workers: int = 4
    lease_seconds: float = 60.0
    retry_delays: tuple[float, ...] = (5.0, 30.0, 120.0, 600.0, 1800.0)
    deploy_poll_seconds: float = 5.0
    deploy_timeout_seconds: float = 900.0
    # ask GitHub to redeliver missed webhooks at start and then this often (bot/redeliver.py);
    # 0 = off. LEMI_REDELIVER_INTERVAL_SECONDS defaults to 300; a Settings built in code
    # (tests, embedding) has it off, so the app makes no GitHub call it was not asked for.
    redeliver_interval_seconds: float = 0.0

    @property
    def locks_path(self) -> str:
        """Locks live in the embedded database (the queue's file when the queue is SQLite)."""
        if self.queue_url.startswith("sqlite:///"):
            return self.queue_url.removeprefix("sqlite:///") or "lemi-queue.db"
        return "lemi-locks.db"

    @property
    def has_app_credentials(self) -> bool:
        return bool(self.app_id and self.private_key and self.webhook_secret)

    def require_app(self) -> None:
        missing = [
            name
            for name, value in (
                ("GITHUB_APP_ID", self.app_id),
                ("GITHUB_APP_PRIVATE_KEY or GITHUB_APP_PRIVATE_KEY_PATH", self.private_key),
                ("GITHUB_WEBHOOK_SECRET", self.webhook_secret),
            )
            if not value
        ]
        if missing:
            raise SettingsError("missing " + ", ".join(missing) + " (see the README, 'App configuration')")


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    env = os.environ if environ is None else environ
    key = env.get("GITHUB_APP_PRIVATE_KEY") or None
    key_path = env.get("GITHUB_APP_PRIVATE_KEY_PATH")
    if key is None and key_path:
        try:
            key = Path(key_path).read_text(encoding="utf-8")
        except OSError as exc:
            raise SettingsError(f"GITHUB_APP_PRIVATE_KEY_PATH={key_path}: cannot read it ({exc.strerror})") from None
    if key is not None:
        key = key.replace("\\n", "\n").strip() + "\n"  # one-line env values often carry literal \n
        if "PRIVATE KEY-----" not in key:
            raise SettingsError("the GitHub App private key is not a PEM key (-----BEGIN RSA PRIVATE KEY-----)")
    api_url = (env.get("GITHUB_API_URL") or DEFAULT_API_URL).rstrip("/")
    if not api_url.startswith(("https://", "http://")):
        raise SettingsError(f"GITHUB_API_URL={api_url!r} must be an http(s) URL")
    port = int(_number(env, "PORT", 8080))
    workers = int(_number(env, "LEMI_WORKERS", 4))
    lease = _number(env, "LEMI_LEASE_SECONDS", 60.0)
    delays_text = env.get("LEMI_RETRY_DELAYS") or "5,30,120,600,1800"
    try:
        delays = tuple(float(x) for x in delays_text.split(",") if x.strip())
    except ValueError:
        raise SettingsError(
            f"LEMI_RETRY_DELAYS={delays_text!r}: write seconds separated by commas, e.g. 5,30,120"
        ) from None
    if not delays or workers < 0 or lease <= 0:
        raise SettingsError("LEMI_WORKERS must be >= 0, LEMI_LEASE_SECONDS > 0, LEMI_RETRY_DELAYS not empty")
    redeliver = _number(env, "LEMI_REDELIVER_INTERVAL_SECONDS", 300.0)
    if redeliver < 0:
        raise SettingsError("LEMI_REDELIVER_INTERVAL_SECONDS must be >= 0 (0 turns redelivery of missed webhooks off)")
    return Settings(
        app_id=env.get("GITHUB_APP_ID") or None,
        private_key=key,
        webhook_secret=env.get("GITHUB_WEBHOOK_SECRET") or None,
        api_url=api_url,
        config_path=env.get("LEMI_CONFIG") or "lemi.yml",
        queue_url=env.get("LEMI_QUEUE") or DEFAULT_QUEUE,
        port=port,
        workers=workers,
        lease_seconds=lease,
        retry_delays=delays,
        deploy_poll_seconds=_number(env, "LEMI_DEPLOY_POLL_SECONDS", 5.0),
        deploy_timeout_seconds=_number(env, "LEMI_DEPLOY_TIMEOUT_SECONDS", 900.0),
        redeliver_interval_seconds=redeliver,
    )


def _number(env: Mapping[str, str], name: str, default: float) -> float:
    text = env.get(name)
    if not text:
        return default
    try:
        return float(text)
    except ValueError:
        raise SettingsError(f"{name}={text!r} is not a number") from None
