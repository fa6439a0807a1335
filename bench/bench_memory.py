#!/usr/bin/env python3
"""The daemon's own memory, fresh and after a test suite's worth of work, all removed again.

For the engine at $DOCKER_HOST (or --host), a unix socket on this machine, as PSS of the
engine's processes (the one listening on the socket and every process under it that is not
in a container: pydockerd's template process, dockerd's containerd; see bench_footprint):
  * fresh: as found (start the daemon just before), after --settle seconds idle
  * after work: N containers run (-d, on user networks, with volumes), exec'd into, their
    logs read, files copied in and out, inspected and listed, a network connected, images
    tagged, committed, imported and built, short `run --rm`s, events and stats read; then
    everything removed, and --settle seconds idle again (pydockerd trims its heap every 30 s:
    daemon/util/memtrim.py)

PSS counts a shared library page in part only, split between every process that maps it:
the same daemon shows several MiB less while other Python daemons run. Compare engines in
the same window; the anonymous part (what the engine allocated itself) is stable across.

A daemon run with PYDOCKERD_MEMDEBUG=1 (and PYTHONTRACEMALLOC=1) reports what it holds under
GET /debug/vars; with --modules the modules imported by the work are printed for it.
`--compare OTHER_HOST` measures a second engine the same way, one after the other.

Target (issue 14): at most 60 MiB fresh and after work.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
import uuid
from pathlib import Path

import common
from bench_footprint import MIB, Engine

_DOCKERFILE = """FROM busybox
ENV STEP={i}
COPY data.txt /data.txt
RUN cat /data.txt > /copy.txt && echo built {i} > /built.txt
WORKDIR /srv
LABEL bench=memory
CMD ["cat", "/built.txt"]
"""


def _pss(pid: int) -> tuple[int, int]:
    """(PSS, anonymous PSS) in bytes; (0, 0) for a process that is gone."""
    out = {"Pss": 0, "Pss_Anon": 0}
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                key, _, rest = line.partition(":")
                if key in out:
                    out[key] = int(rest.split()[0]) * 1024
    except OSError:
        pass
    return out["Pss"], out["Pss_Anon"]


def pss(e: Engine) -> tuple[float, float]:
    """The engine's PSS, and the anonymous part of it (heaps, stacks: what the engine itself
    allocated). The rest, shared library pages, is split between every process that maps
    them: with other Python programs running the same interpreter and libraries it shrinks,
    so compare engines in the same window, and the anonymous part across windows."""
    engine, _ = e.processes()
    both = [_pss(p) for p in engine]
    return sum(p for p, _ in both) / MIB, sum(a for _, a in both) / MIB


def modules(e: Engine) -> list[str] | None:
    """The daemon's imported modules, if it runs with PYDOCKERD_MEMDEBUG=1."""
    try:
        _, doc = e.api("GET", "/debug/vars")
    except (OSError, ValueError):
        return None
    return (doc or {}).get("memdebug", {}).get("modules")


