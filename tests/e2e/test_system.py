"""The daemon as a process: version, info, /_ping, API prefixes, listeners, TLS, refusals."""

from __future__ import annotations

import grp
import json
import os
import platform
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.e2e.helpers import assert_clear_refusal, run_refusal
from tests.helpers import REPO, Daemon, free_tcp_port, import_busybox

pytestmark = pytest.mark.e2e


# --------------------------------------------------------------------------- version / info


def test_version_shows_api_150_without_downgrade(d: Daemon) -> None:
    r = d.docker("version")
    assert "downgraded" not in r.stdout, r.stdout
    server = r.stdout.split("Server:", 1)[1]
    assert "API version:" in server
    line = next(ln for ln in server.splitlines() if "API version:" in ln)
    assert line.split(":", 1)[1].split()[0] == "1.50", line
    assert d.docker("version", "-f", "{{.Client.APIVersion}}").stdout.strip() == "1.50"
    assert d.docker("version", "-f", "{{.Server.APIVersion}}").stdout.strip() == "1.50"
    assert d.docker("version", "-f", "{{.Server.MinAPIVersion}}").stdout.strip() == "1.24"
    assert d.docker("version", "-f", "{{.Server.Os}}/{{.Server.Arch}}").stdout.strip() == "linux/amd64" or (
        platform.machine() != "x86_64"
    )


def test_version_json_fields(d: Daemon) -> None:
    v = d.api("GET", "/version").json()
    for key in ("Version", "ApiVersion", "MinAPIVersion", "Os", "Arch", "KernelVersion", "GoVersion",
                "GitCommit", "BuildTime"):
        assert key in v, f"/version lacks {key}: {v}"
    assert v["ApiVersion"] == "1.50"
    assert v["Os"] == "linux"
    assert v["KernelVersion"] == os.uname().release


def _meminfo_total() -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no MemTotal")


def test_info_fields_and_counts(d: Daemon, uname: Callable[[str], str]) -> None:
    base = d.api("GET", "/info").json()
    running, stopped = uname("run"), uname("stopped")
    d.docker("run", "-d", "--name", running, "busybox", "sleep", "300")
    d.docker("run", "--name", stopped, "busybox", "true")
    d.docker("create", "--name", uname("created"), "busybox", "true")
    info = json.loads(d.docker("info", "-f", "{{json .}}").stdout)
    assert info["Containers"] == base["Containers"] + 3
    assert info["ContainersRunning"] == base["ContainersRunning"] + 1
    assert info["ContainersStopped"] == base["ContainersStopped"] + 2  # created counts as stopped
    assert info["ContainersPaused"] == base["ContainersPaused"]
    assert info["Containers"] == info["ContainersRunning"] + info["ContainersStopped"] + info["ContainersPaused"]
    assert info["Images"] >= 1
    assert info["Driver"] in ("overlay2", "overlay", "vfs"), info["Driver"]
    assert info["KernelVersion"] == os.uname().release
    assert info["OSType"] == "linux"
    assert info["OperatingSystem"], info
    assert info["Architecture"] == platform.machine()
    assert info["NCPU"] == os.cpu_count()
    assert abs(info["MemTotal"] - _meminfo_total()) < 0.02 * _meminfo_total()
    assert info["DockerRootDir"] == str(d.data_root)
    assert info["Name"] == socket.gethostname()
    assert info["ID"] and info["ServerVersion"]
    assert info["LoggingDriver"] == "json-file"
    assert str(info["CgroupVersion"]) in ("1", "2")
    assert info["CgroupDriver"] in ("cgroupfs", "systemd")
    # The CLI's human form renders all of it without "errors pretty printing info".
    r = d.docker("info")
    assert "error" not in r.stderr.lower(), r.stderr
    for needle in ("Containers:", "Running:", "Paused:", "Stopped:", "Images:", "Storage Driver:",
                   "Kernel Version:", "Operating System:", "CPUs:", "Total Memory:", f"Root Dir: {d.data_root}"):
        assert needle in r.stdout, f"{needle!r} missing from docker info:\n{r.stdout}"


