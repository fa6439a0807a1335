"""Untrusted tar archives: safe streaming extraction (and, re-exported, decompression and tarring).

Extraction reads the tar in streaming mode ('r|', any non-seekable stream) and creates every entry
itself with *at calls relative to directory fds resolved inside the target's root (see rootpath):
nothing can land outside the target, whatever the names, symlinks or hardlinks in the archive and
whatever entries earlier in the same archive created. The rules follow dockerd's:

- names are cleaned; a leading '/' is dropped; a name that climbs out with '..' is an error;
- a relative symlink whose target climbs out of the target directory is an error (an absolute one
  is fine: it resolves inside the root, as in dockerd's chroot);
- a hardlink must point to an entry already extracted inside the target directory;
- an existing entry is replaced, except that a directory over a directory merges;
- modes, owners, mtimes, xattrs (PAX SCHILY.xattr.*), device nodes and fifos are kept.
With layer=True, AUFS-style whiteouts in the tar become overlayfs ones on disk.
"""

from __future__ import annotations

import errno
import os
import stat
import tarfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self, TypeVar

from . import tempfiles, whiteout
from .compression import Readable
from .errors import ArchiveError
from .fsmeta import proc_path, write_xattrs
from .rmtree import remove_at
from .rootpath import clean, open_dir, split
from .tarsplit import SplitRecorder

# tarfile's stream buffer is re-sliced on every read: bigger than this costs more than it saves.
_TAR_BUFSIZE = 64 << 10
_COPY_CHUNK = 1 << 20
_WRITEBACK_MIN = 256 << 10  # smaller files: one syscall each would cost more than it saves
_XATTR_PAX_PREFIX = "SCHILY.xattr."
_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_OPEN_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_OPEN_NODE = os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC
_T = TypeVar("_T")

# Errors that an archive's content can provoke (a file where a directory is needed, a missing
# hardlink target, an overlong name...): the archive is at fault, not the host.
_CONTENT_ERRNOS = {
    errno.ENOTDIR,
    errno.EISDIR,
    errno.EEXIST,
    errno.ENOENT,
    errno.ELOOP,
    errno.ENAMETOOLONG,
    errno.EINVAL,
    errno.EPERM,
    errno.EMLINK,
    errno.ENOTEMPTY,
}


class _StrictTarInfo(tarfile.TarInfo):
    """tarfile takes a bad or truncated header after the first one for the end of the archive and
    stops without a word; a truncated upload would then be a silently incomplete layer."""

    @classmethod
    def fromtarfile(cls, tarfile_: tarfile.TarFile) -> Self:
        try:
            return super().fromtarfile(tarfile_)
        except tarfile.EmptyHeaderError:  # type: ignore[attr-defined]
            # A stream that simply ends (no zero blocks) ends the archive, as in Go's archive/tar.
            raise tarfile.EOFHeaderError("end of file") from None  # type: ignore[attr-defined]
        except tarfile.EOFHeaderError:  # type: ignore[attr-defined]
            raise
        except tarfile.HeaderError as e:
            raise ArchiveError(f"invalid tar header at byte {tarfile_.offset}: {e}") from None


