#!/usr/bin/env python3
"""Network benchmarks for a Docker-API engine: pydockerd, or any other for comparison.

Measures, for the engine at $DOCKER_HOST (or --host):
  * per-container network setup: POST /start of a bridge container and of a --net=none
    one, and the difference of the medians (pydockerd makes a netns for both, so the
    difference is the veth/address/route/hosts work; its debug log also prints the
    whole setup per container and its steps: "network setup of <id>: netns N, ...; total N ms")
  * container -> container TCP throughput over the default bridge (MB/s)
  * host 127.0.0.1 -> published port throughput (MB/s), and [::1] -> published port,
    with host -> container IP (no NAT) as the baseline the NAT path is compared with

The data is pushed by the host's python3 running inside the containers' network
namespaces (nsenter on the SandboxKey), so both engines are measured with the same
endpoints and only the path differs (busybox has no fast sender or sink). Needs root, a
`busybox` image on each engine, and free host port --port. `--compare OTHER_HOST` runs the
same on a second engine and prints both side by side. Containers carry a label of this
run and are removed at the end.

Targets (issue 5): bridge throughput equal to the kernel's veth (same as dockerd),
published-port throughput at least dockerd's.
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

SINK = r"""
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1]))); s.listen(8)
print("ready", flush=True)
while True:
    c, _ = s.accept()
    buf = bytearray(1 << 20); n = 0
    while True:
        k = c.recv_into(buf)
        if not k: break
        n += k
    c.sendall(str(n).encode()); c.close()
"""

SEND = r"""
import socket, sys, time
host, port, total = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
fam = socket.AF_INET6 if ":" in host else socket.AF_INET
s = socket.socket(fam); s.connect((host, port))
chunk = b"\0" * (1 << 20); sent = 0; t = time.perf_counter()
while sent < total:
    s.sendall(chunk); sent += len(chunk)
s.shutdown(socket.SHUT_WR); got = int(s.recv(64) or b"0"); el = time.perf_counter() - t
assert got == total, (got, total)
print(f"{total / el / 1e6:.1f}")
"""


class Engine(common.Engine):
    def container(self, *args: str) -> str:
        return self.run("run", "-d", "--label", f"bench-net={self.label}", *args, "busybox", "sleep", "3600")

    def inspect(self, cid: str) -> dict:
        return json.loads(self.run("inspect", cid))[0]

    def cleanup(self) -> None:
        ids = self.run("ps", "-aq", "--filter", f"label=bench-net={self.label}").split()
        if ids:
            self.run("rm", "-f", *ids)


def start_time(e: Engine, mode: str, runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        st, body = e.api("POST", "/containers/create", {"Image": "busybox", "Cmd": ["true"],
                                                        "Labels": {"bench-net": e.label},
                                                        "HostConfig": {"NetworkMode": mode}})
        assert st == 201 and body, body
        cid = body["Id"]
        t = time.perf_counter()
        st, _ = e.api("POST", f"/containers/{cid}/start")
        out.append((time.perf_counter() - t) * 1000)
        assert st == 204, st
        e.api("POST", f"/containers/{cid}/wait")
        e.api("DELETE", f"/containers/{cid}?force=1")
    return out


def in_netns(sandbox: str, code: str, *args: str, **kw: object) -> subprocess.Popen[str]:
    return subprocess.Popen(["nsenter", f"--net={sandbox}", sys.executable, "-c", code, *args],
                            stdout=subprocess.PIPE, text=True, **kw)  # type: ignore[call-overload]


def throughput(sender_ns: str | None, target: str, port: int, total: int) -> float:
    argv = [sys.executable, "-c", SEND, target, str(port), str(total)]
    if sender_ns:
        argv = ["nsenter", f"--net={sender_ns}", *argv]
    p = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    if p.returncode != 0:
        raise RuntimeError(p.stderr.strip())
    return float(p.stdout.strip())


def bench(e: Engine, args: argparse.Namespace) -> dict[str, list[float]]:
    res: dict[str, list[float]] = {}
    none = start_time(e, "none", args.runs)
    bridge = start_time(e, "bridge", args.runs)
    res["start(bridge) - start(none), ms"] = [statistics.median(bridge) - statistics.median(none)]
    res["start --net=none, ms"] = none
    res["start --net=bridge, ms"] = bridge
    total = args.mib << 20
    srv = e.container("-p", f"{args.port}:5001")
    cli = e.container()
    srv_info, cli_info = e.inspect(srv), e.inspect(cli)
    sink = in_netns(srv_info["NetworkSettings"]["SandboxKey"], SINK, "5001")
    try:
        assert sink.stdout is not None and sink.stdout.readline().strip() == "ready"
        ip = srv_info["NetworkSettings"]["Networks"]["bridge"]["IPAddress"]
        cli_ns = cli_info["NetworkSettings"]["SandboxKey"]
        res["container -> container (bridge), MB/s"] = [throughput(cli_ns, ip, 5001, total)
                                                         for _ in range(args.rounds)]
        res["host -> container IP, no NAT (baseline), MB/s"] = [throughput(None, ip, 5001, total)
                                                                 for _ in range(args.rounds)]
        res["127.0.0.1 -> published port, MB/s"] = [throughput(None, "127.0.0.1", args.port, total)
                                                     for _ in range(args.rounds)]
        try:
            res["[::1] -> published port, MB/s"] = [throughput(None, "::1", args.port, total)
                                                     for _ in range(args.rounds)]
        except RuntimeError:
            res["[::1] -> published port, MB/s"] = []
    finally:
        sink.kill()
        sink.wait()
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--host", default=os.environ.get("DOCKER_HOST", "unix:///run/pydockerd.sock"))
    ap.add_argument("--compare", metavar="OTHER_DOCKER_HOST", help="a second engine, measured the same way")
    ap.add_argument("--runs", type=int, default=10, help="start-time samples per mode (default 10)")
    ap.add_argument("--rounds", type=int, default=3, help="throughput rounds (default 3)")
    ap.add_argument("--mib", type=int, default=512, help="MiB per throughput round (default 512)")
    ap.add_argument("--port", type=int, default=28765, help="host port to publish (default 28765)")
    args = ap.parse_args(argv)
    hosts = [args.host] + ([args.compare] if args.compare else [])
    results = []
    for h in hosts:
        e = Engine(h, uuid.uuid4().hex[:8])
        try:
            results.append(bench(e, args))
        finally:
            e.cleanup()
    common.print_samples(hosts, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
