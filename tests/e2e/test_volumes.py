"""Volumes and mounts: docker volume create/ls/inspect/rm/prune, -v, --mount, --tmpfs,
--volumes-from, image VOLUME, first-use copy, rm -v, .Mounts, persistence across restarts."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import tarfile
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.e2e.helpers import HEX64, RFC3339, fmt, inspect, nothing_created
from tests.helpers import Daemon, allocate_subnet

pytestmark = pytest.mark.e2e


def _volume_names(d: Daemon) -> set[str]:
    r = d.api("GET", "/volumes")
    assert r.status == 200, r.text
    return {v["Name"] for v in r.json()["Volumes"]}


@pytest.fixture
def v(d: Daemon) -> Iterator[Daemon]:
    """The session daemon; containers and then volumes the test made are removed afterwards."""
    before_ctrs = set(d.container_ids())
    before = _volume_names(d)
    yield d
    d.remove_containers(keep=before_ctrs)
    for name in _volume_names(d) - before:
        d.api("DELETE", f"/volumes/{name}?force=1")


def _image_with_data(d: Daemon, ref: str, busybox_rootfs: Path) -> None:
    """busybox plus /data/file (owned 1234:5678) and VOLUME /data."""
    buf = io.BytesIO()
    with tarfile.open(busybox_rootfs) as src, tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for m in src.getmembers():
            tf.addfile(m, src.extractfile(m) if m.isreg() else None)
        di = tarfile.TarInfo("data")
        di.type, di.mode, di.uid, di.gid = tarfile.DIRTYPE, 0o750, 1234, 5678
        tf.addfile(di)
        ei = tarfile.TarInfo("empty")  # an empty data dir of a service user
        ei.type, ei.mode, ei.uid, ei.gid = tarfile.DIRTYPE, 0o1777, 7, 8
        tf.addfile(ei)
        fi = tarfile.TarInfo("data/file")
        fi.size, fi.mode, fi.uid, fi.gid = 6, 0o640, 1234, 5678
        tf.addfile(fi, io.BytesIO(b"image\n"))
    d.docker("import", "-c", "VOLUME /data", "-c", 'CMD ["sh"]', "-", ref, input=buf.getvalue(), timeout=120)


# -- docker volume ------------------------------------------------------------------------------


def test_volume_create_ls_inspect_rm(v: Daemon, uname: Callable[[str], str]) -> None:
    a, b = uname("va"), uname("vb")
    assert v.docker("volume", "create", a).stdout.strip() == a
    assert v.docker("volume", "create", "--label", "t=1", "--driver", "local", "--opt", "type=tmpfs",
                    "--opt", "device=tmpfs", "--opt", "o=size=1m", b).stdout.strip() == b
    anon = v.docker("volume", "create", "--label", "t=1").stdout.strip()
    assert HEX64.match(anon)
    # create of an existing name returns it
    assert v.docker("volume", "create", a).stdout.strip() == a

    info = json.loads(v.docker("volume", "inspect", a, b).stdout)
    assert [i["Name"] for i in info] == [a, b]
    assert info[0]["Labels"] is None and info[0]["Options"] is None and info[0]["Scope"] == "local"
    assert info[0]["Driver"] == "local" and RFC3339.match(info[0]["CreatedAt"])
    assert info[0]["Mountpoint"] == str(v.data_root / "volumes" / a / "_data")
    assert os.path.isdir(info[0]["Mountpoint"])
    assert info[1]["Labels"] == {"t": "1"}
    assert info[1]["Options"] == {"type": "tmpfs", "device": "tmpfs", "o": "size=1m"}

    listed = v.docker("volume", "ls", "-q", "--filter", "label=t=1").stdout.split()
    assert sorted(listed) == sorted([b, anon])
    assert v.docker("volume", "ls", "-q", "--filter", f"name={a}").stdout.split() == [a]
    assert a in v.docker("volume", "ls", "--format", "{{.Driver}} {{.Name}}").stdout
    assert a in v.docker("volume", "ls", "-q", "--filter", "dangling=true").stdout.split()

    r = v.docker("volume", "inspect", "nope-vol", check=False)
    assert r.returncode == 1 and "get nope-vol: no such volume" in r.stderr
    r = v.docker("volume", "rm", "nope-vol", check=False)
    assert r.returncode == 1 and "get nope-vol: no such volume" in r.stderr
    v.docker("volume", "rm", "-f", "nope-vol")  # -f: a missing volume is fine

    assert v.docker("volume", "rm", a, b, anon).stdout.split() == [a, b, anon]
    assert not os.path.exists(info[0]["Mountpoint"])
    assert not ({a, b, anon} & _volume_names(v))


def test_volume_bad_input(v: Daemon) -> None:
    r = v.api("POST", "/volumes/create", {"Name": "bad/name"})
    assert r.status == 400
    assert '"bad/name" includes invalid characters for a local volume name' in r.message()
    r = v.api("POST", "/volumes/create", {"Name": "ok-name-x", "Driver": "nosuchdriver"})
    assert r.status == 404 and r.message() == ('create ok-name-x: error looking up volume plugin nosuchdriver: '
                                               'plugin "nosuchdriver" not found')
    r = v.api("POST", "/volumes/create", {"Name": "ok-name-y", "DriverOpts": {"bogus": "1"}})
    assert r.status == 400
    assert not ({"ok-name-x", "ok-name-y"} & _volume_names(v))
    r = v.api("GET", "/volumes?filters=" + urllib.parse.quote(json.dumps({"nope": {"x": True}})))
    assert r.status == 400


def test_prune_label_and_not_label_filters(v: Daemon, uname: Callable[[str], str]) -> None:
    """`label` and `label!` on volume, network and container prune, as dockerd's MatchKVList:
    an object is kept out of the prune only when EVERY `label!` condition holds; `k` means
    the key is present, `k=v` and `k=` an exact value. The `label=<this test>` condition
    keeps each prune to this test's objects on the shared daemon."""
    mine = uname("lbl")
    only_mine = f"label={mine}"

    def labels(*kv: str) -> list[str]:
        return [arg for x in (mine, *kv) for arg in ("--label", x)]

    # volumes: two conditions, one of which holds, do not protect; both holding do
    a_only, a_and_b = uname("v-a"), uname("v-ab")
    v.docker("volume", "create", *labels("a=1"), a_only)
    v.docker("volume", "create", *labels("a=1", "b=2"), a_and_b)
    out = v.docker("volume", "prune", "-f", "--all", "--filter", only_mine,
                   "--filter", "label!=a", "--filter", "label!=b").stdout
    names = _volume_names(v)
    assert a_only not in names and a_and_b in names, out
    # `a=` is the exact empty value, not "any value of a"
    a_one, a_empty = uname("v-a1"), uname("v-a0")
    v.docker("volume", "create", *labels("a=1"), a_one)
    v.docker("volume", "create", *labels("a="), a_empty)
    out = v.docker("volume", "prune", "-f", "--all", "--filter", only_mine, "--filter", "label!=a=").stdout
    names = _volume_names(v)
    assert a_one not in names and a_empty in names and a_and_b not in names, out

    # networks: `k=v` is an exact value
    net_1, net_2 = uname("n-a1"), uname("n-a2")
    try:
        for net, value in ((net_1, "a=1"), (net_2, "a=2")):
            v.docker("network", "create", "--subnet", str(allocate_subnet()), *labels(value), net)
        out = v.docker("network", "prune", "-f", "--filter", only_mine, "--filter", "label!=a=1").stdout
        nets = set(v.docker("network", "ls", "--format", "{{.Name}}").stdout.split())
        assert net_1 in nets and net_2 not in nets, out
    finally:
        v.docker("network", "rm", net_1, net_2, check=False)

    # containers: `k` is the key with any value
    with_a = v.docker("create", *labels("a=x"), "busybox", "true").stdout.strip()
    without = v.docker("create", *labels(), "busybox", "true").stdout.strip()
    out = v.docker("container", "prune", "-f", "--filter", only_mine, "--filter", "label!=a").stdout
    left = set(v.docker("ps", "-aq", "--no-trunc").stdout.split())
    assert with_a in left and without not in left, out


