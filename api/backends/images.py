"""What the images router needs from the engine.

Local images: /images/... (import, list, inspect, tag, remove, history, prune), their archives
(save, load), and /commit.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from daemon.images.service import Image


class ImageBackend(Protocol):
    async def import_image(self, body: AsyncIterator[bytes] | None, src: str, repo: str, tag: str,
                           changes: list[str], message: str, platform_: str = "") -> Image:
        """docker import: from the upload (body) or a URL (src)."""

    def list(self, all_: bool, filters_raw: str | None, digests: bool = False) -> list[dict]: ...

    def inspect(self, name: str) -> dict: ...

    def history(self, name: str) -> list[dict]: ...

    async def tag(self, name: str, repo: str, tag: str | None) -> str: ...

    async def remove(self, name: str, force: bool = False, prune: bool = True) -> list[dict]:
        """The Untagged/Deleted records of docker rmi."""

    async def prune(self, filters_raw: str | None) -> dict: ...


class ImageArchiveBackend(Protocol):
    def save(self, names: list[str]) -> AsyncIterator[bytes]:
        """The tar of the named images; an unknown name fails here, before the first byte."""

    def load(self, body: AsyncIterator[bytes]) -> AsyncIterator[dict]:
        """Reads the uploaded archive; yields the `Loaded image...` records."""


class CommitBackend(Protocol):
    async def commit(self, container: str, repo: str, tag: str, comment: str, author: str,
                     changes: list[str], body: Any, pause: bool = True) -> str:
        """The new image's id."""
