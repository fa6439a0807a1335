"""Image archives (`docker save` / `docker load`): docker-archive and OCI image layout.

Written archives hold both at once, as dockerd 25+ writes them, so that every loader reads them:
    blobs/sha256/<hex>   image configs, OCI manifests, uncompressed layer tars (named by diff id)
    index.json, oci-layout                    the OCI image layout (podman, skopeo, containerd)
    manifest.json, repositories               the docker-archive view (any dockerd, podman)
Read archives may be either (dockerd 20.10's <id>/layer.tar, podman's, OCI layouts, gzip/zstd layers).

Archives in are untrusted: the whole upload is extracted with the safe extractor (no entry lands
outside the temporary directory), then every path named by a manifest is resolved and must be a
regular file inside it; a layer whose content does not hash to its diff id is refused.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from . import tempfiles
from .archive import extract_tar
from .compression import Readable, decompress
from .digest import DigestMismatch, hex_of, sha256
from .errors import ArchiveError
from .layers import Layer, LayerStore, chain_id
from .layersource import MEDIA_OCI_TAR, LayerSources, import_layer
from .registryplatform import local_platform_matches
from .tarwriter import tar_directory

MEDIA_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MEDIA_DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
_COPY = 1 << 20


# ------------------------------------------------------------------------------------------ save


@dataclass
class SaveItem:
    config_raw: bytes  # exactly as stored: its digest is the image id
    chain_ids: list[str]
    repo_tags: list[str]  # familiar "name:tag"
    full_names: list[str] = field(default_factory=list)  # "docker.io/library/name:tag", same order


def layer_tar(layers: LayerStore, sources: LayerSources, chain_id: str, spool_dir: Path) -> tuple[BinaryIO, int]:
    """An open file with the uncompressed tar of a layer, and its size.

    From the layer's source blob when there is one (then it hashes to the diff id); else the tar
    is generated from the unpacked files (an older layer: its digest may differ from the diff id).
    """
    layer = layers.get(chain_id)
    src = sources.get(layer.diff_id)
    if src is not None and src.media_type.endswith("tar"):  # stored uncompressed: use the blob as is
        f = sources.open(src)
        return f, src.size
    f = os.fdopen(tempfiles.anonymous_file(spool_dir), "w+b")
    try:
        if src is not None:
            with sources.open(src) as blob:
                shutil.copyfileobj(decompress(blob), f, _COPY)
        else:
            tar_directory(layers.diff_path(chain_id), f, layer=True)
        size = f.tell()
        f.seek(0)
    except BaseException:
        f.close()
        raise
    return f, size


def _hash_file(f: BinaryIO) -> str:
    h = sha256()
    while chunk := f.read(_COPY):
        h.update(chunk)
    f.seek(0)
    return "sha256:" + h.hexdigest()


def write_archive(items: list[SaveItem], layers: LayerStore, sources: LayerSources, out: Any,
                  spool_dir: Path) -> None:
    """Write the images as one archive (see the module doc) to the writable `out`."""
    tf = tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT, bufsize=_COPY)  # type: ignore[call-overload]
    written: set[str] = set()
    manifest_json: list[dict] = []
    index: list[dict] = []
    repositories: dict[str, dict[str, str]] = {}
    _add_dir(tf, "blobs")
    _add_dir(tf, "blobs/sha256")
    for item in items:
        config = json.loads(item.config_raw)
        diff_ids = list(config.get("rootfs", {}).get("diff_ids", []))
        layer_paths: list[str] = []
        descriptors: list[dict] = []
        for i, chain in enumerate(item.chain_ids):
            f, size = layer_tar(layers, sources, chain, spool_dir)
            with f:
                digest = diff_ids[i] if i < len(diff_ids) else ""
                if sources.get(layers.get(chain).diff_id) is None:
                    digest = _hash_file(f)  # a regenerated tar: name it (and the config) by what it is
                    diff_ids[i] = digest
                path = f"blobs/sha256/{hex_of(digest)}"
                if path not in written:
                    _add_file(tf, path, f, size)
                    written.add(path)
            layer_paths.append(path)
            descriptors.append({"mediaType": MEDIA_OCI_TAR, "digest": digest, "size": size})
        raw = item.config_raw
        if diff_ids != config.get("rootfs", {}).get("diff_ids", []):
            config["rootfs"]["diff_ids"] = diff_ids
            raw = json.dumps(config, separators=(",", ":")).encode()
        config_digest = "sha256:" + hashlib.sha256(raw).hexdigest()
        config_path = f"blobs/sha256/{hex_of(config_digest)}"
        if config_path not in written:
            _add_bytes(tf, config_path, raw)
            written.add(config_path)
        manifest = {"schemaVersion": 2, "mediaType": MEDIA_OCI_MANIFEST,
                    "config": {"mediaType": MEDIA_OCI_CONFIG, "digest": config_digest, "size": len(raw)},
                    "layers": descriptors}
        mraw = json.dumps(manifest, separators=(",", ":")).encode()
        mdigest = "sha256:" + hashlib.sha256(mraw).hexdigest()
        if f"blobs/sha256/{hex_of(mdigest)}" not in written:
            _add_bytes(tf, f"blobs/sha256/{hex_of(mdigest)}", mraw)
            written.add(f"blobs/sha256/{hex_of(mdigest)}")
        desc = {"mediaType": MEDIA_OCI_MANIFEST, "digest": mdigest, "size": len(mraw)}
        if item.repo_tags:
            for tag, full in zip(item.repo_tags, item.full_names or item.repo_tags, strict=False):
                index.append({**desc, "annotations": {"io.containerd.image.name": full,
                                                      "org.opencontainers.image.ref.name": tag.rsplit(":", 1)[1]}})
                name, _, t = tag.rpartition(":")
                top = layer_paths[-1] if layer_paths else config_path
                repositories.setdefault(name, {})[t] = top.rsplit("/", 1)[1]
        else:
            index.append(desc)
        manifest_json.append({"Config": config_path, "RepoTags": item.repo_tags or None, "Layers": layer_paths})
    _add_bytes(tf, "index.json", json.dumps({"schemaVersion": 2, "mediaType": MEDIA_OCI_INDEX,
                                             "manifests": index}, separators=(",", ":")).encode())
    _add_bytes(tf, "manifest.json", json.dumps(manifest_json, separators=(",", ":")).encode())
    _add_bytes(tf, "oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
    if repositories:
        _add_bytes(tf, "repositories", json.dumps(repositories, separators=(",", ":")).encode())
    tf.close()


def _info(name: str, kind: bytes, size: int = 0) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.type = kind
    ti.size = size
    ti.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
    ti.mtime = 0  # the same images give the same archive
    return ti


def _add_dir(tf: tarfile.TarFile, name: str) -> None:
    tf.addfile(_info(name, tarfile.DIRTYPE))


def _add_bytes(tf: tarfile.TarFile, name: str, data: bytes) -> None:
    import io

    tf.addfile(_info(name, tarfile.REGTYPE, len(data)), io.BytesIO(data))


def _add_file(tf: tarfile.TarFile, name: str, f: BinaryIO, size: int) -> None:
    tf.addfile(_info(name, tarfile.REGTYPE, size), f)


# ------------------------------------------------------------------------------------------ load


@dataclass
class LoadedImage:
    config_raw: bytes
    config: dict
    layers: list[Layer]
    repo_tags: list[str]  # as written in the archive (may be fully qualified)


def read_archive(reader: Readable, work_parent: Path, layers: LayerStore, sources: LayerSources,
                 on_layer: Callable[[str], None] | None = None, created: list[str] | None = None
                 ) -> list[LoadedImage]:
    """Unpack an archive's layers into the layer store and return its images (not yet registered).

    created: gets the chain ids of the layers this call added, so that a caller can remove them
    when the load fails halfway.
    """
    with tempfiles.locked_dir(work_parent) as tmp:
        root = tmp / "archive"
        os.mkdir(root)
        extract_tar(decompress(reader), root, same_owner=False, devices=False)
        if _regular(root, "manifest.json", must=False):
            return list(_load_docker_archive(root, layers, sources, on_layer, created))
        if _regular(root, "index.json", must=False):
            return list(_load_oci_layout(root, layers, sources, on_layer, created))
        raise ArchiveError("this tar is not an image archive (no manifest.json or index.json): "
                           "use docker import for a root filesystem tar")


def _regular(root: Path, rel: str, must: bool = True) -> Path | None:
    """`rel` inside root as a regular file, never followed out of root (an archive may hold any symlink)."""
    if not isinstance(rel, str) or not rel or rel.startswith("/") or ".." in rel.split("/"):
        raise ArchiveError(f"invalid path in image archive: {rel!r}")
    real_root = os.path.realpath(root)
    real = os.path.realpath(root / rel)
    if not real.startswith(real_root + "/"):
        raise ArchiveError(f"path {rel!r} in image archive points outside it")
    try:
        st = os.lstat(real)
    except FileNotFoundError:
        if must:
            raise ArchiveError(f"image archive lacks {rel}") from None
        return None
    if not stat.S_ISREG(st.st_mode):
        raise ArchiveError(f"{rel} in image archive is not a regular file")
    return Path(real)


def _json(root: Path, rel: str, limit: int = 8 << 20) -> Any:
    path = _regular(root, rel)
    assert path is not None
    if path.stat().st_size > limit:
        raise ArchiveError(f"{rel} in image archive is too large")
    try:
        return json.loads(path.read_bytes())
    except ValueError as e:
        raise ArchiveError(f"{rel} in image archive is not valid JSON: {e}") from None


def _import_layers(root: Path, paths: list[str], diff_ids: list[str], layers: LayerStore,
                   sources: LayerSources, on_layer: Callable[[str], None] | None,
                   created: list[str] | None) -> list[Layer]:
    if len(paths) != len(diff_ids):
        raise ArchiveError(f"image has {len(diff_ids)} diff ids in its config but {len(paths)} layers")
    out: list[Layer] = []
    parent: str | None = None
    for rel, diff_id in zip(paths, diff_ids, strict=True):
        path = _regular(root, rel)
        assert path is not None
        if on_layer:
            on_layer(diff_id)
        try:
            existed = layers.exists(chain_id(parent, diff_id))
        except ValueError:
            raise ArchiveError(f"invalid diff id in image config: {diff_id!r}") from None
        with open(path, "rb") as f:
            try:
                layer = import_layer(layers, sources, f, parent, expected_diff_id=diff_id)
            except DigestMismatch as e:
                raise ArchiveError(f"layer {rel}: {e}") from None
        out.append(layer)
        if not existed and created is not None:
            created.append(layer.chain_id)
        parent = layer.chain_id
    return out


def _config(root: Path, rel: str) -> tuple[bytes, dict]:
    path = _regular(root, rel)
    assert path is not None
    raw = path.read_bytes()
    try:
        cfg = json.loads(raw)
    except ValueError as e:
        raise ArchiveError(f"image config {rel} is not valid JSON: {e}") from None
    if not isinstance(cfg, dict) or not isinstance(cfg.get("rootfs"), dict):
        raise ArchiveError(f"image config {rel} has no rootfs")
    return raw, cfg


def _load_docker_archive(root: Path, layers: LayerStore, sources: LayerSources,
                         on_layer: Callable[[str], None] | None, created: list[str] | None
                         ) -> Iterator[LoadedImage]:
    manifest = _json(root, "manifest.json")
    if not isinstance(manifest, list):
        raise ArchiveError("manifest.json of image archive is not a list")
    for entry in manifest:
        if not isinstance(entry, dict) or not isinstance(entry.get("Config"), str):
            raise ArchiveError("manifest.json entry without Config")
        raw, cfg = _config(root, entry["Config"])
        paths = entry.get("Layers") or []
        if not isinstance(paths, list):
            raise ArchiveError("manifest.json entry with invalid Layers")
        got = _import_layers(root, paths, list(cfg["rootfs"].get("diff_ids") or []), layers, sources, on_layer,
                             created)
        tags = [t for t in entry.get("RepoTags") or [] if isinstance(t, str)]
        yield LoadedImage(raw, cfg, got, tags)


def _blob_path(desc: Any) -> str:
    if not isinstance(desc, dict):
        raise ArchiveError("invalid descriptor in OCI layout")
    try:
        return f"blobs/sha256/{hex_of(desc.get('digest', ''))}"
    except ValueError:
        raise ArchiveError(f"unsupported digest in OCI layout: {desc.get('digest')!r}") from None


def _verified(root: Path, desc: dict) -> bytes:
    path = _regular(root, _blob_path(desc))
    assert path is not None
    data = path.read_bytes()
    if "sha256:" + sha256(data).hexdigest() != desc["digest"]:
        raise ArchiveError(f"blob {desc['digest']} in OCI layout does not match its digest")
    return data


def _load_oci_layout(root: Path, layers: LayerStore, sources: LayerSources,
                     on_layer: Callable[[str], None] | None, created: list[str] | None) -> Iterator[LoadedImage]:
    index = _json(root, "index.json")
    todo: list[tuple[dict, str | None]] = [(m, None) for m in index.get("manifests") or []]
    while todo:
        desc, name = todo.pop(0)
        ann = desc.get("annotations") or {}
        name = ann.get("io.containerd.image.name") or name
        ref = ann.get("org.opencontainers.image.ref.name")
        if not name and ref and ("/" in ref or ":" in ref):
            name = ref  # podman writes the full reference here
        media = desc.get("mediaType")
        if media in (MEDIA_OCI_INDEX, MEDIA_DOCKER_LIST):
            sub = json.loads(_verified(root, desc))
            todo.extend((m, name) for m in sub.get("manifests") or [] if _is_local_platform(m))
            continue
        if media not in (MEDIA_OCI_MANIFEST, MEDIA_DOCKER_MANIFEST):
            raise ArchiveError(f"unsupported manifest media type in OCI layout: {media}")
        manifest = json.loads(_verified(root, desc))
        raw = _verified(root, manifest["config"])
        cfg = json.loads(raw)
        paths = [_blob_path(lay) for lay in manifest.get("layers") or []]
        got = _import_layers(root, paths, list(cfg.get("rootfs", {}).get("diff_ids") or []), layers, sources,
                             on_layer, created)
        yield LoadedImage(raw, cfg, got, [name] if name else [])


def _is_local_platform(desc: dict) -> bool:
    return local_platform_matches(desc.get("platform"))


__all__ = ["LoadedImage", "SaveItem", "read_archive", "write_archive", "layer_tar"]
