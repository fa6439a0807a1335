"""runtime/cgroups.py's update of a running container's limits, on a fake v1 hierarchy in a
temp dir: every limit written, unset ones as unlimited, memory and memsw in an order the
kernel accepts at every step."""

from __future__ import annotations

from pathlib import Path

import pytest

from runtime import cgroups
from runtime.cgroups import CgroupV1, Resources

CID = "c" * 64
MiB = 1024 * 1024


@pytest.fixture
def v1(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[CgroupV1, dict[str, Path]]:
    monkeypatch.setattr(cgroups, "ROOT", tmp_path)
    cg = CgroupV1.__new__(CgroupV1)
    cg.owned = True
    cg.bases = {c: tmp_path / c / "pydockerd" for c in ("memory", "cpu", "pids", "cpuset")}
    files = {"memory": ["memory.limit_in_bytes", "memory.memsw.limit_in_bytes", "memory.soft_limit_in_bytes"],
             "cpu": ["cpu.cfs_period_us", "cpu.cfs_quota_us", "cpu.shares"], "pids": ["pids.max"],
             "cpuset": ["cpuset.cpus", "cpuset.mems"]}
    dirs = cg.dirs(CID)
    for ctrl, names in files.items():
        dirs[ctrl].mkdir(parents=True)
        for n in names:
            (dirs[ctrl] / n).write_text("")
    (tmp_path / "cpuset" / "cpuset.cpus").write_text("0-3\n")
    (tmp_path / "cpuset" / "cpuset.mems").write_text("0\n")
    (cg.bases["cpuset"] / "cpuset.cpus").write_text("0-3\n")
    (cg.bases["cpuset"] / "cpuset.mems").write_text("0\n")
    return cg, dirs


def _kernel_checked(monkeypatch: pytest.MonkeyPatch, dirs: dict[str, Path]) -> list[tuple[str, str]]:
    """Records writes and refuses, as the kernel does, a memory limit above memsw."""
    writes: list[tuple[str, str]] = []
    real = cgroups._write

    def check(path: Path, value: str) -> None:
        mem = dirs["memory"]
        limit = {"memory.limit_in_bytes": value} if path.name == "memory.limit_in_bytes" else {}
        memsw = {"memory.memsw.limit_in_bytes": value} if path.name == "memory.memsw.limit_in_bytes" else {}
        lim = int(limit.get("memory.limit_in_bytes") or (mem / "memory.limit_in_bytes").read_text() or -1)
        sw = int(memsw.get("memory.memsw.limit_in_bytes") or (mem / "memory.memsw.limit_in_bytes").read_text() or -1)
        if sw != -1 and (lim == -1 or lim > sw):
            raise OSError(22, "Invalid argument", str(path))
        writes.append((path.name, value))
        real(path, value)

    monkeypatch.setattr(cgroups, "_write", check)
    return writes


def test_update_writes_everything(v1: tuple[CgroupV1, dict[str, Path]], monkeypatch: pytest.MonkeyPatch) -> None:
    cg, dirs = v1
    (dirs["memory"] / "memory.limit_in_bytes").write_text(str(64 * MiB))
    (dirs["memory"] / "memory.memsw.limit_in_bytes").write_text(str(128 * MiB))
    _kernel_checked(monkeypatch, dirs)
    # Growing past the current memsw: memsw is raised first.
    cg.update(CID, Resources(memory=300 * MiB, memory_swap=600 * MiB, memory_reservation=10 * MiB,
                             cpu_quota=50_000, cpu_period=100_000, cpu_shares=512, pids_limit=7, cpuset_cpus="1"))
    read = {f"{c}/{p.name}": p.read_text() for c, d in dirs.items() for p in d.iterdir()}
    assert read["memory/memory.limit_in_bytes"] == str(300 * MiB)
    assert read["memory/memory.memsw.limit_in_bytes"] == str(600 * MiB)
    assert read["memory/memory.soft_limit_in_bytes"] == str(10 * MiB)
    assert read["cpu/cpu.cfs_quota_us"] == "50000" and read["cpu/cpu.shares"] == "512"
    assert read["pids/pids.max"] == "7" and read["cpuset/cpuset.cpus"] == "1" and read["cpuset/cpuset.mems"] == "0"
    # Shrinking: memory first. Memory alone: memsw twice the memory (dockerd's default).
    cg.update(CID, Resources(memory=50 * MiB))
    assert (dirs["memory"] / "memory.limit_in_bytes").read_text() == str(50 * MiB)
    assert (dirs["memory"] / "memory.memsw.limit_in_bytes").read_text() == str(100 * MiB)
    # Nothing set: everything back to unlimited and the defaults.
    cg.update(CID, Resources())
    assert (dirs["memory"] / "memory.limit_in_bytes").read_text() == "-1"
    assert (dirs["memory"] / "memory.memsw.limit_in_bytes").read_text() == "-1"
    assert (dirs["cpu"] / "cpu.cfs_quota_us").read_text() == "-1"
    assert (dirs["cpu"] / "cpu.cfs_period_us").read_text() == "100000"
    assert (dirs["cpu"] / "cpu.shares").read_text() == "1024"
    assert (dirs["pids"] / "pids.max").read_text() == "max"
    assert (dirs["cpuset"] / "cpuset.cpus").read_text() == "0-3"


def test_swap_limit() -> None:
    assert cgroups.swap_limit(Resources()) == -1
    assert cgroups.swap_limit(Resources(memory=10)) == 20
    assert cgroups.swap_limit(Resources(memory=10, memory_swap=-1)) == -1
    assert cgroups.swap_limit(Resources(memory=10, memory_swap=15)) == 15
