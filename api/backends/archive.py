"""What the archive router needs from the engine.

docker cp and docker export: /containers/{id}/archive and /containers/{id}/export.
"""

from __future__ import annotations

from typing import Protocol


class ArchiveBackend(Protocol):
    """Filled in as the router moves onto it: one method per engine call the handlers make."""
