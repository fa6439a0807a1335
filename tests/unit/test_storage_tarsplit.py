"""storage.tarsplit via layersource.import_layer: an uncompressed layer comes back byte for byte."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from storage.blobs import BlobStore
from storage.layers import LayerStore
from storage.layersource import LayerSources, import_layer
from tests.unit.test_storage_support import dir_, hard, reg, sym, tar_bytes


@pytest.fixture
def stores(tmp_path: Path) -> tuple[LayerStore, LayerSources]:
    blobs = BlobStore(tmp_path / "blobs")
    layers = LayerStore(tmp_path / "layers", durable=False)
    return layers, LayerSources(tmp_path / "sources", blobs, layers)


def _roundtrip(stores: tuple[LayerStore, LayerSources], data: bytes) -> Path:
    layers, sources = stores
    layer = import_layer(layers, sources, io.BytesIO(data), None)
    assert layer.diff_id == "sha256:" + hashlib.sha256(data).hexdigest()
    src = sources.get(layer.diff_id)
    assert src is not None and src.split and src.size == len(data)
    with sources.open(src) as f:
        again = f.read()
    assert again == data
    return sources.split_dir(layer.diff_id)


def _split_size(d: Path) -> int:
    return sum(p.stat().st_size for p in d.iterdir() if p.name == "index")


def test_only_headers_are_stored(stores: tuple[LayerStore, LayerSources]) -> None:
    big = os.urandom(3 << 20)  # spans many reads of the tar reader's read-ahead
    data = tar_bytes(dir_("etc"), reg("etc/big", big), reg("etc/empty"), reg("etc/small", b"x" * 700),
                     sym("etc/link", "big"))
    d = _roundtrip(stores, data)
    assert _split_size(d) < 16 << 10, "file data was copied into the index"
    assert not list(stores[1].blobs.root.rglob("*")) or all(p.is_dir() for p in stores[1].blobs.root.rglob("*"))


@pytest.mark.parametrize("members", [
    # the same path twice: the first content is gone from the tree, not from the split
    [reg("a", b"one" * 5000), reg("a", b"two" * 4000)],
    # a hard link to a file that a later entry replaces
    [reg("f", b"x" * 5000), hard("g", "f"), reg("f", b"y" * 10)],
    # a whiteout in the same layer removes a file extracted just before
    [dir_("d"), reg("d/x", b"data" * 3000), reg("d/.wh.x")],
    # a directory replaces a file, then gets a file of its own
    [reg("p", b"file" * 2000), dir_("p"), reg("p/q", b"q" * 9000)],
    # GNU long names and PAX records ride in the raw header bytes
    [reg("l" * 150 + "/x" * 60, b"long" * 100), reg("u", b"z", pax_headers={"comment": "é" * 300})],
])
def test_tricky_archives_round_trip(stores: tuple[LayerStore, LayerSources], members: list) -> None:
    _roundtrip(stores, tar_bytes(*members))


def test_gnu_format_and_trailing_bytes(stores: tuple[LayerStore, LayerSources]) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tf:
        ti = tarfile.TarInfo("n" * 120 + "/" + "m" * 200)
        payload = os.urandom(100_000)
        ti.size = len(payload)
        tf.addfile(ti, io.BytesIO(payload))
    # Some writers pad to a 10 KiB record, some add more: all of it is part of the diff id.
    _roundtrip(stores, buf.getvalue() + b"\0" * 20480)


@pytest.mark.skipif(shutil.which("tar") is None, reason="needs GNU tar")
def test_sparse_member_kept_inline(stores: tuple[LayerStore, LayerSources], tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    with open(src / "sparse", "wb") as f:
        f.write(b"head")
        f.seek(5 << 20)
        f.write(b"tail")
    data = subprocess.run(["tar", "-C", str(src), "--sparse", "-cf", "-", "sparse"], check=True,
                          capture_output=True).stdout
    _roundtrip(stores, data)


def test_files_keep_their_link_count(stores: tuple[LayerStore, LayerSources]) -> None:
    layers, sources = stores
    data = tar_bytes(reg("a", b"one" * 5000), reg("b", b"B" * 100), hard("c", "b"), reg("a", b"two" * 10))
    d = _roundtrip(stores, data)
    diff = layers.diff_path(chain_id_of(data))
    assert os.stat(diff / "a").st_nlink == 1 and os.stat(diff / "b").st_nlink == 2
    # only the first "a", which no path in the layer holds any more, keeps a link of its own
    assert sorted(p.name for p in d.iterdir() if p.name.isdigit()) == ["1"]


def chain_id_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("change", ["content", "symlink"])
def test_changed_layer_file_is_an_error_not_a_wrong_tar(stores: tuple[LayerStore, LayerSources], tmp_path: Path,
                                                        change: str) -> None:
    layers, sources = stores
    data = tar_bytes(dir_("d"), reg("d/a", b"A" * 10000))
    _roundtrip(stores, data)
    diff = layers.diff_path(chain_id_of(data))
    if change == "content":
        with open(diff / "d" / "a", "r+b") as f:
            f.write(b"B")
    else:  # a swapped-in symlink is not followed out of the layer
        outside = tmp_path / "outside"
        outside.mkdir()
        (outside / "a").write_bytes(b"A" * 10000)
        (diff / "d" / "a").unlink()
        (diff / "d").rmdir()
        (diff / "d").symlink_to(outside)
    src = sources.get(chain_id_of(data))
    assert src is not None
    with pytest.raises(OSError), sources.open(src) as f:
        f.read()


def test_layer_there_before_its_source(stores: tuple[LayerStore, LayerSources]) -> None:
    """A layer imported without a source (older stores) gets one on the next import of its tar."""
    layers, sources = stores
    data = tar_bytes(reg("a", b"A" * 10000), reg("b", b"B" * 3000))
    layers.import_tar(io.BytesIO(data))
    assert sources.get(chain_id_of(data)) is None
    _roundtrip(stores, data)


def test_compressed_stream_stays_a_blob_and_collect_removes_splits(stores: tuple[LayerStore, LayerSources]) -> None:
    layers, sources = stores
    plain = tar_bytes(reg("a", b"A" * 10000))
    zipped = tar_bytes(reg("b", b"B" * 10000))
    la = import_layer(layers, sources, io.BytesIO(plain), None)
    lb = import_layer(layers, sources, io.BytesIO(gzip.compress(zipped)), None)
    sa, sb = sources.get(la.diff_id), sources.get(lb.diff_id)
    assert sa is not None and sa.split and sb is not None and not sb.split
    assert sources.blobs.exists(sb.digest)
    layers.remove(la.chain_id)  # its files were the split's data: no longer a usable source
    assert sources.get(la.diff_id) is None
    sources.collect(set(), {la.diff_id, lb.diff_id})
    assert not sources.split_dir(la.diff_id).exists() and not sources.blobs.exists(sb.digest)
    assert sources.get(la.diff_id) is None


def test_same_layer_twice_keeps_one_split(stores: tuple[LayerStore, LayerSources]) -> None:
    layers, sources = stores
    data = tar_bytes(reg("a", b"A" * 10000))
    import_layer(layers, sources, io.BytesIO(data), None)
    import_layer(layers, sources, io.BytesIO(data), None)
    assert [p.name for p in sources.root.iterdir() if p.name.endswith(".split")] == [
        hashlib.sha256(data).hexdigest() + ".split"]
    assert not [p for p in sources.root.iterdir() if p.name.startswith(".tmp-")]


def test_concurrent_imports_of_one_tar_keep_a_usable_split(stores: tuple[LayerStore, LayerSources]) -> None:
    import threading

    layers, sources = stores
    data = tar_bytes(*(reg(f"f{i}", os.urandom(4096)) for i in range(40)))
    threads = [threading.Thread(target=import_layer, args=(layers, sources, io.BytesIO(data), None))
               for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    layers.wait_discards()
    src = sources.get(chain_id_of(data))
    assert src is not None and src.split
    with sources.open(src) as f:
        assert f.read() == data
    assert not [p for p in sources.root.iterdir() if p.name.startswith(".tmp-")]
