"""What the archive router needs from the engine.

docker cp and docker export: /containers/{id}/archive and /containers/{id}/export.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol


class ArchiveBackend(Protocol):
    async def stat(self, ref: str, path: str) -> dict:
        """The path's stat as the X-Docker-Container-Path-Stat header carries it."""
        ...

    async def get(self, ref: str, path: str) -> tuple[dict, AsyncIterator[bytes]]:
        """The path's stat and a tar stream of it."""
        ...

    async def put(self, ref: str, path: str, body: AsyncIterator[bytes], *, no_overwrite_dir_nondir: bool,
                  copy_uid_gid: bool) -> None: ...

    async def export(self, ref: str) -> AsyncIterator[bytes]:
        """The container's filesystem as a tar stream."""
        ...
