"""Containers: run/create/start, ps, inspect, logs, stop/kill/restart/rm, prune, rename, wait,
top, diff, exit codes, and what a container really is (namespaces, mounts, capabilities).

Long on purpose: one file per CLI area, as the other e2e files (`docker container ...` here);
split by subcommand, the files would only repeat its helpers."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.helpers import (
    DEFAULT_CAPS,
    HEX12,
    HEX64,
    RFC3339,
    fmt,
    inspect,
    pid_alive,
    status,
    wait_for,
)
from tests.helpers import Daemon

pytestmark = pytest.mark.e2e

Name = Callable[[str], str]
DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def _run(d: Daemon, *args: str, **kw: object) -> subprocess.CompletedProcess[str]:
    return d.docker("run", *args, **kw)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- run basics


def test_run_echo(d: Daemon) -> None:
    r = _run(d, "--rm", "busybox", "echo", "hi")
    assert (r.stdout, r.stderr) == ("hi\n", "")


def test_run_keeps_streams_apart_and_exit_code(d: Daemon, uname: Name) -> None:
    n = uname("streams")
    r = _run(d, "--name", n, "busybox", "sh", "-c", "echo out; echo err >&2; exit 3", check=False)
    assert (r.returncode, r.stdout, r.stderr) == (3, "out\n", "err\n")
    st = inspect(d, n)["State"]
    assert (st["Status"], st["ExitCode"], st["Running"]) == ("exited", 3, False)
    d.docker("rm", n)


def test_run_piped_stdin(d: Daemon) -> None:
    assert _run(d, "-i", "--rm", "busybox", "cat", input="a\nb\n").stdout == "a\nb\n"
    # Through a real shell pipeline, as a user types it.
    r = subprocess.run("printf 'a\\nb\\n' | docker run -i busybox cat", shell=True, env=d.env,
                       capture_output=True, text=True, timeout=60)
    assert (r.returncode, r.stdout) == (0, "a\nb\n"), r.stderr
    # Stdin larger than any pipe buffer, then output after EOF, then an exit code.
    data = b"x" * 3_000_000
    r = _run(d, "-i", "--rm", "busybox", "sh", "-c", "wc -c; echo done >&2; exit 5", input=data, check=False)
    assert (r.returncode, r.stdout.strip(), r.stderr) == (5, "3000000", "done\n")


def test_run_without_stdin_gets_eof(d: Daemon) -> None:
    # Without -i the container's stdin is /dev/null-like: cat ends at once.
    r = _run(d, "--rm", "busybox", "sh", "-c", "cat; echo after-cat", timeout=30)
    assert r.stdout == "after-cat\n"


def test_large_output(d: Daemon) -> None:
    r = _run(d, "--rm", "busybox", "sh", "-c", "seq 1 200000")
    lines = r.stdout.splitlines()
    assert len(lines) == 200000 and lines[-1] == "200000"


def test_run_detached(d: Daemon, uname: Name) -> None:
    n = uname("bg")
    cid = _run(d, "-d", "--name", n, "busybox", "sleep", "300").stdout.strip()
    assert HEX64.match(cid), cid
    info = inspect(d, n)
    assert info["Id"] == cid and info["Name"] == "/" + n
    assert info["State"]["Running"] is True and info["State"]["Status"] == "running"
    pid = info["State"]["Pid"]
    assert pid > 0 and pid_alive(pid)
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        assert f.read().split(b"\0")[:2] == [b"sleep", b"300"]
    ps = d.docker("ps", "--format", "{{.Names}} {{.Status}}").stdout
    assert re.search(rf"^{re.escape(n)} Up ", ps, re.M), ps
    # Unique-prefix lookup by id.
    assert fmt(d, cid[:12], "{{.Name}}") == "/" + n
    assert fmt(d, cid[:5], "{{.Name}}") == "/" + n
    d.docker("rm", "-f", n)
    wait_for(lambda: not pid_alive(pid), 10, what="container process to die after rm -f")


def test_create_then_start(d: Daemon, uname: Name) -> None:
    n = uname("cs")
    cid = d.docker("create", "--name", n, "busybox", "sh", "-c", "echo started").stdout.strip()
    assert HEX64.match(cid)
    st = inspect(d, n)["State"]
    assert (st["Status"], st["Pid"], st["StartedAt"]) == ("created", 0, "0001-01-01T00:00:00Z")
    assert d.docker("start", "-a", n).stdout == "started\n"
    assert d.docker("start", n).stdout.strip() == n
    wait_for(lambda: status(d, n) == "exited", what="exit")
    assert d.docker("logs", n).stdout == "started\nstarted\n"


def test_env_and_env_file(d: Daemon, tmp_path: Path) -> None:
    f = tmp_path / "env"
    f.write_text("# comment\nFROM_FILE=1\nOVERRIDE=file\nFROM_HOST\n")
    env = d.env | {"FROM_HOST": "host-value"}
    out = _run(d, "--rm", "--env-file", str(f), "-e", "OVERRIDE=flag", "-e", "A=b c", "busybox", "env", env=env).stdout
    lines = set(out.splitlines())
    assert {"FROM_FILE=1", "OVERRIDE=flag", "A=b c", "FROM_HOST=host-value", DEFAULT_PATH, "HOME=/root"} <= lines
    assert any(ln.startswith("HOSTNAME=") for ln in lines)


def test_workdir(d: Daemon) -> None:
    assert _run(d, "--rm", "-w", "/tmp/new/dir", "busybox", "pwd").stdout == "/tmp/new/dir\n"
    assert _run(d, "--rm", "busybox", "pwd").stdout == "/\n"


def test_user(d: Daemon) -> None:
    assert _run(d, "--rm", "-u", "nobody", "busybox", "sh", "-c", "id -u; id -g").stdout == "65534\n65534\n"
    assert _run(d, "--rm", "-u", "1234:5678", "busybox", "sh", "-c", "id -u; id -g").stdout == "1234\n5678\n"
    assert _run(d, "--rm", "-u", "nobody:root", "busybox", "sh", "-c", "id -u; id -g").stdout == "65534\n0\n"
    r = _run(d, "--rm", "-u", "nosuchuser", "busybox", "true", check=False)
    assert r.returncode != 0 and "unable to find user nosuchuser" in r.stderr, r


def test_entrypoint(d: Daemon) -> None:
    assert _run(d, "--rm", "--entrypoint", "/bin/echo", "busybox", "a", "b").stdout == "a b\n"
    assert _run(d, "--rm", "--entrypoint", "env", "busybox", "-i", "A=1").stdout == "A=1\n"


def test_hostname(d: Daemon, uname: Name) -> None:
    out = _run(d, "--rm", "-h", "myhost", "busybox", "sh", "-c", "hostname; cat /etc/hostname; cat /etc/hosts").stdout
    lines = out.splitlines()
    assert lines[:2] == ["myhost", "myhost"]
    assert any(re.match(r"^127\.0\.0\.1\s+localhost", ln) for ln in lines), out
    # No "IP hostname" line is required yet: without a bridge network the container has no
    # address, and dockerd's --network none hosts file has only the localhost entries.
    n = uname("hn")
    cid = _run(d, "--name", n, "busybox", "hostname").stdout.strip()
    assert HEX12.match(cid) and inspect(d, n)["Id"].startswith(cid)
    assert fmt(d, n, "{{.Config.Hostname}}") == cid


def test_rm_returns_real_exit_code(d: Daemon, uname: Name) -> None:
    n = uname("rmexit")
    r = _run(d, "--rm", "--name", n, "busybox", "sh", "-c", "exit 7", check=False)
    assert r.returncode == 7
    # --rm waits for removal (wait?condition=removed) before exiting.
    assert d.docker("ps", "-a", "-q", "--filter", f"name=^{n}$").stdout.strip() == ""
    r = _run(d, "--rm", "-d", "--name", n, "busybox", "true")
    wait_for(lambda: not d.docker("ps", "-aq", "--filter", f"name=^{n}$").stdout.strip(), 15,
             what="--rm -d container to remove itself")


# --------------------------------------------------------------------------- restart policies


def test_restart_on_failure_max(d: Daemon, uname: Name) -> None:
    n = uname("onfail")
    _run(d, "-d", "--name", n, "--restart", "on-failure:2", "busybox", "sh", "-c", "echo run; exit 1")
    wait_for(lambda: fmt(d, n, "{{.RestartCount}} {{.State.Status}}") == "2 exited", 30,
             what="on-failure:2 to give up after 2 restarts")
    time.sleep(1.0)
    assert fmt(d, n, "{{.RestartCount}} {{.State.Status}} {{.State.ExitCode}}") == "2 exited 1"
    assert d.docker("logs", n).stdout == "run\nrun\nrun\n"
    pol = json.loads(fmt(d, n, "{{json .HostConfig.RestartPolicy}}"))
    assert pol == {"Name": "on-failure", "MaximumRetryCount": 2}


def test_restart_on_failure_not_on_success(d: Daemon, uname: Name) -> None:
    n = uname("onfail0")
    _run(d, "-d", "--name", n, "--restart", "on-failure", "busybox", "true")
    wait_for(lambda: status(d, n) == "exited", what="exit")
    time.sleep(1.0)
    assert fmt(d, n, "{{.RestartCount}} {{.State.Status}}") == "0 exited"


@pytest.mark.parametrize("policy", ["always", "unless-stopped"])
def test_restart_always_until_stopped(d: Daemon, uname: Name, policy: str) -> None:
    n = uname(policy)
    _run(d, "-d", "--name", n, "--restart", policy, "busybox", "sh", "-c", "echo up; sleep 0.2")
    wait_for(lambda: int(fmt(d, n, "{{.RestartCount}}")) >= 2, 30, what=f"{policy} to restart twice")
    d.docker("stop", "-t", "1", n)
    assert status(d, n) == "exited"
    count = fmt(d, n, "{{.RestartCount}}")
    time.sleep(1.5)
    assert status(d, n) == "exited" and fmt(d, n, "{{.RestartCount}}") == count, "restarted after docker stop"
    d.docker("rm", n)


def test_restart_no(d: Daemon, uname: Name) -> None:
    n = uname("nopol")
    _run(d, "--name", n, "busybox", "sh", "-c", "exit 1", check=False)
    assert fmt(d, n, "{{.HostConfig.RestartPolicy.Name}} {{.RestartCount}}") in ("no 0", " 0")


# --------------------------------------------------------------------------- labels, signals, init


def test_labels(d: Daemon, uname: Name) -> None:
    n = uname("lbl")
    d.docker("create", "--name", n, "-l", "a=b", "--label", "c", "--label", "x=y=z", "busybox", "true")
    assert json.loads(fmt(d, n, "{{json .Config.Labels}}")) == {"a": "b", "c": "", "x": "y=z"}
    assert d.docker("ps", "-a", "--filter", "label=a=b", "--format", "{{.Names}}").stdout.split() == [n]
    assert d.docker("ps", "-a", "--filter", "label=x=y=z", "--format", "{{.Names}}").stdout.split() == [n]


TRAP_USR1 = "trap 'echo got-usr1; exit 0' USR1; echo ready; while true; do sleep 0.1; done"


def test_stop_signal(d: Daemon, uname: Name) -> None:
    n = uname("stopsig")
    _run(d, "-d", "--name", n, "--stop-signal", "SIGUSR1", "busybox", "sh", "-c", TRAP_USR1)
    wait_for(lambda: "ready" in d.docker("logs", n).stdout, what="ready")
    assert fmt(d, n, "{{.Config.StopSignal}}") == "SIGUSR1"
    d.docker("stop", n)
    assert "got-usr1" in d.docker("logs", n).stdout
    assert fmt(d, n, "{{.State.ExitCode}}") == "0"


def test_stop_timeout(d: Daemon, uname: Name) -> None:
    n = uname("stoptmo")
    # sleep as PID 1 has no SIGTERM handler, and the kernel drops unhandled signals to a
    # namespace's init: only the SIGKILL after the timeout ends it.
    _run(d, "-d", "--name", n, "--stop-timeout", "1", "busybox", "sleep", "300")
    assert fmt(d, n, "{{.Config.StopTimeout}}") == "1"
    t0 = time.monotonic()
    assert d.docker("stop", n).stdout.strip() == n
    took = time.monotonic() - t0
    assert 0.8 <= took < 8, took
    assert fmt(d, n, "{{.State.ExitCode}}") == "137"


def test_stop_t_and_s(d: Daemon, uname: Name) -> None:
    n = uname("stopts")
    _run(d, "-d", "--name", n, "busybox", "sleep", "300")
    t0 = time.monotonic()
    d.docker("stop", "-t", "0", n)
    assert time.monotonic() - t0 < 5
    assert fmt(d, n, "{{.State.ExitCode}}") == "137"
    n2 = uname("stops")
    _run(d, "-d", "--name", n2, "busybox", "sh", "-c", TRAP_USR1)
    wait_for(lambda: "ready" in d.docker("logs", n2).stdout, what="ready")
    d.docker("stop", "-s", "SIGUSR1", "-t", "10", n2)
    assert "got-usr1" in d.docker("logs", n2).stdout
    assert fmt(d, n2, "{{.State.ExitCode}}") == "0"
    # A second stop of a stopped container: 304, which the CLI reports as success.
    assert d.docker("stop", n2).stdout.strip() == n2
    assert d.api("POST", f"/containers/{n2}/stop").status == 304


def test_init(d: Daemon, uname: Name) -> None:
    out = _run(d, "--rm", "--init", "busybox", "sh", "-c", "cat /proc/1/comm; echo $$").stdout.split()
    assert out[0] != "sh" and out[1] != "1", out
    assert _run(d, "--rm", "--init", "busybox", "sh", "-c", "exit 5", check=False).returncode == 5
    n = uname("init")
    _run(d, "-d", "--init", "--name", n, "busybox", "sleep", "300")
    assert fmt(d, n, "{{.HostConfig.Init}}") == "true"
    t0 = time.monotonic()
    d.docker("stop", n)  # the init forwards SIGTERM to sleep, which dies at once
    assert time.monotonic() - t0 < 5
    assert fmt(d, n, "{{.State.ExitCode}}") == "143"


# --------------------------------------------------------------------------- ps


@pytest.fixture
def ps_set(d: Daemon, uname: Name) -> dict[str, str]:
    """Four containers with one label, created in this order: exited 3, exited 0,
    running, created."""
    lbl = f"grp={uname('ps')}"
    names = {k: uname(k) for k in ("ex3", "ex0", "run", "new")}
    ids = {}
    ids["ex3"] = _run(d, "-d", "-l", lbl, "--name", names["ex3"], "busybox", "sh", "-c", "exit 3").stdout.strip()
    ids["ex0"] = _run(d, "-d", "-l", lbl, "--name", names["ex0"], "busybox", "true").stdout.strip()
    ids["run"] = _run(d, "-d", "-l", lbl, "--name", names["run"], "busybox", "sleep", "300").stdout.strip()
    ids["new"] = d.docker("create", "-l", lbl, "--name", names["new"], "busybox", "true").stdout.strip()
    for k in ("ex3", "ex0"):
        wait_for(lambda k=k: status(d, names[k]) == "exited", what=f"{k} to exit")
    return {"label": lbl, **{f"{k}.name": v for k, v in names.items()}, **{f"{k}.id": v for k, v in ids.items()}}


def _ps(d: Daemon, *args: str) -> list[str]:
    return d.docker("ps", "--format", "{{.Names}}", *args).stdout.split()


def test_ps_basic(d: Daemon, ps_set: dict[str, str]) -> None:
    lbl = ["--filter", f"label={ps_set['label']}"]
    assert _ps(d, *lbl) == [ps_set["run.name"]]
    assert _ps(d, "-a", *lbl) == [ps_set[f"{k}.name"] for k in ("new", "run", "ex0", "ex3")]  # newest first
    q = d.docker("ps", "-a", "-q", *lbl).stdout.split()
    assert q == [ps_set[f"{k}.id"][:12] for k in ("new", "run", "ex0", "ex3")]
    q = d.docker("ps", "-a", "-q", "--no-trunc", *lbl).stdout.split()
    assert q == [ps_set[f"{k}.id"] for k in ("new", "run", "ex0", "ex3")]
    assert _ps(d, "-a", "-n", "2", *lbl) == [ps_set["new.name"], ps_set["run.name"]]
    assert _ps(d, "-l", *lbl) == [ps_set["new.name"]]
    table = d.docker("ps", "-a", *lbl).stdout.splitlines()
    assert table[0].split() == ["CONTAINER", "ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS", "NAMES"]
    row = next(ln for ln in table if ln.endswith(ps_set["run.name"]))
    assert row.split()[1] == "busybox" and '"sleep 300"' in row and " Up " in row
    row = next(ln for ln in table if ln.endswith(ps_set["ex3.name"]))
    assert "Exited (3)" in row
    row = next(ln for ln in table if ln.endswith(ps_set["new.name"]))
    assert "Created" in row


def test_ps_format_and_size(d: Daemon, ps_set: dict[str, str]) -> None:
    lbl = ["--filter", f"label={ps_set['label']}"]
    out = d.docker("ps", "-a", *lbl, "--format", "{{.ID}}|{{.Image}}|{{.Command}}|{{.Status}}|{{.Names}}").stdout
    rows = {ln.split("|")[4]: ln.split("|") for ln in out.splitlines()}
    run = rows[ps_set["run.name"]]
    assert run[0] == ps_set["run.id"][:12] and run[1] == "busybox" and run[2] == '"sleep 300"'
    assert run[3].startswith("Up ")
    assert rows[ps_set["ex3.name"]][3].startswith("Exited (3) ")
    js = [json.loads(ln) for ln in d.docker("ps", "-a", *lbl, "--format", "{{json .}}").stdout.splitlines()]
    assert {j["Names"] for j in js} == {ps_set[f"{k}.name"] for k in ("ex3", "ex0", "run", "new")}
    assert all(not j["Image"].startswith("docker.io/") for j in js)
    sizes = d.docker("ps", "-a", "-s", *lbl, "--format", "{{.Size}}").stdout.splitlines()
    assert len(sizes) == 4 and all("virtual" in s for s in sizes), sizes
    assert "SIZE" in d.docker("ps", "-s", *lbl).stdout.splitlines()[0]
    full = d.docker("ps", "-a", "--no-trunc", *lbl, "--format", "{{.ID}}").stdout.split()
    assert all(HEX64.match(i) for i in full)


def test_ps_filters(d: Daemon, ps_set: dict[str, str], busybox: str) -> None:
    lbl = f"label={ps_set['label']}"

    def names(*flt: str) -> set[str]:
        args = ["-a", "--filter", lbl]
        for f in flt:
            args += ["--filter", f]
        return set(_ps(d, *args))

    n = {k: ps_set[f"{k}.name"] for k in ("ex3", "ex0", "run", "new")}
    assert names(f"id={ps_set['run.id'][:10]}") == {n["run"]}
    assert names(f"name={n['ex3']}") == {n["ex3"]}
    assert names(f"name=^{n['ex0']}$") == {n["ex0"]}
    assert names("status=exited") == {n["ex3"], n["ex0"]}
    assert names("status=running") == {n["run"]}
    assert names("status=created") == {n["new"]}
    assert names("status=exited", "status=created") == {n["ex3"], n["ex0"], n["new"]}
    assert names("exited=3") == {n["ex3"]}
    assert names("exited=0") == {n["ex0"]}
    assert names("ancestor=busybox") == set(n.values())
    assert names("ancestor=busybox:latest") == set(n.values())
    assert names(f"ancestor={busybox[7:19]}") == set(n.values())
    assert names(f"before={n['run']}") == {n["ex3"], n["ex0"]}
    assert names(f"since={n['ex0']}") == {n["run"], n["new"]}
    assert names("label=nope") == set()
    r = d.docker("ps", "--filter", "bogus=1", check=False)
    assert r.returncode == 1 and r.stderr.strip() == "Error response from daemon: Invalid filter 'bogus'", r


class _KeptAlive:
    """One keep-alive connection sending the same GET bytes each time: what the daemon replays
    (api/replay.py) once it has answered them twice with nothing changed in between."""

    def __init__(self, d: Daemon, path: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(30)
        self.sock.connect(str(d.sock))
        self.request = f"GET {path} HTTP/1.1\r\nHost: docker\r\nUser-Agent: kept\r\n\r\n".encode()
        self.buf = b""

    def get(self) -> Any:
        self.sock.sendall(self.request)
        while b"\r\n\r\n" not in self.buf:
            self.buf += self.sock.recv(65536)
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 "), head
        length = int(re.search(rb"(?i)\r\ncontent-length: (\d+)", head).group(1))  # type: ignore[union-attr]
        while len(self.buf) < length:
            self.buf += self.sock.recv(65536)
        body, self.buf = self.buf[:length], self.buf[length:]
        return json.loads(body)

    def close(self) -> None:
        self.sock.close()


def _replayed(d: Daemon) -> int:
    return int(d.api("GET", "/debug/vars").json()["replay"]["replayed"])


def test_ps_and_network_inspect_show_every_change_while_answers_are_replayed(d: Daemon, uname: Name) -> None:
    """The same GET sent again and again is answered from the bytes of its last answer while nothing
    it shows has changed: each change must be in the very next answer all the same, whether an API
    call made it (the CLI's own `docker ps` is replayed across its runs too) or the container did
    (an exit, seen first in the event stream), and the STATUS text's seconds must go on counting."""
    n, net, other = uname("kept"), uname("keptnet"), uname("moved")
    rows = _KeptAlive(d, f'/v1.41/containers/json?all=1&filters={{"name":["{n}"]}}'.replace('"', "%22"))
    members = _KeptAlive(d, f"/v1.41/networks/{net}")
    events = subprocess.Popen(["docker", "events", "--filter", f"container={n}", "--filter", "event=die",
                               "--format", "{{.Action}}"], env=d.env, stdout=subprocess.PIPE, text=True)
    cli = ["ps", "-a", "--filter", f"name={n}", "--format", "{{.Names}}|{{.Status}}|{{.Networks}}"]

    def ps() -> str:
        return d.docker(*cli).stdout.strip()

    def hot(get: Callable[[], Any]) -> Any:
        get()
        get()
        return get()  # the third of three in a row is a replay when nothing changed

    try:
        before = _replayed(d)
        d.docker("network", "create", net)
        d.docker("run", "-d", "--name", n, "busybox", "sh", "-c",
                 "trap 'exit 3' USR1; while :; do sleep 0.1; done")
        [row] = hot(rows.get)
        assert row["State"] == "running" and row["Status"] == "Up Less than a second", row
        assert ps() == ps() == f"{n}|Up Less than a second|bridge"
        time.sleep(1.2)
        assert hot(rows.get)[0]["Status"] == "Up 1 second"  # a kept answer lasts only as long as its text
        assert hot(members.get)["Containers"] == {}
        d.docker("network", "connect", net, n)
        assert [m["Name"] for m in members.get()["Containers"].values()] == [n]
        assert sorted(rows.get()[0]["NetworkSettings"]["Networks"]) == sorted(["bridge", net])
        d.docker("pause", n)
        assert rows.get()[0]["Status"].endswith("(Paused)")
        _, status_, networks = ps().split("|")
        assert status_.endswith("(Paused)") and sorted(networks.split(",")) == sorted(["bridge", net])
        d.docker("unpause", n)
        assert hot(rows.get)[0]["State"] == "running"
        d.docker("rename", n, other)
        assert rows.get() == []  # the filter is by the old name
        d.docker("rename", other, n)
        assert hot(rows.get)[0]["Names"] == ["/" + n]
        # The container ends by itself (a signal from outside the engine): no API call of ours changed it.
        pid = int(fmt(d, n, "{{.State.Pid}}"))
        os.kill(pid, signal.SIGUSR1)
        assert events.stdout is not None and events.stdout.readline().strip() == "die"
        [row] = rows.get()
        assert row["State"] == "exited" and row["Status"].startswith("Exited (3) "), row
        assert members.get()["Containers"] == {}
        assert ps().startswith(f"{n}|Exited (3) ")
        assert _replayed(d) > before + 5  # the answers above were replayed, not all made again
        d.docker("rm", n)
        assert rows.get() == [] and ps() == ""
    finally:
        events.kill()
        events.wait()
        rows.close()
        members.close()
        d.docker("rm", "-f", n, other, check=False)
        d.docker("network", "rm", net, check=False)


# --------------------------------------------------------------------------- inspect


def test_inspect_fields(d: Daemon, uname: Name, busybox: str) -> None:
    n = uname("insp")
    cid = _run(d, "-d", "--name", n, "-e", "X=1", "-l", "k=v", "-w", "/tmp", "-h", "ih",
               "busybox", "sleep", "300").stdout.strip()
    info = inspect(d, n)
    assert info["Id"] == cid
    assert info["Name"] == f"/{n}"
    assert info["Image"] == busybox
    assert info["Path"] == "sleep" and info["Args"] == ["300"]
    assert RFC3339.match(info["Created"])
    assert info["RestartCount"] == 0
    st = info["State"]
    for key in ("Status", "Running", "Paused", "Restarting", "OOMKilled", "Dead", "Pid", "ExitCode",
                "Error", "StartedAt", "FinishedAt"):
        assert key in st, f"State.{key} missing"
    assert st["Status"] == "running" and st["Running"] is True and st["Paused"] is False
    assert RFC3339.match(st["StartedAt"]) and st["FinishedAt"] == "0001-01-01T00:00:00Z"
    cfg = info["Config"]
    assert cfg["Image"] == "busybox"
    assert cfg["Cmd"] == ["sleep", "300"]
    assert "X=1" in cfg["Env"] and DEFAULT_PATH in cfg["Env"]
    assert cfg["Labels"] == {"k": "v"}
    assert cfg["WorkingDir"] == "/tmp"
    assert cfg["Hostname"] == "ih"
    hc = info["HostConfig"]
    assert hc["RestartPolicy"]["Name"] in ("no", "")
    assert hc["AutoRemove"] is False
    # what the CLI leaves empty, dockerd fills in
    assert (hc["IpcMode"], hc["LogConfig"]["Type"], hc["MemorySwappiness"]) == ("private", "json-file", None)
    assert info["ExecIDs"] is None
    d.docker("exec", "-d", n, "sleep", "5")
    assert len(inspect(d, n)["ExecIDs"]) == 1
    assert "NetworkMode" in hc
    assert info["Mounts"] == []
    assert "Networks" in info["NetworkSettings"]
    assert info["Driver"] in ("overlay2", "overlay", "vfs")
    log_path = Path(info["LogPath"])
    assert log_path.is_absolute() and str(log_path).startswith(str(d.data_root)), log_path
    # -f templates the CLI users write.
    assert fmt(d, n, "{{.State.Running}} {{.State.ExitCode}} {{.RestartCount}}") == "true 0 0"
    assert fmt(d, n, "{{.Config.Image}}|{{.Name}}|{{index .Config.Labels \"k\"}}") == f"busybox|/{n}|v"
    assert fmt(d, n, "{{range .Config.Env}}{{println .}}{{end}}").count("X=1") == 1
    assert fmt(d, n, "{{json .Mounts}}") == "[]"
    assert int(fmt(d, n, "{{.State.Pid}}")) == st["Pid"]
    s = json.loads(d.docker("inspect", "-s", n).stdout)[0]
    assert "SizeRw" in s and "SizeRootFs" in s and s["SizeRootFs"] > 0
    r = d.docker("inspect", "cap-nope", check=False)
    assert r.returncode == 1 and r.stdout.strip() == "[]" and "No such object: cap-nope" in r.stderr


def test_docker_py_containers(d: Daemon, uname: Name) -> None:
    c = d.client
    out = c.containers.run("busybox", ["sh", "-c", "echo py-out"], remove=True)
    assert out == b"py-out\n"
    ctr = c.containers.run("busybox", ["sleep", "300"], detach=True, name=uname("py"))
    ctr.reload()
    assert ctr.status == "running" and ctr.name == uname("py")
    ctr.kill()
    assert ctr.wait(timeout=30)["StatusCode"] == 137
    ctr.remove()


# --------------------------------------------------------------------------- logs


def test_logs_basic_and_json_file(d: Daemon, uname: Name) -> None:
    n = uname("logs")
    # The pauses order the lines across the two pipes (stdout and stderr are read
    # separately, by any engine); without them the order in the log is a race.
    _run(d, "--name", n, "busybox", "sh", "-c", "echo out1; sleep 0.2; echo err1 >&2; sleep 0.2; echo out2")
    r = d.docker("logs", n)
    assert (r.stdout, r.stderr) == ("out1\nout2\n", "err1\n")
    r = d.docker("logs", "--tail", "1", n)
    assert (r.stdout, r.stderr) == ("out2\n", "")
    assert d.docker("logs", "--tail", "0", n).stdout == ""
    assert d.docker("logs", "--tail", "abc", n).stdout == "out1\nout2\n"  # not a number: all, as dockerd
    stamped = d.docker("logs", "-t", n).stdout.splitlines()
    assert len(stamped) == 2
    for ln, want in zip(stamped, ("out1", "out2"), strict=True):
        ts, _, text = ln.partition(" ")
        assert RFC3339.match(ts) and text == want, ln
    details = d.docker("logs", "--details", n).stdout
    assert details == " out1\n out2\n", repr(details)
    # On disk: dockerd's json-file format, one JSON object per line.
    recs = [json.loads(ln) for ln in Path(fmt(d, n, "{{.LogPath}}")).read_text().splitlines()]
    assert [(r["stream"], r["log"]) for r in recs] == [("stdout", "out1\n"), ("stderr", "err1\n"),
                                                       ("stdout", "out2\n")]
    assert all(RFC3339.match(r["time"]) for r in recs)
    r = d.docker("logs", "cap-nope", check=False)
    assert r.returncode == 1 and "No such container: cap-nope" in r.stderr


def _parse_ts(ts: str) -> datetime:
    # RFC3339Nano -> datetime (microseconds are enough here).
    m = re.match(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?Z$", ts)
    assert m, ts
    frac = (m.group(2) or "0")[:6].ljust(6, "0")
    return datetime.fromisoformat(m.group(1) + "." + frac + "+00:00")


def test_logs_since_until(d: Daemon, uname: Name) -> None:
    n = uname("since")
    _run(d, "--name", n, "busybox", "sh", "-c", "echo early; sleep 2; echo late")
    lines = d.docker("logs", "-t", n).stdout.splitlines()
    t_early, t_late = (_parse_ts(ln.split(" ", 1)[0]) for ln in lines)
    assert t_late - t_early >= timedelta(seconds=1.5)
    mid = t_early + (t_late - t_early) / 2
    since = f"{mid.timestamp():.3f}"
    assert d.docker("logs", "--since", since, n).stdout == "late\n"
    assert d.docker("logs", "--until", since, n).stdout == "early\n"
    assert d.docker("logs", "--since", mid.strftime("%Y-%m-%dT%H:%M:%S.%fZ"), n).stdout == "late\n"


def test_logs_follow(d: Daemon, uname: Name) -> None:
    n = uname("follow")
    _run(d, "-d", "--name", n, "busybox", "sh", "-c",
         "echo first; while [ ! -e /tmp/go ]; do sleep 0.1; done; echo second; sleep 0.5; echo third")
    wait_for(lambda: "first" in d.docker("logs", n).stdout, what="first line")
    p = subprocess.Popen(["timeout", "-s", "KILL", "30", "docker", "logs", "-f", n], env=d.env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
    try:
        assert p.stdout is not None
        assert p.stdout.readline() == "first\n"
        # Lines written after `logs -f` started must stream in, and the command must end
        # by itself when the container exits. The flag file is made from the host side
        # (through the container's root) so this test does not depend on `docker exec`.
        pid = int(fmt(d, n, "{{.State.Pid}}"))
        Path(f"/proc/{pid}/root/tmp/go").touch()
        rest, err = p.communicate(timeout=30)
    finally:
        p.kill()
    assert rest == "second\nthird\n", (rest, err)
    assert p.returncode == 0
    r = d.docker("logs", "-f", "--tail", "1", n, timeout=20)
    assert r.stdout == "third\n"


# --------------------------------------------------------------------------- kill / restart / rm


def test_kill(d: Daemon, uname: Name) -> None:
    n = uname("kill")
    _run(d, "-d", "--name", n, "busybox", "sh", "-c",
         "trap 'echo got-hup' HUP; echo ready; while true; do sleep 0.1; done")
    wait_for(lambda: "ready" in d.docker("logs", n).stdout, what="ready")
    assert d.docker("kill", "-s", "HUP", n).stdout.strip() == n
    wait_for(lambda: "got-hup" in d.docker("logs", n).stdout, what="HUP handled")
    assert status(d, n) == "running"
    assert d.docker("kill", n).stdout.strip() == n
    wait_for(lambda: status(d, n) == "exited", what="exit after kill")
    assert fmt(d, n, "{{.State.ExitCode}}") == "137"
    cid = inspect(d, n)["Id"]
    r = d.docker("kill", n, check=False)
    assert r.returncode == 1
    assert f"Cannot kill container: {n}: Container {cid} is not running" in r.stderr, r


def test_restart(d: Daemon, uname: Name) -> None:
    n = uname("restart")
    _run(d, "-d", "--name", n, "busybox", "sleep", "300")
    before = inspect(d, n)["State"]
    assert d.docker("restart", "-t", "0", n).stdout.strip() == n
    after = inspect(d, n)["State"]
    assert after["Running"] and after["Pid"] != before["Pid"] and after["StartedAt"] != before["StartedAt"]
    assert not pid_alive(before["Pid"])
    d.docker("stop", "-t", "0", n)
    d.docker("restart", n)
    assert status(d, n) == "running"


def test_rm(d: Daemon, uname: Name) -> None:
    n = uname("rm")
    cid = _run(d, "-d", "--name", n, "busybox", "sleep", "300").stdout.strip()
    pid = int(fmt(d, n, "{{.State.Pid}}"))
    r = d.docker("rm", n, check=False)
    assert r.returncode == 1
    assert (f"You cannot remove a running container {cid}. Stop the container before attempting removal "
            "or force remove") in r.stderr, r
    assert d.docker("rm", "-f", n).stdout.strip() == n
    assert not pid_alive(pid)
    assert not (d.data_root / "containers" / cid).exists()
    r = d.docker("rm", n, check=False)
    assert r.returncode == 1 and f"No such container: {n}" in r.stderr


def test_container_prune(d: Daemon, uname: Name) -> None:
    lbl = f"prune={uname('p')}"
    ids = {_run(d, "-d", "-l", lbl, "busybox", "true").stdout.strip() for _ in range(2)}
    for cid in ids:
        wait_for(lambda cid=cid: status(d, cid) == "exited", what="exit")
    other = d.docker("create", "busybox", "true").stdout.strip()  # no label: must stay
    running = _run(d, "-d", "-l", lbl, "busybox", "sleep", "300").stdout.strip()  # running: must stay
    r = d.docker("container", "prune", "-f", "--filter", f"label={lbl}")
    lines = r.stdout.splitlines()
    assert lines[0] == "Deleted Containers:"
    assert set(lines[1:3]) == ids
    assert lines[-1].startswith("Total reclaimed space:")
    left = set(d.docker("ps", "-aq", "--no-trunc").stdout.split())
    assert other in left and running in left and not ids & left
    r = d.docker("container", "prune", "-f", "--filter", f"label={lbl}")
    assert "Deleted Containers:" not in r.stdout and "Total reclaimed space: 0B" in r.stdout
    d.docker("rm", "-f", other, running)


def test_rename(d: Daemon, uname: Name) -> None:
    a, b, c = uname("ren-a"), uname("ren-b"), uname("ren-c")
    cid = d.docker("create", "--name", a, "busybox", "true").stdout.strip()
    other = d.docker("create", "--name", c, "busybox", "true").stdout.strip()
    d.docker("rename", a, b)
    assert fmt(d, cid, "{{.Name}}") == f"/{b}"
    assert d.docker("inspect", a, check=False).returncode == 1
    r = d.docker("rename", b, c, check=False)
    assert r.returncode == 1 and f'The container name "/{c}" is already in use by container "{other}"' in r.stderr
    r = d.docker("rename", "cap-nope", "cap-x", check=False)
    assert r.returncode == 1 and "No such container: cap-nope" in r.stderr
    # The old name is free again.
    d.docker("create", "--name", a, "busybox", "true")


def test_wait(d: Daemon, uname: Name) -> None:
    n = uname("wait")
    _run(d, "-d", "--name", n, "busybox", "sh", "-c", "sleep 1; exit 9")
    assert d.docker("wait", n).stdout.strip() == "9"
    assert d.docker("wait", n).stdout.strip() == "9"
    r = d.docker("wait", "cap-nope", check=False)
    assert r.returncode == 1 and "No such container: cap-nope" in r.stderr


def test_top(d: Daemon, uname: Name) -> None:
    n = uname("top")
    _run(d, "-d", "--name", n, "busybox", "sleep", "300")
    pid = fmt(d, n, "{{.State.Pid}}")
    out = d.docker("top", n).stdout.splitlines()
    assert out[0].split() == ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"]
    assert len(out) == 2
    row = out[1].split()
    assert row[0] == "root" and row[1] == pid and row[-2:] == ["sleep", "300"]
    out = d.docker("top", n, "-o", "pid,comm").stdout.splitlines()
    assert out[0].split() == ["PID", "COMMAND"] and out[1].split() == [pid, "sleep"]
    d.docker("stop", "-t", "0", n)
    r = d.docker("top", n, check=False)
    assert r.returncode == 1 and "is not running" in r.stderr


def test_diff(d: Daemon, uname: Name) -> None:
    n = uname("diff")
    _run(d, "--name", n, "busybox", "sh", "-c",
         "echo x > /tmp/new; rm /etc/group; mkdir /root/d; echo y >> /etc/passwd")
    out = set(d.docker("diff", n).stdout.splitlines())
    assert out == {"C /tmp", "A /tmp/new", "C /etc", "D /etc/group", "C /etc/passwd", "C /root", "A /root/d"}, out


# --------------------------------------------------------------------------- exit codes


def test_exit_code_127(d: Daemon) -> None:
    r = _run(d, "--rm", "busybox", "/nonexistent-binary", check=False)
    assert r.returncode == 127, r
    assert 'exec: "/nonexistent-binary": stat /nonexistent-binary: no such file or directory' in r.stderr
    assert r.stderr.startswith("docker: Error response from daemon: ")
    r = _run(d, "--rm", "busybox", "nonexistent-cmd", check=False)
    assert r.returncode == 127, r
    assert 'exec: "nonexistent-cmd": executable file not found in $PATH' in r.stderr


def test_exit_code_126(d: Daemon, uname: Name) -> None:
    r = _run(d, "--rm", "busybox", "/etc/not-executable", check=False)
    assert r.returncode == 126, r
    assert 'exec: "/etc/not-executable": permission denied' in r.stderr
    r = _run(d, "--rm", "busybox", "/tmp", check=False)
    assert r.returncode == 126, r
    # The container that failed to start stays, in "created" with the error recorded.
    n = uname("e126")
    r = _run(d, "--name", n, "busybox", "/etc/not-executable", check=False)
    assert r.returncode == 126
    st = inspect(d, n)["State"]
    assert st["Status"] == "created" and st["ExitCode"] == 126 and "permission denied" in st["Error"]


def test_exec_format_errors_are_the_commands_failure(d: Daemon, tmp_path: Path) -> None:
    """A file that exists and is executable but that the kernel will not run (another
    architecture's binary, a missing interpreter): started, the reason on stderr, exit 1, as
    with runc (`exec /x: exec format error`), not a failed start."""
    (tmp_path / "noshebang").write_text("echo no shebang\n")
    (tmp_path / "badinterp").write_text("#!/nonexistent/interp\necho x\n")
    for f in ("noshebang", "badinterp"):
        (tmp_path / f).chmod(0o755)
    for f, reason in (("noshebang", "exec format error"), ("badinterp", "no such file or directory")):
        r = _run(d, "--rm", "-v", f"{tmp_path}:/f", "busybox", f"/f/{f}", check=False)
        assert r.returncode == 1 and f"exec /f/{f}: {reason}" in r.stderr, r


def test_exit_code_125(d: Daemon) -> None:
    r = _run(d, "--name", "bad name!", "busybox", "true", check=False)
    assert r.returncode == 125, r
    assert ("docker: Error response from daemon: Invalid container name (bad name!), only "
            "[a-zA-Z0-9][a-zA-Z0-9_.-] are allowed") in r.stderr


# --------------------------------------------------------------------------- a real container


def test_namespaces(d: Daemon) -> None:
    script = "echo $$; hostname; for n in pid mnt uts ipc; do readlink /proc/self/ns/$n; done"
    out = _run(d, "--rm", "busybox", "sh", "-c", script).stdout.splitlines()
    assert out[0] == "1", "the command is not PID 1 in its own pid namespace"
    assert HEX12.match(out[1]), out[1]
    for kind, line in zip(("pid", "mnt", "uts", "ipc"), out[2:], strict=True):
        assert line != os.readlink(f"/proc/self/ns/{kind}"), f"container shares the host's {kind} namespace"
    ps = _run(d, "--rm", "busybox", "ps", "-o", "pid,comm").stdout.splitlines()
    assert len(ps) == 2 and ps[1].split() == ["1", "ps"], ps


def test_network_none_and_host(d: Daemon) -> None:
    links = _run(d, "--rm", "--network", "none", "busybox", "ip", "-o", "link").stdout.splitlines()
    assert len(links) == 1 and ": lo:" in links[0], links
    host = _run(d, "--rm", "--network", "host", "busybox", "hostname").stdout.strip()
    assert host == socket.gethostname()
    out = _run(d, "--rm", "--network", "host", "busybox", "readlink", "/proc/self/ns/net").stdout.strip()
    assert out == os.readlink("/proc/self/ns/net")


def test_proc_and_sys_protection(d: Daemon) -> None:
    script = (
        "grep -E ' /sys ' /proc/mounts | grep -q '[ ,]ro[ ,]' && echo sys-ro; "
        "touch /sys/x 2>/dev/null || echo sys-nowrite; "
        "echo 1 > /proc/sysrq-trigger 2>/dev/null || echo sysrq-nowrite; "
        "echo 1 > /proc/sys/kernel/domainname 2>/dev/null || echo procsys-nowrite; "
        "[ \"$(head -c 16 /proc/kcore | wc -c)\" = 0 ] && echo kcore-masked; "
        "[ -z \"$(cat /proc/keys 2>/dev/null)\" ] && echo keys-masked; "
        "[ -z \"$(cat /proc/timer_list 2>/dev/null)\" ] && echo timer-masked; "
        "[ -z \"$(ls /sys/firmware 2>/dev/null)\" ] && echo firmware-masked; "
        "[ -z \"$(ls /proc/acpi 2>/dev/null)\" ] && echo acpi-masked; "
        "grep -E ' /proc/(bus|fs|irq|sys) ' /proc/mounts | grep -c '[ ,]ro[ ,]'"
    )
    out = _run(d, "--rm", "busybox", "sh", "-c", script).stdout.split()
    for want in ("sys-ro", "sys-nowrite", "sysrq-nowrite", "procsys-nowrite", "kcore-masked", "keys-masked",
                 "timer-masked", "firmware-masked", "acpi-masked"):
        assert want in out, f"{want} missing: {out}"
    assert out[-1] == "4", f"/proc/bus, fs, irq, sys not all read-only: {out}"


def test_dev_and_special_mounts(d: Daemon) -> None:
    script = (
        "for f in null zero full random urandom tty; do [ -c /dev/$f ] && echo $f; done; "
        "[ -e /dev/sda ] || [ -e /dev/vda ] || echo no-disks; "
        "echo x > /dev/null && echo null-ok; head -c 4 /dev/urandom | wc -c; "
        "grep -E ' /dev/(pts|shm|mqueue) ' /proc/mounts | cut -d' ' -f2,3 | sort; "
        "[ -L /dev/fd ] && [ -L /dev/stdin ] && [ -e /dev/ptmx ] && echo links-ok; "
        "[ -s /etc/resolv.conf ] || [ -e /etc/resolv.conf ] && echo resolv-ok"
    )
    out = _run(d, "--rm", "busybox", "sh", "-c", script).stdout.splitlines()
    for want in ("null", "zero", "full", "random", "urandom", "tty", "no-disks", "null-ok", "4",
                 "/dev/mqueue mqueue", "/dev/pts devpts", "/dev/shm tmpfs", "links-ok", "resolv-ok"):
        assert want in out, f"{want!r} missing: {out}"
    shm = _run(d, "--rm", "busybox", "df", "-k", "/dev/shm").stdout.splitlines()[1].split()
    assert shm[1] == "65536", f"/dev/shm is not dockerd's 64M: {shm}"


def test_default_capabilities(d: Daemon) -> None:
    out = _run(d, "--rm", "busybox", "grep", "-E", "^Cap(Eff|Prm|Bnd)", "/proc/self/status").stdout
    caps = dict(ln.split(":\t") for ln in out.splitlines())
    assert caps == {"CapEff": DEFAULT_CAPS, "CapPrm": DEFAULT_CAPS, "CapBnd": DEFAULT_CAPS}, caps
    out = _run(d, "--rm", "-u", "nobody", "busybox", "grep", "CapEff", "/proc/self/status").stdout
    assert out.split() == ["CapEff:", "0000000000000000"]
    r = _run(d, "--rm", "busybox", "sh", "-c", "mount -t tmpfs t /mnt", check=False)
    assert r.returncode != 0, "mount works without CAP_SYS_ADMIN?"


def test_copy_on_write_isolation(d: Daemon, uname: Name, busybox: str) -> None:
    a, b = uname("cow-a"), uname("cow-b")
    cid_a = _run(d, "-d", "--name", a, "busybox", "sh", "-c",
                 "echo hacked >> /etc/passwd; rm /bin/ls; echo mine > /tmp/a; sleep 300").stdout.strip()
    wait_for(lambda: "A /tmp/a" in d.docker("diff", a).stdout, what="container a to write")
    _run(d, "-d", "--name", b, "busybox", "sleep", "300")
    script = "grep -c hacked /etc/passwd; [ -e /bin/ls ] && echo has-ls; cat /tmp/a 2>/dev/null || echo no-a"
    out = _run(d, "--rm", "busybox", "sh", "-c", script, check=False).stdout.split()
    assert out == ["0", "has-ls", "no-a"], "a container's writes leaked into the image"
    pid_b = int(fmt(d, b, "{{.State.Pid}}"))
    root_b = Path(f"/proc/{pid_b}/root")
    assert "hacked" not in (root_b / "etc/passwd").read_text()
    assert (root_b / "bin/ls").exists() and not (root_b / "tmp/a").exists()
    # On the host, the modified passwd exists only in container a's own directories
    # (its upper dir, its merged mount), never in a shared image layer.
    hits = subprocess.run(["grep", "-rl", "--include=passwd", "hacked", str(d.data_root)],
                          capture_output=True, text=True).stdout.split()
    assert hits and all(cid_a in h for h in hits), hits
