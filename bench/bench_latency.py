#!/usr/bin/env python3
"""Latency of the commands people type most: `docker run --rm busybox true` and
`docker exec CTR true`, wall time through the stock CLI.

For the engine at $DOCKER_HOST (or --host), and with `--compare OTHER_HOST` for a second
engine: the samples alternate between the engines (A, B, A, B, ...), so that load from
other work on the machine falls on both alike; median, min and max per engine.
`docker run --rm --network none` too: the same work on both engines whatever their networks.
Compare with a dockerd that has a bridge (bench/refdockerd.sh gives it one of its own): one
started with `--bridge none` gives its default-network containers no veth, so its plain `run`
row would time less work than pydockerd's.

The CLI's floor is measured the same way, in the same window: `docker --version` (no daemon
involved), and `docker run --rm` / `docker exec` against a stand-in server (bench/standin.py)
that answers the CLI's exact request sequence with canned answers at once. That is the part
of every figure no engine can take away: an engine's time minus it is what the engine costs.

Targets (issue 14): run at most 0.25x dockerd's time, exec at most 0.6x.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

import common
from standin import StandIn


def _timed(e: common.Engine, *args: str) -> float:
    t0 = time.perf_counter()
    e.docker(*args)
    return time.perf_counter() - t0


def _cli_floor(env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(["docker", "--version"], env=env, capture_output=True, check=True)
    return time.perf_counter() - t0


def _floor(env: dict[str, str], sock: str, *args: str) -> float:
    t0 = time.perf_counter()
    subprocess.run(["docker", *args], env=dict(env, DOCKER_HOST=f"unix://{sock}"), capture_output=True,
                   stdin=subprocess.DEVNULL, check=True)
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--host", default=os.environ.get("DOCKER_HOST", "unix:///run/pydockerd.sock"),
                    help="engine to measure (default: $DOCKER_HOST)")
    ap.add_argument("--compare", metavar="OTHER_DOCKER_HOST", help="a second engine, measured the same way")
    ap.add_argument("--runs", type=int, default=15, help="samples per figure and engine (default 15)")
    args = ap.parse_args(argv)
    label = f"pydockerd.bench={uuid.uuid4().hex[:12]}"
    engines = [common.Engine(h, label) for h in [args.host] + ([args.compare] if args.compare else [])]
    figures: dict[str, dict[str, list[float]]] = {
        "docker run --rm busybox true": {}, "docker run --rm --network none busybox true": {},
        "docker exec CTR true": {}, "CLI floor: docker --version": {},
        "CLI floor: docker run --rm (stand-in server)": {}, "CLI floor: docker exec (stand-in server)": {}}
    ctrs = {}
    tmp = tempfile.mkdtemp(prefix="bench-latency-")
    stand_in = StandIn(os.path.join(tmp, "standin.sock"))
    try:
        for e in engines:
            ctrs[e.host] = e.docker("run", "-d", "-l", label, "busybox", "sleep", "100000").stdout.strip()
            e.docker("run", "--rm", "-l", label, "busybox", "true")  # warm-up
            e.docker("exec", ctrs[e.host], "true")
        for _ in range(args.runs):
            for e in engines:
                figures["docker run --rm busybox true"].setdefault(e.host, []).append(
                    _timed(e, "run", "--rm", "-l", label, "busybox", "true"))
                figures["docker run --rm --network none busybox true"].setdefault(e.host, []).append(
                    _timed(e, "run", "--rm", "--network", "none", "-l", label, "busybox", "true"))
                figures["docker exec CTR true"].setdefault(e.host, []).append(_timed(e, "exec", ctrs[e.host], "true"))
                figures["CLI floor: docker --version"].setdefault(e.host, []).append(_cli_floor(e.env))
                figures["CLI floor: docker run --rm (stand-in server)"].setdefault(e.host, []).append(
                    _floor(e.env, stand_in.sock_path, "run", "--rm", "busybox", "true"))
                figures["CLI floor: docker exec (stand-in server)"].setdefault(e.host, []).append(
                    _floor(e.env, stand_in.sock_path, "exec", "ctr", "true"))
    finally:
        stand_in.close()
        shutil.rmtree(tmp, ignore_errors=True)
        for e in engines:
            e.cleanup()
    head = ["ms", *(f"{e.host} median (min-max)" for e in engines)] + (["ratio (A/B)"] if len(engines) == 2 else [])
    rows = []
    for name, per_host in figures.items():
        row: list[object] = [name]
        meds = []
        for e in engines:
            s = per_host[e.host]
            meds.append(statistics.median(s))
            row.append(f"{meds[-1] * 1000:.0f} ({min(s) * 1000:.0f}-{max(s) * 1000:.0f})")
        if len(engines) == 2:
            row.append(f"{meds[0] / meds[1]:.2f}")
        rows.append(row)
    common.print_rows(head, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
