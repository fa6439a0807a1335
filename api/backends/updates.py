"""What the update route needs from the engine: POST /containers/{id}/update."""

from __future__ import annotations

from typing import Any, Protocol


class UpdateBackend(Protocol):
    async def update(self, ref: str, body: Any) -> dict:
        """Checks and applies an update request (the API version's adjustments made);
        returns {"Warnings": [...]}."""
        ...
