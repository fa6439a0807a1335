"""SystemService against fakes of the services it reads: the /system/df aggregation, /info's
counts and /events' eager validation."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from daemon.config import Config
from daemon.errors import InvalidParameter
from daemon.events import EventBus
from daemon.system import SystemService


class FakeContainers:
    init_path = None

    def __init__(self, docs: list[dict]) -> None:
        self.docs = docs
        self.sized = False

    def counts(self) -> dict[str, int]:
        return {"Containers": len(self.docs), "ContainersRunning": 1, "ContainersPaused": 0,
                "ContainersStopped": len(self.docs) - 1}

    def list(self, all_: bool, limit: int, filters_raw: str | None) -> tuple[list[dict], float | None]:
        assert all_ and limit == 0 and filters_raw is None  # df counts stopped containers too
        return [dict(d) for d in self.docs], None

    async def add_sizes(self, docs: list[dict]) -> None:
        self.sized = True
        for d in docs:
            d["SizeRw"] = 10


class FakeImages:
    def __init__(self, ids: list[str]) -> None:
        self.ids = ids

    def list(self, all_: bool, filters_raw: str | None) -> list[dict]:
        return [{"Id": i, "Containers": -1, "SharedSize": -1} for i in self.ids]

    def count(self) -> int:
        return len(self.ids)

    def total_size(self) -> int:
        return 1234


class FakeVolumes:
    def usage(self) -> list[dict]:
        return [{"Name": "v", "UsageData": {"Size": 5, "RefCount": 1}}]


def service(tmp_path: Path, containers: FakeContainers, images: FakeImages) -> SystemService:
    cfg = Config()
    cfg.data_root = tmp_path
    return SystemService(cfg, "engine-1", "vfs", containers, images, FakeVolumes(), EventBus(), FakeBuildCache())


class FakeBuildCache:
    def usage(self) -> list[dict]:
        return []


def test_df_counts_the_containers_of_each_image(tmp_path: Path) -> None:
    ctrs = FakeContainers([{"Id": "c1", "ImageID": "sha256:a"}, {"Id": "c2", "ImageID": "sha256:a"},
                           {"Id": "c3", "ImageID": "sha256:b"}])
    svc = service(tmp_path, ctrs, FakeImages(["sha256:a", "sha256:b", "sha256:c"]))
    df = asyncio.run(svc.disk_usage())
    assert {i["Id"]: i["Containers"] for i in df["Images"]} == {"sha256:a": 2, "sha256:b": 1, "sha256:c": 0}
    assert all(i["SharedSize"] == 0 for i in df["Images"])
    assert ctrs.sized and [c["SizeRw"] for c in df["Containers"]] == [10, 10, 10]
    assert df["LayersSize"] == 1234
    assert df["Volumes"] == [{"Name": "v", "UsageData": {"Size": 5, "RefCount": 1}}]
    assert df["BuildCache"] == []


def test_df_empty(tmp_path: Path) -> None:
    df = asyncio.run(service(tmp_path, FakeContainers([]), FakeImages([])).disk_usage())
    assert df["Images"] == [] and df["Containers"] == [] and df["LayersSize"] == 1234


def test_info_reads_the_counts(tmp_path: Path) -> None:
    ctrs = FakeContainers([{"Id": "c1", "ImageID": "x"}, {"Id": "c2", "ImageID": "x"}])
    svc = service(tmp_path, ctrs, FakeImages(["a"]))

    async def in_loop() -> dict:  # as the API calls it (NGoroutines counts the loop's tasks)
        return svc.info()

    info = asyncio.run(in_loop())
    assert info["ID"] == "engine-1"
    assert (info["Containers"], info["ContainersRunning"], info["ContainersStopped"]) == (2, 1, 1)
    assert info["Images"] == 1
    assert info["Driver"] == "vfs" and info["DriverStatus"] == []
    assert info["DockerRootDir"] == str(tmp_path)
    assert info["InitBinary"] == ""
    assert info["NEventsListener"] == 0


def test_version_names_the_api_versions(tmp_path: Path) -> None:
    v = service(tmp_path, FakeContainers([]), FakeImages([])).version("1.47", "1.24")
    assert v["ApiVersion"] == "1.47" and v["MinAPIVersion"] == "1.24"
    assert v["Components"][0]["Details"]["ApiVersion"] == "1.47"


def test_events_stream_checks_its_arguments_before_streaming(tmp_path: Path) -> None:
    svc = service(tmp_path, FakeContainers([]), FakeImages([]))
    with pytest.raises(InvalidParameter):
        svc.events_stream('{"bogus": ["x"]}', "", "")
    with pytest.raises(InvalidParameter):
        svc.events_stream(None, "not a time", "")