def extract_tar(
    fileobj: Readable,
    root: str | os.PathLike[str],
    *,
    subdir: str = "/",
    layer: bool = False,
    same_owner: bool = True,
    devices: bool = True,
    no_overwrite_dir_nondir: bool = False,
    owner: tuple[int, int] | None = None,
    recorder: SplitRecorder | None = None,
    writeback: bool = False,
    mounts: dict[tuple[str, ...], MountTarget] | None = None,
    sparse_limit: int | None = None,
) -> int:
    """Extract the (uncompressed) tar stream `fileobj` into `root`/`subdir`; return the bytes of
    regular file content written.

    Symlinks are resolved inside `root` (as if it were '/'), so `subdir` may be a directory inside a
    container's rootfs with `root` the rootfs; entries must stay inside `subdir`. layer: convert
    whiteouts to overlayfs format. same_owner: apply the archive's uid/gid. devices: create device
    nodes (else they are skipped, as dockerd does where it cannot create them).
    no_overwrite_dir_nondir: refuse to replace a directory by a non-directory or the reverse (the
    `docker cp` PUT flag). owner: (uid, gid) for every entry instead of the archive's. recorder: the
    tar-split recorder `fileobj` reads through, told where each file's data lies (see tarsplit).
    writeback: start writing big files to disk as they complete (for a caller that syncs at the end).
    mounts: what is mounted where below `subdir` (relative components): entries there go into the
    mount, as they would in the container, not into the directory the mount hides.
    sparse_limit: the most bytes a sparse member may expand to (a few stored bytes can claim
    terabytes of holes, which are written out as zeros).
    Raises ArchiveError for invalid or hostile archives; OSError for host trouble (ENOSPC...).
    On error, what was already extracted stays: extract into a fresh directory to be atomic.
    """
    def make(target: Path, sub: str) -> _Extractor:
        ex = _Extractor(target, sub, layer=layer, same_owner=same_owner, devices=devices)
        ex.no_overwrite_dir_nondir = no_overwrite_dir_nondir
        ex.owner = owner
        ex.split = recorder
        ex.writeback = writeback
        ex.sparse_limit = sparse_limit
        return ex

    ex: _Extractor | _Routed = make(Path(root), subdir)
    if mounts:
        ex = _Routed(ex, mounts, lambda target: make(target, "/"))
    try:
        try:
            tf = tarfile.open(fileobj=fileobj, mode="r|", bufsize=_TAR_BUFSIZE, tarinfo=_StrictTarInfo)  # type: ignore[call-overload]
            while (member := tf.next()) is not None:
                tf.members.clear()  # streaming: do not keep every header of a huge archive
                ex.add(tf, member)
                if recorder is not None:
                    recorder.settle(tf.offset)  # past this member's data: all of it is understood
        except tarfile.TarError as e:
            raise ArchiveError(f"invalid tar archive: {e}") from None
        ex.finish()
    finally:
        ex.close()
    return ex.size


@dataclass(frozen=True)
class MountTarget:
    path: Path  # host directory, or the file of a file bind-mounted on its own
    read_only: bool
    name: str  # where it is mounted in the container, for messages


class _Routed:
    """An extraction across mount points: each entry goes to the extractor of the mount it lies
    in (the longest matching mount point), as writing through the container's view would."""

    def __init__(self, main: _Extractor, mounts: dict[tuple[str, ...], MountTarget],
                 make: Callable[[Path], _Extractor]) -> None:
        self.main = main
        self.mounts = mounts
        self.make = make
        self.subs: dict[tuple[str, ...], _Extractor] = {}

    @property
    def size(self) -> int:
        return self.main.size + sum(s.size for s in self.subs.values())

    def _mount_of(self, parts: list[str]) -> tuple[str, ...] | None:
        best = None
        for point in self.mounts:
            if tuple(parts[: len(point)]) == point and (best is None or len(point) > len(best)):
                best = point
        return best

    def add(self, tf: tarfile.TarFile, m: tarfile.TarInfo) -> None:
        parts = _Extractor._parts(m.name)
        point = self._mount_of(parts)
        link_point = self._mount_of(_Extractor._parts(m.linkname, "hardlink target of")) if m.islnk() else point
        if link_point != point:
            raise ArchiveError(f"hardlink {m.name!r} -> {m.linkname!r}: invalid cross-device link")
        if point is None:
            self.main.add(tf, m)
            return
        target = self.mounts[point]
        if len(parts) == len(point):
            if m.isdir() and target.path.is_dir():
                return  # a directory over the mounted one: its content merges into the mount
            raise ArchiveError(f"cannot replace {target.name}: it is a mount point (device or resource busy)")
        if target.read_only:
            raise ArchiveError(f"mounted volume is marked read-only: {target.name}")
        if not target.path.is_dir():
            raise ArchiveError(f"{target.name} is not a directory")
        sub = self.subs.get(point)
        if sub is None:
            sub = self.subs[point] = self.make(target.path)
        m.name = "/".join(parts[len(point):])
        if m.islnk():
            m.linkname = "/".join(_Extractor._parts(m.linkname)[len(point):])
        sub.add(tf, m)

    def finish(self) -> None:
        self.main.finish()
        for s in self.subs.values():
            s.finish()

    def close(self) -> None:
        self.main.close()
        for s in self.subs.values():
            s.close()


def _plain_stream(src: object) -> Any:
    """tarfile's reader of an uncompressed stream ("r|"), if `src` is one whose read-ahead is
    understood here (its `buf`, `pos` and `fileobj`, unchanged from 3.11 to 3.13); else None."""
    if type(src) is getattr(tarfile, "_Stream", None) and getattr(src, "comptype", "") == "tar" \
            and isinstance(getattr(src, "buf", None), bytes) and isinstance(getattr(src, "pos", None), int) \
            and hasattr(src, "fileobj"):
        return src
    return None


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


