"""Temporary files and directories that a crash cannot leave looking complete.

Each one is created under its final parent (same filesystem, so that it can be renamed into place)
with a name starting with `prefix`, and held under an flock while in use. Cleaning a directory
removes only the temporaries whose lock nobody holds: a crashed process's leftovers, never another
thread's or process's work in progress.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .rmtree import remove_tree

PREFIX = ".tmp-"


def anonymous_file(parent: Path) -> int:
    """A read-write descriptor of a file in `parent` that no name leads to: it goes with its last
    descriptor, whatever happens. Not named with PREFIX even for an instant: remove_stale (run by
    other threads) would take a `.tmp-` file that is not locked yet."""
    try:
        return os.open(parent, os.O_TMPFILE | os.O_RDWR | os.O_CLOEXEC, 0o600)
    except OSError as e:
        if e.errno not in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL):
            raise
    fd, name = tempfile.mkstemp(prefix=".anon-", dir=parent)  # filesystems without O_TMPFILE
    os.unlink(name)
    return fd


@contextmanager
def locked_dir(parent: Path) -> Iterator[Path]:
    """A fresh directory under `parent`; removed on exit unless it was renamed away meanwhile."""
    path = Path(tempfile.mkdtemp(prefix=PREFIX, dir=parent))
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield path
    finally:
        try:
            if os.path.lexists(path) and os.path.samestat(os.fstat(fd), os.lstat(path)):
                remove_tree(path)
        finally:
            os.close(fd)


@contextmanager
def locked_file(parent: Path) -> Iterator[tuple[int, Path]]:
    """A fresh file under `parent` open for writing; removed on exit unless renamed away."""
    fd, name = tempfile.mkstemp(prefix=PREFIX, dir=parent)
    path = Path(name)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield fd, path
    finally:
        try:
            if os.path.lexists(path) and os.path.samestat(os.fstat(fd), os.lstat(path)):
                os.unlink(path)
        finally:
            os.close(fd)


def remove_aside(path: Path) -> None:
    """Delete the tree at `path` (missing is fine): renamed into a temporary of its parent first,
    so that it disappears at once and an interrupted delete leaves only what the next start's
    remove_stale clears."""
    with locked_dir(path.parent) as tmp:
        try:
            os.rename(path, tmp / "old")
        except FileNotFoundError:
            return
        remove_tree(tmp / "old")


def remove_stale(parent: Path) -> None:
    """Remove the temporaries under `parent` that no live holder has locked."""
    try:
        names = [n for n in os.listdir(parent) if n.startswith(PREFIX)]
    except FileNotFoundError:
        return
    for name in names:
        path = parent / name
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # in use
            remove_tree(path)
        except OSError:
            pass  # best effort: tried again at the next start
        finally:
            os.close(fd)


def fsync_dir(path: Path) -> None:
    """Make a rename or unlink in `path` durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


_libc = ctypes.CDLL(None, use_errno=True)


_SYNC_FILE_RANGE_WRITE = 2
_libc.sync_file_range.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]


def start_writeback(fd: int) -> None:
    """Start writing a file's dirty pages now, without waiting: a later syncfs then finds most of
    the work done (the disk works while the extraction goes on). Best effort."""
    _libc.sync_file_range(fd, 0, 0, _SYNC_FILE_RANGE_WRITE)


def syncfs(path: Path) -> None:
    """Flush the whole filesystem holding `path`: one call instead of an fsync per extracted file."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        if _libc.syncfs(fd) != 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err), str(path))
    finally:
        os.close(fd)