def test_docker_py_client(d: Daemon) -> None:
    c = d.client
    assert c.ping() is True
    assert c.version()["ApiVersion"] == "1.50"
    assert c.info()["OSType"] == "linux"
    assert any("busybox:latest" in i.tags for i in c.images.list())


# --------------------------------------------------------------------------- /_ping, prefixes


def _check_ping_headers(headers: dict[str, str]) -> None:
    h = {k.lower(): v for k, v in headers.items()}
    assert h.get("api-version") == "1.50", headers
    assert h.get("ostype") == "linux", headers
    assert h.get("docker-experimental") in ("true", "false"), headers
    assert h.get("builder-version") == "1", headers
    assert "no-cache" in h.get("cache-control", ""), headers
    assert h.get("pragma") == "no-cache", headers


def test_ping_get_and_head(d: Daemon) -> None:
    r = d.api("GET", "/_ping")
    assert (r.status, r.body) == (200, b"OK")
    _check_ping_headers(dict(r.headers))
    h = d.api("HEAD", "/_ping")
    assert h.status == 200 and h.body == b""
    _check_ping_headers(dict(h.headers))


def test_ping_with_curl(d: Daemon) -> None:
    out = subprocess.run(
        ["curl", "-sS", "-i", "--unix-socket", str(d.sock), "http://localhost/_ping"],
        capture_output=True, text=True, timeout=20,
    )
    assert out.returncode == 0, out.stderr
    head, _, body = out.stdout.replace("\r\n", "\n").partition("\n\n")
    assert head.startswith("HTTP/1.1 200"), head
    assert body == "OK"
    headers = dict(line.split(": ", 1) for line in head.splitlines()[1:] if ": " in line)
    _check_ping_headers(headers)
    out = subprocess.run(
        ["curl", "-sS", "-I", "--unix-socket", str(d.sock), "http://localhost/_ping"],
        capture_output=True, text=True, timeout=20,
    )
    assert out.returncode == 0 and out.stdout.startswith("HTTP/1.1 200"), out


@pytest.mark.parametrize("prefix", ["", "/v1.24", "/v1.25", "/v1.40", "/v1.41", "/v1.44", "/v1.47", "/v1.50"])
def test_api_version_prefixes(d: Daemon, prefix: str) -> None:
    for path in ("/version", "/info", "/containers/json?all=1", "/images/json", "/_ping"):
        r = d.api("GET", prefix + path)
        assert r.status == 200, f"{prefix + path}: {r.status} {r.text[:300]}"
        assert r.headers.get("Api-Version") == "1.50", dict(r.headers)
    assert d.api("GET", prefix + "/version").json()["ApiVersion"] == "1.50"


def test_api_version_out_of_range(d: Daemon) -> None:
    r = d.api("GET", "/v1.51/version")
    assert r.status == 400
    assert r.message() == "client version 1.51 is too new. Maximum supported API version is 1.50"
    r = d.api("GET", "/v1.23/version")
    assert r.status == 400
    assert "client version 1.23 is too old. Minimum supported API version is 1.24" in r.message()


def test_docker_api_version_env(d: Daemon) -> None:
    env = d.env | {"DOCKER_API_VERSION": "1.41"}
    r = d.docker("version", "-f", "{{.Client.APIVersion}}", env=env)
    assert r.stdout.strip() == "1.41"
    assert d.docker("ps", "-a", env=env).returncode == 0


