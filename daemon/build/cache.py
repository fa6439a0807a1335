"""The classic builder's cache: which image a step produced on top of which parent.

A step is reused when its key matches: the parent image, the instruction as it ran (for
COPY/ADD with the checksum of the copied content) and the config it ran with. The images are
ordinary (intermediate) images of the image store; this index says which of them count as
build cache, for lookups, `docker system df` and `docker builder prune`. It lives in one JSON
file under the data root, rewritten atomically.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from daemon.util.timeutil import format_time


@dataclass
class Entry:
    key: str
    image: str  # the image id the step produced
    parent: str  # the image it was built on ("" for scratch)
    description: str  # the instruction, as `docker buildx du` would show it
    size: int  # bytes of the layer the step added (0 for config-only steps)
    created: float
    last_used: float
    usage: int = 1


def step_key(parent: str, signature: str, config: dict[str, Any]) -> str:
    """The cache key of a step: parent image, what the step does, and the config it runs with."""
    doc = json.dumps([parent, signature, config], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(doc.encode()).hexdigest()


class BuildCache:
    def __init__(self, path: Path, exists: Callable[[str], bool]) -> None:
        self.path = path
        self._exists = exists  # does the image store still hold this image?
        self._entries: dict[str, Entry] = {}
        self._lock = threading.Lock()

    def load(self) -> None:
        try:
            doc = json.loads(self.path.read_text())
        except FileNotFoundError:
            return
        except (ValueError, OSError):
            doc = {}  # a damaged index is only a lost cache
        for raw in doc.get("entries", []):
            try:
                e = Entry(**raw)
            except TypeError:
                continue
            self._entries[e.key] = e

    def _save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        with open(tmp, "w") as f:
            json.dump({"entries": [asdict(e) for e in self._entries.values()]}, f)
        os.replace(tmp, self.path)

    def lookup(self, key: str) -> str | None:
        """The image of a cached step, if it is still there."""
        with self._lock:
            e = self._entries.get(key)
            if e is None:
                return None
            if not self._exists(e.image):
                del self._entries[key]
                return None
            e.last_used = time.time()
            e.usage += 1
            return e.image

    def add(self, key: str, image: str, parent: str, description: str, size: int) -> None:
        now = time.time()
        with self._lock:
            self._entries[key] = Entry(key, image, parent, description, size, now, now)

    def image_gone(self, image: str) -> None:
        """An image was deleted: its steps go from memory now, from the file at the next save."""
        with self._lock:
            for k in [k for k, e in self._entries.items() if e.image == image]:
                del self._entries[k]

    def save(self) -> None:
        """Persists the index (once per build, not per step), without the steps whose image is
        gone (removed since): the index stays as large as the images it names."""
        with self._lock:
            for k in [k for k, e in self._entries.items() if not self._exists(e.image)]:
                del self._entries[k]
            self._save()

    def entries(self) -> list[Entry]:
        with self._lock:
            gone = [k for k, e in self._entries.items() if not self._exists(e.image)]
            for k in gone:
                del self._entries[k]
            return sorted(self._entries.values(), key=lambda e: e.created)

    def forget(self, keys: list[str]) -> None:
        with self._lock:
            for k in keys:
                self._entries.pop(k, None)
            self._save()


def usage_record(e: Entry, in_use: bool, shared: bool) -> dict:
    """One BuildCache row of /system/df (and of the prune answer's ids)."""
    return {"ID": e.key[:25], "Parent": "", "Parents": None, "Type": "regular", "Description": e.description,
            "InUse": in_use, "Shared": shared, "Size": e.size,
            "CreatedAt": format_time(int(e.created * 1e9)), "LastUsedAt": format_time(int(e.last_used * 1e9)),
            "UsageCount": e.usage}
