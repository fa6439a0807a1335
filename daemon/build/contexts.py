"""Unpacked build contexts kept for the next build of the same context.

A rebuild usually sends the very bytes it sent before (the CLI's tar of an unchanged
directory is the same stream): unpacking it again and hashing every file for COPY's checksum
was most of a fully cached build. The upload is spooled and hashed as it arrives; when a
context with that digest (and Dockerfile name) is still here, the build uses it read-only,
with the COPY source plans already worked out. A few are kept, least recently used first out,
never one a build is using. In memory only: the directory is emptied at start-up.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Unpacked:
    key: str
    root: Path
    dockerfile: str
    memo: dict[Any, Any] = field(default_factory=dict)  # COPY/ADD source plans by instruction
    users: int = 0
    last_used: float = 0.0
    size: int = 0
    kept: bool = True  # False: too big to keep, removed when its build ends


class ContextStore:
    def __init__(self, root: Path, keep: int = 3, max_bytes: int = 2 << 30) -> None:
        self.root = root
        self.keep = keep
        self.max_bytes = max_bytes
        self._entries: dict[str, Unpacked] = {}

    def reset(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)
        self.root.mkdir(parents=True, mode=0o700)

    def acquire(self, key: str) -> Unpacked | None:
        u = self._entries.get(key)
        if u is not None:
            u.users += 1
            u.last_used = time.monotonic()
        return u

    def add(self, key: str, tree: Path, dockerfile: str, size: int) -> tuple[Unpacked, list[Path]]:
        """Takes over the unpacked `tree` (`size` bytes of files), acquired once; returns it and
        the directories of evicted contexts, for the caller to remove off the loop."""
        existing = self.acquire(key)
        if existing is not None:  # a concurrent build of the same context got here first
            return existing, [tree]
        if size > self.max_bytes:
            return Unpacked(key, tree, dockerfile, users=1, size=size, kept=False), []
        dest = self.root / f"{len(self._entries)}-{os.urandom(8).hex()}"
        os.rename(tree, dest)
        u = Unpacked(key, dest, dockerfile, users=1, last_used=time.monotonic(), size=size)
        self._entries[key] = u
        return u, self._evict()

    def release(self, u: Unpacked) -> list[Path]:
        u.users -= 1
        if not u.kept:
            return [u.root]
        return self._evict()

    def _evict(self) -> list[Path]:
        idle = sorted((u for u in self._entries.values() if u.users <= 0), key=lambda u: u.last_used)
        gone = []
        while idle and (len(self._entries) > self.keep
                        or sum(u.size for u in self._entries.values()) > self.max_bytes):
            u = idle.pop(0)
            del self._entries[u.key]
            gone.append(u.root)
        return gone
