"""Swarm mode as pydockerd has it: never. Every Swarm operation answers as dockerd does on a
node that is not part of a swarm (daemon/cluster in moby), so clients that probe for Swarm
(docker-py's network tests leave a swarm in their teardown, Portainer, `docker node ls`) get
the 503 and message they handle, not a 404 they take for a broken daemon."""

from __future__ import annotations

from daemon.errors import Unavailable

# moby daemon/cluster: errNoManager for a node without a swarm, errNoSwarm for leave.
NOT_A_MANAGER = ('This node is not a swarm manager. Use "docker swarm init" or "docker swarm join" '
                 "to connect this node to swarm and try again.")
NOT_PART_OF_SWARM = "This node is not part of a swarm"
# moby api/server/router/volume: PUT /volumes/{name} updates cluster volumes only.
NO_CLUSTER_VOLUMES = "volume update only valid for cluster volumes, but swarm is unavailable"
NOT_SUPPORTED = "pydockerd does not support swarm mode: this node cannot init or join a swarm"


class NoSwarm:
    """The cluster of a node outside any swarm: every call raises dockerd's error for that."""

    def manager_action(self) -> None:
        """Anything that needs a manager: inspect, update, unlock, nodes, services, tasks, secrets, configs."""
        raise Unavailable(NOT_A_MANAGER)

    def leave(self) -> None:
        raise Unavailable(NOT_PART_OF_SWARM)

    def join(self) -> None:
        """init and join: dockerd would make this node a swarm member; pydockerd cannot."""
        raise Unavailable(NOT_SUPPORTED)

    def update_volume(self) -> None:
        raise Unavailable(NO_CLUSTER_VOLUMES)
