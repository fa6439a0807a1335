"""Layer store: each layer unpacked once, in overlayfs format, under its chain id.

<root>/<chain-hex>/diff      the layer's files (whiteouts as 0/0 char devices, opaque xattrs)
<root>/<chain-hex>/diff-id   sha256 of the uncompressed layer tar
<root>/<chain-hex>/parent    the parent's chain id ('' for a base layer)
<root>/<chain-hex>/size      bytes of regular file content

A layer directory appears only by an atomic rename of a complete temporary one, so whatever exists
under a chain-id name is complete; temporaries left by a crash are removed at the next start.
"""

from __future__ import annotations

import errno
import hashlib
import os
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

from . import tempfiles
from .archive import extract_tar
from .compression import Readable, decompress
from .digest import ALGORITHM, BackgroundDigest, DigestMismatch, hex_of
from .rmtree import remove_tree
from .tarsplit import SplitRecorder

_DRAIN_CHUNK = 1 << 20


class LayerNotFound(LookupError):
    def __init__(self, chain_id: str) -> None:
        super().__init__(f"layer not found: {chain_id}")
        self.chain_id = chain_id


@dataclass(frozen=True)
class Layer:
    chain_id: str
    diff_id: str
    parent: str | None
    size: int


def chain_id(parent_chain_id: str | None, diff_id: str) -> str:
    """OCI chain id: the diff id for a base layer, else sha256(parent chain id + ' ' + diff id)."""
    hex_of(diff_id)
    if parent_chain_id is None:
        return diff_id
    hex_of(parent_chain_id)
    return f"{ALGORITHM}:{hashlib.sha256(f'{parent_chain_id} {diff_id}'.encode()).hexdigest()}"


class _Digesting:
    """Hashes everything read through it (in the background, alongside the extraction's writes):
    the diff id is the digest of the uncompressed tar."""

    def __init__(self, inner: Readable) -> None:
        self._inner = inner
        self._digest = BackgroundDigest()

    def read(self, size: int = -1, /) -> bytes:
        data = self._inner.read(size)
        self._digest.update(data)
        return data

    def finish(self) -> str:
        # tar readers stop at the end-of-archive blocks; the digest covers the stream to its end.
        while self.read(_DRAIN_CHUNK):
            pass
        return self._digest.digest()

    def close(self) -> None:
        self._digest.close()


