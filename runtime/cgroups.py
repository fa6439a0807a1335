"""Per-container cgroups behind one interface, with cgroup v1 and v2 drivers.

Container cgroups live in `<parent>/<container id>`. A relative parent (the default,
"pydockerd", as dockerd's `--cgroup-parent`) nests under the daemon's own cgroup (read from
/proc/self/cgroup), never at a hierarchy's root: limits and accounting of whatever runs the
daemon keep covering its containers. An absolute parent is taken from the hierarchy's root.
Blocking file I/O; the daemon calls this from a thread.

v1 (seen here): one directory per controller; OOM kills are counted in
memory.oom_control's `oom_kill` (memory.failcnt stays 0). v2: one directory, the
controllers enabled through the parent's cgroup.subtree_control.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

from . import devicefilter

ROOT = Path("/sys/fs/cgroup")
GROUP = "pydockerd"  # default parent: <daemon cgroup>/pydockerd/<container id>
_V1_CONTROLLERS = ("memory", "cpu", "cpuacct", "pids", "freezer", "blkio", "cpuset", "devices")
_DEFAULT_CPU_PERIOD = 100_000
_DEFAULT_CPU_SHARES = 1024


@dataclass
class Resources:
    """A container's limits; the daemon fills them in from its own configuration."""

    memory: int = 0  # bytes, 0 = unlimited
    memory_swap: int = 0  # memory+swap; -1 unlimited, 0 = as dockerd: twice memory
    cpu_quota: int = 0  # µs per period, 0 = unlimited
    cpu_period: int = 0
    cpu_shares: int = 0
    pids_limit: int = 0  # 0 or negative = unlimited
    memory_reservation: int = 0  # soft limit, bytes; 0 = none
    cpuset_cpus: str = ""  # "" = all the parent has
    cpuset_mems: str = ""
    blkio_weight: int = 0  # 10-1000; 0 = the kernel's default
    # The devices the container may use, as the devices cgroup writes them ("c 1:3 rwm"),
    # every other one denied; None leaves all allowed (--privileged).
    devices: tuple[str, ...] | None = None


def swap_limit(res: Resources) -> int:
    """memory+swap to write: -1 unlimited; dockerd's twice the memory when only memory is set."""
    if not res.memory or res.memory_swap < 0:
        return -1
    return res.memory_swap or 2 * res.memory


def _own_paths() -> dict[str, str]:
    """controller (or "" for v2) -> the daemon's cgroup path in that hierarchy."""
    out = {}
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        for c in controllers.split(",") if controllers else [""]:
            out[c] = path
    return out


def check_parent(parent: str) -> None:
    """Refuses a --cgroup-parent that could leave the hierarchy or is not one path."""
    parts = parent.strip("/").split("/")
    if not parent.strip("/") or any(p in ("", ".", "..") for p in parts) or "\0" in parent:
        raise ValueError(f"invalid cgroup parent {parent!r}: a path such as pydockerd or /pydockerd")


def _base(own: str, parent: str) -> Path:
    rel = parent.lstrip("/") if parent.startswith("/") else f"{own.strip('/')}/{parent}".lstrip("/")
    return ROOT / rel


def _rmdir_if_empty(path: Path) -> None:
    """Removes a parent cgroup once no container cgroup is left in it; busy means in use.

    Only for a relative parent, which the daemon made inside its own cgroup: an absolute one
    may be the administrator's (as dockerd, which never removes its /docker parent).
    """
    try:
        if not any(p.is_dir() for p in path.iterdir()):
            path.rmdir()
    except OSError:
        pass


def _write(path: Path, value: str) -> None:
    with open(path, "w") as f:
        f.write(value)


def _rmdir(path: Path) -> None:
    """rmdir fails with EBUSY for a moment after the last process left; retry briefly."""
    for _ in range(50):
        try:
            path.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError as e:
            if e.errno != errno.EBUSY:
                raise
            time.sleep(0.02)


@functools.cache
def _mounted_as(controller: str) -> str:
    """The hierarchy a v1 controller is mounted in ("cpu" -> "cpu,cpuacct" where co-mounted):
    the mounts do not move while the daemon runs, and resolving them was path lookups on the
    event loop at every start."""
    return (ROOT / controller).resolve().name


