"""What the distribution routes need from the engine.

Images between the engine and registries: pull (/images/create?fromImage), push, /auth.
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
