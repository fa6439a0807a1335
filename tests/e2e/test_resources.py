"""cgroup limits (--memory, --cpus, --pids-limit), OOMKilled, pause/unpause, docker stats."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.e2e.helpers import fmt, inspect
from tests.helpers import Daemon, import_busybox

pytestmark = pytest.mark.e2e


def _cgroup_dirs(cid: str) -> list[Path]:
    """The container's cgroup directories, wherever the hierarchy puts them."""
    # Other engines on the host create and remove cgroups while this walks: a directory that
    # vanished under the walk is tried again.
    for _ in range(5):
        try:
            return [p for p in Path("/sys/fs/cgroup").rglob(cid) if p.is_dir()]
        except FileNotFoundError:
            continue
    return [p for p in Path("/sys/fs/cgroup").rglob(cid) if p.is_dir()]


def test_limits_are_applied_and_cgroup_removed(d: Daemon, uname) -> None:
    name = uname("lim")
    cid = d.docker("run", "-d", "--name", name, "--memory", "64m", "--cpus", "0.5", "--pids-limit", "20",
                   "busybox", "sleep", "300").stdout.strip()
    dirs = _cgroup_dirs(cid)
    assert dirs, "no cgroup for the container"
    values = {}
    for dd in dirs:
        for f in ("memory.limit_in_bytes", "memory.max", "cpu.cfs_quota_us", "cpu.max", "pids.max"):
            if (dd / f).exists():
                values[f] = (dd / f).read_text().strip()
    assert values.get("memory.limit_in_bytes", values.get("memory.max")) == str(64 * 1024 * 1024)
    assert values.get("cpu.cfs_quota_us") == "50000" or values.get("cpu.max", "").startswith("50000 ")
    assert values.get("pids.max") == "20"
    hc = inspect(d, name)["HostConfig"]
    assert hc["Memory"] == 64 * 1024 * 1024 and hc["NanoCpus"] == 500_000_000 and hc["PidsLimit"] == 20
    # exec runs inside the same cgroup as the container (seen through the container's own
    # /sys/fs/cgroup: its cgroup namespace makes /proc/self/cgroup say "/")
    own = d.docker("exec", name, "sh", "-c", "grep -x $$ /sys/fs/cgroup/pids/cgroup.procs && echo in").stdout
    assert own.split()[-1] == "in", own
    # the pids limit holds for the exec'd shell too
    pids_dir = next(dd for dd in dirs if (dd / "pids.max").exists())
    r = d.docker("exec", name, "sh", "-c", "for i in $(seq 40); do sleep 5 & done; wait", check=False)
    # fork(2) fails with EAGAIN in the container's pids cgroup; busybox ash reports it and,
    # not being interactive, exits 2. The cgroup counts the refused forks in pids.events.
    assert r.returncode == 2 and "can't fork: Resource temporarily unavailable" in r.stderr, r
    events = dict(ln.split() for ln in (pids_dir / "pids.events").read_text().splitlines())
    assert int(events["max"]) > 0, events
    d.docker("rm", "-f", name)
    assert not [p for p in dirs if p.exists()], "cgroup left behind after rm"


def test_oom_killed(d: Daemon, uname) -> None:
    name = uname("oom")
    r = d.docker("run", "--name", name, "--memory", "16m", "--memory-swap", "16m", "busybox", "sh", "-c",
                 "x=$(head -c 80000000 /dev/zero | tr '\\0' a); echo survived", check=False)
    assert r.returncode == 137, r
    assert fmt(d, name, "{{.State.OOMKilled}}") == "true"


@pytest.mark.parametrize(("args", "message"), [
    (["--cpus", "100"], "Range of CPUs is from 0.01 to"),
    (["--memory", "1m"], "Minimum memory limit allowed is 6MB"),
    (["--memory", "10m", "--memory-swap", "5m"], "Minimum memoryswap limit should be larger than memory limit"),
])
def test_bad_limits(d: Daemon, uname, args: list[str], message: str) -> None:
    name = uname("bad")
    r = d.docker("run", "--name", name, *args, "busybox", "true", check=False)
    assert r.returncode == 125 and message in r.stderr, r
    assert d.docker("ps", "-aq", "--filter", f"name={name}").stdout.strip() == ""


