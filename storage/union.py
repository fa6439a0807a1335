"""Overlayfs' merge rules computed in userspace, over layer dirs listed topmost first.

Used where no overlay is mounted: the copying (vfs) driver builds a rootfs from it, and diffs
compare a container's files against it. The rules are the kernel's: the topmost entry of a name
wins; a 0/0 character device (whiteout) hides the name in the layers below; a directory merges
with directories of the same name below it until a layer has a non-directory there or the
directory is opaque (trusted.overlay.opaque=y).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from .whiteout import is_opaque, is_whiteout


@dataclass(frozen=True)
class Entry:
    path: str  # where the visible entry lives (in the layer that provides it)
    st: os.stat_result  # its lstat
    dirs: tuple[str, ...]  # for a directory, the layer dirs merged at this name, topmost first

    @property
    def is_dir(self) -> bool:
        return stat.S_ISDIR(self.st.st_mode)


def root_dirs(lowers: Sequence[str | os.PathLike[str]]) -> list[str]:
    """The layer roots that take part in the merged root (a layer's root can be opaque too)."""
    out = []
    for lower in lowers:
        out.append(os.fspath(lower))
        if is_opaque(out[-1]):
            break
    return out


def children(dirs: Sequence[str]) -> dict[str, Entry]:
    """The visible entries of the merged directory made of `dirs` (topmost first), by name."""
    listings: list[dict[str, os.DirEntry[str]]] = []
    for d in dirs:
        with os.scandir(d) as it:
            listings.append({e.name: e for e in it})
    out: dict[str, Entry] = {}
    seen: set[str] = set()
    for listing in listings:
        for name in listing:
            if name in seen:
                continue
            seen.add(name)
            entry = _merge(name, listings)
            if entry is not None:
                out[name] = entry
    return out


def _merge(name: str, listings: list[dict[str, os.DirEntry[str]]]) -> Entry | None:
    top: os.DirEntry[str] | None = None
    top_st: os.stat_result | None = None
    merged: list[str] = []
    for listing in listings:
        e = listing.get(name)
        if e is None:
            continue
        st = e.stat(follow_symlinks=False)
        if top is None:
            if is_whiteout(st):
                return None
            top, top_st = e, st
        if not stat.S_ISDIR(st.st_mode):
            break  # a file or whiteout below a directory hides everything under it
        merged.append(e.path)
        if is_opaque(e.path):
            break
    assert top is not None and top_st is not None
    return Entry(path=top.path, st=top_st, dirs=tuple(merged))


def walk(lowers: Sequence[str | os.PathLike[str]]) -> Iterator[tuple[str, Entry]]:
    """Every visible entry of the merged tree as (relative path, entry), parents before children,
    names sorted."""
    stack: list[tuple[str, Iterator[tuple[str, Entry]]]] = [("", iter(sorted(children(root_dirs(lowers)).items())))]
    while stack:
        rel, it = stack[-1]
        item = next(it, None)
        if item is None:
            stack.pop()
            continue
        name, entry = item
        path = f"{rel}/{name}" if rel else name
        yield path, entry
        if entry.is_dir:
            stack.append((path, iter(sorted(children(entry.dirs).items()))))
