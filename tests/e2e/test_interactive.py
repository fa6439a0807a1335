"""Interactive containers through the stock docker CLI and docker-py: run -i/-t/-it, attach,
detach keys, resize, logs replay, and faults (bad sizes, disconnects, back-pressure, leaks)."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.e2e.helpers import inspect, status, wait_for
from tests.e2e.interactive_util import Hijacked, PtyCli, demux, joined, open_fds
from tests.helpers import Daemon, import_busybox

Name = Callable[[str], str]


def _gone(d: Daemon, name: str) -> bool:
    return d.api("GET", f"/containers/{name}/json").status == 404


def _run_bg(d: Daemon, *args: str) -> str:
    return d.docker("run", "-d", *args).stdout.strip()


# -- docker run -it -----------------------------------------------------------------------


def test_run_it_pty_resize_ctrl_c_exit_code(d: Daemon, uname: Name) -> None:
    n = uname("it")
    with PtyCli(d, "run", "-it", "--rm", "--name", n, "busybox", "sh") as cli:
        cli.expect(r"/ # ")
        cli.send("tty; stty size\n")
        cli.expect(r"/dev/pts/0\r\n30 100\r\n")
        # A window resize reaches the container through /containers/{id}/resize.
        cli.resize(41, 123)
        cli.wait_for_shell_size(41, 123, "the new window size inside the container")
        # Line editing happens in the container's line discipline: DEL erases the X.
        cli.send("echo abX\x7fc\n")
        cli.expect(r"\r\nabc\r\n")
        # Ctrl-C reaches the foreground process of the container's terminal, not the CLI.
        cli.send("sleep 30; echo not-interrupted\n")
        cli.expect(r"echo not-interrupted\r\n")  # the echo of the typed line
        time.sleep(0.5)
        t0 = time.monotonic()
        cli.send("\x03")
        seen = cli.expect(rb"(?s)\^C.*?/ # ", timeout=10).group()
        assert time.monotonic() - t0 < 5 and b"not-interrupted" not in seen
        cli.send("exit 5\n")
        assert cli.wait() == 5
    wait_for(lambda: _gone(d, n), timeout=10, what="--rm removing the container")


def test_run_i_cat_is_byte_exact_50mb(d: Daemon, tmp_path: Path) -> None:
    src = tmp_path / "in.bin"
    src.write_bytes(os.urandom(50 * 1024 * 1024))
    with open(src, "rb") as f:
        p = subprocess.run(["timeout", "-s", "KILL", "120", "docker", "run", "-i", "--rm", "busybox", "cat"],
                           stdin=f, capture_output=True, env=d.env)
    assert p.returncode == 0, p.stderr
    assert len(p.stdout) == src.stat().st_size
    assert hashlib.sha256(p.stdout).digest() == hashlib.sha256(src.read_bytes()).digest()


def test_run_i_keeps_stdout_stderr_apart_and_ends_at_stdin_eof(d: Daemon) -> None:
    r = d.docker("run", "-i", "--rm", "busybox", "sh", "-c", "cat; echo to-err >&2; exit 4",
                 input="line1\nline2\n", check=False)
    assert (r.returncode, r.stdout, r.stderr) == (4, "line1\nline2\n", "to-err\n")


def test_run_attach_stdout_only(d: Daemon) -> None:
    r = d.docker("run", "-a", "stdout", "--rm", "busybox", "sh", "-c", "echo out; echo err >&2")
    assert (r.stdout, r.stderr) == ("out\n", "")
    r = d.docker("run", "-a", "stderr", "--rm", "busybox", "sh", "-c", "echo out; echo err >&2")
    assert (r.stdout, r.stderr) == ("", "err\n")


def test_run_tty_without_stdin(d: Daemon) -> None:
    # -t alone: the CLI's stdout need not be a terminal; output is raw (no frames), with \r\n.
    r = d.docker("run", "-t", "--rm", "busybox", "sh", "-c", "tty; echo x >&2")
    assert r.stdout == "/dev/pts/0\r\nx\r\n"


# -- attach, detach keys -------------------------------------------------------------------


def test_attach_tty_detach_and_reattach(d: Daemon, uname: Name) -> None:
    n = uname("att")
    _run_bg(d, "-it", "--name", n, "busybox", "sh")
    with PtyCli(d, "attach", n) as cli:
        cli.send("echo one-$((20+3))\n")
        cli.expect(r"one-23")
        cli.send("\x10\x11")  # Ctrl-P Ctrl-Q
        rc = cli.wait()
        # The CLI ends a detached attach with "read escape sequence" and 1, as with dockerd.
        assert rc == 1 and b"read escape sequence" in cli.out, (rc, cli.out)
    assert status(d, n) == "running"
    # Custom keys.
    with PtyCli(d, "attach", "--detach-keys", "ctrl-x,y", n) as cli:
        cli.send("echo two-$((40+2))\n")
        cli.expect(r"two-42")
        cli.send("\x18y")
        assert cli.wait() == 1
    assert status(d, n) == "running"
    # And a plain exit through a new attach ends the CLI with the container's code.
    with PtyCli(d, "attach", n) as cli:
        cli.send("\nexit 3\n")
        assert cli.wait() == 3
    assert inspect(d, n)["State"]["ExitCode"] == 3


def test_detach_keys_from_cli_config_file(d: Daemon, uname: Name, tmp_path: Path) -> None:
    n = uname("cfg")
    _run_bg(d, "-it", "--name", n, "busybox", "sh")
    cfg = tmp_path / "cfg"
    cfg.mkdir()
    (cfg / "config.json").write_text(json.dumps({"detachKeys": "ctrl-a,a"}))
    env = {**d.env, "DOCKER_CONFIG": str(cfg)}
    with PtyCli(d, "attach", n, env=env) as cli:
        cli.send("echo cfg-ok\n")
        cli.expect(r"cfg-ok")
        cli.send("\x01a")
        assert cli.wait() == 1
    assert status(d, n) == "running"


def test_run_d_it_then_attach_via_api_detach_keys(d: Daemon, uname: Name) -> None:
    """The daemon's own detach-key handling (API clients without an escape proxy)."""
    n = uname("apidk")
    _run_bg(d, "-it", "--name", n, "busybox", "sh")
    with Hijacked(d, f"/containers/{n}/attach?stream=1&stdin=1&stdout=1&detachKeys=ctrl-e,e") as h:
        assert h.status == 101 and h.headers["content-type"] == "application/vnd.docker.raw-stream"
        h.sock.sendall(b"echo api-$((1+1))\n")
        h.read_until(b"api-2")
        h.sock.sendall(b"\x05e")
        h.sock.settimeout(10)
        h.read_all()  # the daemon ends the stream
    assert status(d, n) == "running"
    with Hijacked(d, f"/containers/{n}/attach?stream=1&stdin=1&stdout=1&detachKeys=bogus-key") as h:
        assert h.status == 400 and "Invalid detach keys" in h.json()["message"]