def test_pause_unpause(d: Daemon, uname) -> None:
    name = uname("pause")
    # a counter, not a clock: busybox's date has no %N
    d.docker("run", "-d", "--name", name, "busybox", "sh", "-c",
             "i=0; while :; do i=$((i+1)); echo $i > /tmp/t; sleep 0.05; done")
    d.docker("pause", name)
    assert fmt(d, name, "{{.State.Status}} {{.State.Paused}}") == "paused true"
    assert "(Paused)" in d.docker("ps", "--filter", f"name={name}", "--format", "{{.Status}}").stdout
    r = d.docker("exec", name, "true", check=False)
    assert r.returncode != 0 and "is paused" in r.stderr
    again = d.docker("pause", name, check=False)
    assert again.returncode != 0 and "already paused" in again.stderr
    d.docker("unpause", name)
    assert fmt(d, name, "{{.State.Status}}") == "running"
    r = d.docker("unpause", name, check=False)
    assert r.returncode != 0 and "is not paused" in r.stderr
    # the loop runs again: the file keeps changing
    first = d.docker("exec", name, "cat", "/tmp/t").stdout
    d.docker("exec", name, "sleep", "0.3")
    assert d.docker("exec", name, "cat", "/tmp/t").stdout != first


@pytest.mark.parametrize("op", [["rm", "-f"], ["stop", "-t", "1"], ["kill"]])
def test_paused_container_can_be_stopped_killed_removed(d: Daemon, uname, op: list[str]) -> None:
    """A frozen container is thawed when it gets SIGKILL, as containerd does (it hung before)."""
    name = uname("pz")
    d.docker("run", "-d", "--name", name, "busybox", "sleep", "100")
    d.docker("pause", name)
    d.docker(*op, name, timeout=20)
    if op[0] != "rm":
        assert fmt(d, name, "{{.State.Status}} {{.State.ExitCode}} {{.State.Paused}}") == "exited 137 false"
        d.docker("rm", name)
    assert d.docker("ps", "-aq", "--filter", f"name={name}").stdout.strip() == ""


def test_stats(d: Daemon, uname) -> None:
    name = uname("stats")
    d.docker("run", "-d", "--name", name, "--memory", "64m", "busybox", "sh", "-c", "while :; do :; done")
    out = d.docker("stats", "--no-stream", "--format", "{{json .}}", name).stdout
    row = json.loads(out.splitlines()[0])
    assert row["Name"] == name
    assert row["MemUsage"].endswith("64MiB")
    assert float(row["CPUPerc"].rstrip("%")) > 10.0
    doc = d.client.api.stats(name, stream=False)
    assert doc["memory_stats"]["limit"] == 64 * 1024 * 1024
    assert doc["cpu_stats"]["cpu_usage"]["total_usage"] > doc["precpu_stats"]["cpu_usage"]["total_usage"] > 0
    assert doc["pids_stats"]["current"] >= 1


def test_cgroup_parent_is_the_daemons_and_removed_when_it_stops(new_daemon, busybox_rootfs: Path) -> None:
    """Containers' cgroups sit under --cgroup-parent; a stopping daemon leaves no empty parent
    behind (CI runs the suite inside its own cgroup, where a leftover would be a leak)."""
    dm = new_daemon(extra_args=["--cgroup-parent", "pydockerd-cgparent-test"])
    import_busybox(dm, busybox_rootfs)
    cid = dm.docker("run", "-d", "--memory", "32m", "busybox", "sleep", "300").stdout.strip()
    dirs = _cgroup_dirs(cid)
    assert dirs and all(p.parent.name == "pydockerd-cgparent-test" for p in dirs), dirs
    parents = [p.parent for p in dirs]
    dm.docker("rm", "-f", cid)
    assert dm.stop() == 0
    assert not [p for p in parents if p.exists()], "empty parent cgroup left after the daemon stopped"
