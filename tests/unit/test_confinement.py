"""Decisions of confinement without a kernel: seccomp profile parsing and selection, the BPF
program libseccomp makes of it, the devices allow-list, the spec's new fields, docker info's
security facts, and the API's request limits (JSON documents, header guard)."""

from __future__ import annotations

import base64
import json
import os
import struct
import time
from pathlib import Path

import pytest

from api.limits import HeaderGuard, error_response
from api.params import MAX_JSON_DEPTH, BodyTooLarge, check_document, parse_json
from daemon import security
from daemon.containers import container_config, devices, seccomp
from daemon.errors import InvalidParameter
from runtime import seccompfilter
from runtime.spec import SpecError, normalize

DEFAULT = seccomp.parse(seccomp.DEFAULT_PROFILE.read_text())
DEFAULT_CAPS = container_config.capabilities({})


def _names(flt: seccompfilter.Filter, action: str = "SCMP_ACT_ALLOW") -> set[str]:
    return {n for r in flt.rules if r.action == action for n in r.names}


# -- profile selection ---------------------------------------------------------------------


def test_default_profile_for_default_caps() -> None:
    flt = seccomp.select(DEFAULT, DEFAULT_CAPS, "amd64", (6, 1))
    assert flt.default_action == "SCMP_ACT_ERRNO" and flt.default_errno == 1
    assert flt.architectures == ("SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32")
    allowed = _names(flt)
    assert {"read", "execve", "chroot", "arch_prctl", "ptrace"} <= allowed  # chroot: CAP_SYS_CHROOT is default
    assert not {"keyctl", "add_key", "unshare", "mount", "reboot", "clone3"} & allowed
    assert _names(flt, "SCMP_ACT_ERRNO") == {"clone3"}  # ENOSYS, so libc falls back to clone
    clone = [r for r in flt.rules if r.names == ("clone",)]
    assert len(clone) == 1 and clone[0].conditions == (
        seccompfilter.Condition(0, "SCMP_CMP_MASKED_EQ", 2114060288),)  # no namespace flags


def test_capability_conditional_entries() -> None:
    caps = container_config.capabilities({"CapAdd": ["SYS_ADMIN"]})
    flt = seccomp.select(DEFAULT, caps, "amd64", (6, 1))
    assert {"mount", "unshare", "setns", "clone", "clone3"} <= _names(flt)
    assert not any(r.names == ("clone",) and r.conditions for r in flt.rules)  # excluded with SYS_ADMIN
    no_chroot = container_config.capabilities({"CapDrop": ["SYS_CHROOT"]})
    assert "chroot" not in _names(seccomp.select(DEFAULT, no_chroot, "amd64", (6, 1)))


def test_arch_and_kernel_conditional_entries() -> None:
    arm = seccomp.select(DEFAULT, DEFAULT_CAPS, "arm64", (6, 1))
    assert arm.architectures == ("SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM")
    assert "arch_prctl" not in _names(arm) and "set_tls" in _names(arm)
    s390 = seccomp.select(DEFAULT, DEFAULT_CAPS, "s390x", (6, 1))
    assert [r.conditions[0].index for r in s390.rules if r.names == ("clone",)] == [1]
    old = seccomp.select(DEFAULT, DEFAULT_CAPS, "amd64", (4, 4))
    assert "ptrace" not in _names(old)  # minKernel 4.8


def test_kernel_version() -> None:
    assert seccomp.kernel_version("6.18.44-fc-v1272") == (6, 18)
    assert seccomp.kernel_version("4.8") == (4, 8)
    assert seccomp.kernel_version("weird") == (0, 0)


