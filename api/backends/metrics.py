"""What the HTTP layer reports to the metrics (daemon/metrics/metrics.py's Metrics)."""

from __future__ import annotations

from typing import Protocol


class RequestObserver(Protocol):
    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        """One finished request: its route template (not its path), status and duration."""
