"""What the distribution routes need from the engine.

Images between the engine and registries: pull (/images/create?fromImage), push, /auth,
/distribution/{name}/json and /images/search.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Protocol


class DistributionBackend(Protocol):
    def pull(self, from_image: str, tag: str, platform: str, auth_header: str | None) -> AsyncIterator[dict]:
        """The progress records of the pull; errors before the first one are plain API errors."""

    def push(self, name: str, tag: str, auth_header: str | None) -> AsyncIterator[dict]:
        """The progress records of the push."""

    async def login(self, body: Any) -> dict:
        """The credentials of /auth checked against their registry."""

    async def inspect(self, name: str, auth_header: str | None) -> dict:
        """GET /distribution/{name}/json: {"Descriptor": ..., "Platforms": [...]} from the registry."""

    async def search(self, term: str, limit: int | None, filters_raw: str | None, auth_header: str | None
                     ) -> list[dict]:
        """GET /images/search in the registry the term names."""
