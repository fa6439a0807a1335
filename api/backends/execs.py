"""What the execs router needs from the engine.

docker exec: /containers/{id}/exec and /exec/{id}/...
"""

from __future__ import annotations

from typing import Protocol


class ExecBackend(Protocol):
    """Filled in as the router moves onto it: one method per engine call the handlers make."""
