"""The per-container directory of a rootfs driver: <root>/<id>/, with validated ids."""

from __future__ import annotations

import os
import re
from pathlib import Path

from .rmtree import remove_tree

# Container ids are 64 hex digits; names of the same shape are accepted so tests can be readable,
# but nothing that could climb out of the root or hide among temporaries.
_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")


class ContainerDirs:
    def __init__(self, root: Path) -> None:
        self.root = Path(os.path.realpath(root))
        self.root.mkdir(parents=True, exist_ok=True)

    def dir(self, container_id: str) -> Path:
        if not isinstance(container_id, str) or not _ID_RE.fullmatch(container_id):
            raise ValueError(f"invalid container id: {container_id!r}")
        return self.root / container_id

    def remove_entries(self, container_id: str, names: tuple[str, ...]) -> None:
        """Delete the driver's own entries, then the container dir if that left it empty (the
        daemon may keep other files there)."""
        d = self.dir(container_id)
        for name in names:
            remove_tree(d / name)
        try:
            d.rmdir()
        except OSError:
            pass  # not empty (the daemon's files), or already gone
