"""What the stats router needs from the engine.

docker stats: /containers/{id}/stats.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol


class StatsBackend(Protocol):
    def stream(self, ref: str, stream: bool, one_shot: bool) -> AsyncIterator[dict]:
        """Stats documents: one, or one a second while `stream`."""
        ...
