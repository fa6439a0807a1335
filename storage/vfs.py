"""The vfs rootfs driver: each container gets a full copy of its image (no mounts at all).

<root>/<id>/merged      the container's rootfs; its presence means "created"
<root>/<id>/vfs-lowers  the layer dirs it was copied from (SizeRw compares against them)
"""

from __future__ import annotations

import json
from pathlib import Path

from .changes import paths_size, tree_changes
from .containerdirs import ContainerDirs
from .rmtree import remove_tree
from .treecopy import copy_layers

_ENTRIES = ("merged", "vfs-lowers", ".tmp-merged")


class VfsDriver:
    name = "vfs"

    def __init__(self, root: Path) -> None:
        self._dirs = ContainerDirs(root)
        self.root = self._dirs.root

    def _merged(self, container_id: str) -> Path:
        return self._dirs.dir(container_id) / "merged"

    def create(self, container_id: str, lowers: list[Path]) -> None:
        d = self._dirs.dir(container_id)
        merged = d / "merged"
        if merged.exists():
            raise FileExistsError(f"container filesystem already exists: {container_id}")
        d.mkdir(mode=0o710, exist_ok=True)
        (d / "vfs-lowers").write_text(json.dumps([str(p) for p in lowers]))
        # Copied under a temporary name and renamed: a crash mid-copy leaves no half rootfs.
        tmp = d / ".tmp-merged"
        remove_tree(tmp)
        tmp.mkdir(mode=0o755)
        copy_layers(lowers, tmp)
        tmp.rename(merged)

    def mount(self, container_id: str, lowers: list[Path]) -> Path:
        merged = self._merged(container_id)
        if not merged.is_dir():
            raise FileNotFoundError(f"no filesystem for container {container_id}: create it first")
        return merged

    def unmount(self, container_id: str) -> None:
        self._dirs.dir(container_id)  # nothing is mounted; only check the id

    def is_mounted(self, container_id: str) -> bool:
        return self._merged(container_id).is_dir()

    def remove(self, container_id: str) -> None:
        self._dirs.remove_entries(container_id, _ENTRIES)

    def changes(self, container_id: str, lowers: list[Path]) -> list[tuple[str, int]]:
        return tree_changes(self._merged(container_id), lowers)

    def size_rw(self, container_id: str) -> int:
        d = self._dirs.dir(container_id)
        try:
            lowers = [Path(p) for p in json.loads((d / "vfs-lowers").read_text())]
        except FileNotFoundError:
            return 0
        return paths_size(d / "merged", self.changes(container_id, lowers))
