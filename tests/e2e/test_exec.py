"""docker exec through the stock CLI, the raw API and docker-py: streams, exit codes,
options, namespaces, the TTY, refusals and concurrency."""

from __future__ import annotations

import concurrent.futures
import json
import os
import time
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.e2e.helpers import DEFAULT_CAPS, wait_for
from tests.e2e.interactive_util import Hijacked, PtyCli, demux, joined, open_fds
from tests.helpers import Daemon

Name = Callable[[str], str]


@pytest.fixture
def ctr(d: Daemon, uname: Name) -> Iterator[str]:
    """A running container with some environment of its own."""
    n = uname("x")
    d.docker("run", "-d", "--name", n, "-e", "CENV=from-ctr", "-e", "OVER=ctr", "busybox", "sleep", "600")
    yield n
    d.docker("rm", "-f", n, check=False)


def _exec_inspect(d: Daemon, exec_id: str) -> dict:
    r = d.api("GET", f"/exec/{exec_id}/json")
    assert r.status == 200, r.text
    return r.json()


def _create(d: Daemon, ctr: str, **body: object) -> str:
    r = d.api("POST", f"/containers/{ctr}/exec", {"AttachStdout": True, "AttachStderr": True, **body})
    assert r.status == 201, r.text
    return str(r.json()["Id"])


def test_exec_streams_and_exit_code(d: Daemon, ctr: str) -> None:
    r = d.docker("exec", ctr, "sh", "-c", "echo out; echo err >&2; exit 3", check=False)
    assert (r.returncode, r.stdout, r.stderr) == (3, "out\n", "err\n")


def test_exec_126_127(d: Daemon, ctr: str) -> None:
    r = d.docker("exec", ctr, "/etc/not-executable", check=False)
    assert r.returncode == 126, r
    assert "permission denied" in r.stderr
    r = d.docker("exec", ctr, "no-such-binary", check=False)
    assert r.returncode == 127
    assert 'exec: "no-such-binary": executable file not found in $PATH' in r.stderr
    for cmd, code in ((["/etc/not-executable"], 126), (["no-such-binary"], 127), (["sh", "-c", "exit 42"], 42)):
        eid = _create(d, ctr, Cmd=cmd)
        with Hijacked(d, f"/exec/{eid}/start", {"Detach": False, "Tty": False}) as h:
            assert h.status == 101
            h.read_all()
        info = wait_for(lambda eid=eid: (i := _exec_inspect(d, eid))["ExitCode"] is not None and i,
                        what="the exit code in exec inspect")
        assert (info["ExitCode"], info["Running"]) == (code, False)


def test_exec_i_piped_stdin(d: Daemon, ctr: str) -> None:
    data = os.urandom(3 * 1024 * 1024).hex()  # 6 MB: several pipe buffers each way
    r = d.docker("exec", "-i", ctr, "sh", "-c", "cat; echo done >&2", input=data)
    assert r.stdout == data and r.stderr == "done\n"
    # Without -i the command's stdin is empty.
    assert d.docker("exec", ctr, "sh", "-c", "cat; echo eof", input="ignored").stdout == "eof\n"


def test_exec_it_pty(d: Daemon, ctr: str) -> None:
    with PtyCli(d, "exec", "-it", ctr, "sh") as cli:
        cli.expect(r"/ # ")
        cli.send("tty; stty size; echo $TERM\n")
        cli.expect(r"/dev/pts/\d+\r\n30 100\r\nxterm\r\n")
        cli.resize(33, 77)
        cli.wait_for_shell_size(33, 77, "the exec's new window size")
        cli.send("exit 4\n")
        assert cli.wait() == 4


def test_exec_detached(d: Daemon, ctr: str) -> None:
    r = d.docker("exec", "-d", ctr, "sh", "-c", "sleep 0.2; echo bg > /tmp/bg")
    assert r.stdout == ""
    wait_for(lambda: d.docker("exec", ctr, "cat", "/tmp/bg", check=False).stdout == "bg\n",
             what="the detached exec to run")
    # A detached start through the API answers 200 with an empty body (docker-py's
    # exec_start(detach=True) returns it as is).
    eid = _create(d, ctr, Cmd=["sh", "-c", "echo lots; yes | head -c 1000000"])
    r = d.api("POST", f"/exec/{eid}/start", {"Detach": True, "Tty": False})
    assert (r.status, r.body) == (200, b"")
    assert d.client.api.exec_start(d.client.api.exec_create(ctr, "true")["Id"], detach=True) in ("", b"")
    wait_for(lambda: _exec_inspect(d, eid)["ExitCode"] == 0, what="the detached exec to finish (output drained)")


