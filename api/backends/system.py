"""What the system router needs from the engine.

/version, /info, /events, /system/df, /debug/vars.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol


class SystemBackend(Protocol):
    def version(self, api_version: str, min_version: str) -> dict: ...

    def info(self) -> dict: ...

    def events_stream(self, filters_raw: str | None, since: str, until: str) -> AsyncIterator[dict]:
        """The matching events; a bad filter or time raises here, before the response starts."""

    async def disk_usage(self) -> dict:
        """The /system/df document."""

    def debug_vars(self) -> dict:
        """The /debug/vars document: memory, event-loop lag."""
