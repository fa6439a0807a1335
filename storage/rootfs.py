"""Per-container root filesystems (the snapshotter): the driver interface and its factory.

Drivers: "overlay2" (overlayfs, copy-on-write over the shared layers) and "vfs" (a full copy per
container, for hosts where overlayfs cannot be used, e.g. a data root that is itself on overlayfs).
Each keeps its files under <root>/<container-id>/ and touches nothing else there, so the daemon may
keep its own per-container files in the same directory.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from .overlay import OverlayDriver
from .vfs import VfsDriver

DRIVERS = ("overlay2", "vfs")


class RootfsDriver(Protocol):
    name: str  # shown by `docker info` as the storage driver
    root: Path  # holds <root>/<container-id>/ (as a real path: what mountinfo shows)

    def create(self, container_id: str, lowers: list[Path]) -> None:
        """Prepare the container's filesystem over `lowers` (topmost first). FileExistsError if
        it was created already; a create interrupted by a crash can simply be retried."""

    def mount(self, container_id: str, lowers: list[Path]) -> Path:
        """Make the rootfs available and return its path; idempotent."""

    def unmount(self, container_id: str) -> None:
        """Idempotent; a busy mount is detached rather than left behind."""

    def is_mounted(self, container_id: str) -> bool: ...

    def remove(self, container_id: str) -> None:
        """Unmount and delete everything the driver created for the container; idempotent."""

    def changes(self, container_id: str, lowers: list[Path]) -> list[tuple[str, int]]:
        """`docker diff`: (path, kind) sorted by path, kind 0 modified, 1 added, 2 deleted."""

    def size_rw(self, container_id: str) -> int:
        """Bytes the container wrote (SizeRw)."""


def make_driver(name: str, root: Path) -> RootfsDriver:
    """The driver called `name` keeping its files under `root`.

    ValueError for an unknown name; DriverUnavailable if it cannot work here (overlay2 mounts a
    probe overlay under `root` to find out, and which mount API the kernel offers).
    """
    if name == "overlay2":
        return OverlayDriver.probe(Path(root))
    if name == "vfs":
        return VfsDriver(Path(root))
    raise ValueError(f"unknown storage driver {name!r} (supported: {', '.join(DRIVERS)})")
