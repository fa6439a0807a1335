"""api/server.py: listeners (unix, loopback TCP, TLS), their safety rules, and serve()."""

from __future__ import annotations

import asyncio
import contextlib
import grp
import json
import os
import signal
import socket
import ssl
import stat
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from api.server import (
    DEFAULT_UNIX_SOCKET,
    ListenerError,
    TLSOptions,
    close_listeners,
    open_listeners,
    parse_host,
    serve,
)
from tests.unit.test_api_hijack import (
    DOCKER,
    Engine,
    FakeProc,
    ServerThread,
    docker_env,
    make_app,
    needs_docker,
    split_response,
)

# --------------------------------------------------------------------------- certificates


@dataclass
class Certs:
    dir: Path
    ca: str
    server_cert: str
    server_key: str
    client_cert: str
    client_key: str


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=30)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    d = tmp_path_factory.mktemp("tls")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    _openssl(
        "req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=pydockerd-test-ca",
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        cwd=d,
    )  # fmt: skip
    for name, ext in (
        ("server", "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n"),
        ("client", "extendedKeyUsage=clientAuth\n"),
    ):
        (d / f"{name}.ext").write_text(ext)
        _openssl("req", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}", cwd=d)
        _openssl(
            "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", f"{name}.pem", "-days", "2", "-extfile", f"{name}.ext",
            cwd=d,
        )  # fmt: skip
    return Certs(d, str(d / "ca.pem"), str(d / "server.pem"), str(d / "server.key"),
                 str(d / "client.pem"), str(d / "client.key"))  # fmt: skip


# --------------------------------------------------------------------------- TLS + unix, one process


@dataclass
class TLSToy:
    engine: Engine
    sock: str
    tcp: str
    certs: Certs
    config_dir: Path

    def docker(self, *args: str, tls_flags: list[str] | None = None, shell_prefix: str = "",
               input: bytes | None = None) -> subprocess.CompletedProcess[bytes]:  # fmt: skip
        flags = tls_flags if tls_flags is not None else [
            "--tlsverify", "--tlscacert", self.certs.ca,
            "--tlscert", self.certs.client_cert, "--tlskey", self.certs.client_key,
        ]  # fmt: skip
        env = docker_env("", self.config_dir)
        del env["DOCKER_HOST"]
        argv = ["timeout", "-s", "KILL", "20", DOCKER, "-H", self.tcp, *flags, *args]
        if shell_prefix:
            cmd = shell_prefix + " " + " ".join(f"'{a}'" for a in argv)
            return subprocess.run(["bash", "-c", cmd], capture_output=True, env=env, timeout=30)
        return subprocess.run(argv, input=input, capture_output=True, env=env, timeout=30)


@pytest.fixture(scope="module")
def tls_toy(tmp_path_factory: pytest.TempPathFactory, certs: Certs) -> Iterator[TLSToy]:
    tmp = tmp_path_factory.mktemp("tlstoy")
    sock = str(tmp / "d.sock")
    engine = Engine()
    app, routes = make_app(engine)
    tls = TLSOptions(verify=True, cacert=certs.ca, cert=certs.server_cert, key=certs.server_key)
    listeners = open_listeners([f"unix://{sock}", "tcp://127.0.0.1:0"], tls, socket_group="")
    assert listeners[0].ssl_context is None and listeners[1].ssl_context is not None
    server = ServerThread(app, routes, listeners).start()
    config_dir = tmp / "docker-config"
    config_dir.mkdir()
    try:
        yield TLSToy(engine, sock, listeners[1].url, certs, config_dir)
    finally:
        server.stop()
    assert not os.path.exists(sock)


@needs_docker
def test_tls_and_unix_served_together(tls_toy: TLSToy) -> None:
    r = tls_toy.docker("version")
    assert r.returncode == 0, r.stderr
    assert "API version:      1.50 (minimum version 1.24)" in r.stdout.decode()
    # Same process, same app, plain unix socket.
    env = docker_env(f"unix://{tls_toy.sock}", tls_toy.config_dir)
    r = subprocess.run(["timeout", "-s", "KILL", "20", DOCKER, "version"], capture_output=True, env=env, timeout=30)
    assert r.returncode == 0, r.stderr
    assert "API version:      1.50" in r.stdout.decode()


