#!/usr/bin/env python3
"""Interactive-path benchmarks for a Docker-API engine: pydockerd, or any other for comparison.

Measures, for the engine at $DOCKER_HOST (or --host):
  * `docker exec CTR true` latency                      (wall time per command)
  * stdin -> stdout throughput of `docker run -i --rm busybox cat` (MB/s), for a text
    payload (lines of words: what containers usually print) and a random binary one
    (every byte ends up in the json-file log, which has to escape most of them)

Throughput is size / wall time of the whole `docker run`; `steady` subtracts the median
time of `docker run -i --rm busybox true` (start-up and teardown) measured on the same
engine. Output is counted, and its SHA-256 checked on the first run of each payload.

`--compare OTHER_HOST` runs the same on a second engine and prints both side by side.
Containers carry a label of this run and are removed at the end, also on Ctrl-C. Needs a
`busybox` image on each engine.

Targets (issue 3): exec latency below dockerd's on the same machine; throughput of at least
200 MB/s.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import common
from common import Result

Engine = common.Engine



def bench_exec(e: Engine, runs: int) -> Result:
    cid = e.docker("run", "-d", "-l", e.label, "busybox", "sleep", "3600").stdout.strip()
    r = Result("docker exec CTR true", "ms")
    for _ in range(3):  # warm-up
        e.docker("exec", cid, "true")
    for _ in range(runs):
        t0 = time.perf_counter()
        e.docker("exec", cid, "true")
        r.samples.append((time.perf_counter() - t0) * 1000)
    return r


def _cat_once(e: Engine, payload: Path, want_digest: str | None) -> tuple[float, int]:
    """One `docker run -i cat`: (seconds, bytes out); checks the digest when given."""
    digest = hashlib.sha256() if want_digest else None
    count = [0]
    with open(payload, "rb") as f:
        t0 = time.perf_counter()
        p = subprocess.Popen(["docker", "run", "-i", "--rm", "-l", e.label, "busybox", "cat"], env=e.env,
                             stdin=f, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert p.stdout is not None and p.stderr is not None
        err: list[bytes] = []
        t = threading.Thread(target=lambda: err.append(p.stderr.read()))  # type: ignore[union-attr]
        t.start()
        # Into one reused buffer: the reader should cost as little as a pipe to a file.
        buf = bytearray(1 << 20)
        view = memoryview(buf)
        raw = p.stdout.raw  # type: ignore[attr-defined]
        while n := raw.readinto(buf):
            count[0] += n
            if digest is not None:
                digest.update(view[:n])
        rc = p.wait()
        elapsed = time.perf_counter() - t0
        t.join()
    if rc != 0:
        raise RuntimeError(f"docker run -i cat on {e.host}: exit {rc}: {b''.join(err).decode(errors='replace')}")
    if digest is not None and digest.hexdigest() != want_digest:
        raise RuntimeError(f"{e.host}: docker run -i cat returned other bytes than it was given")
    return elapsed, count[0]


def bench_cat(e: Engine, payload: Path, kind: str, runs: int, overhead: float) -> list[Result]:
    size = payload.stat().st_size
    with open(payload, "rb") as f:
        want = hashlib.file_digest(f, "sha256").hexdigest()
    mb = size / 1e6
    wall = Result(f"run -i cat, {kind} {mb:.0f} MB", "MB/s")
    steady = Result(f"run -i cat, {kind} {mb:.0f} MB, steady", "MB/s")
    for i in range(runs):
        elapsed, got = _cat_once(e, payload, want if i == 0 else None)
        if got != size:
            raise RuntimeError(f"{e.host}: docker run -i cat returned {got} of {size} bytes")
        wall.samples.append(mb / elapsed)
        steady.samples.append(mb / max(elapsed - overhead, 1e-3))
    return [wall, steady]


def run_overhead(e: Engine, runs: int) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(["docker", "run", "-i", "--rm", "-l", e.label, "busybox", "true"], env=e.env,
                       stdin=subprocess.DEVNULL, capture_output=True, check=True)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def make_payloads(directory: Path, size_mb: int, kinds: list[str]) -> dict[str, Path]:
    out = {}
    size = size_mb * 1_000_000
    if "text" in kinds:
        rng = random.Random(1)
        words = [b"alpha", b"beta", b"gamma", b"delta", b"epsilon", b"zeta", b"eta", b"theta", b"x=42", b"0123"]
        lines = [b" ".join(rng.choice(words) for _ in range(rng.randint(3, 20))) + b"\n" for _ in range(4096)]
        block = b"".join(lines)
        path = directory / "text.bin"
        with open(path, "wb") as f:
            left = size
            while left > 0:
                f.write(block[:left])
                left -= len(block)
        out["text"] = path
    if "random" in kinds:
        path = directory / "random.bin"
        with open(path, "wb") as f:
            for _ in range(size_mb):
                f.write(os.urandom(1_000_000))
        out["random"] = path
    return out


def run_all(e: Engine, args: argparse.Namespace, payloads: dict[str, Path]) -> list[Result]:
    probe = e.docker("version", "-f", "{{.Server.Version}}", check=False)
    if probe.returncode != 0:
        raise SystemExit(f"{e.host}: engine not reachable: {probe.stderr.strip()}")
    if e.docker("image", "inspect", "busybox", check=False).returncode != 0:
        raise SystemExit(f"{e.host}: no `busybox` image")
    results = []
    try:
        log(args, f"[{e.host}] exec x{args.runs}")
        results.append(bench_exec(e, args.runs))
        overhead = run_overhead(e, 5)
        results.append(Result("run -i --rm busybox true", "ms", [overhead * 1000]))
        for kind, path in payloads.items():
            log(args, f"[{e.host}] run -i cat, {kind} x{args.cat_runs}")
            results += bench_cat(e, path, kind, args.cat_runs, overhead)
    finally:
        e.cleanup()
    return results


def log(args: argparse.Namespace, msg: str) -> None:
    if not args.quiet:
        print(msg, file=sys.stderr, flush=True)


def print_table(hosts: list[str], per_host: list[list[Result]]) -> None:
    head = ["benchmark", "unit"]
    for h in hosts:
        head += [f"median [{h}]", "min", "max"]
    rows = []
    for i, first in enumerate(per_host[0]):
        row = [first.name, first.unit]
        for res in per_host:
            row += [f"{v:.1f}" for v in res[i].stats()]
        rows.append(row)
    common.print_rows(head, rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--host", default=os.environ.get("DOCKER_HOST", "unix:///run/pydockerd.sock"),
                    help="engine to measure (default: $DOCKER_HOST)")
    ap.add_argument("--compare", metavar="OTHER_DOCKER_HOST", help="a second engine, measured the same way")
    ap.add_argument("--runs", type=int, default=20, help="exec samples (default 20)")
    ap.add_argument("--cat-runs", type=int, default=3, help="samples per payload (default 3)")
    ap.add_argument("--size", type=int, default=100, help="payload size in MB (default 100)")
    ap.add_argument("--payload", choices=("text", "random", "both"), default="both")
    ap.add_argument("-q", "--quiet", action="store_true", help="no progress lines on stderr")
    args = ap.parse_args(argv)
    kinds = ["text", "random"] if args.payload == "both" else [args.payload]
    label = f"pydockerd.bench={uuid.uuid4().hex[:12]}"
    hosts = [args.host] + ([args.compare] if args.compare else [])
    with tempfile.TemporaryDirectory(prefix="bench-interactive-") as tmp:
        payloads = make_payloads(Path(tmp), args.size, kinds)
        per_host = []
        try:
            for h in hosts:
                per_host.append(run_all(Engine(h, label), args, payloads))
        except KeyboardInterrupt:
            print("interrupted; benchmark containers removed", file=sys.stderr)
            return 130
    print_table(hosts, per_host)
    return 0


if __name__ == "__main__":
    sys.exit(main())
