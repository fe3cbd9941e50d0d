"""bot/core/settings.py: every variable declared once (pydantic-settings), read from a mapping,
validated, and reported in one line that names the variable and never shows a secret."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from bot.core.settings import (
    DEFAULT_API_URL,
    CommandSettings,
    Settings,
    SettingsError,
    as_written,
    environment_default,
    load_settings,
    variable_name,
)

PEM = "-----BEGIN RSA PRIVATE KEY-----\nMIIabc\n-----END RSA PRIVATE KEY-----\n"
ONE_LINE_PEM = PEM.strip().replace("\n", "\\n")


def error(environ: dict[str, str]) -> str:
    with pytest.raises(SettingsError) as raised:
        load_settings(environ)
    return str(raised.value)


def test_the_environment_defaults() -> None:
    settings = load_settings({})
    assert (settings.app_id, settings.private_key, settings.webhook_secret) == (None, None, None)
    assert (settings.api_url, settings.config_path, settings.queue_url) == (
        DEFAULT_API_URL,
        "lemi.yml",
        "sqlite:///lemi-queue.db",
    )
    assert (settings.port, settings.workers, settings.lease_seconds) == (8080, 4, 60.0)
    assert settings.retry_delays == (5.0, 30.0, 120.0, 600.0, 1800.0)
    assert (settings.deploy_poll_seconds, settings.deploy_timeout_seconds) == (5.0, 900.0)
    assert settings.redeliver_interval_seconds == 300.0
    assert not settings.has_app_credentials


def test_a_settings_built_in_code_holds_what_it_is_given(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("GITHUB_APP_ID", "GITHUB_WEBHOOK_SECRET", "LEMI_WORKERS", "LEMI_REDELIVER_INTERVAL_SECONDS"):
        monkeypatch.setenv(name, "7")
    settings = Settings(app_id="1", workers=2)
    assert (settings.app_id, settings.webhook_secret, settings.workers) == ("1", None, 2)
    assert settings.redeliver_interval_seconds == 0.0  # off: no GitHub call it was not asked for
    assert load_settings().redeliver_interval_seconds == 7.0  # os.environ, when asked
    with pytest.raises(ValidationError):
        settings.workers = 3  # type: ignore[misc]  # frozen


def test_names_are_exact_and_an_empty_value_is_unset() -> None:
    settings = load_settings({"github_app_id": "1", "LEMI_WORKERS": "", "LEMI_QUEUE": "", "PORT": "9000"})
    assert (settings.app_id, settings.workers, settings.queue_url, settings.port) == (
        None,
        4,
        "sqlite:///lemi-queue.db",
        9000,
    )


def test_values_are_read_as_before() -> None:
    settings = load_settings(
        {
            "GITHUB_API_URL": "https://ghe.acme.test/api/v3/",
            "LEMI_RETRY_DELAYS": "1, 2.5,,10",
            "LEMI_WORKERS": "2.0",
            "LEMI_LEASE_SECONDS": "30",
            "LEMI_REDELIVER_INTERVAL_SECONDS": "0",
        }
    )
    assert settings.api_url == "https://ghe.acme.test/api/v3"  # no trailing slash
    assert settings.retry_delays == (1.0, 2.5, 10.0)
    assert (settings.workers, settings.lease_seconds, settings.redeliver_interval_seconds) == (2, 30.0, 0.0)
    assert load_settings({"LEMI_WORKERS": "2.5"}).workers == 2  # a number, its fraction dropped, as always


def test_the_private_key_inline_or_from_a_file(tmp_path: Path) -> None:
    assert load_settings({"GITHUB_APP_PRIVATE_KEY": ONE_LINE_PEM}).private_key == PEM  # \n turned into newlines
    key_file = tmp_path / "app.pem"
    key_file.write_text(PEM)
    assert load_settings({"GITHUB_APP_PRIVATE_KEY_PATH": str(key_file)}).private_key == PEM
    # the inline key wins; the file is not read then
    inline = load_settings({"GITHUB_APP_PRIVATE_KEY": PEM, "GITHUB_APP_PRIVATE_KEY_PATH": str(tmp_path / "absent")})
    assert inline.private_key == PEM
    assert error({"GITHUB_APP_PRIVATE_KEY_PATH": str(tmp_path / "absent")}) == (
        f"GITHUB_APP_PRIVATE_KEY_PATH={tmp_path / 'absent'}: cannot read it (No such file or directory)"
    )
    key_file.write_text("not a key\n")
    assert "GITHUB_APP_PRIVATE_KEY_PATH=" in error({"GITHUB_APP_PRIVATE_KEY_PATH": str(key_file)})
    assert "not a PEM key" in error({"GITHUB_APP_PRIVATE_KEY_PATH": str(key_file)})


@pytest.mark.parametrize(
    ("environ", "says"),
    [
        ({"LEMI_WORKERS": "-1"}, "LEMI_WORKERS='-1': input should be greater than or equal to 0"),
        ({"LEMI_WORKERS": "many"}, "LEMI_WORKERS='many': input should be a valid integer"),
        ({"PORT": "http"}, "PORT='http': input should be a valid integer"),
        ({"LEMI_LEASE_SECONDS": "0"}, "LEMI_LEASE_SECONDS='0': input should be greater than 0"),
        ({"LEMI_RETRY_DELAYS": "5,soon"}, "LEMI_RETRY_DELAYS='5,soon': write seconds separated by commas"),
        ({"LEMI_RETRY_DELAYS": " , "}, "LEMI_RETRY_DELAYS=' , ': write seconds separated by commas"),
        ({"LEMI_DEPLOY_POLL_SECONDS": "x"}, "LEMI_DEPLOY_POLL_SECONDS='x': input should be a valid number"),
        ({"GITHUB_API_URL": "ghe.acme.test"}, "GITHUB_API_URL='ghe.acme.test': must be an http(s) URL"),
        ({"LEMI_REDELIVER_INTERVAL_SECONDS": "-5"}, "LEMI_REDELIVER_INTERVAL_SECONDS='-5': input should be"),
    ],
)
def test_an_error_names_the_variable_and_how_to_fix_it(environ: dict[str, str], says: str) -> None:
    message = error(environ)
    assert message.startswith(says), message
    assert "\n" not in message and "pydantic" not in message and "validation error" not in message
    # ... and how to fix it: a value the message asks for, or the default to fall back on
    assert "e.g." in message or "(or unset it: the default is " in message, message


def test_every_bad_variable_is_named_in_one_line() -> None:
    message = error({"LEMI_WORKERS": "-1", "LEMI_LEASE_SECONDS": "0", "LEMI_REDELIVER_INTERVAL_SECONDS": "soon"})
    assert message.count("; ") == 2 and "\n" not in message
    assert "LEMI_WORKERS=" in message and "LEMI_LEASE_SECONDS=" in message
    assert "LEMI_REDELIVER_INTERVAL_SECONDS='soon'" in message and "the default is 300" in message


def test_secrets_stay_out_of_repr_and_errors() -> None:
    settings = load_settings({"GITHUB_APP_PRIVATE_KEY": PEM, "GITHUB_WEBHOOK_SECRET": "s3cr3t", "GITHUB_APP_ID": "1"})
    assert settings.has_app_credentials
    assert "MIIabc" not in repr(settings) and "s3cr3t" not in repr(settings) and "app_id='1'" in repr(settings)
    message = error({"GITHUB_APP_PRIVATE_KEY": "hunter2-not-a-key"})
    assert message.startswith("GITHUB_APP_PRIVATE_KEY: the GitHub App private key is not a PEM key")
    assert "hunter2" not in message and "GITHUB_APP_PRIVATE_KEY_PATH" in message  # the other way to set it
    token = CommandSettings.from_environment({"GH_AUTH_TOKEN": "ghp_secret"})
    assert token.gh_auth_token == "ghp_secret" and "ghp_secret" not in repr(token)


def test_the_app_needs_all_three_credentials() -> None:
    settings = load_settings({"GITHUB_APP_ID": "1", "GITHUB_WEBHOOK_SECRET": "s"})
    assert not settings.has_app_credentials
    with pytest.raises(SettingsError, match="missing GITHUB_APP_PRIVATE_KEY or GITHUB_APP_PRIVATE_KEY_PATH"):
        settings.require_app()


def test_locks_live_beside_an_sqlite_queue() -> None:
    assert load_settings({"LEMI_QUEUE": "sqlite:///var/q.db"}).locks_path == "var/q.db"
    assert load_settings({"LEMI_QUEUE": "sqs://sqs.us-east-1.amazonaws.com/1/q.fifo"}).locks_path == "lemi-locks.db"


def test_every_field_declares_its_variable_and_description() -> None:
    names = []
    for model in (Settings, CommandSettings):
        for field_name, info in model.model_fields.items():
            names.append(variable_name(info, field_name))
            assert info.description, field_name
    assert len(names) == len(set(names))  # each variable declared once
    assert {"GITHUB_APP_ID", "LEMI_QUEUE", "HOST", "GH_AUTH_TOKEN"} <= set(names)
    redeliver = Settings.model_fields["redeliver_interval_seconds"]
    assert (redeliver.default, environment_default(redeliver)) == (0.0, "300")
    assert [as_written(v) for v in (60.0, 2.5, (5.0, 30.0), "x")] == ["60", "2.5", "5,30", "x"]
    assert CommandSettings.from_environment({}).host == "127.0.0.1"
