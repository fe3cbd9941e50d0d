"""AWS clients per environment: one base aiobotocore session per process,
clients per (environment, service), optional AssumeRole per environment
with cached credentials that refresh themselves before they expire.

The standard AWS variables and credential chain apply, ``AWS_ENDPOINT_URL``
included (botocore reads it), which is how the tests point every client at
moto on loopback.

A client's calls raise lemi's exceptions, never botocore's: the SDK retries
throttling and transient errors itself (standard mode, bounded); what still
fails leaves the call as :class:`~bot.aws.errors.AwsUnavailable` (it may pass)
or :class:`~bot.aws.errors.AwsRefused` (bot/aws/errors.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import urllib.parse
from collections.abc import Awaitable, Callable
from typing import Any

from aiobotocore.config import AioConfig
from aiobotocore.credentials import (
    AioAssumeRoleCredentialFetcher,
    AioDeferredRefreshableCredentials,
)
from aiobotocore.session import AioSession, get_session
from botocore.credentials import CredentialProvider

from bot.aws.errors import translate
from bot.aws.lookups import SharedLookups
from bot.core.config import Config, Environment

# bounded retries in AWS's adaptive mode: the standard retries (throttling and transient errors)
# plus a client-side rate that backs off when AWS throttles, so a push that starts the rollouts
# of many services at once slows to what ECS accepts instead of failing
# max_pool_connections: one client per (environment, AWS service) serves every deploy of the
# process at once (up to LEMI_BACKGROUND_JOBS, 64 by default); botocore's default of 10
# connections would make the 11th concurrent call wait for a free one
CLIENT_CONFIG = AioConfig(
    retries={"mode": "adaptive", "max_attempts": 8},
    connect_timeout=5,
    read_timeout=30,
    user_agent_extra="lemi",
    max_pool_connections=64,
)
ROLE_SESSION_NAME = "lemi"

CallHook = Callable[[str, str], None]


class _AssumeRoleProvider(CredentialProvider):
    """Credentials from AssumeRole on top of the base session's, refreshed before expiry."""

    METHOD = "lemi-assume-role"
    CANONICAL_NAME = "lemi-assume-role"

    def __init__(self, base: AioSession, role_arn: str, region: str) -> None:
        super().__init__()
        self._base = base
        self._role_arn = role_arn
        self._region = region  # STS of the environment's region: the base session may have none

    async def load(self) -> AioDeferredRefreshableCredentials:
        source = await self._base.get_credentials()
        fetcher = AioAssumeRoleCredentialFetcher(
            client_creator=functools.partial(self._base.create_client, region_name=self._region),  # type: ignore[arg-type]  # the stubs expect botocore's sync one
            source_credentials=source,
            role_arn=self._role_arn,
            extra_args={"RoleSessionName": ROLE_SESSION_NAME},
        )
        return AioDeferredRefreshableCredentials(refresh_using=fetcher.fetch_credentials, method=self.METHOD)


class Client:
    """An aiobotocore client whose API calls raise lemi's exceptions (:func:`bot.aws.errors.translate`).

    Every API method (``await ecs.describe_services(...)``) is wrapped; anything else (``meta``,
    ``get_paginator``, ``get_waiter``) is the client's own, so a paginator's or a waiter's
    errors are botocore's: call the API methods instead."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self._operations: dict[str, str] = client.meta.method_to_api_mapping

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._client, name)
        if name not in self._operations:
            return attribute
        return _translating(attribute, urllib.parse.urlsplit(self._client.meta.endpoint_url).netloc)


def _translating(call: Callable[..., Awaitable[Any]], host: str) -> Callable[..., Awaitable[Any]]:
    @functools.wraps(call)
    async def translated(*args: Any, **kwargs: Any) -> Any:
        try:
            return await call(*args, **kwargs)
        except Exception as exc:
            error = translate(exc, host)
            if error is None:
                raise
            raise error from exc

    return translated


class AwsClients:
    """Open clients for the environments of lemi.yml; close them with :meth:`close`.

    Use as ``async with AwsClients(config) as aws: ecs = await aws.client("staging", "ecs")``.
    Clients are created once and reused for the life of the object (deploys that ask for one at
    the same moment wait for the same client), with their connection pools.
    ``lookups``: what the deploys of this object share (bot/aws/lookups.py).
    """

    def __init__(self, config: Config, session: AioSession | None = None) -> None:
        self.config = config
        self._base = session or get_session()
        self._role_sessions: dict[str, AioSession] = {}
        self._clients: dict[tuple[str, str], Any] = {}
        self._creating: dict[tuple[str, str], asyncio.Lock] = {}
        self.lookups = SharedLookups()
        self._stack = contextlib.AsyncExitStack()
        self._hooks: list[CallHook] = []

    async def __aenter__(self) -> AwsClients:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._stack.aclose()
        self._clients.clear()

    def on_call(self, hook: CallHook) -> None:
        """Call ``hook(service, operation)`` before every AWS API call (used for the IAM policy test)."""
        self._hooks.append(hook)

    def environment(self, env_name: str) -> Environment:
        return self.config.environment(env_name)

    def _session_for(self, env: Environment) -> AioSession:
        if env.role_arn is None:
            return self._base
        if env.role_arn not in self._role_sessions:
            session = get_session()
            resolver = session.get_component("credential_provider")
            resolver.insert_before("env", _AssumeRoleProvider(self._base, env.role_arn, env.region))
            self._role_sessions[env.role_arn] = session
        return self._role_sessions[env.role_arn]

    async def client(self, env_name: str, service: str) -> Any:
        key = (env_name, service)
        client = self._clients.get(key)
        if client is not None:
            return client
        async with self._creating.setdefault(key, asyncio.Lock()):  # one client, however many ask at once
            if key not in self._clients:
                self._clients[key] = await self._create(env_name, service)
        return self._clients[key]

    async def _create(self, env_name: str, service: str) -> Client:
        env = self.environment(env_name)
        session = self._session_for(env)
        try:
            client = await self._stack.enter_async_context(
                session.create_client(service, region_name=env.region, config=CLIENT_CONFIG)  # type: ignore[call-overload]  # the service is chosen at run time
            )
        except Exception as exc:  # no region, an unreadable profile, ...
            error = translate(exc)
            if error is None:
                raise
            raise error from exc
        client.meta.events.register("before-call.*.*", self._before_call)
        return Client(client)

    def _before_call(self, model: Any, **kwargs: Any) -> None:
        for hook in self._hooks:
            hook(model.service_model.service_name, model.name)
