"""Platforms ("linux/amd64", "linux/arm/v7") and picking one from a manifest list / OCI index."""

from __future__ import annotations

import platform as _platform
from typing import Any

_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386", "ppc64le": "ppc64le",
         "s390x": "s390x", "riscv64": "riscv64"}
LOCAL_ARCH = _ARCH.get(_platform.machine(), _platform.machine())
LOCAL_VARIANT = {"arm64": "v8", "arm": "v7"}.get(LOCAL_ARCH, "")


def parse(spec: str) -> tuple[str, str, str]:
    """"os/arch[/variant]" -> (os, arch, variant); '' means this host's."""
    if not spec:
        return "linux", LOCAL_ARCH, LOCAL_VARIANT
    parts = spec.lower().split("/")
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
