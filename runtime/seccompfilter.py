"""seccomp filters as typed values, compiled to a BPF program by libseccomp.

Runs in the daemon (libseccomp through its Python bindings, ``pyseccomp``), once per distinct
filter; the container's init and every exec only load the ready program (runtime/seccomp.py),
so a container start pays for neither libseccomp nor the bindings' import.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field

# Actions as Docker's profiles name them (libseccomp's SCMP_ACT_*).
ACTIONS = ("SCMP_ACT_KILL", "SCMP_ACT_KILL_THREAD", "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_TRAP", "SCMP_ACT_ERRNO",
           "SCMP_ACT_TRACE", "SCMP_ACT_ALLOW", "SCMP_ACT_LOG")
OPERATORS = ("SCMP_CMP_NE", "SCMP_CMP_LT", "SCMP_CMP_LE", "SCMP_CMP_EQ", "SCMP_CMP_GE", "SCMP_CMP_GT",
             "SCMP_CMP_MASKED_EQ")
ARCHES = ("SCMP_ARCH_X86", "SCMP_ARCH_X86_64", "SCMP_ARCH_X32", "SCMP_ARCH_ARM", "SCMP_ARCH_AARCH64",
          "SCMP_ARCH_MIPS", "SCMP_ARCH_MIPS64", "SCMP_ARCH_MIPS64N32", "SCMP_ARCH_MIPSEL", "SCMP_ARCH_MIPSEL64",
          "SCMP_ARCH_MIPSEL64N32", "SCMP_ARCH_PPC", "SCMP_ARCH_PPC64", "SCMP_ARCH_PPC64LE", "SCMP_ARCH_S390",
          "SCMP_ARCH_S390X", "SCMP_ARCH_PARISC", "SCMP_ARCH_PARISC64", "SCMP_ARCH_RISCV64")

_EPERM, _ENOSYS = 1, 38
_NEWER_SCAN = 256  # syscall numbers looked at above the profile's newest


@dataclass(frozen=True)
class Condition:
    index: int  # syscall argument 0-5
    op: str  # one of OPERATORS
    value: int
    value_two: int = 0  # the mask's operand of SCMP_CMP_MASKED_EQ


@dataclass(frozen=True)
class Rule:
    names: tuple[str, ...]
    action: str
    errno: int | None = None  # for SCMP_ACT_ERRNO / SCMP_ACT_TRACE; None: EPERM, as runc
    conditions: tuple[Condition, ...] = ()


@dataclass(frozen=True)
class Filter:
    """What to do with each syscall; the rules already chosen for the container's capabilities
    and the machine's architecture (daemon/containers/seccomp.py does that)."""

    default_action: str
    default_errno: int = 1  # EPERM, as dockerd's profile and libseccomp without errnoRet
    architectures: tuple[str, ...] = ()  # besides the native one
    rules: tuple[Rule, ...] = field(default_factory=tuple)


def _action(lib, name: str, errno: int | None, default_errno: int) -> int:
    if name == "SCMP_ACT_ERRNO":
        return lib.ERRNO(default_errno if errno is None else errno)
    if name == "SCMP_ACT_TRACE":
        return lib.TRACE(default_errno if errno is None else errno)
    return {"SCMP_ACT_KILL": lib.KILL, "SCMP_ACT_KILL_THREAD": lib.KILL_THREAD,
            "SCMP_ACT_KILL_PROCESS": lib.KILL_PROCESS, "SCMP_ACT_TRAP": lib.TRAP,
            "SCMP_ACT_ALLOW": lib.ALLOW, "SCMP_ACT_LOG": lib.LOG}[name]


def _newer_than(lib, named: set[str]) -> list[str]:
    """Syscalls libseccomp knows with a (native) number above every syscall in ``named``."""
    numbers = [lib.resolve_syscall(lib.Arch.NATIVE, name) for name in named]
    top = max((n for n in numbers if n >= 0), default=-1)
    out = []
    for number in range(top + 1, top + 1 + _NEWER_SCAN):
        try:
            name = lib.resolve_syscall(lib.Arch.NATIVE, number).decode()
        except ValueError:
            continue
        if name not in named:
            out.append(name)
    return out


def build_program(flt: Filter) -> bytes:
    """The BPF program (an array of struct sock_filter) for ``flt``.

    Follows runc's translation: syscalls libseccomp does not know are skipped; a rule with two
    conditions on the same argument becomes one rule per condition (libseccomp ANDs the
    conditions of a rule and refuses two on one argument); a rule that repeats the default
    action is a no-op and skipped. And as runc, syscalls newer than every one the profile names
    fail with ENOSYS rather than the default errno, so that a libc tries its older way (glibc's
    fchmodat falls back from fchmodat2 on ENOSYS only); here that covers the syscalls this
    libseccomp knows. Raises ValueError for what libseccomp refuses.
    """
    import pyseccomp as lib

    default = _action(lib, flt.default_action, None, flt.default_errno)
    sf = lib.SyscallFilter(default)
    try:
        # A binary search over syscall numbers instead of a linear list: a few BPF instructions
        # per syscall instead of up to a thousand for the default profile (libseccomp >= 2.5).
        sf.set_attr(lib.Attr.CTL_OPTIMIZE, 2)
    except OSError:
        pass
    for arch in flt.architectures:
        number = getattr(lib.Arch, arch.removeprefix("SCMP_ARCH_"), None)
        if number is None:
            raise ValueError(f"unsupported seccomp architecture {arch}")
        if not sf.exist_arch(number):
            sf.add_arch(number)
    ops = {name: getattr(lib, name.removeprefix("SCMP_CMP_")) for name in OPERATORS}
    for rule in flt.rules:
        action = _action(lib, rule.action, rule.errno, _EPERM)  # runc: a rule without errnoRet is EPERM
        if action == default:
            continue
        args = [lib.Arg(c.index, ops[c.op], c.value, c.value_two) for c in rule.conditions]
        per_arg = [c.index for c in rule.conditions]
        groups = [[a] for a in args] if len(set(per_arg)) < len(per_arg) else [args]
        for name in rule.names:
            if lib.resolve_syscall(lib.Arch.NATIVE, name) == -1:
                continue  # unknown to this libseccomp: runc skips it too
            for group in groups:
                try:
                    sf.add_rule(action, name, *group)
                except OSError as e:
                    raise ValueError(f"seccomp rule for {name}: {e.strerror}") from e
    enosys = lib.ERRNO(_ENOSYS)
    if flt.default_action not in ("SCMP_ACT_ALLOW", "SCMP_ACT_LOG") and enosys != default:
        for name in _newer_than(lib, {n for r in flt.rules for n in r.names}):
            sf.add_rule(enosys, name)
    with tempfile.TemporaryFile() as f:
        sf.export_bpf(f)
        f.seek(0)
        return f.read()