@pytest.mark.parametrize(("profile", "words"), [
    ("not json", "Decoding seccomp profile failed"),
    ("[]", "expected a JSON object"),
    ('{"defaultAction": "SCMP_ACT_SOMETIMES"}', "defaultAction"),
    ('{"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86"], "archMap": [{"architecture": '
     '"SCMP_ARCH_X86_64"}]}', "use either one"),
    ('{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"name": "a", "names": ["b"], "action": "SCMP_ACT_ERRNO"}]}',
     "either 'name' or 'names'"),
    ('{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ERRNO", '
     '"args": [{"index": 6, "value": 1, "op": "SCMP_CMP_EQ"}]}]}', "index"),
    ('{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ERRNO", '
     '"args": [{"index": 0, "value": -1, "op": "SCMP_CMP_EQ"}]}]}', "unsigned 64-bit"),
    ('{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ERRNO", '
     '"errnoRet": 70000}]}', "errno"),
    ('{"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/run/x.sock"}', "not supported"),
])
def test_bad_profiles(profile: str, words: str) -> None:
    with pytest.raises(InvalidParameter) as exc:
        seccomp.parse(profile)
    assert words in exc.value.message and exc.value.status == 400


def test_requested_and_unconfined() -> None:
    assert seccomp.requested({"SecurityOpt": ["seccomp=unconfined"]}) == "unconfined"
    assert seccomp.requested({"SecurityOpt": ["no-new-privileges", "seccomp:{}"]}) == "{}"
    assert seccomp.requested({}) is None
    built: list[seccompfilter.Filter] = []
    profiles = seccomp.SeccompProfiles(seccomp.DEFAULT_PROFILE.read_text(), lambda f: built.append(f) or b"\0" * 8,
                                       enabled=True, arch="amd64", kernel=(6, 1))
    assert profiles.ready({"SecurityOpt": ["seccomp=unconfined"]}, DEFAULT_CAPS)
    assert not profiles.ready({}, DEFAULT_CAPS)  # not compiled yet: the caller uses a thread
    assert profiles.program({"SecurityOpt": ["seccomp=unconfined"]}, DEFAULT_CAPS) is None
    assert profiles.program({"Privileged": True}, DEFAULT_CAPS) is None
    assert profiles.program({}, DEFAULT_CAPS) == b"\0" * 8
    assert profiles.program({"SecurityOpt": ["seccomp=builtin"]}, DEFAULT_CAPS) == b"\0" * 8
    assert len(built) == 1 and profiles.ready({}, DEFAULT_CAPS)  # the second one came from the cache
    custom = json.dumps({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mkdir"],
                                                                          "action": "SCMP_ACT_ERRNO"}]})
    profiles.program({"SecurityOpt": [f"seccomp={custom}"]}, DEFAULT_CAPS)
    assert built[-1].default_action == "SCMP_ACT_ALLOW" and built[-1].rules[0].names == ("mkdir",)
    with pytest.raises(InvalidParameter):
        profiles.validate({"SecurityOpt": ["seccomp={"]}, DEFAULT_CAPS)
    off = seccomp.SeccompProfiles(seccomp.DEFAULT_PROFILE.read_text(), lambda f: b"", enabled=False,
                                  arch="amd64", kernel=(6, 1))
    assert off.program({}, DEFAULT_CAPS) is None
    with pytest.raises(InvalidParameter, match="not enabled in your kernel"):
        off.validate({"SecurityOpt": [f"seccomp={custom}"]}, DEFAULT_CAPS)


# -- the BPF program (libseccomp itself, no kernel needed) ------------------------------------


def _bpf(program: bytes) -> list[tuple[int, int, int, int]]:
    return [struct.unpack("<HBBI", program[i:i + 8]) for i in range(0, len(program), 8)]


