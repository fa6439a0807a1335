"""The end-to-end harness: real pydockerd daemons as subprocesses, driven by the stock docker CLI.

Every daemon gets its own temp data root, exec root, socket, pidfile, bridge name and a
/24 that is not routed on the host; masquerading is off and the config file does not
exist, so nothing of the host's configuration leaks in and no traffic leaves the host.
This module owns the Daemon class, the raw-HTTP client, subnet and port allocation, the
busybox test image, and the session's record of every daemon it started (STATE), which
tests/conftest.py's fixtures and leak check read.

Environment knobs:
  PYDOCKERD_CMD       command that starts the daemon (default: `python -m daemon.main`
                      from this work tree, so the tree under test is what runs)
  PYDOCKERD_START_TIMEOUT  seconds a daemon has to answer /_ping (default 60)
"""

from __future__ import annotations

import contextlib
import http.client
import io
import ipaddress
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests import leakcheck

REPO = Path(__file__).resolve().parent.parent
PID3 = os.getpid() % 1000
# Interface names are at most 15 bytes: "pydt123" / "pydu123" + a counter.
MAIN_BRIDGE_PREFIX = f"pydt{PID3}"
EXTRA_BRIDGE_PREFIX = f"pydu{PID3}"
START_TIMEOUT = float(os.environ.get("PYDOCKERD_START_TIMEOUT", "60"))
BUSYBOX = "/bin/busybox"


# --------------------------------------------------------------------------- http, ports, subnets, image


class UnixHTTPConnection(http.client.HTTPConnection):
    """http.client over a unix socket: lets tests send exactly the bytes they mean
    (malformed JSON, HEAD, odd paths) without a client library normalising them."""

    def __init__(self, path: str, timeout: float = 30) -> None:
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self) -> None:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        s.connect(self.unix_path)
        self.sock = s


@dataclass
class Response:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def text(self) -> str:
        return self.body.decode(errors="replace")

    def message(self) -> str:
        """The `message` of dockerd's error body, or the raw text when it is not JSON."""
        try:
            return str(self.json().get("message", ""))
        except (ValueError, AttributeError):
            return self.text


def free_tcp_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def udp_tcp_pair() -> tuple[socket.socket, socket.socket]:
    """A UDP and a listening TCP socket on one loopback port number, as the embedded resolver's,
    both non-blocking. A number free for UDP may be taken for TCP: then another is tried."""
    for _ in range(50):
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        udp.bind(("127.0.0.1", 0))
        tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            tcp.bind(("127.0.0.1", udp.getsockname()[1]))
        except OSError:
            udp.close()
            tcp.close()
            continue
        tcp.listen(8)
        udp.setblocking(False)
        tcp.setblocking(False)
        return udp, tcp
    raise OSError("no loopback port free for both UDP and TCP")


_allocated_subnets: list[ipaddress.IPv4Network] = []


def _routed_networks() -> list[ipaddress.IPv4Network]:
    nets: list[ipaddress.IPv4Network] = []
    out = subprocess.run(
        ["ip", "-4", "-j", "route", "show", "table", "all"], capture_output=True, text=True
    ).stdout
    for r in json.loads(out or "[]"):
        dst = r.get("dst", "")
        if dst in ("", "default"):
            continue  # the default route overlaps everything; it is not a "routed subnet"
        with contextlib.suppress(ValueError):
            nets.append(ipaddress.ip_network(dst if "/" in dst else dst + "/32", strict=False))
    out = subprocess.run(["ip", "-4", "-j", "addr", "show"], capture_output=True, text=True).stdout
    for link in json.loads(out or "[]"):
        for a in link.get("addr_info", []):
            nets.append(ipaddress.ip_network(f"{a['local']}/{a['prefixlen']}", strict=False))
    return nets


def allocate_subnet() -> ipaddress.IPv4Network:
    """A /24 in 10.x not routed or addressed on the host and not used by this session.

    10.x rather than 172.17-31/192.168: those are dockerd's default pools, and a dockerd on
    the same host must never see its subnets reused.
    """
    used = _routed_networks() + _allocated_subnets
    for second in range(200, 250):
        for third in range(PID3 % 250, PID3 % 250 + 250):
            net = ipaddress.ip_network(f"10.{second}.{third % 250}.0/24")
            if not any(net.overlaps(u) for u in used):
                _allocated_subnets.append(net)
                return net
    raise RuntimeError("no free 10.x /24 for a test bridge")


