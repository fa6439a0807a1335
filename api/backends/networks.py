"""What the networks router needs from the engine.

/networks/...: list, create, inspect, remove and prune go to the networks themselves
(NetworkBackend); connect and disconnect change a container's endpoints, which the
container side of networking owns (NetworkConnectBackend).
"""

from __future__ import annotations

from typing import Protocol


class NetworkBackend(Protocol):
    def list(self, filters_raw: str | None) -> list[dict]:
        """GET /networks: inspect shapes without their Containers."""
        ...

    async def create(self, body: dict) -> dict:
        """{"Id", "Warning"} of the created network."""
        ...

    def inspect(self, ref: str, containers: bool = True) -> dict: ...

    async def remove(self, ref: str) -> None: ...

    async def prune(self, filters_raw: str | None) -> dict:
        """{"NetworksDeleted": [...] or None}."""
        ...


class NetworkConnectBackend(Protocol):
    async def connect(self, ref: str, body: dict) -> None:
        """POST /networks/{ref}/connect with {"Container", "EndpointConfig"}."""
        ...

    async def disconnect(self, ref: str, body: dict) -> None:
        """POST /networks/{ref}/disconnect with {"Container", "Force"}."""
        ...
