"""Finding a container path on the host: the rootfs with the container's volumes and binds on it.

Resolution goes one component at a time, as the kernel would inside the container: a component
that is a mount destination continues in that mount's host directory, a symlink is read and its
target resolved again from the container's root (absolute) or the current directory (relative),
'..' never climbs above the container's root. Every look-up is made relative to a directory fd
opened by storage.rootpath's walk inside one root (the rootfs or a mount's source), so whatever
the container does with its files meanwhile, nothing outside those roots is ever reached.
"""

from __future__ import annotations

import errno
import os
import stat
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from storage.rootpath import MAX_SYMLINKS, open_dir, split

_ROOT_FLAGS = os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC


@dataclass
class Mount:
    destination: str  # clean absolute path in the container
    source: Path  # host directory (or file, for a file bind)
    point: dict  # the container's mount point (daemon.mounts), e.g. for RW

    @property
    def parts(self) -> list[str]:
        return split(self.destination)


@dataclass
class Located:
    """What a container path names: the entry `rel` (components) below the host directory `root`."""

    root: Path
    rel: list[str]
    cpath: str  # the resolved container path (no symlinks in it)
    mount: Mount | None

    def open_parent(self) -> tuple[int, int]:
        """(root fd, O_PATH fd of the parent directory), both to be closed by the caller."""
        root_fd = os.open(self.root, _ROOT_FLAGS)
        try:
            parent, _ = open_dir(root_fd, self.rel[:-1])
        except BaseException:
            os.close(root_fd)
            raise
        return root_fd, parent


def locate(rootfs: Path, mounts: list[Mount], path: str, *, follow_last: bool) -> Located:
    """Resolve `path` in the container; missing components are kept as they are (the result may
    name something to create). follow_last=False: a final symlink is not followed (lstat)."""
    pending = deque(split(path))
    names: list[str] = []
    links = 0
    while pending:
        c = pending.popleft()
        if c in ("", "."):
            continue
        if c == "..":
            if names:
                names.pop()
            continue
        candidate = [*names, c]
        try:
            target = _readlink(rootfs, mounts, candidate)
        except (FileNotFoundError, NotADirectoryError):
            names = _join_lexically(candidate, pending)
            break
        last = all(p in ("", ".") for p in pending)
        if target is None or (last and not follow_last):
            names = candidate
            continue
        links += 1
        if links > MAX_SYMLINKS:
            raise OSError(errno.ELOOP, "too many levels of symbolic links", path)
        if target.startswith("/"):
            names = []
        pending.extendleft(reversed(target.split("/")))
    root, rel, mount = _where(rootfs, mounts, names)
    return Located(root, rel, "/" + "/".join(names), mount)


def _where(rootfs: Path, mounts: list[Mount], names: list[str]) -> tuple[Path, list[str], Mount | None]:
    """The host directory holding the container path `names` (real components), and the rest."""
    best: Mount | None = None
    for m in mounts:
        parts = m.parts
        if names[: len(parts)] == parts and (best is None or len(parts) > len(best.parts)):
            best = m
    if best is None:
        return rootfs, names, None
    rel = names[len(best.parts):]
    if not best.source.is_dir():  # a file bind-mounted on its own
        if rel:
            raise NotADirectoryError(errno.ENOTDIR, "not a directory", best.destination)
        return best.source.parent, [best.source.name], best
    return best.source, rel, best


def _readlink(rootfs: Path, mounts: list[Mount], names: list[str]) -> str | None:
    """The target if `names` is a symlink, None if it is anything else; FileNotFoundError if missing."""
    root, rel, _ = _where(rootfs, mounts, names)
    if not rel:
        return None  # a root (rootfs or a mount's source) is a directory
    root_fd = os.open(root, _ROOT_FLAGS)
    try:
        parent, _ = open_dir(root_fd, rel[:-1])
        try:
            st = os.stat(rel[-1], dir_fd=parent, follow_symlinks=False)
            return os.readlink(rel[-1], dir_fd=parent) if stat.S_ISLNK(st.st_mode) else None
        finally:
            os.close(parent)
    finally:
        os.close(root_fd)


def _join_lexically(base: list[str], more: deque[str]) -> list[str]:
    out = list(base)
    for c in more:
        if c == "..":
            if out:
                out.pop()
        elif c not in ("", "."):
            out.append(c)
    return out