BUSYBOX_IMAGE_SCRIPT = REPO / "scripts" / "busybox-image.py"


def build_busybox_rootfs(dest: Path) -> Path:
    """The busybox rootfs tar of the README's recipe (scripts/busybox-image.py), plus one test file."""
    subprocess.run([sys.executable, str(BUSYBOX_IMAGE_SCRIPT), "--busybox", BUSYBOX, "-o", str(dest)],
                   check=True, capture_output=True)
    # A file that is not executable and a non-ELF script without interpreter line: the 126
    # exit-code tests exec it.
    data = b"echo no\n"
    ti = tarfile.TarInfo("etc/not-executable")
    ti.mode, ti.mtime, ti.size, ti.uname, ti.gname = 0o644, 1_700_000_000, len(data), "root", "root"
    with tarfile.open(dest, "a", format=tarfile.PAX_FORMAT) as tf:
        tf.addfile(ti, io.BytesIO(data))
    return dest


# --------------------------------------------------------------------------- daemon


class Daemon:
    """One pydockerd subprocess with its own roots, socket, bridge and subnet."""

    def __init__(
        self,
        base: Path,
        bridge: str,
        bip: str,
        tcp_port: int | None = None,
        extra_args: Sequence[str] = (),
        log_level: str = "debug",
        storage_driver: str | None = None,
        launcher: Sequence[str] = (),
        hosts: Sequence[str] | None = None,
        extra_env: dict[str, str] | None = None,
    ) -> None:
        self.base = base
        base.mkdir(parents=True, exist_ok=True)
        self.data_root = base / "data"
        self.exec_root = base / "exec"
        self.sock = base / "docker.sock"
        self.pidfile = base / "pydockerd.pid"
        self.config_file = base / "no-such-daemon.json"  # must not exist: no host config
        self.log_path = base / "daemon.log"
        self.docker_config = base / "docker-config"
        self.docker_config.mkdir(exist_ok=True)
        self.bridge = bridge
        self.bip = bip
        self.tcp_port = tcp_port
        self.extra_args = list(extra_args)
        self.log_level = log_level
        self.storage_driver = storage_driver or os.environ.get("PYDOCKERD_STORAGE_DRIVER", "")
        # What runs the daemon command (e.g. systemd-socket-activate, which binds self.sock),
        # the -H values in place of unix://self.sock, and variables for the daemon only.
        self.launcher = list(launcher)
        self.hosts = list(hosts) if hosts is not None else None
        self.extra_env = dict(extra_env or {})
        self.proc: subprocess.Popen[bytes] | None = None
        self._client: Any = None
        self.seen_ids: set[str] = set()
        self.closed = False

    # -- addresses and environment
    @property
    def host(self) -> str:
        return f"unix://{self.sock}"

    @property
    def tcp_host(self) -> str:
        assert self.tcp_port, "this daemon has no TCP listener"
        return f"tcp://127.0.0.1:{self.tcp_port}"

    @property
    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        for k in ("DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH", "DOCKER_CONTEXT", "DOCKER_API_VERSION"):
            env.pop(k, None)
        env["DOCKER_HOST"] = self.host
        env["DOCKER_CONFIG"] = str(self.docker_config)  # never the user's ~/.docker
        env["DOCKER_CLI_HINTS"] = "false"
        return env

    def argv(self, *more: str) -> list[str]:
        cmd = shlex.split(os.environ.get("PYDOCKERD_CMD", "")) or [sys.executable, "-m", "daemon.main"]
        listen = [a for h in (self.hosts if self.hosts is not None else [self.host]) for a in ("-H", h)]
        args = [
            *listen,
            "--data-root", str(self.data_root),
            "--exec-root", str(self.exec_root),
            "--pidfile", str(self.pidfile),
            "--config-file", str(self.config_file),
            "--bridge", self.bridge,
            "--bip", self.bip,
            "--ip-masq=false",
            "--log-level", self.log_level,
            # Its own parent cgroup, which it removes when it stops empty: daemons never share one.
            "--cgroup-parent", f"pydockerd-test-{self.base.name}-{os.getpid()}",
        ]
        if self.storage_driver:
            args += ["--storage-driver", self.storage_driver]
        if self.tcp_port:
            args += ["-H", self.tcp_host]
        return self.launcher + cmd + args + self.extra_args + list(more)

    # -- lifecycle
    def start(self, timeout: float = START_TIMEOUT) -> None:
        assert self.proc is None or self.proc.poll() is not None, "already running"
        with open(self.log_path, "ab") as log:
            log.write(f"\n==== [harness] start: {shlex.join(self.argv())}\n".encode())
            log.flush()
            # Own session: a Ctrl-C at the terminal must reach pytest only, so teardown
            # (not the signal) decides how the daemon stops.
            self.proc = subprocess.Popen(
                self.argv(), cwd=REPO, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                start_new_session=True, env={**os.environ, **self.extra_env} if self.extra_env else None,
            )
        self.closed = False
        self.wait_ready(timeout)

    def wait_ready(self, timeout: float = START_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        last_err = ""
        while time.monotonic() < deadline:
            assert self.proc is not None
            rc = self.proc.poll()
            if rc is not None:
                raise RuntimeError(
                    f"pydockerd exited with {rc} before answering /_ping\n{self.log_tail()}"
                )
            try:
                r = self.api("GET", "/_ping", timeout=2)
                if r.status == 200 and r.body == b"OK":
                    return
                last_err = f"{r.status} {r.body[:200]!r}"
            except OSError as e:
                last_err = repr(e)
            time.sleep(0.1)
        self.kill()
        raise RuntimeError(
            f"pydockerd did not answer /_ping within {timeout}s (last: {last_err})\n{self.log_tail()}"
        )

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 30, sig: int = signal.SIGTERM) -> int | None:
        """Signal the daemon and wait; returns its exit code (None if it was not running)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._note(f"daemon ignored signal {sig} for {timeout}s: SIGKILL")
                self.kill()
        self._drop_client()
        return self.proc.returncode

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def restart(self, timeout: float = START_TIMEOUT) -> None:
        rc = self.stop()
        assert rc == 0, f"pydockerd exited {rc} on SIGTERM (expected 0)\n{self.log_tail()}"
        self.start(timeout)

    def _note(self, msg: str) -> None:
        with open(self.log_path, "ab") as log:
            log.write(f"==== [harness] {msg}\n".encode())

    # -- clients
    def docker(
        self,
        *args: Any,
        input: str | bytes | None = None,
        timeout: float = 60,
        check: bool = True,
        env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run the stock docker CLI against this daemon.

        `timeout -s KILL`: the CLI traps SIGTERM/SIGINT (it forwards them to the container
        when attached), so only SIGKILL reliably bounds a hung command.
        """
        cmd = ["timeout", "-s", "KILL", str(timeout), "docker", *map(str, args)]
        data = input.encode() if isinstance(input, str) else input
        kwargs: dict[str, Any] = {"input": data} if data is not None else {"stdin": subprocess.DEVNULL}
        p = subprocess.run(cmd, capture_output=True, env=env or self.env, **kwargs)
        # `timeout -s KILL` kills its whole process group, itself included: report that as
        # the shell would (128 + 9) rather than as Python's -9.
        rc = 137 if p.returncode == -signal.SIGKILL else p.returncode
        res = subprocess.CompletedProcess(
            cmd, rc, p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")
        )
        if check and res.returncode != 0:
            raise AssertionError(
                f"`docker {shlex.join(map(str, args))}` exited {res.returncode}"
                f"{' (killed: timeout?)' if res.returncode == 137 else ''}\n"
                f"stdout: {res.stdout!r}\nstderr: {res.stderr!r}"
            )
        return res

    @property
    def client(self) -> Any:
        import docker  # docker-py; imported lazily so unit tests need not have it

        if self._client is None:
            self._client = docker.DockerClient(base_url=self.host, version="auto", timeout=60)
        return self._client

    def _drop_client(self) -> None:
        if self._client is not None:
            with contextlib.suppress(Exception):
                self._client.close()
            self._client = None

    def api(
        self,
        method: str,
        path: str,
        body: bytes | str | dict[str, Any] | list[Any] | None = None,
        headers: dict[str, str] | None = None,
        timeout: float = 30,
    ) -> Response:
        """One raw HTTP request on the unix socket (a fresh connection each time)."""
        hdrs = dict(headers or {})
        if isinstance(body, (dict, list)):
            body = json.dumps(body)
            hdrs.setdefault("Content-Type", "application/json")
        if isinstance(body, str):
            body = body.encode()
        conn = UnixHTTPConnection(str(self.sock), timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=hdrs)
            r = conn.getresponse()
            data = r.read()
            return Response(r.status, r.headers, data)
        finally:
            conn.close()

    # -- inspection and cleanup
    def log_size(self) -> int:
        try:
            return self.log_path.stat().st_size
        except FileNotFoundError:
            return 0

    def log_text(self, since: int = 0) -> str:
        try:
            with open(self.log_path, "rb") as f:
                f.seek(since)
                return f.read().decode(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 80) -> str:
        text = self.log_text().splitlines()[-lines:]
        return f"---- {self.log_path} (last {len(text)} lines) ----\n" + "\n".join(text)

    def container_ids(self) -> list[str]:
        r = self.api("GET", "/containers/json?all=1", timeout=30)
        if r.status != 200:
            return []
        ids = [c["Id"] for c in r.json()]
        self.seen_ids.update(ids)
        return ids

    def remove_containers(self, keep: set[str] | None = None) -> list[str]:
        """Force-remove every container except `keep`; returns what it could not remove."""
        failed = []
        for cid in self.container_ids():
            if keep and cid in keep:
                continue
            with contextlib.suppress(OSError):
                r = self.api("DELETE", f"/containers/{cid}?force=1&v=1", timeout=60)
                if r.status in (204, 404):
                    continue
            failed.append(cid)
        return failed

    def close(self) -> list[str]:
        """Remove containers, stop the daemon, remove its default bridge.

        Containers are removed first on purpose: they survive a daemon stop by design (live
        restore), so stopping with containers running would leave monitors behind that are
        not leaks. The default bridge is removed by the harness because a daemon keeps its
        bridge across restarts, as dockerd keeps docker0. Returns problems found.
        """
        problems: list[str] = []
        if self.closed:
            return problems
        self.closed = True
        if self.running:
            try:
                left = self.remove_containers()
                if left:
                    problems.append(f"{self.base}: could not remove containers {left}")
            except OSError as e:
                problems.append(f"{self.base}: listing containers failed: {e!r}")
            rc = self.stop()
            if rc != 0:
                problems.append(f"{self.base}: pydockerd exited {rc} on SIGTERM")
        if Path(f"/sys/class/net/{self.bridge}").exists():
            subprocess.run(["ip", "link", "del", self.bridge], capture_output=True)
        return problems


