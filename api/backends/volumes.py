"""What the volumes router needs from the engine.

/volumes/...: list, create, inspect, remove, prune.
"""

from __future__ import annotations

from typing import Any, Protocol


class VolumeBackend(Protocol):
    def list(self, filters_raw: str | None) -> dict:
        """{"Volumes": [...], "Warnings": [...]}"""

    async def create(self, body: Any) -> dict: ...

    def inspect(self, name: str) -> dict: ...

    async def remove(self, name: str, force: bool = False) -> None: ...

    async def prune(self, filters_raw: str | None, all_by_default: bool = False) -> dict:
        """all_by_default: remove named volumes too unless the `all` filter says otherwise (API < 1.42)."""
