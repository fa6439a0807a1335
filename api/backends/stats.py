"""What the stats router needs from the engine.

docker stats: /containers/{id}/stats.
"""

from __future__ import annotations

from typing import Protocol


class StatsBackend(Protocol):
    """Filled in as the router moves onto it: one method per engine call the handlers make."""
