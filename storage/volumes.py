"""The "local" volume driver: `<root>/<name>/_data` directories, optionally backed by a mount.

A plain volume is just its `_data` directory. A volume created with `-o type=… -o device=… -o o=…`
(e.g. type=tmpfs) is mounted on `_data` while a container uses it, as dockerd's local driver does,
so its content lives as long as it is in use. The metadata (labels, options) belongs to the
daemon's store, not to this module.
"""

from __future__ import annotations

import errno
import os
import re
import stat
import subprocess
from pathlib import Path

from .mounts import is_mount_point, unmount
from .rmtree import remove_tree

NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]+$")
# The -o keys dockerd's local driver accepts.
MOUNT_OPTS = ("type", "device", "o", "size")


class VolumeDriverError(Exception):
    """Bad driver options, or a mount that failed: the message is meant for the API client."""


def validate_options(opts: dict[str, str]) -> None:
    for key in opts:
        if key not in MOUNT_OPTS:
            raise VolumeDriverError(f"invalid option: {key!r}")
    if opts and ("type" in opts) != ("device" in opts):
        raise VolumeDriverError(
            'missing required option: "type"' if "device" in opts else 'missing required option: "device"'
        )
    if "size" in opts and opts.get("type") not in ("tmpfs", None):
        raise VolumeDriverError("quota size requested but no quota support")


class LocalDriver:
    name = "local"

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        os.chmod(root, 0o701)  # like dockerd: others may traverse to a bind source, not list names

    def data_path(self, name: str) -> Path:
        if not NAME_RE.match(name):
            raise ValueError(f"invalid volume name {name!r}")
        return self.root / name / "_data"

    def create(self, name: str) -> Path:
        data = self.data_path(name)
        data.parent.mkdir(mode=0o701, exist_ok=True)
        try:
            data.mkdir(mode=0o755)
        except FileExistsError:
            pass
        return data

    def remove(self, name: str) -> None:
        data = self.data_path(name)
        self.unmount(name)
        # Never delete through a mount that is still there (unmount failed half-way).
        if is_mount_point(data):
            raise OSError(errno.EBUSY, "volume is still mounted", str(data))
        remove_tree(data.parent)

    def needs_mount(self, opts: dict[str, str] | None) -> bool:
        return bool(opts and opts.get("type"))

    def mount(self, name: str, opts: dict[str, str]) -> None:
        """Mount the volume's device on `_data` if it is not mounted yet."""
        data = self.data_path(name)
        if is_mount_point(data):
            return
        mount_opts = opts.get("o", "")
        if opts.get("size") and opts.get("type") == "tmpfs":
            mount_opts = ",".join(filter(None, [mount_opts, f"size={opts['size']}"]))
        argv = ["mount", "-t", opts["type"]]
        if mount_opts:
            argv += ["-o", mount_opts]
        argv += ["--", opts["device"], str(data)]
        proc = subprocess.run(argv, capture_output=True, text=True)
        if proc.returncode != 0:
            raise VolumeDriverError(
                f"error while mounting volume '{data}': failed to mount local volume: "
                f"{proc.stderr.strip() or 'mount failed'}"
            )

    def unmount(self, name: str) -> None:
        unmount(self.data_path(name))

    def is_mounted(self, name: str) -> bool:
        return is_mount_point(self.data_path(name))

    def size(self, name: str) -> int:
        """Bytes used by the volume's files (UsageData.Size); hard links counted once."""
        total = 0
        seen: set[tuple[int, int]] = set()
        for dirpath, dirnames, filenames in os.walk(self.data_path(name)):
            for n in filenames + dirnames:
                try:
                    st = os.lstat(os.path.join(dirpath, n))
                except OSError:
                    continue
                if (st.st_dev, st.st_ino) in seen:
                    continue
                seen.add((st.st_dev, st.st_ino))
                total += 0 if stat.S_ISDIR(st.st_mode) else st.st_size
        return total

    def exists(self, name: str) -> bool:
        return os.path.lexists(self.data_path(name).parent)

    def names(self) -> list[str]:
        try:
            return [p.name for p in self.root.iterdir() if NAME_RE.match(p.name)]
        except FileNotFoundError:
            return []
