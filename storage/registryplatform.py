"""Platforms ("linux/amd64", "linux/arm/v7") and picking one from a manifest list / OCI index."""

from __future__ import annotations

import platform as _platform
from typing import Any

_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386", "ppc64le": "ppc64le",
         "s390x": "s390x", "riscv64": "riscv64"}
LOCAL_ARCH = _ARCH.get(_platform.machine(), _platform.machine())
LOCAL_VARIANT = {"arm64": "v8", "arm": "v7"}.get(LOCAL_ARCH, "")


# containerd's platforms package: what it knows, and so what dockerd accepts.
_KNOWN_OS = {"aix", "android", "darwin", "dragonfly", "freebsd", "hurd", "illumos", "ios", "js", "linux", "nacl",
             "netbsd", "openbsd", "plan9", "solaris", "wasip1", "windows", "zos"}
_KNOWN_ARCH = {"386", "amd64", "amd64p32", "arm", "armbe", "arm64", "arm64be", "loong64", "mips", "mipsle",
               "mips64", "mips64le", "mips64p32", "mips64p32le", "ppc", "ppc64", "ppc64le", "riscv", "riscv64",
               "s390", "s390x", "sparc", "sparc64", "wasm"}


class InvalidPlatform(ValueError):
    pass


def parse(spec: str) -> tuple[str, str, str]:
    """"os/arch[/variant]" -> (os, arch, variant); '' means this host's. InvalidPlatform for a
    platform containerd would not know, with its message."""
    if not spec:
        return "linux", LOCAL_ARCH, LOCAL_VARIANT
    parts = spec.lower().split("/")
    known = parts[0] in _KNOWN_OS if len(parts) > 1 else parts[0] in _KNOWN_OS | _KNOWN_ARCH
    if not known or len(parts) > 3 or len(parts) > 1 and _ARCH.get(parts[1], parts[1]) not in _KNOWN_ARCH:
        raise InvalidPlatform(f"{spec!r}: unknown operating system or architecture: invalid argument"
                              .replace("'", '"'))
    if len(parts) == 1:  # "amd64" alone is an architecture, as in containerd's platforms.Parse
        return ("linux", parts[0], "") if parts[0] != "linux" else ("linux", LOCAL_ARCH, LOCAL_VARIANT)
    arch = _ARCH.get(parts[1], parts[1])
    return parts[0], arch, parts[2] if len(parts) > 2 else ""


def matches(p: Any, want: tuple[str, str, str]) -> bool:
    if not isinstance(p, dict):
        return False
    os_, arch, variant = want
    if p.get("os") != os_ or p.get("architecture") != arch:
        return False
    # arm64 images mostly omit the variant; a wanted variant only rules out a different one.
    return not variant or not p.get("variant") or p.get("variant") == variant


def select(manifests: list[dict], spec: str) -> dict | None:
    want = parse(spec)
    for m in manifests:
        if matches(m.get("platform"), want):
            return m
    return None


def local_platform_matches(p: Any) -> bool:
    """For OCI layouts with several platforms: a descriptor without a platform counts as ours."""
    return p is None or matches(p, parse(""))