def test_build_program_with_libseccomp() -> None:
    pytest.importorskip("pyseccomp")
    flt = seccomp.select(DEFAULT, DEFAULT_CAPS, "amd64", (6, 1))
    program = seccompfilter.build_program(flt)
    insns = _bpf(program)
    assert len(program) % 8 == 0 and len(insns) > 100
    ret_k = {k for code, _, _, k in insns if code == 0x06}  # BPF_RET|BPF_K
    assert 0x7FFF0000 in ret_k  # SECCOMP_RET_ALLOW
    assert 0x00050000 | 1 in ret_k  # SECCOMP_RET_ERRNO | EPERM (the default)
    assert 0x00050000 | 38 in ret_k  # clone3 -> ENOSYS
    # newer syscalls than the profile knows get ENOSYS (fchmodat2 is 452 on x86_64, futex_waitv 449)
    if os.uname().machine == "x86_64":
        import pyseccomp

        if pyseccomp.resolve_syscall(pyseccomp.Arch.NATIVE, "fchmodat2") == 452:
            newer = seccompfilter.build_program(seccompfilter.Filter("SCMP_ACT_ERRNO", rules=(
                seccompfilter.Rule(("read", "futex_waitv"), "SCMP_ACT_ALLOW"),)))
            jumps_on = {k for code, _, _, k in _bpf(newer) if code in (0x15, 0x35)}  # JEQ/JGE on numbers
            assert 0x00050000 | 38 in {k for code, _, _, k in _bpf(newer) if code == 0x06}
            assert jumps_on & {450, 451, 452}, sorted(jumps_on)
    # unknown syscall names are skipped, as runc does
    odd = seccompfilter.Filter("SCMP_ACT_ALLOW", rules=(seccompfilter.Rule(("no_such_call", "mkdir"),
                                                                           "SCMP_ACT_ERRNO"),))
    assert 0x00050000 | 1 in {k for code, _, _, k in _bpf(seccompfilter.build_program(odd)) if code == 0x06}


@pytest.mark.parametrize("hc", [{"CapAdd": ["ALL"]}, {"CapDrop": ["ALL"]},
                                {"CapAdd": ["SYS_PTRACE", "SYSLOG", "SYS_ADMIN", "BPF", "PERFMON"]}])
def test_default_profile_compiles_for_any_caps(hc: dict) -> None:
    # entries naming the same syscall for several capabilities add it more than once
    pytest.importorskip("pyseccomp")
    caps = container_config.capabilities(hc)
    assert len(seccompfilter.build_program(seccomp.select(DEFAULT, caps, "amd64", (6, 1)))) > 800


