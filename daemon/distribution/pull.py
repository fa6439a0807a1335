"""`docker pull`: images from registries (storage.registry) into the image service.

Pull: manifest (an index resolves to this platform's manifest), config, then the missing layers
download in parallel into the blob store, each verified against its digest before anything uses
it (BlobStore.writer(expected=...)); they are unpacked in order, each checked against the config's
diff id, and the image is registered last. Until then nothing shows the image; a layer appears in
the layer store only complete (atomic rename), so an interrupted pull leaves only complete layers
and verified blobs behind, which the next pull reuses instead of downloading again.

The progress records are dockerd's (`Pulling fs layer`, `Downloading` with progressDetail,
`Verifying Checksum`, `Download complete`, `Extracting`, `Pull complete`...), which the CLI draws.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from daemon.distribution.progress import reporter, status
from daemon.distribution.registries import RegistryClients, remote_path, to_daemon_error
from daemon.errors import DaemonError, InvalidParameter, NotFound
from daemon.events import EventBus
from daemon.images import reference
from daemon.images.reference import Reference
from daemon.images.service import ImageService
from storage.blobs import BlobStore
from storage.digest import DigestMismatch, expect
from storage.layers import Layer, LayerStore, chain_id
from storage.layersource import LAYER_MEDIA_TYPES, LayerSources, import_blob
from storage.registry import (
    CHUNK,
    MEDIA_MANIFEST_LIST,
    MEDIA_MANIFEST_V2,
    MEDIA_OCI_INDEX,
    MEDIA_OCI_MANIFEST,
    MEDIA_SCHEMA1,
    RegistryClient,
    RegistryError,
    describe_error,
)
from storage.registryplatform import InvalidPlatform, select
from storage.registryplatform import parse as parse_platform

log = logging.getLogger("pydockerd.distribution")
MAX_CONCURRENT_DOWNLOADS = 3


class _Cancelled(Exception):
    pass


def pull_reference(from_image: str, tag: str) -> tuple[Reference, bool]:
    """(reference, all_tags) from /images/create's fromImage and tag."""
    if tag and tag.startswith("sha256:"):
        ref = reference.parse(f"{from_image}@{tag}")
        return Reference(ref.name, None, ref.digest), False
    if tag:
        return reference.parse_repo_tag(from_image, tag), False
    ref = reference.parse(from_image, default_tag=False)
    return ref, ref.tag is None and ref.digest is None


async def _resolve(client: RegistryClient, path: str, ident: str, platform: str
                   ) -> tuple[dict, str]:
    """The image manifest (an index resolved to `platform`) and the digest to record."""
    raw, media, digest = await asyncio.to_thread(client.get_manifest, path, ident)
    if media in MEDIA_SCHEMA1:
        raise RegistryError("Docker Image Format v1 and Docker Image manifest version 2, schema 1 are not "
                            "supported: ask the publisher to update the image")
    doc = json.loads(raw)
    if media in (MEDIA_MANIFEST_LIST, MEDIA_OCI_INDEX):
        chosen = select(doc.get("manifests") or [], platform)
        if chosen is None:
            want = platform or "this host's platform"
            raise NotFound(f"no matching manifest for {want} in the manifest list entries")
        raw, media, _ = await asyncio.to_thread(client.get_manifest, path, chosen["digest"])
        doc = json.loads(raw)
        if media not in (MEDIA_MANIFEST_V2, MEDIA_OCI_MANIFEST):
            raise RegistryError(f"unsupported manifest media type {media} in the manifest list")
    elif media not in (MEDIA_MANIFEST_V2, MEDIA_OCI_MANIFEST):
        raise RegistryError(f"unsupported manifest media type: {media or 'none'}")
    if not isinstance(doc.get("config"), dict) or not isinstance(doc.get("layers"), list):
        raise RegistryError("invalid manifest: no config or no layers")
    for layer in doc["layers"]:
        if not isinstance(layer, dict) or layer.get("mediaType") not in LAYER_MEDIA_TYPES:
            kind = layer.get("mediaType") if isinstance(layer, dict) else layer
            raise RegistryError(f"unsupported layer media type: {kind}")
    return doc, digest


