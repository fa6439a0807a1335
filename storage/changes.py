"""`docker diff` and SizeRw: what a container changed relative to its image layers.

Both drivers compare a top tree against the merged view of the lowers (see union):
- overlay: the top is the upper dir, which holds only what changed (sparse): a whiteout is a
  deletion, any non-directory present is a modification or an addition, and lower entries not in
  the upper dir are untouched unless the directory is opaque (it replaced the lower one);
- vfs: the top is a full copy, so anything missing was deleted and entries are compared by stat.
Like dockerd, every directory above a change is reported as modified, directories are compared
without their size, and a deleted directory is reported once, without its contents.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from pathlib import Path

from .union import Entry, children, root_dirs
from .whiteout import is_opaque, is_whiteout

MODIFIED = 0
ADDED = 1
DELETED = 2


def overlay_changes(upper: Path, lowers: list[Path]) -> list[tuple[str, int]]:
    found: dict[str, int] = {}
    _compare(os.fspath(upper), "", root_dirs(lowers), sparse=True, complete=is_opaque(os.fspath(upper)), out=found)
    return _with_parents(found)


def tree_changes(top: Path, lowers: list[Path]) -> list[tuple[str, int]]:
    found: dict[str, int] = {}
    _compare(os.fspath(top), "", root_dirs(lowers), sparse=False, complete=True, out=found)
    return _with_parents(found)


def _compare(top: str, rel: str, lower_dirs: list[str], *, sparse: bool, complete: bool, out: dict[str, int]) -> None:
    """complete: `top` lists the whole directory (lower entries missing from it are deleted)."""
    lower = children(lower_dirs) if lower_dirs else {}
    with os.scandir(top) as it:
        entries = list(it)
    present: set[str] = set()
    for e in entries:
        path = f"{rel}/{e.name}"
        st = e.stat(follow_symlinks=False)
        lo = lower.get(e.name)
        present.add(e.name)
        if sparse and is_whiteout(st):
            if lo is not None:
                out[path] = DELETED
            continue
        if lo is None:
            out[path] = ADDED
        elif stat.S_IFMT(lo.st.st_mode) != stat.S_IFMT(st.st_mode) or _differs(lo, st, sparse):
            out[path] = MODIFIED
        if stat.S_ISDIR(st.st_mode):
            merged = lo is not None and lo.is_dir
            _compare(
                e.path,
                path,
                list(lo.dirs) if merged and lo is not None else [],
                sparse=sparse,
                complete=not sparse or complete or is_opaque(e.path),
                out=out,
            )
    if complete:
        for name in lower.keys() - present:
            out[f"{rel}/{name}"] = DELETED


def _differs(lo: Entry, st: os.stat_result, sparse: bool) -> bool:
    old = lo.st
    if not stat.S_ISDIR(st.st_mode):
        # In an upper dir a non-directory exists only because it was written or copied up.
        if sparse:
            return True
        if old.st_size != st.st_size or old.st_rdev != st.st_rdev:
            return True
    return (
        old.st_mode != st.st_mode
        or old.st_uid != st.st_uid
        or old.st_gid != st.st_gid
        or old.st_mtime_ns != st.st_mtime_ns
    )


def _with_parents(found: dict[str, int]) -> list[tuple[str, int]]:
    for path in list(found):
        parent = path.rpartition("/")[0]
        while parent and parent not in found:
            found[parent] = MODIFIED
            parent = parent.rpartition("/")[0]
    return sorted(found.items())


def tree_size(top: Path) -> int:
    """Bytes in a tree's non-directories (whiteouts are 0), each hardlinked inode counted once."""
    total = 0
    seen: set[tuple[int, int]] = set()
    for dirpath, _dirs, files in os.walk(top):
        for name in files:
            total += _count(os.lstat(os.path.join(dirpath, name)), seen)
    return total


def paths_size(top: Path, changes: Iterable[tuple[str, int]]) -> int:
    """Bytes of the added or modified non-directories among `changes`, found under `top`."""
    total = 0
    seen: set[tuple[int, int]] = set()
    for path, kind in changes:
        if kind == DELETED:
            continue
        try:
            st = os.lstat(os.fspath(top) + path)
        except FileNotFoundError:
            continue
        if not stat.S_ISDIR(st.st_mode):
            total += _count(st, seen)
    return total


def _count(st: os.stat_result, seen: set[tuple[int, int]]) -> int:
    if st.st_nlink > 1:
        key = (st.st_dev, st.st_ino)
        if key in seen:
            return 0
        seen.add(key)
    return st.st_size
