"""What the builder needs from the rest of the engine, as Protocols: the image store, the
container lifecycle, a stopped container's rootfs, the layer of a container's changes, and
pulls. The engine's services satisfy them (wired in daemon/engine.py)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Protocol

from daemon.images.service import Image
from storage.layers import Layer


class BuildImages(Protocol):
    images: dict[str, Image]

    def find(self, name: str) -> Image | None: ...

    async def register(self, config: dict, chain_ids: list[str], size: int, tags: list[str],
                       repo_digests: list[str] | None = None, raw: bytes | None = None,
                       parent: str = "") -> Image: ...

    async def tag(self, name: str, repo: str, tag: str | None) -> str: ...

    async def remove(self, name: str, force: bool = False, prune: bool = True) -> list[dict]: ...


class BuildContainers(Protocol):
    async def create(self, body: dict, name: str | None) -> dict: ...

    async def start(self, ref: str) -> None: ...

    async def wait_future(self, ref: str, condition: str) -> asyncio.Future: ...

    def logs(self, ref: str, *, follow: bool, tail: str, since: str, until: str, stdout: bool,
             stderr: bool) -> tuple[Any, AsyncIterator[dict]]: ...

    async def remove(self, ref: str, force: bool = False, volumes: bool = False) -> None: ...

    def get(self, ref: str) -> Any: ...


class ContainerRootfs(Protocol):
    """A container's rootfs, mounted for COPY (the container is never started)."""

    def mount(self, c: Any) -> Path: ...

    def unmount_quietly(self, c: Any) -> None: ...


class ContainerLayers(Protocol):
    async def container_layer(self, cid: str, parent: str | None) -> Layer:
        """The layer of the container's changes, in the layer store."""


class Pulls(Protocol):
    def pull(self, from_image: str, tag: str, platform: str, auth_header: str | None) -> AsyncIterator[dict]: ...