class CgroupV1:
    version = "1"

    def __init__(self, parent: str = GROUP) -> None:
        self.owned = not parent.startswith("/")
        own = _own_paths()
        self.bases = {c: ROOT / c / _base(own.get(c, "/"), parent).relative_to(ROOT) for c in _V1_CONTROLLERS
                      if (ROOT / c).is_dir()}

    def dirs(self, cid: str) -> dict[str, Path]:
        return {c: base / cid for c, base in self.bases.items()}

    def create(self, cid: str, res: Resources) -> None:
        made = []
        try:
            for d in self.dirs(cid).values():
                d.mkdir(parents=True, exist_ok=True)
                made.append(d)
            d = self.dirs(cid)
            if res.memory and "memory" in d:
                _write(d["memory"] / "memory.limit_in_bytes", str(res.memory))
                swap = res.memory_swap if res.memory_swap else 2 * res.memory
                if swap > 0 and (d["memory"] / "memory.memsw.limit_in_bytes").exists():
                    _write(d["memory"] / "memory.memsw.limit_in_bytes", str(swap))
            if "cpu" in d:
                if res.cpu_period:
                    _write(d["cpu"] / "cpu.cfs_period_us", str(res.cpu_period))
                if res.cpu_quota:
                    _write(d["cpu"] / "cpu.cfs_quota_us", str(res.cpu_quota))
                if res.cpu_shares:
                    _write(d["cpu"] / "cpu.shares", str(res.cpu_shares))
            if res.pids_limit > 0 and "pids" in d:
                _write(d["pids"] / "pids.max", str(res.pids_limit))
            if "cpuset" in d:
                # A new cpuset cgroup has no CPUs and no memory nodes: nothing could join it.
                self._init_cpuset(d["cpuset"])
                if res.cpuset_cpus:
                    _write(d["cpuset"] / "cpuset.cpus", res.cpuset_cpus)
                if res.cpuset_mems:
                    _write(d["cpuset"] / "cpuset.mems", res.cpuset_mems)
            if res.memory_reservation and "memory" in d:
                _write(d["memory"] / "memory.soft_limit_in_bytes", str(res.memory_reservation))
            if res.blkio_weight and "blkio" in d and (d["blkio"] / "blkio.weight").exists():
                _write(d["blkio"] / "blkio.weight", str(res.blkio_weight))
            if res.devices is not None and "devices" in d:
                _write(d["devices"] / "devices.deny", "a")
                for rule in res.devices:
                    _write(d["devices"] / "devices.allow", rule)
        except OSError:
            for p in reversed(made):
                _rmdir(p)
            raise

    def _init_cpuset(self, leaf: Path) -> None:
        """Copies cpus and mems down from the nearest configured ancestor, level by level."""
        chain = [leaf, *leaf.parents]
        levels = list(reversed(chain[:chain.index(ROOT / "cpuset")]))
        for level in levels:
            for name in ("cpuset.cpus", "cpuset.mems"):
                if not (level / name).read_text().strip():
                    _write(level / name, (level.parent / name).read_text().strip())

    def update(self, cid: str, res: Resources) -> None:
        """A running container's limits, all of them written (unset ones as unlimited), in an
        order every step of which the kernel accepts."""
        d = self.dirs(cid)
        if "memory" in d:
            mem = d["memory"]
            memory, swap = res.memory or -1, swap_limit(res)
            memsw = mem / "memory.memsw.limit_in_bytes"
            if memsw.exists():
                # memory.limit_in_bytes may never exceed memsw: raise memsw first when growing.
                current = int((mem / "memory.limit_in_bytes").read_text())
                if swap == -1 or current < swap:
                    _write(memsw, str(swap))
                    _write(mem / "memory.limit_in_bytes", str(memory))
                else:
                    _write(mem / "memory.limit_in_bytes", str(memory))
                    _write(memsw, str(swap))
            else:
                _write(mem / "memory.limit_in_bytes", str(memory))
            _write(mem / "memory.soft_limit_in_bytes", str(res.memory_reservation or -1))
        if "cpu" in d:
            _write(d["cpu"] / "cpu.cfs_period_us", str(res.cpu_period or _DEFAULT_CPU_PERIOD))
            _write(d["cpu"] / "cpu.cfs_quota_us", str(res.cpu_quota or -1))
            _write(d["cpu"] / "cpu.shares", str(res.cpu_shares or _DEFAULT_CPU_SHARES))
        if "pids" in d:
            _write(d["pids"] / "pids.max", str(res.pids_limit) if res.pids_limit > 0 else "max")
        if "cpuset" in d:
            parent = d["cpuset"].parent
            # Memory nodes before CPUs would not matter; parent values mean "no restriction".
            _write(d["cpuset"] / "cpuset.cpus", res.cpuset_cpus or (parent / "cpuset.cpus").read_text().strip())
            _write(d["cpuset"] / "cpuset.mems", res.cpuset_mems or (parent / "cpuset.mems").read_text().strip())
        if res.blkio_weight and "blkio" in d and (d["blkio"] / "blkio.weight").exists():
            _write(d["blkio"] / "blkio.weight", str(res.blkio_weight))

    def supports_blkio_weight(self) -> bool:
        return (ROOT / "blkio" / "blkio.weight").exists()

    def procs_files(self, cid: str) -> list[str]:
        return [str(d / "cgroup.procs") for d in self.dirs(cid).values()]

    def join_files(self, cid: str) -> list[str]:
        """The files a single-threaded process writes "0" into to join the container's cgroups
        (the init, an exec): each hierarchy's `tasks`, not `cgroup.procs`.

        The kernel reason: a cgroup.procs write (or any write naming a pid) takes the global
        cgroup_threadgroup_rwsem for writing, a percpu rwsem whose rcu_sync goes idle one RCU
        grace period after its last writer; the first migration after a quiet moment waits a
        whole grace period (6-16 ms here, the largest single cost of a container start). "0"
        written to `tasks` moves only the calling thread, which cannot exit or exec meanwhile,
        and the kernel skips that lock for it (Linux 5.19+, "cgroup: Optimize single thread
        migration"): ~0.05-0.4 ms. For a process with one thread that is the same move, and
        whatever it forks next inherits the cgroups."""
        return [str(d / "tasks") for d in self.dirs(cid).values()]

    def hierarchies(self, cid: str) -> list[tuple[str, str]]:
        """(hierarchy, host directory) of each hierarchy the container has a cgroup in; a
        hierarchy is named as mounted ("cpu,cpuacct" where those are co-mounted)."""
        out: dict[str, str] = {}
        for c, d in self.dirs(cid).items():
            out.setdefault(_mounted_as(c), str(d))
        return list(out.items())

    def add(self, cid: str, pid: int) -> None:
        for f in self.procs_files(cid):
            _write(Path(f), str(pid))

    def pids(self, cid: str) -> set[int]:
        d = self.dirs(cid).get("pids") or next(iter(self.dirs(cid).values()), None)
        try:
            return {int(x) for x in (d / "cgroup.procs").read_text().split()} if d else set()
        except OSError:
            return set()

    def freeze(self, cid: str, frozen: bool) -> None:
        d = self.dirs(cid).get("freezer")
        if d is None:
            raise OSError(errno.ENOTSUP, "the freezer controller is not available")
        _write(d / "freezer.state", "FROZEN" if frozen else "THAWED")
        want = "FROZEN" if frozen else "THAWED"
        for _ in range(200):
            if (d / "freezer.state").read_text().strip() == want:
                return
            time.sleep(0.005)

    def kill_all(self, cid: str) -> None:
        _kill_frozen(self, cid)

    def oom_killed(self, cid: str) -> bool:
        d = self.dirs(cid).get("memory")
        return d is not None and _oom_kills(d / "memory.oom_control") > 0

    def stats(self, cid: str) -> dict:
        d = self.dirs(cid)

        def read(c: str, name: str) -> str:
            try:
                return (d[c] / name).read_text() if c in d else ""
            except OSError:
                return ""

        mstat = dict(line.split() for line in read("memory", "memory.stat").splitlines() if " " in line)
        percpu = [int(x) for x in read("cpuacct", "cpuacct.usage_percpu").split()]
        return {
            "memory": {"usage": _int(read("memory", "memory.usage_in_bytes")),
                       "max_usage": _int(read("memory", "memory.max_usage_in_bytes")),
                       "limit": _int(read("memory", "memory.limit_in_bytes")),
                       "failcnt": _int(read("memory", "memory.failcnt")),
                       "stats": {k: int(v) for k, v in mstat.items() if v.isdigit()}},
            "cpu_total": _int(read("cpuacct", "cpuacct.usage")),
            "cpu_percpu": percpu,
            "pids": _int(read("pids", "pids.current")),
            "pids_limit": _int(read("pids", "pids.max")),
            "io": _blkio_v1(read("blkio", "blkio.throttle.io_service_bytes_recursive")),
        }

    def remove(self, cid: str) -> None:
        for d in self.dirs(cid).values():
            _rmdir(d)

    def list(self) -> set[str]:
        """Container ids that have a cgroup (for start-up reconciliation)."""
        out: set[str] = set()
        for base in self.bases.values():
            if base.is_dir():
                out.update(p.name for p in base.iterdir() if p.is_dir())
        return out

    def release(self) -> None:
        if self.owned:
            for base in self.bases.values():
                _rmdir_if_empty(base)


