"""What the images router needs from the engine.

Local images: /images/... (import, list, inspect, tag, remove, history, prune, save, load) and /commit.
"""

from __future__ import annotations

from typing import Protocol


class ImageBackend(Protocol):
    """Filled in as the router moves onto it: one method per engine call the handlers make."""