def test_volume_rm_in_use_and_prune(v: Daemon, uname: Callable[[str], str]) -> None:
    used, unused = uname("used"), uname("unused")
    v.docker("volume", "create", unused)
    cid = v.docker("create", "-v", f"{used}:/d", "-v", "/anon", "busybox", "true").stdout.strip()
    anon = [m["Name"] for m in inspect(v, cid)["Mounts"] if m["Destination"] == "/anon"][0]

    r = v.api("DELETE", f"/volumes/{used}")
    assert r.status == 409 and f"remove {used}: volume is in use - [{cid}]" == r.message()
    r = v.docker("volume", "rm", "-f", used, check=False)
    assert r.returncode == 1 and "volume is in use" in r.stderr

    gone = v.docker("create", "-v", "/x", "busybox", "true").stdout.strip()
    free_anon = inspect(v, gone)["Mounts"][0]["Name"]
    v.docker("rm", gone)  # without -v: leaves an unused anonymous volume
    # API >= 1.42: only anonymous volumes, and only unused ones
    out = v.docker("volume", "prune", "-f").stdout
    names = _volume_names(v)
    assert unused in names and used in names and anon in names and free_anon not in names
    assert "Deleted Volumes:" in out and free_anon in out
    # --all: named ones too
    v.docker("volume", "prune", "-f", "--all", "--filter", "label!=keep")
    names = _volume_names(v)
    assert unused not in names and used in names and anon in names
    # API 1.41 semantics: every unused volume
    v.docker("volume", "create", unused)
    r = v.api("POST", "/v1.41/volumes/prune")
    assert r.status == 200 and unused in (r.json()["VolumesDeleted"] or [])