def test_attach_non_tty_sig_proxy(d: Daemon, uname: Name) -> None:
    n = uname("sig")
    _run_bg(d, "--name", n, "busybox", "sh", "-c",
            "trap 'echo got-int; exit 7' INT; echo ready; while true; do sleep 0.1; done")
    wait_for(lambda: "ready" in d.docker("logs", n).stdout, what="the trap to be set")
    p = subprocess.Popen(["docker", "attach", n], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, env=d.env)
    try:
        time.sleep(1.0)  # the attach is established
        p.send_signal(signal.SIGINT)  # --sig-proxy (default): forwarded to the container
        out, err = p.communicate(timeout=20)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == 7, (out, err)
    assert b"got-int" in out


def test_attach_stdin_pipe_to_running_container(d: Daemon, uname: Name) -> None:
    n = uname("cat")
    # As reference record 13a: without StdinOnce (`run -d -i`) the client's EOF ends the
    # attach session; the CLI then waits for the container's exit.
    _run_bg(d, "-i", "--name", n, "busybox", "sh", "-c", "read x; echo got-$x; sleep 1; exit 3")
    r = d.docker("attach", n, input="via-attach\n", timeout=20, check=False)
    assert r.returncode == 3, r
    assert "got-via-attach" in d.docker("logs", n).stdout
    # Through the API: the session ends at the half-close, the container's stdin stays open.
    p = uname("pipe")
    _run_bg(d, "-i", "--name", p, "busybox", "sh", "-c", "while read l; do echo got-$l; done; echo eof-seen")
    with Hijacked(d, f"/containers/{p}/attach?stream=1&stdin=1&stdout=1") as h:
        h.sock.sendall(b"one\n")
        h.read_until(b"got-one\n")
        h.sock.shutdown(socket.SHUT_WR)
        h.sock.settimeout(10)
        h.read_all()
    time.sleep(0.3)
    assert status(d, p) == "running" and "eof-seen" not in d.docker("logs", p).stdout
    # The same for a TTY container through the API: the half-close ends the session.
    t = uname("ttyeof")
    _run_bg(d, "-it", "--name", t, "busybox", "sh")
    with Hijacked(d, f"/containers/{t}/attach?stream=1&stdin=1&stdout=1") as h:
        h.sock.sendall(b"echo x\n")
        h.sock.shutdown(socket.SHUT_WR)
        h.sock.settimeout(10)
        h.read_all()
    assert status(d, t) == "running"


