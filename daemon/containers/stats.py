"""`docker stats`: samples of a container's cgroup counters, in the Engine API's shape."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from typing import Any

from daemon.containers.registry import ContainerRegistry
from daemon.errors import Conflict
from daemon.util.timeutil import ZERO_TIME, now_rfc3339
from runtime.cgroups import Cgroups

_CLK_TCK = os.sysconf("SC_CLK_TCK")
INTERVAL = 1.0  # dockerd's collector period: the CLI computes CPU % from two samples this far apart


def _system_cpu_ns() -> int:
    with open("/proc/stat") as f:
        fields = f.readline().split()[1:8]
    return sum(int(x) for x in fields) * 1_000_000_000 // _CLK_TCK


def net_dev(pid: int) -> dict[str, dict[str, int]]:
    out = {}
    try:
        with open(f"/proc/{pid}/net/dev") as f:
            lines = f.read().splitlines()[2:]
    except OSError:
        return out
    for line in lines:
        name, _, data = line.partition(":")
        name = name.strip()
        if name == "lo":
            continue
        v = [int(x) for x in data.split()]
        out[name] = {"rx_bytes": v[0], "rx_packets": v[1], "rx_errors": v[2], "rx_dropped": v[3],
                     "tx_bytes": v[8], "tx_packets": v[9], "tx_errors": v[10], "tx_dropped": v[11]}
    return out


def _empty_cpu() -> dict[str, Any]:
    return {"cpu_usage": {"total_usage": 0, "usage_in_kernelmode": 0, "usage_in_usermode": 0},
            "system_cpu_usage": 0, "online_cpus": 0,
            "throttling_data": {"periods": 0, "throttled_periods": 0, "throttled_time": 0}}


class StatsService:
    def __init__(self, registry: ContainerRegistry, cgroups: Cgroups) -> None:
        self.registry = registry
        self.cgroups = cgroups

    def _sample(self, cid: str) -> dict[str, Any]:
        c = self.registry.get(cid)
        doc: dict[str, Any] = {
            "read": now_rfc3339(), "preread": ZERO_TIME, "name": c.name, "id": c.id,
            "pids_stats": {}, "blkio_stats": {"io_service_bytes_recursive": None, "io_serviced_recursive": None},
            "num_procs": 0, "storage_stats": {}, "cpu_stats": _empty_cpu(), "precpu_stats": _empty_cpu(),
            "memory_stats": {},
        }
        if not c.running:
            return doc
        raw = self.cgroups.stats(c.id)
        ncpu = os.cpu_count() or 1
        doc["cpu_stats"] = {
            "cpu_usage": {"total_usage": raw["cpu_total"], "percpu_usage": raw["cpu_percpu"] or None,
                          "usage_in_kernelmode": 0, "usage_in_usermode": 0},
            "system_cpu_usage": _system_cpu_ns(), "online_cpus": ncpu,
            "throttling_data": {"periods": 0, "throttled_periods": 0, "throttled_time": 0},
        }
        mem = raw["memory"]
        limit = mem["limit"]
        if not limit or limit >= 1 << 62:
            limit = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        doc["memory_stats"] = {"usage": mem["usage"], "max_usage": mem["max_usage"], "stats": mem["stats"],
                               "failcnt": mem["failcnt"], "limit": limit}
        pids_limit = raw["pids_limit"]
        doc["pids_stats"] = {"current": raw["pids"], **({"limit": pids_limit} if pids_limit else {})}
        if c.network_mode != "host":
            nets = net_dev(c.state["Pid"])
            if nets:
                doc["networks"] = nets
        return doc

    async def stream(self, ref: str, stream: bool, one_shot: bool) -> AsyncIterator[dict]:
        c = self.registry.get(ref)
        if c.state["Restarting"]:
            raise Conflict(f"Container {c.id} is restarting")
        prev = await asyncio.to_thread(self._sample, c.id)
        if not stream and one_shot:
            yield prev
            return
        while True:
            await asyncio.sleep(INTERVAL)
            if c.id not in self.registry:
                return
            cur = await asyncio.to_thread(self._sample, c.id)
            cur["precpu_stats"] = prev["cpu_stats"]
            cur["preread"] = prev["read"]
            yield cur
            if not stream:
                return
            prev = cur
