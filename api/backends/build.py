"""What the build router needs from the engine: /build (the classic builder) and /build/prune."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Protocol


class BuildBackend(Protocol):
    def build(self, query: Mapping[str, str], tags: Sequence[str], extra_hosts: Sequence[str],
              body: AsyncIterator[bytes] | None, registry_config: str | None = None) -> AsyncIterator[dict]:
        """The progress records; errors before the first one are the request's errors."""
        ...

    async def prune(self, filters_raw: str | None, all_: bool) -> dict:
        """CachesDeleted and SpaceReclaimed of docker builder prune."""
        ...