def test_start_a_i(d: Daemon, uname: Name) -> None:
    n = uname("sai")
    d.docker("create", "-i", "--name", n, "busybox", "sh", "-c", "cat; exit 6")
    r = d.docker("start", "-a", "-i", n, input="abc\n", check=False)
    assert (r.returncode, r.stdout) == (6, "abc\n")


def test_attach_logs_replay(d: Daemon, uname: Name) -> None:
    n = uname("logs")
    _run_bg(d, "--name", n, "busybox", "sh", "-c", "echo o1; echo e1 >&2; echo o2; sleep 300")
    wait_for(lambda: "o2" in d.docker("logs", n).stdout, what="the output")
    with Hijacked(d, f"/containers/{n}/attach?logs=1&stream=0&stdout=1&stderr=1") as h:
        assert h.status == 101
        frames = demux(h.read_all())
    assert joined(frames, 1) == b"o1\no2\n" and joined(frames, 2) == b"e1\n"
    with Hijacked(d, f"/containers/{n}/attach?logs=1&stream=0&stderr=1") as h:
        assert demux(h.read_all()) == [(2, b"e1\n")]
    # logs + stream: the replay, then live output until the container exits.
    with Hijacked(d, f"/containers/{n}/attach?logs=1&stream=1&stdout=1") as h:
        h.read_until(b"o2\n")
        d.docker("kill", n)
        h.read_all()


def test_docker_run_d_wait_before_start_order(d: Daemon, uname: Name) -> None:
    # The CLI registers /wait before /start for `run --rm` (reference record 11); a
    # container that exits at once must still report its code and be removed.
    n = uname("fast")
    r = d.docker("run", "--rm", "--name", n, "busybox", "sh", "-c", "exit 9", check=False)
    assert r.returncode == 9
    wait_for(lambda: _gone(d, n), timeout=10, what="--rm")


# -- docker-py -----------------------------------------------------------------------------


