#!/usr/bin/env python3
"""The embedded DNS resolver (127.0.0.11 on user networks) of a Docker-API engine: pydockerd,
or any other for comparison.

Measures, for the engine at $DOCKER_HOST (or --host), on a user network it creates:
  * latency of one query at a time for a container's name (answered by the resolver itself):
    median and p99 over --queries sequential queries, in ms
  * queries per second with --window queries in flight, for --seconds
  * POST /start of a container on the user network (with --peers running containers on it)
    and on the default bridge (ms), and the difference of the medians (what the user
    network's resolver and names cost at start)

The queries come from the host's python (dnspython) running inside one container's network
namespace (nsenter on its SandboxKey), so both engines are asked from the same client over
the same kernel path. Needs root and a `busybox` image on each engine; `--compare OTHER_HOST`
runs the same on a second engine and prints both side by side. Containers and the network
carry this run's label and are removed at the end.

Targets (issue 11): p99 under 2 ms, at least dockerd's queries per second, start latency on a
user network no worse than before the resolver.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import uuid

import common

LOAD = r"""
import json, socket, sys, time
import dns.message
name, count, seconds, window = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
wires = []
for i in range(65536):
    q = dns.message.make_query(name, "A")
    q.id = i
    wires.append(q.to_wire())
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.connect(("127.0.0.11", 53))
s.settimeout(2)
lat, lost = [], 0
for i in range(count):
    t = time.perf_counter()
    s.send(wires[i & 0xFFFF])
    try:
        while int.from_bytes(s.recv(4096)[:2], "big") != i & 0xFFFF:
            pass
    except OSError:
        lost += 1
        continue
    lat.append((time.perf_counter() - t) * 1000)
s.settimeout(0.5)
sent = got = 0
for _ in range(window):
    s.send(wires[sent & 0xFFFF]); sent += 1
t0 = time.perf_counter()
end = t0 + seconds
while True:
    try:
        s.recv(4096)
        got += 1
    except OSError:
        for _ in range(window):  # lost ones: fill the window again
            s.send(wires[sent & 0xFFFF]); sent += 1
        continue
    now = time.perf_counter()
    if now >= end:
        break
    s.send(wires[sent & 0xFFFF]); sent += 1
print(json.dumps({"lat": lat, "lost": lost, "qps": got / (now - t0)}))
"""


class Engine(common.Engine):
    def __init__(self, host: str, label: str, subnet: str) -> None:
        super().__init__(host, label)
        self.network = f"benchdns-{label}"
        self.subnet = subnet

    def container(self, *args: str) -> str:
        return self.run("run", "-d", "--label", f"bench-dns={self.label}", "--network", self.network, *args,
                        "busybox", "sleep", "3600")

    def cleanup(self) -> None:
        ids = self.run("ps", "-aq", "--filter", f"label=bench-dns={self.label}").split()
        if ids:
            self.run("rm", "-f", *ids)
        self.docker("network", "rm", self.network, check=False, timeout=60)


def start_time(e: Engine, mode: str, runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        st, body = e.api("POST", "/containers/create", {"Image": "busybox", "Cmd": ["sleep", "30"],
                                                        "Labels": {"bench-dns": e.label},
                                                        "HostConfig": {"NetworkMode": mode}})
        assert st == 201 and body, body
        cid = body["Id"]
        t = time.perf_counter()
        st, _ = e.api("POST", f"/containers/{cid}/start")
        out.append((time.perf_counter() - t) * 1000)
        assert st == 204, st
        e.api("DELETE", f"/containers/{cid}?force=1")
    return out


def bench(e: Engine, args: argparse.Namespace) -> dict[str, list[float]]:
    e.run("network", "create", "--label", f"bench-dns={e.label}", *(["--subnet", e.subnet] if e.subnet else []),
          e.network)
    res: dict[str, list[float]] = {}
    e.container("--name", f"target-{e.label}")
    client = e.container()
    if not args.skip_queries:
        sandbox = json.loads(e.run("inspect", client))[0]["NetworkSettings"]["SandboxKey"]
        p = subprocess.run(["nsenter", f"--net={sandbox}", sys.executable, "-c", LOAD, f"target-{e.label}",
                            str(args.queries), str(args.seconds), str(args.window)],
                           capture_output=True, text=True, timeout=600)
        if p.returncode != 0:
            raise RuntimeError(p.stderr.strip())
        out = json.loads(p.stdout)
        lat = sorted(out["lat"])
        res["query latency, median ms"] = [statistics.median(lat)]
        res["query latency, p99 ms"] = [lat[int(len(lat) * 0.99) - 1]]
        res["queries lost (of --queries)"] = [float(out["lost"])]
        res[f"queries/s, {args.window} in flight"] = [out["qps"]]
    for _ in range(args.peers):
        e.container()
    user = start_time(e, e.network, args.runs)
    bridge = start_time(e, "bridge", args.runs)
    res[f"start on the user network ({args.peers} peers), ms"] = user
    res["start on the default bridge, ms"] = bridge
    res["start(user) - start(bridge), ms"] = [statistics.median(user) - statistics.median(bridge)]
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--host", default=os.environ.get("DOCKER_HOST", "unix:///run/pydockerd.sock"))
    ap.add_argument("--compare", metavar="OTHER_DOCKER_HOST", help="a second engine, measured the same way")
    ap.add_argument("--queries", type=int, default=3000, help="sequential queries for latency (default 3000)")
    ap.add_argument("--seconds", type=float, default=5, help="duration of the throughput run (default 5)")
    ap.add_argument("--window", type=int, default=16, help="queries in flight for throughput (default 16)")
    ap.add_argument("--runs", type=int, default=10, help="start-time samples per network (default 10)")
    ap.add_argument("--peers", type=int, default=20, help="running containers on the user network (default 20)")
    ap.add_argument("--skip-queries", action="store_true", help="start latency only (an engine without a resolver)")
    ap.add_argument("--subnet", default="", help="subnet of the user network on --host (default: the engine's pick)")
    ap.add_argument("--compare-subnet", default="", help="the same on --compare")
    args = ap.parse_args(argv)
    hosts = [args.host] + ([args.compare] if args.compare else [])
    results = []
    for h, subnet in zip(hosts, [args.subnet, args.compare_subnet], strict=False):
        e = Engine(h, uuid.uuid4().hex[:8], subnet)
        try:
            results.append(bench(e, args))
        finally:
            e.cleanup()
    common.print_samples(hosts, results, single=".2f")
    return 0


if __name__ == "__main__":
    sys.exit(main())
