"""What the swarm router needs from the engine: /swarm, /nodes, /services, /tasks, /secrets,
/configs, and the cluster-volume update (PUT /volumes/{name})."""

from __future__ import annotations

from typing import Protocol


class SwarmBackend(Protocol):
    def manager_action(self) -> None:
        """Raises unless this node is a swarm manager (it never is)."""

    def leave(self) -> None: ...

    def join(self) -> None:
        """swarm init and join."""

    def update_volume(self) -> None: ...