# --------------------------------------------------------------------------- session state


class _State:
    baseline: leakcheck.Snapshot | None = None
    tmp_base: Path | None = None
    daemons: list[Daemon] = []
    leak_check_ran = False
    counter = 0


STATE = _State()


def tmp_base() -> Path:
    """The session's temp root (every daemon's roots live under it), made on first use."""
    if STATE.tmp_base is None:
        # Short path under /tmp: unix socket paths are limited to 107 bytes.
        STATE.tmp_base = Path(tempfile.mkdtemp(prefix=f"pydt{PID3}-", dir="/tmp"))
    return STATE.tmp_base


def new_daemon_obj(name: str, main: bool = False, **kw: Any) -> Daemon:
    """A Daemon (not started) with its own bridge and subnet, recorded for the leak check."""
    STATE.counter += 1
    bridge = MAIN_BRIDGE_PREFIX if main else f"{EXTRA_BRIDGE_PREFIX}{STATE.counter}"
    net = allocate_subnet()
    d = Daemon(tmp_base() / f"{name}{STATE.counter}", bridge, f"{net.network_address + 1}/24", **kw)
    STATE.daemons.append(d)
    return d


def import_busybox(d: Daemon, rootfs: Path, ref: str = "busybox:latest") -> str:
    out = d.docker("import", "-c", 'CMD ["sh"]', str(rootfs), ref, timeout=120).stdout.strip()
    return out.splitlines()[-1] if out else ""

