"""Deleting directory trees of any depth, never following a symlink.

shutil.rmtree recurses (a layer with a few thousand nested directories raises RecursionError) and
its fd-based variant holds one fd per level. This walk is iterative, holds at most _WINDOW fds
(shallower levels are reopened from the start, without following symlinks, when it climbs back),
and opens every directory with O_NOFOLLOW relative to its parent, so a tree that changes while it
is deleted (a running container's) cannot lead it outside. It never deletes through a mount point
(a volume, a mounted rootfs): it refuses with EBUSY before starting.
"""

from __future__ import annotations

import errno
import os
import stat

from .fsmeta import proc_path
from .mounts import mount_points

_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_WINDOW = 32


def remove_tree(path: str | os.PathLike[str]) -> None:
    """Delete `path` (a directory tree, or anything else); a missing path is fine."""
    parent, name = os.path.split(os.fspath(path).rstrip("/"))
    try:
        pfd = os.open(parent or ".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except FileNotFoundError:
        return
    try:
        remove_at(pfd, name)
    finally:
        os.close(pfd)


def remove_at(dir_fd: int, name: str) -> None:
    """Delete the entry `name` of the directory `dir_fd`, recursively; a missing entry is fine."""
    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(st.st_mode):
        _unlink(dir_fd, name)
        return
    _refuse_mount_points(f"{os.readlink(proc_path(dir_fd))}/{name}")
    _Remover(dir_fd, name).run()


def _refuse_mount_points(top: str) -> None:
    # A bind mount of the same filesystem has the same st_dev: only the mount table tells.
    for mp in map(str, mount_points()):
        if mp == top or mp.startswith(top + "/"):
            raise OSError(errno.EBUSY, "a mount point is in the way", mp)


def _unlink(dir_fd: int, name: str) -> None:
    try:
        os.unlink(name, dir_fd=dir_fd)
    except FileNotFoundError:
        pass


class _Remover:
    def __init__(self, top_fd: int, name: str) -> None:
        self.top_fd = top_fd
        self.names = [name]  # path from top_fd to the current directory
        self.fds: list[int | None] = [os.open(name, _DIR, dir_fd=top_fd)]
        self.dev = os.fstat(self.fds[0]).st_dev  # type: ignore[arg-type]

    def _fd(self, level: int) -> int:
        """fd of the directory at `level` (-1: top_fd). A closed level is reopened from the
        nearest open one above it, keeping the last _WINDOW levels open on the way down, so
        that climbing a deep tree costs depth²/_WINDOW opens rather than depth²."""
        if level < 0:
            return self.top_fd
        fd = self.fds[level]
        if fd is not None:
            return fd
        anchor = level
        while anchor >= 0 and self.fds[anchor] is None:
            anchor -= 1
        fd = self.fds[anchor] if anchor >= 0 else self.top_fd
        for i in range(anchor + 1, level + 1):
            fd = os.open(self.names[i], _DIR, dir_fd=fd)
            self.fds[i] = fd
            self._trim(i)
        assert fd is not None
        return fd

    def _trim(self, level: int) -> None:
        """Close the level _WINDOW above `level`, which was just opened."""
        old = level - _WINDOW
        if old >= 0:
            fd = self.fds[old]
            if fd is not None:
                os.close(fd)
                self.fds[old] = None

    def run(self) -> None:
        try:
            while self.names:
                cur = self._fd(len(self.names) - 1)
                sub = self._empty_files(cur)
                if sub is None:
                    os.close(cur)
                    self.fds.pop()
                    done = self.names.pop()
                    try:
                        os.rmdir(done, dir_fd=self._fd(len(self.names) - 1))
                    except FileNotFoundError:
                        pass
                    continue
                try:
                    fd = os.open(sub, _DIR, dir_fd=cur)
                except OSError as e:
                    if e.errno not in (errno.ENOTDIR, errno.ELOOP, errno.ENOENT):
                        raise
                    _unlink(cur, sub)  # no longer a directory (swapped concurrently)
                    continue
                self.names.append(sub)
                self.fds.append(fd)
                self._trim(len(self.fds) - 1)
                if os.fstat(fd).st_dev != self.dev:
                    # Something is mounted there (a volume, a rootfs): deleting its content
                    # would destroy what this tree never owned.
                    raise OSError(errno.EBUSY, "a mount point is in the way", "/".join(self.names))
        finally:
            for leftover in self.fds:
                if leftover is not None:
                    os.close(leftover)

    @staticmethod
    def _empty_files(dfd: int) -> str | None:
        """Unlink the non-directories of `dfd` until a subdirectory is met; return its name."""
        with os.scandir(dfd) as it:
            for entry in it:
                if entry.is_dir(follow_symlinks=False):
                    return entry.name
                _unlink(dfd, entry.name)
        return None
