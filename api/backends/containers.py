"""What the containers router needs from the engine.

Container lifecycle and views: /containers/... (create, start, stop, kill, remove, wait,
logs, list, inspect, top, changes, rename, resize, pause, prune) and attach.
"""

from __future__ import annotations

from typing import Protocol


class ContainerBackend(Protocol):
    """Filled in as the router moves onto it: one method per engine call the handlers make."""
