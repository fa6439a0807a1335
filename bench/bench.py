#!/usr/bin/env python3
"""Benchmarks for a Docker-API engine: pydockerd, or any other for comparison.

Measures, for the engine at $DOCKER_HOST (or --host):
  * `docker run --rm busybox true`                      (wall time per command)
  * `docker create busybox true` + `docker start`        (wall time of the pair)
  * `docker ps -a` with 100 containers present           (wall time per command)
  * `GET /containers/json?all=1` with 8 concurrent clients (requests/s, keep-alive)

and prints median/min/max. `--compare OTHER_HOST` runs the same on a second engine and
prints both side by side. Every container it makes carries a label of this run and is
removed at the end, also on Ctrl-C. Needs a `busybox` image on each engine.

Targets (issue 2): `run --rm` under half of dockerd's time on the same machine, and the
`/containers/json` rate at least twice dockerd's.
"""

from __future__ import annotations

import argparse
import http.client
import sys
import threading
import time
import uuid
from collections.abc import Callable

import common
from common import Result, connect


class Engine(common.Engine):
    def timed(self, *args: str) -> tuple[float, str]:
        t0 = time.perf_counter()
        p = self.docker(*args)
        return time.perf_counter() - t0, p.stdout.strip()



def bench_run_rm(e: Engine, runs: int) -> Result:
    r = Result("docker run --rm busybox true", "s")
    e.docker("run", "--rm", "-l", e.label, "busybox", "true")  # warm-up: caches, page cache
    for _ in range(runs):
        r.samples.append(e.timed("run", "--rm", "-l", e.label, "busybox", "true")[0])
    return r


def bench_create_start(e: Engine, runs: int) -> Result:
    r = Result("docker create + docker start", "s")
    for _ in range(runs):
        t_create, cid = e.timed("create", "-l", e.label, "busybox", "true")
        t_start, _ = e.timed("start", cid)
        r.samples.append(t_create + t_start)
        e.docker("rm", "-f", cid, check=False)
    return r


def ensure_containers(e: Engine, n: int) -> None:
    have = len(e.docker("ps", "-aq", "--filter", f"label={e.label}").stdout.split())
    for _ in range(n - have):
        e.docker("create", "-l", e.label, "busybox", "true")


def bench_ps(e: Engine, runs: int, n: int) -> Result:
    ensure_containers(e, n)
    total = len(e.docker("ps", "-aq").stdout.split())
    r = Result(f"docker ps -a ({total} containers)", "s")
    for _ in range(runs):
        r.samples.append(e.timed("ps", "-a")[0])
    return r


def _rate_round(host: str, path: str, clients: int, duration: float) -> float:
    """One round: `clients` threads, each on its own keep-alive connection, request `path`
    back to back for `duration` seconds; returns requests/s over all of them."""
    counts = [0] * clients
    errors: list[str] = []
    window: list[float] = []

    def begin() -> None:  # runs once, when every client is connected
        window.append(time.perf_counter())

    barrier = threading.Barrier(clients, action=begin)

    def worker(idx: int) -> None:
        conn = connect(host)
        try:
            barrier.wait()
            stop_at = window[0] + duration
            while time.perf_counter() < stop_at:
                conn.request("GET", path, headers={"Host": "localhost"})
                resp = conn.getresponse()
                resp.read()
                if resp.status != 200:
                    errors.append(f"HTTP {resp.status}")
                    return
                counts[idx] += 1
        except (OSError, http.client.HTTPException, threading.BrokenBarrierError) as exc:
            errors.append(repr(exc))
            barrier.abort()
        finally:
            conn.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise RuntimeError(f"{host}: {errors[0]}")
    return sum(counts) / (time.perf_counter() - window[0])


def bench_list_rate(e: Engine, clients: int, duration: float, rounds: int, n: int) -> Result:
    ensure_containers(e, n)
    r = Result(f"GET /containers/json?all=1 x{clients} clients", "req/s")
    for _ in range(rounds):
        r.samples.append(_rate_round(e.host, "/containers/json?all=1", clients, duration))
    return r


def run_all(e: Engine, args: argparse.Namespace, log: Callable[[str], None]) -> list[Result]:
    probe = e.docker("version", "-f", "{{.Server.Version}}", check=False)
    if probe.returncode != 0:
        raise SystemExit(f"{e.host}: engine not reachable: {probe.stderr.strip()}")
    if e.docker("image", "inspect", "busybox", check=False).returncode != 0:
        raise SystemExit(f"{e.host}: no `busybox` image (docker import a busybox rootfs as busybox:latest)")
    results = []
    try:
        log(f"[{e.host}] run --rm x{args.runs}")
        results.append(bench_run_rm(e, args.runs))
        log(f"[{e.host}] create+start x{args.runs}")
        results.append(bench_create_start(e, args.runs))
        log(f"[{e.host}] creating {args.containers} containers")
        results.append(bench_ps(e, args.runs, args.containers))
        log(f"[{e.host}] /containers/json, {args.clients} clients, {args.rounds}x{args.duration}s")
        results.append(bench_list_rate(e, args.clients, args.duration, args.rounds, args.containers))
    finally:
        log(f"[{e.host}] removing benchmark containers")
        e.cleanup()
    return results


def fmt(v: float, unit: str) -> str:
    return f"{v * 1000:.0f} ms" if unit == "s" else f"{v:.0f}"


def print_table(hosts: list[str], per_host: list[list[Result]]) -> None:
    head = ["benchmark", "unit"]
    for h in hosts:
        head += [f"median [{h}]", "min", "max"]
    if len(hosts) == 2:
        head.append("ratio (A/B)")
    rows = []
    for i, first in enumerate(per_host[0]):
        row = [first.name, "ms" if first.unit == "s" else first.unit]
        for res in per_host:
            med, lo, hi = res[i].stats()
            row += [fmt(med, res[i].unit), fmt(lo, res[i].unit), fmt(hi, res[i].unit)]
        if len(hosts) == 2:
            a, b = per_host[0][i].stats()[0], per_host[1][i].stats()[0]
            row.append(f"{a / b:.2f}" if b else "-")
        rows.append(row)
    common.print_rows(head, rows)


def main(argv: list[str] | None = None) -> int:
    ap = common.arg_parser(__doc__)
    ap.add_argument("--runs", type=int, default=10, help="samples per CLI benchmark (default 10)")
    ap.add_argument("--containers", type=int, default=100, help="containers present for ps/list (default 100)")
    ap.add_argument("--clients", type=int, default=8, help="concurrent API clients (default 8)")
    ap.add_argument("--duration", type=float, default=3.0, help="seconds per request-rate round (default 3)")
    ap.add_argument("--rounds", type=int, default=3, help="request-rate rounds (default 3)")
    args = ap.parse_args(argv)

    log = common.progress(args.quiet)

    label = f"pydockerd.bench={uuid.uuid4().hex[:12]}"
    hosts = [args.host] + ([args.compare] if args.compare else [])
    per_host = []
    try:
        for h in hosts:
            per_host.append(run_all(Engine(h, label), args, log))
    except KeyboardInterrupt:
        print("interrupted; benchmark containers removed", file=sys.stderr)
        return 130
    print_table(hosts, per_host)
    return 0


if __name__ == "__main__":
    sys.exit(main())
