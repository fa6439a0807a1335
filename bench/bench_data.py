#!/usr/bin/env python3
"""Data-path benchmark: docker cp in/out of a big file, docker export/import of a big rootfs.

For the engine at $DOCKER_HOST (or --host), and optionally a second one (--compare HOST):
  * `docker cp BIG ctr:/big`           host -> running container   (MB/s of the file)
  * `docker cp ctr:/big DIR/`          container -> host            (MB/s of the file)
  * `docker import rootfs.tar`         tar file -> image            (MB/s of the tar)
  * `docker export -o out.tar ctr`     container rootfs -> tar file (MB/s of the tar)
and plain GNU tar doing the same work on the same files, as the reference the issue sets
("within 1.5x of plain tar"):
  * cp in/out:  `tar -C SRC -cf - big | tar -C DST -xf -`
  * import:     `tar -C NEWDIR -xf rootfs.tar`
  * export:     `tar -C ROOTFS -cf out.tar .`

The rootfs is the busybox image's plus --size-mb of files (1 MiB each: typical of a real image
whose bulk is in a few hundred libraries). Needs a `busybox` image on each engine. Everything
it creates carries a label of this run and is removed at the end, also on Ctrl-C.
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
from pathlib import Path

MB = 1 << 20


def sh(cmd: list[str] | str, env: dict[str, str] | None = None, **kw: object) -> subprocess.CompletedProcess:
    p = subprocess.run(cmd, shell=isinstance(cmd, str), env=env, capture_output=True, text=True, **kw)  # type: ignore[call-overload]
    if p.returncode != 0:
        raise SystemExit(f"command failed ({p.returncode}): {cmd}\n{p.stderr}")
    return p


def timed(cmd: list[str] | str, env: dict[str, str] | None = None) -> float:
    # Each operation starts with nothing dirty in the page cache: an engine that makes its
    # writes durable (pydockerd syncs a new layer) must not pay for the previous step's files.
    os.sync()
    t0 = time.perf_counter()
    sh(cmd, env)
    return time.perf_counter() - t0


def prepare(work: Path, size_mb: int) -> tuple[Path, Path, Path]:
    """(big file, rootfs dir, rootfs tar)."""
    big = work / "src" / "big"
    big.parent.mkdir()
    chunk = os.urandom(MB)
    with open(big, "wb") as f:
        for i in range(size_mb):
            # Distinct content per MiB (no dedup anywhere), cheap to make.
            f.write(i.to_bytes(8, "little") + chunk[8:])
    rootfs = work / "rootfs"
    (rootfs / "data").mkdir(parents=True)
    for d in ("bin", "etc", "tmp"):
        (rootfs / d).mkdir()
    shutil.copy2("/bin/busybox", rootfs / "bin" / "busybox")
    for applet in ("sh", "true", "sleep", "cat"):
        os.symlink("busybox", rootfs / "bin" / applet)
    (rootfs / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    for i in range(size_mb):
        with open(rootfs / "data" / f"f{i:05d}", "wb") as f:
            f.write(i.to_bytes(8, "little") + chunk[8:])
    tar = work / "rootfs.tar"
    sh(["tar", "-C", str(rootfs), "-cf", str(tar), "."])
    return big, rootfs, tar


def engine_env(host: str) -> dict[str, str]:
    env = dict(os.environ)
    env["DOCKER_HOST"] = host
    env.setdefault("DOCKER_CLI_HINTS", "false")
    return env


def bench_engine(host: str, big: Path, tar: Path, work: Path, runs: int, label: str) -> dict[str, list[float]]:
    env = engine_env(host)
    size_big = big.stat().st_size / MB
    size_tar = tar.stat().st_size / MB
    out: dict[str, list[float]] = {"cp in": [], "cp out": [], "import": [], "export": []}
    made_ctrs: list[str] = []
    made_imgs: list[str] = []
    try:
        for r in range(runs):
            ctr = sh(["docker", "create", "--label", label, "busybox", "sleep", "600"], env).stdout.strip()
            made_ctrs.append(ctr)
            sh(["docker", "start", ctr], env)
            out["cp in"].append(size_big / timed(["docker", "cp", str(big), f"{ctr}:/big"], env))
            dest = work / f"out-{r}"
            dest.mkdir()
            out["cp out"].append(size_big / timed(["docker", "cp", f"{ctr}:/big", str(dest)], env))
            shutil.rmtree(dest)
            ref = f"bench-data-{label.split('=')[1][:8]}:{r}"
            out["import"].append(size_tar / timed(["docker", "import", str(tar), ref], env))
            made_imgs.append(ref)
            c2 = sh(["docker", "create", "--label", label, ref, "true"], env).stdout.strip()
            made_ctrs.append(c2)
            exp = work / f"export-{r}.tar"
            secs = timed(["docker", "export", "-o", str(exp), c2], env)
            out["export"].append(exp.stat().st_size / MB / secs)
            exp.unlink()
    finally:
        for c in made_ctrs:
            subprocess.run(["docker", "rm", "-f", c], env=env, capture_output=True)
        for i in made_imgs:
            subprocess.run(["docker", "rmi", "-f", i], env=env, capture_output=True)
    return out


def bench_tar(big: Path, rootfs: Path, tar: Path, work: Path, runs: int) -> dict[str, list[float]]:
    size_big = big.stat().st_size / MB
    size_tar = tar.stat().st_size / MB
    out: dict[str, list[float]] = {"cp in": [], "cp out": [], "import": [], "export": []}
    for r in range(runs):
        dest = work / f"tar-{r}"
        dest.mkdir()
        pipe = f"tar -C {big.parent} -cf - big | tar -C {dest} -xf -"
        secs = timed(pipe)
        out["cp in"].append(size_big / secs)
        out["cp out"].append(size_big / secs)  # the same work in the other direction
        shutil.rmtree(dest)
        dest.mkdir()
        out["import"].append(size_tar / timed(["tar", "-C", str(dest), "-xf", str(tar)]))
        shutil.rmtree(dest)
        exp = work / f"tar-export-{r}.tar"
        out["export"].append(size_tar / timed(["tar", "-C", str(rootfs), "-cf", str(exp), "."]))
        exp.unlink()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--host", default=os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock"))
    ap.add_argument("--compare", help="a second engine to measure the same way (e.g. dockerd)")
    ap.add_argument("--size-mb", type=int, default=200)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--workdir", default=None, help="where the test files go (default: a temp dir)")
    args = ap.parse_args()
    label = f"bench-data-run={uuid.uuid4().hex}"
    work = Path(tempfile.mkdtemp(prefix="bench-data-", dir=args.workdir))
    try:
        print(f"preparing {args.size_mb} MB of test data in {work} ...", file=sys.stderr)
        big, rootfs, tar = prepare(work, args.size_mb)
        columns = {"tar": bench_tar(big, rootfs, tar, work, args.runs)}
        columns[args.host] = bench_engine(args.host, big, tar, work, args.runs, label)
        if args.compare:
            columns[args.compare] = bench_engine(args.compare, big, tar, work, args.runs, label)
        names = list(columns)
        print(f"\nmedian MB/s over {args.runs} runs ({args.size_mb} MB; higher is better)")
        print(f"{'operation':<10}" + "".join(f"{n[-28:]:>30}" for n in names) + f"{'vs tar':>10}")
        for op in ("cp in", "cp out", "import", "export"):
            meds = [statistics.median(columns[n][op]) for n in names]
            ratio = meds[0] / meds[1] if meds[1] else float("inf")
            print(f"{op:<10}" + "".join(f"{m:>30.1f}" for m in meds) + f"{ratio:>9.2f}x")
        print("\n'vs tar' = plain tar's rate / the first engine's rate (target: <= 1.5x)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
