"""Pull, push and login: images between the image service and registries (storage.registry).

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
import os
import threading
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import urllib3

from daemon.errors import DaemonError, InvalidParameter, NotFound
from daemon.images import reference
from daemon.images.reference import Reference
from storage.digest import DigestMismatch
from storage.layers import chain_id
from storage.layersource import LAYER_MEDIA_TYPES, import_blob
from storage.registry import (
    CHUNK,
    MEDIA_MANIFEST_LIST,
    MEDIA_MANIFEST_V2,
    MEDIA_OCI_INDEX,
    MEDIA_OCI_MANIFEST,
    MEDIA_SCHEMA1,
    RegistryClient,
    RegistryError,
    Unauthorized,
    decode_auth_header,
    describe_error,
)
from storage.registryplatform import InvalidPlatform, select
from storage.registryplatform import parse as parse_platform

MAX_CONCURRENT_DOWNLOADS = 3
_TICK = 0.1  # seconds between two progress records of one layer


class AuthError(DaemonError):
    status = 401


class _Cancelled(Exception):
    pass


def human_size(n: float) -> str:
    """Go's units.HumanSize: decimal units, 4 significant digits ("36.56kB", "1.032MB")."""
    units = ["B", "kB", "MB", "GB", "TB", "PB"]
    i = 0
    while n >= 1000 and i < len(units) - 1:
        n /= 1000
        i += 1
    return f"{n:.4g}{units[i]}"


def progress(status: str, ident: str, current: int, total: int) -> dict:
    """A progress record as dockerd writes it (the bar is 50 wide, as jsonmessage draws it)."""
    rec: dict[str, Any] = {"status": status, "progressDetail": {"current": current}}
    if total > 0:
        rec["progressDetail"]["total"] = total
        bars = min(50, int(50 * current / total))
        rec["progress"] = f"[{'=' * bars}>{' ' * (50 - bars)}]  {human_size(current)}/{human_size(total)}"
    else:
        rec["progress"] = human_size(current)
    rec["id"] = ident
    return rec


def _status(status: str, ident: str) -> dict:
    return {"status": status, "progressDetail": {}, "id": ident}


def remote_path(ref: Reference) -> str:
    """The repository path on its registry: library/busybox, cap/busybox."""
    full = ref.full_name
    return full.split("/", 1)[1] if "/" in full else full


def _daemon_error(e: Exception, ref: Reference | None = None) -> DaemonError:
    if isinstance(e, DaemonError):
        return e
    if isinstance(e, DigestMismatch):
        return DaemonError(str(e))
    if isinstance(e, Unauthorized) or isinstance(e, RegistryError) and e.status == 403:
        if ref is not None and ref.domain == "docker.io":
            return NotFound(f"pull access denied for {ref.name}, repository does not exist or may require "
                            f"'docker login': denied: {e.message}")
        # Not a 401: the CLI answers a 401 to a pull or push by prompting for a login.
        return DaemonError(e.message)
    if isinstance(e, RegistryError):
        if e.code == "MANIFEST_UNKNOWN" and ref is not None:
            return NotFound(f"manifest for {ref} not found: manifest unknown: {e.message}")
        if e.status == 404 or e.code in ("MANIFEST_UNKNOWN", "NAME_UNKNOWN", "BLOB_UNKNOWN"):
            return NotFound(e.message)
        return DaemonError(e.message)
    return DaemonError(str(e) or type(e).__name__)


def _client(daemon: Any, domain: str, auth_header: str | None) -> RegistryClient:
    return RegistryClient(domain, decode_auth_header(auth_header), daemon.cfg.insecure_registries or [])


# ------------------------------------------------------------------------------------------ pull


def pull_reference(from_image: str, tag: str) -> tuple[Reference, bool]:
    """(reference, all_tags) from /images/create's fromImage and tag."""
    if tag and tag.startswith("sha256:"):
        ref = reference.parse(f"{from_image}@{tag}")
        return Reference(ref.name, None, ref.digest), False
    if tag:
        return reference.parse_repo_tag(from_image, tag), False
    ref = reference.parse(from_image, default_tag=False)
    return ref, ref.tag is None and ref.digest is None


