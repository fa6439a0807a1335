"""`docker update`: limits applied to a running container's cgroup at once and persisted,
kept for a stopped one until its next start, the restart policy, dockerd's refusals, and
updates racing a removal."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from tests.e2e.helpers import inspect
from tests.helpers import Daemon

pytestmark = pytest.mark.e2e

MiB = 1024 * 1024


def _cg(cid: str, name: str) -> str:
    """A cgroup file of the container (v1 or v2 naming)."""
    for p in Path("/sys/fs/cgroup").rglob(name):
        if p.parent.name == cid:
            return p.read_text().strip()
    raise AssertionError(f"no {name} for {cid}")


def test_update_running_container(d: Daemon, uname) -> None:
    name = uname("run")
    since = str(int(time.time()) - 1)
    cid = d.docker("run", "-d", "--name", name, "-m", "64m", "busybox", "sleep", "300").stdout.strip()
    d.docker("update", "-m", "100m", "--memory-swap", "200m", "--memory-reservation", "50m", "--cpu-shares", "512",
             "--cpus", "0.5", "--pids-limit", "33", "--cpuset-cpus", "0", "--cpuset-mems", "0", name)
    hc = inspect(d, name)["HostConfig"]
    assert hc["Memory"] == 100 * MiB and hc["MemorySwap"] == 200 * MiB and hc["MemoryReservation"] == 50 * MiB
    assert hc["CpuShares"] == 512 and hc["NanoCpus"] == 500_000_000 and hc["PidsLimit"] == 33
    assert hc["CpusetCpus"] == "0" and hc["CpusetMems"] == "0"
    if Path("/sys/fs/cgroup/memory").is_dir():  # cgroup v1 here
        assert _cg(cid, "memory.limit_in_bytes") == str(100 * MiB)
        assert _cg(cid, "memory.memsw.limit_in_bytes") == str(200 * MiB)
        assert _cg(cid, "memory.soft_limit_in_bytes") == str(50 * MiB)
        assert _cg(cid, "cpu.shares") == "512"
        assert _cg(cid, "cpu.cfs_quota_us") == "50000" and _cg(cid, "cpu.cfs_period_us") == "100000"
        assert _cg(cid, "cpuset.cpus") == "0"
    else:
        assert _cg(cid, "memory.max") == str(100 * MiB)
        assert _cg(cid, "cpu.max") == "50000 100000"
    assert _cg(cid, "pids.max") == "33"
    # Back to unlimited pids with -1, and the container still runs under its new limits.
    d.docker("update", "--pids-limit", "-1", name)
    assert _cg(cid, "pids.max") == "max" and inspect(d, name)["HostConfig"]["PidsLimit"] == 0
    assert d.docker("exec", name, "echo", "ok").stdout.strip() == "ok"
    ev = d.docker("events", "--since", since, "--until", str(int(time.time()) + 1), "--filter",
                  f"container={name}", "--filter", "event=update", "--format", "{{.Action}}").stdout.split()
    assert ev == ["update", "update"], ev
    d.docker("rm", "-f", name)


def test_update_stopped_container_applies_at_start(d: Daemon, uname) -> None:
    name = uname("stopped")
    d.docker("create", "--name", name, "busybox", "sleep", "300")
    out = d.docker("update", "--cpu-shares", "300", "--memory", "80m", "--memory-swap", "-1", "--restart",
                   "on-failure:3", name).stdout
    assert out.strip() == name
    hc = inspect(d, name)["HostConfig"]
    assert hc["CpuShares"] == 300 and hc["Memory"] == 80 * MiB and hc["MemorySwap"] == -1
    assert hc["RestartPolicy"] == {"Name": "on-failure", "MaximumRetryCount": 3}
    cid = inspect(d, name)["Id"]
    d.docker("start", name)
    if Path("/sys/fs/cgroup/memory").is_dir():
        assert _cg(cid, "cpu.shares") == "300"
        assert _cg(cid, "memory.limit_in_bytes") == str(80 * MiB)
    d.docker("rm", "-f", name)


def test_update_with_docker_py(d: Daemon, uname) -> None:
    c = d.client.containers.run("busybox", "sleep 300", name=uname("py"), detach=True, cpu_shares=2,
                                mem_limit="400m", restart_policy={"Name": "always"})
    try:
        result = c.update(cpu_shares=3, mem_limit=300 * MiB,
                          restart_policy={"Name": "on-failure", "MaximumRetryCount": 42})
        assert result == {"Warnings": []}
        c.reload()
        hc = c.attrs["HostConfig"]
        assert hc["CpuShares"] == 3 and hc["Memory"] == 300 * MiB
        assert hc["RestartPolicy"] == {"Name": "on-failure", "MaximumRetryCount": 42}
    finally:
        c.remove(force=True)


@pytest.mark.parametrize(("args", "message"), [
    (["-m", "4m"], "Minimum memory limit allowed is 6MB"),
    (["-m", "100m", "--memory-swap", "50m"], "Minimum memoryswap limit should be larger than memory limit"),
    (["--memory-reservation", "1m"], "Minimum memory reservation allowed is 6MB"),
    (["-m", "200m"], "Memory limit should be smaller than already set memoryswap limit, update the memoryswap "
                     "at the same time"),
    (["--cpu-period", "500"], "CPU cfs period can not be less than 1ms"),
    (["--cpu-quota", "500"], "CPU cfs quota can not be less than 1ms"),
    (["--cpus", "64"], "Range of CPUs is from 0.01 to"),
    (["--cpuset-cpus", "abc"], "Invalid value abc for cpuset cpus"),
    (["--cpuset-cpus", "0-99"], "Requested CPUs are not available - requested 0-99"),
    (["--restart", "bogus"], "invalid restart policy"),
    (["--restart", "always:3"], "maximum retry count can only be used with 'on-failure'"),
])
def test_update_refused(d: Daemon, uname, args: list[str], message: str) -> None:
    name = uname("bad")
    d.docker("run", "-d", "--name", name, "-m", "64m", "busybox", "sleep", "300")
    before = inspect(d, name)["HostConfig"]
    r = d.docker("update", *args, name, check=False)
    assert r.returncode != 0 and message in r.stderr, r
    assert inspect(d, name)["HostConfig"] == before
    d.docker("rm", "-f", name)


@pytest.mark.parametrize(("body", "field"), [
    ({"Memory": -5}, "Minimum memory limit"),
    ({"Memory": 2**63}, "UpdateConfig.Memory"),
    ({"CpuShares": -2}, "CpuShares"),
    ({"CpuShares": 2**64}, "CpuShares"),
    ({"MemorySwap": -7}, "MemorySwap"),
    ({"CpuQuota": -9}, "CpuQuota"),
    ({"PidsLimit": 2**63}, "UpdateConfig.PidsLimit"),
    ({"BlkioWeight": 70000}, "UpdateConfig.BlkioWeight"),
    ({"NanoCpus": "1"}, "UpdateConfig.NanoCpus"),
    ({"CpusetCpus": 3}, "UpdateConfig.CpusetCpus"),
    ({"RestartPolicy": {"Name": "on-failure", "MaximumRetryCount": -1}}, "cannot be negative"),
    ({"RestartPolicy": "always"}, "RestartPolicy"),
])
def test_update_bad_values_are_400(d: Daemon, uname, body: dict, field: str) -> None:
    name = uname("raw")
    d.docker("run", "-d", "--name", name, "busybox", "sleep", "300")
    before = inspect(d, name)["HostConfig"]
    r = d.api("POST", f"/containers/{name}/update", body)
    assert r.status == 400 and field in r.message(), (r.status, r.text)
    assert inspect(d, name)["HostConfig"] == before
    d.docker("rm", "-f", name)


def test_update_refusals_of_state(d: Daemon, uname) -> None:
    rm, missing = uname("rm"), uname("missing")
    d.docker("run", "-d", "--rm", "--name", rm, "busybox", "sleep", "300")
    r = d.docker("update", "--restart", "always", rm, check=False)
    assert r.returncode != 0 and "Restart policy cannot be updated because AutoRemove is enabled" in r.stderr, r
    d.docker("update", "--restart", "no", rm)  # "no" stays allowed
    r = d.docker("update", "--cpu-shares", "10", missing, check=False)
    assert r.returncode != 0 and f"No such container: {missing}" in r.stderr, r
    # KernelMemory: ignored from API 1.42 on, as dockerd
    r = d.api("POST", f"/v1.50/containers/{rm}/update", {"KernelMemory": 1})
    assert r.status == 200, r.text
    r = d.api("POST", f"/v1.41/containers/{rm}/update", {"KernelMemory": 1024})
    assert r.status == 400 and "Minimum kernel memory limit allowed is 6MB" in r.message(), r.text
    d.docker("rm", "-f", rm)


def test_update_racing_remove(d: Daemon, uname) -> None:
    """Updates sent while the container is being removed get 200, 404 or 409, never 500."""
    log_from = d.log_size()
    for i in range(3):
        name = uname(f"race{i}")
        d.docker("run", "-d", "--name", name, "busybox", "sleep", "300")
        statuses: list[int] = []

        def hammer(name: str = name, statuses: list[int] = statuses) -> None:
            for n in range(15):
                statuses.append(d.api("POST", f"/containers/{name}/update", {"CpuShares": 100 + n}).status)

        t = threading.Thread(target=hammer)
        t.start()
        d.api("DELETE", f"/containers/{name}?force=1", timeout=60)
        t.join(60)
        assert statuses and set(statuses) <= {200, 404, 409}, statuses
    assert "Traceback" not in d.log_text(log_from)


def test_create_time_limits(d: Daemon, uname) -> None:
    """What start writes to the cgroup as given is checked at create (a 400, nothing made)."""
    before = set(d.container_ids())
    r = d.docker("run", "--rm", "--cpuset-cpus", "4095", "busybox", "true", check=False)
    assert r.returncode != 0 and "Requested CPUs are not available - requested 4095" in r.stderr, r
    r = d.docker("run", "--rm", "--memory-reservation", "1m", "busybox", "true", check=False)
    assert r.returncode != 0 and "Minimum memory reservation allowed is 6MB" in r.stderr, r
    assert set(d.container_ids()) == before
    name = uname("cpuset")
    cid = d.docker("run", "-d", "--name", name, "--cpuset-cpus", "0", "--memory-reservation", "20m", "busybox",
                   "sleep", "300").stdout.strip()
    if Path("/sys/fs/cgroup/cpuset").is_dir():
        assert _cg(cid, "cpuset.cpus") == "0"
        assert _cg(cid, "memory.soft_limit_in_bytes") == str(20 * MiB)
    assert d.docker("exec", name, "cat", "/proc/self/status").stdout.count("Cpus_allowed_list:\t0\n") == 1
    d.docker("rm", "-f", name)