class LayerStore:
    def __init__(self, root: str | os.PathLike[str], *, durable: bool = True) -> None:
        """durable: flush a layer's files to disk before it becomes visible (syncfs), so that a
        power loss cannot leave a layer that looks complete with empty files. Tests turn it off."""
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._durable = durable
        self._discards: list[threading.Thread] = []
        # A layer's files never change once it exists: inspect and start read them (on the
        # event loop) for every layer of the image, so they are read once. Existence is still
        # checked on disk (diff_path, exists).
        self._layers: dict[str, Layer] = {}
        tempfiles.remove_stale(self.root)

    def _dir(self, chain: str) -> Path:
        return self.root / hex_of(chain)

    def exists(self, chain_id: str) -> bool:
        return (self._dir(chain_id) / "diff-id").is_file()

    def diff_path(self, chain_id: str) -> Path:
        d = self._dir(chain_id)
        if not (d / "diff-id").is_file():
            raise LayerNotFound(chain_id)
        return d / "diff"

    def get(self, chain_id: str) -> Layer:
        if (known := self._layers.get(chain_id)) is not None:
            return known
        d = self._dir(chain_id)
        try:
            diff_id = (d / "diff-id").read_text().strip()
            parent = (d / "parent").read_text().strip() or None
            size = int((d / "size").read_text())
        except FileNotFoundError:
            raise LayerNotFound(chain_id) from None
        layer = self._layers[chain_id] = Layer(chain_id=chain_id, diff_id=diff_id, parent=parent, size=size)
        return layer

    def lowers(self, chain_id: str) -> list[Path]:
        """diff dirs of this layer and its ancestors, topmost first (overlayfs lowerdir order)."""
        out: list[Path] = []
        current: str | None = chain_id
        while current is not None:
            out.append(self.diff_path(current))
            current = self.get(current).parent
        return out

    def list(self) -> list[Layer]:
        out = []
        for name in sorted(os.listdir(self.root)):
            digest = f"{ALGORITHM}:{name}"
            try:
                out.append(self.get(digest))
            except (ValueError, LayerNotFound):
                continue  # temporaries and strays
        return out

    def import_tar(
        self,
        fileobj: Readable,
        parent_chain_id: str | None = None,
        *,
        expected_diff_id: str | None = None,
        split_dir: Path | None = None,
    ) -> Layer:
        """Unpack a (possibly compressed) layer tar on top of `parent_chain_id`.

        The same content on the same parent is stored once: importing it again returns the
        existing layer. With `expected_diff_id` (from an image config), a layer already present is
        returned without reading the stream, and different content raises DigestMismatch.
        Invalid or hostile archives raise ArchiveError; nothing is left behind on any error.
        split_dir: an empty directory on the same filesystem that receives the tar-split of the
        (uncompressed) stream, so that the exact tar can be produced again (see tarsplit).
        """
        if parent_chain_id is not None and not self.exists(parent_chain_id):
            raise LayerNotFound(parent_chain_id)
        if expected_diff_id is not None:
            known = chain_id(parent_chain_id, expected_diff_id)
            if self.exists(known):
                return self.get(known)
        with tempfiles.locked_dir(self.root) as tmp:
            diff = tmp / "diff"
            os.mkdir(diff)
            os.chmod(diff, 0o755)  # the layer root's mode if the tar has no "./" entry
            stream: Readable = decompress(fileobj)
            split = SplitRecorder(stream, split_dir) if split_dir is not None else None
            try:
                reader = _Digesting(split or stream)
                try:
                    size = extract_tar(reader, diff, layer=True, recorder=split, writeback=self._durable)
                    diff_id = reader.finish()
                finally:
                    reader.close()
                if split is not None:
                    split.finish(diff)  # before the syncfs below, which then covers the split too
            finally:
                if split is not None:
                    split.close()
            if expected_diff_id is not None and diff_id != expected_diff_id:
                raise DigestMismatch(f"layer diff id mismatch: expected {expected_diff_id}, got {diff_id}")
            chain = chain_id(parent_chain_id, diff_id)
            if self.exists(chain):
                self._discard(tmp)
                return self.get(chain)
            (tmp / "diff-id").write_text(diff_id)
            (tmp / "parent").write_text(parent_chain_id or "")
            (tmp / "size").write_text(str(size))
            if self._durable:
                tempfiles.syncfs(tmp)
            try:
                os.rename(tmp, self._dir(chain))
            except OSError as e:
                if e.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                    raise
                return self.get(chain)  # a concurrent import of the same layer won the race
            if self._durable:
                tempfiles.fsync_dir(self.root)
            return Layer(chain_id=chain, diff_id=diff_id, parent=parent_chain_id, size=size)

    def _discard(self, tmp: Path) -> None:
        """Removes an unpacked copy of a layer already stored, after the caller has its answer:
        deleting a big tree takes as long as writing it. Renamed to an unlocked temporary first,
        which the next start removes should the daemon stop before the thread is done."""
        trash = Path(tempfile.mkdtemp(prefix=tempfiles.PREFIX, dir=self.root))
        os.rename(tmp / "diff", trash / "diff")
        t = threading.Thread(target=remove_tree, args=(trash,), name="layer-discard", daemon=True)
        t.start()
        self._discards = [d for d in self._discards if d.is_alive()] + [t]

    def wait_discards(self) -> None:
        """Returns once the copies handed to _discard are gone (tests, shutdown)."""
        for t in list(self._discards):
            t.join()

    def remove(self, chain_id: str) -> None:
        """Delete a layer (the caller knows it is unused). Removing a missing layer is not an error."""
        self._layers.pop(chain_id, None)
        d = self._dir(chain_id)
        tempfiles.remove_aside(d)
