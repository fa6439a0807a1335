"""Content digests ("sha256:<64 hex>"): the only form a digest may take before it becomes a path."""

from __future__ import annotations

import hashlib
import re

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
