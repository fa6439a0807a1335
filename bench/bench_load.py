#!/usr/bin/env python3
"""Responsiveness under load: `/_ping` latency while clients create, start, exec, list,
inspect and remove containers, and the daemon's event-loop lag meanwhile.

For the engine at $DOCKER_HOST (or --host), through the raw API (keep-alive connections):
  * `/_ping` round trips, one at a time, from a separate process: p50/p99 idle and under load
  * the load: `--clients` threads (default 16, in another process), each looping over
    create (busybox sleep) → start → exec create + start (detached) → list → inspect →
    remove (force); the rounds they finish per second
  * pydockerd's event-loop lag over the loaded period, p50/p99/max, from the histogram its
    `GET /debug/vars` reports (engines without it: "-")

`--compare OTHER_HOST` measures a second engine the same way. Every container carries a
label of this run and is removed at the end. Needs a `busybox` image on each engine.

Target (issue 14): `/_ping` p99 under this load at most 20 ms.
"""

from __future__ import annotations

import http.client
import json
import multiprocessing
import statistics
import sys
import threading
import time
import uuid

import common
from common import connect


def _call(conn: http.client.HTTPConnection, method: str, path: str, body: object = None) -> tuple[int, bytes]:
    headers = {"Host": "localhost"}
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    conn.request(method, path, body=data, headers=headers)
    resp = conn.getresponse()
    return resp.status, resp.read()


def _client(host: str, label: str, stop: threading.Event, counts: list[int], idx: int, errors: list[str]) -> None:
    conn = connect(host)
    key, _, value = label.partition("=")
    try:
        while not stop.is_set():
            st, body = _call(conn, "POST", "/containers/create",
                             {"Image": "busybox", "Cmd": ["sleep", "30"], "Labels": {key: value}})
            if st != 201:
                raise RuntimeError(f"create: {st} {body[:200]!r}")
            cid = json.loads(body)["Id"]
            try:
                st, body = _call(conn, "POST", f"/containers/{cid}/start")
                if st not in (204, 304):
                    raise RuntimeError(f"start: {st} {body[:200]!r}")
                st, body = _call(conn, "POST", f"/containers/{cid}/exec", {"Cmd": ["true"]})
                if st != 201:
                    raise RuntimeError(f"exec create: {st} {body[:200]!r}")
                eid = json.loads(body)["Id"]
                st, body = _call(conn, "POST", f"/exec/{eid}/start", {"Detach": True})
                if st != 200:
                    raise RuntimeError(f"exec start: {st} {body[:200]!r}")
                _call(conn, "GET", "/containers/json?all=1")
                _call(conn, "GET", f"/containers/{cid}/json")
            finally:
                _call(conn, "DELETE", f"/containers/{cid}?force=1")
            counts[idx] += 1
    except Exception as e:  # noqa: BLE001 - reported by the parent
        errors.append(repr(e))
        stop.set()
    finally:
        conn.close()


def _load(host: str, label: str, clients: int, duration: float, out: multiprocessing.Queue) -> None:
    stop = threading.Event()
    counts = [0] * clients
    errors: list[str] = []
    threads = [threading.Thread(target=_client, args=(host, label, stop, counts, i, errors)) for i in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    stop.wait(duration)
    stop.set()
    for t in threads:
        t.join()
    out.put((sum(counts) / (time.perf_counter() - t0), errors[:1]))


def _pings(host: str, seconds: float) -> list[float]:
    conn = connect(host)
    lat = []
    try:
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            t0 = time.perf_counter()
            conn.request("GET", "/_ping", headers={"Host": "localhost"})
            resp = conn.getresponse()
            resp.read()
            lat.append(time.perf_counter() - t0)
            time.sleep(0.005)
    finally:
        conn.close()
    return lat


def _pct(data: list[float], q: float) -> float:
    data = sorted(data)
    return data[min(len(data) - 1, int(q * len(data)))] if data else 0.0


def _lag_histogram(host: str) -> dict | None:
    conn = connect(host)
    try:
        st, body = _call(conn, "GET", "/debug/vars")
    except (OSError, http.client.HTTPException):
        return None
    finally:
        conn.close()
    if st != 200:
        return None
    return (json.loads(body).get("looplag") or {}).get("histogram")


def _lag_percentiles(before: dict | None, after: dict | None) -> dict[str, float] | None:
    """p50/p99 (upper bucket bounds) of the samples taken between two histogram readings."""
    if not before or not after:
        return None
    diff = [a - b for a, b in zip(after["counts"], before["counts"], strict=True)]
    total = sum(diff)
    if not total:
        return None
    bounds = after["buckets"] + [float("inf")]
    out = {}
    for q in (0.5, 0.99):
        seen = 0
        for bound, n in zip(bounds, diff, strict=True):
            seen += n
            if seen >= q * total:
                out[f"p{q * 100:g}"] = bound
                break
    out["max"] = after["max"]
    return out


def measure(host: str, label: str, clients: int, duration: float, log) -> dict[str, str]:
    e = common.Engine(host, label)
    if e.docker("image", "inspect", "busybox", check=False).returncode != 0:
        raise SystemExit(f"{host}: no `busybox` image")
    log(f"[{host}] /_ping idle")
    idle = _pings(host, 3)
    log(f"[{host}] {clients} clients for {duration:.0f}s")
    before = _lag_histogram(host)
    q: multiprocessing.Queue = multiprocessing.Queue()
    worker = multiprocessing.Process(target=_load, args=(host, label, clients, duration, q))
    worker.start()
    try:
        time.sleep(min(2.0, duration / 4))  # the load gets going
        busy = _pings(host, duration - min(2.0, duration / 4) - 0.5)
        rate, errors = q.get(timeout=duration + 120)
        worker.join()
    finally:
        if worker.is_alive():
            worker.terminate()
        e.cleanup()
    if errors:
        raise SystemExit(f"{host}: load client failed: {errors[0]}")
    lag = _lag_percentiles(before, _lag_histogram(host))
    ms = lambda v: f"{v * 1000:.1f}"  # noqa: E731
    return {
        "/_ping p50 idle (ms)": ms(statistics.median(idle)),
        "/_ping p99 idle (ms)": ms(_pct(idle, 0.99)),
        "/_ping p50 under load (ms)": ms(statistics.median(busy)),
        "/_ping p99 under load (ms)": ms(_pct(busy, 0.99)),
        "load rounds/s (create..remove)": f"{rate:.1f}",
        "loop lag p50 under load (ms)": ms(lag["p50"]) if lag else "-",
        "loop lag p99 under load (ms)": ms(lag["p99"]) if lag else "-",
        "loop lag max since start (ms)": ms(lag["max"]) if lag else "-",
    }


def main(argv: list[str] | None = None) -> int:
    ap = common.arg_parser(__doc__)
    ap.add_argument("--clients", type=int, default=16, help="concurrent load clients (default 16)")
    ap.add_argument("--duration", type=float, default=20.0, help="seconds of load (default 20)")
    args = ap.parse_args(argv)

    log = common.progress(args.quiet)

    label = f"pydockerd.bench={uuid.uuid4().hex[:12]}"
    hosts = [args.host] + ([args.compare] if args.compare else [])
    results = [measure(h, label, args.clients, args.duration, log) for h in hosts]
    common.print_rows(["figure", *hosts], [[k, *(r[k] for r in results)] for k in results[0]])
    return 0


if __name__ == "__main__":
    sys.exit(main())
