"""Checks of cgroup limits that both create and `docker update` make, in dockerd's words:
cpusets against the host's online CPUs and memory nodes, memory reservation, blkio weight."""

from __future__ import annotations

import os
import re

from daemon.errors import InvalidParameter

MIN_MEMORY = 6 * 1024 * 1024  # dockerd's linuxMinMemory
_CPU_LIST = re.compile(r"^\d+(-\d+)?(,\d+(-\d+)?)*$")


def create(hc: dict) -> None:
    """The limits a create request may set that the start writes to the cgroup as given: a
    value the kernel would refuse is a 400 now, not a failed start."""
    for key in ("MemoryReservation", "BlkioWeight"):
        value = hc.get(key)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
            raise InvalidParameter(f"json: cannot unmarshal into Go struct field HostConfig.{key} of type int64")
    for key in ("CpusetCpus", "CpusetMems"):
        if hc.get(key) is not None and not isinstance(hc[key], str):
            raise InvalidParameter(f"json: cannot unmarshal into Go struct field HostConfig.{key} of type string")
    reservation = hc.get("MemoryReservation") or 0
    if reservation < 0:
        raise InvalidParameter(f"invalid MemoryReservation {reservation}: must not be negative")
    if reservation and reservation < MIN_MEMORY:
        raise InvalidParameter("Minimum memory reservation allowed is 6MB")
    memory = hc.get("Memory") or 0
    if memory > 0 and reservation > 0 and memory < reservation:
        raise InvalidParameter("Minimum memory limit can not be less than memory reservation limit, see usage")
    weight = hc.get("BlkioWeight") or 0
    if weight and not 10 <= weight <= 1000:
        raise InvalidParameter("Range of blkio weight is from 10 to 1000")
    cpuset(hc)


def _parse_list(text: str, what: str) -> set[int]:
    if not _CPU_LIST.match(text):
        raise InvalidParameter(f"Invalid value {text} for cpuset {what}: invalid format: {text}")
    out: set[int] = set()
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        start, end = int(lo), int(hi or lo)
        if end < start:
            raise InvalidParameter(f"Invalid value {text} for cpuset {what}: invalid format: {text}")
        out.update(range(start, end + 1))
    return out


def cpuset(res: dict, cpus: set[int] | None = None, mems: set[int] | None = None) -> None:
    """CpusetCpus and CpusetMems: dockerd's format and availability checks (the host's online
    CPUs and memory nodes unless given)."""
    for key, what, given, label in (("CpusetCpus", "cpus", cpus, "CPUs"), ("CpusetMems", "mems", mems,
                                                                         "memory nodes")):
        text = res.get(key)
        if not text:
            # Read only when asked: sysfs on every create was a synchronous read on the loop.
            continue
        online = _online(what) if given is None else given
        if not _parse_list(text, what) <= online:
            raise InvalidParameter(f"Requested {label} are not available - requested {text}, available: "
                                   f"{_format_list(online)}")


def _format_list(values: set[int]) -> str:
    ranges: list[str] = []
    for v in sorted(values):
        if ranges and int(ranges[-1].split("-")[-1]) == v - 1:
            ranges[-1] = f"{ranges[-1].split('-')[0]}-{v}"
        else:
            ranges.append(str(v))
    return ",".join(ranges)


def _online(kind: str) -> set[int]:
    path = "/sys/devices/system/cpu/online" if kind == "cpus" else "/sys/devices/system/node/online"
    try:
        with open(path) as f:
            return _parse_list(f.read().strip(), kind)
    except OSError:
        return {0} if kind == "mems" else set(range(os.cpu_count() or 1))


