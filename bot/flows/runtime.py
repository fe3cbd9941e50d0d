"""What a handler and a flow get besides their event: configuration, stores and clients.

A Protocol, so the layers below the server never import it: ``bot.server.context.Context``
is the one implementation, opened once in the server's lifespan.
"""

from __future__ import annotations

from typing import Any, Protocol

from bot.aws.clients import AwsClients
from bot.core.config import Config
from bot.core.settings import Settings
from bot.github.auth import AppAuth
from bot.github.client import GitHub
from bot.github.owners import Owners
from bot.store.locks import Locks
from bot.store.queue import Queue
from bot.store.watches import Watches


class Runtime(Protocol):
    config: Config
    settings: Settings
    auth: AppAuth
    queue: Queue
    locks: Locks
    watches: Watches

    def wake_watcher(self) -> None:
        """A watch was added or changed: the watcher of this process looks at once."""
        ...

    @property
    def owners(self) -> Owners:
        """Who owns a service (one reader per process: its conditional-request cache is shared)."""
        ...

    async def github(self, event_data: dict[str, Any]) -> GitHub:
        """The installation client of the repository an event came from."""
        ...

    async def github_for_installation(self, installation: int | None, repository: str) -> GitHub: ...

    async def github_for_repo(self, repository: str) -> GitHub: ...

    async def config_pushed(self, repository: str, ref: str, default_branch: str | None) -> None:
        """A push reached the workers: lemi.yml is read again if it lives on that branch."""
        ...

    def aws(self) -> AwsClients:
        """The AWS clients of lemi.yml's environments, made once."""
        ...
