#!/usr/bin/env python3
"""What `--metrics-addr` costs: API request rates of an engine with it and one without, and the
time of one /metrics scrape with running containers.

    python bench/bench_metrics.py --host unix:///run/with-metrics.sock --metrics-url http://127.0.0.1:9323/metrics \\
        --compare unix:///run/without.sock

Measures, per engine: GET /_ping and GET /containers/json?all=1 requests/s with 8 keep-alive
clients (every request passes the metrics middleware on an engine with --metrics-addr), and,
with --metrics-url, GET /metrics (per-container cgroup reads included) with --containers
running containers. Needs a `busybox` image; removes every container it makes.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import urllib.request
import uuid

import common
from common import Engine, Result

from bench import _rate_round, fmt


def bench_rate(e: Engine, path: str, clients: int, duration: float, rounds: int) -> Result:
    r = Result(f"GET {path} x{clients} clients", "req/s")
    for _ in range(rounds):
        r.samples.append(_rate_round(e.host, path, clients, duration))
    return r


def bench_scrape(url: str, n: int, scrapes: int) -> Result:
    r = Result(f"GET /metrics, {n} running containers", "s")
    urllib.request.urlopen(url, timeout=60).read()  # warm-up
    for _ in range(scrapes):
        t0 = time.perf_counter()
        urllib.request.urlopen(url, timeout=60).read()
        r.samples.append(time.perf_counter() - t0)
    return r


def run(e: Engine, args: argparse.Namespace, metrics_url: str | None) -> list[Result]:
    if e.docker("image", "inspect", "busybox", check=False).returncode != 0:
        raise SystemExit(f"{e.host}: no `busybox` image")
    try:
        for _ in range(args.containers):
            e.docker("run", "-d", "-l", e.label, "busybox", "sleep", "3600")
        results = [bench_rate(e, "/_ping", args.clients, args.duration, args.rounds),
                   bench_rate(e, "/containers/json?all=1", args.clients, args.duration, args.rounds)]
        if metrics_url:
            results.append(bench_scrape(metrics_url, args.containers, args.scrapes))
        return results
    finally:
        e.cleanup()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--host", default=os.environ.get("DOCKER_HOST", "unix:///run/pydockerd.sock"))
    ap.add_argument("--metrics-url", help="the /metrics URL of --host (its --metrics-addr)")
    ap.add_argument("--compare", metavar="OTHER_DOCKER_HOST", help="a second engine (e.g. without --metrics-addr)")
    ap.add_argument("--containers", type=int, default=20, help="running containers during the run (default 20)")
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--duration", type=float, default=3.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--scrapes", type=int, default=20)
    args = ap.parse_args(argv)
    label = f"pydockerd.bench={uuid.uuid4().hex[:12]}"
    hosts = [args.host] + ([args.compare] if args.compare else [])
    per_host = [run(Engine(h, label), args, args.metrics_url if i == 0 else None) for i, h in enumerate(hosts)]
    head = ["benchmark", "unit"] + [c for h in hosts for c in (f"median [{h}]", "min", "max")]
    rows = []
    for i, first in enumerate(per_host[0]):
        row: list[object] = [first.name, "ms" if first.unit == "s" else first.unit]
        for res in per_host:
            if i < len(res):
                row += [fmt(v, res[i].unit) for v in res[i].stats()]
            else:
                row += ["-", "-", "-"]
        rows.append(row)
    common.print_rows(head, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
