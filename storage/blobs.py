"""Content-addressed blob store: <root>/sha256/<hex>, written atomically and verified."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from . import tempfiles
from .digest import ALGORITHM, DigestMismatch, hex_of, sha256


class BlobNotFound(LookupError):
    def __init__(self, digest: str) -> None:
        super().__init__(f"blob not found: {digest}")
        self.digest = digest


class BlobWriter:
    """Streaming writes into a temporary blob, hashed as they go. Obtain one from BlobStore.writer()."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._hash = sha256()
        self.size = 0
        self.digest: str | None = None  # set when the blob is committed

    def write(self, data: bytes | bytearray | memoryview) -> int:
        view = memoryview(data)
        n = len(view)
        self._hash.update(view)
        while view:
            view = view[os.write(self._fd, view) :]
        self.size += n
        return n

    def _finish(self) -> str:
        return f"{ALGORITHM}:{self._hash.hexdigest()}"


class BlobStore:
    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self._dir = self.root / ALGORITHM
        self._dir.mkdir(parents=True, exist_ok=True)
        tempfiles.remove_stale(self._dir)

    def path(self, digest: str) -> Path:
        return self._dir / hex_of(digest)

    def exists(self, digest: str) -> bool:
        return self.path(digest).is_file()

    def size(self, digest: str) -> int:
        try:
            return self.path(digest).stat().st_size
        except FileNotFoundError:
            raise BlobNotFound(digest) from None

    def get(self, digest: str) -> bytes:
        try:
            return self.path(digest).read_bytes()
        except FileNotFoundError:
            raise BlobNotFound(digest) from None

    def open(self, digest: str) -> BinaryIO:
        """A reader of the blob, for blobs too big to hold in memory (layers)."""
        try:
            return self.path(digest).open("rb")
        except FileNotFoundError:
            raise BlobNotFound(digest) from None

    def put(self, data: bytes, expected: str | None = None) -> str:
        with self.writer(expected) as w:
            w.write(data)
        assert w.digest is not None
        return w.digest

    @contextmanager
    def writer(self, expected: str | None = None) -> Iterator[BlobWriter]:
        """Write a blob in pieces: `with store.writer() as w: w.write(...)`; then `w.digest`.

        On a clean exit the data is fsynced, checked against `expected` (DigestMismatch, and
        nothing is stored) and renamed into place; on an exception nothing is stored.
        """
        if expected is not None:
            hex_of(expected)
        with tempfiles.locked_file(self._dir) as (fd, tmp):
            w = BlobWriter(fd)
            yield w
            digest = w._finish()
            if expected is not None and digest != expected:
                raise DigestMismatch(f"blob digest mismatch: expected {expected}, got {digest}")
            os.fsync(fd)
            final = self.path(digest)
            if not final.exists():
                os.fchmod(fd, 0o644)
                os.rename(tmp, final)
                tempfiles.fsync_dir(self._dir)
            w.digest = digest

    def delete(self, digest: str) -> None:
        """Remove a blob; removing one that is not there is not an error."""
        try:
            os.unlink(self.path(digest))
        except FileNotFoundError:
            pass

    def list(self) -> list[str]:
        out = []
        for name in os.listdir(self._dir):
            digest = f"{ALGORITHM}:{name}"
            try:
                hex_of(digest)
            except ValueError:
                continue  # temporaries and strays
            out.append(digest)
        return sorted(out)
