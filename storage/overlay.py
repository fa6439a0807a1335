"""The overlay2 rootfs driver: overlayfs with the image layers as lowerdirs (copy-on-write).

<root>/<id>/upper   the container's writes (and whiteouts); its presence means "created"
<root>/<id>/work    overlayfs' work dir (same filesystem as upper)
<root>/<id>/merged  the mount point
A container writes only to its own upper dir: layers are read-only lowers shared by everyone.
"""

from __future__ import annotations

import os
import tempfile
import threading
from pathlib import Path

from . import mounts
from .changes import overlay_changes, tree_size
from .containerdirs import ContainerDirs
from .errors import DriverUnavailable
from .rmtree import remove_tree

_ENTRIES = ("merged", "upper", "work", "lower-empty", ".tmp-upper")
_PROBE_PREFIX = ".probe-"  # never a container id: those start with a letter or digit
_PARAMS = Path("/sys/module/overlay/parameters")
# Features that make an upper dir depend on more than its own files (redirects to lower paths,
# metadata-only copy-ups, origin indexes): diffs and layer tars read upper dirs file by file, so
# they stay off, as dockerd's overlay2 also requires for its fast diff.
_OFF_WHEN_ENABLED = ("redirect_dir", "metacopy", "index")


def _mount_options() -> dict[str, str]:
    options = {}
    for feature in _OFF_WHEN_ENABLED:
        try:
            value = (_PARAMS / feature).read_text().strip()
        except OSError:
            continue  # this kernel has no such feature
        if value not in ("N", "off"):
            options[feature] = "off"
    return options


class OverlayDriver:
    name = "overlay2"

    def __init__(self, root: Path, *, api: str = mounts.API_FSCONFIG) -> None:
        self._dirs = ContainerDirs(root)
        self.root = self._dirs.root
        self.api = api
        self._options = _mount_options()
        self._lock = threading.Lock()  # mount/unmount of one merged dir must not interleave

    @classmethod
    def probe(cls, root: Path) -> OverlayDriver:
        """A driver for `root` using the best mount API that works, or DriverUnavailable."""
        root.mkdir(parents=True, exist_ok=True)
        for stale in root.glob(f"{_PROBE_PREFIX}*"):  # left by a crash during a probe
            mounts.unmount(stale / "merged")
            remove_tree(stale)
        options = _mount_options()
        errors = []
        for api in (mounts.API_FSCONFIG, mounts.API_LEGACY):
            try:
                _probe_mount(root, api, options)
            except OSError as e:
                errors.append(f"{api}: {e}")
                continue
            return cls(root, api=api)
        raise DriverUnavailable(f"overlayfs is not usable under {root}: {'; '.join(errors)}")

    def _paths(self, container_id: str) -> tuple[Path, Path, Path, Path]:
        d = self._dirs.dir(container_id)
        return d, d / "upper", d / "work", d / "merged"

    def create(self, container_id: str, lowers: list[Path]) -> None:
        d, upper, work, merged = self._paths(container_id)
        if upper.exists():
            raise FileExistsError(f"container filesystem already exists: {container_id}")
        d.mkdir(mode=0o710, exist_ok=True)
        work.mkdir(mode=0o700, exist_ok=True)
        merged.mkdir(mode=0o755, exist_ok=True)
        if not lowers:
            (d / "lower-empty").mkdir(mode=0o755, exist_ok=True)
        # upper appears last, by rename, so a crash mid-create leaves something create() redoes.
        tmp = d / ".tmp-upper"
        remove_tree(tmp)
        tmp.mkdir(mode=0o755)
        if lowers:
            # The merged root takes the upper root's attributes: give it the image root's.
            st = os.stat(lowers[0])
            os.chown(tmp, st.st_uid, st.st_gid)
            os.chmod(tmp, st.st_mode & 0o7777)
        os.rename(tmp, upper)

    def mount(self, container_id: str, lowers: list[Path]) -> Path:
        d, upper, work, merged = self._paths(container_id)
        with self._lock:
            # A mounted overlay is a device of its own: two stat calls, where reading and
            # parsing all of mountinfo took 0.3-0.5 ms of every start (more with every
            # running container's mounts in it).
            if os.path.ismount(merged):
                return merged
            if not upper.is_dir():
                raise FileNotFoundError(f"no filesystem for container {container_id}: create it first")
            mounts.mount_overlay(
                merged, lowers or [d / "lower-empty"], upper, work, options=self._options, api=self.api
            )
        return merged

    def unmount(self, container_id: str) -> None:
        _, _, _, merged = self._paths(container_id)
        with self._lock:
            mounts.unmount(merged)

    def is_mounted(self, container_id: str) -> bool:
        return mounts.is_mount_point(self._paths(container_id)[3])

    def remove(self, container_id: str) -> None:
        self.unmount(container_id)
        self._dirs.remove_entries(container_id, _ENTRIES)

    def changes(self, container_id: str, lowers: list[Path]) -> list[tuple[str, int]]:
        return overlay_changes(self._paths(container_id)[1], lowers)

    def size_rw(self, container_id: str) -> int:
        return tree_size(self._paths(container_id)[1])


def _probe_mount(root: Path, api: str, options: dict[str, str]) -> None:
    """Mount and unmount a tiny overlay under `root`: proves overlayfs works on this filesystem."""
    probe = Path(tempfile.mkdtemp(prefix=_PROBE_PREFIX, dir=root))
    try:
        for name in ("lower", "upper", "work", "merged"):
            (probe / name).mkdir()
        (probe / "lower" / "file").write_bytes(b"")
        mounts.mount_overlay(
            probe / "merged", [probe / "lower"], probe / "upper", probe / "work", options=options, api=api
        )
        try:
            if not (probe / "merged" / "file").exists():
                raise OSError("overlay mounted but does not show its lower layer")
        finally:
            mounts.unmount(probe / "merged")
    finally:
        remove_tree(probe)
