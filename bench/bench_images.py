#!/usr/bin/env python3
"""Image distribution benchmark for a Docker-API engine: pydockerd, or any other for comparison.

Pushes a 3-layer image of about --size-mb MB (random, so incompressible) to a local registry
(Debian's docker-registry started on 127.0.0.1 unless --registry is given), then measures for the
engine at $DOCKER_HOST (or --host), --runs times each:
  * `docker pull REG/bench/big:latest` (after `docker rmi`: nothing of it is local)
  * `docker save -o FILE` of it
  * `docker load -i FILE` (after `docker rmi`)
and prints MB/s (image MB / wall time) as median/min/max. `--compare OTHER_HOST` measures a
second engine the same way, side by side. Target (issue 6): pull at least as fast as dockerd.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from storage.registry import Credentials, RegistryClient  # noqa: E402

REPO = "bench/big"


def _sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def start_registry(base: Path) -> tuple[subprocess.Popen[bytes], str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    (base / "config.yml").write_text(
        f"version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {base / 'data'}\n"
        f"http:\n  addr: 127.0.0.1:{port}\n")
    exe = shutil.which("docker-registry") or sys.exit("docker-registry is not installed (apt install docker-registry)")
    proc = subprocess.Popen([exe, "serve", str(base / "config.yml")], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc, f"127.0.0.1:{port}"
        except OSError:
            time.sleep(0.05)
    proc.kill()
    sys.exit("docker-registry did not start")


def push_test_image(registry: str, size_mb: int, log: Callable) -> None:
    """3 layers of random files, gzip level 1, pushed with pydockerd's own registry client."""
    client = RegistryClient(registry, Credentials())
    diff_ids, descs = [], []
    per_layer = size_mb * 1_000_000 // 3
    for i in range(3):
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tf:
            left, n = per_layer, 0
            while left > 0:
                chunk = os.urandom(min(left, 8_000_000))
                ti = tarfile.TarInfo(f"layer{i}/file{n}")
                ti.size = len(chunk)
                tf.addfile(ti, io.BytesIO(chunk))
                left -= len(chunk)
                n += 1
        raw = buf.getvalue()
        blob = gzip.compress(raw, compresslevel=1, mtime=0)
        diff_ids.append(_sha(raw))
        if not client.blob_exists(REPO, _sha(blob)):
            client.upload_blob(REPO, _sha(blob), io.BytesIO(blob), len(blob))
        descs.append({"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "size": len(blob),
                      "digest": _sha(blob)})
        log(f"layer {i + 1}/3 pushed ({len(blob) / 1e6:.0f} MB)")
    config = json.dumps({"architecture": "amd64", "os": "linux", "config": {"Cmd": ["sh"]},
                         "rootfs": {"type": "layers", "diff_ids": diff_ids}}).encode()
    client.upload_blob(REPO, _sha(config), io.BytesIO(config), len(config))
    manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                           "config": {"mediaType": "application/vnd.docker.container.image.v1+json",
                                      "size": len(config), "digest": _sha(config)},
                           "layers": descs}).encode()
    client.put_manifest(REPO, "latest", manifest, "application/vnd.docker.distribution.manifest.v2+json")
    client.close()


def docker(host: str, *args: str) -> float:
    env = dict(os.environ, DOCKER_HOST=host)
    t0 = time.monotonic()
    p = subprocess.run(["docker", *args], env=env, capture_output=True, text=True, timeout=900)
    dt = time.monotonic() - t0
    if p.returncode != 0:
        raise SystemExit(f"docker {' '.join(args)} failed on {host}: {p.stderr.strip()}")
    return dt


def rmi(host: str, name: str) -> None:
    subprocess.run(["docker", "rmi", "-f", name], env=dict(os.environ, DOCKER_HOST=host), capture_output=True)


def measure(host: str, image: str, size_mb: float, runs: int, work: Path, log: Callable) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {"pull": [], "save": [], "load": []}
    archive = work / "bench-save.tar"
    for r in range(runs):
        rmi(host, image)
        out["pull"].append(size_mb / docker(host, "pull", "-q", image))
        archive.unlink(missing_ok=True)
        out["save"].append(size_mb / docker(host, "save", "-o", str(archive), image))
        rmi(host, image)
        out["load"].append(size_mb / docker(host, "load", "-q", "-i", str(archive)))
        log(f"{host} run {r + 1}/{runs}: " + ", ".join(f"{k} {v[-1]:.0f} MB/s" for k, v in out.items()))
    rmi(host, image)
    archive.unlink(missing_ok=True)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--host", default=os.environ.get("DOCKER_HOST", "unix:///run/pydockerd.sock"))
    ap.add_argument("--compare", metavar="OTHER_DOCKER_HOST")
    ap.add_argument("--registry", help="host:port of a registry to use (default: start docker-registry)")
    ap.add_argument("--size-mb", type=int, default=200)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("-q", "--quiet", action="store_true")
    args = ap.parse_args(argv)

    def log(msg: str) -> None:
        if not args.quiet:
            print(msg, file=sys.stderr, flush=True)

    work = Path(tempfile.mkdtemp(prefix="bench-images-"))
    proc = None
    try:
        registry = args.registry
        if not registry:
            proc, registry = start_registry(work)
        log(f"registry {registry}: pushing a {args.size_mb} MB 3-layer image")
        push_test_image(registry, args.size_mb, log)
        image = f"{registry}/{REPO}:latest"
        hosts = [args.host] + ([args.compare] if args.compare else [])
        results = {h: measure(h, image, args.size_mb, args.runs, work, log) for h in hosts}
        print(f"{'MB/s (median [min-max])':28}" + "".join(f"{h[-34:]:>36}" for h in hosts))
        for k in ("pull", "save", "load"):
            cells = []
            for h in hosts:
                v = results[h][k]
                cells.append(f"{statistics.median(v):.0f} [{min(v):.0f}-{max(v):.0f}]")
            print(f"{k:28}" + "".join(f"{c:>36}" for c in cells))
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(10)
        shutil.rmtree(work, ignore_errors=True)
    return 0

if __name__ == "__main__":
    raise SystemExit(main())
