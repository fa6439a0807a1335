"""Content digests ("sha256:<64 hex>"): the only form a digest may take before it becomes a path."""

from __future__ import annotations

import hashlib
import queue
import re
import threading

ALGORITHM = "sha256"
_DIGEST_RE = re.compile(r"sha256:[0-9a-f]{64}")


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
    return f"{ALGORITHM}:{hashlib.sha256(data).hexdigest()}"


class BackgroundDigest:
    """sha256 of bytes handed over with update(), computed in a thread of its own.

    hashlib releases the GIL on big buffers, so on a machine with a second core the hashing
    runs alongside the I/O of the thread feeding it (a fifth of a layer import here). The
    queue is bounded: a slow hasher holds the feeder back instead of buffering without end.
    The data must not change after update(): bytes, not a reused buffer.
    """

    def __init__(self, max_pending: int = 64) -> None:
        self._hash = hashlib.sha256()
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
