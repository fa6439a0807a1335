"""What the system router needs from the engine.

/version, /info, /events, /system/df.
"""

from __future__ import annotations

from typing import Protocol


class SystemBackend(Protocol):
    """Filled in as the router moves onto it: one method per engine call the handlers make."""
