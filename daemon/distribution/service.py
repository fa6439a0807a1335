"""The distribution service the API sees: pull, push and login, each done by its own part."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from daemon.distribution import inspect, search
from daemon.distribution.pull import Puller
from daemon.distribution.push import Pusher
from daemon.distribution.registries import RegistryClients


@dataclass
class DistributionService:
    puller: Puller
    pusher: Pusher
    registries: RegistryClients
    # Told how each pull ended (the metrics): True when it completed.
    on_pull: Callable[[bool], None] | None = None

    def pull(self, from_image: str, tag: str, platform: str, auth_header: str | None) -> AsyncIterator[dict]:
        stream = self.puller.pull(from_image, tag, platform, auth_header)
        return stream if self.on_pull is None else self._counted(stream, self.on_pull)

    @staticmethod
    async def _counted(stream: AsyncIterator[dict], on_pull: Callable[[bool], None]) -> AsyncIterator[dict]:
        ok = False
        try:
            async for rec in stream:
                yield rec
            ok = True
        finally:
            # An error, or the client gone before the end: not a completed pull.
            on_pull(ok)

    def push(self, name: str, tag: str, auth_header: str | None) -> AsyncIterator[dict]:
        return self.pusher.push(name, tag, auth_header)

    async def login(self, body: Any) -> dict:
        return await self.registries.login(body)

    async def inspect(self, name: str, auth_header: str | None) -> dict:
        return await inspect.inspect(self.registries, name, auth_header)

    async def search(self, term: str, limit: int | None, filters_raw: str | None, auth_header: str | None
                     ) -> list[dict]:
        return await search.search(self.registries, term, limit, filters_raw, auth_header)
