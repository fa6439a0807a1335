"""What `docker info` says about confinement: the Security Options in force and what the host
has that pydockerd does not use.

AppArmor and SELinux are detected, never claimed: pydockerd applies neither, so a host that has
one gets a warning instead of a security option that would pretend containers are confined by it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class SecurityFacts:
    options: list[str] = field(default_factory=list)  # Info.SecurityOptions
    warnings: list[str] = field(default_factory=list)  # added to Info.Warnings


def _apparmor_enabled(sys_root: Path) -> bool:
    try:
        return (sys_root / "module/apparmor/parameters/enabled").read_text().strip() == "Y"
    except OSError:
        return False


def _selinux_enabled(sys_root: Path) -> bool:
    return (sys_root / "fs/selinux/enforce").exists()


def describe(*, seccomp: bool, cgroupns: bool, sys_root: Path = Path("/sys")) -> SecurityFacts:
    options = []
    if seccomp:
        options.append("name=seccomp,profile=builtin")
    if cgroupns:
        options.append("name=cgroupns")
    warnings = []
    if _apparmor_enabled(sys_root):
        warnings.append("WARNING: AppArmor is enabled on this host, but pydockerd applies no AppArmor profile "
                        "to containers")
    if _selinux_enabled(sys_root):
        warnings.append("WARNING: SELinux is enabled on this host, but pydockerd applies no SELinux labels "
                        "to containers")
    if not seccomp:
        warnings.append("WARNING: No seccomp support: containers run without a seccomp filter")
    return SecurityFacts(options, warnings)
