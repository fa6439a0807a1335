"""Path resolution inside a directory tree treated as '/' (like a chroot), never escaping it.

Resolution walks one component at a time with openat(O_NOFOLLOW) from directory fds: a symlink is
read and its target resolved again from the tree's root (absolute) or the current directory
(relative), and '..' never climbs above the root. Because every step holds an fd, a concurrent
rename or symlink swap inside the tree (a running container) cannot redirect the walk outside it.
"""

from __future__ import annotations

import errno
import os
import stat
from collections import deque
from collections.abc import Iterable
from pathlib import Path

MAX_SYMLINKS = 40  # the kernel's own limit for one lookup
_DIR_PATH_FLAGS = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def split(path: str | os.PathLike[str]) -> list[str]:
    """Components of `path`, without empty ones and '.' (a leading '/' means the same as none)."""
    return [c for c in os.fspath(path).split("/") if c not in ("", ".")]


def clean(parts: Iterable[str]) -> list[str] | None:
    """Lexically resolve '..' (like filepath.Clean); None if the result would climb above the start."""
    out: list[str] = []
    for c in parts:
        if c in ("", "."):
            continue
        if c == "..":
            if not out:
                return None
            out.pop()
        else:
            out.append(c)
    return out


class _Walk:
    """The directory reached so far (one fd) and its real components below the root.

    Only the current directory is held open, so depth costs no file descriptors; '..' walks down
    again from the root along the resolved components (they are real directories, not followed).
    """

    def __init__(self, root_fd: int) -> None:
        self.root_fd = root_fd  # borrowed
        self.fd = root_fd  # owned unless it is root_fd
        self.names: list[str] = []
        self.links = 0

    def _enter(self, fd: int, name: str) -> None:
        if self.fd != self.root_fd:
            os.close(self.fd)
        self.fd = fd
        self.names.append(name)

    def close(self) -> None:
        if self.fd != self.root_fd:
            os.close(self.fd)
        self.fd = self.root_fd
        self.names.clear()

    def up(self) -> None:
        path = self.names[:-1]
        self.close()
        for name in path:
            self._enter(os.open(name, _DIR_PATH_FLAGS, dir_fd=self.fd), name)

    def follow(self, name: str, pending: deque[str]) -> None:
        """Replace the symlink `name` (in the current dir) by its target's components."""
        self.links += 1
        if self.links > MAX_SYMLINKS:
            raise OSError(errno.ELOOP, "too many levels of symbolic links", name)
        target = os.readlink(name, dir_fd=self.fd)
        if target.startswith("/"):
            self.close()
        pending.extendleft(reversed(target.split("/")))

    def walk(self, pending: deque[str], *, create: bool, mode: int, lenient: bool) -> None:
        """Descend through `pending` as directories, following symlinks inside the root.

        create: make missing directories (with `mode`); lenient: stop at the first missing or
        non-directory component and leave it and the rest in `pending`; otherwise raise.
        """
        while pending:
            c = pending.popleft()
            if c in ("", "."):
                continue
            if c == "..":
                self.up()
                continue
            try:
                fd = os.open(c, _DIR_PATH_FLAGS, dir_fd=self.fd)
            except FileNotFoundError:
                if lenient:
                    pending.appendleft(c)
                    return
                if not create:
                    raise
                try:
                    os.mkdir(c, mode, dir_fd=self.fd)
                except FileExistsError:
                    pass  # created concurrently: look at it again
                pending.appendleft(c)
                continue
            except NotADirectoryError:
                st = os.stat(c, dir_fd=self.fd, follow_symlinks=False)
                if stat.S_ISLNK(st.st_mode):
                    self.follow(c, pending)
                    continue
                if lenient:
                    pending.appendleft(c)
                    return
                raise NotADirectoryError(errno.ENOTDIR, "not a directory", "/".join([*self.names, c])) from None
            self._enter(fd, c)


def open_dir(root_fd: int, parts: Iterable[str], *, create: bool = False, mode: int = 0o755) -> tuple[int, list[str]]:
    """Open the directory `parts` below `root_fd`, resolved as if `root_fd` were '/'.

    Returns an O_PATH fd (usable as dir_fd for *at calls; the caller closes it) and the resolved
    components. Missing directories are created with `mode` when `create`, else FileNotFoundError;
    a non-directory component gives NotADirectoryError, a symlink loop OSError(ELOOP).
    """
    w = _Walk(root_fd)
    try:
        w.walk(deque(parts), create=create, mode=mode, lenient=False)
        names = list(w.names)
        fd = os.dup(root_fd) if w.fd == root_fd else w.fd
        w.fd = root_fd  # handed over to the caller
    finally:
        w.close()
    return fd, names


def make_dirs(root: str | os.PathLike[str], path: str | os.PathLike[str], mode: int = 0o755) -> bool:
    """`mkdir -p path` inside `root`, symlinks resolved inside it; True when anything was created.

    The answer lets a caller tell "already there" (nothing to record) from a real change. A
    component that exists and is not a directory gives NotADirectoryError.
    """
    parts = split(path)
    root_fd = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        try:
            fd, _ = open_dir(root_fd, parts)
            created = False
        except FileNotFoundError:
            fd, _ = open_dir(root_fd, parts, create=True, mode=mode)
            created = True
        os.close(fd)
    finally:
        os.close(root_fd)
    return created


def resolve_in_root(root: str | os.PathLike[str], path: str | os.PathLike[str], *, follow_last: bool = True) -> Path:
    """The real path of `path` inside `root`, resolving symlinks as if `root` were '/'.

    Components that do not exist (and anything after a non-directory) are appended lexically, so
    the result may name something to be created; it is always `root` or below it. With
    follow_last=False a final symlink is not followed (like lstat). The answer holds at call time
    only: act on it with *at calls and O_NOFOLLOW if the tree can change concurrently.
    """
    root = Path(root)
    parts = split(path)
    last = parts.pop() if parts and not follow_last and parts[-1] != ".." else None
    root_fd = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    w = _Walk(root_fd)
    try:
        pending = deque(parts)
        while True:
            w.walk(pending, create=False, mode=0, lenient=True)
            # The walk stopped at a missing or non-directory component; a symlink to a
            # non-directory is still followed when it is the last component.
            if len(pending) == 1 and _is_symlink(pending[0], w.fd):
                w.follow(pending.popleft(), pending)
                continue
            break
        names = _join_clamped(w.names, pending)
    finally:
        w.close()
        os.close(root_fd)
    if last is not None:
        names = _join_clamped(names, [last])
    return root.joinpath(*names)


def _is_symlink(name: str, dir_fd: int) -> bool:
    try:
        return stat.S_ISLNK(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode)
    except FileNotFoundError:
        return False


def _join_clamped(base: Iterable[str], more: Iterable[str]) -> list[str]:
    """Append components lexically, '..' stopping at the root."""
    out = list(base)
    for c in more:
        if c in ("", "."):
            continue
        if c == "..":
            if out:
                out.pop()
        else:
            out.append(c)
    return out