class CgroupV2:
    version = "2"

    def __init__(self, parent: str = GROUP) -> None:
        self.owned = not parent.startswith("/")
        self.base = _base(_own_paths().get("", "/"), parent)

    def dirs(self, cid: str) -> dict[str, Path]:
        return {"": self.base / cid}

    def create(self, cid: str, res: Resources) -> None:
        if not self.base.is_dir():
            self.base.mkdir(parents=True, exist_ok=True)
            controllers = (self.base.parent / "cgroup.controllers").read_text().split()
            wanted = [c for c in ("memory", "cpu", "pids", "cpuset", "io") if c in controllers]
            if wanted:
                try:
                    _write(self.base / "cgroup.subtree_control", " ".join("+" + c for c in wanted))
                except OSError:
                    pass  # limits then fail below with a clear error if asked for
        d = self.base / cid
        d.mkdir(exist_ok=True)
        try:
            if res.memory:
                _write(d / "memory.max", str(res.memory))
                if res.memory_swap > 0:
                    _write(d / "memory.swap.max", str(max(0, res.memory_swap - res.memory)))
            if res.cpu_quota:
                _write(d / "cpu.max", f"{res.cpu_quota} {res.cpu_period or 100000}")
            if res.cpu_shares:
                _write(d / "cpu.weight", str(_cpu_weight(res.cpu_shares)))
            if res.pids_limit > 0:
                _write(d / "pids.max", str(res.pids_limit))
            if res.memory_reservation:
                _write(d / "memory.low", str(res.memory_reservation))
            if res.cpuset_cpus:
                _write(d / "cpuset.cpus", res.cpuset_cpus)
            if res.cpuset_mems:
                _write(d / "cpuset.mems", res.cpuset_mems)
            if res.blkio_weight and (d / "io.weight").exists():
                _write(d / "io.weight", f"default {_io_weight(res.blkio_weight)}")
            if res.devices is not None:  # v2 has no devices controller: a BPF program decides
                devicefilter.attach(d, devicefilter.program(res.devices))
        except OSError:
            _rmdir(d)
            raise

    def update(self, cid: str, res: Resources) -> None:
        """A running container's limits, all of them written (unset ones as unlimited)."""
        d = self.base / cid
        if (d / "memory.max").exists():
            _write(d / "memory.max", str(res.memory) if res.memory else "max")
            swap = swap_limit(res)
            if (d / "memory.swap.max").exists():
                _write(d / "memory.swap.max", "max" if swap < 0 else str(max(0, swap - res.memory)))
            _write(d / "memory.low", str(res.memory_reservation))
        if (d / "cpu.max").exists():
            period = res.cpu_period or _DEFAULT_CPU_PERIOD
            _write(d / "cpu.max", f"{res.cpu_quota} {period}" if res.cpu_quota > 0 else f"max {period}")
            _write(d / "cpu.weight", str(_cpu_weight(res.cpu_shares or _DEFAULT_CPU_SHARES)))
        if (d / "pids.max").exists():
            _write(d / "pids.max", str(res.pids_limit) if res.pids_limit > 0 else "max")
        if (d / "cpuset.cpus").exists():
            _write(d / "cpuset.cpus", res.cpuset_cpus)
            _write(d / "cpuset.mems", res.cpuset_mems)
        if res.blkio_weight and (d / "io.weight").exists():
            _write(d / "io.weight", f"default {_io_weight(res.blkio_weight)}")

    def supports_blkio_weight(self) -> bool:
        return "io" in (ROOT / "cgroup.controllers").read_text().split()

    def procs_files(self, cid: str) -> list[str]:
        return [str(self.base / cid / "cgroup.procs")]

    def join_files(self, cid: str) -> list[str]:
        """cgroup.procs: a v2 domain cgroup takes no single thread (cgroup.threads is for
        threaded cgroups only), so the join takes the global lock (see CgroupV1.join_files)."""
        return self.procs_files(cid)

    def hierarchies(self, cid: str) -> list[tuple[str, str]]:
        return [("", str(self.base / cid))]

    def add(self, cid: str, pid: int) -> None:
        _write(self.base / cid / "cgroup.procs", str(pid))

    def pids(self, cid: str) -> set[int]:
        try:
            return {int(x) for x in (self.base / cid / "cgroup.procs").read_text().split()}
        except OSError:
            return set()

    def freeze(self, cid: str, frozen: bool) -> None:
        d = self.base / cid
        _write(d / "cgroup.freeze", "1" if frozen else "0")
        for _ in range(200):
            if f"frozen {int(frozen)}" in (d / "cgroup.events").read_text():
                return
            time.sleep(0.005)

    def kill_all(self, cid: str) -> None:
        try:
            _write(self.base / cid / "cgroup.kill", "1")  # Linux 5.14 on: the kernel's own, no race
        except FileNotFoundError:
            _kill_frozen(self, cid)

    def oom_killed(self, cid: str) -> bool:
        return _oom_kills(self.base / cid / "memory.events") > 0

    def stats(self, cid: str) -> dict:
        d = self.base / cid

        def read(name: str) -> str:
            try:
                return (d / name).read_text()
            except OSError:
                return ""

        mstat = dict(line.split() for line in read("memory.stat").splitlines() if " " in line)
        cpu = dict(line.split() for line in read("cpu.stat").splitlines() if " " in line)
        limit = read("memory.max").strip()
        return {
            "memory": {"usage": _int(read("memory.current")), "max_usage": 0,
                       "limit": 0 if limit in ("", "max") else int(limit), "failcnt": 0,
                       "stats": {k: int(v) for k, v in mstat.items() if v.isdigit()}},
            "cpu_total": int(cpu.get("usage_usec", "0")) * 1000,
            "cpu_percpu": [],
            "pids": _int(read("pids.current")),
            "pids_limit": _int(read("pids.max")),
            "io": _io_v2(read("io.stat")),
        }

    def remove(self, cid: str) -> None:
        _rmdir(self.base / cid)

    def list(self) -> set[str]:
        return {p.name for p in self.base.iterdir() if p.is_dir()} if self.base.is_dir() else set()

    def release(self) -> None:
        if self.owned:
            _rmdir_if_empty(self.base)