def work(e: Engine, n: int, tmp: Path, log) -> int:
    """What a test suite does to a daemon; every object is gone again at the end. Returns the
    number of objects made."""
    tag = uuid.uuid4().hex[:8]
    nets = [f"memnet{tag}{i}" for i in range(5)]
    vols = [f"memvol{tag}{i}" for i in range(5)]
    imgs: list[str] = []
    made = 0
    for net, vol in zip(nets, vols, strict=True):
        e.docker("network", "create", "--label", e.label, net)
        e.docker("volume", "create", "--label", e.label, vol)
        made += 2
    src = tmp / "in.txt"
    src.write_text("x" * 10000)
    ctx = tmp / "ctx"
    ctx.mkdir()
    (ctx / "data.txt").write_text("data\n" * 100)
    for i in range(n):
        if i % 20 == 0:
            log(f"[{e.host}] work {i}/{n}")
        cid = e.run("run", "-d", "-l", e.label, "--network", nets[i % 5], "-v", f"{vols[i % 5]}:/data",
                    "-e", f"I={i}", "busybox", "sh", "-c", "seq 1 2000; sleep 100000")
        made += 1
        e.docker("exec", cid, "sh", "-c", f"echo {i} > /data/f; cat /data/f")
        e.docker("exec", "-e", "X=1", "-w", "/tmp", cid, "ls", "/")
        e.docker("logs", "--tail", "5", cid)
        e.docker("inspect", cid)
        if i % 5 == 0:
            e.docker("cp", str(src), f"{cid}:/tmp/in.txt")
            e.docker("cp", f"{cid}:/tmp/in.txt", str(tmp / "out.txt"))
            e.docker("run", "--rm", "-l", e.label, "busybox", "echo", "short")
            e.docker("ps", "-a", "--filter", f"label={e.label}")
            e.docker("logs", cid)
            made += 1
        if i % 10 == 0:
            e.docker("network", "connect", nets[(i + 1) % 5], cid)
            e.docker("tag", "busybox", f"memimg{tag}:t{i}")
            e.docker("commit", cid, f"memimg{tag}:c{i}")
            (ctx / "Dockerfile").write_text(_DOCKERFILE.format(i=i))
            e.docker("build", "-q", "-t", f"memimg{tag}:b{i}", str(ctx))
            e.docker("run", "--rm", "-l", e.label, f"memimg{tag}:b{i}")
            e.docker("images")
            e.docker("network", "ls")
            e.docker("volume", "ls")
            e.docker("stop", "-t", "1", cid)
            e.docker("start", cid)
            imgs += [f"memimg{tag}:t{i}", f"memimg{tag}:c{i}", f"memimg{tag}:b{i}"]
            made += 5
        if i % 20 == 0:
            e.docker("import", str(Path(e.busybox_tar)), f"memimg{tag}:i{i}")
            e.docker("image", "inspect", f"memimg{tag}:i{i}")
            e.docker("history", f"memimg{tag}:i{i}")
            imgs.append(f"memimg{tag}:i{i}")
            made += 1
    e.docker("stats", "--no-stream")
    e.docker("events", "--since", "5m", "--until", "0s")
    e.docker("system", "df")
    e.docker("info")
    log(f"[{e.host}] removing everything")
    e.cleanup()
    for net, vol in zip(nets, vols, strict=True):
        e.docker("network", "rm", net, check=False)
        e.docker("volume", "rm", vol, check=False)
    for i in range(0, len(imgs), 30):
        e.docker("rmi", *imgs[i:i + 30], check=False)
    e.docker("image", "prune", "-f", check=False)
    return made


class MemEngine(Engine):
    busybox_tar = ""


def measure(e: MemEngine, n: int, settle: float, show_modules: bool, log) -> dict[str, float]:
    log(f"[{e.host}] fresh: {settle:.0f} s idle")
    time.sleep(settle)
    fresh = pss(e)
    mods_before = modules(e) if show_modules else None
    with tempfile.TemporaryDirectory(prefix="bench-memory-") as d:
        t0 = time.monotonic()
        made = work(e, n, Path(d), log)
        took = time.monotonic() - t0
    left = e.docker("ps", "-aq", "--filter", f"label={e.label}").stdout.split()
    if left:
        raise RuntimeError(f"{e.host}: containers left: {left}")
    log(f"[{e.host}] {made} objects in {took:.0f} s; {settle:.0f} s idle")
    now = pss(e)
    time.sleep(settle)
    after = pss(e)
    if mods_before is not None:
        mods_after = modules(e) or []
        new = sorted(set(mods_after) - set(mods_before))
        print(f"[{e.host}] {len(mods_before)} modules fresh, {len(mods_after)} after; new: {json.dumps(new)}",
              file=sys.stderr)
    return {"daemon PSS fresh": fresh[0], "daemon PSS right after the work": now[0],
            f"daemon PSS after work, {settle:.0f} s idle": after[0],
            "  of which anonymous, fresh": fresh[1], "  of which anonymous, after work": after[1],
            "objects made": float(made)}


def main(argv: list[str] | None = None) -> int:
    ap = common.arg_parser(__doc__)
    ap.add_argument("-n", "--containers", type=int, default=60, help="containers run (default 60)")
    ap.add_argument("--settle", type=float, default=35.0, help="idle seconds before each reading (default 35)")
    ap.add_argument("--busybox-tar", required=True, help="the busybox tar (scripts/busybox-image.py) to import")
    ap.add_argument("--modules", action="store_true", help="print the modules the work imported (PYDOCKERD_MEMDEBUG)")
    args = ap.parse_args(argv)
    log = common.progress(args.quiet)
    label = f"pydockerd.bench={uuid.uuid4().hex[:12]}"
    hosts = [args.host] + ([args.compare] if args.compare else [])
    results = []
    for h in hosts:
        e = MemEngine(h, label)
        e.busybox_tar = args.busybox_tar
        e.env["DOCKER_BUILDKIT"] = "0"
        try:
            results.append(measure(e, args.containers, args.settle, args.modules, log))
        except KeyboardInterrupt:
            print("interrupted; benchmark containers removed", file=sys.stderr)
            return 130
        finally:
            e.cleanup()
    common.print_figures("MiB", hosts, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
