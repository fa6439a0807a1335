#!/usr/bin/env python3
"""What healthchecks cost an engine: N containers (default 50) with a 1 s healthcheck
(`--health-cmd true --health-interval 1s`) for a while (default 60 s).

For the engine at $DOCKER_HOST (or --host), and with `--compare OTHER_HOST` for a second one
side by side, it measures over the window:
  * CPU time (user+system, children reaped included: the probe processes) of the daemon and
    of its long-lived children (dockerd's containerd, pydockerd's helpers);
  * CPU time of the per-container monitors (pydockerd's monitor, containerd-shim): the parent
    of each container's init process;
  * memory at the end: RSS and PSS (/proc/PID/smaps_rollup) of the daemon and the monitors;
  * probes: how many ran in the window (exec_start events of the run's containers), and so the
    CPU time per probe; how many containers are healthy at the end.

The engine's daemon is found as the process listening on the unix socket (unix:// hosts
only). Every container carries a label of this run and is removed at the end. Needs a
`busybox` image on each engine and root (it reads other processes' /proc entries).

Target (issue 12): no more CPU and memory than dockerd 20.10.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
import urllib.parse
import uuid

import common

_TICK = os.sysconf("SC_CLK_TCK")


def socket_owner(host: str) -> int:
    """The pid of the process listening on a unix:// DOCKER_HOST's socket."""
    u = urllib.parse.urlparse(host)
    if u.scheme != "unix":
        raise SystemExit(f"{host}: only unix:// hosts (the daemon is found by its socket)")
    return common.socket_owner(u.path)


def _stat(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    return data[data.rindex(b")") + 2:].decode().split()


def cpu_seconds(pid: int) -> float | None:
    """utime+stime+cutime+cstime: the process and the children it has reaped."""
    st = _stat(pid)
    if st is None:
        return None
    return sum(int(x) for x in st[11:15]) / _TICK


def ppid(pid: int) -> int:
    st = _stat(pid)
    return int(st[1]) if st else 0


def children(pid: int) -> set[int]:
    out = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit() and ppid(int(entry)) == pid:
            out.add(int(entry))
    return out


def memory_kib(pid: int) -> tuple[int, int]:
    """(RSS, PSS) in KiB."""
    rss = pss = 0
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Rss:"):
                    rss = int(line.split()[1])
                elif line.startswith("Pss:"):
                    pss = int(line.split()[1])
    except OSError:
        pass
    return rss, pss


class Engine(common.Engine):
    def inspect(self, ids: list[str]) -> list[dict]:
        out: list[dict] = []
        for i in range(0, len(ids), 50):
            out += json.loads(self.docker("inspect", *ids[i:i + 50]).stdout)
        return out


def measure(e: Engine, n: int, seconds: float) -> dict:
    daemon = socket_owner(e.host)
    ids = []
    for _ in range(n):
        ids.append(e.docker("run", "-d", "-l", e.label, "--health-cmd", "true", "--health-interval", "1s",
                            "--health-timeout", "5s", "busybox", "sleep", "100000").stdout.strip())
    deadline = time.time() + 120
    while time.time() < deadline:
        docs = e.inspect(ids)
        if all((d["State"].get("Health") or {}).get("Status") == "healthy" for d in docs):
            break
        time.sleep(1)
    docs = e.inspect(ids)
    monitors = {ppid(d["State"]["Pid"]) for d in docs} - {0, 1, daemon}
    helpers = children(daemon) - monitors
    procs = {"daemon": {daemon} | helpers, "monitors": monitors}
    probes: list[int] = []
    start = time.time()
    counter = threading.Thread(target=count_probes, args=(e, start, start + seconds, probes), daemon=True)
    counter.start()
    t0 = {p: cpu_seconds(p) for group in procs.values() for p in group}
    time.sleep(seconds)
    elapsed = time.time() - start
    t1 = {p: cpu_seconds(p) for p in t0}
    counter.join(30)
    cpu = {name: sum((t1[p] or 0) - (t0[p] or 0) for p in group if t0[p] is not None and t1[p] is not None)
           for name, group in procs.items()}
    mem = {name: [sum(memory_kib(p)[i] for p in group) / 1024 for i in (0, 1)] for name, group in procs.items()}
    docs = e.inspect(ids)
    healthy = sum((d["State"].get("Health") or {}).get("Status") == "healthy" for d in docs)
    return {"n": n, "elapsed": elapsed, "cpu": cpu, "mem": mem, "healthy": healthy, "probes": sum(probes),
            "monitors": len(monitors), "helpers": len(helpers)}


def count_probes(e: Engine, since: float, until: float, out: list[int]) -> None:
    """The exec_start events of this run's containers (one per probe) in the window."""
    flt = json.dumps({"type": ["container"], "event": ["exec_start"], "label": [e.label]})
    def stamp(t: float) -> str:  # seconds.nanoseconds, as dockerd parses it
        return f"{int(t)}.{int((t % 1) * 1e9):09d}"

    query = urllib.parse.urlencode({"since": stamp(since), "until": stamp(until), "filters": flt})
    conn = common.connect(e.host, timeout=until - time.time() + 30)
    conn.request("GET", f"/events?{query}")
    resp = conn.getresponse()
    count = 0
    for line in resp:
        if line.strip():
            count += 1
    out.append(count)
    conn.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--host", default=os.environ.get("DOCKER_HOST", "unix:///run/pydockerd.sock"))
    ap.add_argument("--compare", help="a second engine's DOCKER_HOST, measured the same way after the first")
    ap.add_argument("-n", "--containers", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=60.0)
    args = ap.parse_args()
    hosts = [args.host] + ([args.compare] if args.compare else [])
    results = []
    for host in hosts:
        e = Engine(host, f"bench-health-{uuid.uuid4().hex[:8]}")
        try:
            print(f"{host}: {args.containers} containers, 1 s healthcheck, {args.seconds:.0f} s ...", file=sys.stderr)
            results.append((host, measure(e, args.containers, args.seconds)))
        finally:
            e.cleanup()
    head = ["engine", "healthy", "probes", "CPU ms/probe", "daemon CPU s", "monitors CPU s", "CPU % of a core",
            "daemon RSS/PSS MiB", "monitors RSS/PSS MiB"]
    rows = []
    for host, r in results:
        total = r["cpu"]["daemon"] + r["cpu"]["monitors"]
        per_probe = f"{1000 * total / r['probes']:.1f}" if r["probes"] else "-"
        rows.append([host, f"{r['healthy']}/{r['n']}", f"{r['probes']} ({r['probes'] / r['elapsed']:.1f}/s)",
                     per_probe, f"{r['cpu']['daemon']:.2f}",
                     f"{r['cpu']['monitors']:.2f} ({r['monitors']})", f"{100 * total / r['elapsed']:.1f}",
                     "{:.0f}/{:.0f}".format(*r["mem"]["daemon"]), "{:.0f}/{:.0f}".format(*r["mem"]["monitors"])])
    common.print_rows(head, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
