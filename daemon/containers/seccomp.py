"""--security-opt seccomp: Docker's seccomp profiles turned into the runtime's typed filter.

As moby's profiles/seccomp: a profile (dockerd's default, shipped as seccomp_default.json, or
the one the CLI read from ``seccomp=PROFILE.json`` and sent as text) is reduced to the rules
that apply to this container — entries whose ``includes``/``excludes`` name capabilities are
kept or dropped by the container's capability set, architecture-conditional ones by the
machine's architecture, ``minKernel`` by the running kernel — and the ``archMap`` entry of the
native architecture adds its sub-architectures. ``--privileged`` and ``seccomp=unconfined`` run
without a filter.

Compiling a filter costs milliseconds, so programs are cached by (profile, capabilities):
containers started with the same settings share one compiled program.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

from daemon.errors import InvalidParameter
from runtime import seccompfilter as rt

DEFAULT_PROFILE = Path(__file__).with_name("seccomp_default.json")
UNCONFINED = "unconfined"

# Profiles name architectures in includes/excludes as Go does (runtime.GOARCH).
_GOARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "armv6l": "arm", "i686": "386", "i386": "386",
           "ppc64le": "ppc64le", "s390x": "s390x", "riscv64": "riscv64", "mips64": "mips64"}
_SCMP_ARCH = {"amd64": "SCMP_ARCH_X86_64", "arm64": "SCMP_ARCH_AARCH64", "arm": "SCMP_ARCH_ARM",
              "386": "SCMP_ARCH_X86", "ppc64le": "SCMP_ARCH_PPC64LE", "s390x": "SCMP_ARCH_S390X",
              "riscv64": "SCMP_ARCH_RISCV64", "mips64": "SCMP_ARCH_MIPS64"}
_CACHE_SIZE = 64


def native_arch() -> str:
    machine = os.uname().machine
    return _GOARCH.get(machine, machine)


def kernel_version(release: str | None = None) -> tuple[int, int]:
    parts = (release or os.uname().release).split("-")[0].split(".")
    try:
        return int(parts[0]), int(parts[1]) if len(parts) > 1 else 0
    except ValueError:
        return 0, 0


def requested(hc: dict) -> str | None:
    """The --security-opt seccomp value (``unconfined``, ``builtin`` or a profile's JSON text), or None."""
    for opt in hc.get("SecurityOpt") or []:
        if isinstance(opt, str):
            for sep in ("=", ":"):
                key, found, value = opt.partition(sep)
                if found and key == "seccomp":
                    return value
    return None


def _fail(reason: str) -> InvalidParameter:
    return InvalidParameter(f"Decoding seccomp profile failed: {reason}")


def _str_list(value: Any, where: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _fail(f"{where}: expected a list of strings")
    return value


def _uint64(value: Any, where: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 2**64:
        raise _fail(f"{where}: expected an unsigned 64-bit integer")
    return value


def _errno(value: Any, where: str) -> int | None:
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 0xFFFF:
        raise _fail(f"{where}: expected an errno number")
    return value


def parse(text: str) -> dict:
    """A profile in dockerd's JSON format, its shape checked; raises InvalidParameter (400)."""
    try:
        profile = json.loads(text)
    except (ValueError, RecursionError) as e:
        raise _fail(str(e)) from None
    if not isinstance(profile, dict):
        raise _fail("expected a JSON object")
    if profile.get("listenerPath"):
        raise _fail("listenerPath (SCMP_ACT_NOTIFY) is not supported")
    if profile.get("defaultAction") not in rt.ACTIONS:
        raise _fail(f"unknown defaultAction {profile.get('defaultAction')!r}")
    _errno(profile.get("defaultErrnoRet"), "defaultErrnoRet")
    if profile.get("architectures") and profile.get("archMap"):
        raise _fail("'architectures' and 'archMap' were specified in the seccomp profile, use either one")
    for arch in _str_list(profile.get("architectures"), "architectures"):
        if arch not in rt.ARCHES:
            raise _fail(f"unknown architecture {arch!r}")
    arch_map = profile.get("archMap") or []
    if not isinstance(arch_map, list):
        raise _fail("archMap: expected a list")
    for i, entry in enumerate(arch_map):
        if not isinstance(entry, dict):
            raise _fail(f"archMap[{i}]: expected an object")
        for arch in [entry.get("architecture"), *_str_list(entry.get("subArchitectures"), f"archMap[{i}]")]:
            if arch not in rt.ARCHES:
                raise _fail(f"archMap[{i}]: unknown architecture {arch!r}")
    calls = profile.get("syscalls") or []
    if not isinstance(calls, list):
        raise _fail("syscalls: expected a list")
    for i, call in enumerate(calls):
        where = f"syscalls[{i}]"
        if not isinstance(call, dict):
            raise _fail(f"{where}: expected an object")
        if call.get("name") and call.get("names"):
            raise _fail("use either 'name' or 'names'")
        if call.get("name") is not None and not isinstance(call["name"], str):
            raise _fail(f"{where}.name: expected a string")
        _str_list(call.get("names"), f"{where}.names")
        if call.get("action") not in rt.ACTIONS:
            raise _fail(f"{where}: unknown action {call.get('action')!r}")
        _errno(call.get("errnoRet"), f"{where}.errnoRet")
        args = call.get("args") or []
        if not isinstance(args, list):
            raise _fail(f"{where}.args: expected a list")
        for j, arg in enumerate(args):
            if not isinstance(arg, dict):
                raise _fail(f"{where}.args[{j}]: expected an object")
            index = arg.get("index")
            if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index <= 5:
                raise _fail(f"{where}.args[{j}].index: expected 0 to 5")
            if arg.get("op") not in rt.OPERATORS:
                raise _fail(f"{where}.args[{j}]: unknown op {arg.get('op')!r}")
            _uint64(arg.get("value", 0), f"{where}.args[{j}].value")
            _uint64(arg.get("valueTwo", 0), f"{where}.args[{j}].valueTwo")
        for key in ("includes", "excludes"):
            cond = call.get(key) or {}
            if not isinstance(cond, dict):
                raise _fail(f"{where}.{key}: expected an object")
            _str_list(cond.get("arches"), f"{where}.{key}.arches")
            _str_list(cond.get("caps"), f"{where}.{key}.caps")
            if cond.get("minKernel") is not None and not isinstance(cond["minKernel"], str):
                raise _fail(f"{where}.{key}.minKernel: expected a string such as \"4.8\"")
    return profile


def _applies(call: dict, caps: Collection[str], arch: str, kernel: tuple[int, int]) -> bool:
    exc, inc = call.get("excludes") or {}, call.get("includes") or {}
    if arch in (exc.get("arches") or []) or any(c in caps for c in exc.get("caps") or []):
        return False
    if exc.get("minKernel") and kernel >= kernel_version(exc["minKernel"]):
        return False
    if inc.get("arches") and arch not in inc["arches"]:
        return False
    if not all(c in caps for c in inc.get("caps") or []):
        return False
    return not (inc.get("minKernel") and kernel < kernel_version(inc["minKernel"]))


def select(profile: dict, caps: Collection[str], arch: str, kernel: tuple[int, int]) -> rt.Filter:
    """The filter ``profile`` gives a container with bounding set ``caps`` on ``arch`` (GOARCH)."""
    architectures = list(profile.get("architectures") or [])
    native = _SCMP_ARCH.get(arch)
    for entry in profile.get("archMap") or []:
        if entry["architecture"] == native:
            architectures += [entry["architecture"], *(entry.get("subArchitectures") or [])]
    rules = []
    for call in profile.get("syscalls") or []:
        if not _applies(call, caps, arch, kernel):
            continue
        names = tuple(call.get("names") or ([call["name"]] if call.get("name") else []))
        conditions = tuple(rt.Condition(a["index"], a["op"], a.get("value", 0), a.get("valueTwo", 0))
                           for a in call.get("args") or [])
        rules.append(rt.Rule(names, call["action"], call.get("errnoRet"), conditions))
    default_errno = profile.get("defaultErrnoRet")
    return rt.Filter(default_action=profile["defaultAction"],
                     default_errno=1 if default_errno is None else default_errno,
                     architectures=tuple(dict.fromkeys(architectures)), rules=tuple(rules))


class SeccompProfiles:
    """Which filter a container runs under, compiled once per (profile, capabilities)."""

    def __init__(self, default_profile: str, build_program: Callable[[rt.Filter], bytes], *, enabled: bool,
                 arch: str, kernel: tuple[int, int]) -> None:
        self._default = parse(default_profile)
        self._build = build_program
        self.enabled = enabled  # the kernel filters syscalls and libseccomp is there
        self._arch = arch
        self._kernel = kernel
        self._cache: dict[tuple[str, frozenset[str]], bytes] = {}
        self._lock = threading.Lock()

    def validate(self, hc: dict, caps: Collection[str]) -> None:
        """Create-time check of --security-opt seccomp (400 before anything is made)."""
        value = requested(hc)
        if value in (None, UNCONFINED, "builtin", "") or hc.get("Privileged"):
            return
        if not self.enabled:
            raise InvalidParameter("seccomp is not enabled in your kernel, cannot run a custom seccomp profile.")
        self.program(hc, caps)

    def _key(self, hc: dict, caps: Collection[str]) -> tuple[str, frozenset[str]] | None:
        """The cache key of the container's program; None when it runs unconfined."""
        value = requested(hc)
        if hc.get("Privileged") or value == UNCONFINED or not self.enabled:
            return None
        custom = "" if value in (None, "builtin") else value
        return (custom or "", frozenset(caps))

    def ready(self, hc: dict, caps: Collection[str]) -> bool:
        """program() would answer at once (unconfined or compiled before): callers skip the thread."""
        key = self._key(hc, caps)
        with self._lock:
            return key is None or key in self._cache

    def program(self, hc: dict, caps: Collection[str]) -> bytes | None:
        """The BPF program for a container with HostConfig ``hc`` and bounding set ``caps``;
        None when it runs unconfined. Blocking on a cache miss: call from a thread."""
        key = self._key(hc, caps)
        if key is None:
            return None
        with self._lock:
            cached = self._cache.get(key)
        if cached is not None:
            return cached
        value, custom = key[0], bool(key[0])
        profile = parse(value) if custom else self._default
        try:
            program = self._build(select(profile, caps, self._arch, self._kernel))
        except ValueError as e:
            raise _fail(str(e)) from None
        with self._lock:
            if len(self._cache) >= _CACHE_SIZE:
                self._cache.pop(next(iter(self._cache)))
            self._cache[key] = program
        return program


def kernel_supports_seccomp() -> bool:
    """The kernel filters syscalls (Seccomp: in /proc/self/status, CONFIG_SECCOMP_FILTER)."""
    try:
        with open("/proc/self/status") as f:
            return any(line.startswith("Seccomp_filters:") or line.startswith("Seccomp:") for line in f)
    except OSError:
        return False


def detect(default_profile: Path = DEFAULT_PROFILE) -> SeccompProfiles:
    """The daemon's seccomp settings for this machine."""
    try:
        import pyseccomp  # noqa: F401 - its import loads libseccomp
        have_lib = True
    except (ImportError, OSError):
        have_lib = False
    return SeccompProfiles(default_profile.read_text(), rt.build_program,
                           enabled=have_lib and kernel_supports_seccomp(), arch=native_arch(),
                           kernel=kernel_version())
