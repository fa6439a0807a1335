#!/usr/bin/env python3
"""Build benchmark: the classic builder (`DOCKER_BUILDKIT=0 docker build`) on a 12-step Dockerfile.

For the engine at $DOCKER_HOST (or --host), and optionally a second one (--compare HOST):
  * cold:    `docker build --no-cache` (every step runs; the 50 MB context is sent)
  * cached:  the same build again, every step from the cache
  * changed: one small source file changed: its COPY and the steps after it run again
The context is a 50 MB tree (--size-mb) of 100 KiB files plus a small source directory;
the Dockerfile has FROM, ENV, WORKDIR, LABEL, four RUNs, two COPYs, EXPOSE and CMD.
Prints median/min/max seconds per case and the ratio of the first engine to the second.

Targets (issue 10): cold within 1.2x of dockerd 20.10's classic builder, cached rebuild at
most 0.5x dockerd's time. Needs a `busybox` image on each engine; every image it builds is
removed at the end (also on Ctrl-C). --network none suits a reference dockerd started with
`--bridge none`.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import common

DOCKERFILE = """\
FROM busybox
ENV APP=/app
WORKDIR /app
RUN echo prepared > /prepared.txt
COPY data/ /app/data/
RUN du -sk /app/data > /app/du.txt
LABEL bench=build
COPY src/ /app/src/
RUN cat /app/src/*.txt | wc -c > /app/src.count
RUN mkdir -p /var/app && chown 1000 /var/app
EXPOSE 8080
CMD ["cat", "/app/du.txt"]
"""


def prepare(work: Path, size_mb: int) -> Path:
    ctx = work / "ctx"
    data = ctx / "data"
    chunk = os.urandom(100 << 10)
    n = size_mb * 10
    for i in range(n):
        d = data / f"d{i // 50:03d}"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"f{i:05d}.bin").write_bytes(chunk[i % 97:] + chunk[: i % 97])
    src = ctx / "src"
    src.mkdir()
    for i in range(20):
        (src / f"m{i:02d}.txt").write_text(f"module {i}\n" * 50)
    (ctx / "Dockerfile").write_text(DOCKERFILE)
    return ctx


class Engine(common.Engine):
    def __init__(self, host: str, label: str, network: str) -> None:
        super().__init__(host, label)
        self.env["DOCKER_BUILDKIT"] = "0"
        self.network = network
        self.images: set[str] = set()

    def build(self, ctx: Path, *more: str) -> float:
        iid = ctx.parent / f"iid-{uuid.uuid4().hex}"
        args = ["build", "-q", "--iidfile", str(iid), "--network", self.network, *more, str(ctx)]
        os.sync()  # nothing dirty from the previous step in the page cache
        t0 = time.perf_counter()
        self.docker(*args, timeout=900)
        elapsed = time.perf_counter() - t0
        self.images.add(iid.read_text().strip())
        iid.unlink()
        return elapsed

    def remove_images(self) -> None:
        for img in self.images:
            self.docker("rmi", "-f", img, check=False)


def bench_engine(e: Engine, ctx: Path, runs: int) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {"cold": [], "cached": [], "changed": []}
    changed = ctx / "src" / "m07.txt"
    e.build(ctx)  # warm-up: the base image's pages, the engine's code paths
    for i in range(runs):
        out["cold"].append(e.build(ctx, "--no-cache"))
        out["cached"].append(e.build(ctx))
        changed.write_text(f"module 7, edit {uuid.uuid4().hex} {i}\n" * 50)
        out["changed"].append(e.build(ctx))
        print(f"  {e.host}: run {i + 1}/{runs} done", file=sys.stderr)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--host", default=os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock"))
    ap.add_argument("--compare", help="a second engine to measure the same way (e.g. dockerd 20.10)")
    ap.add_argument("--size-mb", type=int, default=50)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--network", default="default", help="the RUN steps' network (--network of docker build)")
    args = ap.parse_args()
    label = f"bench-build-run={uuid.uuid4().hex}"
    work = Path(tempfile.mkdtemp(prefix="bench-build-"))
    engines = [Engine(args.host, label, args.network)]
    if args.compare:
        engines.append(Engine(args.compare, label, args.network))
    try:
        print(f"preparing a {args.size_mb} MB context in {work} ...", file=sys.stderr)
        ctx = prepare(work, args.size_mb)
        results = {}
        for e in engines:
            # Each engine starts from the same sources.
            shutil.rmtree(work / "run", ignore_errors=True)
            shutil.copytree(ctx, work / "run" / "ctx", symlinks=True)
            results[e.host] = bench_engine(e, work / "run" / "ctx", args.runs)
        head = ["build (12 steps)"]
        for e in engines:
            head += [f"{e.host[-30:]} median", "min", "max"]
        if len(engines) == 2:
            head.append("ratio")
        rows = []
        for case in ("cold", "cached", "changed"):
            row: list[object] = [case]
            meds = []
            for e in engines:
                med = statistics.median(results[e.host][case])
                meds.append(med)
                row += [f"{med:.3f}s", f"{min(results[e.host][case]):.3f}", f"{max(results[e.host][case]):.3f}"]
            if len(meds) == 2:
                row.append(f"{meds[0] / meds[1]:.2f}x")
            rows.append(row)
        print(f"\n{args.runs} runs, {args.size_mb} MB context, RUN network {args.network!r}; lower is better")
        common.print_rows(head, rows)
        if len(engines) == 2:
            print("\nratio = first engine's median / second's (targets: cold <= 1.2x, cached <= 0.5x)")
    finally:
        for e in engines:
            e.remove_images()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