def test_routes_of_every_group_through_the_cli(d: Daemon) -> None:
    """Routes are dispatched by their first path segment (api/routing.py): one of each
    router, the late ones included, still reaches its handler with its parameters, and a
    known path with a wrong method is a 405 as before."""
    assert d.docker("network", "inspect", "-f", "{{.Driver}}", "bridge").stdout.strip() == "bridge"
    miss = d.docker("volume", "inspect", "no-such-volume-rt", check=False)
    assert miss.returncode != 0 and "no-such-volume-rt" in miss.stderr
    miss = d.docker("network", "inspect", "no-such-net-rt", check=False)
    assert miss.returncode != 0 and "no-such-net-rt" in miss.stderr
    assert d.docker("system", "df", "--format", "{{.Type}}").stdout.split()[0] == "Images"
    assert d.api("GET", "/v1.50/swarm").status == 503  # not part of a swarm, as dockerd
    # /_ping is the protocol's (api/ping.py), not a route: another method is a 404, as dockerd answers.
    r = d.api("POST", "/v1.50/_ping")
    assert r.status == 404 and r.message() == "page not found"
    r = d.api("POST", "/v1.50/containers/json")  # a plain Starlette route now (api/routing.py)
    assert r.status == 405 and r.message() == "Method Not Allowed"
    r = d.api("HEAD", "/v1.50/containers/json")  # Starlette would add HEAD to a GET route; FastAPI did not
    assert r.status == 405
    r = d.api("DELETE", "/v1.50/version")
    assert r.status == 405 and r.message() == "Method Not Allowed"
    r = d.api("GET", "/v1.50/containers/no-such-ctr-rt/json")
    assert r.status == 404 and "no-such-ctr-rt" in r.message()


def test_unknown_route_is_404_json(d: Daemon) -> None:
    r = d.api("GET", "/v1.50/no/such/route")
    assert r.status == 404
    assert r.message(), r.text


# --------------------------------------------------------------------------- listeners


def test_unix_socket_mode_and_group(d: Daemon) -> None:
    st = os.stat(d.sock)
    assert stat.S_ISSOCK(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o660, oct(st.st_mode)
    try:
        want_gid = grp.getgrnam("docker").gr_gid
    except KeyError:
        want_gid = 0
    assert st.st_gid == want_gid


def test_loopback_tcp_listener_with_warning(d: Daemon) -> None:
    env = d.env | {"DOCKER_HOST": d.tcp_host}
    r = d.docker("version", "-f", "{{.Server.APIVersion}}", env=env)
    assert r.stdout.strip() == "1.50"
    assert d.docker("ps", "-a", "-q", env=env).returncode == 0
    log = d.log_text()
    warned = [ln for ln in log.splitlines() if str(d.tcp_port) in ln and "warn" in ln.lower()]
    assert warned, "no startup warning about the plain TCP listener in the daemon log"


def test_plain_tcp_on_non_loopback_refused(new_daemon: Callable[..., Daemon]) -> None:
    dm = new_daemon(start=False, log_level="info")
    rc, out = run_refusal(dm, "-H", f"tcp://0.0.0.0:{free_tcp_port()}")
    assert_clear_refusal(rc, out, ("tls",))
    assert not dm.sock.exists(), "refused daemon left its unix socket behind"


def test_tls_without_client_verification_refused_on_non_loopback(
    new_daemon: Callable[..., Daemon], certs: dict[str, Path]
) -> None:
    dm = new_daemon(start=False, log_level="info")
    rc, out = run_refusal(
        dm, "-H", f"tcp://0.0.0.0:{free_tcp_port()}", "--tlscacert", str(certs["ca"]),
        "--tlscert", str(certs["server-cert"]), "--tlskey", str(certs["server-key"]),
    )
    assert_clear_refusal(rc, out, ("tlsverify", "verif"))


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def _make_ca(dirp: Path, name: str) -> None:
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", f"{name}-key.pem", "-out", f"{name}.pem", "-days", "2", "-subj", f"/CN={name}",
             cwd=dirp)


