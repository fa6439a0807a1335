"""VolumeService and the local driver against a real store in a temp dir (no daemon)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from daemon.errors import Conflict, InvalidParameter, NotFound
from daemon.events import EventBus
from daemon.store import Store
from daemon.volumes.service import ANONYMOUS_LABEL, VolumeService, copy_image_content
from storage.volumes import LocalDriver


class FakeUsers:
    """The container registry's side of volumes: which containers use a volume."""

    def __init__(self) -> None:
        self.by_volume: dict[str, list[tuple[str, bool]]] = {}

    def volume_users(self, name: str) -> list[tuple[str, bool]]:
        return self.by_volume.get(name, [])


@pytest.fixture
def svc(tmp_path: Path) -> Iterator[VolumeService]:
    store = Store(tmp_path / "db")
    store.open()
    s = VolumeService(store, LocalDriver(tmp_path / "volumes"), EventBus(), FakeUsers())
    s.load()
    yield s
    store.close()


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


def test_create_inspect_list_remove(svc: VolumeService, tmp_path: Path) -> None:
    view = run(svc.create({"Name": "zz-a1", "Labels": {"k": "v"}}))
    assert view["Mountpoint"] == str(tmp_path / "volumes" / "zz-a1" / "_data")
    assert os.path.isdir(view["Mountpoint"]) and view["Labels"] == {"k": "v"} and view["Options"] is None
    assert run(svc.create({"Name": "zz-a1"}))["Labels"] == {"k": "v"}  # existing one returned
    anon = run(svc.create({}))["Name"]
    assert len(anon) == 64
    assert [v["Name"] for v in svc.list('{"label":{"k=v":true}}')["Volumes"]] == ["zz-a1"]
    assert [v["Name"] for v in svc.list('{"name":{"zz-":true}}')["Volumes"]] == ["zz-a1"]
    assert len(svc.list('{"dangling":{"true":true}}')["Volumes"]) == 2
    with pytest.raises(InvalidParameter):
        svc.list('{"bogus":{"x":true}}')
    run(svc.remove("zz-a1"))
    assert not (tmp_path / "volumes" / "zz-a1").exists()
    with pytest.raises(NotFound, match="get zz-a1: no such volume"):
        svc.inspect("zz-a1")
    run(svc.remove("zz-a1", force=True))


def test_persisted_across_reopen(tmp_path: Path) -> None:
    for attempt in range(2):
        store = Store(tmp_path / "db")
        store.open()
        try:
            s = VolumeService(store, LocalDriver(tmp_path / "volumes"), EventBus(), FakeUsers())
            s.load()
            if attempt == 0:
                run(s.create({"Name": "keep", "DriverOpts": {"type": "tmpfs", "device": "tmpfs"}}))
            else:
                assert s.inspect("keep")["Options"] == {"type": "tmpfs", "device": "tmpfs"}
        finally:
            store.close()


def test_bad_input_creates_nothing(svc: VolumeService, tmp_path: Path) -> None:
    for body in ({"Name": "a"}, {"Name": "bad/x"}, {"Name": "ok1", "DriverOpts": {"nope": "1"}},
                 {"Name": "ok2", "DriverOpts": {"type": "tmpfs"}}, {"Name": "ok3", "Labels": ["x"]}):
        with pytest.raises(InvalidParameter):
            run(svc.create(body))
    with pytest.raises(NotFound):
        run(svc.create({"Name": "ok4", "Driver": "other"}))
    assert svc.list(None)["Volumes"] == []
    assert not any((tmp_path / "volumes").iterdir())


def test_in_use_and_prune(svc: VolumeService) -> None:
    run(svc.create({"Name": "used"}))
    run(svc.create({"Name": "named"}))
    pts = [{"Type": "volume", "Name": "", "Anonymous": True}, {"Type": "volume", "Name": "used", "Anonymous": False}]
    run(svc.attach(pts))
    anon = pts[0]["Name"]
    assert svc.volumes[anon].labels == {ANONYMOUS_LABEL: ""}
    svc.users.by_volume["used"] = [("c1", False)]  # type: ignore[attr-defined]
    with pytest.raises(Conflict, match=r"remove used: volume is in use - \[c1\]"):
        run(svc.remove("used"))
    res = run(svc.prune(None))
    assert res["VolumesDeleted"] == [anon]
    res = run(svc.prune('{"all":{"true":true}}'))
    assert res["VolumesDeleted"] == ["named"]
    assert set(svc.volumes) == {"used"}


def test_first_use_copy(tmp_path: Path) -> None:
    rootfs = tmp_path / "rootfs"
    (rootfs / "data" / "sub").mkdir(parents=True)
    (rootfs / "data" / "sub" / "f").write_text("x")
    os.symlink("/etc", rootfs / "data" / "link")
    (rootfs / "esc").symlink_to("/")  # resolved inside the rootfs: copies rootfs content, not the host's
    vol = tmp_path / "vol"
    vol.mkdir()
    copy_image_content(rootfs, "/data", vol)
    assert (vol / "sub" / "f").read_text() == "x" and os.readlink(vol / "link") == "/etc"
    (vol / "sub" / "f").write_text("changed")
    copy_image_content(rootfs, "/data", vol)  # not empty: left alone
    assert (vol / "sub" / "f").read_text() == "changed"
    other = tmp_path / "other"
    other.mkdir()
    copy_image_content(rootfs, "/esc/data", other)
    assert (other / "sub" / "f").read_text() == "x"


def test_orphan_directory_is_not_reused(svc: VolumeService, tmp_path: Path) -> None:
    """A directory without a record (a crash mid-remove) is emptied when the name is created again."""
    data = tmp_path / "volumes" / "orphan" / "_data"
    data.mkdir(parents=True)
    (data / "old").write_text("stale")
    svc.reconcile()  # start-up only reports it
    assert (data / "old").exists()
    run(svc.create({"Name": "orphan"}))
    assert data.is_dir() and not (data / "old").exists()