def test_exec_start_without_upgrade_streams_the_output(d: Daemon, ctr: str) -> None:
    """curl and dockerode start an exec without the upgrade headers: dockerd takes the connection
    over all the same, with a bare 200 that says raw-stream whatever the framing."""
    eid = d.api("POST", f"/v1.50/containers/{ctr}/exec", {
        "AttachStdout": True, "AttachStderr": True, "Cmd": ["sh", "-c", "echo out; echo err >&2; exit 3"],
    }).json()["Id"]
    r = d.api("POST", f"/v1.50/exec/{eid}/start", {"Detach": False})
    assert r.status == 200 and r.headers["Content-Type"] == "application/vnd.docker.raw-stream"
    assert sorted(demux(r.body)) == [(1, b"out\n"), (2, b"err\n")]
    assert _exec_inspect(d, eid)["ExitCode"] == 3
    eid = d.api("POST", f"/v1.50/containers/{ctr}/exec", {"AttachStdout": True, "Tty": True,
                                                         "Cmd": ["echo", "tty"]}).json()["Id"]
    r = d.api("POST", f"/v1.50/exec/{eid}/start", {"Detach": False, "Tty": True})
    assert r.status == 200 and r.body == b"tty\r\n"


def test_exec_t_releases_its_pty(d: Daemon, ctr: str) -> None:
    """Each `docker exec -t` gets its terminal back to the container: no pty master stays open in
    the daemon and the next exec gets /dev/pts/0 again, as with dockerd."""
    assert d.proc is not None
    for _ in range(5):
        d.docker("exec", "-t", ctr, "true")

    def ptmx() -> int:
        fds = f"/proc/{d.proc.pid}/fd"  # type: ignore[union-attr]
        return sum(1 for fd in os.listdir(fds) if os.path.realpath(f"{fds}/{fd}") == "/dev/ptmx")

    wait_for(lambda: ptmx() == 0, what="the daemon to close every pty master")
    assert d.docker("exec", "-t", ctr, "tty").stdout.strip() == "/dev/pts/0"


def test_exec_env_workdir_user(d: Daemon, ctr: str, tmp_path: Path) -> None:
    env_file = tmp_path / "env"
    env_file.write_text("FROMFILE=ff\n# comment\n")
    r = d.docker("exec", "-e", "A=1", "-e", "OVER=exec", "--env-file", str(env_file), "-w", "/tmp",
                 "-u", "nobody", ctr, "sh", "-c", "echo $A $FROMFILE $CENV $OVER $(pwd) $(id -u) $HOME")
    assert r.stdout.split() == ["1", "ff", "from-ctr", "exec", "/tmp", "65534", "/home"]
    r = d.docker("exec", "-w", "/no/such/dir", ctr, "true", check=False)
    assert r.returncode == 126 and "/no/such/dir" in r.stderr
    r = d.docker("exec", "-u", "nosuchuser", ctr, "true", check=False)
    assert r.returncode == 126 and "nosuchuser" in r.stderr


def test_exec_environment_as_dockerd(d: Daemon, uname: Name) -> None:
    """HOSTNAME comes first, as dockerd's exec environment; `-e NAME` with NAME unset on the
    client sets nothing (in run and in exec) instead of failing."""
    assert "PYD_UNSET_VAR" not in os.environ
    n = uname("envh")
    d.docker("run", "-d", "--name", n, "-h", "myhost", "-e", "PYD_UNSET_VAR", "busybox", "sleep", "60")
    try:
        r = d.docker("exec", "-e", "PYD_UNSET_VAR", n, "sh", "-c", 'echo "$HOSTNAME ${PYD_UNSET_VAR-unset}"')
        assert r.stdout == "myhost unset\n"
        assert d.docker("run", "--rm", "-e", "PYD_UNSET_VAR", "busybox", "sh", "-c",
                        'echo "${PYD_UNSET_VAR-unset}"').stdout == "unset\n"
    finally:
        d.docker("rm", "-f", n)


def test_exec_privileged(d: Daemon, ctr: str) -> None:
    def cap_eff(*opts: str) -> str:
        out = d.docker("exec", *opts, ctr, "grep", "CapEff", "/proc/self/status").stdout
        return out.split()[1]

    assert cap_eff() == DEFAULT_CAPS
    assert int(cap_eff("--privileged"), 16) > int(DEFAULT_CAPS, 16)