@needs_docker
def test_tls_hijack_flows(tls_toy: TLSToy) -> None:
    r = tls_toy.docker("run", "-i", "x", "fancy", "4", input=b"over tls\n")
    assert (r.returncode, r.stdout, r.stderr) == (4, b"over tls\n", b"err\n")
    # TLS cannot half-close: the close itself must still not turn into a reset.
    r = tls_toy.docker("run", "-i", "x", "head", "3", shell_prefix="yes |")
    assert (r.returncode, r.stdout, r.stderr) == (0, b"y\ny\ny\n", b"")


@needs_docker
def test_tls_client_without_certificate_is_refused(tls_toy: TLSToy) -> None:
    r = tls_toy.docker("version", tls_flags=["--tlsverify", "--tlscacert", tls_toy.certs.ca])
    assert r.returncode != 0
    assert b"API version:      1.50" not in r.stdout
    # Go reports the server's rejection as "bad certificate"/"certificate required" or, with
    # TLS 1.3 where the client finishes first, as a reset of the connection.
    assert r.stderr.startswith(b"error during connect"), r.stderr


def test_tls_listener_refuses_plain_http_and_certless_python_client(tls_toy: TLSToy) -> None:
    host, port = tls_toy.tcp.removeprefix("tcp://").rsplit(":", 1)
    ctx = ssl.create_default_context(cafile=tls_toy.certs.ca)
    with pytest.raises((ssl.SSLError, ConnectionError)):
        with socket.create_connection((host, int(port)), timeout=5) as raw:
            with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as s:
                s.sendall(b"GET /_ping HTTP/1.1\r\nHost: x\r\n\r\n")
                # TLS 1.3: the server's rejection of the (missing) client cert arrives here.
                if not s.recv(4096):
                    raise ConnectionError("closed")
    with socket.create_connection((host, int(port)), timeout=5) as s:
        s.sendall(b"GET /_ping HTTP/1.1\r\nHost: x\r\n\r\n")
        with contextlib.suppress(ConnectionError):
            assert not s.recv(4096).startswith(b"HTTP/1.1 200")
    # And with a client certificate it works from Python too.
    ctx.load_cert_chain(tls_toy.certs.client_cert, tls_toy.certs.client_key)
    with socket.create_connection((host, int(port)), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as s:
            s.sendall(b"GET /_ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            data = b""
            while chunk := s.recv(4096):
                data += chunk
    status, headers, body = split_response(data)
    assert (status, body, headers["api-version"]) == (200, b"OK", "1.50")


# --------------------------------------------------------------------------- listener rules


def test_non_loopback_tcp_requires_tlsverify(certs: Certs) -> None:
    with pytest.raises(ListenerError) as exc:
        open_listeners(["tcp://0.0.0.0:2375"], None)
    message = str(exc.value)
    assert "refusing to listen on tcp://0.0.0.0:2375 without --tlsverify" in message
    assert "\n" not in message
    no_verify = TLSOptions(verify=False, cacert=None, cert=certs.server_cert, key=certs.server_key)
    with pytest.raises(ListenerError, match="without --tlsverify"):
        open_listeners(["tcp://0.0.0.0:0"], no_verify)
    verify = TLSOptions(verify=True, cacert=certs.ca, cert=certs.server_cert, key=certs.server_key)
    bound = open_listeners(["tcp://0.0.0.0:0"], verify)
    try:
        assert bound[0].ssl_context is not None
        assert bound[0].ssl_context.verify_mode == ssl.CERT_REQUIRED
    finally:
        close_listeners(bound)


def test_loopback_plain_tcp_warns(caplog: pytest.LogCaptureFixture) -> None:
    for host in ("tcp://127.0.0.1:0", "tcp://localhost:0", "tcp://[::1]:0"):
        caplog.clear()
        try:
            bound = open_listeners([host], None)
        except ListenerError as exc:
            if "::1" in host and "assign" in str(exc):
                continue  # no IPv6 loopback on this machine
            raise
        try:
            assert bound[0].ssl_context is None
            assert not bound[0].url.endswith(":0")
            assert "every local user can drive the daemon" in caplog.text
        finally:
            close_listeners(bound)


def test_tls_configuration_errors(certs: Certs, tmp_path: Path) -> None:
    with pytest.raises(ListenerError, match="--tlscacert"):
        open_listeners(["tcp://127.0.0.1:0"], TLSOptions(True, None, certs.server_cert, certs.server_key))
    with pytest.raises(ListenerError, match="--tlscert"):
        open_listeners(["tcp://127.0.0.1:0"], TLSOptions(True, certs.ca, None, None))
    with pytest.raises(ListenerError, match="invalid TLS configuration"):
        open_listeners(["tcp://127.0.0.1:0"], TLSOptions(True, certs.ca, str(tmp_path / "nope.pem"), certs.server_key))


def test_parse_host_defaults() -> None:
    assert parse_host("tcp://127.0.0.1").url == "tcp://127.0.0.1:2375"
    assert parse_host("tcp://127.0.0.1", tls=True).url == "tcp://127.0.0.1:2376"
    assert parse_host("tcp://").url == "tcp://localhost:2375"
    assert parse_host("127.0.0.1:1234").url == "tcp://127.0.0.1:1234"
    assert parse_host("tcp://[::1]:99").url == "tcp://[::1]:99"
    assert parse_host("unix://").path == DEFAULT_UNIX_SOCKET
    assert parse_host("unix:///tmp/x.sock").path == "/tmp/x.sock"
    for bad in ("unix://relative.sock", "tcp://127.0.0.1:notaport", "ssh://host"):
        with pytest.raises(ListenerError):
            parse_host(bad)
    assert parse_host("fd://").fd == "" and parse_host("fd://3").fd == "3"


def test_unix_socket_mode_live_stale_and_cleanup(tmp_path: Path) -> None:
    path = str(tmp_path / "run" / "d.sock")  # parent directory is created
    bound = open_listeners([f"unix://{path}"], None, socket_group="")
    try:
        st = os.lstat(path)
        assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o660
        # A live daemon on the path: refused, and its socket is left alone.
        with pytest.raises(ListenerError, match="socket in use") as exc:
            open_listeners([f"unix://{path}"], None, socket_group="")
        assert "\n" not in str(exc.value)
        assert os.lstat(path).st_ino == st.st_ino
    finally:
        close_listeners(bound)
    assert not os.path.exists(path)

    # A stale socket (its daemon died without unlinking it) is replaced.
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(path)
    stale.close()
    assert stat.S_ISSOCK(os.lstat(path).st_mode)
    bound = open_listeners([f"unix://{path}"], None, socket_group="")
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as c:
            c.connect(path)  # listening already, before serve()
        assert stat.S_IMODE(os.lstat(path).st_mode) == 0o660
        # Someone else's socket at our path by now: close_listeners must not remove it.
        os.unlink(path)
        other = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        other.bind(path)
    finally:
        close_listeners(bound)
    assert os.path.exists(path)
    other.close()
    os.unlink(path)

    # Not a socket: refused, untouched.
    Path(path).write_text("precious")
    with pytest.raises(ListenerError, match="not a socket"):
        open_listeners([f"unix://{path}"], None)
    assert Path(path).read_text() == "precious"


def test_socket_group(tmp_path: Path) -> None:
    path = str(tmp_path / "g.sock")
    group = next((g for g in grp.getgrall() if g.gr_gid != os.getgid()), None)
    if group is not None and os.geteuid() == 0:
        bound = open_listeners([f"unix://{path}"], None, socket_group=group.gr_name)
        try:
            assert os.lstat(path).st_gid == group.gr_gid
        finally:
            close_listeners(bound)
    with pytest.raises(ListenerError, match="does not exist"):
        open_listeners([f"unix://{path}"], None, socket_group="no-such-group-pydockerd")
    # The default group is optional.
    if "docker" not in {g.gr_name for g in grp.getgrall()}:
        close_listeners(open_listeners([f"unix://{path}"], None))


def test_open_listeners_is_all_or_nothing(tmp_path: Path) -> None:
    path = str(tmp_path / "a.sock")
    with pytest.raises(ListenerError):
        open_listeners([f"unix://{path}", "tcp://0.0.0.0:0"], None, socket_group="")
    assert not os.path.exists(path)


# --------------------------------------------------------------------------- serve() lifecycle


def test_serve_shutdown_ends_hijacks_and_long_polls(tmp_path: Path) -> None:
    path = str(tmp_path / "s.sock")
    engine = Engine()
    app, routes = make_app(engine)
    engine.containers["never"] = FakeProc(cmd=["cat"])  # never exits: /wait long-polls
    before = signal.getsignal(signal.SIGTERM)
    seen: dict[str, object] = {}

    async def main() -> float:
        listeners = open_listeners([f"unix://{path}"], None, socket_group="")
        stop = asyncio.Event()
        started = asyncio.Event()
        task = asyncio.create_task(serve(app, listeners, routes, on_started=started.set, shutdown_event=stop))
        await asyncio.wait_for(started.wait(), 10)
        seen["signal"] = signal.getsignal(signal.SIGTERM)

        r1, w1 = await asyncio.open_unix_connection(path)
        w1.write(b"POST /forever HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n")
        assert (await r1.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 101")
        r2, w2 = await asyncio.open_unix_connection(path)
        w2.write(b"POST /containers/never/wait HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
        head = await r2.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200")  # headers before the container exits
        assert b"application/json" in head and b"transfer-encoding: chunked" in head

        t0 = time.monotonic()
        stop.set()
        await asyncio.wait_for(task, 10)
        elapsed = time.monotonic() - t0
        assert await asyncio.wait_for(r1.read(), 5) == b""  # hijacked client sees the end
        assert not routes.tasks
        for w in (w1, w2):
            w.close()
        return elapsed

    elapsed = asyncio.run(main())
    assert elapsed < 5, elapsed
    assert seen["signal"] == before  # serve() leaves signal handling to the daemon
    assert not os.path.exists(path)


def test_serve_cancelled_still_cleans_up(tmp_path: Path) -> None:
    path = str(tmp_path / "c.sock")
    app, routes = make_app(Engine())

    async def main() -> None:
        listeners = open_listeners([f"unix://{path}"], None, socket_group="")
        started = asyncio.Event()
        task = asyncio.create_task(serve(app, listeners, routes, on_started=started.set))
        await asyncio.wait_for(started.wait(), 10)
        r, w = await asyncio.open_unix_connection(path)
        w.write(b"GET /v1.41/_ping HTTP/1.1\r\nHost: x\r\n\r\n")
        assert (await r.readuntil(b"OK")).startswith(b"HTTP/1.1 200")
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, 10)
        w.close()

    asyncio.run(main())
    assert not os.path.exists(path)


def test_version_error_json_on_tls_listener_too(tls_toy: TLSToy) -> None:
    # The version middleware sits in front of every listener's app.
    ctx = ssl.create_default_context(cafile=tls_toy.certs.ca)
    ctx.load_cert_chain(tls_toy.certs.client_cert, tls_toy.certs.client_key)
    host, port = tls_toy.tcp.removeprefix("tcp://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as s:
            s.sendall(b"GET /v1.99/_ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            data = b""
            while chunk := s.recv(4096):
                data += chunk
    status, _, body = split_response(data)
    assert status == 400
    assert json.loads(body)["message"] == "client version 1.99 is too new. Maximum supported API version is 1.50"