def _make_cert(dirp: Path, ca: str, name: str, ext: str) -> None:
    (dirp / f"{name}.ext").write_text(ext)
    _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", f"{name}-key.pem", "-out", f"{name}.csr", "-subj", f"/CN={name}", cwd=dirp)
    _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}-key.pem",
             "-CAcreateserial", "-out", f"{name}-cert.pem", "-days", "2", "-extfile", f"{name}.ext", cwd=dirp)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A CA with a server cert for 127.0.0.1 and a client cert, plus a foreign CA's client cert."""
    dirp = tmp_path_factory.mktemp("tls")
    _make_ca(dirp, "ca")
    _make_ca(dirp, "evil-ca")
    _make_cert(dirp, "ca", "server", "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n")
    _make_cert(dirp, "ca", "client", "extendedKeyUsage=clientAuth\n")
    _make_cert(dirp, "evil-ca", "evil", "extendedKeyUsage=clientAuth\n")
    # DOCKER_CERT_PATH layout for the CLI.
    certdir = dirp / "docker-certs"
    certdir.mkdir()
    shutil.copy(dirp / "ca.pem", certdir / "ca.pem")
    shutil.copy(dirp / "client-cert.pem", certdir / "cert.pem")
    shutil.copy(dirp / "client-key.pem", certdir / "key.pem")
    return {
        "ca": dirp / "ca.pem", "server-cert": dirp / "server-cert.pem", "server-key": dirp / "server-key.pem",
        "client-cert": dirp / "client-cert.pem", "client-key": dirp / "client-key.pem",
        "evil-cert": dirp / "evil-cert.pem", "evil-key": dirp / "evil-key.pem", "certdir": certdir,
    }


def test_tls_with_client_certificates(new_daemon: Callable[..., Daemon], certs: dict[str, Path]) -> None:
    port = free_tcp_port()
    dm = new_daemon(extra_args=[
        "-H", f"tcp://127.0.0.1:{port}", "--tlsverify", "--tlscacert", str(certs["ca"]),
        "--tlscert", str(certs["server-cert"]), "--tlskey", str(certs["server-key"]),
    ])
    url = f"tcp://127.0.0.1:{port}"
    env = dm.env
    ok = dm.docker("--tlsverify", "--tlscacert", certs["ca"], "--tlscert", certs["client-cert"],
                   "--tlskey", certs["client-key"], "-H", url, "version", "-f", "{{.Server.APIVersion}}", env=env)
    assert ok.stdout.strip() == "1.50"
    env2 = env | {"DOCKER_HOST": url, "DOCKER_TLS_VERIFY": "1", "DOCKER_CERT_PATH": str(certs["certdir"])}
    assert dm.docker("ps", "-a", env=env2).returncode == 0
    # No client certificate: the handshake must fail.
    r = dm.docker("--tlsverify", "--tlscacert", certs["ca"], "-H", url, "info", "-f", "{{.ID}}",
                  env=env, check=False, timeout=30)
    assert r.returncode != 0 and not r.stdout.strip(), r
    # A client certificate from another CA: refused as well.
    r = dm.docker("--tlsverify", "--tlscacert", certs["ca"], "--tlscert", certs["evil-cert"],
                  "--tlskey", certs["evil-key"], "-H", url, "info", "-f", "{{.ID}}", env=env, check=False, timeout=30)
    assert r.returncode != 0 and not r.stdout.strip(), r
    # Plain HTTP on the TLS port gets nothing useful.
    r = dm.docker("-H", url, "info", "-f", "{{.ID}}", env=env, check=False, timeout=30)
    assert r.returncode != 0 and not r.stdout.strip(), r
    # The daemon survived the failed handshakes.
    assert dm.docker("--tlsverify", "--tlscacert", certs["ca"], "--tlscert", certs["client-cert"],
                     "--tlskey", certs["client-key"], "-H", url, "ps", env=env).returncode == 0


# --------------------------------------------------------------------------- refusals, signals


def test_refuses_when_not_root(new_daemon: Callable[..., Daemon]) -> None:
    dm = new_daemon(start=False, log_level="info")
    # uid nobody, but allowed to read root's pyenv (/root is 0700), so the refusal seen is
    # the daemon's own and not an exec failure.
    prefix = ("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
              "--inh-caps=+dac_read_search", "--ambient-caps=+dac_read_search")
    probe = subprocess.run([*prefix, sys.executable, "-c", "import os; print(os.geteuid())"],
                           capture_output=True, text=True, cwd=REPO)
    assert probe.stdout.strip() == "65534", probe
    rc, out = run_refusal(dm, prefix=prefix)
    assert_clear_refusal(rc, out, ("root",))
    assert not dm.sock.exists()


