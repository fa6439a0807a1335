"""What the distribution router needs from the engine.

Images between the engine and registries: pull (/images/create?fromImage), push, /auth.
"""

from __future__ import annotations

from typing import Protocol


class DistributionBackend(Protocol):
    """Filled in as the router moves onto it: one method per engine call the handlers make."""
