"""`lemi config pull`: lemi.yml from the infra repository's root into the user's configuration
directory, validated before it is written; commands then find it after ./lemi.yml. Against the
GitHub fake (every request checked against GitHub's OpenAPI description)."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest
from app_harness import LEMI_YML

from bot.cli import gh_token, main

TOKEN = "ghp_configpulltoken"


@pytest.fixture
def dev(github: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A developer's machine: an empty working directory, a home of its own, no lemi.yml, no gh,
    a personal token in GH_TOKEN; acme/infra holds lemi.yml at its root. Returns the home."""
    installation = github.add_installation("acme", repos=())
    github.add_repo("acme/infra", files={"lemi.yml": LEMI_YML, "README.md": "infra\n"}, installation=installation)
    github.add_user_token(TOKEN, "octocat")
    home = tmp_path / "home"
    work = tmp_path / "work"
    empty_path = tmp_path / "bin"
    for folder in (home, work, empty_path):
        folder.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("PATH", str(empty_path))  # no gh
    for name in (
        "LEMI_CONFIG",
        "LEMI_DEBUG",
        "XDG_CONFIG_HOME",
        "GH_CONFIG_DIR",
        "GITHUB_TOKEN",
        "GH_AUTH_TOKEN",
        "LEMI_INFRA_REPOSITORY",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("GH_TOKEN", TOKEN)
    monkeypatch.setenv("GITHUB_API_URL", github.url)
    monkeypatch.chdir(work)
    return home


def pulled(home: Path) -> Path:
    return home / ".config" / "lemi" / "lemi.yml"


def test_pull_writes_the_infra_repositorys_file_and_commands_find_it(
    github: Any, dev: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["config", "check"]) == 1
    err = capsys.readouterr().err
    assert "lemi.yml not found" in err and "lemi config pull --from OWNER/INFRA" in err

    assert main(["config", "pull", "--from", "acme/infra"]) == 0
    out = capsys.readouterr().out
    assert pulled(dev).read_text() == LEMI_YML
    assert str(pulled(dev)) in out and "acme/infra:lemi.yml" in out
    reads = github.calls_to("GET", "/repos/acme/infra/contents/lemi.yml")
    assert len(reads) == 1 and reads[0].login == "octocat" and not reads[0].query.get("ref")

    assert main(["config", "check"]) == 0  # no ./lemi.yml: the pulled one
    assert "infra repository acme/infra" in capsys.readouterr().out


def test_a_lemi_yml_in_the_working_directory_comes_first(
    github: Any, dev: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["config", "pull", "--from", "acme/infra"]) == 0
    assert "note:" not in capsys.readouterr().err
    Path("lemi.yml").write_text(LEMI_YML.replace("domain: lemon", "domain: example.com"))
    assert main(["config", "pull", "--from", "acme/infra"]) == 0
    assert "note: commands run here read lemi.yml first" in capsys.readouterr().err
    assert main(["config", "check", "--output", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["config"]["domain"] == "example.com"


def test_xdg_config_home_and_lemi_infra_repository(
    github: Any, dev: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("LEMI_INFRA_REPOSITORY", "acme/infra")
    assert main(["config", "pull", "--output", "json"]) == 0
    result = json.loads(capsys.readouterr().out)
    target = tmp_path / "xdg" / "lemi" / "lemi.yml"
    assert result["ok"] and result["written"] == str(target) and result["repository"] == "acme/infra"
    assert target.read_text() == LEMI_YML and stat.S_IMODE(target.stat().st_mode) == 0o644
    assert not pulled(dev).exists()
    assert main(["config", "check"]) == 0


def test_an_invalid_file_is_reported_by_line_and_not_written(
    github: Any, dev: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["config", "pull", "--from", "acme/infra"]) == 0
    github.commit("acme/infra", "main", {"lemi.yml": LEMI_YML.replace("region: us-east-1", "region: mars", 1)})
    capsys.readouterr()
    assert main(["config", "pull", "--from", "acme/infra"]) == 1
    err = capsys.readouterr().err
    assert "acme/infra:lemi.yml is not valid; nothing was written" in err
    assert "acme/infra:lemi.yml:9:13: environments.staging.region" in err and "'mars' is not a valid AWS region" in err
    assert pulled(dev).read_text() == LEMI_YML  # the earlier copy stays
    assert [p.name for p in pulled(dev).parent.iterdir()] == ["lemi.yml"]  # no temporary file left

    assert main(["config", "pull", "--from", "acme/infra", "--output", "json"]) == 1
    result = json.loads(capsys.readouterr().out)
    assert result["ok"] is False and result["written"] is None
    assert result["problems"][0]["line"] == 9


def test_no_such_file_or_repository(github: Any, dev: Path, capsys: pytest.CaptureFixture[str]) -> None:
    github.add_repo("acme/empty-infra", files={"README.md": "x\n"})
    for repository in ("acme/empty-infra", "acme/nowhere"):
        assert main(["config", "pull", "--from", repository]) == 1
        err = capsys.readouterr().err
        assert f"{repository} has no lemi.yml at the root of its default branch" in err
        assert "Traceback" not in err
    assert not pulled(dev).exists()


def test_which_repository_and_which_token_are_usage_errors(
    github: Any, dev: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["config", "pull"]) == 2
    assert "pass --from OWNER/INFRA or set LEMI_INFRA_REPOSITORY" in capsys.readouterr().err
    assert main(["config", "pull", "--from", "acme"]) == 2
    assert "write it as OWNER/NAME" in capsys.readouterr().err
    monkeypatch.delenv("GH_TOKEN")
    assert main(["config", "pull", "--from", "acme/infra"]) == 2
    err = capsys.readouterr().err
    assert "set GH_TOKEN (or GITHUB_TOKEN, GH_AUTH_TOKEN)" in err and "gh auth login" in err
    assert not github.calls


def test_a_token_github_refuses(github: Any, dev: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    monkeypatch.setenv("GH_TOKEN", "ghp_notatoken")
    assert main(["config", "pull", "--from", "acme/infra"]) == 1
    err = capsys.readouterr().err
    assert "GitHub answered 401" in err and "ghp_notatoken" not in err
    assert not pulled(dev).exists()


# --- where the token comes from ---------------------------------------------------------------


def test_token_order_gh_token_github_token_gh_auth_token(dev: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GITHUB_TOKEN", "second")
    monkeypatch.setenv("GH_AUTH_TOKEN", "third")
    assert gh_token.token("https://api.github.com") == TOKEN
    monkeypatch.delenv("GH_TOKEN")
    assert gh_token.token("https://api.github.com") == "second"
    monkeypatch.delenv("GITHUB_TOKEN")
    assert gh_token.token("https://api.github.com") == "third"
    monkeypatch.delenv("GH_AUTH_TOKEN")
    assert gh_token.token("https://api.github.com") is None


def test_gh_auth_token_when_gh_is_installed(
    github: Any, dev: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("GH_TOKEN")
    asked = tmp_path / "asked"
    gh = tmp_path / "bin" / "gh"
    gh.write_text(f'#!/bin/sh\necho "$@" > {asked}\necho {TOKEN}\n')
    gh.chmod(0o755)
    assert main(["config", "pull", "--from", "acme/infra"]) == 0
    host = github.url.split("//", 1)[1].split(":", 1)[0]
    assert asked.read_text().split() == ["auth", "token", "--hostname", host]
    assert pulled(dev).read_text() == LEMI_YML


def test_gh_hosts_file_when_gh_is_not_installed(
    github: Any, dev: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GH_TOKEN")
    host = github.url.split("//", 1)[1].split(":", 1)[0]
    hosts = dev / ".config" / "gh" / "hosts.yml"
    hosts.parent.mkdir(parents=True)
    hosts.write_text(f"{host}:\n    user: octocat\n    oauth_token: {TOKEN}\n    git_protocol: https\n")
    assert main(["config", "pull", "--from", "acme/infra"]) == 0
    assert pulled(dev).read_text() == LEMI_YML
    monkeypatch.setenv("GH_CONFIG_DIR", str(tmp_path / "elsewhere"))
    assert gh_token.token(github.url) is None


def test_web_host_of_the_api_url() -> None:
    assert gh_token.web_host("https://api.github.com") == "github.com"
    assert gh_token.web_host("https://ghe.example.com/api/v3") == "ghe.example.com"


def test_the_cli_refuses_a_github_lemi_config_with_what_to_do(
    dev: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("LEMI_CONFIG", "github://acme/infra/lemi.yml")
    assert main(["config", "check"]) == 1
    err = capsys.readouterr().err
    assert "read through GitHub" in err and "lemi config pull --from OWNER/INFRA" in err
    assert os.environ["LEMI_CONFIG"] == "github://acme/infra/lemi.yml"