def test_refuses_live_socket(daemon: Daemon, new_daemon: Callable[..., Daemon]) -> None:
    ino = os.stat(daemon.sock).st_ino
    dm = new_daemon(start=False, log_level="info")
    dm.sock = daemon.sock  # same socket as the running session daemon
    rc, out = run_refusal(dm)
    assert_clear_refusal(rc, out, ("in use", "already", "running", "live", "another"))
    assert os.stat(daemon.sock).st_ino == ino, "the refused daemon replaced the live socket"
    assert daemon.api("GET", "/_ping").body == b"OK"


def test_replaces_stale_socket(new_daemon: Callable[..., Daemon]) -> None:
    dm = new_daemon(start=False)
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(dm.sock))  # bound but nobody listens: what a crashed daemon leaves
    s.close()
    dm.start()
    assert dm.docker("ps").returncode == 0


def test_refuses_locked_data_root(new_daemon: Callable[..., Daemon]) -> None:
    first = new_daemon()
    second = new_daemon(start=False, log_level="info")
    second.data_root = first.data_root
    rc, out = run_refusal(second)
    assert_clear_refusal(rc, out, ("lock", "in use", "another", "already"))
    assert not second.sock.exists()
    assert first.docker("ps", "-a").returncode == 0


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_exits_cleanly(new_daemon: Callable[..., Daemon], sig: int) -> None:
    dm = new_daemon()
    assert dm.proc is not None
    assert dm.pidfile.read_text().strip() == str(dm.proc.pid)
    t0 = time.monotonic()
    rc = dm.stop(sig=sig, timeout=20)
    assert rc == 0, f"exit code {rc} on {sig!r}\n{dm.log_tail()}"
    assert time.monotonic() - t0 < 15
    assert not dm.sock.exists(), "socket left behind after a clean shutdown"
    assert not dm.pidfile.exists(), "pidfile left behind after a clean shutdown"
    # And it comes back on the same roots.
    dm.start()
    assert dm.docker("info", "-f", "{{.DockerRootDir}}").stdout.strip() == str(dm.data_root)


def test_shutdown_ends_long_lived_responses(new_daemon: Callable[..., Daemon], busybox_rootfs: Path) -> None:
    """wait, logs -f, events and stats last as long as the daemon: a SIGTERM ends them at once
    (the clients see their stream end), without waiting out the graceful timeout."""
    dm = new_daemon()
    import_busybox(dm, busybox_rootfs)
    cid = dm.docker("run", "-d", "busybox", "sh", "-c", "while :; do echo tick; sleep 0.2; done").stdout.strip()
    clients = [subprocess.Popen(["docker", *args], env=dm.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
               for args in (["wait", cid], ["logs", "-f", cid], ["events"], ["stats", cid])]
    try:
        time.sleep(1.5)
        since = dm.log_size()
        t0 = time.monotonic()
        assert dm.stop(timeout=20) == 0
        took = time.monotonic() - t0
        for c in clients[:3]:  # `docker stats` itself keeps polling a daemon that went away
            c.wait(timeout=10)
        log_tail = dm.log_text(since)
        assert "graceful shutdown exceeded" not in log_tail and "Traceback" not in log_tail, log_tail
        assert took < 1.8, f"shutdown took {took:.1f}s with long-lived responses open"
    finally:
        for c in clients:
            if c.poll() is None:
                c.kill()
                c.wait()
        dm.start()
        dm.docker("rm", "-f", cid)


def test_console_script_and_help() -> None:
    exe = shutil.which("pydockerd") or str(Path(sys.executable).with_name("pydockerd"))
    assert os.path.exists(exe), "`pip install .` did not give a `pydockerd` command"
    r = subprocess.run([exe, "--help"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    for flag in ("--host", "--data-root", "--exec-root", "--pidfile", "--config-file", "--log-level",
                 "--bridge", "--bip", "--storage-driver", "--tlsverify", "--tlscacert", "--tlscert", "--tlskey"):
        assert flag in r.stdout, f"{flag} missing from pydockerd --help"

