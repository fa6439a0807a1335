"""Container create without root, against fakes: name reservation and rollback."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from daemon.errors import Conflict
from daemon.store import Store
from tests.unit.containers_fakes import FakeVolumes, make_service


class FullStore(Store):
    """Fails the container write, which comes after the files exist."""

    async def put_container(self, cid: str, name: str, doc: dict) -> None:
        raise RuntimeError("disk full")


def test_two_creates_with_one_name_one_conflict(tmp_path: Path) -> None:
    svc, store, _ = make_service(tmp_path)

    async def both() -> list:
        return await asyncio.gather(svc.create({"Image": "busybox"}, "web"), svc.create({"Image": "busybox"}, "web"),
                                    return_exceptions=True)

    results = asyncio.run(both())
    conflicts = [r for r in results if isinstance(r, Conflict)]
    created = [r for r in results if isinstance(r, dict)]
    assert len(conflicts) == 1 and len(created) == 1
    assert "is already in use" in conflicts[0].message
    assert svc.get("web").id == created[0]["Id"]
    assert len(svc.registry) == 1 and len(store.load_containers()) == 1


def test_random_names_are_distinct(tmp_path: Path) -> None:
    svc, _, _ = make_service(tmp_path)

    async def three() -> list[dict]:
        return [await svc.create({"Image": "busybox"}, None) for _ in range(3)]

    ids = [r["Id"] for r in asyncio.run(three())]
    assert len({svc.get(i).name for i in ids}) == 3


def test_failed_create_rolls_back(tmp_path: Path) -> None:
    volumes = FakeVolumes(fail_attach=True)
    svc, store, driver = make_service(tmp_path, volumes)
    with pytest.raises(OSError):
        asyncio.run(svc.create({"Image": "busybox", "HostConfig": {"Binds": None}}, "db"))
    assert len(svc.registry) == 0 and svc.registry.name_owner("/db") is None
    assert store.load_containers() == []
    assert not driver.created
    assert not list((tmp_path / "data").glob("containers/*"))
    # The name is free again: a later create with it succeeds.
    volumes.fail_attach = False
    result = asyncio.run(svc.create({"Image": "busybox"}, "db"))
    assert svc.get("db").id == result["Id"]


def test_failed_store_write_removes_files(tmp_path: Path) -> None:
    svc, store, driver = make_service(tmp_path, store_cls=FullStore)
    with pytest.raises(RuntimeError):
        asyncio.run(svc.create({"Image": "busybox"}, "late"))
    assert svc.registry.name_owner("/late") is None and len(svc.registry) == 0
    assert not driver.created
    assert list((tmp_path / "data" / "containers").iterdir()) == []


def test_unknown_image_is_not_found(tmp_path: Path) -> None:
    svc, _, _ = make_service(tmp_path)
    with pytest.raises(Exception, match="No such image"):
        asyncio.run(svc.create({"Image": "nosuch"}, "xy"))
    assert svc.registry.name_owner("/xy") is None
