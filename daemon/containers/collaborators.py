"""What the container lifecycle needs from the image, network and volume subsystems.

ContainerService is written against these Protocols, not against ImageService,
NetworkService or VolumeService: the composition root (daemon/engine.py) hands in the real ones, unit tests
hand in fakes. Docker's JSON still appears here (create requests, inspect shapes): this is
the engine's side of the edge; runtime/ and network/ below it see typed values only.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Protocol

from daemon.containers.container import Container
from daemon.images.service import Image


class ImageLayers(Protocol):
    def lowers(self, chain_id: str) -> list[Path]:
        """The layer directories under a rootfs, top first."""
        ...


class ContainerImages(Protocol):
    """Images as containers use them: found by reference at create, their layers under the rootfs."""

    images: Mapping[str, Image]  # by id
    layers: ImageLayers

    def find(self, ref: str) -> Image | None: ...

    def display_name(self, image_id: str, given: str) -> str:
        """The IMAGE column of `docker ps`: the name given if it still means this image."""
        ...

    async def release_layers(self, top_chain: str) -> None:
        """A removed container's layers whose image is gone: those nothing else uses go."""
        ...


class ContainerNetworking(Protocol):
    """A container's side of networking: validated at create, set up at start, torn down at exit."""

    def check_mode(self, requested: dict, host_config: dict) -> list[str]:
        """The network mode's conflicts in a create request (raises); returns warnings."""
        ...

    def endpoints_for_create(self, config: dict, host_config: dict, networking: dict | None) -> dict:
        """The container's NetworkSettings.Networks at create (not yet connected: no address)."""
        ...

    async def setup(self, c: Container) -> tuple[str | None, list[str]]:
        """Connects a starting container, all or nothing: (netns path or None, --link environment)."""
        ...

    async def ready(self, c: Container) -> None:
        """Waits until what setup() left in progress is done (before the command runs); raises
        DaemonError when it failed."""
        ...

    async def teardown(self, c: Container) -> None:
        """Disconnects an exiting container; safe to call twice."""
        ...

    def extra_hosts(self, c: Container) -> list[tuple[str, str]]:
        """--add-host entries as (name, address), host-gateway resolved."""
        ...

    def ipv6_enabled(self, c: Container) -> bool: ...

    def uses_internal_dns(self, c: Container) -> bool:
        """Whether names are answered by the embedded resolver at 127.0.0.11 (user networks)."""
        ...

    def settings(self, c: Container) -> dict:
        """NetworkSettings of `docker inspect`."""
        ...

    def summary_ports(self, c: Container) -> list[dict]:
        """Ports of `docker ps`."""
        ...

    def public_networks(self, c: Container) -> dict:
        """NetworkSettings.Networks of `docker ps`."""
        ...

    async def renamed(self, c: Container, old_name: str) -> None:
        """Peers resolve the container by its new name from now on."""
        ...

    async def links_changed(self, c: Container) -> None:
        """c's links were edited: its hosts file and names follow (while it runs)."""
        ...


class ContainerVolumes(Protocol):
    """A container's volumes: created with it, mounted while it runs, removed with it on request."""

    async def attach(self, points: list[dict]) -> None:
        """Create: names anonymous volumes and creates the missing ones."""
        ...

    async def remove_anonymous(self, names: list[str]) -> None: ...

    def source(self, mp: dict) -> str:
        """The host path a mount point binds."""
        ...

    def spec_mounts(self, points: list[dict], rootfs: Path) -> list[dict]:
        """Start (blocking): the runtime's bind mounts, volumes mounted and filled from the image."""
        ...

    def release(self, points: list[dict]) -> None:
        """Exit (blocking): unmounts device volumes no running container uses now."""
        ...


class ContainerHealth(Protocol):
    """Healthcheck probes (daemon/containers/health.py's HealthMonitor), told when a container
    starts, is found running at daemon start, stops or pauses."""

    def started(self, c: Container) -> None:
        """Health starting, probes from now on (nothing without a healthcheck)."""
        ...

    def resumed(self, c: Container) -> None:
        """Probes go on from the recorded health (daemon start, unpause)."""
        ...

    async def stopped(self, c: Container) -> None:
        """Probes end, a running one killed; health unhealthy."""
        ...

    async def shutdown(self) -> None: ...
