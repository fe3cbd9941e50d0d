"""What a handler gets besides its event: configuration and clients, opened once."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from bot.aws.clients import AwsClients
from bot.core.config import Config
from bot.core.settings import Settings
from bot.github.auth import AppAuth
from bot.github.client import GitHub
from bot.github.owners import Owners
from bot.github.schedule import Limits
from bot.server.metrics import Metrics
from bot.server.remote_config import RemoteConfig
from bot.store.backends import open_watches
from bot.store.locks import Locks
from bot.store.queue import Queue
from bot.store.watches import Watches


@dataclass
class Context:
    config: Config
    settings: Settings
    auth: AppAuth
    queue: Queue
    locks: Locks
    metrics: Metrics = field(default_factory=Metrics)
    watches: Watches = field(default=None)  # type: ignore[assignment]  # set in __post_init__ when not given
    watch_added: asyncio.Event = field(default_factory=asyncio.Event)
    remote_config: RemoteConfig | None = None  # lemi.yml read through GitHub, read again while running
    _aws: AwsClients | None = None
    _owners: Owners | None = None
    _retired_aws: list[AwsClients] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.watches is None:
            self.watches = open_watches(self.settings.queue_url, self.settings.locks_path)
        # the installation clients of this process share one writer per installation (AppAuth);
        # here they get the budget the settings give (bot/github/writer.py)
        self.auth.writers.use(Limits(self.settings.github_writes_per_minute, self.settings.github_writes_per_hour))

    def wake_watcher(self) -> None:
        self.watch_added.set()

    async def github(self, event_data: dict[str, Any]) -> GitHub:
        """The installation client of the repository an event came from."""
        installation = (event_data.get("installation") or {}).get("id")
        return await self.github_for_installation(installation, event_data["repository"]["full_name"])

    async def github_for_installation(self, installation: int | None, repository: str) -> GitHub:
        if installation is None:
            return await self.auth.for_repository(repository)
        return await self.auth.for_installation(int(installation))

    async def github_for_repo(self, repository: str) -> GitHub:
        return await self.auth.for_repository(repository)

    @property
    def owners(self) -> Owners:
        """Who owns a service (bot/ownership.py), read from the infra repository with the
        App's installation there; one per process, so its conditional-request cache is shared."""
        if self._owners is None:
            infra = self.config.infra.repository
            self._owners = Owners(self.config, infra=lambda: self.github_for_repo(infra), installed=self.auth.installed)
        return self._owners

    def use_config(self, config: Config) -> None:
        """A new lemi.yml (bot/server/remote_config.py), for every job that starts from now on: the
        owners' reader and the AWS clients are made again from it when next asked for (clients in
        use by running jobs stay open until the process stops)."""
        self.config = config
        self._owners = None
        if self._aws is not None:
            self._retired_aws.append(self._aws)
            self._aws = None

    async def config_pushed(self, repository: str, ref: str, default_branch: str | None) -> None:
        """A push: when it is to the default branch of the repository lemi.yml is read from, read
        it again now (a conditional request: an untouched file costs a 304)."""
        remote = self.remote_config
        if remote is None or not default_branch or ref != f"refs/heads/{default_branch}":
            return
        if repository.casefold() == remote.source.repository.casefold():
            await remote.refresh()

    def aws(self) -> AwsClients:
        if self._aws is None:
            self._aws = AwsClients(self.config)
        return self._aws

    async def close(self) -> None:
        for aws in [*self._retired_aws, *([self._aws] if self._aws is not None else [])]:
            await aws.close()
        await self.locks.close()
        await self.watches.close()
