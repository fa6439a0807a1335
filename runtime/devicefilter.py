"""The cgroup v2 devices filter: a BPF_PROG_TYPE_CGROUP_DEVICE program made from allow rules.

cgroup v2 has no devices controller; the kernel asks a BPF program attached to the cgroup
instead, as runc's devicefilter does it. The rules are the v1 controller's allow lines
("c 1:3 rwm", "b *:* m", "a *:* rwm"); anything no rule allows is denied. The program sees
``struct bpf_cgroup_dev_ctx {u32 access_type; u32 major; u32 minor;}`` with access_type =
(access << 16) | type, and returns 1 to allow.
"""

from __future__ import annotations

import ctypes
import os
import re
import struct
from collections.abc import Sequence
from pathlib import Path

_RULE = re.compile(r"^([acb]) (\d+|\*):(\d+|\*) ([rwm]{1,3})$")
_TYPES = {"b": 1, "c": 2}  # BPF_DEVCG_DEV_BLOCK, _CHAR
_ACCESS = {"m": 1, "r": 2, "w": 4}  # BPF_DEVCG_ACC_MKNOD, _READ, _WRITE

# The few eBPF instructions used: (opcode, dst, src, offset, immediate).
_LDX_W, _AND32_K, _RSH32_K, _MOV32_X, _MOV32_K, _JNE_K, _JNE_X, _EXIT = (
    0x61, 0x54, 0x74, 0xBC, 0xB4, 0x55, 0x5D, 0x95)

_SYS_BPF = {"x86_64": 321, "aarch64": 280, "armv7l": 386, "ppc64le": 361, "s390x": 351, "riscv64": 280}
_BPF_PROG_LOAD, _BPF_PROG_ATTACH = 5, 8
_BPF_PROG_TYPE_CGROUP_DEVICE, _BPF_CGROUP_DEVICE = 15, 6
_BPF_F_ALLOW_MULTI = 2


def _insn(code: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> bytes:
    return struct.pack("<BBhi", code, (src << 4) | dst, off, imm)


def program(rules: Sequence[str]) -> bytes:
    """The BPF program (struct bpf_insn array) allowing what ``rules`` allow. Raises ValueError."""
    # r2 = type, r3 = requested access, r4 = major, r5 = minor
    out = [_insn(_LDX_W, 2, 1, 0), _insn(_AND32_K, 2, imm=0xFFFF), _insn(_LDX_W, 3, 1, 0),
           _insn(_RSH32_K, 3, imm=16), _insn(_LDX_W, 4, 1, 4), _insn(_LDX_W, 5, 1, 8)]
    for rule in rules:
        m = _RULE.match(rule)
        if not m:
            raise ValueError(f"invalid device rule {rule!r}")
        kind, major, minor, access = m.groups()
        mask = sum(_ACCESS[a] for a in set(access))
        # One block per rule: every check that fails jumps to the next rule; passing all allows.
        block: list[tuple[int, int, int, bool, int]] = []  # (opcode, dst, src, jumps to next rule, imm)
        if kind != "a":
            block.append((_JNE_K, 2, 0, True, _TYPES[kind]))
        if mask != 7:  # the requested access must be within the rule's: (r3 & mask) == r3
            block += [(_MOV32_X, 1, 3, False, 0), (_AND32_K, 1, 0, False, mask), (_JNE_X, 1, 3, True, 0)]
        for reg, number in ((4, major), (5, minor)):
            if number != "*":
                if int(number) > 0x7FFFFFFF:
                    raise ValueError(f"invalid device rule {rule!r}")
                block.append((_JNE_K, reg, 0, True, int(number)))
        block += [(_MOV32_K, 0, 0, False, 1), (_EXIT, 0, 0, False, 0)]
        for n, (code, dst, src, jumps, imm) in enumerate(block):
            out.append(_insn(code, dst, src, len(block) - n - 1 if jumps else 0, imm))
    out += [_insn(_MOV32_K, 0, imm=0), _insn(_EXIT)]
    return b"".join(out)


class _ProgLoad(ctypes.Structure):
    _fields_ = [("prog_type", ctypes.c_uint32), ("insn_cnt", ctypes.c_uint32), ("insns", ctypes.c_uint64),
                ("license", ctypes.c_uint64), ("log_level", ctypes.c_uint32), ("log_size", ctypes.c_uint32),
                ("log_buf", ctypes.c_uint64), ("kern_version", ctypes.c_uint32), ("prog_flags", ctypes.c_uint32),
                ("prog_name", ctypes.c_char * 16), ("pad", ctypes.c_char * 64)]


class _ProgAttach(ctypes.Structure):
    _fields_ = [("target_fd", ctypes.c_uint32), ("attach_bpf_fd", ctypes.c_uint32),
                ("attach_type", ctypes.c_uint32), ("attach_flags", ctypes.c_uint32),
                ("replace_bpf_fd", ctypes.c_uint32), ("pad", ctypes.c_char * 44)]


def _bpf(cmd: int, attr: ctypes.Structure) -> int:
    nr = _SYS_BPF.get(os.uname().machine)
    if nr is None:
        raise OSError(38, f"bpf: unsupported architecture {os.uname().machine}")
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    ret = libc.syscall(ctypes.c_long(nr), ctypes.c_int(cmd), ctypes.byref(attr), ctypes.c_uint(ctypes.sizeof(attr)))
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"bpf: {os.strerror(err).lower()}")
    return ret


def attach(cgroup_dir: Path, insns: bytes) -> None:
    """Loads ``insns`` and attaches it to the v2 cgroup ``cgroup_dir``; the cgroup keeps it
    (until it is removed), so no descriptor stays open here."""
    code = ctypes.create_string_buffer(insns, len(insns))
    license_ = ctypes.create_string_buffer(b"Apache")
    log = ctypes.create_string_buffer(1 << 14)
    load = _ProgLoad(prog_type=_BPF_PROG_TYPE_CGROUP_DEVICE, insn_cnt=len(insns) // 8,
                     insns=ctypes.addressof(code), license=ctypes.addressof(license_), log_level=1,
                     log_size=len(log), log_buf=ctypes.addressof(log), prog_name=b"pyd_devices")
    try:
        prog_fd = _bpf(_BPF_PROG_LOAD, load)
    except OSError as e:
        detail = log.value.decode(errors="replace").strip().splitlines()[-1:] or [""]
        raise OSError(e.errno, f"loading the device filter: {e.strerror} {detail[0]}".strip()) from None
    try:
        dir_fd = os.open(cgroup_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            _bpf(_BPF_PROG_ATTACH, _ProgAttach(target_fd=dir_fd, attach_bpf_fd=prog_fd,
                                              attach_type=_BPF_CGROUP_DEVICE, attach_flags=_BPF_F_ALLOW_MULTI))
        finally:
            os.close(dir_fd)
    finally:
        os.close(prog_fd)
