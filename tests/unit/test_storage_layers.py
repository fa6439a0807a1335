"""storage.layers: chain ids, dedup, whiteouts on disk, interrupted imports."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import signal
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import zstandard

from storage.archive import ArchiveError
from storage.digest import DigestMismatch
from storage.layers import Layer, LayerNotFound, LayerStore, chain_id
from tests.unit.test_storage_support import dir_, hard, reg, tar_bytes

REPO = Path(__file__).resolve().parents[2]

BASE = tar_bytes(dir_("etc"), reg("etc/passwd", b"root:x:0:0::/root:/bin/sh\n"), reg("bin/sh", b"sh", mode=0o755))
TOP = tar_bytes(reg("etc/.wh.passwd"), reg("etc/motd", b"hi"))


def _sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _layer_dirs(root: Path) -> list[str]:
    return sorted(n for n in os.listdir(root) if not n.startswith("."))


@pytest.fixture
def store(tmp_path: Path) -> LayerStore:
    return LayerStore(tmp_path / "layers", durable=False)


def test_chain_id() -> None:
    a, b = _sha(b"a"), _sha(b"b")
    assert chain_id(None, a) == a
    assert chain_id(a, b) == _sha(f"{a} {b}".encode())
    with pytest.raises(ValueError):
        chain_id(None, "sha256:../x")


def test_import_records_diff_id_and_metadata(store: LayerStore) -> None:
    layer = store.import_tar(io.BytesIO(BASE), None)
    assert layer == Layer(
        chain_id=_sha(BASE), diff_id=_sha(BASE), parent=None, size=len(b"root:x:0:0::/root:/bin/sh\n") + 2
    )
    d = store.root / layer.chain_id[7:]
    assert (d / "diff-id").read_text() == layer.diff_id
    assert (d / "parent").read_text() == ""
    assert int((d / "size").read_text()) == layer.size
    assert (store.diff_path(layer.chain_id) / "etc/passwd").exists()
    assert store.get(layer.chain_id) == layer and store.exists(layer.chain_id)


def test_same_layer_is_stored_once_whatever_the_compression(store: LayerStore) -> None:
    first = store.import_tar(io.BytesIO(BASE), None)
    again = store.import_tar(io.BytesIO(BASE), None)
    gz = store.import_tar(io.BytesIO(gzip.compress(BASE)), None)
    zst = store.import_tar(io.BytesIO(zstandard.ZstdCompressor().compress(BASE)), None)
    assert first == again == gz == zst
    store.wait_discards()
    assert _layer_dirs(store.root) == [first.chain_id[7:]]
    assert os.listdir(store.root) == [first.chain_id[7:]]  # no temporaries left either


def test_layer_stack_and_lowers(store: LayerStore) -> None:
    base = store.import_tar(io.BytesIO(BASE), None)
    top = store.import_tar(io.BytesIO(TOP), base.chain_id)
    assert top.parent == base.chain_id and top.diff_id == _sha(TOP)
    assert top.chain_id == chain_id(base.chain_id, _sha(TOP))
    assert store.lowers(top.chain_id) == [store.diff_path(top.chain_id), store.diff_path(base.chain_id)]
    wh = os.lstat(store.diff_path(top.chain_id) / "etc/passwd")
    assert stat.S_ISCHR(wh.st_mode) and wh.st_rdev == 0
    # the same diff on another parent is another layer
    alone = store.import_tar(io.BytesIO(TOP), None)
    assert alone.chain_id != top.chain_id
    assert {la.chain_id for la in store.list()} == {base.chain_id, top.chain_id, alone.chain_id}
    store.remove(top.chain_id)
    store.remove(top.chain_id)
    assert not store.exists(top.chain_id)
    with pytest.raises(LayerNotFound):
        store.get(top.chain_id)
    with pytest.raises(LayerNotFound):
        store.import_tar(io.BytesIO(TOP), top.chain_id)  # missing parent


def test_expected_diff_id(store: LayerStore) -> None:
    layer = store.import_tar(io.BytesIO(BASE), None, expected_diff_id=_sha(BASE))
    # present already: the stream is not even read
    assert store.import_tar(io.BytesIO(b"garbage"), None, expected_diff_id=_sha(BASE)) == layer
    with pytest.raises(DigestMismatch):
        store.import_tar(io.BytesIO(TOP), None, expected_diff_id=_sha(b"something else"))
    assert _layer_dirs(store.root) == [layer.chain_id[7:]]


def test_diff_id_covers_trailing_padding(store: LayerStore) -> None:
    padded = BASE + bytes(10240)
    assert store.import_tar(io.BytesIO(padded), None).diff_id == _sha(padded)


def test_hostile_or_broken_layer_leaves_nothing(store: LayerStore, tmp_path: Path) -> None:
    for bad in (
        tar_bytes(reg("../../escape", b"x")),
        tar_bytes(reg("f", b"x"), hard("h", "../../../f")),  # a hard link must name a member
        gzip.compress(BASE)[:100],
        BASE[:700],
    ):
        with pytest.raises(ArchiveError):
            store.import_tar(io.BytesIO(bad), None)
    assert os.listdir(store.root) == []
    assert not (tmp_path / "escape").exists()


def test_failed_stream_leaves_nothing(store: LayerStore) -> None:
    class Broken:
        def __init__(self) -> None:
            self.src = io.BytesIO(BASE)

        def read(self, n: int = -1) -> bytes:
            if self.src.tell() > 1000:
                raise ConnectionResetError("peer went away")
            return self.src.read(min(n, 600) if n > 0 else 600)

    with pytest.raises(ConnectionResetError):
        store.import_tar(Broken(), None)
    assert os.listdir(store.root) == []


def test_killed_import_is_cleaned_at_next_start(tmp_path: Path) -> None:
    root = tmp_path / "layers"
    LayerStore(root, durable=False)
    code = (
        "import sys; from storage.layers import LayerStore; "
        f"LayerStore({str(root)!r}, durable=False).import_tar(sys.stdin.buffer, None)"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, cwd=REPO)
    assert proc.stdin is not None
    big = tar_bytes(*(reg(f"f{i}", os.urandom(4096)) for i in range(64)))
    proc.stdin.write(big[: len(big) // 2])
    proc.stdin.flush()
    deadline = time.monotonic() + 10
    while not any(n.startswith(".tmp-") for n in os.listdir(root)):
        assert time.monotonic() < deadline, "import never started"
        time.sleep(0.01)
    time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stdin.close()
    leftovers = os.listdir(root)
    assert leftovers and all(n.startswith(".tmp-") for n in leftovers)
    store = LayerStore(root, durable=False)
    assert os.listdir(root) == [] and store.list() == []


def test_durable_import(tmp_path: Path) -> None:
    store = LayerStore(tmp_path / "layers")
    assert store.import_tar(io.BytesIO(BASE), None).diff_id == _sha(BASE)


def test_concurrent_imports_of_one_layer(store: LayerStore) -> None:
    data = tar_bytes(*(reg(f"f{i}", os.urandom(2048)) for i in range(50)))
    results: list[Layer] = []
    threads = [
        threading.Thread(target=lambda: results.append(store.import_tar(io.BytesIO(data), None))) for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 4 and len(set(results)) == 1
    store.wait_discards()
    assert os.listdir(store.root) == [results[0].chain_id[7:]]