def _kill_frozen(cg: CgroupV1 | CgroupV2, cid: str) -> None:
    """SIGKILL every process of the cgroup without the container's monitor (kill_all). Frozen
    meanwhile, so that no process forks past the list (runc's way on v1); the kills are
    delivered when it thaws."""
    try:
        cg.freeze(cid, True)
        frozen = True
    except OSError:
        frozen = False
    try:
        for pid in cg.pids(cid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    finally:
        if frozen:
            cg.freeze(cid, False)


def _cpu_weight(shares: int) -> int:
    """cgroup v2's cpu.weight for v1 shares (runc's conversion)."""
    return max(1, min(10000, 1 + (shares - 2) * 9999 // 262142))


def _io_weight(blkio_weight: int) -> int:
    """cgroup v2's io.weight (1-10000) for a v1 blkio weight (10-1000), as runc converts it."""
    return 1 + (blkio_weight - 10) * 9999 // 990


def _oom_kills(path: Path) -> int:
    """The `oom_kill` counter of memory.oom_control (v1) or memory.events (v2)."""
    try:
        for line in path.read_text().splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill":
                return int(value)
    except (OSError, ValueError):
        pass
    return 0


def _blkio_v1(text: str) -> dict[str, int]:
    """Bytes read and written over all devices, from blkio's `MAJ:MIN Read|Write N` lines."""
    out = {"read_bytes": 0, "write_bytes": 0}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[1] in ("Read", "Write") and parts[2].isdigit():
            out["read_bytes" if parts[1] == "Read" else "write_bytes"] += int(parts[2])
    return out


def _io_v2(text: str) -> dict[str, int]:
    """The same from io.stat's `MAJ:MIN rbytes=N wbytes=N ...` lines."""
    out = {"read_bytes": 0, "write_bytes": 0}
    for line in text.splitlines():
        for item in line.split()[1:]:
            key, _, value = item.partition("=")
            if key in ("rbytes", "wbytes") and value.isdigit():
                out["read_bytes" if key == "rbytes" else "write_bytes"] += int(value)
    return out


def _int(text: str) -> int:
    text = text.strip()
    return int(text) if text.isdigit() else 0


Cgroups = CgroupV1 | CgroupV2


def detect(parent: str = GROUP) -> Cgroups:
    """v2 when the unified hierarchy is mounted at /sys/fs/cgroup itself, else v1."""
    check_parent(parent)
    if (ROOT / "cgroup.controllers").exists():
        return CgroupV2(parent)
    return CgroupV1(parent)
