"""Pure parts of distribution: auth header decoding, insecure registries, platform choice, progress
records, references, layer sources, and the image archive reader's path rules."""

from __future__ import annotations

import base64
import io
import json
import tarfile
from pathlib import Path

import pytest

from daemon.distribution.progress import human_size, progress
from daemon.distribution.pull import pull_reference
from daemon.distribution.registries import registry_domain, remote_path
from daemon.images.reference import parse
from storage.blobs import BlobStore
from storage.errors import ArchiveError
from storage.imagearchive import read_archive
from storage.layers import LayerStore
from storage.layersource import MEDIA_TAR, LayerSources, import_layer
from storage.registry import _challenge, _error_text, decode_auth_header, is_insecure
from storage.registryplatform import parse as parse_platform
from storage.registryplatform import select


def test_auth_header() -> None:
    assert decode_auth_header("e30=").empty
    assert decode_auth_header(None).empty
    doc = {"username": "alice", "password": "pw", "serveraddress": "r:5000"}
    raw = base64.urlsafe_b64encode(json.dumps(doc).encode()).decode().rstrip("=")
    c = decode_auth_header(raw)
    assert (c.username, c.password) == ("alice", "pw")
    c = decode_auth_header(base64.urlsafe_b64encode(json.dumps({"auth": base64.b64encode(b"bob:x:y").decode()})
                                                    .encode()).decode())
    assert (c.username, c.password) == ("bob", "x:y")
    assert decode_auth_header("!!not base64!!").empty


def test_insecure_registries() -> None:
    assert is_insecure("127.0.0.1:5000", [])
    assert is_insecure("127.1.2.3", [])
    assert is_insecure("localhost:5000", [])
    assert not is_insecure("10.1.2.3:5000", [])
    assert is_insecure("10.1.2.3:5000", ["10.0.0.0/8"])
    assert is_insecure("myreg.example:5000", ["myreg.example:5000"])


def test_challenge_and_errors() -> None:
    scheme, params = _challenge('Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
                                'scope="repository:library/busybox:pull"')
    assert scheme == "bearer" and params["realm"] == "https://auth.docker.io/token"
    assert params["scope"] == "repository:library/busybox:pull"
    assert _challenge('Basic realm="x"')[0] == "basic"
    assert _error_text(b'{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}') == "manifest unknown"
    assert _error_text(b"<html>") == ""


def test_platforms() -> None:
    ms = [{"digest": "a", "platform": {"os": "linux", "architecture": "amd64"}},
          {"digest": "b", "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"}},
          {"digest": "c", "platform": {"os": "linux", "architecture": "arm", "variant": "v6"}}]
    assert select(ms, "linux/amd64")["digest"] == "a"  # type: ignore[index]
    assert select(ms, "linux/arm64")["digest"] == "b"  # type: ignore[index]
    assert select(ms, "linux/arm/v7") is None
    assert select(ms, "linux/s390x") is None
    assert parse_platform("linux/x86_64") == ("linux", "amd64", "")


def test_progress_records() -> None:
    assert human_size(36564) == "36.56kB" and human_size(1032111) == "1.032MB" and human_size(5) == "5B"
    rec = progress("Downloading", "a74c84ee1c69", 36564, 1032111)
    assert rec["progress"] == "[=>" + " " * 49 + "]  36.56kB/1.032MB"
    assert rec["progressDetail"] == {"current": 36564, "total": 1032111}
    full = progress("Downloading", "x", 10, 10)["progress"]
    assert full.startswith("[" + "=" * 50 + ">]")


def test_references() -> None:
    assert pull_reference("busybox", "latest") == (parse("busybox:latest"), False)
    ref, all_tags = pull_reference("127.0.0.1:5000/cap/bb", "")
    assert all_tags and ref.tag is None
    ref, _ = pull_reference("127.0.0.1:5000/cap/bb", "sha256:" + "a" * 64)
    assert ref.digest == "sha256:" + "a" * 64 and ref.tag is None
    assert remote_path(parse("busybox")) == "library/busybox"
    assert remote_path(parse("127.0.0.1:5000/cap/bb")) == "cap/bb"
    assert registry_domain("https://index.docker.io/v1/") == "docker.io"
    assert registry_domain("http://127.0.0.1:5000") == "127.0.0.1:5000"


def _tar(files: dict[str, bytes], links: dict[str, str] | None = None) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, data in files.items():
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))
        for name, target in (links or {}).items():
            ti = tarfile.TarInfo(name)
            ti.type = tarfile.SYMTYPE
            ti.linkname = target
            tf.addfile(ti)
    return buf.getvalue()


@pytest.fixture
def stores(tmp_path: Path) -> tuple[LayerStore, LayerSources]:
    blobs = BlobStore(tmp_path / "blobs")
    layers = LayerStore(tmp_path / "layers", durable=False)
    return layers, LayerSources(tmp_path / "sources", blobs, layers)


def test_layer_source_kept_and_collected(stores: tuple[LayerStore, LayerSources]) -> None:
    layers, sources = stores
    data = _tar({"a": b"1"})
    layer = import_layer(layers, sources, io.BytesIO(data), None)
    src = sources.get(layer.diff_id)
    assert src is not None and src.media_type == MEDIA_TAR and sources.open(src).read() == data
    sources.collect({layer.diff_id})
    assert sources.get(layer.diff_id) is not None
    sources.collect(set())
    assert sources.get(layer.diff_id) is None and not sources.blobs.exists(src.digest)


def test_archive_paths_stay_inside(stores: tuple[LayerStore, LayerSources], tmp_path: Path) -> None:
    layers, sources = stores
    work = tmp_path / "work"
    work.mkdir()
    cases = [
        _tar({"manifest.json": json.dumps([{"Config": "/etc/passwd", "Layers": []}]).encode()}),
        _tar({"manifest.json": json.dumps([{"Config": "c", "Layers": []}]).encode()}, {"c": "/etc/passwd"}),
        _tar({"etc/passwd": b"root"}),
    ]
    for data in cases:
        with pytest.raises(ArchiveError):
            read_archive(io.BytesIO(data), work, layers, sources)
    assert list(work.iterdir()) == []
