"""Confinement as dockerd's: the default seccomp profile, custom profiles, the devices cgroup,
the container's own /sys/fs/cgroup (cgroup namespace), and what `docker info` says of them.

busybox has no keyctl/add_key applets and the image has no compiler or python, so the syscalls
are made by a tiny static x86_64 ELF written here (mounted read-only into the container): it
makes one syscall with constant arguments and exits with the errno (0 on success).
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import pytest

from tests.e2e.helpers import inspect, nothing_created
from tests.helpers import Daemon

pytestmark = pytest.mark.e2e

EPERM, EFAULT, ENOSYS = 1, 14, 38
_SYS_KEYCTL, _SYS_ADD_KEY, _SYS_FCHMODAT2 = 250, 248, 452  # x86_64
_KEYCTL_GET_KEYRING_ID, _KEY_SPEC_SESSION_KEYRING, _KEY_SPEC_PROCESS_KEYRING = 0, -3, -2
_ARG_REGS = (b"\x48\xbf", b"\x48\xbe", b"\x48\xba", b"\x49\xba", b"\x49\xb8", b"\x49\xb9")  # movabs rdi..r9


def _syscall_elf(nr: int, *args: int) -> bytes:
    """A static ELF: syscall(nr, *args); exit(ret < 0 ? -ret : 0)."""
    code = b"\x48\xb8" + struct.pack("<q", nr)  # movabs rax, nr
    for reg, arg in zip(_ARG_REGS, args, strict=False):
        code += reg + struct.pack("<q", arg)
    # syscall; test rax,rax; jns ok; neg eax; mov edi,eax; jmp out; ok: xor edi,edi; out: mov eax,60; syscall
    code += bytes.fromhex("0f05 4885c0 7906 f7d8 89c7 eb02 31ff b83c000000 0f05")
    base, offset = 0x400000, 64 + 56
    size = offset + len(code)
    header = struct.pack("<16sHHIQQQIHHHHHH", b"\x7fELF\x02\x01\x01" + bytes(9), 2, 0x3E, 1, base + offset, 64, 0, 0,
                         64, 56, 1, 0, 0, 0)
    segment = struct.pack("<IIQQQQQQ", 1, 5, 0, base, base, size, size, 0x1000)
    return header + segment + code


@pytest.fixture(scope="module")
def probes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if os.uname().machine != "x86_64":
        pytest.skip("the syscall probes are x86_64 machine code")
    root = tmp_path_factory.mktemp("probes")
    for name, elf in (("keyctl", _syscall_elf(_SYS_KEYCTL, _KEYCTL_GET_KEYRING_ID, _KEY_SPEC_SESSION_KEYRING, 1)),
                      ("add_key", _syscall_elf(_SYS_ADD_KEY, 0, 0, 0, 0, _KEY_SPEC_PROCESS_KEYRING)),
                      ("fchmodat2", _syscall_elf(_SYS_FCHMODAT2, -1, 0, 0, 0))):
        (root / name).write_bytes(elf)
        (root / name).chmod(0o755)
    return root


PROBE_SCRIPT = ("grep '^Seccomp:' /proc/self/status; /p/keyctl; echo keyctl=$?; /p/add_key; echo add_key=$?; "
                "/p/fchmodat2; echo fchmodat2=$?; "
                "unshare -U true 2>&1; echo unshare=$?; mkdir -p /m; mount -t tmpfs t /m 2>&1; echo mount=$?")


def _results(out: str) -> dict[str, str]:
    found = {}
    for line in out.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.isidentifier():
            found[key] = value
        elif line.startswith("Seccomp:"):
            found["seccomp"] = line.split()[1]
    return found


def test_default_profile_denies(d: Daemon, probes: Path) -> None:
    out = d.docker("run", "--rm", "-v", f"{probes}:/p:ro", "busybox", "sh", "-c", PROBE_SCRIPT).stdout
    r = _results(out)
    assert r["seccomp"] == "2", out  # SECCOMP_MODE_FILTER, as under dockerd
    assert r["keyctl"] == str(EPERM) and r["add_key"] == str(EPERM), out
    assert r["unshare"] != "0" and "Operation not permitted" in out, out
    assert r["mount"] != "0" and "permission denied" in out, out  # busybox's words for EPERM
    # newer than the profile: ENOSYS, so that a libc falls back (glibc's fchmodat), as with runc
    assert r["fchmodat2"] == str(ENOSYS), out


def test_unconfined_and_privileged_run_without_filter(d: Daemon, probes: Path) -> None:
    out = d.docker("run", "--rm", "-v", f"{probes}:/p:ro", "--security-opt", "seccomp=unconfined", "busybox",
                   "sh", "-c", PROBE_SCRIPT).stdout
    r = _results(out)
    # keyctl works and add_key gets as far as reading its (NULL) type: the kernel's answers.
    assert (r["seccomp"], r["keyctl"], r["add_key"]) == ("0", "0", str(EFAULT)), out
    has_fchmodat2 = tuple(int(x) for x in os.uname().release.split(".")[:2]) >= (6, 6)
    assert r["fchmodat2"] == str(EFAULT if has_fchmodat2 else ENOSYS), out
    out = d.docker("run", "--rm", "--privileged", "busybox", "grep", "^Seccomp:", "/proc/self/status").stdout
    assert out.split()[1] == "0", out


def test_capability_conditional_entries(d: Daemon, probes: Path) -> None:
    # CAP_SYS_ADMIN brings mount/unshare into the allow-list (and the capability itself).
    out = d.docker("run", "--rm", "--cap-add", "SYS_ADMIN", "busybox", "sh", "-c",
                   "grep '^Seccomp:' /proc/self/status; mkdir -p /m; mount -t tmpfs t /m && echo mounted").stdout
    assert "mounted" in out and out.split()[1] == "2", out


def test_exec_gets_the_container_filter(d: Daemon, uname, probes: Path) -> None:
    name = uname("sc-exec")
    d.docker("run", "-d", "--name", name, "-v", f"{probes}:/p:ro", "busybox", "sleep", "300")
    try:
        out = d.docker("exec", name, "sh", "-c", "grep '^Seccomp:' /proc/self/status; /p/keyctl; echo keyctl=$?",
                       check=False).stdout
        assert _results(out) == {"seccomp": "2", "keyctl": str(EPERM)}, out
        # no_new_privileges moves the load to right before execve: still applied.
        d.docker("rm", "-f", name)
        d.docker("run", "-d", "--name", name, "--security-opt", "no-new-privileges", "busybox", "sleep", "300")
        out = d.docker("exec", name, "grep", "^Seccomp:", "/proc/self/status").stdout
        assert out.split()[1] == "2", out
    finally:
        d.docker("rm", "-f", name, check=False)


def test_custom_profile(d: Daemon, tmp_path: Path) -> None:
    profile = {"defaultAction": "SCMP_ACT_ALLOW",
               "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}]}
    path = tmp_path / "nomkdir.json"
    path.write_text(json.dumps(profile))
    r = d.docker("run", "--rm", "--security-opt", f"seccomp={path}", "busybox", "sh", "-c",
                 "mkdir /x 2>&1; echo rc=$?; touch /y && echo touched", check=False)
    assert "Operation not permitted" in r.stdout and "rc=1" in r.stdout and "touched" in r.stdout, r


def test_bad_profile_refused_at_create(d: Daemon, tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    for text in ('{"defaultAction": "SCMP_ACT_MAYBE"}', "[1, 2]",
                 '{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW",'
                 ' "args": [{"index": 9, "value": 1, "op": "SCMP_CMP_EQ"}]}]}'):
        bad.write_text(text)
        with nothing_created(d):
            r = d.docker("create", "--security-opt", f"seccomp={bad}", "busybox", "true", check=False)
        assert r.returncode != 0 and "Decoding seccomp profile failed" in r.stderr, r


def _root_block_device() -> tuple[int, int]:
    dev = os.stat("/").st_dev
    if os.major(dev):
        return os.major(dev), os.minor(dev)
    first = sorted(os.listdir("/sys/dev/block"))[0]  # an overlay root: any block device will do
    major, minor = first.split(":")
    return int(major), int(minor)


def _devices_list(pid: int) -> list[str]:
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if "devices" in controllers.split(","):
            return Path("/sys/fs/cgroup/devices", path.lstrip("/"), "devices.list").read_text().split("\n")
    raise AssertionError("no devices cgroup")


def _host_can_open(path: str) -> bool:
    try:
        os.close(os.open(path, os.O_RDONLY | os.O_NONBLOCK))
        return True
    except OSError:
        return False


def test_devices_cgroup(d: Daemon, uname) -> None:
    major, minor = _root_block_device()
    out = d.docker("run", "--rm", "busybox", "sh", "-c",
                   f"mknod /dev/disk0 b {major} {minor} && echo made; head -c 512 /dev/disk0 2>&1; echo rc=$?").stdout
    assert "made" in out and "Operation not permitted" in out and "rc=1" in out, out  # mknod yes, open no
    # what the host sees: dockerd's allow-list in the container's devices cgroup, nothing for the disk
    name = uname("devs")
    d.docker("run", "-d", "--name", name, "busybox", "sleep", "300")
    try:
        rules = _devices_list(inspect(d, name)["State"]["Pid"])
        assert "c 1:3 rwm" in rules and "c 136:* rwm" in rules and "b *:* m" in rules, rules
        assert "a *:* rwm" not in rules and not any(r.startswith(f"b {major}:") for r in rules), rules
    finally:
        d.docker("rm", "-f", name)


def test_devices_cgroup_decides(d: Daemon) -> None:
    # /dev/loop-control (c 10:237) is not on the list and opening it needs no capability; the host
    # itself may open it, so the cgroup is what says no.
    if not _host_can_open("/dev/loop-control"):
        pytest.skip("this host does not let even its root open /dev/loop-control")
    probe = "mknod /dev/k c 10 237 && (: < /dev/k) 2>&1; echo rc=$?"
    out = d.docker("run", "--rm", "busybox", "sh", "-c", probe).stdout
    assert "Operation not permitted" in out and "rc=1" in out, out
    # --device-cgroup-rule extends the list; --privileged allows every device
    out = d.docker("run", "--rm", "--device-cgroup-rule", "c 10:237 r", "busybox", "sh", "-c", probe).stdout
    assert "rc=0" in out, out
    out = d.docker("run", "--rm", "--privileged", "busybox", "sh", "-c", probe).stdout
    assert "rc=0" in out, out
    # --device adds its node's numbers with its permissions
    out = d.docker("run", "--rm", "--device", "/dev/loop-control:/dev/k2:r", "busybox", "sh", "-c",
                   "(: < /dev/k2) 2>&1; echo rc=$?").stdout
    assert "rc=0" in out, out
    with nothing_created(d):
        r = d.docker("create", "--device-cgroup-rule", "x 1:2 rwm", "busybox", "true", check=False)
    assert r.returncode != 0 and "invalid device cgroup format" in r.stderr, r


def test_cgroupfs_inside(d: Daemon, uname) -> None:
    script = ("cat /sys/fs/cgroup/pids/pids.max /sys/fs/cgroup/memory/memory.limit_in_bytes; "
              "grep -c :/$ /proc/self/cgroup; (echo 60 > /sys/fs/cgroup/pids/pids.max) 2>&1; echo write=$?")
    out = d.docker("run", "--rm", "--pids-limit", "50", "-m", "64m", "busybox", "sh", "-c", script).stdout
    lines = out.split("\n")
    assert lines[0] == "50" and lines[1] == str(64 * 1024 * 1024), out
    assert int(lines[2]) >= 7, out  # its own cgroups are its namespace's roots
    assert "Read-only file system" in out and "write=1" in out, out
    # --cgroupns host: the same files (bound), /proc/self/cgroup shows the host's paths
    out = d.docker("run", "--rm", "--cgroupns", "host", "--pids-limit", "50", "busybox", "sh", "-c",
                   "cat /sys/fs/cgroup/pids/pids.max; grep -c :/$ /proc/self/cgroup").stdout
    assert out.split()[0] == "50" and int(out.split()[1]) < 7, out
    # --privileged: read-write
    out = d.docker("run", "--rm", "--privileged", "--pids-limit", "50", "busybox", "sh", "-c",
                   "echo 60 > /sys/fs/cgroup/pids/pids.max && cat /sys/fs/cgroup/pids/pids.max").stdout
    assert out.strip() == "60", out
    # an exec joins the container's cgroup namespace
    name = uname("cgns")
    d.docker("run", "-d", "--name", name, "busybox", "sleep", "300")
    try:
        assert inspect(d, name)["HostConfig"]["CgroupnsMode"] == "private"
        out = d.docker("exec", name, "grep", "-c", ":/$", "/proc/self/cgroup").stdout
        assert int(out) >= 7, out
    finally:
        d.docker("rm", "-f", name)
    with nothing_created(d):
        r = d.docker("create", "--cgroupns", "sideways", "busybox", "true", check=False)
    assert r.returncode != 0, r


def test_info_security_options(d: Daemon) -> None:
    info = d.api("GET", "/info").json()
    assert "name=seccomp,profile=builtin" in info["SecurityOptions"], info["SecurityOptions"]
    assert "name=cgroupns" in info["SecurityOptions"], info["SecurityOptions"]
    # neither is on this kind of machine; never claimed either way
    assert not any("apparmor" in o or "selinux" in o for o in info["SecurityOptions"]), info["SecurityOptions"]
