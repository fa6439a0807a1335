"""Where the exact bytes of a layer's tar can be found again (for save and push).

An unpacked layer cannot be turned back into the very tar it came from (mtimes of the tar headers,
order, padding...), yet save and push must produce tars whose digest is the image config's diff id.
So the tar stream a layer was made from (as downloaded: gzip, zstd or plain) stays in the blob
store, and a small record per diff id points to it:

<root>/<diff-hex>.json   {"digest": blob digest, "mediaType": ..., "size": n,
                          "pushed": {"<registry>/<repo>": "<compressed digest>", ...}}

"pushed" remembers under which digest a layer exists in which repository: a later push checks or
mounts it there instead of uploading it again.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from . import tempfiles
from .blobs import BlobStore, BlobWriter
from .compression import Readable, detect
from .digest import hex_of
from .layers import Layer, LayerStore

MEDIA_TAR = "application/vnd.docker.image.rootfs.diff.tar"
MEDIA_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
MEDIA_OCI_TAR = "application/vnd.oci.image.layer.v1.tar"
MEDIA_OCI_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
MEDIA_OCI_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
LAYER_MEDIA_TYPES = {
    MEDIA_TAR,
    MEDIA_GZIP,
    MEDIA_OCI_TAR,
    MEDIA_OCI_GZIP,
    MEDIA_OCI_ZSTD,
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
}


def media_type_of(magic: bytes) -> str:
    kind = detect(magic)
    return {"gzip": MEDIA_GZIP, "zstd": MEDIA_OCI_ZSTD, "none": MEDIA_TAR}.get(kind, "application/octet-stream")


@dataclass
class LayerSource:
    diff_id: str
    digest: str  # of the stored blob
    media_type: str
    size: int
    pushed: dict[str, str] = field(default_factory=dict)


class LayerSources:
    def __init__(self, root: str | os.PathLike[str], blobs: BlobStore) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.blobs = blobs
        tempfiles.remove_stale(self.root)

    def _path(self, diff_id: str) -> Path:
        return self.root / f"{hex_of(diff_id)}.json"

    def get(self, diff_id: str) -> LayerSource | None:
        try:
            doc = json.loads(self._path(diff_id).read_text())
        except (FileNotFoundError, ValueError):
            return None
        src = LayerSource(diff_id, doc["digest"], doc["mediaType"], doc["size"], doc.get("pushed") or {})
        return src if self.blobs.exists(src.digest) else None

    def put(self, src: LayerSource) -> None:
        doc = {"digest": src.digest, "mediaType": src.media_type, "size": src.size, "pushed": src.pushed}
        # Written aside and renamed: a crash leaves the old record or the new one, never half.
        with tempfiles.locked_file(self.root) as (fd, tmp):
            os.write(fd, json.dumps(doc).encode())
            os.rename(tmp, self._path(src.diff_id))

    def record(self, diff_id: str, digest: str, media_type: str, size: int) -> None:
        """Remember `digest` (a blob already in the store) as the source of `diff_id`; keeps an existing one."""
        if self.get(diff_id) is None:
            self.put(LayerSource(diff_id, digest, media_type, size))

    def mark_pushed(self, diff_id: str, where: str, digest: str) -> None:
        src = self.get(diff_id)
        if src is not None and src.pushed.get(where) != digest:
            src.pushed[where] = digest
            self.put(src)

    def collect(self, used_diff_ids: set[str], candidates: set[str] | None = None) -> None:
        """Drop the sources (and their blobs) of layers no image uses any more.

        candidates: only these diff ids (the layers just removed), so that the sources of a pull
        still in progress (recorded before its image exists) are left alone.
        """
        for name in os.listdir(self.root):
            if not name.endswith(".json"):
                continue
            diff_id = "sha256:" + name[:-5]
            if diff_id in used_diff_ids or candidates is not None and diff_id not in candidates:
                continue
            src = self.get(diff_id)
            try:
                os.unlink(self.root / name)
            except FileNotFoundError:
                pass
            if src is not None:
                self.blobs.delete(src.digest)


class _Tee:
    """Passes a stream through to its reader while writing every byte into a blob."""

    def __init__(self, inner: Readable, sink: BlobWriter) -> None:
        self._inner = inner
        self._sink = sink
        self.magic = b""

    def read(self, size: int = -1, /) -> bytes:
        data = self._inner.read(size)
        if data:
            if len(self.magic) < 6:
                self.magic = (self.magic + data[:6])[:6]
            self._sink.write(data)
        return data


def import_layer(
    layers: LayerStore,
    sources: LayerSources,
    fileobj: Readable,
    parent: str | None,
    expected_diff_id: str | None = None,
) -> Layer:
    """LayerStore.import_tar that also keeps the tar stream as the layer's source blob."""
    with sources.blobs.writer() as w:
        tee = _Tee(fileobj, w)
        layer = layers.import_tar(tee, parent, expected_diff_id=expected_diff_id)
        while tee.read(1 << 20):  # the blob must hold the whole stream, trailing padding included
            pass
    assert w.digest is not None
    sources.record(layer.diff_id, w.digest, media_type_of(tee.magic), w.size)
    return layer


def import_blob(
    layers: LayerStore,
    sources: LayerSources,
    digest: str,
    media_type: str,
    parent: str | None,
    expected_diff_id: str | None = None,
    progress: Callable[[int], None] | None = None,
) -> Layer:
    """Unpack a layer from a blob already in the store (a verified download) and record it as the source."""
    with sources.blobs.open(digest) as f:
        reader: Readable = _Counting(f, progress) if progress else f
        layer = layers.import_tar(reader, parent, expected_diff_id=expected_diff_id)
    sources.record(layer.diff_id, digest, media_type, sources.blobs.size(digest))
    return layer


class _Counting:
    def __init__(self, inner: Readable, progress: Callable[[int], None]) -> None:
        self._inner = inner
        self._progress = progress
        self._done = 0

    def read(self, size: int = -1, /) -> bytes:
        data = self._inner.read(size)
        self._done += len(data)
        self._progress(self._done)
        return data
