"""`docker save` and `docker load`: image archives to and from the image service (see storage.imagearchive),
and the spool directory they (and push) write their temporary files in."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from daemon.errors import InvalidParameter
from daemon.events import EventBus
from daemon.images import reference
from daemon.images.service import Image, ImageService
from daemon.util.bodyreader import ThreadReader
from daemon.util.threadstream import thread_stream
from storage import tempfiles
from storage.archive import ArchiveError
from storage.imagearchive import SaveItem, read_archive, write_archive
from storage.layers import LayerStore
from storage.layersource import LayerSources

_SAVE_CHUNKS = 8  # queued tar chunks between the writer thread and the response


class Spool:
    """The directory of temporary files (the data root's tmp/); made on first use."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def dir(self) -> Path:
        self.path.mkdir(mode=0o700, exist_ok=True)
        tempfiles.remove_stale(self.path)  # what a crash mid-load left (only unlocked ones: never live work)
        return self.path


@dataclass
class ImageArchives:
    images: ImageService
    layers: LayerStore
    sources: LayerSources
    events: EventBus
    spool: Spool

    def save(self, names: list[str]) -> AsyncIterator[bytes]:
        """The archive of the named images. The names are resolved now: an unknown one is a 404
        before any byte of the archive."""
        return self._save_stream(self._save_items(names))

    def _save_items(self, names: list[str]) -> list[SaveItem]:
        images = self.images
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

    async def _save_stream(self, items: list[SaveItem]) -> AsyncIterator[bytes]:
        spool = self.spool.dir()

        def work(out: Any) -> None:
            write_archive(items, self.layers, self.sources, out, spool)

        # An error once the 200 and part of the tar are out: cutting the stream is the only signal left.
        async for chunk in thread_stream(work, name="image-save", maxchunks=_SAVE_CHUNKS):
            yield chunk

    async def load(self, body: AsyncIterator[bytes]) -> AsyncIterator[dict]:
        """Unpack an uploaded archive; yields the `Loaded image...` stream records."""
        reader = ThreadReader()
        feeder = asyncio.create_task(reader.feed(body))
        spool = self.spool.dir()
        created: list[str] = []
        images = self.images
        try:
            loaded = await asyncio.to_thread(read_archive, reader, spool, self.layers, self.sources, None, created)
        except BaseException as e:
            # A load is all or nothing: the layers it added before failing go again.
            await images.collect_layers(created)
            if isinstance(e, ArchiveError):
                raise InvalidParameter(str(e)) from e
            raise
        finally:
            reader.close()
            feeder.cancel()
        try:
            # Every name first: a bad one fails the load (as dockerd) before any image is recorded.
            all_tags = [[str(reference.parse(t)) for t in item.repo_tags] for item in loaded]
        except InvalidParameter:
            await images.collect_layers(created)
            raise
        for item, tags in zip(loaded, all_tags, strict=True):
            size = sum(layer.size for layer in item.layers)
            img = await images.register(item.config, [layer.chain_id for layer in item.layers], size, tags,
                                        raw=item.config_raw)
            for t in tags:
                self.events.publish("image", "load", img.id, {"name": t})
                yield {"stream": f"Loaded image: {t}\n"}
            if not tags:
                self.events.publish("image", "load", img.id, {"name": img.id})
                yield {"stream": f"Loaded image ID: {img.id}\n"}


def _resolve(images: ImageService, name: str) -> list[tuple[Image, list[str]]]:
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