def test_rule_errno_defaults_to_eperm() -> None:
    pytest.importorskip("pyseccomp")
    profile = seccomp.parse(json.dumps({"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 38, "syscalls": [
        {"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}, {"names": ["read"], "action": "SCMP_ACT_ALLOW"}]}))
    program = seccompfilter.build_program(seccomp.select(profile, DEFAULT_CAPS, "amd64", (6, 1)))
    returns = {k for code, _, _, k in _bpf(program) if code == 0x06}
    assert {0x00050000 | 38, 0x00050000 | 1, 0x7FFF0000} <= returns  # default ENOSYS, mkdir EPERM, read


def test_two_conditions_on_one_argument_become_two_rules() -> None:
    pytest.importorskip("pyseccomp")
    rule = seccompfilter.Rule(("personality",), "SCMP_ACT_ALLOW", conditions=(
        seccompfilter.Condition(0, "SCMP_CMP_EQ", 0), seccompfilter.Condition(0, "SCMP_CMP_EQ", 8)))
    program = seccompfilter.build_program(seccompfilter.Filter("SCMP_ACT_ERRNO", rules=(rule,)))
    compared = {k for code, _, _, k in _bpf(program) if code == 0x15}  # BPF_JMP|BPF_JEQ|BPF_K
    assert {0, 8} <= compared


# -- devices -----------------------------------------------------------------------------------


class _St:
    def __init__(self, kind: int, major: int, minor: int) -> None:
        self.st_mode = kind | 0o600
        self.st_rdev = os.makedev(major, minor)


def test_device_rules() -> None:
    assert devices.cgroup_rules({"Privileged": True}) is None
    default = devices.cgroup_rules({})
    assert default == devices.DEFAULT_RULES and "c 1:3 rwm" in default and "a *:* rwm" not in default
    hc = {"Devices": [{"PathOnHost": "/dev/sdz", "PathInContainer": "/dev/xvda", "CgroupPermissions": "r"}],
          "DeviceCgroupRules": ["c 42:* rmw"]}
    import stat as st
    rules = devices.cgroup_rules(hc, stat_fn=lambda _p: _St(st.S_IFBLK, 8, 16))  # type: ignore[arg-type,return-value]
    assert rules[:2] == ("b 8:16 r", "c 42:* rmw") and rules[2:] == devices.DEFAULT_RULES


@pytest.mark.parametrize("rule", ["x 1:2 rwm", "c 1:2", "c a:1 r", "c 1:2 rwmx", ""])
def test_bad_device_cgroup_rules(rule: str) -> None:
    with pytest.raises(InvalidParameter, match="invalid device cgroup format"):
        devices.validate({"DeviceCgroupRules": [rule]})


# -- the spec and docker info -------------------------------------------------------------------


def _spec(**more: object) -> dict:
    return {"id": "a" * 64, "rootfs": "/r", "args": ["sh"], **more}


def test_spec_confinement_fields() -> None:
    program = base64.b64encode(b"\0" * 16).decode()
    spec = normalize(_spec(seccomp=program, cgroupns="private", cgroup_procs=["/sys/fs/cgroup/pids/x/cgroup.procs"],
                           cgroup_mounts=[{"hierarchy": "pids", "source": "/sys/fs/cgroup/pids/x"}]))
    assert spec["seccomp"] == program and spec["cgroupns"] == "private"
    assert normalize(_spec())["seccomp"] == "" and normalize(_spec())["cgroupns"] == "host"
    for bad in ({"seccomp": "!!"}, {"seccomp": base64.b64encode(b"abc").decode()}, {"cgroupns": "both"},
                {"cgroup_mounts": [{"hierarchy": "../x", "source": "/s"}]},
                {"cgroup_mounts": [{"hierarchy": "pids", "source": "rel"}]}):
        with pytest.raises(SpecError):
            normalize(_spec(**bad))


def test_security_facts(tmp_path: Path) -> None:
    facts = security.describe(seccomp=True, cgroupns=True, sys_root=tmp_path)
    assert facts.options == ["name=seccomp,profile=builtin", "name=cgroupns"] and facts.warnings == []
    (tmp_path / "module/apparmor/parameters").mkdir(parents=True)
    (tmp_path / "module/apparmor/parameters/enabled").write_text("Y\n")
    (tmp_path / "fs/selinux").mkdir(parents=True)
    (tmp_path / "fs/selinux/enforce").write_text("1")
    facts = security.describe(seccomp=False, cgroupns=False, sys_root=tmp_path)
    assert facts.options == []  # detected, never claimed
    assert len(facts.warnings) == 3 and any("AppArmor" in w for w in facts.warnings)


def test_cgroupns_mode_validated() -> None:
    from daemon.containers import runtime_options

    runtime_options.validate({"CgroupnsMode": "host"})
    with pytest.raises(InvalidParameter, match="invalid cgroup namespace mode"):
        runtime_options.validate({"CgroupnsMode": "shared"})


def test_resource_integers() -> None:
    for hc, words in (({"Memory": 2**63}, "HostConfig.Memory"), ({"MemorySwap": -3}, "MemorySwap"),
                      ({"CpuShares": -1}, "CPU shares"), ({"CpuQuota": -7}, "CpuQuota"),
                      ({"MemoryReservation": -1}, "MemoryReservation"), ({"PidsLimit": 2**64}, "PidsLimit")):
        with pytest.raises(InvalidParameter, match=words):
            container_config.validate_resources(hc)
    container_config.validate_resources({"Memory": 2**63 - 1, "MemorySwap": -1, "CpuQuota": -1, "PidsLimit": -1})


# -- request limits -------------------------------------------------------------------------------


def test_parse_json_limits() -> None:
    assert parse_json(b'{"a": [1, {"b": 2}]}') == {"a": [1, {"b": 2}]}
    deep = b"[" * (MAX_JSON_DEPTH + 1) + b"]" * (MAX_JSON_DEPTH + 1)
    with pytest.raises(InvalidParameter, match="nested deeper"):
        parse_json(deep)
    parse_json(b"[" * MAX_JSON_DEPTH + b"]" * MAX_JSON_DEPTH)
    with pytest.raises(InvalidParameter, match="nested deeper"):
        parse_json(b"[" * 100_000 + b"]" * 100_000)  # beyond Python's recursion limit too
    with pytest.raises(InvalidParameter, match=r"HostConfig\.Memory: number"):
        parse_json(b'{"HostConfig": {"Memory": 184467440737095516150}}')
    with pytest.raises(InvalidParameter, match=r"Env\[1\]"):
        check_document({"Env": [1, -(2**64)]})
    with pytest.raises(InvalidParameter, match="invalid JSON"):
        parse_json(b"1" * 5000)  # Python's own limit on integer digits is a 400 as well
    with pytest.raises(BodyTooLarge):
        parse_json(b" " * (17 << 20))


class _Timer:
    def __init__(self, due: float, callback) -> None:  # noqa: ANN001
        self.due = due
        self.callback = callback
        self.off = False

    def cancel(self) -> None:
        self.off = True


class _Loop:
    """The part of an event loop HeaderGuard uses, with time under the test's control."""

    def __init__(self) -> None:
        self.now = 0.0
        self.timers: list[_Timer] = []

    def time(self) -> float:
        return self.now

    def call_later(self, delay: float, callback) -> _Timer:  # noqa: ANN001
        self.timers.append(_Timer(self.now + delay, callback))
        return self.timers[-1]

    def advance(self, seconds: float) -> None:
        """Let time pass, running the timers that come due (and those they start) in order."""
        end = self.now + seconds
        while due := sorted((t for t in self.timers if not t.off and t.due <= end), key=lambda t: t.due):
            timer = due[0]
            timer.off = True
            self.now = timer.due
            timer.callback()
        self.now = end

    def fire(self) -> None:
        self.advance(1000)


def test_header_guard_size_and_timeout() -> None:
    rejected: list[tuple[int, str]] = []
    loop = _Loop()
    guard = HeaderGuard(loop, lambda status, msg: rejected.append((status, msg)), max_bytes=100, timeout=5)  # type: ignore[arg-type]
    guard.begin()
    guard.parsed(60)
    assert guard.complete() and not rejected  # complete headers under the limit: served
    loop.fire()  # an idle keep-alive connection is not a slow request
    assert not rejected
    guard.begin()
    guard.received(50)
    guard.parsed(30)
    guard.received(51)
    assert rejected == [(431, "request headers larger than 100 bytes")] and guard.rejected
    assert not guard.complete()  # never served
    slow = HeaderGuard(loop, lambda status, msg: rejected.append((status, msg)), max_bytes=100, timeout=5)  # type: ignore[arg-type]
    slow.begin()
    slow.received(10)
    loop.fire()
    assert rejected[-1][0] == 408 and slow.rejected
    assert error_response(431, "x").startswith(b"HTTP/1.1 431 Request Header Fields Too Large\r\n")


def test_header_guard_timer_follows_keep_alive_requests() -> None:
    """One timer per connection: when it fires for an earlier request, the one in progress
    still gets its full time, and is cut once that is over."""
    rejected: list[tuple[int, str]] = []
    loop = _Loop()
    guard = HeaderGuard(loop, lambda status, msg: rejected.append((status, msg)), max_bytes=100, timeout=5)  # type: ignore[arg-type]
    guard.begin()
    assert guard.complete()
    loop.advance(4)
    guard.begin()  # the next request on the connection starts at t=4: its deadline is t=9
    loop.advance(3)  # t=7: the first request's timer came due at t=5
    assert not rejected and not guard.rejected
    assert len([t for t in loop.timers if not t.off]) == 1
    loop.advance(1.5)  # t=8.5
    assert not rejected
    loop.advance(1)  # t=9.5
    assert rejected == [(408, "request headers not received within 5 s")]
    guard.stop()


# -- the cgroup v2 device filter ------------------------------------------------------------------


def _run_device_filter(insns: bytes, kind: str, major: int, minor: int, access: str) -> int:
    """Interprets the opcodes devicefilter emits, on one bpf_cgroup_dev_ctx."""
    ctx = struct.pack("<III", (sum({"m": 1, "r": 2, "w": 4}[a] for a in access) << 16) | {"b": 1, "c": 2}[kind],
                      major, minor)
    regs = [0] * 11
    pc = 0
    code = [struct.unpack("<BBhi", insns[i:i + 8]) for i in range(0, len(insns), 8)]
    for _ in range(10_000):
        op, regbyte, off, imm = code[pc]
        dst, src = regbyte & 0xF, regbyte >> 4
        pc += 1
        if op == 0x61:
            regs[dst] = struct.unpack_from("<I", ctx, off)[0]
        elif op == 0x54:
            regs[dst] &= imm & 0xFFFFFFFF
        elif op == 0x74:
            regs[dst] >>= imm
        elif op == 0xBC:
            regs[dst] = regs[src]
        elif op == 0xB4:
            regs[dst] = imm
        elif op == 0x55:
            pc += off if regs[dst] != imm else 0
        elif op == 0x5D:
            pc += off if regs[dst] != regs[src] else 0
        elif op == 0x95:
            return regs[0]
        else:
            raise AssertionError(f"unexpected opcode {op:#x}")
    raise AssertionError("no exit")


def test_device_filter_program() -> None:
    from runtime import devicefilter

    prog = devicefilter.program(devices.DEFAULT_RULES)
    allowed = lambda *a: _run_device_filter(prog, *a) == 1  # noqa: E731
    assert allowed("c", 1, 3, "rw") and allowed("c", 136, 7, "rwm") and allowed("c", 5, 2, "r")
    assert allowed("b", 254, 0, "m") and allowed("c", 99, 1, "m")  # mknod of anything
    assert not allowed("b", 254, 0, "r") and not allowed("c", 10, 237, "r") and not allowed("c", 1, 11, "w")
    narrow = devicefilter.program(["b 8:16 r"])
    assert _run_device_filter(narrow, "b", 8, 16, "r") == 1
    assert _run_device_filter(narrow, "b", 8, 16, "rw") == 0 and _run_device_filter(narrow, "b", 8, 17, "r") == 0
    assert _run_device_filter(narrow, "c", 8, 16, "r") == 0
    everything = devicefilter.program(["a *:* rwm"])
    assert _run_device_filter(everything, "b", 1, 2, "rwm") == 1
    with pytest.raises(ValueError):
        devicefilter.program(["c 1:3 rwx"])


def _cgroup2_dir() -> Path | None:
    """This process's own directory in a mounted cgroup2 hierarchy, if there is one."""
    own = next((line.split(":", 2)[2] for line in Path("/proc/self/cgroup").read_text().splitlines()
                if line.startswith("0::")), None)
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        if own is not None and fields[fields.index("-") + 1] == "cgroup2":
            return Path(fields[4]) / own.lstrip("/")
    return None


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to make a cgroup and load a BPF program")
def test_device_filter_in_the_kernel() -> None:
    from runtime import devicefilter

    parent = _cgroup2_dir()
    if parent is None or not parent.is_dir():
        pytest.skip("no cgroup2 hierarchy mounted")
    cg = parent / f"pydockerd-devtest-{os.getpid()}"
    cg.mkdir()
    try:
        devicefilter.attach(cg, devicefilter.program(devices.DEFAULT_RULES))
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            try:
                (cg / "cgroup.procs").write_text("0")
                out = []
                for path in ("/dev/null", "/dev/loop-control"):
                    try:
                        os.close(os.open(path, os.O_RDONLY))
                        out.append("ok")
                    except OSError as e:
                        out.append(str(e.errno))
                os.write(w, " ".join(out).encode())
            finally:
                os._exit(0)
        os.close(w)
        result = os.read(r, 100).decode()
        os.close(r)
        os.waitpid(pid, 0)
        if not os.path.exists("/dev/loop-control"):
            pytest.skip("no /dev/loop-control to be denied")
        assert result == "ok 1", result  # /dev/null allowed, loop-control EPERM
    finally:
        for _ in range(100):
            try:
                cg.rmdir()
                break
            except OSError:
                time.sleep(0.02)
