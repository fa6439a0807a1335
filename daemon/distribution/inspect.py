"""GET /distribution/{name}/json: what a registry says about an image reference, without pulling
it (dockerd's distribution router): the manifest's descriptor, and the platforms it is for,
from the manifest list's entries or, for a single image, from its config."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from daemon.distribution.registries import RegistryClients, remote_path, to_daemon_error
from daemon.images import reference
from storage.registry import MEDIA_MANIFEST_LIST, MEDIA_OCI_INDEX, MEDIA_SCHEMA1, RegistryClient

# The fields of an OCI platform, as dockerd writes them (empty ones left out).
_PLATFORM_KEYS = ("architecture", "os", "os.version", "os.features", "variant", "features")


def _platform(doc: Any) -> dict:
    if not isinstance(doc, dict):
        return {}
    return {k: doc[k] for k in _PLATFORM_KEYS if doc.get(k)}


def distribution_info(client: RegistryClient, path: str, ident: str) -> dict:
    """Blocking: the descriptor and platforms of `path`:`ident` (a tag or a digest)."""
    raw, media, digest = client.get_manifest(path, ident)
    doc = json.loads(raw)
    descriptor = {"mediaType": media, "digest": digest, "size": len(raw)}
    if media in (MEDIA_MANIFEST_LIST, MEDIA_OCI_INDEX):
        platforms = [_platform(m.get("platform")) for m in doc.get("manifests") or [] if isinstance(m, dict)]
    elif media in MEDIA_SCHEMA1:
        platforms = [{"architecture": doc.get("architecture", ""), "os": "linux"}]
    else:
        config = doc.get("config") if isinstance(doc.get("config"), dict) else {}
        platforms = [_platform(json.loads(client.get_blob(path, config["digest"])))] if config.get("digest") else []
    return {"Descriptor": descriptor, "Platforms": platforms}


async def inspect(registries: RegistryClients, name: str, auth_header: str | None) -> dict:
    ref = reference.parse(name)  # InvalidParameter for a bad reference
    client = registries.client(ref.domain, auth_header)
    try:
        return await asyncio.to_thread(distribution_info, client, remote_path(ref), ref.digest or ref.tag or "latest")
    except Exception as e:  # noqa: BLE001 - mapped to the API's errors
        raise to_daemon_error(e, ref) from e
    finally:
        client.close()
