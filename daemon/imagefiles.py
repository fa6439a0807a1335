"""`docker save` and `docker load`: image archives to and from the image service (see storage.imagearchive)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from daemon import reference
from daemon.bodyreader import ThreadReader
from daemon.errors import InvalidParameter, NotFound
from storage import tempfiles
from storage.archive import ArchiveError
from storage.imagearchive import SaveItem, read_archive, write_archive

_CHUNK = 1 << 20


class _Cancelled(Exception):
    pass


class ThreadWriter:
    """A file object a worker thread writes into, drained on the event loop.

    Bounded (the writer waits for free slots: backpressure from a slow client) and using no
    executor thread on the loop side, so that many concurrent saves cannot starve each other.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, maxchunks: int = 8) -> None:
        self.loop = loop
        self.q: asyncio.Queue[bytes | BaseException | None] = asyncio.Queue()
        self.slots = threading.Semaphore(maxchunks)
        self.cancelled = threading.Event()

    def write(self, data: bytes) -> int:
        while not self.slots.acquire(timeout=0.5):
            if self.cancelled.is_set():
                raise _Cancelled("client went away")
        if self.cancelled.is_set():
            raise _Cancelled("client went away")
        self.loop.call_soon_threadsafe(self.q.put_nowait, bytes(data))
        return len(data)

    def end(self, item: BaseException | None) -> None:
        self.loop.call_soon_threadsafe(self.q.put_nowait, item)

    def flush(self) -> None:
        pass


def spool_dir(daemon: Any) -> Path:
    d = Path(daemon.cfg.data_root) / "tmp"
    d.mkdir(mode=0o700, exist_ok=True)
    tempfiles.remove_stale(d)  # what a crash mid-load left (only unlocked ones: never live work)
    return d


def save_items(daemon: Any, names: list[str]) -> list[SaveItem]:
    """Resolve the names first: an unknown one is a 404 before any byte of the archive."""
    images = daemon.images
    by_id: dict[str, SaveItem] = {}
    for img, tags in [found for name in names for found in _resolve(images, name)]:
        item = by_id.get(img.id)
        if item is None:
            item = by_id[img.id] = SaveItem(images.blobs.get(img.id), list(img.chain_ids), [])
        for t in tags:
            if t not in item.repo_tags:
                item.repo_tags.append(t)
                r = reference.parse(t)
                item.full_names.append(f"{r.full_name}:{r.tag}")
    return list(by_id.values())


def _resolve(images: Any, name: str) -> list[tuple[Any, list[str]]]:
    """(image, tags to record) for one name of `docker save`: a repository without a tag
    stands for all its tags, as in dockerd; anything else for one image."""
    try:
        bare = reference.parse(name, default_tag=False)
    except InvalidParameter:
        bare = None
    if bare is not None and bare.tag is None and bare.digest is None:
        tagged = sorted(t for t in images.tags if reference.parse(t).name == bare.name)
        if tagged:
            return [(images.get(t), [t]) for t in tagged]
    img = images.get(name)
    tags: list[str] = []
    try:
        ref = reference.parse(name)
        if str(ref) in img.tags and not name.startswith("sha256:"):
            tags = [str(ref)]
    except InvalidParameter:
        pass
    return [(img, tags)]


async def save_stream(daemon: Any, items: list[SaveItem]) -> AsyncIterator[bytes]:
    out = ThreadWriter(asyncio.get_running_loop())
    spool = spool_dir(daemon)

    def work() -> None:
        try:
            write_archive(items, daemon.layers, daemon.images.sources, out, spool)
            out.end(None)
        except _Cancelled:
            return
        except BaseException as e:  # noqa: BLE001 - handed to the loop, which ends the response
            out.end(e)

    # Its own thread: it may wait on a slow client for as long as the download lasts.
    threading.Thread(target=work, name="image-save", daemon=True).start()
    try:
        while True:
            item = await out.q.get()
            if item is None:
                break
            if isinstance(item, BaseException):
                # The 200 and part of the tar are out: cutting the stream is the only signal left.
                raise item
            yield item
            out.slots.release()
    finally:
        out.cancelled.set()


async def load(daemon: Any, body: AsyncIterator[bytes]) -> AsyncIterator[dict]:
    """Unpack an uploaded archive; yields the `Loaded image...` stream records."""
    reader = ThreadReader()
    feeder = asyncio.create_task(reader.feed(body))
    spool = spool_dir(daemon)
    created: list[str] = []
    try:
        loaded = await asyncio.to_thread(read_archive, reader, spool, daemon.layers, daemon.images.sources,
                                         None, created)
    except BaseException as e:
        # A load is all or nothing: the layers it added before failing go again.
        await daemon.images._collect_layers(created)
        if isinstance(e, ArchiveError):
            raise InvalidParameter(str(e)) from e
        raise
    finally:
        reader.close()
        feeder.cancel()
    images = daemon.images
    try:
        # Every name first: a bad one fails the load (as dockerd) before any image is recorded.
        all_tags = [[str(reference.parse(t)) for t in item.repo_tags] for item in loaded]
    except InvalidParameter:
        await daemon.images._collect_layers(created)
        raise
    for item, tags in zip(loaded, all_tags, strict=True):
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
