"""Writing a directory tree as a tar stream (export, cp out, commit), symlink-race safe.

The walk holds directory fds and opens every entry with O_NOFOLLOW relative to its parent, so a
process renaming things inside the tree meanwhile (a running container) cannot make it read a
file outside the tree. With layer=True the tree is an overlayfs upper dir and its whiteouts are
written in the AUFS-style format of image layers.
"""

from __future__ import annotations

import errno
import os
import stat
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, Protocol

from . import whiteout
from .fsmeta import proc_path, read_xattrs

_BUFSIZE = 1 << 20
_OPEN_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_OPEN_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_XATTR_PAX_PREFIX = "SCHILY.xattr."
_NODE_TYPES = {stat.S_IFCHR: tarfile.CHRTYPE, stat.S_IFBLK: tarfile.BLKTYPE, stat.S_IFIFO: tarfile.FIFOTYPE}


class Writable(Protocol):
    def write(self, data: bytes, /) -> int | None: ...


def tar_directory(path: str | os.PathLike[str], fileobj: Writable, *, layer: bool = False, prefix: str = "",
                  mounts: dict[tuple[str, ...], Path] | None = None) -> None:
    """Write the tree at `path` as a PAX tar stream to `fileobj` (which stays open).

    Entry names are relative to `path`, under `prefix` when given (then the top directory itself is
    an entry named `prefix`, as `docker cp` sends it; without a prefix it is not, as in `docker
    export`). Sockets are skipped. layer: `path` is an overlay upper dir; 0/0 character devices
    become `.wh.NAME` entries and opaque directories get a `.wh..wh..opq` entry. overlayfs' own
    xattrs (trusted.overlay.*) are never written. mounts: what is mounted where below `path`
    (relative components -> host path), written in place of what the mount hides, as the
    container sees it (docker cp of a directory holding volumes or binds).
    """
    prefix = prefix.strip("/")
    skip = len(prefix) + 1 if prefix else 0
    out = _Output(fileobj)
    tf = _open(out)
    w = _Writer(tf, layer)
    # One open fd per level of depth: the walk needs no path lookups from the top.
    stack: list[tuple[int, str, Iterator[os.DirEntry[str]]]] = []
    try:
        top = os.open(path, _OPEN_DIR)
        stack.append((top, prefix, _sorted(top)))
        w.directory(top, prefix, emit=bool(prefix))
        while stack:
            dfd, rel, entries = stack[-1]
            entry = next(entries, None)
            if entry is None:
                os.close(stack.pop()[0])
                continue
            name = _join(rel, entry.name)
            source = mounts.get(tuple(name[skip:].split("/"))) if mounts else None
            sub = w.mounted(name, source) if source is not None else w.entry(dfd, name, entry)
            if sub is not None:
                stack.append((sub, name, _sorted(sub)))
        tf.close()
        out.flush()
    finally:
        for dfd, _, _ in stack:
            os.close(dfd)


def tar_entry(dir_fd: int, name: str, fileobj: Writable, arcname: str) -> None:
    """Write the single non-directory entry `name` of the directory `dir_fd` as `arcname`
    (`docker cp` of a file, symlink or device); the entry is never followed if it is a symlink."""
    out = _Output(fileobj)
    tf = _open(out)
    _Writer(tf, False).entry(dir_fd, arcname, _Entry(dir_fd, name))  # type: ignore[arg-type]
    tf.close()
    out.flush()


def _open(out: _Output) -> tarfile.TarFile:
    # TarFile in plain "w" mode on a non-seekable output (it only needs tell()) writes headers and
    # file data straight to `out`; the "w|" stream mode re-buffers and re-slices every byte of
    # file data, which cost a third of the throughput of `docker export`.
    return tarfile.TarFile(fileobj=out, mode="w", format=tarfile.PAX_FORMAT, copybufsize=_BUFSIZE)  # type: ignore[arg-type]


class _Output:
    """Counts what is written (TarFile wants tell()) and groups small writes (headers, padding,
    small files) into big ones; big writes (file data) go through without a copy."""

    _GROUP = 256 << 10

    def __init__(self, fileobj: Writable) -> None:
        self._f = fileobj
        self._buf = bytearray()
        self._pos = 0

    def tell(self) -> int:
        return self._pos

    def write(self, data: bytes) -> int:
        n = len(data)
        self._pos += n
        if n >= self._GROUP:
            self.flush()
            self._f.write(data)
        else:
            self._buf += data
            if len(self._buf) >= self._GROUP:
                self.flush()
        return n

    def flush(self) -> None:
        if self._buf:
            self._f.write(bytes(self._buf))
            self._buf.clear()


class _Entry:
    """The part of os.DirEntry that _Writer.entry uses, for an entry found without a listing."""

    def __init__(self, dir_fd: int, name: str) -> None:
        self.name = name
        self._st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)

    def stat(self, *, follow_symlinks: bool = True) -> os.stat_result:
        return self._st


