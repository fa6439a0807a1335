"""storage.blobs: content-addressed, atomic, verified."""

from __future__ import annotations

import fcntl
import hashlib
import os
from pathlib import Path

import pytest

from storage.blobs import BlobNotFound, BlobStore
from storage.digest import DigestMismatch, InvalidDigest


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def test_put_get_delete(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    d = store.put(b"hello")
    assert d == _digest(b"hello")
    assert store.exists(d) and store.get(d) == b"hello" and store.size(d) == 5
    assert store.path(d) == tmp_path / "sha256" / d.split(":")[1]
    assert store.put(b"hello") == d  # idempotent
    with store.open(d) as f:
        assert f.read() == b"hello"
    assert store.list() == [d]
    store.delete(d)
    store.delete(d)
    assert not store.exists(d)
    with pytest.raises(BlobNotFound):
        store.get(d)


@pytest.mark.parametrize(
    "bad",
    [
        "sha256:../../../etc/passwd",
        "sha256:" + "A" * 64,
        "sha256:" + "a" * 63,
        "md5:" + "a" * 32,
        "a" * 64,
        "sha256:" + "a" * 64 + "/x",
        "sha256:" + "a" * 64 + "\n",
    ],
)
def test_invalid_digests_never_reach_the_filesystem(tmp_path: Path, bad: str) -> None:
    store = BlobStore(tmp_path)
    for call in (store.path, store.exists, store.get, store.delete):
        with pytest.raises(InvalidDigest):
            call(bad)


def test_streaming_writer_verifies(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    data = os.urandom(3 << 20)
    with store.writer(expected=_digest(data)) as w:
        for i in range(0, len(data), 100_000):
            w.write(data[i : i + 100_000])
    assert w.digest == _digest(data) and w.size == len(data)
    assert store.get(w.digest) == data

    with pytest.raises(DigestMismatch):
        with store.writer(expected=_digest(b"other")) as w:
            w.write(b"not other")
    assert not store.exists(_digest(b"not other"))

    with pytest.raises(RuntimeError):
        with store.writer() as w:
            w.write(b"half")
            raise RuntimeError("client went away")
    assert not store.exists(_digest(b"half"))
    assert sorted(os.listdir(tmp_path / "sha256")) == [_digest(data)[7:]]


def test_stale_temporaries_are_removed_at_start(tmp_path: Path) -> None:
    BlobStore(tmp_path)
    stale = tmp_path / "sha256" / ".tmp-crashed"
    stale.write_bytes(b"partial")
    busy = tmp_path / "sha256" / ".tmp-busy"
    busy.write_bytes(b"in progress")
    fd = os.open(busy, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        BlobStore(tmp_path)
        assert not stale.exists()
        assert busy.exists()  # another writer holds it
    finally:
        os.close(fd)
