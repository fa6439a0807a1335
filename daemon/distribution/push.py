"""`docker push`: an image's layers, config and manifest to a registry.

A layer goes up as the blob it was pulled as (gzip or zstd) when it has one; a layer kept as a plain
tar (import, load, commit) is gzip-compressed, deterministically (fixed mtime and level), so the
same layer always gets the same digest and later pushes find it already there. Before uploading,
the registry is asked whether the repository has the blob (`Layer already exists`) and then to
mount it from another repository of the same registry it was pushed to (`Mounted from ...`).
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import io
import json
import os
import shutil
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from daemon.distribution.progress import reporter, status
from daemon.distribution.registries import RegistryClients, remote_path, to_daemon_error
from daemon.errors import NotFound
from daemon.events import EventBus
from daemon.images import reference
from daemon.images.imagefiles import Spool
from daemon.images.reference import Reference
from daemon.images.service import Image, ImageService
from storage import tempfiles
from storage.blobs import BlobStore
from storage.digest import sha256
from storage.imagearchive import layer_tar
from storage.layers import LayerStore
from storage.layersource import MEDIA_GZIP, MEDIA_OCI_GZIP, MEDIA_OCI_ZSTD, LayerSource, LayerSources
from storage.registry import MEDIA_MANIFEST_V2, MEDIA_OCI_MANIFEST, RegistryClient, RegistryError

MEDIA_DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
MEDIA_OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
_GZIP_LEVEL = 1  # fast; a fixed level (and mtime 0) keeps the digest of a layer stable


@dataclass
class Pusher:
    images: ImageService
    blobs: BlobStore
    layers: LayerStore
    sources: LayerSources
    registries: RegistryClients
    events: EventBus
    spool: Spool
    # daemon.json max-concurrent-uploads; SIGHUP changes it for the pushes that start after.
    max_concurrent_uploads: int = 5

    async def push(self, name: str, tag: str, auth_header: str | None) -> AsyncIterator[dict]:
        ref = reference.parse(name, default_tag=False)
        images = self.images
        if tag:
            tags = [tag]
        elif ref.tag:
            tags = [ref.tag]
        else:  # no tag: every tag of the repository, as dockerd
            tags = sorted(t.rsplit(":", 1)[1] for t in images.tags if t.rsplit(":", 1)[0] == ref.name)
        if not tags:
            raise NotFound(f"An image does not exist locally with the tag: {ref.name}")
        targets = [(t, images.find(f"{ref.name}:{t}")) for t in tags]
        found: list[tuple[str, Image]] = []
        for t, img in targets:
            if img is None:
                raise NotFound(f"An image does not exist locally with the tag: {ref.name}:{t}")
            found.append((t, img))
        client = self.registries.client(ref.domain, auth_header)
        path = remote_path(ref)
        try:
            try:
                await asyncio.to_thread(client.ping)
            except Exception as e:  # noqa: BLE001 - mapped to the API's errors
                raise to_daemon_error(e) from e
            yield {"status": f"The push refers to repository [{ref.full_name}]"}
            for t, img in found:
                async for rec in self._push_one(client, ref, path, t, img):
                    yield rec
        finally:
            client.close()

    async def _push_one(self, client: RegistryClient, ref: Reference, path: str, tag: str, img: Image
                        ) -> AsyncIterator[dict]:
        q: asyncio.Queue[dict | None] = asyncio.Queue()
        loop = asyncio.get_running_loop()
        config = json.loads(self.blobs.get(img.id))
        diff_ids = list(config.get("rootfs", {}).get("diff_ids", []))
        for d in reversed(diff_ids):
            q.put_nowait(status("Preparing", d[7:19]))

        def push_reporter(short: str, total: int) -> Callable[[int], None]:
            return reporter(loop, q, "Pushing", short, total)

        def report_status(rec: dict) -> None:
            loop.call_soon_threadsafe(q.put_nowait, rec)

        where = f"{ref.domain}/{path}"

        async def work() -> list[dict]:
            try:
                sem = asyncio.Semaphore(self.max_concurrent_uploads)

                async def one(i: int) -> dict:
                    async with sem:
                        return await asyncio.to_thread(self._push_layer, client, path, where, img.chain_ids[i],
                                                       report_status, push_reporter)
                return list(await asyncio.gather(*(one(i) for i in range(len(img.chain_ids)))))
            finally:
                q.put_nowait(None)

        runner = asyncio.create_task(work())
        try:
            while (rec := await q.get()) is not None:
                yield rec
            descs = await runner
        except Exception as e:  # noqa: BLE001 - mapped to the API's errors
            raise to_daemon_error(e) from e
        finally:
            if not runner.done():
                runner.cancel()
        # A layer regenerated from its files (no tar kept) has a new diff id: the config follows it.
        new_diff_ids = [d.pop("diff_id") for d in descs]
        raw = self.blobs.get(img.id)
        if new_diff_ids != diff_ids:
            config["rootfs"]["diff_ids"] = new_diff_ids
            raw = json.dumps(config, separators=(",", ":")).encode()
        oci = any(d["mediaType"] == MEDIA_OCI_ZSTD for d in descs)
        try:
            config_digest = "sha256:" + hashlib.sha256(raw).hexdigest()
            if not await asyncio.to_thread(client.blob_exists, path, config_digest):
                await asyncio.to_thread(client.upload_blob, path, config_digest, io.BytesIO(raw), len(raw))
            manifest = {
                "schemaVersion": 2,
                "mediaType": MEDIA_OCI_MANIFEST if oci else MEDIA_MANIFEST_V2,
                "config": {"mediaType": MEDIA_OCI_CONFIG if oci else MEDIA_DOCKER_CONFIG, "size": len(raw),
                           "digest": config_digest},
                "layers": [{**d, "mediaType": (d["mediaType"] if oci and d["mediaType"] == MEDIA_OCI_ZSTD
                                               else MEDIA_OCI_GZIP if oci else MEDIA_GZIP)} for d in descs],
            }
            mraw = json.dumps(manifest, indent=3).encode()
            await asyncio.to_thread(client.put_manifest, path, tag, mraw, manifest["mediaType"])
        except Exception as e:  # noqa: BLE001 - mapped to the API's errors
            raise to_daemon_error(e) from e
        digest = "sha256:" + hashlib.sha256(mraw).hexdigest()
        if raw == self.blobs.get(img.id):
            await self.images.register(img.config, img.chain_ids, img.size, [],
                                       repo_digests=[f"{ref.name}@{digest}"], raw=raw)
        self.events.publish("image", "push", img.id, {"name": f"{ref.name}:{tag}"})
        yield {"status": f"{tag}: digest: {digest} size: {len(mraw)}"}
        yield {"progressDetail": {}, "aux": {"Tag": tag, "Digest": digest, "Size": len(mraw)}}

    def _push_layer(self, client: RegistryClient, path: str, where: str, chain: str,
                    report_status: Callable[[dict], None],
                    push_reporter: Callable[[str, int], Callable[[int], None]]) -> dict:
        """Blocking: one layer into the repository; returns its manifest descriptor (+ its diff id)."""
        layer = self.layers.get(chain)
        sources = self.sources
        short = layer.diff_id[7:19]
        src = sources.get(layer.diff_id)
        spool = self.spool.dir()
        known = None
        if src is not None:
            known = src.pushed.get(where) or next(iter(src.pushed.values()), None)
            if src.media_type in (MEDIA_GZIP, MEDIA_OCI_GZIP, MEDIA_OCI_ZSTD):
                known = src.digest
        if known is not None:
            size = src.size if src is not None and known == src.digest else 0
            media = src.media_type if src is not None and known == src.digest else MEDIA_GZIP
            if client.blob_exists(path, known):
                report_status(status("Layer already exists", short))
                sources.mark_pushed(layer.diff_id, where, known)
                return _desc(media, known, size or _remote_size(client, path, known), layer.diff_id)
            for other, digest in (src.pushed.items() if src is not None else []):
                dom, _, repo = other.partition("/")
                if dom == where.split("/", 1)[0] and repo != path and digest == known:
                    try:
                        if client.mount_blob(path, known, repo):
                            report_status(status(f"Mounted from {repo}", short))
                            sources.mark_pushed(layer.diff_id, where, known)
                            return _desc(media, known, size or _remote_size(client, path, known), layer.diff_id)
                    except RegistryError:
                        pass
        f, digest, size, media, diff_id = self._blob_to_push(chain, src, spool)
        with f:
            if client.blob_exists(path, digest):
                report_status(status("Layer already exists", short))
            else:
                client.upload_blob(path, digest, f, size, push_reporter(short, size))
                report_status(status("Pushed", short))
        sources.mark_pushed(diff_id, where, digest)
        return _desc(media, digest, size, diff_id)

    def _blob_to_push(self, chain: str, src: LayerSource | None, spool: Path
                      ) -> tuple[BinaryIO, str, int, str, str]:
        """(open file, digest, size, media type, diff id) of what goes up for this layer."""
        layer = self.layers.get(chain)
        if src is not None and src.media_type in (MEDIA_GZIP, MEDIA_OCI_GZIP, MEDIA_OCI_ZSTD):
            return self.blobs.open(src.digest), src.digest, src.size, src.media_type, layer.diff_id
        tar, _ = layer_tar(self.layers, self.sources, chain, spool)
        diff_id = layer.diff_id
        out = os.fdopen(tempfiles.anonymous_file(spool), "w+b")
        try:
            with tar:
                if src is None:  # regenerated: its diff id is whatever this tar hashes to
                    h = sha256()
                    while chunk := tar.read(1 << 20):
                        h.update(chunk)
                    diff_id = "sha256:" + h.hexdigest()
                    tar.seek(0)
                hasher = _HashingWriter(out)
                with gzip.GzipFile(filename="", mode="wb", fileobj=hasher, compresslevel=_GZIP_LEVEL,
                                   mtime=0) as gz:
                    shutil.copyfileobj(tar, gz, 1 << 20)
            size = out.tell()
            out.seek(0)
        except BaseException:
            out.close()
            raise
        return out, "sha256:" + hasher.h.hexdigest(), size, MEDIA_GZIP, diff_id


def _desc(media: str, digest: str, size: int, diff_id: str) -> dict:
    return {"mediaType": media, "size": size, "digest": digest, "diff_id": diff_id}


def _remote_size(client: RegistryClient, path: str, digest: str) -> int:
    r = client.request("HEAD", f"/v2/{path}/blobs/{digest}", f"repository:{path}:pull")
    return int(r.headers.get("Content-Length") or 0)


class _HashingWriter:
    def __init__(self, f: BinaryIO) -> None:
        self.f = f
        self.h = sha256()

    def write(self, data: bytes) -> int:
        self.h.update(data)
        return self.f.write(data)

    def flush(self) -> None:
        self.f.flush()

