"""What the benchmark scripts share: an engine handle (CLI + raw HTTP) and result rows."""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field


def arg_parser(doc: str | None) -> argparse.ArgumentParser:
    """The options every benchmark takes: the engine to measure, a second one to compare, -q."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--host", default=os.environ.get("DOCKER_HOST", "unix:///run/pydockerd.sock"),
                    help="engine to measure (default: $DOCKER_HOST)")
    ap.add_argument("--compare", metavar="OTHER_DOCKER_HOST", help="a second engine, measured the same way")
    ap.add_argument("-q", "--quiet", action="store_true", help="no progress lines on stderr")
    return ap


def progress(quiet: bool) -> Callable[[str], None]:
    """Progress lines on stderr (the table goes to stdout), unless quiet."""
    def log(msg: str) -> None:
        if not quiet:
            print(msg, file=sys.stderr, flush=True)
    return log


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float = 60) -> None:
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self) -> None:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        s.connect(self.unix_path)
        self.sock = s


def connect(host: str, timeout: float = 30) -> http.client.HTTPConnection:
    """An HTTP connection to a DOCKER_HOST-style address (unix:// or plain tcp://)."""
    u = urllib.parse.urlparse(host)
    if u.scheme == "unix":
        return UnixHTTPConnection(u.path, timeout)
    if u.scheme in ("tcp", "http"):
        return http.client.HTTPConnection(u.hostname or "127.0.0.1", u.port or 2375, timeout=timeout)
    raise SystemExit(f"unsupported host {host!r} (unix:// or plain tcp://)")


def socket_owner(path: str) -> int:
    """The pid of the process holding the listening unix socket `path`."""
    inodes = set()
    with open("/proc/net/unix") as f:
        next(f)
        for line in f:
            parts = line.split()
            if len(parts) >= 8 and parts[7] == path:
                inodes.add(parts[6])
    if not inodes:
        raise SystemExit(f"nobody listens on {path}")
    targets = {f"socket:[{i}]" for i in inodes}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                if os.readlink(f"/proc/{pid}/fd/{fd}") in targets:
                    return int(pid)
        except OSError:
            continue
    raise SystemExit(f"no process found for the socket {path}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Result:
    name: str
    unit: str
    samples: list[float] = field(default_factory=list)

    def stats(self) -> tuple[float, float, float]:
        return statistics.median(self.samples), min(self.samples), max(self.samples)


class Engine:
    """The engine at one DOCKER_HOST, driven with the stock CLI; `label` marks what a run made."""

    def __init__(self, host: str, label: str) -> None:
        self.host = host
        self.label = label
        self.env = dict(os.environ, DOCKER_HOST=host, DOCKER_CLI_HINTS="false")
        self.env.pop("DOCKER_CONTEXT", None)

    def docker(self, *args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        p = subprocess.run(["docker", *args], env=self.env, capture_output=True, text=True,
                           stdin=subprocess.DEVNULL, timeout=timeout)
        if check and p.returncode != 0:
            raise RuntimeError(f"docker {' '.join(args)} on {self.host}: exit {p.returncode}: {p.stderr.strip()}")
        return p

    def run(self, *args: str) -> str:
        """`docker ARGS`'s output, stripped; a failure raises."""
        return self.docker(*args).stdout.strip()

    def api(self, method: str, path: str, body: dict | None = None) -> tuple[int, dict | None]:
        """One raw Engine API request on a unix:// host: (status, JSON answer or None)."""
        if not self.host.startswith("unix://"):
            raise SystemExit(f"{self.host}: only unix:// hosts are supported")
        conn = UnixHTTPConnection(self.host[len("unix://"):])
        try:
            conn.request(method, path, body=json.dumps(body) if body is not None else None,
                         headers={"Content-Type": "application/json"})
            r = conn.getresponse()
            raw = r.read()
            return r.status, json.loads(raw) if raw.strip() else None
        finally:
            conn.close()

    def cleanup(self) -> None:
        ids = self.docker("ps", "-aq", "--filter", f"label={self.label}", check=False).stdout.split()
        for i in range(0, len(ids), 50):
            self.docker("rm", "-f", *ids[i:i + 50], check=False, timeout=300)


def print_rows(head: list[str], rows: list[list[object]]) -> None:
    """A plain-text table, columns as wide as their widest cell."""
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows, strict=True)]
    line = "  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True))
    print(line)
    print("-" * len(line))
    for row in rows:
        print("  ".join(str(x).ljust(w) for x, w in zip(row, widths, strict=True)))


def print_figures(unit: str, hosts: list[str], results: list[dict[str, float]], fmt: str = ".1f") -> None:
    """One row per figure, one column per engine, and A/B when there are two."""
    head = [unit, *hosts] + (["ratio (A/B)"] if len(hosts) == 2 else [])
    rows = []
    for key in results[0]:
        row: list[object] = [key, *(f"{r[key]:{fmt}}" for r in results)]
        if len(hosts) == 2:
            b = results[1][key]
            row.append(f"{results[0][key] / b:.2f}" if b else "-")
        rows.append(row)
    print_rows(head, rows)


def print_samples(hosts: list[str], results: list[dict[str, list[float]]], single: str = ".1f") -> None:
    """One row per figure, one column per engine: a lone sample as is (`single` format), several
    as their median with min and max."""
    names = list(results[0])
    width = max(len(n) for n in names) + 2
    print("".join([f"{'':{width}}"] + [f"{h[-28:]:>32}" for h in hosts]))
    for n in names:
        cells = []
        for r in results:
            v = r.get(n) or []
            if not v:
                cells.append(f"{'n/a':>32}")
            elif len(v) == 1:
                cells.append(f"{v[0]:>32{single}}")
            else:
                cells.append(f"{f'{statistics.median(v):.1f} (min {min(v):.1f} max {max(v):.1f})':>32}")
        print(f"{n:{width}}" + "".join(cells))
