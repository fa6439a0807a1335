"""Where the exact bytes of a layer's tar can be found again (for save and push).

An unpacked layer cannot be turned back into the very tar it came from (mtimes of the tar headers,
order, padding...), yet save and push must produce tars whose digest is the image config's diff id.
So the tar stream a layer was made from, as downloaded (gzip, zstd), stays in the blob store, and a
small record per diff id points to it. An uncompressed stream (docker import, docker load) is kept
as a tar-split instead (see tarsplit): its headers, and hard links to the extracted files, which
spares writing and hashing every byte twice.

<root>/<diff-hex>.json   {"digest": blob digest (or the diff id), "mediaType": ..., "size": n,
                          "split": true for a tar-split in <root>/<diff-hex>.split/,
                          "pushed": {"<registry>/<repo>": "<compressed digest>", ...}}

"pushed" remembers under which digest a layer exists in which repository: a later push checks or
mounts it there instead of uploading it again.
"""

from __future__ import annotations

import io
import json
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, cast

from . import tempfiles
from .blobs import BlobStore, BlobWriter
from .compression import Readable, detect, peek
from .digest import hex_of
from .layers import Layer, LayerStore, chain_id
from .rmtree import remove_tree
from .tarsplit import SplitReader, stream_size

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
    split: bool = False


class LayerSources:
    def __init__(self, root: str | os.PathLike[str], blobs: BlobStore, layers: LayerStore) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.blobs = blobs
        self.layers = layers
        self.commit_lock = threading.Lock()
        tempfiles.remove_stale(self.root)
        for name in os.listdir(self.root):  # a crash between a split's rename and its record
            if name.endswith(".split") and not (self.root / f"{name[:-6]}.json").exists():
                remove_tree(self.root / name)

    def _path(self, diff_id: str) -> Path:
        return self.root / f"{hex_of(diff_id)}.json"

    def split_dir(self, diff_id: str) -> Path:
        return self.root / f"{hex_of(diff_id)}.split"

    def get(self, diff_id: str) -> LayerSource | None:
        try:
            doc = json.loads(self._path(diff_id).read_text())
        except (FileNotFoundError, ValueError):
            return None
        src = LayerSource(diff_id, doc["digest"], doc["mediaType"], doc["size"], doc.get("pushed") or {},
                          bool(doc.get("split")))
        if src.split:
            return src if self._split_usable(diff_id) else None
        return src if self.blobs.exists(src.digest) else None

    def _split_usable(self, diff_id: str) -> bool:
        d = self.split_dir(diff_id)
        try:
            chain = (d / "layer").read_text().strip()
            paths = (d / "paths").stat().st_size
        except OSError:
            return False
        return (d / "index").is_file() and (paths == 0 or self.layers.exists(chain))

    def open(self, src: LayerSource) -> BinaryIO:
        """The source's bytes exactly as they came in (compressed if they were)."""
        if src.split:
            d = self.split_dir(src.diff_id)
            chain = (d / "layer").read_text().strip()
            root = self.layers.diff_path(chain) if self.layers.exists(chain) else None
            return cast(BinaryIO, io.BufferedReader(SplitReader(d, src.diff_id, root), 1 << 20))
        return self.blobs.open(src.digest)

    def put(self, src: LayerSource) -> None:
        doc = {"digest": src.digest, "mediaType": src.media_type, "size": src.size, "pushed": src.pushed,
               "split": src.split}
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
            # The record as written, usable or not: its layer may be gone already.
            try:
                doc = json.loads((self.root / name).read_text())
            except (OSError, ValueError):
                doc = {}
            try:
                os.unlink(self.root / name)
            except FileNotFoundError:
                pass
            if doc.get("split"):
                self._remove_split(diff_id)
            elif doc.get("digest") and self.blobs.exists(doc["digest"]):
                self.blobs.delete(doc["digest"])

    def _remove_split(self, diff_id: str) -> None:
        tempfiles.remove_aside(self.split_dir(diff_id))


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
    """LayerStore.import_tar that also keeps the tar stream as the layer's source (blob or tar-split)."""
    if expected_diff_id is not None and layers.exists(chain_id(parent, expected_diff_id)) \
            and sources.get(expected_diff_id) is not None:
        return layers.get(chain_id(parent, expected_diff_id))
    kind, fileobj = peek(fileobj)
    if kind == "none" and os.stat(sources.root).st_dev == os.stat(layers.root).st_dev:
        return _import_split(layers, sources, fileobj, parent, expected_diff_id)
    with sources.blobs.writer() as w:
        tee = _Tee(fileobj, w)
        layer = layers.import_tar(tee, parent, expected_diff_id=expected_diff_id)
        while tee.read(1 << 20):  # the blob must hold the whole stream, trailing padding included
            pass
    assert w.digest is not None
    sources.record(layer.diff_id, w.digest, media_type_of(tee.magic), w.size)
    return layer


def _import_split(layers: LayerStore, sources: LayerSources, fileobj: Readable, parent: str | None,
                  expected_diff_id: str | None) -> Layer:
    with tempfiles.locked_dir(sources.root) as tmp:
        layer = layers.import_tar(fileobj, parent, expected_diff_id=expected_diff_id, split_dir=tmp)
        index = tmp / "index"
        # One check-and-commit at a time: two imports of the same tar must not take each
        # other's split for a leftover.
        with sources.commit_lock:
            if index.exists() and sources.get(layer.diff_id) is None:
                size = stream_size(index)
                with open(tmp / "layer", "w") as f:  # after the layer's syncfs: made durable here
                    f.write(layer.chain_id)
                    f.flush()
                    os.fsync(f.fileno())
                sources._remove_split(layer.diff_id)  # a leftover without its record
                # The layer import's syncfs made the index and links durable; the rename commits.
                os.rename(tmp, sources.split_dir(layer.diff_id))
                tempfiles.fsync_dir(sources.root)
                sources.put(LayerSource(layer.diff_id, layer.diff_id, MEDIA_TAR, size, split=True))
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
