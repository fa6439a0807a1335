"""docker commit (changes, whiteouts, -c/-m/-a, empty body), save/load round trips in the
docker-archive and OCI layouts, and archives that are not images or are hostile."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.e2e.helpers import image_inspect, tar_bytes
from tests.helpers import Daemon

pytestmark = pytest.mark.e2e


def _commit_image(d: Daemon, uname: Callable[[str], str]) -> tuple[str, str]:
    c = uname("c")
    d.docker("run", "--name", c, "busybox:latest", "sh", "-c",
             "echo hi > /hello; rm /etc/group; mkdir -p /x/y; echo z > /x/y/z")
    return c, f"{uname('img')}:v1"


def test_commit_changes_and_metadata(d: Daemon, uname: Callable[[str], str]) -> None:
    c, ref = _commit_image(d, uname)
    diff = d.docker("diff", c).stdout.split("\n")
    assert {"A /hello", "D /etc/group", "A /x", "A /x/y", "A /x/y/z", "C /etc"} <= set(diff), diff
    out = d.docker("commit", "-m", "cap commit", "-a", "cap author", "-c", "ENV CAPC=1", "-c", "EXPOSE 81",
                   c, ref).stdout.strip()
    assert out.startswith("sha256:") and len(out) == 71
    info = image_inspect(d, ref)
    assert info["Id"] == out and info["Comment"] == "cap commit" and info["Author"] == "cap author"
    assert "CAPC=1" in info["Config"]["Env"] and "81/tcp" in info["Config"]["ExposedPorts"]
    assert info["Config"]["Cmd"] == ["sh", "-c", "echo hi > /hello; rm /etc/group; mkdir -p /x/y; echo z > /x/y/z"]
    cid = d.docker("inspect", "-f", "{{.Id}}", c).stdout.strip()
    assert info["Container"] == cid and info["ContainerConfig"]["Image"] == "busybox:latest"
    assert len(info["RootFS"]["Layers"]) == 2
    hist = json.loads(d.api("GET", f"/images/{ref}/history").body)
    assert hist[0]["Comment"] == "cap commit" and hist[0]["Size"] > 0 and len(hist) == 2
    r = d.docker("run", "--rm", ref, "sh", "-c", "cat /hello /x/y/z; test -e /etc/group || echo gone")
    assert r.stdout == "hi\nz\ngone\n"
    # A container of the new image has no changes of its own.
    c2 = uname("c2")
    d.docker("create", "--name", c2, ref)
    assert d.docker("diff", c2).stdout.strip() == ""
    # The CLI's request without a repository: a dangling image; docker-py's empty body too.
    r = d.api("POST", f"/commit?container={c}&repo=&tag=&author=&comment=", body=b"")
    assert r.status == 201 and r.json()["Id"].startswith("sha256:")
    r = d.api("POST", f"/commit?container={c}&repo={uname('x')}&tag=t", body={"Cmd": ["true"]})
    assert r.status == 201
    assert image_inspect(d, f"{uname('x')}:t")["Config"]["Cmd"] == ["true"]
    r = d.api("POST", "/commit?container=nope-nope", body=b"")
    assert r.status == 404


def test_commit_running_container_pauses(d: Daemon, uname: Callable[[str], str]) -> None:
    c = uname("run")
    d.docker("run", "-d", "--name", c, "busybox:latest", "sh", "-c", "echo data > /made; sleep 60")
    from tests.e2e.helpers import wait_for

    wait_for(lambda: d.docker("diff", c).stdout.strip(), what="the container to write /made")
    iid = d.docker("commit", c, f"{uname('live')}:1").stdout.strip()
    assert d.docker("inspect", "-f", "{{.State.Status}}", c).stdout.strip() == "running"
    assert d.docker("run", "--rm", iid, "cat", "/made").stdout == "data\n"
    d.docker("rm", "-f", c)


def _tar_members(data: bytes) -> dict[str, bytes]:
    out = {}
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        for m in tf.getmembers():
            if m.isfile():
                f = tf.extractfile(m)
                assert f is not None
                out[m.name] = f.read()
    return out


def test_save_load_round_trip(d: Daemon, uname: Callable[[str], str], tmp_path: Path) -> None:
    c, ref = _commit_image(d, uname)
    d.docker("commit", c, ref)
    iid = image_inspect(d, ref)["Id"]
    out = tmp_path / "a.tar"
    d.docker("save", "-o", out, ref, "busybox:latest")
    files = _tar_members(out.read_bytes())
    manifest = json.loads(files["manifest.json"])
    assert {t for m in manifest for t in m["RepoTags"]} == {ref, "busybox:latest"}
    assert "index.json" in files and "oci-layout" in files and "repositories" in files
    for m in manifest:  # every layer file hashes to its diff id (what dockerd's load checks)
        cfg = json.loads(files[m["Config"]])
        got = ["sha256:" + hashlib.sha256(files[p]).hexdigest() for p in m["Layers"]]
        assert got == cfg["rootfs"]["diff_ids"]
    d.docker("rm", c)
    d.docker("rmi", ref)
    r = d.docker("load", "-i", out)
    assert f"Loaded image: {ref}" in r.stdout and "Loaded image: busybox:latest" in r.stdout
    assert image_inspect(d, ref)["Id"] == iid
    assert d.docker("run", "--rm", ref, "cat", "/hello").stdout == "hi\n"
    # Saving again gives the same bytes: nothing of the archive depends on when it was made.
    assert d.api("GET", f"/images/get?names={ref}&names=busybox:latest", timeout=60).body == out.read_bytes()
    r = d.docker("load", "-q", input=out.read_bytes())  # type: ignore[arg-type]
    assert r.stdout.count("Loaded image") == 2


def test_load_oci_layout_and_legacy_layout(d: Daemon, uname: Callable[[str], str], tmp_path: Path) -> None:
    data = d.api("GET", "/images/busybox:latest/get", timeout=60).body
    files = _tar_members(data)
    # OCI layout only (as podman/skopeo write it), with a gzip layer and a full name.
    index = json.loads(files["index.json"])
    mdesc = index["manifests"][0]
    manifest = json.loads(files["blobs/sha256/" + mdesc["digest"][7:]])
    layer = files["blobs/sha256/" + manifest["layers"][0]["digest"][7:]]
    gz = gzip.compress(layer, mtime=0)
    gz_digest = "sha256:" + hashlib.sha256(gz).hexdigest()
    manifest["layers"][0] = {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": gz_digest,
                             "size": len(gz)}
    mraw = json.dumps(manifest).encode()
    mdigest = "sha256:" + hashlib.sha256(mraw).hexdigest()
    name = f"localhost/{uname('oci')}:v2"
    index = {"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
                                                "digest": mdigest, "size": len(mraw),
                                                "annotations": {"org.opencontainers.image.ref.name": name}}]}
    cfg_path = "blobs/sha256/" + manifest["config"]["digest"][7:]
    oci = {"oci-layout": files["oci-layout"], "index.json": json.dumps(index).encode(),
           "blobs/sha256/" + mdigest[7:]: mraw, "blobs/sha256/" + gz_digest[7:]: gz, cfg_path: files[cfg_path]}
    r = d.docker("load", input=tar_bytes(oci))  # type: ignore[arg-type]
    assert f"Loaded image: {name}" in r.stdout, r.stdout
    assert image_inspect(d, name)["Id"] == image_inspect(d, "busybox:latest")["Id"]
    # dockerd 20.10's layout: <id>/layer.tar, <config>.json, manifest.json.
    legacy = {"abc/layer.tar": layer, "abc/VERSION": b"1.0", "cfg.json": files[cfg_path],
              "manifest.json": json.dumps([{"Config": "cfg.json", "RepoTags": [f"{uname('old')}:1"],
                                            "Layers": ["abc/layer.tar"]}]).encode()}
    r = d.docker("load", input=tar_bytes(legacy))  # type: ignore[arg-type]
    assert f"Loaded image: {uname('old')}:1" in r.stdout
    d.docker("rmi", name, f"{uname('old')}:1")


def _state(d: Daemon) -> tuple[set[str], set[str]]:
    images = {i["Id"] for i in d.api("GET", "/images/json?all=1").json()}
    layers = {n for n in os.listdir(d.data_root / "layers") if not n.startswith(".")}
    return images, layers


def test_load_refuses_bad_archives(d: Daemon, busybox_rootfs: Path) -> None:
    before = _state(d)
    r = d.docker("load", "-i", busybox_rootfs, check=False)
    assert r.returncode == 1 and "not an image archive" in r.stderr, r.stderr
    cfg = json.dumps({"rootfs": {"type": "layers", "diff_ids": ["sha256:" + "1" * 64]}}).encode()
    hostile = [
        ({"manifest.json": json.dumps([{"Config": "../../etc/passwd", "Layers": []}]).encode()}, None, "invalid path"),
        ({"c.json": cfg, "manifest.json": json.dumps([{"Config": "c.json", "Layers": ["l"]}]).encode()},
         {"l": "/etc/shadow"}, "outside"),
        ({"c.json": cfg, "l": b"x" * 10,
          "manifest.json": json.dumps([{"Config": "c.json", "Layers": ["l"]}]).encode()}, None, ""),
        ({"../evil": b"x"}, None, "outside"),
        ({"manifest.json": b"{not json"}, None, "not valid JSON"),
    ]
    for files, links, msg in hostile:
        r = d.docker("load", input=tar_bytes(files, links), check=False)  # type: ignore[arg-type]
        assert r.returncode == 1 and msg in r.stderr, (files.keys(), r.stderr)
    # a layer whose content is not what the config says
    good = tar_bytes({"f": b"data"})
    r = d.docker("load", input=tar_bytes({"c.json": cfg, "l.tar": good, "manifest.json": json.dumps(
        [{"Config": "c.json", "RepoTags": ["x:y"], "Layers": ["l.tar"]}]).encode()}), check=False)  # type: ignore[arg-type]
    assert r.returncode == 1 and "mismatch" in r.stderr
    # two layers, the second one wrong: the first one, already unpacked, goes again
    first = tar_bytes({"first-layer-only-here": b"1"})
    cfg2 = json.dumps({"rootfs": {"type": "layers", "diff_ids": [
        "sha256:" + hashlib.sha256(first).hexdigest(), "sha256:" + "2" * 64]}}).encode()
    r = d.docker("load", input=tar_bytes({"c.json": cfg2, "1.tar": first, "2.tar": good, "manifest.json": json.dumps(
        [{"Config": "c.json", "Layers": ["1.tar", "2.tar"]}]).encode()}), check=False)  # type: ignore[arg-type]
    assert r.returncode == 1 and "mismatch" in r.stderr
    # a name that is no reference: refused (as dockerd), and nothing of the image stays
    ok_layer = tar_bytes({"only-in-badname-layer": b"x"})
    cfg3 = json.dumps({"rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(ok_layer).hexdigest()]}})
    r = d.docker("load", input=tar_bytes({"c.json": cfg3.encode(), "l.tar": ok_layer, "manifest.json": json.dumps(
        [{"Config": "c.json", "RepoTags": ["Bad Name:x"], "Layers": ["l.tar"]}]).encode()}), check=False)  # type: ignore[arg-type]
    assert r.returncode == 1 and "invalid reference format" in r.stderr, r.stderr
    assert _state(d) == before
    assert not [n for n in os.listdir(d.data_root / "tmp") if not n.startswith(".")]


def test_save_unknown_image(d: Daemon, tmp_path: Path) -> None:
    r = d.docker("save", "-o", tmp_path / "x.tar", "no-such-image:nope", check=False)
    assert r.returncode == 1 and "No such image" in r.stderr


def test_imported_tar_saved_byte_for_byte(d: Daemon, uname: Callable[[str], str], tmp_path: Path,
                                          busybox_rootfs: Path) -> None:
    """An imported layer is kept as headers plus references to its files (tar-split): save gives
    the very tar back, also when a path appears twice, and the files keep their link counts."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        with tarfile.open(busybox_rootfs) as src:
            for m in src:
                tf.addfile(m, src.extractfile(m) if m.isreg() else None)
        for name, data in (("dup", b"first" * 5000), ("solo", b"s" * 9000), ("dup", b"second")):
            ti = tarfile.TarInfo(name)
            ti.size, ti.mode, ti.mtime = len(data), 0o644, 1_700_000_000
            tf.addfile(ti, io.BytesIO(data))
        ti = tarfile.TarInfo("solo-link")
        ti.type, ti.linkname = tarfile.LNKTYPE, "solo"
        tf.addfile(ti)
    data = buf.getvalue() + b"\0" * 4096  # trailing padding is part of the layer too
    src_tar = tmp_path / "in.tar"
    src_tar.write_bytes(data)
    ref = f"{uname('split')}:v1"
    d.docker("import", "-c", 'CMD ["sh"]', src_tar, ref)
    try:
        out = d.docker("run", "--rm", ref, "sh", "-c", "cat /dup; echo; stat -c %h /dup /solo /bin/busybox").stdout
        assert out.split() == ["second", "1", "2", "1"]
        d.docker("save", "-o", tmp_path / "out.tar", ref)
        files = _tar_members((tmp_path / "out.tar").read_bytes())
        manifest = json.loads(files["manifest.json"])
        assert files[manifest[0]["Layers"][0]] == data
    finally:
        d.docker("rmi", ref)