# -- mounts -------------------------------------------------------------------------------------


def test_named_volume_run_and_persistence(v: Daemon, uname: Callable[[str], str]) -> None:
    vol = uname("data")
    out = v.docker("run", "--rm", "-v", f"{vol}:/data", "busybox", "sh", "-c", "echo v > /data/f; ls /data").stdout
    assert out == "f\n"
    assert vol in _volume_names(v)  # auto-created
    assert v.docker("run", "--rm", "-v", f"{vol}:/data:ro", "busybox", "cat", "/data/f").stdout == "v\n"
    r = v.docker("run", "--rm", "-v", f"{vol}:/data:ro", "busybox", "touch", "/data/g", check=False)
    assert r.returncode != 0 and "Read-only file system" in r.stderr
    out = v.docker("run", "--rm", "--mount", f"type=volume,src={vol},dst=/m,readonly", "busybox",
                   "cat", "/m/f").stdout
    assert out == "v\n"
    cid = v.docker("create", "-v", f"{vol}:/a", "-v", f"{vol}:/b:ro", "--mount", f"src={vol},dst=/c", "busybox",
                   "true").stdout.strip()
    modes = {m["Destination"]: (m["Mode"], m["RW"]) for m in inspect(v, cid)["Mounts"]}
    assert modes == {"/a": ("z", True), "/b": ("ro", False), "/c": ("z", True)}  # as dockerd 20.10 shows them
    v.docker("rm", cid)
    v.restart()
    assert vol in _volume_names(v)
    assert v.docker("run", "--rm", "-v", f"{vol}:/data", "busybox", "cat", "/data/f").stdout == "v\n"
    # a crash (SIGKILL) loses nothing either, and a running user of a tmpfs volume keeps its mount
    tmpvol = uname("tmpdata")
    v.docker("volume", "create", "-o", "type=tmpfs", "-o", "device=tmpfs", tmpvol)
    cid = v.docker("run", "-d", "-v", f"{tmpvol}:/t", "busybox", "sh", "-c", "echo kept > /t/k; sleep 300").stdout
    v.stop(sig=signal.SIGKILL)
    v.start()
    assert {vol, tmpvol} <= _volume_names(v)
    assert v.docker("exec", cid.strip(), "cat", "/t/k").stdout == "kept\n"
    assert os.path.ismount(v.data_root / "volumes" / tmpvol / "_data")
    names = v.docker("ps", "-q", "--no-trunc", "--filter", f"volume={tmpvol}").stdout.split()
    assert names == [cid.strip()]
    assert v.docker("ps", "-q", "--filter", "volume=/t").stdout.strip() == cid.strip()[:12]
    v.docker("rm", "-f", cid.strip())
    assert not os.path.ismount(v.data_root / "volumes" / tmpvol / "_data")