def test_exec_joins_every_namespace_and_cgroup(d: Daemon, ctr: str) -> None:
    script = ("for ns in pid mnt uts ipc net cgroup; do [ \"$(readlink /proc/1/ns/$ns)\" = "
              "\"$(readlink /proc/self/ns/$ns)\" ] || echo differs-$ns; done; "
              "[ \"$(cat /proc/1/cgroup)\" = \"$(cat /proc/self/cgroup)\" ] || echo differs-cgroup; "
              "hostname; cat /proc/1/cmdline | tr '\\0' ' '")
    out = d.docker("exec", ctr, "sh", "-c", script).stdout
    hostname = d.docker("inspect", "-f", "{{.Config.Hostname}}", ctr).stdout.strip()
    assert out == f"{hostname}\nsleep 600 ", out


def test_exec_refused_when_stopped_or_paused(d: Daemon, ctr: str, uname: Name) -> None:
    cid = d.docker("inspect", "-f", "{{.Id}}", ctr).stdout.strip()
    d.docker("pause", ctr)
    try:
        r = d.docker("exec", ctr, "true", check=False)
        assert r.returncode == 1
        assert f"Container {cid} is paused, unpause the container before exec" in r.stderr
    finally:
        d.docker("unpause", ctr)
    # Created before the stop, started after it: refused at start as well.
    eid = _create(d, ctr, Cmd=["true"])
    d.docker("stop", "-t", "0", ctr)
    r = d.docker("exec", ctr, "true", check=False)
    assert r.returncode == 1 and f"Container {cid} is not running" in r.stderr
    with Hijacked(d, f"/exec/{eid}/start", {"Detach": False, "Tty": False}) as h:
        assert h.status == 409 and "is not running" in h.json()["message"]


def test_exec_api_errors(d: Daemon, ctr: str) -> None:
    eid = _create(d, ctr, Cmd=["true"])
    with Hijacked(d, f"/exec/{eid}/start", {"Detach": False, "Tty": False}) as h:
        assert h.status == 101
        h.read_all()
    # Started twice: 409, on both kinds of start.
    with Hijacked(d, f"/exec/{eid}/start", {"Detach": False, "Tty": False}) as h:
        assert h.status == 409 and "has already run" in h.json()["message"]
    r = d.api("POST", f"/exec/{eid}/start", {"Detach": True})
    assert r.status == 409
    assert d.api("GET", "/exec/no-such-exec/json").status == 404
    with Hijacked(d, "/exec/no-such-exec/start", {"Detach": False}) as h:
        assert h.status == 404 and "No such exec instance" in h.json()["message"]
    r = d.api("POST", f"/containers/{ctr}/exec", {"Cmd": []})
    assert r.status == 400
    r = d.api("POST", f"/containers/{ctr}/exec", {"Cmd": "echo hi"})  # a string: dockerd says 400
    assert r.status == 400
    r = d.api("POST", "/containers/no-such-ctr-xyz/exec", {"Cmd": ["true"]})
    assert r.status == 404
    r = d.api("POST", f"/containers/{ctr}/exec", {"Cmd": ["true"], "DetachKeys": "nonsense-key"})
    assert r.status == 400
    # Resize: nonsense sizes are 400, a finished exec is 409, a missing one 404.
    for q in ("h=-1&w=5", "h=5&w=99999", "h=x&w=5"):
        assert d.api("POST", f"/exec/{eid}/resize?{q}").status == 400, q
    assert d.api("POST", f"/exec/{eid}/resize?h=5&w=5").status == 409
    assert d.api("POST", "/exec/no-such-exec/resize?h=5&w=5").status == 404
    with Hijacked(d, f"/exec/{eid}/start", body=None) as h:  # empty body: still refused, not a crash
        assert h.status == 409


def test_exec_framing_and_raw_tty_via_api(d: Daemon, ctr: str) -> None:
    eid = _create(d, ctr, Cmd=["sh", "-c", "echo o1; echo e1 >&2; echo o2"])
    with Hijacked(d, f"/exec/{eid}/start", {"Detach": False, "Tty": False}) as h:
        assert h.headers["content-type"] == "application/vnd.docker.multiplexed-stream"
        frames = demux(h.read_all())
    assert (joined(frames, 1), joined(frames, 2)) == (b"o1\no2\n", b"e1\n")
    eid = _create(d, ctr, Cmd=["sh", "-c", "echo o1; echo e1 >&2"], Tty=True, AttachStdin=True)
    with Hijacked(d, f"/exec/{eid}/start", {"Detach": False, "Tty": True}) as h:
        assert h.headers["content-type"] == "application/vnd.docker.raw-stream"
        assert h.read_all() == b"o1\r\ne1\r\n"
    # Detach keys of an exec with a TTY end the session and leave the command running.
    eid = _create(d, ctr, Cmd=["sh"], Tty=True, AttachStdin=True, DetachKeys="ctrl-e,e")
    with Hijacked(d, f"/exec/{eid}/start", {"Detach": False, "Tty": True}) as h:
        h.sock.sendall(b"echo in-$((6*7))\n")
        h.read_until(b"in-42")
        h.sock.sendall(b"\x05e")
        h.sock.settimeout(10)
        h.read_all()
    info = _exec_inspect(d, eid)
    assert info["Running"] is True and info["ExitCode"] is None


