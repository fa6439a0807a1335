#!/usr/bin/env python3
"""Memory footprint of an engine: the daemon alone, and per running container.

For the engine at $DOCKER_HOST (or --host), a unix socket on this machine:
  * daemon PSS before any container ran (the engine's processes: the one listening on
    the socket and every process under it, e.g. dockerd's containerd)
  * with N `busybox sleep` containers running: the engine's PSS divided by N, after
    taking off the idle figure ("per container"); the monitors alone (each container's
    init's parent: pydockerd's monitor, containerd-shim, conmon) as PSS and private memory
  * the daemon's PSS again after the containers were removed (memory given back?)

PSS (proportional set size) splits shared pages between the processes that map them, so
the sum over processes is what they cost together. Run as root (it reads /proc/PID/smaps_rollup
of other users' processes). `--compare OTHER_HOST` measures a second engine the same way.
Every container carries a label of this run and is removed at the end, also on Ctrl-C.

Target (issue 14): at most 1 MiB per running container, daemon at most 60 MiB.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
import urllib.parse
import uuid

import common

MIB = 1024 * 1024


def _children() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        kids.setdefault(ppid, []).append(int(pid))
    return kids


def _tree(root: int, kids: dict[int, list[int]]) -> set[int]:
    seen, todo = set(), [root]
    while todo:
        pid = todo.pop()
        if pid not in seen:
            seen.add(pid)
            todo.extend(kids.get(pid, ()))
    return seen


def _parent(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[1])


def _rollup(pid: int) -> tuple[int, int]:
    """(PSS, private) in bytes; (0, 0) for a process that is gone."""
    pss = private = 0
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                key, _, rest = line.partition(":")
                if key == "Pss":
                    pss = int(rest.split()[0]) * 1024
                elif key in ("Private_Clean", "Private_Dirty"):
                    private += int(rest.split()[0]) * 1024
    except OSError:
        pass
    return pss, private


class Engine(common.Engine):
    def __init__(self, host: str, label: str) -> None:
        super().__init__(host, label)
        u = urllib.parse.urlparse(host)
        if u.scheme != "unix":
            raise SystemExit(f"{host}: needs a unix socket of an engine on this machine")
        self.daemon_pid = common.socket_owner(u.path)

    def container_pids(self) -> list[int]:
        ids = self.docker("ps", "-q", "--filter", f"label={self.label}").stdout.split()
        if not ids:
            return []
        out = self.docker("inspect", "-f", "{{.State.Pid}}", *ids).stdout.split()
        return [int(p) for p in out if p != "0"]

    def processes(self) -> tuple[set[int], set[int]]:
        """(every process of the engine, the monitors among them)."""
        kids = _children()
        inits = self.container_pids()
        in_containers: set[int] = set()
        for pid in inits:
            in_containers |= _tree(pid, kids)
        monitors = set()
        for pid in inits:
            try:
                monitors.add(_parent(pid))
            except OSError:
                pass
        engine = (_tree(self.daemon_pid, kids) | monitors) - in_containers
        return engine, monitors - in_containers


def measure(e: Engine, n: int, log) -> dict[str, float]:
    e.docker("run", "--rm", "-l", e.label, "busybox", "true")  # warm-up: first-use caches
    time.sleep(1)
    engine, _ = e.processes()
    idle = sum(_rollup(p)[0] for p in engine)
    log(f"[{e.host}] starting {n} sleep containers")
    for _ in range(n):
        e.docker("run", "-d", "-l", e.label, "busybox", "sleep", "100000")
    time.sleep(2)  # let the monitors settle (lazy start-up work, freed buffers)
    engine, monitors = e.processes()
    busy = sum(_rollup(p)[0] for p in engine)
    mon = [_rollup(p) for p in monitors]
    log(f"[{e.host}] removing them")
    e.cleanup()
    time.sleep(2)
    engine, _ = e.processes()
    after = sum(_rollup(p)[0] for p in engine)
    log(f"[{e.host}] a test suite's worth of work: {n} containers with execs and logs, networks, volumes, images")
    work(e, n)
    time.sleep(2)
    engine, _ = e.processes()
    after_work = sum(_rollup(p)[0] for p in engine)
    return {
        "engine PSS, idle": idle / MIB,
        f"engine PSS, {n} containers running": busy / MIB,
        "per container (engine PSS delta / N)": (busy - idle) / n / MIB,
        "monitor PSS (median)": statistics.median(m[0] for m in mon) / MIB if mon else 0.0,
        "monitor private (median)": statistics.median(m[1] for m in mon) / MIB if mon else 0.0,
        "engine PSS after removing them": after / MIB,
        "engine PSS after more work, all removed": after_work / MIB,
    }


def work(e: Engine, n: int) -> None:
    """Create and remove what a test suite does: every object is gone again at the end."""
    tag = e.label.rsplit("=", 1)[1]
    for i in range(n):
        net = f"benchnet{tag}{i % 5}"
        if i < 5:
            e.docker("network", "create", "--label", e.label, net)
            e.docker("volume", "create", "--label", e.label, f"benchvol{tag}{i}")
        cid = e.docker("run", "-d", "-l", e.label, "--network", net, "-v", f"benchvol{tag}{i % 5}:/data",
                       "busybox", "sh", "-c", "seq 1 2000; sleep 100000").stdout.strip()
        e.docker("exec", cid, "sh", "-c", "echo hi > /data/f; cat /data/f")
        e.docker("logs", "--tail", "5", cid)
        e.docker("inspect", cid)
        if i % 10 == 0:
            e.docker("tag", "busybox", f"benchimg{tag}:{i}")
            e.docker("commit", cid, f"benchimg{tag}:c{i}")
    e.docker("ps", "-a")
    e.cleanup()
    for i in range(5):
        e.docker("network", "rm", f"benchnet{tag}{i}", check=False)
        e.docker("volume", "rm", f"benchvol{tag}{i}", check=False)
    imgs = [f"benchimg{tag}:{i}" for i in range(0, n, 10)] + [f"benchimg{tag}:c{i}" for i in range(0, n, 10)]
    e.docker("rmi", *imgs, check=False)


def main(argv: list[str] | None = None) -> int:
    ap = common.arg_parser(__doc__)
    ap.add_argument("-n", "--containers", type=int, default=50, help="running containers (default 50)")
    args = ap.parse_args(argv)

    log = common.progress(args.quiet)

    label = f"pydockerd.bench={uuid.uuid4().hex[:12]}"
    hosts = [args.host] + ([args.compare] if args.compare else [])
    results = []
    for h in hosts:
        e = Engine(h, label)
        try:
            results.append(measure(e, args.containers, log))
        except KeyboardInterrupt:
            e.cleanup()
            print("interrupted; benchmark containers removed", file=sys.stderr)
            return 130
        finally:
            e.cleanup()
    # Three decimals: the per-container figure sits near its 1 MiB target, where 0.996 and
    # 1.004 both print as 1.00.
    common.print_figures("MiB", hosts, results, ".3f")
    return 0


if __name__ == "__main__":
    sys.exit(main())