async def pull(daemon: Any, from_image: str, tag: str, platform: str, auth_header: str | None
               ) -> AsyncIterator[dict]:
    ref, all_tags = pull_reference(from_image, tag)
    try:
        parse_platform(platform)
    except InvalidPlatform as e:
        raise InvalidParameter(str(e)) from None
    client = _client(daemon, ref.domain, auth_header)
    try:
        if all_tags:
            try:
                tags = await asyncio.to_thread(client.tags, remote_path(ref))
            except Exception as e:  # noqa: BLE001 - mapped to the API's errors
                raise _daemon_error(e, ref) from e
            for t in sorted(tags):
                async for rec in _pull_one(daemon, client, Reference(ref.name, t), platform, quiet_end=True):
                    yield rec
            yield {"status": f"Status: Downloaded newer image for {ref.name}"}
        else:
            async for rec in _pull_one(daemon, client, ref, platform):
                yield rec
    finally:
        client.close()


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


async def _pull_one(daemon: Any, client: RegistryClient, ref: Reference, platform: str,
                    quiet_end: bool = False) -> AsyncIterator[dict]:
    path = remote_path(ref)
    ident = ref.digest or ref.tag or "latest"
    images = daemon.images
    try:
        manifest, digest = await _resolve(client, path, ident, platform)
        yield {"status": f"Pulling from {path}", "id": ident}
        config_raw = await asyncio.to_thread(client.get_blob, path, manifest["config"]["digest"])
        config = json.loads(config_raw)
    except DaemonError:
        raise
    except Exception as e:  # noqa: BLE001 - mapped to the API's errors
        raise _daemon_error(e, ref) from e
    diff_ids = list((config.get("rootfs") or {}).get("diff_ids") or [])
    descs = manifest["layers"]
    if len(diff_ids) != len(descs):
        raise DaemonError(f"invalid image: {len(descs)} layers in the manifest, {len(diff_ids)} in the config")
    chains: list[str] = []
    for d in diff_ids:
        chains.append(chain_id(chains[-1] if chains else None, d))
    image_id = "sha256:" + hashlib.sha256(config_raw).hexdigest()
    shown = str(ref)
    before = images.find(shown) if ref.tag else None
    async for rec in _layers(daemon, client, path, descs, diff_ids, chains):
        yield rec
    size = sum(daemon.layers.get(c).size for c in chains)
    # Where each layer is known to exist: a later push to this registry mounts it from there.
    where = f"{ref.domain}/{path}"
    for desc, diff_id in zip(descs, diff_ids, strict=True):
        await asyncio.to_thread(images.sources.mark_pushed, diff_id, where, desc["digest"])
    tags = [str(Reference(ref.name, ref.tag))] if ref.tag else []
    img = await images._register(config, chains, size, tags, repo_digests=[f"{ref.name}@{digest}"], raw=config_raw)
    images.events.publish("image", "pull", img.id, {"name": shown})
    yield {"status": f"Digest: {digest}"}
    if quiet_end:
        return
    up_to_date = before is not None and before.id == image_id
    yield {"status": f"Status: {'Image is up to date' if up_to_date else 'Downloaded newer image'} for {shown}"}


