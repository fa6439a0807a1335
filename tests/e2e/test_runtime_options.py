"""HostConfig options the runtime applies: --read-only, --security-opt, --ulimit, --group-add,
--oom-score-adj, --pid/--ipc host, --device, --log-driver / --log-opt."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.e2e.helpers import inspect, wait_for
from tests.helpers import Daemon

pytestmark = pytest.mark.e2e


def _create(d: Daemon, name: str, host_config: dict) -> tuple[int, str]:
    r = d.api("POST", f"/v1.50/containers/create?name={name}",
              {"Image": "busybox:latest", "Cmd": ["true"], "HostConfig": host_config})
    return r.status, r.message() if r.status >= 400 else r.text


def test_read_only_rootfs(d: Daemon, uname) -> None:
    name = uname("ro")
    d.docker("volume", "create", name)
    script = ("touch /x 2>&1; touch /etc/hosts 2>&1; touch /dev/shm/a && echo shm-ok; touch /vol/a && echo vol-ok;"
              " touch /tm/a && echo tmpfs-ok; cat /proc/self/status >/dev/null && echo proc-ok; pwd")
    r = d.docker("run", "--rm", "--read-only", "-v", f"{name}:/vol", "--tmpfs", "/tm", "-w", "/newdir",
                 "busybox", "sh", "-c", script, check=False)
    out = r.stdout
    assert "touch: /x: Read-only file system" in out, out
    assert "touch: /etc/hosts: Read-only file system" in out, out  # dockerd: name files follow --read-only
    for ok in ("shm-ok", "vol-ok", "tmpfs-ok", "proc-ok", "/newdir"):  # -w was created before ro
        assert ok in out.split(), out
    # without the flag the rootfs stays writable
    assert d.docker("run", "--rm", "busybox", "sh", "-c", "touch /x && echo rw").stdout.strip() == "rw"
    d.docker("volume", "rm", name)


def test_no_new_privileges(d: Daemon, uname) -> None:
    status = "grep NoNewPrivs /proc/self/status"
    assert d.docker("run", "--rm", "busybox", "sh", "-c", status).stdout.split() == ["NoNewPrivs:", "0"]
    for opt in ("no-new-privileges", "no-new-privileges:true", "no-new-privileges=true"):
        out = d.docker("run", "--rm", "--security-opt", opt, "busybox", "sh", "-c", status).stdout
        assert out.split() == ["NoNewPrivs:", "1"], (opt, out)
    out = d.docker("run", "--rm", "--security-opt", "no-new-privileges=false", "busybox", "sh", "-c", status).stdout
    assert out.split() == ["NoNewPrivs:", "0"]
    for opt, msg in (("bogus", 'invalid --security-opt 1: "bogus"'), ("bogus=1", 'invalid --security-opt 2: "bogus=1"'),
                     ("no-new-privileges:maybe", 'invalid --security-opt 2: "no-new-privileges:maybe"')):
        code, text = _create(d, uname("so"), {"SecurityOpt": [opt]})
        assert code == 400 and msg in text, (opt, code, text)


def test_exec_inherits_privileges_limits_and_groups(d: Daemon, uname) -> None:
    """As dockerd's exec process: the container's no-new-privileges, ulimits and --group-add."""
    n = uname("execinh")
    d.docker("run", "-d", "--name", n, "--security-opt", "no-new-privileges", "--ulimit", "nofile=1024:2048",
             "--group-add", "1234", "busybox", "sleep", "60")
    try:
        out = d.docker("exec", "-u", "nobody", n, "sh", "-c",
                       "grep NoNewPrivs /proc/self/status; ulimit -n; ulimit -Hn; id -G").stdout.split()
        assert out == ["NoNewPrivs:", "1", "1024", "2048", "65534", "1234"], out
    finally:
        d.docker("rm", "-f", n)


def test_ulimits(d: Daemon, uname) -> None:
    out = d.docker("run", "--rm", "--ulimit", "nofile=1024:2048", "--ulimit", "core=0", "--ulimit",
                   "stack=-1", "busybox", "sh", "-c",
                   "ulimit -n; ulimit -Hn; ulimit -c; ulimit -s").stdout.split()
    assert out == ["1024", "2048", "0", "unlimited"], out
    for ul, msg in (({"Name": "bogus", "Soft": 1, "Hard": 2}, "invalid ulimit type: bogus"),
                    ({"Name": "nofile", "Soft": 3000, "Hard": 2048},
                     "ulimit soft limit must be less than or equal to hard limit: 3000 > 2048")):
        code, text = _create(d, uname("ul"), {"Ulimits": [ul]})
        assert code == 400 and msg in text, (code, text)


def test_group_add(d: Daemon, uname) -> None:
    out = d.docker("run", "--rm", "--group-add", "4242", "--group-add", "nobody", "-u", "1000:1000",
                   "busybox", "sh", "-c", "grep Groups /proc/self/status").stdout.split()
    assert out[0] == "Groups:" and {"1000", "4242", "65534"} <= set(out[1:]), out
    name = uname("ga")
    r = d.docker("run", "--name", name, "--group-add", "nosuchgroup", "busybox", "true", check=False)
    assert r.returncode != 0 and "Unable to find group nosuchgroup" in r.stderr, r


def test_oom_score_adj(d: Daemon, uname) -> None:
    name = uname("oom")
    d.docker("run", "-d", "--name", name, "--oom-score-adj", "500", "busybox", "sleep", "300")
    pid = inspect(d, name)["State"]["Pid"]
    assert Path(f"/proc/{pid}/oom_score_adj").read_text().strip() == "500"
    assert inspect(d, name)["HostConfig"]["OomScoreAdj"] == 500
    # (a negative value needs CAP_SYS_RESOURCE, which a test host may not have)
    out = d.docker("run", "--rm", "--oom-score-adj", "300", "busybox", "cat", "/proc/self/oom_score_adj").stdout
    assert out.strip() == "300"
    d.docker("rm", "-f", name)
    code, text = _create(d, uname("oom"), {"OomScoreAdj": 2000})
    assert code == 400 and "Invalid value 2000, range for oom score adj is [-1000, 1000]" in text


def _children(ppid: int, cmdline: bytes) -> list[int]:
    """Pids whose parent is `ppid` and whose /proc cmdline starts with `cmdline`."""
    found = []
    for p in filter(str.isdigit, os.listdir("/proc")):
        try:
            stat = Path(f"/proc/{p}/stat").read_text()
            if int(stat.rsplit(")", 1)[1].split()[1]) == ppid and \
                    Path(f"/proc/{p}/cmdline").read_bytes().startswith(cmdline):
                found.append(int(p))
        except (OSError, IndexError, ValueError):
            continue  # exited while we looked
    return found


def test_pid_and_ipc_host(d: Daemon, uname) -> None:
    host_pidns = os.readlink("/proc/self/ns/pid")
    host_ipcns = os.readlink("/proc/self/ns/ipc")
    out = d.docker("run", "--rm", "--pid", "host", "--ipc", "host", "busybox", "sh", "-c",
                   "echo $$; readlink /proc/self/ns/pid; readlink /proc/self/ns/ipc").stdout.split()
    assert out[0] != "1" and out[1] == host_pidns and out[2] == host_ipcns, out
    out = d.docker("run", "--rm", "busybox", "sh", "-c", "echo $$; readlink /proc/self/ns/ipc").stdout.split()
    assert out[0] == "1" and out[1] != host_ipcns
    # stop kills what the container started, and only that, when it has no pid namespace
    name = uname("pidhost")
    d.docker("run", "-d", "--name", name, "--pid", "host", "busybox", "sh", "-c", "sleep 300 & sleep 301")
    pid = inspect(d, name)["State"]["Pid"]
    assert pid > 0 and Path(f"/proc/{pid}").exists(), pid
    # The background sleep by its parent, not by its name: other sessions on the host run
    # `sleep 300` too.
    bg = wait_for(lambda: _children(pid, b"sleep\x00300"), what="the container's background sleep")
    d.docker("stop", "-t", "1", name)
    wait_for(lambda: not any(Path(f"/proc/{p}").exists() for p in bg),
             what="the container's background sleep to die")
    assert not Path(f"/proc/{pid}").exists(), f"the container's main process {pid} outlived stop"
    # dockerd's State.SetStopped zeroes the pid of a stopped container.
    assert inspect(d, name)["State"]["Pid"] == 0
    d.docker("rm", name)
    code, text = _create(d, uname("pm"), {"IpcMode": "bogus"})
    assert code == 400 and "Invalid IPC mode: bogus" in text


def test_pid_container_mode(d: Daemon, uname) -> None:
    target = uname("pidt")
    d.docker("run", "-d", "--name", target, "busybox", "sleep", "300")
    out = d.docker("run", "--rm", "--pid", f"container:{target}", "busybox", "ps", "-o", "pid,args").stdout
    assert "sleep 300" in out, out
    pid = inspect(d, target)["State"]["Pid"]
    out = d.docker("run", "--rm", "--ipc", f"container:{target}", "busybox", "readlink", "/proc/self/ns/ipc").stdout
    assert out.strip() == os.readlink(f"/proc/{pid}/ns/ipc")
    d.docker("rm", "-f", target)


def test_device(d: Daemon) -> None:
    out = d.docker("run", "--rm", "--device", "/dev/null:/dev/mynull:rwm", "busybox", "sh", "-c",
                   "ls -l /dev/mynull; echo x > /dev/mynull && echo wrote").stdout
    assert out.startswith("crw-rw-rw-") and "1,   3" in out and "wrote" in out, out
    r = d.docker("run", "--rm", "--device", "/dev/nonexistent-dev", "busybox", "true", check=False)
    assert r.returncode != 0 and "error gathering device information" in r.stderr, r


def test_log_driver_none(d: Daemon, uname) -> None:
    name = uname("lognone")
    assert d.docker("run", "--name", name, "--log-driver", "none", "busybox", "echo", "hi").stdout == "hi\n"
    info = inspect(d, name)
    assert info["HostConfig"]["LogConfig"]["Type"] == "none"
    r = d.docker("logs", name, check=False)
    assert r.returncode != 0 and "configured logging driver does not support reading" in r.stderr, r
    assert d.api("GET", f"/containers/{name}/logs?stdout=1").status == 501
    assert info["LogPath"] == ""  # as dockerd: no log file with the none driver
    d.docker("rm", name)
    default = uname("logdef")
    d.docker("create", "--name", default, "busybox", "true")
    assert inspect(d, default)["HostConfig"]["LogConfig"] == {"Type": "json-file", "Config": {}}
    d.docker("rm", default)
    for hc, msg in (({"LogConfig": {"Type": "bogus"}}, "logger: no log driver named 'bogus' is registered"),
                    ({"LogConfig": {"Type": "json-file", "Config": {"bogus": "1"}}},
                     "unknown log opt 'bogus' for json-file log driver"),
                    ({"LogConfig": {"Type": "json-file", "Config": {"max-size": "abc"}}}, "invalid size: 'abc'"),
                    ({"LogConfig": {"Type": "json-file", "Config": {"max-file": "0"}}},
                     "max-file cannot be less than 1")):
        code, text = _create(d, uname("logbad"), hc)
        assert code == 400 and msg in text, (hc, code, text)


def test_log_rotation(d: Daemon, uname) -> None:
    name = uname("logrot")
    # 300 numbered lines of ~100 bytes each: ~30 KB of records, rotated every 10 KB into 3 files
    d.docker("run", "--name", name, "--log-opt", "max-size=10k", "--log-opt", "max-file=3", "busybox", "sh", "-c",
             "i=0; while [ $i -lt 300 ]; do printf '%04d %s\\n' $i "
             "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx; i=$((i+1)); done")
    log = Path(inspect(d, name)["LogPath"])
    files = sorted(p.name for p in log.parent.iterdir() if p.name.startswith(log.name))
    assert files == [log.name, log.name + ".1", log.name + ".2"], files
    for p in (log, log.with_name(log.name + ".1"), log.with_name(log.name + ".2")):
        assert p.stat().st_size <= 10 * 1024 + 200, (p, p.stat().st_size)
    lines = d.docker("logs", name).stdout.splitlines()
    numbers = [int(line.split()[0]) for line in lines]
    assert numbers == sorted(numbers) and numbers[-1] == 299 and len(numbers) < 300, numbers[:3]
    assert numbers == list(range(numbers[0], 300))  # in order, nothing lost across the files
    tail = d.docker("logs", "--tail", "150", name).stdout.splitlines()
    assert [int(line.split()[0]) for line in tail] == list(range(150, 300))
    d.docker("rm", name)


def test_logs_follow_across_rotation(d: Daemon, uname) -> None:
    name = uname("logfol")
    d.docker("run", "-d", "--name", name, "--log-opt", "max-size=2k", "--log-opt", "max-file=2", "busybox", "sh",
             "-c", "i=0; while [ $i -lt 120 ]; do printf '%04d %s\\n' $i yyyyyyyyyyyyyyyyyyyyyyyyyyyyyy;"
             " i=$((i+1)); sleep 0.01; done")
    lines = d.docker("logs", "-f", name, timeout=60).stdout.splitlines()
    numbers = [int(line.split()[0]) for line in lines]
    assert numbers and numbers[-1] == 119 and numbers == list(range(numbers[0], 120)), numbers
    d.docker("rm", name)
