"""COPY and ADD: which files a source names (inside the context or another image's rootfs,
never the host), their checksum for the cache, and copying them into a rootfs.

Sources resolve as dockerd resolves them: relative to the context root even when absolute,
symlinks followed inside the root only, `..` out of the context refused; wildcards match
within one path component. The copy itself is a tar stream from the source tree into the
rootfs' safe extractor (storage.archive), so that nothing lands outside the destination,
whatever the symlinks on either side.
"""

from __future__ import annotations

import fnmatch
import os
import posixpath
import stat
import tarfile
import threading
from dataclasses import dataclass
from pathlib import Path

from daemon.errors import InvalidParameter
from storage.archive import ArchiveError, extract_tar
from storage.compression import decompress
from storage.digest import Hasher, sha256
from storage.rootpath import resolve_in_root
from storage.tarwriter import tar_directory, tar_entry

_WILDCARD = set("*?[")
_CHUNK = 1 << 20


class CopyError(InvalidParameter):
    """A COPY/ADD that cannot be done as written (the build fails with this message)."""


@dataclass(frozen=True)
class Source:
    path: Path  # resolved, on the host, inside the source root
    name: str  # the base name a file keeps at its destination
    is_dir: bool


def _has_wildcard(s: str) -> bool:
    return any(c in _WILDCARD for c in s)


def _glob(root: Path, parts: list[str]) -> list[str]:
    """Relative paths under root matching the component patterns (dot files included, as Go)."""
    found = [""]
    for pat in parts:
        nxt = []
        for base in found:
            d = root / base if base else root
            if not _has_wildcard(pat):
                if os.path.lexists(d / pat):
                    nxt.append(f"{base}/{pat}" if base else pat)
                continue
            try:
                names = sorted(os.listdir(d))
            except (NotADirectoryError, FileNotFoundError):
                continue
            nxt += [f"{base}/{n}" if base else n for n in names if fnmatch.fnmatchcase(n, pat)]
        found = nxt
    return found


def select(root: Path, src: str, *, in_context: bool, what: str = "COPY") -> list[Source]:
    """The sources `src` names below `root` (the context, or a stage's rootfs for --from)."""
    clean = posixpath.normpath(src)
    if in_context and (clean == ".." or clean.startswith("../")):
        raise CopyError(f"{what} failed: forbidden path outside the build context: {src} ()")
    rel = clean.lstrip("/")
    rel = "" if rel == "." else rel
    if rel and _has_wildcard(rel):
        names = _glob(root, rel.split("/"))
        if not names:
            raise CopyError(f"{what} failed: no source files were specified")
    else:
        names = [rel]
    out = []
    for name in names:
        real = resolve_in_root(root, name) if name else root
        try:
            st = os.stat(real)
        except (FileNotFoundError, NotADirectoryError):
            if in_context:
                raise CopyError(f"{what} failed: file not found in build context or excluded by .dockerignore: "
                                f"stat {src.lstrip('/') or '.'}: file does not exist") from None
            raise CopyError(f"{what} failed: stat {src}: file does not exist") from None
        base = posixpath.basename(name) or "."
        out.append(Source(real, base, stat.S_ISDIR(st.st_mode)))
    return out


def _hash_file(h: Hasher, path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    with os.fdopen(fd, "rb", buffering=0) as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)


def _entry(h: Hasher, rel: str, path: str, st: os.stat_result) -> None:
    mode = st.st_mode
    h.update(f"{rel}\0{mode:o}\0{st.st_uid}\0{st.st_gid}\0".encode())
    if stat.S_ISREG(mode):
        h.update(f"{st.st_size}\0".encode())
        _hash_file(h, path)
    elif stat.S_ISLNK(mode):
        h.update(os.readlink(path).encode() + b"\0")


def checksum(sources: list[Source]) -> str:
    """What the cache compares for COPY/ADD: names, modes, owners and data (not mtimes)."""
    h = sha256()
    for s in sources:
        _entry(h, s.name, os.fspath(s.path), os.stat(s.path))
        if s.is_dir:
            top = os.fspath(s.path)
            for dirpath, dirnames, filenames in os.walk(top):
                dirnames.sort()
                for name in sorted(filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]):
                    full = os.path.join(dirpath, name)
                    _entry(h, os.path.relpath(full, top), full, os.lstat(full))
                for name in dirnames:
                    full = os.path.join(dirpath, name)
                    if not os.path.islink(full):
                        _entry(h, os.path.relpath(full, top), full, os.lstat(full))
    kind = "multi" if len(sources) > 1 else ("dir" if sources and sources[0].is_dir else "file")
    return f"{kind}:{h.hexdigest()}"


def destination(dest: str, workdir: str) -> str:
    """The destination as an absolute container path; a trailing '/' is kept (it means 'a directory')."""
    slash = dest.endswith("/")  # dockerd's normalizeDest: only a written '/' says "directory"
    if not dest.startswith("/"):
        dest = posixpath.join(workdir or "/", dest)
    dest = posixpath.normpath(dest)
    return dest + "/" if slash and dest != "/" else dest