class _Extractor:
    def __init__(self, root: Path, subdir: str, *, layer: bool, same_owner: bool, devices: bool) -> None:
        self.layer = layer
        self.same_owner = same_owner
        self.devices = devices
        self.no_overwrite_dir_nondir = False
        self.owner: tuple[int, int] | None = None
        self.split: SplitRecorder | None = None
        self.writeback = False
        self.sparse_limit: int | None = None
        self.size = 0
        self._root_fd = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        # Entries come grouped by directory: keep the last parent open. It cannot go stale, since
        # an entry only ever replaces a child of its own parent, never an ancestor of it.
        self._parent_key: tuple[str, ...] | None = None
        self._parent_fd = -1
        # Directory times are set at the end: extracting entries into a directory changes its mtime.
        self._dir_times: list[tuple[tuple[str, ...], int, int, int]] = []
        try:
            fd, names = open_dir(self._root_fd, split(subdir), create=True)
            os.close(fd)
        except BaseException:
            os.close(self._root_fd)
            raise
        self._base = names

    def close(self) -> None:
        self._forget_parent()
        os.close(self._root_fd)

    # -- resolution ---------------------------------------------------------------------------

    def _forget_parent(self) -> None:
        if self._parent_fd >= 0:
            os.close(self._parent_fd)
        self._parent_fd = -1
        self._parent_key = None

    def _parent(self, parts: Sequence[str]) -> int:
        """fd of the directory `parts` (relative to the target), created if missing; borrowed."""
        key = tuple(parts)
        if key != self._parent_key:
            self._forget_parent()
            self._parent_fd, _ = open_dir(self._root_fd, [*self._base, *key], create=True)
            self._parent_key = key
        return self._parent_fd

    @staticmethod
    def _parts(name: str, what: str = "entry") -> list[str]:
        parts = clean(split(name))
        if parts is None:
            raise ArchiveError(f"{what} {name!r} points outside the target directory")
        return parts

    # -- entries ------------------------------------------------------------------------------

    def add(self, tf: tarfile.TarFile, m: tarfile.TarInfo) -> None:
        try:
            self._add(tf, m)
        except OSError as e:
            if e.errno not in _CONTENT_ERRNOS:
                raise
            raise ArchiveError(f"cannot extract {m.name!r}: {e.strerror}") from None
        except (ValueError, OverflowError) as e:  # embedded NUL bytes, absurd times or ids
            if isinstance(e, ArchiveError):
                raise
            raise ArchiveError(f"cannot extract {m.name!r}: {e}") from None

    def _add(self, tf: tarfile.TarFile, m: tarfile.TarInfo) -> None:
        parts = self._parts(m.name)
        if self.layer and parts and parts[-1].startswith(whiteout.PREFIX):
            self._whiteout(parts, m)
            return
        if not parts:
            if not m.isdir():
                raise ArchiveError(f"entry {m.name!r} would replace the target directory")
            if self.layer:  # a rootfs tar's "./" carries the root's own mode and owner
                self._directory_meta(self._parent([]), ".", [], m)
            return
        parent = self._parent(parts[:-1])
        name = parts[-1]
        if self.owner is not None:
            m.uid, m.gid = self.owner
        if self.no_overwrite_dir_nondir:
            _check_overwrite(parent, name, parts, m)
        if m.islnk():
            self._hardlink(parent, name, parts, m)
            return
        if (m.ischr() or m.isblk()) and not self.devices:
            return
        if m.isreg():
            if m.sparse is not None and self.sparse_limit is not None and m.size > self.sparse_limit:
                raise ArchiveError(f"sparse file {m.name!r} would expand to {m.size} bytes, more than the "
                                   f"{self.sparse_limit} allowed")
            ref = self.split.payload(m.offset_data, m.size) if self.split and m.sparse is None and m.size else 0
            fd = _create(parent, name, lambda: os.open(name, _NEW_FILE, 0o600, dir_fd=parent))
            try:
                self._file_data(tf, fd, m)
                self._fd_meta(fd, m)
                if self.writeback and m.size >= _WRITEBACK_MIN:
                    tempfiles.start_writeback(fd)
            finally:
                os.close(fd)
            if ref and self.split is not None:
                self.split.keep(ref, parent, name, parts)
        elif m.isdir():
            try:
                os.mkdir(name, 0o700, dir_fd=parent)
            except FileExistsError:
                if not stat.S_ISDIR(os.stat(name, dir_fd=parent, follow_symlinks=False).st_mode):
                    _create(parent, name, lambda: os.mkdir(name, 0o700, dir_fd=parent))
                # else: a directory over a directory merges
            self._directory_meta(parent, name, parts, m)
        elif m.issym():
            self._symlink(parent, name, parts, m)
        elif m.ischr() or m.isblk() or m.isfifo():
            kind = stat.S_IFCHR if m.ischr() else stat.S_IFBLK if m.isblk() else stat.S_IFIFO
            dev = os.makedev(m.devmajor, m.devminor)
            _create(parent, name, lambda: os.mknod(name, kind | 0o600, dev, dir_fd=parent))
            self._node_meta(parent, name, m, kind)
        else:
            raise ArchiveError(f"entry {m.name!r} has unsupported tar type {m.type!r}")

    def _file_data(self, tf: tarfile.TarFile, fd: int, m: tarfile.TarInfo) -> None:
        # Reading the data straight from the tar stream (tf.fileobj, positioned at the member's
        # data right after next()) is ~30% faster than extractfile()'s two extra buffer layers;
        # next() itself skips the block padding. Sparse members need extractfile's hole map.
        src = tf.fileobj if m.sparse is None else tf.extractfile(m)
        assert src is not None
        left = m.size
        stream = _plain_stream(src)
        if stream is not None:
            # Past the tar reader's read-ahead, the data comes from the stream under it: its
            # reader joins and slices every block (two copies of each byte, ~25% of an import).
            head = stream.buf[:left]
            stream.buf = stream.buf[len(head) :]
            stream.pos += m.size
            _write_all(fd, head)
            left -= len(head)
            src = stream.fileobj
        while left:
            chunk = src.read(min(left, _COPY_CHUNK))
            if not chunk:
                raise ArchiveError(f"entry {m.name!r}: unexpected end of data")
            left -= len(chunk)
            _write_all(fd, chunk)
        self.size += m.size

    def _directory_meta(self, parent: int, name: str, parts: Sequence[str], m: tarfile.TarInfo) -> None:
        fd = os.open(name, _OPEN_DIR, dir_fd=parent)
        try:
            self._fd_meta(fd, m, times=False)
            st = os.fstat(fd)
        finally:
            os.close(fd)
        self._dir_times.append((tuple(parts), st.st_ino, *_times_ns(m)))

    def _symlink(self, parent: int, name: str, parts: list[str], m: tarfile.TarInfo) -> None:
        target = m.linkname
        # A layer is a root filesystem: there "../../../lib/x" from /usr/lib stops at "/" as in
        # any container, real images hold such links, and everything written below resolves
        # paths inside the root anyway. Into a directory (docker cp) it is refused, as dockerd.
        if not self.layer and not target.startswith("/") and clean([*parts[:-1], *split(target)]) is None:
            raise ArchiveError(f"symlink {m.name!r} -> {target!r} points outside the target directory")
        _create(parent, name, lambda: os.symlink(target, name, dir_fd=parent))
        if self.same_owner:
            os.chown(name, m.uid, m.gid, dir_fd=parent, follow_symlinks=False)
        write_xattrs(proc_path(parent, name), _xattrs(m))
        os.utime(name, ns=_times_ns(m), dir_fd=parent, follow_symlinks=False)

    def _node_meta(self, parent: int, name: str, m: tarfile.TarInfo, kind: int) -> None:
        if self.same_owner:
            os.chown(name, m.uid, m.gid, dir_fd=parent, follow_symlinks=False)
        # chmod has no no-follow form: hold the node by an O_PATH fd, check it is still what was
        # just created (a device or fifo cannot be opened), and chmod it through its /proc path.
        fd = os.open(name, _OPEN_NODE, dir_fd=parent)
        try:
            if stat.S_IFMT(os.fstat(fd).st_mode) != kind:
                raise ArchiveError(f"entry {m.name!r} changed while being extracted")
            os.chmod(proc_path(fd), m.mode & 0o7777)
        finally:
            os.close(fd)
        write_xattrs(proc_path(parent, name), _xattrs(m))
        os.utime(name, ns=_times_ns(m), dir_fd=parent, follow_symlinks=False)

    def _fd_meta(self, fd: int, m: tarfile.TarInfo, *, times: bool = True) -> None:
        # chown clears setuid bits and file capabilities: owner first, then mode, then xattrs.
        if self.same_owner:
            os.fchown(fd, m.uid, m.gid)
        os.fchmod(fd, m.mode & 0o7777)
        write_xattrs(fd, _xattrs(m))
        if times:
            os.utime(fd, ns=_times_ns(m))

    def _hardlink(self, parent: int, name: str, parts: list[str], m: tarfile.TarInfo) -> None:
        target = self._parts(m.linkname, "hardlink target of")
        if not target:
            raise ArchiveError(f"hardlink {m.name!r} points to the target directory")
        if target == parts:
            return
        tparent, _ = open_dir(self._root_fd, [*self._base, *target[:-1]])
        try:
            tst = os.stat(target[-1], dir_fd=tparent, follow_symlinks=False)
            if stat.S_ISDIR(tst.st_mode):
                raise ArchiveError(f"hardlink {m.name!r} points to a directory")
            _create(
                parent,
                name,
                lambda: os.link(target[-1], name, src_dir_fd=tparent, dst_dir_fd=parent, follow_symlinks=False),
            )
        finally:
            os.close(tparent)

    def _whiteout(self, parts: list[str], m: tarfile.TarInfo) -> None:
        base = parts[-1]
        parent = self._parent(parts[:-1])
        if base == whiteout.OPAQUE_MARKER:
            fd = os.open(".", _OPEN_DIR, dir_fd=parent)
            try:
                os.setxattr(fd, whiteout.OPAQUE_XATTR, b"y")
            finally:
                os.close(fd)
            return
        if base.startswith(whiteout.META_PREFIX):
            return  # AUFS bookkeeping (.wh..wh.plnk, .wh..wh.aufs): meaningless here
        name = base[len(whiteout.PREFIX) :]
        if name in ("", ".", ".."):
            raise ArchiveError(f"invalid whiteout {m.name!r}")
        _create(parent, name, lambda: os.mknod(name, stat.S_IFCHR, 0, dir_fd=parent))
        if self.same_owner:
            os.chown(name, m.uid, m.gid, dir_fd=parent, follow_symlinks=False)

    def finish(self) -> None:
        self._forget_parent()
        for parts, ino, atime, mtime in reversed(self._dir_times):
            try:
                fd, _ = open_dir(self._root_fd, [*self._base, *parts])
            except OSError:
                continue  # replaced or removed by a later entry
            try:
                dfd = os.open(".", _OPEN_DIR, dir_fd=fd)
            finally:
                os.close(fd)
            try:
                if os.fstat(dfd).st_ino == ino:
                    os.utime(dfd, ns=(atime, mtime))
            finally:
                os.close(dfd)


