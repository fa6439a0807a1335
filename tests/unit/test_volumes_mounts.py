"""daemon.volumes.mounts (parsing -v/--mount/--tmpfs/--volumes-from like dockerd) and the archive helpers."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from daemon.containers.archive import _go_time, go_file_mode
from daemon.errors import InvalidParameter, NotFound
from daemon.volumes import mounts


def _parse(binds: list[str] | None = None, mnts: list[dict] | None = None, volumes: dict | None = None,
           tmpfs: dict | None = None, vfrom: list[str] | None = None, other: list[dict] | None = None) -> list[dict]:
    def lookup(ref: str) -> list[dict]:
        if other is None:
            raise NotFound(f"No such container: {ref}")
        return other

    hc = {"Binds": binds, "Mounts": mnts, "Tmpfs": tmpfs, "VolumesFrom": vfrom}
    return mounts.parse({"Volumes": volumes}, hc, lookup)


def test_bind_named_anonymous() -> None:
    pts = _parse(["/host/dir:/ctr:ro", "myvol:/data", "v2:/d2:nocopy"], volumes={"/anon": {}, "/data": {}})
    by = {p["Destination"]: p for p in pts}
    assert by["/ctr"]["Type"] == "bind" and by["/ctr"]["RW"] is False and by["/ctr"]["Mode"] == "ro"
    assert by["/ctr"]["Propagation"] == "rprivate" and by["/ctr"]["Create"] is True
    assert by["/data"]["Type"] == "volume" and by["/data"]["Name"] == "myvol" and not by["/data"]["Anonymous"]
    assert by["/d2"]["CopyData"] is False
    assert by["/anon"]["Anonymous"] and by["/anon"]["Name"] == ""  # named by the volume service
    assert [p["Destination"] for p in pts] == sorted(by)


@pytest.mark.parametrize("raw, msg", [
    ("", "invalid volume specification: ''"),
    ("/a:/b:c:d", "invalid volume specification: '/a:/b:c:d'"),
    ("/a:ro", "invalid volume specification: '/a:ro'"),
    ("/a:/b:bogus", "invalid mode: bogus"),
    ("/a:/b:ro,rw", "invalid mode: ro,rw"),
    ("/a:/", "destination can't be '/'"),
    ("/a:rel", "mount path must be absolute"),
    ("bad/name:/x", "includes invalid characters for a local volume name"),
])
def test_bad_binds(raw: str, msg: str) -> None:
    with pytest.raises(InvalidParameter) as e:
        _parse([raw])
    assert msg in e.value.message


def test_mounts_spec(tmp_path: Path) -> None:
    pts = _parse(mnts=[
        {"Type": "bind", "Source": str(tmp_path), "Target": "/b", "BindOptions": {"Propagation": "rshared"}},
        {"Type": "volume", "Source": "vv", "Target": "/v", "ReadOnly": True, "VolumeOptions": {"NoCopy": True}},
        {"Type": "tmpfs", "Target": "/t", "TmpfsOptions": {"SizeBytes": 2 << 20, "Mode": 0o700}},
    ])
    by = {p["Destination"]: p for p in pts}
    assert by["/b"]["Propagation"] == "rshared" and by["/b"]["Create"] is False and by["/b"]["Mode"] == ""
    assert by["/v"]["RW"] is False and by["/v"]["CopyData"] is False and by["/v"]["Mode"] == "z"  # as dockerd
    assert by["/t"]["TmpfsOptions"] == "mode=700,size=2m"
    with pytest.raises(InvalidParameter, match="bind source path does not exist"):
        _parse(mnts=[{"Type": "bind", "Source": str(tmp_path / "nope"), "Target": "/b"}])
    with pytest.raises(InvalidParameter, match="mount type unknown"):
        _parse(mnts=[{"Type": "weird", "Target": "/b"}])
    with pytest.raises(InvalidParameter, match="must not set ReadOnly mode when using anonymous volumes"):
        _parse(mnts=[{"Type": "volume", "Target": "/b", "ReadOnly": True}])
    with pytest.raises(InvalidParameter, match="Duplicate mount point: /x"):
        _parse(["/a:/x"], mnts=[{"Type": "volume", "Source": "vv", "Target": "/x/"}])


def test_tmpfs_and_volumes_from() -> None:
    pts = _parse(tmpfs={"/run": "size=1m"}, volumes={"/run": {}, "/other": {}})
    assert [p["Destination"] for p in pts] == ["/other"]  # --tmpfs covers the VOLUME path
    spec = mounts.tmpfs_spec("/run", "exec,size=1m")
    assert spec == {"type": "tmpfs", "destination": "/run", "options": "nosuid,nodev,exec,size=1m"}
    src = [{"Type": "volume", "Name": "v", "Source": "", "Destination": "/d", "Driver": "local", "Mode": "",
            "RW": True, "Propagation": "", "CopyData": True, "Anonymous": True, "Create": False,
            "TmpfsOptions": ""}]
    pts = _parse(vfrom=["other:ro"], other=src)
    assert pts[0]["RW"] is False and pts[0]["Anonymous"] is False  # not ours to remove
    with pytest.raises(NotFound):
        _parse(vfrom=["missing"])
    with pytest.raises(InvalidParameter, match="invalid mode: rshared"):
        _parse(vfrom=["x:rshared"], other=src)


def test_inspect_entries_shape() -> None:
    pts = _parse(["/h:/b", "nn:/n"])
    out = mounts.inspect_entries(pts, lambda mp: "/vols/" + mp["Name"] if mp["Type"] == "volume" else mp["Source"])
    assert out == [
        {"Type": "bind", "Source": "/h", "Destination": "/b", "Mode": "", "RW": True, "Propagation": "rprivate"},
        {"Type": "volume", "Name": "nn", "Source": "/vols/nn", "Destination": "/n", "Driver": "local", "Mode": "z",
         "RW": True, "Propagation": ""},
    ]
    ordered = mounts.depth_order([{"destination": "/a/b"}, {"destination": "/a"}])
    assert [m["destination"] for m in ordered] == ["/a", "/a/b"]


def test_go_file_mode_and_time() -> None:
    assert go_file_mode(stat.S_IFDIR | 0o755) == 2147484141  # as recorded from dockerd
    assert go_file_mode(stat.S_IFREG | 0o644) == 420
    assert go_file_mode(stat.S_IFLNK | 0o777) == (1 << 27) | 0o777
    assert go_file_mode(stat.S_IFREG | stat.S_ISUID | 0o755) == (1 << 23) | 0o755
    assert go_file_mode(stat.S_IFCHR | 0o666) == (1 << 26) | (1 << 21) | 0o666
    assert _go_time(1_764_287_847_135_279_335) == "2025-11-27T23:57:27.135279335Z"
    assert _go_time(1_764_287_847_000_000_000) == "2025-11-27T23:57:27Z"
