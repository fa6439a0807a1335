#!/usr/bin/env python3
"""What the default seccomp profile costs: container start and exec with and without it.

For the engine at $DOCKER_HOST (or --host), and --compare OTHER_HOST side by side:
  * `docker run --rm busybox true`, default profile vs `--security-opt seccomp=unconfined`
  * `docker exec CTR true` in a container with the default profile vs an unconfined one
The two variants are measured alternately (ABAB...), so load that comes and goes on a
shared machine hits both alike; the `added` rows are the difference of the medians.

With --in-process it also times, on this machine, what pydockerd's container init adds:
decoding the compiled program and the prctl that loads it (runtime/seccomp.py), in a forked
child, as the init does it.

Target (issue 13): seccomp adds under 3 ms. Needs a `busybox` image on each engine;
containers carry a label of this run and are removed at the end.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import uuid
from pathlib import Path

import common
from common import Result

Engine = common.Engine
UNCONFINED = ("--security-opt", "seccomp=unconfined")


def _timed(e: Engine, *args: str) -> float:
    t0 = time.perf_counter()
    e.docker(*args)
    return (time.perf_counter() - t0) * 1000


def bench_run(e: Engine, runs: int) -> list[Result]:
    confined, unconfined = Result("run --rm busybox true, default profile", "ms"), Result(
        "run --rm busybox true, unconfined", "ms")
    for _ in range(2):  # warm-up
        e.docker("run", "--rm", "-l", e.label, "busybox", "true")
    for _ in range(runs):
        confined.samples.append(_timed(e, "run", "--rm", "-l", e.label, "busybox", "true"))
        unconfined.samples.append(_timed(e, "run", "--rm", "-l", e.label, *UNCONFINED, "busybox", "true"))
    added = Result("run: added by seccomp (median diff)", "ms",
                   [statistics.median(confined.samples) - statistics.median(unconfined.samples)])
    return [confined, unconfined, added]


def bench_exec(e: Engine, runs: int) -> list[Result]:
    a = e.docker("run", "-d", "-l", e.label, "busybox", "sleep", "3600").stdout.strip()
    b = e.docker("run", "-d", "-l", e.label, *UNCONFINED, "busybox", "sleep", "3600").stdout.strip()
    confined, unconfined = Result("exec CTR true, default profile", "ms"), Result("exec CTR true, unconfined", "ms")
    for _ in range(3):
        e.docker("exec", a, "true")
        e.docker("exec", b, "true")
    for _ in range(runs):
        confined.samples.append(_timed(e, "exec", a, "true"))
        unconfined.samples.append(_timed(e, "exec", b, "true"))
    added = Result("exec: added by seccomp (median diff)", "ms",
                   [statistics.median(confined.samples) - statistics.median(unconfined.samples)])
    return [confined, unconfined, added]


def in_process(runs: int) -> Result:
    """The init's share: decode + prctl(PR_SET_SECCOMP) of dockerd's default profile, per fork."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    import base64
    import binascii

    from daemon.containers import container_config, seccomp
    from runtime import libc
    from runtime import seccomp as loader

    program = seccomp.detect().program({}, container_config.capabilities({}))
    if program is None:
        raise SystemExit("seccomp is not available here (kernel or libseccomp)")
    encoded = base64.b64encode(program).decode()
    r = Result(f"init: decode + load {len(program) // 8}-insn filter", "ms")
    for _ in range(runs):
        rfd, wfd = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(rfd)
            libc.prctl(libc.PR_SET_NO_NEW_PRIVS, 1)
            t0 = time.perf_counter()
            loader.load(binascii.a2b_base64(encoded))
            os.write(wfd, f"{(time.perf_counter() - t0) * 1000:.6f}".encode())
            os._exit(0)
        os.close(wfd)
        r.samples.append(float(os.read(rfd, 64)))
        os.close(rfd)
        os.waitpid(pid, 0)
    return r


def run_all(e: Engine, args: argparse.Namespace) -> list[Result]:
    if e.docker("image", "inspect", "busybox", check=False).returncode != 0:
        raise SystemExit(f"{e.host}: no `busybox` image")
    try:
        print(f"[{e.host}] run x{args.runs}", file=sys.stderr, flush=True)
        results = bench_run(e, args.runs)
        print(f"[{e.host}] exec x{args.runs}", file=sys.stderr, flush=True)
        results += bench_exec(e, args.runs)
    finally:
        e.cleanup()
    return results


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--host", default=os.environ.get("DOCKER_HOST", "unix:///run/pydockerd.sock"))
    ap.add_argument("--compare", metavar="OTHER_DOCKER_HOST", help="a second engine, measured the same way")
    ap.add_argument("--runs", type=int, default=20, help="samples per variant (default 20)")
    ap.add_argument("--in-process", action="store_true", help="also time the init's load of the filter here")
    args = ap.parse_args(argv)
    label = f"pydockerd.bench={uuid.uuid4().hex[:12]}"
    hosts = [args.host] + ([args.compare] if args.compare else [])
    per_host = []
    try:
        for h in hosts:
            per_host.append(run_all(Engine(h, label), args))
    except KeyboardInterrupt:
        print("interrupted; benchmark containers removed", file=sys.stderr)
        return 130
    head = ["benchmark", "unit"]
    for h in hosts:
        head += [f"median [{h}]", "min", "max"]
    rows = []
    for i, first in enumerate(per_host[0]):
        row: list[object] = [first.name, first.unit]
        for res in per_host:
            row += [f"{v:.1f}" for v in res[i].stats()]
        rows.append(row)
    common.print_rows(head, rows)
    if args.in_process:
        r = in_process(50)
        common.print_rows(["benchmark (this machine)", "unit", "median", "min", "max"],
                          [[r.name, r.unit, *(f"{v:.3f}" for v in r.stats())]])
    return 0


if __name__ == "__main__":
    sys.exit(main())
