"""Materialise the merged view of a stack of layers as a plain directory tree (the vfs driver).

Everything is kept: modes, owners, times (to the nanosecond, so that diffs can compare them),
xattrs except overlayfs' own, symlinks, device nodes, fifos and hardlinks within the image. The
destination is a fresh private directory, so plain paths are safe here.
"""

from __future__ import annotations

import os
import shutil
import stat
from collections.abc import Sequence
from pathlib import Path

from . import union
from .fsmeta import read_xattrs, write_xattrs


def copy_layers(lowers: Sequence[Path], dest: Path) -> None:
    """Fill the existing empty directory `dest` with the merged content of `lowers` (topmost first)."""
    dest_s = os.fspath(dest)
    if lowers:
        _meta(os.fspath(lowers[0]), dest_s, os.lstat(lowers[0]))
    links: dict[tuple[int, int], str] = {}
    dirs: list[tuple[str, os.stat_result]] = []
    for rel, entry in union.walk(lowers):
        target = f"{dest_s}/{rel}"
        st = entry.st
        mode = st.st_mode
        if stat.S_ISDIR(mode):
            os.mkdir(target, 0o700)
            dirs.append((target, st))
            _meta(entry.path, target, st, times=False)
            continue
        key = (st.st_dev, st.st_ino)
        first = links.get(key) if st.st_nlink > 1 else None
        if first is not None:
            os.link(first, target, follow_symlinks=False)
            continue
        if stat.S_ISREG(mode):
            shutil.copyfile(entry.path, target, follow_symlinks=False)
        elif stat.S_ISLNK(mode):
            os.symlink(os.readlink(entry.path), target)
        else:
            os.mknod(target, stat.S_IFMT(mode) | 0o600, st.st_rdev)
        _meta(entry.path, target, st)
        if st.st_nlink > 1:
            links[key] = target
    # Last, and deepest first: creating entries in a directory changes its mtime.
    for target, st in reversed(dirs):
        os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)
    if lowers:
        st = os.lstat(lowers[0])
        os.utime(dest_s, ns=(st.st_atime_ns, st.st_mtime_ns))


def _meta(src: str, dst: str, st: os.stat_result, *, times: bool = True) -> None:
    # Owner before mode and xattrs: chown clears setuid bits and file capabilities.
    os.chown(dst, st.st_uid, st.st_gid, follow_symlinks=False)
    if not stat.S_ISLNK(st.st_mode):
        os.chmod(dst, stat.S_IMODE(st.st_mode))
    write_xattrs(dst, read_xattrs(src))
    if times:
        os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)
