"""Images from tarballs: import (file, stdin, URL, compressions, -c/-m), ls, inspect, tag, rmi,
history, prune."""

from __future__ import annotations

import hashlib
import http.server
import json
import re
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.helpers import HEX12, HEX64, RFC3339, image_inspect
from tests.helpers import Daemon, import_busybox

pytestmark = pytest.mark.e2e

SHA_LINE = re.compile(r"^sha256:[0-9a-f]{64}$")


def _sha256(p: Path) -> str:
    h = hashlib.sha256()
    with open(p, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


def _import(d: Daemon, src: str, ref: str = "", *opts: str, input: bytes | None = None) -> str:
    args = ["import", *opts, src] + ([ref] if ref else [])
    out = d.docker(*args, input=input, timeout=120).stdout.strip()
    assert SHA_LINE.match(out), f"docker import printed {out!r}, expected one sha256:<id> line"
    return out


def _image_ids(d: Daemon, *args: str) -> list[str]:
    return d.docker("images", "-q", "--no-trunc", *args).stdout.split()


# --------------------------------------------------------------------------- import


def test_import_file(d: Daemon, busybox_rootfs: Path, uname: Callable[[str], str]) -> None:
    ref = f"{uname('img')}:v1"
    iid = _import(d, str(busybox_rootfs), ref)
    info = image_inspect(d, ref)
    assert info["Id"] == iid
    assert info["RepoTags"] == [ref]
    assert info["RootFS"]["Type"] == "layers"
    # The layer's DiffID is the digest of the uncompressed tar we sent.
    assert info["RootFS"]["Layers"] == [_sha256(busybox_rootfs)]
    assert d.docker("images", "-q", ref).stdout.strip() == iid[7:19]
    assert d.docker("run", "--rm", ref, "echo", "from-import").stdout == "from-import\n"


def test_import_stdin(d: Daemon, busybox_rootfs: Path, uname: Callable[[str], str]) -> None:
    ref = f"{uname('img')}:stdin"
    iid = _import(d, "-", ref, input=busybox_rootfs.read_bytes())
    assert image_inspect(d, ref)["Id"] == iid
    # Through a real shell pipe as well, untagged this time: a dangling image.
    r = subprocess.run(f"cat {busybox_rootfs} | docker import -", shell=True, env=d.env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    iid2 = r.stdout.strip()
    assert SHA_LINE.match(iid2)
    assert iid2 in _image_ids(d, "--filter", "dangling=true")
    assert image_inspect(d, iid2)["RepoTags"] == []


@pytest.mark.parametrize(
    "tool,ext", [("gzip", "gz"), ("bzip2", "bz2"), ("xz", "xz"), ("zstd", "zst")]
)
def test_import_compressed(d: Daemon, busybox_rootfs: Path, tmp_path: Path, tool: str, ext: str,
                           uname: Callable[[str], str]) -> None:
    packed = tmp_path / f"rootfs.tar.{ext}"
    with open(packed, "wb") as out:
        subprocess.run([tool, "-c", str(busybox_rootfs)], stdout=out, check=True, timeout=120)
    ref = f"{uname(ext)}:{ext}"
    _import(d, str(packed), ref)
    assert image_inspect(d, ref)["RootFS"]["Layers"] == [_sha256(busybox_rootfs)]
    assert d.docker("run", "--rm", ref, "cat", "/etc/passwd").stdout.startswith("root:x:0:0")


def test_import_url(d: Daemon, busybox_rootfs: Path, uname: Callable[[str], str]) -> None:
    root = str(busybox_rootfs.parent)

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a: Any, **kw: Any) -> None:
            super().__init__(*a, directory=root, **kw)

        def log_message(self, *a: object) -> None:  # keep pytest output clean
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        url = f"http://127.0.0.1:{srv.server_address[1]}/{busybox_rootfs.name}"
        ref = f"{uname('url')}:v1"
        d.docker("import", url, ref, timeout=120)
        info = image_inspect(d, ref)
        assert info["RootFS"]["Layers"] == [_sha256(busybox_rootfs)]
        hist = d.docker("history", "--no-trunc", "--format", "{{.Comment}}", ref).stdout
        assert f"Imported from {url}" in hist
    finally:
        srv.shutdown()
        srv.server_close()


def test_import_with_changes_and_message(d: Daemon, busybox_rootfs: Path, uname: Callable[[str], str]) -> None:
    ref = f"{uname('chg')}:v1"
    changes = [
        'ENTRYPOINT ["/bin/sh", "-c"]',
        'CMD ["echo hello-from-cmd"]',
        "ENV A=1 B=two",
        "WORKDIR /srv/app",
        "EXPOSE 80/tcp 53/udp",
        "USER nobody",
        'LABEL a=b c="d e"',
        "VOLUME /data",
        "STOPSIGNAL SIGUSR1",
    ]
    opts: list[str] = []
    for c in changes:
        opts += ["-c", c]
    _import(d, str(busybox_rootfs), ref, *opts, "-m", "my import message")
    cfg = image_inspect(d, ref)["Config"]
    assert cfg["Entrypoint"] == ["/bin/sh", "-c"]
    assert cfg["Cmd"] == ["echo hello-from-cmd"]
    assert "A=1" in cfg["Env"] and "B=two" in cfg["Env"]
    assert cfg["WorkingDir"] == "/srv/app"
    assert set(cfg["ExposedPorts"]) == {"80/tcp", "53/udp"}
    assert cfg["User"] == "nobody"
    assert cfg["Labels"] == {"a": "b", "c": "d e"}
    assert cfg["Volumes"] == {"/data": {}}
    assert cfg["StopSignal"] == "SIGUSR1"
    info = image_inspect(d, ref)
    assert info["Comment"] == "my import message"
    assert d.docker("history", "--format", "{{.Comment}}", ref).stdout.strip() == "my import message"
    # The config is merged into containers as dockerd merges it.
    assert d.docker("run", "--rm", ref).stdout == "hello-from-cmd\n"
    out = d.docker("run", "--rm", ref, 'id -u; pwd; echo "$A $B"').stdout
    assert out == "65534\n/srv/app\n1 two\n"
    out = d.docker("run", "--rm", "-u", "root", "-w", "/", ref, 'id -u; pwd').stdout
    assert out == "0\n/\n"


def test_import_rejects_bad_input(d: Daemon, busybox_rootfs: Path, uname: Callable[[str], str]) -> None:
    before = set(_image_ids(d, "-a"))
    r = d.docker("import", "-c", "RUN echo nope", str(busybox_rootfs), f"{uname('bad')}:v1", check=False)
    assert r.returncode != 0 and "RUN" in r.stderr, r
    r = d.docker("import", "-", f"{uname('bad')}:v2", input=b"this is not a tar archive\n" * 100, check=False)
    assert r.returncode != 0, r
    assert "Traceback" not in r.stderr
    assert set(_image_ids(d, "-a")) == before, "a failed import left an image behind"


# --------------------------------------------------------------------------- listing


@pytest.fixture
def three_images(d: Daemon, busybox_rootfs: Path, uname: Callable[[str], str]) -> Iterator[list[str]]:
    """Three images imported in order, labelled, plus the refs used for them."""
    refs = [f"{uname('ls')}-{i}:v{i}" for i in range(3)]
    for i, ref in enumerate(refs):
        _import(d, str(busybox_rootfs), ref, "-c", f"LABEL idx={i} group={uname('grp')}")
    yield refs


def test_images_table_and_quiet(d: Daemon, three_images: list[str]) -> None:
    out = d.docker("images").stdout.splitlines()
    assert out[0].split() == ["REPOSITORY", "TAG", "IMAGE", "ID", "CREATED", "SIZE"]
    rows = {tuple(ln.split()[:2]) for ln in out[1:]}
    assert ("busybox", "latest") in rows
    for ref in three_images:
        assert tuple(ref.split(":")) in rows
    assert not any(ln.startswith("docker.io/") for ln in out)
    short = d.docker("images", "-q").stdout.split()
    assert short and all(HEX12.match(s) for s in short)
    full = d.docker("images", "-q", "--no-trunc").stdout.split()
    assert all(s.startswith("sha256:") and HEX64.match(s[7:]) for s in full)
    assert d.docker("images", "-a", "-q").returncode == 0
    dig = d.docker("images", "--digests").stdout.splitlines()[0].split()
    assert dig[:3] == ["REPOSITORY", "TAG", "DIGEST"]


def test_images_format(d: Daemon, three_images: list[str]) -> None:
    out = d.docker("images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}} {{.Size}}").stdout.splitlines()
    ref = three_images[0]
    line = next(ln for ln in out if ln.startswith(ref + " "))
    _, iid, size = line.split(" ", 2)
    assert HEX12.match(iid)
    assert re.match(r"^\d+(\.\d+)?(B|kB|MB)$", size), size
    js = [json.loads(ln) for ln in d.docker("images", "--format", "{{json .}}").stdout.splitlines()]
    assert any(j["Repository"] == "busybox" and j["Tag"] == "latest" for j in js)


def test_images_filters(d: Daemon, three_images: list[str], busybox_rootfs: Path, uname: Callable[[str], str]) -> None:
    def refs(*flt: str) -> set[str]:
        args: list[str] = []
        for f in flt:
            args += ["--filter", f]
        return set(d.docker("images", "--format", "{{.Repository}}:{{.Tag}}", *args).stdout.split())

    group = f"group={uname('grp')}"
    assert refs(f"label={group}") == set(three_images)
    # Newest first, as dockerd sorts them (the CLI does not sort).
    order = d.docker("images", "--filter", f"label={group}", "--format", "{{.Repository}}:{{.Tag}}").stdout.split()
    assert order == three_images[::-1]
    assert refs(f"label={group}", "label=idx=1") == {three_images[1]}
    assert refs("label=idx") >= set(three_images)
    assert refs(f"reference={three_images[0].split(':')[0]}") == {three_images[0]}
    assert refs(f"reference={uname('ls')}-*") == set(three_images)
    assert refs("reference=*:v2") >= {three_images[2]}
    assert refs(f"label={group}", f"before={three_images[2]}") == set(three_images[:2])
    assert refs(f"label={group}", f"since={three_images[0]}") == set(three_images[1:])
    dangling = _import(d, str(busybox_rootfs), "", "-c", f"LABEL {group}")
    got = set(d.docker("images", "-q", "--no-trunc", "--filter", "dangling=true").stdout.split())
    assert dangling in got
    assert not got & set(_image_ids(d, f"--filter=label={group}", "--filter=dangling=false"))
    r = d.docker("images", "--filter", "bogus=1", check=False)
    assert r.returncode == 1 and "Invalid filter 'bogus'" in r.stderr, r


def test_image_inspect_fields(d: Daemon, busybox: str) -> None:
    info = image_inspect(d, "busybox")
    assert info["Id"] == busybox
    assert info["RepoTags"] == ["busybox:latest"]
    assert info["RepoDigests"] == []
    assert RFC3339.match(info["Created"]), info["Created"]
    assert info["Os"] == "linux"
    assert info["Architecture"] in ("amd64", "arm64")
    assert info["Size"] > 500_000
    assert info["Config"]["Cmd"] == ["sh"]
    assert d.docker("inspect", "-f", "{{.Config.Cmd}}", "busybox").stdout.strip() == "[sh]"
    assert d.docker("image", "inspect", "-f", "{{.Id}}", busybox[7:19]).stdout.strip() == busybox
    r = d.docker("image", "inspect", "nope:x", check=False)
    assert r.returncode == 1 and "No such image: nope:x" in r.stderr, r


# --------------------------------------------------------------------------- tag / rmi


def test_tag(d: Daemon, busybox: str, uname: Callable[[str], str]) -> None:
    name = uname("tag")
    d.docker("tag", "busybox", f"{name}:v1")
    d.docker("tag", "busybox:latest", name)
    d.docker("tag", busybox[7:19], f"{name}:v2")
    d.docker("tag", busybox, f"localhost:5000/{name}/sub:v3")
    for ref in (f"{name}:v1", f"{name}:latest", f"{name}:v2", f"localhost:5000/{name}/sub:v3"):
        assert image_inspect(d, ref)["Id"] == busybox
    tags = image_inspect(d, busybox)["RepoTags"]
    assert {"busybox:latest", f"{name}:v1", f"{name}:latest", f"{name}:v2",
            f"localhost:5000/{name}/sub:v3"} <= set(tags)
    assert not any(t.startswith("docker.io/") for t in tags)
    r = d.docker("tag", "nope:x", f"{name}:v9", check=False)
    assert r.returncode == 1 and "No such image: nope:x" in r.stderr, r
    for ref in (f"{name}:v1", f"{name}:latest", f"{name}:v2", f"localhost:5000/{name}/sub:v3"):
        d.docker("rmi", ref)


def test_rmi_untag_then_delete(d: Daemon, busybox: str, busybox_rootfs: Path, uname: Callable[[str], str]) -> None:
    name = uname("rmi")
    d.docker("tag", "busybox", f"{name}:v1")
    r = d.docker("rmi", f"{name}:v1")
    assert r.stdout.splitlines() == [f"Untagged: {name}:v1"]
    assert image_inspect(d, "busybox")["Id"] == busybox  # other tag keeps it
    iid = _import(d, str(busybox_rootfs), f"{name}:solo")
    r = d.docker("rmi", f"{name}:solo")
    assert r.stdout.splitlines()[0] == f"Untagged: {name}:solo"
    assert f"Deleted: {iid}" in r.stdout.splitlines()
    assert iid not in _image_ids(d, "-a")
    r = d.docker("rmi", "cap-nonexistent:nope", check=False)
    assert r.returncode == 1 and "No such image: cap-nonexistent:nope" in r.stderr, r
    # Two tags on one id: removing by id needs -f, then both go.
    iid = _import(d, str(busybox_rootfs), f"{name}:a")
    d.docker("tag", f"{name}:a", f"{name}:b")
    r = d.docker("rmi", iid[7:19], check=False)
    assert r.returncode == 1 and "conflict" in r.stderr.lower(), r
    r = d.docker("rmi", "-f", iid[7:19])
    assert {f"Untagged: {name}:a", f"Untagged: {name}:b", f"Deleted: {iid}"} <= set(r.stdout.splitlines())


def test_rmi_refused_while_used(d: Daemon, busybox_rootfs: Path, uname: Callable[[str], str]) -> None:
    name = uname("used")
    ref = f"{name}:v1"
    iid = _import(d, str(busybox_rootfs), ref)
    ctr = uname("ctr")
    d.docker("create", "--name", ctr, ref, "echo", "still-works")
    resp = d.api("DELETE", f"/images/{ref}")
    assert resp.status == 409, resp.text
    r = d.docker("rmi", ref, check=False)
    assert r.returncode == 1 and "conflict" in r.stderr.lower() and "container" in r.stderr.lower(), r
    assert image_inspect(d, ref)["Id"] == iid
    r = d.docker("rmi", "-f", ref)
    assert f"Untagged: {ref}" in r.stdout
    # The container keeps its image (now untagged) and still runs.
    assert d.docker("inspect", "-f", "{{.Image}}", ctr).stdout.strip() == iid
    assert d.docker("start", "-a", ctr).stdout == "still-works\n"
    # A running container's image cannot be deleted by id even with -f.
    run = uname("running")
    d.docker("run", "-d", "--name", run, iid, "sleep", "300")
    r = d.docker("rmi", "-f", iid, check=False)
    assert r.returncode == 1 and "running" in r.stderr.lower(), r
    d.docker("rm", "-f", run, ctr)
    d.docker("rmi", iid)


def test_history(d: Daemon, busybox: str) -> None:
    out = d.docker("history", "busybox").stdout.splitlines()
    assert out[0].split() == ["IMAGE", "CREATED", "CREATED", "BY", "SIZE", "COMMENT"]
    assert len(out) == 2
    assert out[1].split()[0] == busybox[7:19]
    assert out[1].rstrip().endswith("Imported from -")
    assert d.docker("history", "--no-trunc", "-q", "busybox").stdout.split() == [busybox]
    r = d.docker("history", "nope:x", check=False)
    assert r.returncode == 1 and "No such image: nope:x" in r.stderr


# --------------------------------------------------------------------------- prune


def test_image_prune(new_daemon: Callable[..., Daemon], busybox_rootfs: Path) -> None:
    # A daemon of its own: prune -a would otherwise take the session's shared images.
    dm = new_daemon()
    used = import_busybox(dm, busybox_rootfs, "used:v1")
    unused = import_busybox(dm, busybox_rootfs, "unused:v1")
    dangling = _import(dm, str(busybox_rootfs))
    labelled = _import(dm, str(busybox_rootfs), "", "-c", "LABEL keep=yes")
    dm.docker("create", "--name", "user", "used:v1", "true")

    r = dm.docker("image", "prune", "-f", "--filter", "label!=keep=yes")
    assert "Deleted Images:" in r.stdout and "Total reclaimed space:" in r.stdout
    assert f"deleted: {dangling}" in r.stdout
    left = set(_image_ids(dm, "-a"))
    assert dangling not in left and {used, unused, labelled} <= left

    r = dm.docker("image", "prune", "-f")
    assert f"deleted: {labelled}" in r.stdout
    assert set(_image_ids(dm, "-a")) == {used, unused}

    r = dm.docker("image", "prune", "-a", "-f")
    assert "untagged: unused:v1" in r.stdout and f"deleted: {unused}" in r.stdout
    assert set(_image_ids(dm, "-a")) == {used}, "prune -a must keep images that containers use"
    r = dm.docker("image", "prune", "-a", "-f")
    assert "Total reclaimed space: 0B" in r.stdout


def test_rmi_force_of_a_stopped_containers_image_keeps_its_layers(d: Daemon, uname: Callable[[str], str]) -> None:
    """As dockerd: `rmi -f ID` deletes the image a stopped container was made from, and the
    container still starts (its layers stay); they go when the container does."""

    def layers() -> set[str]:
        return {p.name for p in (d.data_root / "layers").iterdir() if re.fullmatch(r"[0-9a-f]{64}", p.name)}

    base, user, img = uname("rmibase"), uname("rmiuser"), uname("rmiimg") + ":1"
    d.docker("run", "--name", base, "busybox", "sh", "-c", "echo layer > /l")
    iid = d.docker("commit", base, img).stdout.strip()
    d.docker("rm", base)
    d.docker("create", "--name", user, img, "cat", "/l")
    before = layers()
    assert f"Deleted: {iid}" in d.docker("rmi", "-f", iid).stdout
    assert layers() == before
    assert d.docker("start", "-a", user).stdout == "layer\n"
    d.docker("rm", user)
    assert len(before - layers()) == 1  # the committed layer; busybox's stays for busybox
