"""daemon/networks/pool.py with the kernel faked: filled ahead, taken once, refilled, nothing
left after close, and a failure to make one is no start's failure."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from daemon.networks import pool as pool_mod


class FakeKernel:
    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.netns: set[str] = set()
        self.veths: dict[str, str] = {}  # name -> owner
        self.fail = False

        async def create(path: Path, inside: Any = None) -> None:
            if self.fail:
                raise OSError("no more namespaces")
            self.netns.add(path.name)

        def remove(path: Path) -> None:
            self.netns.discard(path.name)

        async def add_veth(host_if: str, bridge: str, netns: Path, inner_if: str, mac: str, mtu: int,
                           owner: str) -> None:
            self.veths[host_if] = owner

        async def delete(name: str) -> None:
            self.veths.pop(name, None)

        def rebind(source: Path, target: Path) -> None:
            self.netns.discard(source.name)
            self.netns.add(target.name)

        def set_owner_sync(host_if: str, owner: str) -> None:
            self.veths[host_if] = owner

        monkeypatch.setattr(pool_mod.netns, "create", create)
        monkeypatch.setattr(pool_mod.netns, "remove", remove)
        monkeypatch.setattr(pool_mod.netns, "rebind", rebind)
        monkeypatch.setattr(pool_mod.links, "add_veth", add_veth)
        monkeypatch.setattr(pool_mod.links, "delete", delete)
        monkeypatch.setattr(pool_mod.links, "set_owner_sync", set_owner_sync)
        monkeypatch.setattr(pool_mod, "REFILL_DELAY", 0)


async def _settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0.01)


def test_filled_taken_refilled_and_gone_after_close(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    k = FakeKernel(monkeypatch)

    async def scenario() -> None:
        pool = pool_mod.SandboxPool(tmp_path, size=2, isolated=0)
        assert pool.take("br0", 1500) is None  # not started: nothing made ahead
        pool.start("br0", 1500)
        await _settle()
        assert len(k.netns) == 2 and set(k.veths.values()) == {"pool"}
        assert pool.take("other", 1500) is None and pool.take("br0", 9000) is None
        entry = pool.take("br0", 1500)
        assert entry is not None and entry.path.name.startswith("pool-")
        pool_mod.adopt(entry, tmp_path / "c1", "c" * 64)
        assert "c1" in k.netns and k.veths[pool_mod.host_if(entry.endpoint_id)] == "c" * 64
        await _settle()
        assert sorted(k.veths.values()).count("pool") == 2  # refilled
        await pool.close()
        assert k.netns == {"c1"} and list(k.veths.values()) == ["c" * 64]  # only the container's
        assert pool.take("br0", 1500) is None

    asyncio.run(scenario())


def test_isolated_ones_without_a_veth(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    k = FakeKernel(monkeypatch)

    async def scenario() -> None:
        pool = pool_mod.SandboxPool(tmp_path, size=2, isolated=1)
        pool.start("", 0)  # no default bridge (--bridge none): isolated ones only
        await _settle()
        assert len(k.netns) == 1 and not k.veths
        assert pool.take("", 0) is None
        entry = pool.take_isolated()
        assert entry is not None and entry.bridge == ""
        pool_mod.adopt(entry, tmp_path / "c2", "c" * 64)
        assert "c2" in k.netns and not k.veths
        await _settle()
        assert len(k.netns) == 2  # refilled
        await pool.close()
        assert k.netns == {"c2"}

    asyncio.run(scenario())


def test_a_failure_to_make_one_is_only_a_warning(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    k = FakeKernel(monkeypatch)
    k.fail = True

    async def scenario() -> None:
        pool = pool_mod.SandboxPool(tmp_path, size=2, isolated=0)
        pool.start("br0", 1500)
        await _settle()
        assert pool.take("br0", 1500) is None
        k.fail = False
        await _settle()  # the take asked for a refill
        entry = pool.take("br0", 1500)
        assert entry is not None
        await pool_mod.discard(entry)  # taken and not used: the taker's to remove
        await pool.close()
        assert not k.netns and not k.veths

    asyncio.run(scenario())