def test_save_repository_without_tag_saves_all_its_tags(d: Daemon, uname: Callable[[str], str],
                                                        tmp_path: Path) -> None:
    repo = uname("repo")
    d.docker("tag", "busybox:latest", f"{repo}:a")
    d.docker("tag", "busybox:latest", f"{repo}:b")
    try:
        d.docker("save", "-o", tmp_path / "r.tar", repo)
        manifest = json.loads(_tar_members((tmp_path / "r.tar").read_bytes())["manifest.json"])
        assert sorted(t for m in manifest for t in m["RepoTags"]) == [f"{repo}:a", f"{repo}:b"]
        r = d.docker("save", "-o", tmp_path / "x.tar", f"{repo}-none", check=False)
        assert r.returncode == 1 and "No such image" in r.stderr
    finally:
        d.docker("rmi", f"{repo}:a", f"{repo}:b")


def test_commit_records_parent_for_history_and_rmi(d: Daemon, uname: Callable[[str], str]) -> None:
    c1, c2 = uname("p1"), uname("p2")
    parent, child = f"{uname('parent')}:v1", f"{uname('child')}:v1"
    d.docker("run", "--name", c1, "busybox:latest", "sh", "-c", "echo 1 > /one")
    d.docker("commit", c1, parent)
    d.docker("run", "--name", c2, parent, "sh", "-c", "echo 2 > /two")
    d.docker("commit", c2, child)
    d.docker("rm", c1, c2)
    pid, cid = image_inspect(d, parent)["Id"], image_inspect(d, child)["Id"]
    assert image_inspect(d, child)["Parent"] == pid
    ids = d.docker("history", "-q", "--no-trunc", child).stdout.split()
    assert ids[:2] == [cid, pid], ids  # the parent's own row carries its id, not <missing>
    r = d.docker("rmi", "-f", pid, check=False)
    assert r.returncode == 1 and "image has dependent child images" in r.stderr, r.stderr
    # untagging the parent leaves it for its child, hidden from `docker images` but not from -a
    assert d.docker("rmi", parent).stdout.strip() == f"Untagged: {parent}"
    assert pid[7:19] not in d.docker("images", "-q").stdout
    assert pid[7:19] in d.docker("images", "-aq").stdout
    # removing the child takes the untagged parent along
    out = d.docker("rmi", child).stdout
    assert f"Deleted: {cid}" in out and f"Deleted: {pid}" in out, out
