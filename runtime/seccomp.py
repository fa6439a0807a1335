"""Loading a ready seccomp BPF program (runtime/seccompfilter.py compiles it, in the daemon).

Kept to ctypes and libc, which the container's init and execs have imported anyway: this runs
on every container start and every exec, right before the command.
"""

from __future__ import annotations

import ctypes

from . import libc

_PR_SET_SECCOMP = 22
_SECCOMP_MODE_FILTER = 2
_BPF_INSN_SIZE = 8  # struct sock_filter: u16 code, u8 jt, u8 jf, u32 k


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def load(program: bytes) -> None:
    """Installs ``program`` on the calling thread (the process is single-threaded here).

    Needs CAP_SYS_ADMIN or no_new_privs set, as the kernel demands; raises OSError.
    """
    if not program or len(program) % _BPF_INSN_SIZE:
        raise OSError(22, "seccomp: malformed BPF program")
    buf = ctypes.create_string_buffer(program, len(program))
    prog = _SockFprog(len(program) // _BPF_INSN_SIZE, ctypes.addressof(buf))
    libc.prctl(_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, ctypes.addressof(prog))
