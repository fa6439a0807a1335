"""Helpers for the storage tests: building tar archives and layer trees in memory (no tests here)."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest

from storage import mounts

DEFAULT_MTIME = 1_600_000_000


def member(
    name: str, kind: bytes = tarfile.REGTYPE, data: bytes = b"", **attrs: object
) -> tuple[tarfile.TarInfo, bytes]:
    ti = tarfile.TarInfo(name)
    ti.type = kind
    ti.mtime = DEFAULT_MTIME
    ti.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
    for key, value in attrs.items():
        setattr(ti, key, value)
    ti.size = len(data) if kind == tarfile.REGTYPE else 0
    return ti, data


def reg(name: str, data: bytes = b"", **attrs: object) -> tuple[tarfile.TarInfo, bytes]:
    return member(name, tarfile.REGTYPE, data, **attrs)


def dir_(name: str, **attrs: object) -> tuple[tarfile.TarInfo, bytes]:
    return member(name, tarfile.DIRTYPE, **attrs)


def sym(name: str, target: str, **attrs: object) -> tuple[tarfile.TarInfo, bytes]:
    return member(name, tarfile.SYMTYPE, linkname=target, **attrs)


def hard(name: str, target: str, **attrs: object) -> tuple[tarfile.TarInfo, bytes]:
    return member(name, tarfile.LNKTYPE, linkname=target, **attrs)


def tar_bytes(*members: tuple[tarfile.TarInfo, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for ti, data in members:
            tf.addfile(ti, io.BytesIO(data) if ti.type == tarfile.REGTYPE else None)
    return buf.getvalue()


def read_tar(data: bytes) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        return {m.name: m for m in tf}


class Pipe:
    """A non-seekable reader over bytes that hands out at most `chunk` bytes per read."""

    def __init__(self, data: bytes, chunk: int = 7) -> None:
        self._data = data
        self._pos = 0
        self._chunk = chunk

    def read(self, size: int = -1) -> bytes:
        n = self._chunk if size < 0 else min(size, self._chunk)
        out = self._data[self._pos : self._pos + n]
        self._pos += len(out)
        return out

    def seekable(self) -> bool:
        return False


def write_tree(root: Path, spec: dict[str, object]) -> None:
    """Create files ({name: bytes}), dirs ({name: None}), symlinks ({name: ('->', target)}),
    whiteouts ({name: 'whiteout'}) and opaque dirs ({name: 'opaque'}) under `root`."""
    root.mkdir(parents=True, exist_ok=True)
    for name, what in spec.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if what is None:
            path.mkdir(exist_ok=True)
        elif what == "opaque":
            path.mkdir(exist_ok=True)
            os.setxattr(path, "trusted.overlay.opaque", b"y")
        elif what == "whiteout":
            os.mknod(path, 0o600 | 0o020000, 0)
        elif isinstance(what, tuple):
            os.symlink(what[1], path)
        else:
            assert isinstance(what, bytes)
            path.write_bytes(what)


@pytest.fixture
def no_leaked_mounts(tmp_path: Path):
    """Fails a test that leaves a mount under its tmp_path (after cleaning it up)."""
    yield tmp_path
    leaked = mounts.mounted_under(tmp_path)
    for mp in leaked:
        mounts.unmount(mp)
    assert not leaked, f"mounts left behind: {leaked}"