def test_docker_py_attach_socket_and_run_tty(d: Daemon, uname: Name, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    import docker

    n = uname("py")
    c = d.client.containers.run("busybox", "sh", name=n, stdin_open=True, tty=True, detach=True)
    wait_for(lambda: d.client.containers.get(n).status == "running", what="running")
    s = d.client.api.attach_socket(c.id, params={"stdin": 1, "stdout": 1, "stream": 1})
    raw = s._sock
    raw.sendall(b"echo py-$((3*3))\n")
    buf = b""
    raw.settimeout(10)
    while b"py-9" not in buf:
        buf += raw.recv(4096)
    s.close()
    # Detach keys from the client's config file (docker-py sends them as detachKeys).
    cfg = tmp_path / "cfg"
    cfg.mkdir()
    (cfg / "config.json").write_text(json.dumps({"detachKeys": "ctrl-b,b"}))
    monkeypatch.setenv("DOCKER_CONFIG", str(cfg))
    client = docker.APIClient(base_url=d.host, version="auto")
    try:
        s = client.attach_socket(c.id, params={"stdin": 1, "stdout": 1, "stream": 1})
        raw = s._sock
        raw.settimeout(10)
        raw.sendall(b"\x02b")
        while raw.recv(4096):
            pass  # EOF: the daemon ended the session on the configured keys
        s.close()
    finally:
        client.close()
    assert d.client.containers.get(n).status == "running"
    c.remove(force=True)


def test_docker_py_attach_socket_non_tty_frames(d: Daemon, uname: Name) -> None:
    n = uname("pyf")
    c = d.client.containers.run("busybox", ["sh", "-c", "cat; echo bye >&2"], name=n, stdin_open=True,
                                detach=True)
    s = d.client.api.attach_socket(c.id, params={"stdin": 1, "stdout": 1, "stderr": 1, "stream": 1})
    raw = s._sock
    raw.sendall(b"hello\n")
    raw.settimeout(10)
    buf = b""
    while len(buf) < 8 + 6:
        chunk = raw.recv(4096)
        assert chunk, f"stream ended early: {buf!r}"
        buf += chunk
    assert demux(buf) == [(1, b"hello\n")]
    s.close()
    c.remove(force=True)


# -- bad input and faults -------------------------------------------------------------------


def test_resize_nonsense(d: Daemon, uname: Name) -> None:
    n = uname("rs")
    _run_bg(d, "-it", "--name", n, "busybox", "sh")
    for q in ("h=-1&w=10", "h=10&w=70000", "h=abc&w=10", "h=1e3&w=5", "w=10", "h=10", ""):  # missing: 400
        r = d.api("POST", f"/containers/{n}/resize?{q}")
        assert r.status == 400, (q, r.status, r.text)
        assert r.message()
    assert d.api("POST", f"/containers/{n}/resize?h=20&w=50").status == 200
    assert d.docker("exec", n, "stty", "-F", "/dev/pts/0", "size").stdout.strip() == "20 50"
    assert d.api("POST", "/containers/no-such-ctr-xyz/resize?h=1&w=1").status == 404
    d.docker("stop", "-t", "0", n)
    assert d.api("POST", f"/containers/{n}/resize?h=20&w=50").status == 409


def test_attach_to_missing_or_stopped(d: Daemon, uname: Name) -> None:
    with Hijacked(d, "/containers/no-such-ctr-xyz/attach?stream=1&stdout=1") as h:
        assert h.status == 404 and "No such container" in h.json()["message"]
    r = d.docker("attach", "no-such-ctr-xyz", check=False)
    assert r.returncode == 1 and "No such container" in r.stderr
    n = uname("stopped")
    d.docker("create", "--name", n, "busybox", "true")
    r = d.docker("attach", n, check=False)
    assert r.returncode == 1 and "You cannot attach to a stopped container" in r.stderr


def test_client_disconnect_mid_stream(d: Daemon, uname: Name) -> None:
    n = uname("disc")
    _run_bg(d, "-i", "--name", n, "busybox", "sh", "-c", "while true; do echo tick; sleep 0.05; done")
    for _ in range(5):
        h = Hijacked(d, f"/containers/{n}/attach?stream=1&stdin=1&stdout=1&stderr=1")
        assert h.status == 101
        h.read_until(b"tick")
        h.sock.sendall(b"partial input")
        # An abortive close (RST) in the middle of the stream.
        h.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")
        h.close()
    assert status(d, n) == "running"
    assert d.api("GET", "/_ping").status == 200
    with Hijacked(d, f"/containers/{n}/attach?stream=1&stdout=1") as h:
        h.read_until(b"tick")


def test_attach_without_upgrade_answers_with_the_output(d: Daemon, uname: Name) -> None:
    """A plain POST .../attach (curl, dockerode) gets logs and live output as the body."""
    n = uname("plain")
    d.docker("run", "-d", "--name", n, "busybox", "sh", "-c", "echo one; echo two >&2; sleep 1; echo three")
    wait_for(lambda: "two" in d.docker("logs", n).stderr, what="the first lines")
    r = d.api("POST", f"/v1.50/containers/{n}/attach?logs=1&stdout=1&stderr=1")
    assert r.status == 200 and demux(r.body) == [(1, b"one\n"), (2, b"two\n")]
    r = d.api("POST", f"/v1.50/containers/{n}/attach?stream=1&stdout=1", timeout=10)
    assert r.status == 200 and demux(r.body) == [(1, b"three\n")]
    d.docker("rm", "-f", n)


def test_killed_client_ends_stdin_once_input(d: Daemon, uname: Name) -> None:
    """`yes | docker run -i … cat` whose CLI is killed mid-upload: the container's stdin closes
    with the client (StdinOnce), so cat ends, as with dockerd, instead of waiting forever."""
    n = uname("once")
    p = subprocess.Popen(f"yes | docker run -i --name {n} busybox cat > /dev/null", shell=True, env=d.env,
                         start_new_session=True)
    def state() -> str:
        return d.docker("ps", "-a", "--filter", f"name=^{n}$", "--format", "{{.State}}").stdout.strip()

    try:
        wait_for(lambda: state() == "running", what="the container to run")
        time.sleep(0.5)
    finally:
        os.killpg(p.pid, signal.SIGKILL)
        p.wait()
    wait_for(lambda: state() == "exited", timeout=15, what="cat to see the end of its stdin")
    assert inspect(d, n)["State"]["ExitCode"] == 0
    d.docker("rm", n)


def test_back_pressure_client_never_reads(d: Daemon, uname: Name) -> None:
    n = uname("bp")
    _run_bg(d, "--name", n, "busybox", "sh", "-c",
            "sleep 0.5; head -c 200000000 /dev/zero; touch /tmp/all-written; sleep 300")
    daemon_pid = d.proc.pid if d.proc else 0
    rss_before = _rss_kb(daemon_pid)
    with Hijacked(d, f"/containers/{n}/attach?stream=1&stdout=1") as h:
        assert h.status == 101
        h.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        time.sleep(3)
        # The container blocks on its full pipe instead of anybody buffering 200 MB.
        r = d.docker("exec", n, "test", "-e", "/tmp/all-written", check=False)
        assert r.returncode == 1, "the container wrote everything although nobody read it"
        assert _rss_kb(daemon_pid) - rss_before < 50_000
        monitor = int(inspect(d, n)["State"]["Pid"])
        assert monitor > 0
    # Once the reader is gone, the output flows (into the log) and the container goes on.
    wait_for(lambda: d.docker("exec", n, "test", "-e", "/tmp/all-written", check=False).returncode == 0,
             timeout=60, what="the container to finish writing after the reader left")


def _rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def test_200_attach_and_exec_cycles_leak_no_fds(d: Daemon, uname: Name) -> None:
    n = uname("leak")
    _run_bg(d, "-i", "--name", n, "busybox", "sh", "-c", "while true; do echo t; sleep 0.2; done")
    assert d.proc is not None
    pid = d.proc.pid

    def cycle(i: int) -> None:
        if i % 2:
            with Hijacked(d, f"/containers/{n}/attach?stream=1&stdin=1&stdout=1&stderr=1") as h:
                assert h.status == 101
                h.sock.sendall(b"x\n")
        else:
            r = d.api("POST", f"/containers/{n}/exec", {"Cmd": ["echo", f"e{i}"], "AttachStdout": True,
                                                         "AttachStderr": True})
            assert r.status == 201, r.text
            with Hijacked(d, f"/exec/{r.json()['Id']}/start", {"Detach": False, "Tty": False}) as h:
                assert h.status == 101
                assert joined(demux(h.read_all()), 1) == f"e{i}\n".encode()

    cycle(0)
    cycle(1)
    time.sleep(0.5)
    before = open_fds(pid)
    errors: list[BaseException] = []

    def worker(start: int) -> None:
        try:
            for i in range(start, start + 50):
                cycle(i)
        except BaseException as e:  # noqa: BLE001 - reported by the main thread
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(k * 50,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors[:3]
    wait_for(lambda: open_fds(pid) <= before + 2, timeout=15,
             what=f"the daemon's fds to return to {before} (now {open_fds(pid)})")


# -- daemon restart -------------------------------------------------------------------------


def test_container_streams_survive_daemon_restart(new_daemon: Callable[..., Daemon], busybox_rootfs: Path) -> None:
    dm = new_daemon()
    import_busybox(dm, busybox_rootfs)
    dm.docker("run", "-d", "-it", "--name", "tty", "busybox", "sh")
    dm.docker("run", "-d", "-i", "--name", "pipe", "busybox", "sh", "-c", "while read l; do echo got-$l; done")
    # A detached exec that keeps writing: its command survives the restart like the container.
    dm.docker("exec", "-d", "pipe", "sh", "-c", "while true; do echo x; sleep 0.1; done & sleep 3600")
    with Hijacked(dm, "/containers/pipe/attach?stream=1&stdin=1&stdout=1") as h:
        h.sock.sendall(b"before\n")
        h.read_until(b"got-before\n")
        dm.restart()
        h.sock.settimeout(10)
        try:
            h.read_all()  # the old session's connection to the daemon is gone
        except OSError:
            pass
    # The monitor kept the pipes and the pty: new sessions work and see the same processes.
    with Hijacked(dm, "/containers/pipe/attach?stream=1&stdin=1&stdout=1") as h:
        h.sock.sendall(b"after\n")
        assert b"got-after\n" in h.read_until(b"got-after\n")
    with PtyCli(dm, "attach", "tty") as cli:
        cli.send("echo still-$((5*5))\n")
        cli.expect(r"still-25")
        cli.send("exit 2\n")
        assert cli.wait() == 2
    assert dm.docker("exec", "pipe", "echo", "exec-ok").stdout == "exec-ok\n"
    assert "sleep 3600" in dm.docker("exec", "pipe", "ps", "-o", "args").stdout
