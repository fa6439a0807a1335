"""What the volumes router needs from the engine.

/volumes/...: list, create, inspect, remove, prune.
"""

from __future__ import annotations

from typing import Protocol


class VolumeBackend(Protocol):
    """Filled in as the router moves onto it: one method per engine call the handlers make."""