def test_anonymous_volume_mounts_shape_and_rm_v(v: Daemon, uname: Callable[[str], str]) -> None:
    name = uname("anon")
    v.docker("run", "--name", name, "-v", "/anon", "busybox", "sh", "-c", "echo x > /anon/y")
    mounts = json.loads(fmt(v, name, "{{json .Mounts}}"))
    assert len(mounts) == 1
    m = mounts[0]
    assert list(m) == ["Type", "Name", "Source", "Destination", "Driver", "Mode", "RW", "Propagation"]
    assert m["Type"] == "volume" and HEX64.match(m["Name"]) and m["Destination"] == "/anon"
    assert m["Source"] == str(v.data_root / "volumes" / m["Name"] / "_data")
    assert (m["Driver"], m["Mode"], m["RW"], m["Propagation"]) == ("local", "", True, "")
    assert Path(m["Source"], "y").read_text() == "x\n"
    assert fmt(v, name, "{{.Mounts}}") == f"[{{volume {m['Name']} {m['Source']} /anon local  true }}]"
    v.docker("rm", "-v", name)
    assert m["Name"] not in _volume_names(v)

    # without -v the anonymous volume stays; named volumes always stay
    vol = uname("named")
    v.docker("run", "--name", name, "-v", "/anon", "-v", f"{vol}:/n", "busybox", "true")
    anon = json.loads(fmt(v, name, "{{json .Mounts}}"))
    anon_name = [x["Name"] for x in anon if x["Destination"] == "/anon"][0]
    v.docker("rm", name)
    assert {anon_name, vol} <= _volume_names(v)
    # --rm removes anonymous volumes, not named ones
    v.docker("run", "--rm", "-v", "/gone", "-v", f"{vol}:/n", "busybox", "true")
    assert vol in _volume_names(v)


def test_image_volume_and_first_use_copy(v: Daemon, uname: Callable[[str], str], busybox_rootfs: Path) -> None:
    img = uname("volimg")
    _image_with_data(v, img, busybox_rootfs)
    cid = v.docker("run", "-d", img, "sleep", "30").stdout.strip()
    mounts = inspect(v, cid)["Mounts"]
    assert [(m["Type"], m["Destination"]) for m in mounts] == [("volume", "/data")]
    src = Path(mounts[0]["Source"])
    assert (src / "file").read_text() == "image\n"
    st = os.stat(src / "file")
    assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (1234, 5678, 0o640)
    assert os.stat(src).st_mode & 0o777 == 0o750 and os.stat(src).st_uid == 1234
    v.docker("rm", "-f", "-v", cid)

    vol = uname("copy")
    assert v.docker("run", "--rm", "-v", f"{vol}:/data", img, "cat", "/data/file").stdout == "image\n"
    # not empty any more: a second image path does not overwrite it
    v.docker("run", "--rm", "-v", f"{vol}:/data", img, "sh", "-c", "echo changed > /data/file")
    assert v.docker("run", "--rm", "-v", f"{vol}:/data", img, "cat", "/data/file").stdout == "changed\n"
    nocopy = uname("nocopy")
    out = v.docker("run", "--rm", "--mount", f"type=volume,src={nocopy},dst=/data,volume-nocopy", img,
                   "ls", "-A", "/data").stdout
    assert out == ""
    # an empty image directory still gives the volume its owner and mode
    empty = uname("empty")
    out = v.docker("run", "--rm", "-v", f"{empty}:/empty", img, "stat", "-c", "%u %g %a", "/empty").stdout
    assert out == "7 8 1777\n"


def test_bind_mounts(v: Daemon, uname: Callable[[str], str], tmp_path: Path) -> None:
    host = tmp_path / "hostdir"
    host.mkdir()
    (host / "hello.txt").write_text("host file content\n")
    out = v.docker("run", "--rm", "-v", f"{host}:/host:ro", "busybox", "cat", "/host/hello.txt").stdout
    assert out == "host file content\n"
    r = v.docker("run", "--rm", "-v", f"{host}:/host:ro", "busybox", "touch", "/host/x", check=False)
    assert r.returncode != 0 and not (host / "x").exists()
    v.docker("run", "--rm", "-v", f"{host}:/host:rw", "busybox", "sh", "-c", "echo w > /host/w")
    assert (host / "w").read_text() == "w\n"
    # shared/slave propagation needs a source on a shared (or slave) mount, as dockerd checks
    shared = tmp_path / "shared"
    shared.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "pydtest", str(shared)], check=True)
    try:
        subprocess.run(["mount", "--make-shared", str(shared)], check=True)
        (shared / "s.txt").write_text("s\n")
        for prop in ("rslave", "rshared"):
            out = v.docker("run", "--rm", "--mount", f"type=bind,src={shared},dst=/h,bind-propagation={prop}",
                           "busybox", "ls", "/h").stdout
            assert "s.txt" in out, prop
        subprocess.run(["mount", "--make-private", str(shared)], check=True)
        r = v.docker("run", "--rm", "--mount", f"type=bind,src={shared},dst=/h,bind-propagation=rshared",
                     "busybox", "true", check=False)
        assert r.returncode == 125 and f"is mounted on {shared} but it is not a shared mount" in r.stderr, r
    finally:
        subprocess.run(["umount", str(shared)], check=True)
    name = uname("bind")
    v.docker("create", "--name", name, "-v", f"{host}:/host:ro", "busybox", "true")
    m = inspect(v, name)["Mounts"]
    assert m == [{"Type": "bind", "Source": str(host), "Destination": "/host", "Mode": "ro", "RW": False,
                  "Propagation": "rprivate"}]
    # -v creates a missing host directory
    missing = tmp_path / "made" / "sub"
    v.docker("run", "--rm", "-v", f"{missing}:/n", "busybox", "sh", "-c", "echo hi > /n/f")
    assert (missing / "f").read_text() == "hi\n"


