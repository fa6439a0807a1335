#!/usr/bin/env python3
"""The HTTP floor: requests/s of tiny answers with keep-alive clients.

For the engine at $DOCKER_HOST (or --host): `GET /_ping`, `HEAD /_ping`, `GET /version`,
`GET /v1.41/networks/none` and `GET /v1.41/containers/json` (small JSON answers; the last as few
containers as the engine has), each with `--clients` keep-alive connections (default 8) sending
one request at a time for `--duration` seconds, `--rounds` times. Every client is its own
process with a raw socket and a minimal response reader, so that the client is not what
is measured (http.client in threads tops out near 8k requests/s here).

For an engine on a local unix socket it also reports the daemon's CPU time per request
(user + system of the process listening on the socket, over the same rounds): on a machine
that other work keeps busy, that figure moves much less than the rate does.

`--compare OTHER_HOST` measures a second engine the same way, one round each in turn
(A/B/A/B...), so that a busy machine slows both alike. `--only 'METHOD PATH'` (repeatable) measures
just those requests.

The ceiling on this machine: bench/http_standin.py answers canned bytes with nothing but an event
loop; measured by this bench it shows what the clients themselves leave to a server.

Target (issue 14): at least dockerd's rate.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import socket
import statistics
import sys
import time
import urllib.parse

import common

# /networks/none: a small JSON answer from one of the last routes declared (every engine has
# the `none` network), where matching routes one by one used to cost most. `{n}` in a path is a
# number that changes with every request: pydockerd replays the answers of repeated GETs while
# nothing they show changed (api/replay.py), and a query that is never the same goes through
# its app every time (an engine ignores a query parameter it does not know).
PATHS = [("GET", "/_ping"), ("HEAD", "/_ping"), ("GET", "/version"), ("GET", "/v1.41/networks/none"),
         ("GET", "/v1.41/containers/json"), ("GET", "/v1.41/containers/json?n={n}")]


def _dial(host: str) -> socket.socket:
    u = urllib.parse.urlparse(host)
    if u.scheme == "unix":
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(u.path)
    else:
        s = socket.create_connection((u.hostname or "127.0.0.1", u.port or 2375))
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def _one_response(sock: socket.socket, buf: bytearray, head: bool) -> None:
    """Consume one response (Content-Length bodies only) from `buf` + the socket."""
    while True:
        end = buf.find(b"\r\n\r\n")
        if end >= 0:
            break
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed")
        buf += chunk
    headers = bytes(buf[:end]).lower()
    if not headers.startswith(b"http/1.1 200"):
        raise RuntimeError(headers[:80].decode(errors="replace"))
    if not head and b"transfer-encoding: chunked" in headers:
        # dockerd chunks bigger JSON answers: read to the last chunk (no trailers).
        while (last := buf.find(b"\r\n0\r\n\r\n", end)) < 0 and not buf.startswith(b"0\r\n\r\n", end + 4):
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            buf += chunk
        del buf[:last + 7 if last >= 0 else end + 9]
        return
    length = 0
    if not head:
        i = headers.find(b"content-length:")
        if i >= 0:
            length = int(headers[i + 15:headers.find(b"\r\n", i) if headers.find(b"\r\n", i) >= 0 else None])
    total = end + 4 + length
    while len(buf) < total:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed")
        buf += chunk
    del buf[:total]


def _client(host: str, method: str, path: str, start_at: float, duration: float, out: multiprocessing.Queue) -> None:
    sock = _dial(host)
    req = f"{method} {path} HTTP/1.1\r\nHost: localhost\r\nUser-Agent: bench\r\n\r\n".encode()
    varying = b"{n}" in req
    before, _, after = req.partition(b"{n}")
    prefix = b"%d-" % os.getpid()
    buf = bytearray()
    n = 0
    time.sleep(max(0.0, start_at - time.time()))
    stop_at = start_at + duration
    try:
        while time.time() < stop_at:
            sock.sendall(before + prefix + b"%d" % n + after if varying else req)
            _one_response(sock, buf, method == "HEAD")
            n += 1
        out.put((n, ""))
    except Exception as e:  # noqa: BLE001 - reported by the parent
        out.put((n, repr(e)))
    finally:
        sock.close()


def _daemon_pid(host: str) -> int | None:
    u = urllib.parse.urlparse(host)
    if u.scheme != "unix":
        return None
    try:
        return common.socket_owner(u.path)
    except SystemExit:
        return None


def rate_round(host: str, method: str, path: str, clients: int, duration: float) -> tuple[float, float | None]:
    """(requests/s, daemon CPU µs per request or None)."""
    pid = _daemon_pid(host)
    q: multiprocessing.Queue = multiprocessing.Queue()
    start_at = time.time() + 0.5  # every client connected and ready by then
    procs = [multiprocessing.Process(target=_client, args=(host, method, path, start_at, duration, q))
             for _ in range(clients)]
    for p in procs:
        p.start()
    cpu0 = common.cpu_seconds(pid) if pid else 0.0
    results = [q.get(timeout=duration + 60) for _ in procs]
    cpu = common.cpu_seconds(pid) - cpu0 if pid else 0.0
    for p in procs:
        p.join()
    errors = [e for _, e in results if e]
    if errors:
        raise RuntimeError(f"{host} {method} {path}: {errors[0]}")
    total = sum(n for n, _ in results)
    return total / duration, (cpu / total * 1e6 if pid and total else None)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--host", default=os.environ.get("DOCKER_HOST", "unix:///run/pydockerd.sock"),
                    help="engine to measure (default: $DOCKER_HOST)")
    ap.add_argument("--compare", metavar="OTHER_DOCKER_HOST", help="a second engine, measured the same way")
    ap.add_argument("--clients", type=int, default=8, help="keep-alive clients (default 8)")
    ap.add_argument("--duration", type=float, default=3.0, help="seconds per round (default 3)")
    ap.add_argument("--rounds", type=int, default=3, help="rounds per figure (default 3)")
    ap.add_argument("--only", action="append", metavar="'METHOD PATH'",
                    help="measure only these requests (repeatable), e.g. --only 'GET /_ping'")
    args = ap.parse_args(argv)
    paths = PATHS
    if args.only:
        try:
            paths = [(m.upper(), p) for m, p in (o.split(None, 1) for o in args.only)]
        except ValueError:
            ap.error("--only takes 'METHOD PATH'")
    hosts = [args.host] + ([args.compare] if args.compare else [])
    rates: dict[tuple[str, str, str], list[float]] = {}
    cpus: dict[tuple[str, str, str], list[float]] = {}
    for method, path in paths:
        for _ in range(args.rounds):
            for h in hosts:
                rate, cpu = rate_round(h, method, path, args.clients, args.duration)
                rates.setdefault((h, method, path), []).append(rate)
                if cpu is not None:
                    cpus.setdefault((h, method, path), []).append(cpu)
    head = ["figure", *(f"median [{h}]" for h in hosts)] + (["ratio (A/B)"] if len(hosts) == 2 else [])
    rows = []
    for method, path in paths:
        for what, table, fmt in (("req/s", rates, "{:.0f}"), ("daemon CPU us/req", cpus, "{:.0f}")):
            meds = [statistics.median(table[(h, method, path)]) if (h, method, path) in table else None
                    for h in hosts]
            row: list[object] = [f"{method} {path} x{args.clients}, {what}",
                                 *("-" if m is None else fmt.format(m) for m in meds)]
            if len(hosts) == 2:
                row.append(f"{meds[0] / meds[1]:.2f}" if meds[0] and meds[1] else "-")
            rows.append(row)
    common.print_rows(head, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