def _join(rel: str, name: str) -> str:
    return f"{rel}/{name}" if rel else name


def _sorted(dfd: int) -> Iterator[os.DirEntry[str]]:
    # Sorted names give the same tar for the same tree (reproducible layer digests).
    with os.scandir(dfd) as it:
        return iter(sorted(it, key=lambda e: e.name))


class _Writer:
    def __init__(self, tf: tarfile.TarFile, layer: bool) -> None:
        self.tf = tf
        self.layer = layer
        self.links: dict[tuple[int, int], str] = {}

    def _info(self, name: str, st: os.stat_result, xattrs: dict[str, bytes]) -> tarfile.TarInfo:
        ti = tarfile.TarInfo(name)
        ti.mode = stat.S_IMODE(st.st_mode)
        ti.uid, ti.gid = st.st_uid, st.st_gid
        ti.uname = ti.gname = ""
        ti.mtime = int(st.st_mtime)
        # Binary values (security.capability) survive as surrogates; tarfile writes them back as
        # the original bytes under hdrcharset=BINARY.
        ti.pax_headers = {_XATTR_PAX_PREFIX + k: v.decode("utf-8", "surrogateescape") for k, v in xattrs.items()}
        return ti

    def directory(self, dfd: int, name: str, *, emit: bool = True) -> None:
        st = os.fstat(dfd)
        if emit:
            ti = self._info(name, st, read_xattrs(dfd))
            ti.type = tarfile.DIRTYPE
            self.tf.addfile(ti)
        if self.layer and whiteout.is_opaque(dfd):
            marker = self._info(_join(name, whiteout.OPAQUE_MARKER), st, {})
            marker.type = tarfile.REGTYPE
            self.tf.addfile(marker)

    def mounted(self, name: str, source: Path) -> int | None:
        """The mount at `name` instead of the mount point: its directory (fd returned, to descend)
        or, for a file bind-mounted on its own, that file."""
        if source.is_dir():
            sub = os.open(source, _OPEN_DIR)
            self.directory(sub, name)
            return sub
        parent = os.open(source.parent, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            self._file(parent, name, source.name)
        finally:
            os.close(parent)
        return None

    def entry(self, dfd: int, name: str, entry: os.DirEntry[str]) -> int | None:
        """Write one entry; for a directory, return its fd so that the walk descends into it."""
        st = entry.stat(follow_symlinks=False)
        mode = st.st_mode
        if stat.S_ISDIR(mode):
            try:
                sub = os.open(entry.name, _OPEN_DIR, dir_fd=dfd)
            except (FileNotFoundError, NotADirectoryError):
                return None  # gone, or swapped for a symlink since the listing
            self.directory(sub, name)
            return sub
        if stat.S_ISREG(mode):
            self._file(dfd, name, entry.name)
            return None
        if stat.S_ISSOCK(mode):
            return None
        xattrs = read_xattrs(proc_path(dfd, entry.name))
        if self.layer and whiteout.is_whiteout(st):
            head, _, base = name.rpartition("/")
            ti = self._info(_join(head, whiteout.PREFIX + base), st, {})
            ti.mode = 0o600
            ti.type = tarfile.REGTYPE
        else:
            ti = self._info(name, st, xattrs)
            if stat.S_ISLNK(mode):
                ti.type = tarfile.SYMTYPE
                ti.linkname = os.readlink(entry.name, dir_fd=dfd)
            else:
                ti.type = _NODE_TYPES[stat.S_IFMT(mode)]
                ti.devmajor, ti.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
        self.tf.addfile(ti)
        return None

    def _file(self, dfd: int, name: str, base: str) -> None:
        try:
            fd = os.open(base, _OPEN_FILE, dir_fd=dfd)
        except OSError as e:
            if e.errno in (errno.ENOENT, errno.ELOOP):
                return  # gone, or swapped for a symlink since the listing
            raise
        with os.fdopen(fd, "rb", buffering=0, closefd=True) as f:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                return
            ti = self._info(name, st, read_xattrs(fd))
            key = (st.st_dev, st.st_ino)
            if st.st_nlink > 1:
                first = self.links.get(key)
                if first is not None:
                    ti.type = tarfile.LNKTYPE
                    ti.linkname = first
                    self.tf.addfile(ti)
                    return
                self.links[key] = name
            ti.size = st.st_size
            self.tf.addfile(ti, _Exactly(f, st.st_size))


class _Exactly:
    """Reads exactly `size` bytes: a file that shrinks while being read is padded with zeros (and
    one that grows is cut), so that the header written before the data stays true."""

    def __init__(self, f: BinaryIO, size: int) -> None:
        self._f = f
        self._left = size

    def read(self, n: int = -1) -> bytes:
        if n < 0 or n > self._left:
            n = self._left
        data = b""
        while len(data) < n:
            chunk = self._f.read(n - len(data))
            if not chunk:
                data += bytes(n - len(data))
                break
            data += chunk
        self._left -= n
        return data