def test_mount_bad_input(v: Daemon, tmp_path: Path) -> None:
    nope = tmp_path / "does-not-exist"
    with nothing_created(v):
        r = v.docker("run", "--rm", "--mount", f"type=bind,src={nope},dst=/n", "busybox", "true", check=False)
        assert r.returncode == 125
        assert f'invalid mount config for type "bind": bind source path does not exist: {nope}' in r.stderr
        assert not nope.exists()
        r = v.docker("run", "--rm", "-v", "/a:/x", "-v", "/b:/x", "busybox", "true", check=False)
        assert r.returncode == 125 and "Duplicate mount point: /x" in r.stderr
        r = v.api("POST", "/containers/create", {"Image": "busybox", "Cmd": ["true"],
                                                 "HostConfig": {"Binds": ["/a:/x:bogus"]}})
        assert r.status == 400 and r.message() == "invalid mode: bogus"
        r = v.api("POST", "/containers/create", {"Image": "busybox", "Cmd": ["true"],
                                                 "HostConfig": {"Binds": ["bad/name:/x"]}})
        assert r.status == 400 and "invalid characters for a local volume name" in r.message()
        r = v.api("POST", "/containers/create", {"Image": "busybox", "Cmd": ["true"],
                                                 "HostConfig": {"Binds": ["/tmp:/"]}})
        assert r.status == 400 and "destination can't be '/'" in r.message()
        r = v.api("POST", "/containers/create", {"Image": "busybox", "Cmd": ["true"],
                                                 "HostConfig": {"VolumesFrom": ["no-such-ctr-x"]}})
        assert r.status == 404
    assert not (tmp_path / "a").exists()


def test_tmpfs_and_tmpfs_volume(v: Daemon, uname: Callable[[str], str]) -> None:
    out = v.docker("run", "--rm", "--tmpfs", "/tt:size=1m", "busybox", "sh", "-c", "mount | grep ' /tt '").stdout
    assert "tmpfs" in out and "size=1024k" in out and "noexec" in out
    out = v.docker("run", "--rm", "--mount", "type=tmpfs,dst=/tt,tmpfs-size=2m", "busybox",
                   "sh", "-c", "mount | grep ' /tt '").stdout
    assert "size=2048k" in out
    vol = uname("tmpvol")
    v.docker("volume", "create", "-o", "type=tmpfs", "-o", "device=tmpfs", "-o", "o=size=1m", vol)
    out = v.docker("run", "--rm", "-v", f"{vol}:/t", "busybox", "sh", "-c", "mount | grep ' /t '; echo x > /t/y").stdout
    assert "tmpfs" in out
    data = v.data_root / "volumes" / vol / "_data"
    assert not os.path.ismount(data)  # unmounted once no container uses it


def test_volumes_from(v: Daemon, uname: Callable[[str], str], tmp_path: Path) -> None:
    vol, src = uname("shared"), uname("src")
    (tmp_path / "b").mkdir()
    v.docker("run", "--name", src, "-v", f"{vol}:/data", "-v", f"{tmp_path / 'b'}:/b", "busybox",
             "sh", "-c", "echo s > /data/f")
    out = v.docker("run", "--rm", "--volumes-from", src, "busybox", "sh", "-c", "cat /data/f; ls -d /b").stdout
    assert out == "s\n/b\n"
    r = v.docker("run", "--rm", "--volumes-from", f"{src}:ro", "busybox", "touch", "/data/g", check=False)
    assert r.returncode != 0