@dataclass
class Puller:
    images: ImageService
    blobs: BlobStore
    layers: LayerStore
    sources: LayerSources
    registries: RegistryClients
    events: EventBus
    # daemon.json max-concurrent-downloads; SIGHUP changes it for the pulls that start after.
    max_concurrent_downloads: int = MAX_CONCURRENT_DOWNLOADS

    async def pull(self, from_image: str, tag: str, platform: str, auth_header: str | None
                   ) -> AsyncIterator[dict]:
        ref, all_tags = pull_reference(from_image, tag)
        try:
            parse_platform(platform)
        except InvalidPlatform as e:
            raise InvalidParameter(str(e)) from None
        client = await self._client(ref, auth_header, platform, all_tags)
        try:
            if all_tags:
                try:
                    tags = await asyncio.to_thread(client.tags, remote_path(ref))
                except Exception as e:  # noqa: BLE001 - mapped to the API's errors
                    raise to_daemon_error(e, ref) from e
                for t in sorted(tags):
                    async for rec in self._pull_one(client, Reference(ref.name, t), platform, quiet_end=True):
                        yield rec
                yield {"status": f"Status: Downloaded newer image for {ref.name}"}
            else:
                async for rec in self._pull_one(client, ref, platform):
                    yield rec
        finally:
            client.close()

    async def _client(self, ref: Reference, auth_header: str | None, platform: str, all_tags: bool
                      ) -> RegistryClient:
        """The first mirror that has the image (a Docker Hub image, --registry-mirror), else the
        registry of its name. A mirror that fails is passed over, as dockerd's fallback does."""
        for mirror in self.registries.mirror_clients(ref.domain):
            try:
                if all_tags:
                    await asyncio.to_thread(mirror.tags, remote_path(ref))
                else:
                    await _resolve(mirror, remote_path(ref), ref.digest or ref.tag or "latest", platform)
            except Exception as e:  # noqa: BLE001 - any failure means: try the next endpoint
                log.info("mirror %s: %s; trying the next endpoint", mirror.domain, e)
                mirror.close()
                continue
            log.debug("pulling %s from the mirror %s", ref, mirror.domain)
            return mirror
        return self.registries.client(ref.domain, auth_header)

    async def _pull_one(self, client: RegistryClient, ref: Reference, platform: str,
                        quiet_end: bool = False) -> AsyncIterator[dict]:
        path = remote_path(ref)
        ident = ref.digest or ref.tag or "latest"
        images = self.images
        try:
            manifest, digest = await _resolve(client, path, ident, platform)
            yield {"status": f"Pulling from {path}", "id": ident}
            config_raw = await asyncio.to_thread(client.get_blob, path, manifest["config"]["digest"])
            config = json.loads(config_raw)
        except DaemonError:
            raise
        except Exception as e:  # noqa: BLE001 - mapped to the API's errors
            raise to_daemon_error(e, ref) from e
        diff_ids = list((config.get("rootfs") or {}).get("diff_ids") or [])
        descs = manifest["layers"]
        if len(diff_ids) != len(descs):
            raise DaemonError(f"invalid image: {len(descs)} layers in the manifest, {len(diff_ids)} in the config")
        chains: list[str] = []
        for d in diff_ids:
            chains.append(chain_id(chains[-1] if chains else None, d))
        # Compressed sizes: a layer announced past the builtin sha256's limit is big for sure.
        expect(max((d["size"] for d in descs if isinstance(d.get("size"), int)), default=0))
        image_id = "sha256:" + hashlib.sha256(config_raw).hexdigest()
        shown = str(ref)
        before = images.find(shown) if ref.tag else None
        async for rec in self._layers(client, path, descs, diff_ids, chains):
            yield rec
        size = sum(self.layers.get(c).size for c in chains)
        # Where each layer is known to exist: a later push to this registry mounts it from there.
        where = f"{ref.domain}/{path}"
        for desc, diff_id in zip(descs, diff_ids, strict=True):
            await asyncio.to_thread(self.sources.mark_pushed, diff_id, where, desc["digest"])
        tags = [str(Reference(ref.name, ref.tag))] if ref.tag else []
        img = await images.register(config, chains, size, tags, repo_digests=[f"{ref.name}@{digest}"],
                                    raw=config_raw)
        self.events.publish("image", "pull", img.id, {"name": shown})
        yield {"status": f"Digest: {digest}"}
        if quiet_end:
            return
        up_to_date = before is not None and before.id == image_id
        yield {"status": f"Status: {'Image is up to date' if up_to_date else 'Downloaded newer image'} for {shown}"}

    async def _layers(self, client: RegistryClient, path: str, descs: list[dict], diff_ids: list[str],
                      chains: list[str]) -> AsyncIterator[dict]:
        loop = asyncio.get_running_loop()
        q: asyncio.Queue[dict | None] = asyncio.Queue()
        cancel = threading.Event()
        new_blobs: list[str] = []
        missing = [i for i, c in enumerate(chains) if not self.layers.exists(c)]
        for i, desc in enumerate(descs):
            short = desc["digest"].split(":", 1)[-1][:12]
            q.put_nowait(status("Pulling fs layer" if i in missing else "Already exists", short))
        sem = asyncio.Semaphore(self.max_concurrent_downloads)

        async def fetch(i: int) -> None:
            desc = descs[i]
            short = desc["digest"].split(":", 1)[-1][:12]
            async with sem:
                new = await asyncio.to_thread(_download, client, path, desc, self.blobs, cancel,
                                              reporter(loop, q, "Downloading", short, int(desc.get("size") or 0)))
            if new:
                new_blobs.append(desc["digest"])
            q.put_nowait(status("Verifying Checksum", short))
            q.put_nowait(status("Download complete", short))

        async def run() -> None:
            tasks = {i: asyncio.create_task(fetch(i)) for i in missing}
            try:
                parent: str | None = None
                for i, desc in enumerate(descs):
                    if i in tasks:
                        await tasks[i]
                        short = desc["digest"].split(":", 1)[-1][:12]
                        layer = await asyncio.to_thread(
                            self._extract, desc, parent, diff_ids[i],
                            reporter(loop, q, "Extracting", short, int(desc.get("size") or 0)))
                        q.put_nowait(status("Pull complete", short))
                        parent = layer.chain_id
                    else:
                        parent = chains[i]
            finally:
                cancel.set()
                for t in tasks.values():
                    t.cancel()
                await asyncio.gather(*tasks.values(), return_exceptions=True)
                q.put_nowait(None)

        runner = asyncio.create_task(run())
        ok = False
        try:
            while (rec := await q.get()) is not None:
                yield rec
            await runner
            ok = True
        except Exception as e:  # noqa: BLE001 - mapped to the API's errors
            raise to_daemon_error(e) from e
        finally:
            cancel.set()
            if not runner.done():
                runner.cancel()
                await asyncio.gather(runner, return_exceptions=True)
            if not ok:  # downloaded but never used: not worth keeping without an image
                for d in new_blobs:
                    if not self._is_source(d):
                        self.blobs.delete(d)

    def _is_source(self, digest: str) -> bool:
        for name in os.listdir(self.sources.root):
            if name.endswith(".json"):
                src = self.sources.get("sha256:" + name[:-5])
                if src is not None and src.digest == digest:
                    return True
        return False

    def _extract(self, desc: dict, parent: str | None, diff_id: str, report: Callable[[int], None]) -> Layer:
        try:
            return import_blob(self.layers, self.sources, desc["digest"], desc["mediaType"], parent,
                               expected_diff_id=diff_id, progress=report)
        except DigestMismatch as e:
            self.blobs.delete(desc["digest"])  # verified, yet not the layer the config names
            raise RegistryError(f"layer {desc['digest']}: {e}") from None
        except ValueError as e:  # ArchiveError: a corrupt or hostile layer
            self.blobs.delete(desc["digest"])
            raise RegistryError(f"failed to register layer {desc['digest'][7:19]}: {e}") from None


def _download(client: RegistryClient, path: str, desc: dict, blobs: BlobStore, cancel: threading.Event,
              report: Callable[[int], None]) -> bool:
    """Fetch one blob into the store, verified; False if it was there already."""
    import urllib3  # loaded with the client already (storage/registry.py)

    digest = desc["digest"]
    if blobs.exists(digest):  # stored only ever after verification: usable as is
        return False
    short = digest.split(":", 1)[-1][:12]
    r = client.open_blob(path, digest)
    try:
        with blobs.writer(expected=digest) as w:
            while chunk := r.read(CHUNK):
                if cancel.is_set():
                    raise _Cancelled("pull cancelled")
                w.write(chunk)
                report(w.size)
            if desc.get("size") and w.size != desc["size"]:
                raise RegistryError(f"filesystem layer verification failed for digest {digest}: "
                                    f"got {w.size} bytes, the manifest says {desc['size']}")
    except DigestMismatch:
        raise RegistryError(f"filesystem layer verification failed for digest {digest}") from None
    except urllib3.exceptions.HTTPError as e:
        raise RegistryError(f"error pulling layer {short}: {describe_error(e)}") from None
    finally:
        r.release_conn()
    return True
