"""What the networks router needs from the engine.

/networks/...: list, create, inspect, remove, prune, connect, disconnect.
"""

from __future__ import annotations

from typing import Protocol


class NetworkBackend(Protocol):
    """Filled in as the router moves onto it: one method per engine call the handlers make."""