def _create(parent: int, name: str, make: Callable[[], _T]) -> _T:
    """Run `make`; if `name` exists, replace it (a later entry wins, as in dockerd).

    Trying first spares a stat per entry: most entries are new.
    """
    try:
        return make()
    except FileExistsError:
        pass
    remove_at(parent, name)
    return make()


def _check_overwrite(parent: int, name: str, parts: Sequence[str], m: tarfile.TarInfo) -> None:
    try:
        st = os.stat(name, dir_fd=parent, follow_symlinks=False)
    except FileNotFoundError:
        return
    path = "/".join(parts)
    if stat.S_ISDIR(st.st_mode) and not m.isdir():
        raise ArchiveError(f'cannot overwrite directory "{path}" with non-directory "{m.name}"')
    if not stat.S_ISDIR(st.st_mode) and m.isdir():
        raise ArchiveError(f'cannot overwrite non-directory "{path}" with directory "{m.name}"')


def _times_ns(m: tarfile.TarInfo) -> tuple[int, int]:
    mtime = int(m.mtime * 1_000_000_000)
    atime = m.pax_headers.get("atime")
    return (int(float(atime) * 1_000_000_000) if atime else mtime), mtime


def _xattrs(m: tarfile.TarInfo) -> dict[str, bytes]:
    if not m.pax_headers:
        return {}
    # tarfile decodes PAX values as UTF-8 with surrogateescape: this gives back the raw bytes
    # of binary values such as security.capability.
    return {
        k[len(_XATTR_PAX_PREFIX) :]: v.encode("utf-8", "surrogateescape")
        for k, v in m.pax_headers.items()
        if k.startswith(_XATTR_PAX_PREFIX)
    }
