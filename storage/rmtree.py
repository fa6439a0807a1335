"""Deleting directory trees of any depth, never following a symlink.

shutil.rmtree recurses (a layer with a few thousand nested directories raises RecursionError) and
its fd-based variant holds one fd per level. This walk is iterative, holds at most _WINDOW fds
(shallower levels are reopened from the start, without following symlinks, when it climbs back),
and opens every directory with O_NOFOLLOW relative to its parent, so a tree that changes while it
is deleted (a running container's) cannot lead it outside.
"""

from __future__ import annotations

import errno
import os
import stat

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
    _Remover(dir_fd, name).run()


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

    def _fd(self, level: int) -> int:
        """fd of the directory at `level` (-1: top_fd), reopened from the nearest open level."""
        if level < 0:
            return self.top_fd
        fd = self.fds[level]
        if fd is None:
            fd = os.open(self.names[level], _DIR, dir_fd=self._fd(level - 1))
            self.fds[level] = fd
        return fd

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
                if len(self.fds) > _WINDOW:
                    old = self.fds[-_WINDOW - 1]
                    if old is not None:
                        os.close(old)
                        self.fds[-_WINDOW - 1] = None
        finally:
            for fd in self.fds:
                if fd is not None:
                    os.close(fd)

    @staticmethod
    def _empty_files(dfd: int) -> str | None:
        """Unlink the non-directories of `dfd` until a subdirectory is met; return its name."""
        with os.scandir(dfd) as it:
            for entry in it:
                if entry.is_dir(follow_symlinks=False):
                    return entry.name
                _unlink(dfd, entry.name)
        return None