def test_exec_tty_detach_drains_and_releases(d: Daemon, ctr: str) -> None:
    """After a detach the command's terminal output goes nowhere without blocking it, and
    the daemon lets go of the terminal when the command ends."""
    assert d.proc is not None
    before = open_fds(d.proc.pid)
    ids = []
    # 600 kB each: ten times what a pty holds (64 KiB), so a detached command nobody drains
    # blocks; more only makes the test slow (output through a pty runs at ~1 MB/s here).
    for i in range(5):
        eid = _create(d, ctr, Cmd=["sh", "-c", f"sleep 0.5; yes | head -c 600000; touch /tmp/drained{i}"],
                      Tty=True, AttachStdin=True)
        with Hijacked(d, f"/exec/{eid}/start", {"Detach": False, "Tty": True}) as h:
            h.sock.sendall(b"\x10\x11")
            h.sock.settimeout(10)
            h.read_all()
        ids.append(eid)
    for i, eid in enumerate(ids):
        wait_for(lambda eid=eid: _exec_inspect(d, eid)["ExitCode"] == 0, timeout=30,
                 what="the detached command to finish writing")
        assert d.docker("exec", ctr, "test", "-e", f"/tmp/drained{i}", check=False).returncode == 0
    wait_for(lambda: open_fds(d.proc.pid) <= before, timeout=10,  # type: ignore[union-attr]
             what=f"the daemon's fds back to {before}")


def test_exec_docker_py(d: Daemon, ctr: str) -> None:
    c = d.client.containers.get(ctr)
    res = c.exec_run(["sh", "-c", "echo out; echo err >&2; exit 2"], demux=True)
    assert (res.exit_code, res.output) == (2, (b"out\n", b"err\n"))
    res = c.exec_run(["sh", "-c", "echo a; echo b >&2"], stream=True, demux=True)
    got = list(res.output)
    assert b"".join(o or b"" for o, _ in got) == b"a\n" and b"".join(e or b"" for _, e in got) == b"b\n"
    res = c.exec_run(["sh", "-c", "echo t1; echo t2 >&2"], tty=True)
    assert (res.exit_code, res.output) == (0, b"t1\r\nt2\r\n")
    res = c.exec_run(["sh", "-c", "echo s"], stream=True, tty=True)
    assert b"".join(res.output) == b"s\r\n"
    # socket=True: the raw hijacked socket; frames exactly as dockerd's.
    res = c.exec_run(["sh", "-c", "read x; echo got-$x; echo e >&2"], stdin=True, socket=True)
    sock = res.output._sock
    sock.sendall(b"zz\n")
    sock.settimeout(10)
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    res.output.close()
    frames = demux(data)
    assert (joined(frames, 1), joined(frames, 2)) == (b"got-zz\n", b"e\n")
    res = c.exec_run(["sh", "-c", "echo raw"], socket=True, tty=True)
    sock = res.output._sock
    sock.settimeout(10)
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    res.output.close()
    assert data == b"raw\r\n"


def test_many_concurrent_execs(d: Daemon, ctr: str) -> None:
    def one(i: int) -> str:
        return d.docker("exec", ctr, "sh", "-c", f"echo n{i}; echo $$ >&2").stdout

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        outs = list(pool.map(one, range(48)))
    assert outs == [f"n{i}\n" for i in range(48)]
    # None of them is left running in the container.
    ps = d.docker("exec", ctr, "ps", "-o", "args").stdout
    assert "echo n" not in ps
    filters = urllib.parse.quote(json.dumps({"container": [ctr], "event": ["exec_die"]}))
    events = d.api("GET", f"/events?since=0&until={int(time.time()) + 1}&filters={filters}")
    assert events.status == 200 and events.text.count("exec_die") >= 48
