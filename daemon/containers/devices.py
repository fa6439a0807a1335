"""Which device numbers a container may use: the devices cgroup's allow-list.

As dockerd with runc: everything is denied, then the container's --device nodes (with their
cgroup permissions) and --device-cgroup-rule entries are allowed, then runc's default list:
mknod of any node (creating one is harmless, opening it is what the list guards), the
standard character devices, the pty devices and tun. ``--privileged`` allows every device.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Callable

from daemon.containers import runtime_options
from daemon.errors import InvalidParameter

# runc's AllowedDevices (libcontainer/specconv), in the devices cgroup's "type major:minor access" form.
DEFAULT_RULES = (
    "c *:* m", "b *:* m",
    "c 1:3 rwm",  # /dev/null
    "c 1:8 rwm",  # /dev/random
    "c 1:7 rwm",  # /dev/full
    "c 5:0 rwm",  # /dev/tty
    "c 1:5 rwm",  # /dev/zero
    "c 1:9 rwm",  # /dev/urandom
    "c 5:1 rwm",  # /dev/console
    "c 136:* rwm",  # /dev/pts/*
    "c 5:2 rwm",  # /dev/ptmx
    "c 10:200 rwm",  # /dev/net/tun
)

# dockerd's deviceCgroupRuleRegex.
_RULE_RE = re.compile(r"^([acb]) ([0-9]+|\*):([0-9]+|\*) ([rwm]{1,3})$")


def validate_cgroup_rules(hc: dict) -> list[str]:
    """--device-cgroup-rule, checked at create with dockerd's wording."""
    rules = hc.get("DeviceCgroupRules") or []
    if not isinstance(rules, list) or not all(isinstance(r, str) for r in rules):
        raise InvalidParameter("json: cannot unmarshal into Go struct field HostConfig.DeviceCgroupRules "
                               "of type string")
    for rule in rules:
        if not _RULE_RE.match(rule):
            raise InvalidParameter(f"invalid device cgroup format '{rule}'")
    return rules


def _device_rule(path: str, permissions: str, stat_fn: Callable[[str], os.stat_result]) -> str | None:
    st = stat_fn(path)
    kind = "b" if stat.S_ISBLK(st.st_mode) else "c" if stat.S_ISCHR(st.st_mode) else ""
    return f"{kind} {os.major(st.st_rdev)}:{os.minor(st.st_rdev)} {permissions}" if kind else None


def cgroup_rules(hc: dict, stat_fn: Callable[[str], os.stat_result] = os.stat) -> tuple[str, ...] | None:
    """The rules to allow after denying everything; None: no restriction (--privileged).
    Stats the host's --device nodes (blocking)."""
    if hc.get("Privileged"):
        return None
    rules: list[str] = []
    for dev in hc.get("Devices") or []:
        if isinstance(dev, dict) and isinstance(dev.get("PathOnHost"), str):
            try:
                rule = _device_rule(dev["PathOnHost"], dev.get("CgroupPermissions") or "rwm", stat_fn)
            except OSError:
                rule = None
            if rule is not None:  # else the runtime refuses the node with dockerd's words when it makes it
                rules.append(rule)
    rules += validate_cgroup_rules(hc)
    return (*rules, *DEFAULT_RULES)


def validate(hc: dict) -> None:
    validate_cgroup_rules(hc)
    runtime_options.devices(hc)
