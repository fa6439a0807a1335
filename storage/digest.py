"""Content digests ("sha256:<64 hex>"): the only form a digest may take before it becomes a path."""

from __future__ import annotations

import hashlib
import queue
import re
import sys
import threading
from typing import Protocol

ALGORITHM = "sha256"
_DIGEST_RE = re.compile(r"sha256:[0-9a-f]{64}")

# A program may keep OpenSSL out of its memory by blocking `_hashlib` before hashlib is imported
# (pydockerd does: daemon/util/lazycrypto.py); hashlib then gives its builtin sha256: ~5x slower,
# and it holds the GIL while it runs. sha256() below uses it for small content, in slices, and
# OpenSSL's for good once one stream went past _BIG bytes.
_BIG = 8 << 20
_SLICE = 256 << 10  # ~1 ms of the builtin sha256 here: the GIL is let go between slices
_openssl: list = []  # [_hashlib.openssl_sha256] once in use


class Hasher(Protocol):
    def update(self, data: bytes | bytearray | memoryview, /) -> None: ...
    def digest(self) -> bytes: ...
    def hexdigest(self) -> str: ...


class InvalidDigest(ValueError):
    """A string that is not a well-formed sha256 digest (it must never reach the filesystem)."""


class DigestMismatch(ValueError):
    """Content whose digest differs from the one it was announced with."""


def hex_of(digest: str) -> str:
    """The hex part of `digest`, after checking its form (no path can be smuggled through it)."""
    if not isinstance(digest, str) or not _DIGEST_RE.fullmatch(digest):
        raise InvalidDigest(f"invalid digest: {digest!r}")
    return digest[len(ALGORITHM) + 1 :]


def of_bytes(data: bytes) -> str:
    return f"{ALGORITHM}:{sha256(data).hexdigest()}"


class _Builtin:
    """hashlib's builtin sha256, fed in slices; past _BIG bytes, later hashers use OpenSSL."""

    def __init__(self) -> None:
        self._h = hashlib.sha256()
        self._size = 0

    def update(self, data: bytes | bytearray | memoryview, /) -> None:
        view = memoryview(data).cast("B")
        self._size += len(view)
        for i in range(0, len(view), _SLICE):
            self._h.update(view[i:i + _SLICE])
        if self._size > _BIG and not _openssl:
            _use_openssl()

    def digest(self) -> bytes:
        return self._h.digest()

    def hexdigest(self) -> str:
        return self._h.hexdigest()


def _use_openssl() -> None:
    if sys.modules.get("_hashlib", False) is None:
        del sys.modules["_hashlib"]  # the block (see above) is lifted: this content is big
    import _hashlib

    _openssl[:] = [_hashlib.openssl_sha256]


def expect(size: int) -> None:
    """Content of `size` bytes is on its way (a layer a manifest announces): past _BIG, OpenSSL's
    sha256 from now on, so that even its first stream is not hashed by the ~5x slower builtin."""
    if size > _BIG and not _openssl:
        _use_openssl()


def sha256(data: bytes | bytearray | memoryview = b"") -> Hasher:
    """A sha256 for content that may be big (layers, blobs, build contexts, uploads)."""
    if not _openssl and sys.modules.get("_hashlib") is not None:
        _use_openssl()  # hashlib has it anyway
    if _openssl:
        return _openssl[0](data)
    h = _Builtin()
    if data:
        h.update(data)
    return h


class BackgroundDigest:
    """sha256 of bytes handed over with update(), computed in a thread of its own.

    OpenSSL's sha256 releases the GIL on big buffers, so on a machine with a second core the
    hashing runs alongside the I/O of the thread feeding it (a fifth of a layer import here). The
    queue is bounded: a slow hasher holds the feeder back instead of buffering without end.
    The data must not change after update(): bytes, not a reused buffer.
    """

    def __init__(self, max_pending: int = 64) -> None:
        self._hash = sha256()
        self._queue: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        self._room = threading.BoundedSemaphore(max_pending)
        self._thread = threading.Thread(target=self._run, name="digest", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (data := self._queue.get()) is not None:
            self._hash.update(data)
            self._room.release()

    def update(self, data: bytes) -> None:
        if data:
            self._room.acquire()
            self._queue.put(data)

    def close(self) -> None:
        """Stops the thread (idempotent); call it on every path, also when abandoning the digest."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()

    def digest(self) -> str:
        self.close()
        return f"{ALGORITHM}:{self._hash.hexdigest()}"
