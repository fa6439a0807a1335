#!/usr/bin/env python3
"""`docker logs` of a big log: throughput to /dev/null, `--tail`, `--since`, and the CLI's floor.

For the engine at $DOCKER_HOST (or --host): a container prints `--lines` lines (default
1.4 M lines of ~75 bytes: ~106 MB of output) and exits; then, `--runs` times each:
  * `docker logs CTR > /dev/null`                     (MB/s of container output)
  * `docker logs --tail 10 CTR`                        (ms: must not read the whole log)
  * `docker logs --since <after the last line> CTR`    (ms: nothing to send)
and the CLI's floor: a stand-in server on a unix socket that answers `docker logs` with the
very bytes this engine sent (captured once, sent with sendfile, no work at all), so that
"MB/s" can be read against what the CLI itself can take.

`--compare OTHER_HOST` measures a second engine the same way (its own capture for its floor).
Target (issue 14): at least 3x dockerd, or within 1.2x of the CLI's floor.
"""

from __future__ import annotations

import http.client
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

import common
import standin
from common import connect


def _api_get(host: str, path: str, out_path: str) -> None:
    conn = connect(host, timeout=600)
    conn.request("GET", path, headers={"Host": "localhost"})
    resp = conn.getresponse()
    with open(out_path, "wb") as f:
        while chunk := resp.read(1 << 20):
            f.write(chunk)
    conn.close()


class LogsStandIn(standin.Server):
    """Just enough of the API for `docker logs NAME`: ping, inspect (no tty), and the log as
    the captured bytes."""

    def __init__(self, body_path: str, sock_path: str) -> None:
        self.body_path = body_path
        super().__init__(sock_path)

    def _answer(self, conn: socket.socket, method: str, route: list[str]) -> bool:
        if route == ["_ping"]:
            conn.sendall(standin.ping(method))
        elif route[-1:] == ["json"]:
            conn.sendall(standin.json_answer("200 OK", {"Id": "x", "Name": "/x", "Config": {"Tty": False},
                                                        "State": {"Running": False}}))
        elif route[-1:] == ["logs"]:
            size = os.path.getsize(self.body_path)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/vnd.docker.multiplexed-stream\r\n"
                         b"Content-Length: " + str(size).encode() + b"\r\n\r\n")
            with open(self.body_path, "rb") as f:
                conn.sendfile(f)
        else:
            conn.sendall(standin.json_answer("404 Not Found", {"message": "the stand-in server does not serve this"}))
        return False


def _time_logs(env: dict[str, str], *args: str) -> float:
    t0 = time.perf_counter()
    subprocess.run(["docker", "logs", *args], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   check=True, timeout=600)
    return time.perf_counter() - t0


def measure(host: str, label: str, lines: int, runs: int, log) -> dict[str, str]:
    e = common.Engine(host, label)
    # Lines of ~75 bytes, as a chatty service prints them.
    script = (f"yes 'INFO 2026-12-05 request served path=/api/v1/items status=200 bytes=5120' | head -n {lines}")
    log(f"[{host}] writing a {lines}-line log")
    cid = e.docker("run", "-d", "-l", label, "busybox", "sh", "-c", script).stdout.strip()
    try:
        e.docker("wait", cid, timeout=600)
        out_bytes = lines * 76
        since = time.time() + 1  # no line is that late
        time.sleep(1.2)
        full = [_time_logs(e.env, cid) for _ in range(runs)]
        tail = [_time_logs(e.env, "--tail", "10", cid) for _ in range(runs)]
        since_t = [_time_logs(e.env, "--since", f"{since:.3f}", cid) for _ in range(runs)]
        log(f"[{host}] the CLI's floor with a stand-in server")
        with tempfile.TemporaryDirectory() as tmp:
            body = os.path.join(tmp, "body")
            _api_get(host, f"/containers/{cid}/logs?stdout=1&stderr=1", body)
            stand_in = LogsStandIn(body, os.path.join(tmp, "s.sock"))
            try:
                floor_env = dict(e.env, DOCKER_HOST=f"unix://{stand_in.sock_path}")
                floor = [_time_logs(floor_env, "x") for _ in range(runs)]
            finally:
                stand_in.close()
    finally:
        e.cleanup()
    mbs = lambda ts: f"{out_bytes / statistics.median(ts) / 1e6:.1f}"  # noqa: E731
    ms = lambda ts: f"{statistics.median(ts) * 1000:.0f}"  # noqa: E731
    return {
        f"docker logs > /dev/null, {out_bytes / 1e6:.0f} MB (MB/s)": mbs(full),
        "the CLI's floor: stand-in server, same bytes (MB/s)": mbs(floor),
        "docker logs --tail 10 (ms)": ms(tail),
        "docker logs --since <after the end> (ms)": ms(since_t),
    }


def main(argv: list[str] | None = None) -> int:
    ap = common.arg_parser(__doc__)
    ap.add_argument("--lines", type=int, default=1_400_000, help="lines in the log (default 1.4 M)")
    ap.add_argument("--runs", type=int, default=3, help="samples per figure (default 3)")
    args = ap.parse_args(argv)

    log = common.progress(args.quiet)

    label = f"pydockerd.bench={uuid.uuid4().hex[:12]}"
    hosts = [args.host] + ([args.compare] if args.compare else [])
    try:
        results = [measure(h, label, args.lines, args.runs, log) for h in hosts]
    except (OSError, http.client.HTTPException, subprocess.CalledProcessError) as exc:
        raise SystemExit(f"failed: {exc}") from None
    common.print_rows(["figure", *hosts], [[k, *(r[k] for r in results)] for k in results[0]])
    return 0


if __name__ == "__main__":
    sys.exit(main())
