"""`docker save` and `docker load`: image archives to and from the image service (see storage.imagearchive)."""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from daemon import reference
from daemon.bodyreader import ThreadReader
from daemon.errors import InvalidParameter, NotFound
from storage.archive import ArchiveError
from storage.imagearchive import SaveItem, read_archive, write_archive

_CHUNK = 1 << 20


class _Cancelled(Exception):
    pass


class ThreadWriter:
    """A file object a worker thread writes into, drained on the event loop (bounded: backpressure)."""

    def __init__(self, maxchunks: int = 8) -> None:
        self.q: queue.Queue[bytes | BaseException | None] = queue.Queue(maxsize=maxchunks)
        self.cancelled = threading.Event()

    def write(self, data: bytes) -> int:
        while True:
            if self.cancelled.is_set():
                raise _Cancelled("client went away")
            try:
                self.q.put(bytes(data), timeout=0.5)
                return len(data)
            except queue.Full:
                continue

    def flush(self) -> None:
        pass


def _spool_dir(daemon: Any) -> Path:
    d = Path(daemon.cfg.data_root) / "tmp"
    d.mkdir(mode=0o700, exist_ok=True)
    return d


def save_items(daemon: Any, names: list[str]) -> list[SaveItem]:
    """Resolve the names first: an unknown one is a 404 before any byte of the archive."""
    images = daemon.images
    by_id: dict[str, SaveItem] = {}
    for name in names:
        img = images.get(name)
        item = by_id.get(img.id)
        if item is None:
            item = by_id[img.id] = SaveItem(images.blobs.get(img.id), list(img.chain_ids), [])
        tags: list[str] = []
        try:
            ref = reference.parse(name)
            if str(ref) in img.tags and not name.startswith("sha256:"):
                tags = [str(ref)]
        except InvalidParameter:
            pass
        for t in tags:
            if t not in item.repo_tags:
                item.repo_tags.append(t)
                r = reference.parse(t)
                item.full_names.append(f"{r.full_name}:{r.tag}")
    return list(by_id.values())


async def save_stream(daemon: Any, items: list[SaveItem]) -> AsyncIterator[bytes]:
    out = ThreadWriter()
    spool = _spool_dir(daemon)

    def work() -> None:
        try:
            write_archive(items, daemon.layers, daemon.images.sources, out, spool)
            out.q.put(None)
        except _Cancelled:
            return
        except BaseException as e:  # noqa: BLE001 - handed to the loop, which ends the response
            out.q.put(e)

    worker = asyncio.create_task(asyncio.to_thread(work))
    try:
        while True:
            item = await asyncio.to_thread(out.q.get)
            if item is None:
                break
            if isinstance(item, BaseException):
                # The 200 and part of the tar are out: cutting the stream is the only signal left.
                raise item
            yield item
    finally:
        out.cancelled.set()
        while not out.q.empty():
            out.q.get_nowait()
        await asyncio.shield(worker)


async def load(daemon: Any, body: AsyncIterator[bytes]) -> AsyncIterator[dict]:
    """Unpack an uploaded archive; yields the `Loaded image...` stream records."""
    reader = ThreadReader()
    feeder = asyncio.create_task(reader.feed(body))
    spool = _spool_dir(daemon)
    try:
        loaded = await asyncio.to_thread(read_archive, reader, spool, daemon.layers, daemon.images.sources)
    except ArchiveError as e:
        raise InvalidParameter(str(e)) from e
    finally:
        reader.close()
        feeder.cancel()
    images = daemon.images
    for item in loaded:
        tags = []
        for t in item.repo_tags:
            try:
                tags.append(str(reference.parse(t)))
            except InvalidParameter:
                continue  # a bad name in the archive: the image still loads, untagged
        size = sum(layer.size for layer in item.layers)
        img = await images._register(item.config, [layer.chain_id for layer in item.layers], size, tags,
                                     raw=item.config_raw)
        for t in tags:
            images.events.publish("image", "load", img.id, {"name": t})
            yield {"stream": f"Loaded image: {t}\n"}
        if not tags:
            images.events.publish("image", "load", img.id, {"name": img.id})
            yield {"stream": f"Loaded image ID: {img.id}\n"}


def not_found(name: str) -> NotFound:
    return NotFound(f"No such image: {name}")
