"""App authentication against the fake: JWT rules, cached installation tokens, refresh before expiry."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import jwt

from bot.github.auth import REFRESH_MARGIN, AppAuth
from bot.github.client import GitHub


def test_the_app_jwt_is_backdated_and_at_most_ten_minutes(github: Any) -> None:
    gh = GitHub(None, base_url=github.url, app_id=str(github.app_id), private_key=github.private_key_pem)  # type: ignore[arg-type]
    token = gh._get_app_jwt()  # what every App call sends
    assert token is not None
    claims = jwt.decode(token, github.public_key_pem, algorithms=["RS256"])
    now = time.time()
    assert claims["iss"] == str(github.app_id)
    assert now - 70 <= claims["iat"] <= now - 50
    assert claims["exp"] - claims["iat"] <= 600


async def test_installation_tokens_are_cached_and_refreshed_before_expiry(github: Any) -> None:
    installation = github.add_installation("acme", repos=["acme/demo-service"])
    github.token_ttl = REFRESH_MARGIN + 1.0  # usable for one more second, then refreshed
    async with aiohttp.ClientSession() as session:
        auth = AppAuth(session, app_id=str(github.app_id), private_key=github.private_key_pem, base_url=github.url)
        first = await auth.installation_token(installation)
        tokens = await asyncio.gather(*(auth.installation_token(installation) for _ in range(5)))
        assert set(tokens) == {first}
        assert len(github.calls_to("POST", f"/app/installations/{installation}/access_tokens")) == 1
        await asyncio.sleep(1.2)
        second = await auth.installation_token(installation)
        assert second != first
        assert len(github.calls_to("POST", f"/app/installations/{installation}/access_tokens")) == 2
        gh = await auth.for_repository("acme/demo-service")
        repo = await gh.getitem("/repos/acme/demo-service")
        assert repo["full_name"] == "acme/demo-service"
        assert len(github.calls_to("GET", "/repos/acme/demo-service/installation")) == 1


async def test_concurrent_jobs_fetch_one_token(github: Any) -> None:
    installation = github.add_installation("acme", repos=["acme/demo-service"])
    async with aiohttp.ClientSession() as session:
        auth = AppAuth(session, app_id=str(github.app_id), private_key=github.private_key_pem, base_url=github.url)
        await asyncio.gather(*(auth.for_installation(installation) for _ in range(10)))
    assert len(github.calls_to("POST", f"/app/installations/{installation}/access_tokens")) == 1