def _pipe(write: callable, extract: callable) -> None:  # type: ignore[valid-type]
    """Runs write(fileobj) in a thread feeding extract(fileobj) here, through a pipe."""
    r, w = os.pipe()
    errors: list[BaseException] = []

    def writer() -> None:
        try:
            with os.fdopen(w, "wb", buffering=_CHUNK) as out:
                write(out)
        except BrokenPipeError:
            pass  # the extractor stopped first; its error is the one to report
        except BaseException as e:  # noqa: BLE001 - handed to the caller
            errors.append(e)

    t = threading.Thread(target=writer, name="build-copy", daemon=True)
    t.start()
    try:
        with os.fdopen(r, "rb", buffering=_CHUNK) as inp:
            extract(inp)
            while inp.read(_CHUNK):  # let the writer finish
                pass
    finally:
        t.join()
    if errors:
        raise errors[0]


def copy_into(sources: list[Source], rootfs: Path, dest: str, owner: tuple[int, int], what: str = "COPY") -> None:
    """Copies the sources into `rootfs` at the container path `dest` (see destination)."""
    as_dir = dest.endswith("/")
    if len(sources) > 1 and not as_dir:
        raise CopyError(f"When using {what} with more than one source file, the destination must be a directory "
                        "and end with a /")
    dest = dest.rstrip("/") or "/"
    target_is_dir = os.path.isdir(resolve_in_root(rootfs, dest))
    for s in sources:
        if s.is_dir:
            subdir, arc = dest, None
        elif as_dir or target_is_dir:
            subdir, arc = dest, s.name
        else:
            subdir, arc = posixpath.dirname(dest) or "/", posixpath.basename(dest)
        make_dirs(rootfs, subdir, owner)
        _copy_one(s, rootfs, subdir, arc, owner)


def make_dirs(rootfs: Path, path: str, owner: tuple[int, int]) -> None:
    """Creates the missing directories of `path` inside rootfs, 0755 and owned by `owner`
    (dockerd's mkdirAllAndChown: `COPY --chown=app . /app` gives app its new /app)."""
    done: list[str] = []
    for part in [p for p in path.split("/") if p]:
        done.append(part)
        real = resolve_in_root(rootfs, "/".join(done))
        if os.path.lexists(real):
            continue
        try:
            os.mkdir(real, 0o755)
        except OSError as e:
            raise CopyError(f"failed to copy files: cannot create directory {'/' + '/'.join(done)}: "
                            f"{e.strerror}") from None
        os.chown(real, *owner, follow_symlinks=False)
        os.chmod(real, 0o755)


def _copy_one(s: Source, rootfs: Path, subdir: str, arcname: str | None, owner: tuple[int, int]) -> None:
    def write(out: object) -> None:
        if arcname is None:
            tar_directory(s.path, out)  # type: ignore[arg-type]
            return
        parent = os.open(s.path.parent, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            tar_entry(parent, s.path.name, out, arcname)  # type: ignore[arg-type]
        finally:
            os.close(parent)

    try:
        _pipe(write, lambda inp: extract_tar(inp, rootfs, subdir=subdir, owner=owner, devices=False))
    except ArchiveError as e:
        raise CopyError(f"failed to copy files: {e}") from None
    except (NotADirectoryError, FileExistsError, IsADirectoryError) as e:
        raise CopyError(f"failed to copy files: {e.strerror}: {subdir}") from None


def is_archive(path: Path) -> bool:
    """ADD extracts local tar archives (plain, gzip, bzip2, xz); anything else is copied as is."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):  # never open a FIFO: it would block
            return False
        with open(path, "rb") as raw:
            block = decompress(raw).read(tarfile.BLOCKSIZE)
    except (ArchiveError, OSError, EOFError):
        return False
    if len(block) < tarfile.BLOCKSIZE:
        return False
    try:
        tarfile.TarInfo.frombuf(block, tarfile.ENCODING, "surrogateescape")
    except tarfile.HeaderError:
        return False
    return True


def extract_archive(path: Path, rootfs: Path, dest: str) -> None:
    """ADD of a local archive: its content into the destination directory, owners as archived."""
    try:
        with open(path, "rb") as raw:
            extract_tar(decompress(raw), rootfs, subdir=dest.rstrip("/") or "/", devices=False)
    except ArchiveError as e:
        raise CopyError(f"failed to extract {path.name}: {e}") from None


def lookup_owner(rootfs: Path | None, chown: str) -> tuple[int, int]:
    """--chown=user[:group], names looked up in the image's /etc/passwd and /etc/group."""
    user, _, group = chown.partition(":")

    def find(db: str, name: str, field: int) -> int:
        if name.isdigit():
            return int(name)
        if rootfs is not None:
            try:
                text = resolve_in_root(rootfs, db).read_text(errors="replace")
            except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
                text = ""
            for line in text.splitlines():
                parts = line.split(":")
                if len(parts) > field and parts[0] == name:
                    return int(parts[field])
        kind = "user" if db.endswith("passwd") else "group"
        raise CopyError(f"unable to convert uid/gid chown string to host mapping: can't find uid for {kind} "
                        f"{name}: no such {kind}: {name}")

    uid = find("/etc/passwd", user, 2)
    if group:
        gid = find("/etc/group", group, 2)
    elif user.isdigit():
        gid = uid
    else:
        gid = find("/etc/passwd", user, 3)
    return uid, gid
