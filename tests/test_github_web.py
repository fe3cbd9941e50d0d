"""The web side of the GitHub the App talks to, from GITHUB_API_URL (bot/core/github_web.py)."""

from __future__ import annotations

import pytest

from bot.core.github_web import commit_checks, repository_url, web_url

SHA = "0123456789abcdef0123456789abcdef01234567"


@pytest.mark.parametrize(
    ("api", "web"),
    [
        ("https://api.github.com", "https://github.com"),
        ("https://api.github.com/", "https://github.com"),
        ("https://ghes.example.com/api/v3", "https://ghes.example.com"),
        ("https://ghes.example.com:8443/api/v3/", "https://ghes.example.com:8443"),
        ("https://api.acme.ghe.com", "https://acme.ghe.com"),
    ],
)
def test_web_url_of_an_api(api: str, web: str) -> None:
    assert web_url(api) == web


def test_the_checks_of_the_commit_an_image_tag_names() -> None:
    repo = repository_url("https://ghes.example.com/api/v3", "acme/demo-service")
    assert repo == "https://ghes.example.com/acme/demo-service"
    assert commit_checks(repo, SHA) == f"https://ghes.example.com/acme/demo-service/commit/{SHA}/checks"
    assert commit_checks(repo + "/", SHA[:12]) == f"https://ghes.example.com/acme/demo-service/commit/{SHA[:12]}/checks"


@pytest.mark.parametrize("tag", ["v1", "latest", "release-2024", SHA.upper(), SHA + "0", "abc", "../../x"])
def test_a_tag_that_is_not_a_commit_sha_has_no_checks_link(tag: str) -> None:
    assert commit_checks("https://github.com/acme/demo-service", tag) is None