async def _layers(daemon: Any, client: RegistryClient, path: str, descs: list[dict], diff_ids: list[str],
                  chains: list[str]) -> AsyncIterator[dict]:
    loop = asyncio.get_running_loop()
    q: asyncio.Queue[dict | None] = asyncio.Queue()
    cancel = threading.Event()
    blobs = daemon.blobs
    new_blobs: list[str] = []
    missing = [i for i, c in enumerate(chains) if not daemon.layers.exists(c)]
    for i, desc in enumerate(descs):
        short = desc["digest"].split(":", 1)[-1][:12]
        q.put_nowait(_status("Pulling fs layer" if i in missing else "Already exists", short))
    sem = asyncio.Semaphore(MAX_CONCURRENT_DOWNLOADS)

    def reporter(status: str, short: str, total: int) -> Callable[[int], None]:
        last = [0.0, -1]

        def report(done: int) -> None:
            now = time.monotonic()
            if done != last[1] and (now - last[0] >= _TICK or done >= total):
                last[0], last[1] = now, done
                loop.call_soon_threadsafe(q.put_nowait, progress(status, short, done, total))
        return report

    async def fetch(i: int) -> None:
        desc = descs[i]
        short = desc["digest"].split(":", 1)[-1][:12]
        async with sem:
            new = await asyncio.to_thread(_download, client, path, desc, blobs, cancel,
                                          reporter("Downloading", short, int(desc.get("size") or 0)))
        if new:
            new_blobs.append(desc["digest"])
        q.put_nowait(_status("Verifying Checksum", short))
        q.put_nowait(_status("Download complete", short))

    async def run() -> None:
        tasks = {i: asyncio.create_task(fetch(i)) for i in missing}
        try:
            parent: str | None = None
            for i, desc in enumerate(descs):
                if i in tasks:
                    await tasks[i]
                    short = desc["digest"].split(":", 1)[-1][:12]
                    layer = await asyncio.to_thread(
                        _extract, daemon, desc, parent, diff_ids[i],
                        reporter("Extracting", short, int(desc.get("size") or 0)))
                    q.put_nowait(_status("Pull complete", short))
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
        raise _daemon_error(e) from e
    finally:
        cancel.set()
        if not runner.done():
            runner.cancel()
            await asyncio.gather(runner, return_exceptions=True)
        if not ok:  # downloaded but never used: not worth keeping without an image
            sources = daemon.images.sources
            for d in new_blobs:
                if not _is_source(sources, d):
                    blobs.delete(d)


def _is_source(sources: Any, digest: str) -> bool:
    for name in os.listdir(sources.root):
        if name.endswith(".json"):
            src = sources.get("sha256:" + name[:-5])
            if src is not None and src.digest == digest:
                return True
    return False


def _download(client: RegistryClient, path: str, desc: dict, blobs: Any, cancel: threading.Event,
              report: Callable[[int], None]) -> bool:
    """Fetch one blob into the store, verified; False if it was there already."""
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


def _extract(daemon: Any, desc: dict, parent: str | None, diff_id: str, report: Callable[[int], None]) -> Any:
    try:
        return import_blob(daemon.layers, daemon.images.sources, desc["digest"], desc["mediaType"], parent,
                           expected_diff_id=diff_id, progress=report)
    except DigestMismatch as e:
        daemon.blobs.delete(desc["digest"])  # verified, yet not the layer the config names
        raise RegistryError(f"layer {desc['digest']}: {e}") from None
    except ValueError as e:  # ArchiveError: a corrupt or hostile layer
        daemon.blobs.delete(desc["digest"])
        raise RegistryError(f"failed to register layer {desc['digest'][7:19]}: {e}") from None


# ------------------------------------------------------------------------------------------ login


def registry_domain(server: str) -> str:
    s = (server or "").strip()
    for prefix in ("https://", "http://"):
        if s.startswith(prefix):
            s = s[len(prefix):]
    s = s.split("/", 1)[0]
    if s in ("", "index.docker.io", "registry-1.docker.io", "docker.io"):
        return "docker.io"
    return s


async def login(daemon: Any, body: Any) -> dict:
    if not isinstance(body, dict):
        raise InvalidParameter("invalid JSON: expected an auth config object")
    from storage.registry import credentials_from

    domain = registry_domain(body.get("serveraddress") or "")
    client = RegistryClient(domain, credentials_from(body), daemon.cfg.insecure_registries or [])
    try:
        await asyncio.to_thread(client.check_login)
    except Unauthorized as e:
        raise AuthError(e.message) from e
    except RegistryError as e:
        raise DaemonError(e.message) from e
    finally:
        client.close()
    return {"Status": "Login Succeeded", "IdentityToken": ""}
