"""What a test session must not leave behind on the host.

A snapshot is taken before the first daemon starts and again after the last one stopped;
anything new that belongs to the suite is a leak: mounts under the suite's temp roots,
named network namespaces, veth and bridge interfaces, container cgroups, and processes
(monitors, container processes) that still run. Things that existed at the baseline never
count, so an engineer's own containers or a second suite on the same host are not blamed
on this run — except where a leaked object carries this suite's temp root or bridge
prefix in its name, which no other run can produce.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

# A 64-hex container id anywhere in a cgroup directory name (dockerd: "docker/<id>",
# systemd driver: "docker-<id>.scope"); pydockerd names its cgroups after the id as well.
_ID_RE = re.compile(r"[0-9a-f]{64}")
CGROUP_ROOT = Path("/sys/fs/cgroup")


def _unescape_mountinfo(path: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as octal (\040 ...).
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), path)


def mount_points() -> list[str]:
    points = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            parts = line.split()
            if len(parts) > 4:
                points.append(_unescape_mountinfo(parts[4]))
    return points


def named_netns() -> set[str]:
    try:
        return set(os.listdir("/run/netns"))
    except FileNotFoundError:
        return set()


def interfaces() -> dict[str, str]:
    """name -> link kind ("veth", "bridge", "" for a plain device)."""
    try:
        out = subprocess.run(
            ["ip", "-d", "-j", "link", "show"], capture_output=True, text=True, timeout=20, check=True
        ).stdout
    except (OSError, subprocess.SubprocessError):
        # Without iproute2 fall back to sysfs: names only, kind from the bridge/ dir.
        result = {}
        for dev in Path("/sys/class/net").iterdir():
            result[dev.name] = "bridge" if (dev / "bridge").exists() else ""
        return result
    result = {}
    for link in json.loads(out or "[]"):
        kind = (link.get("linkinfo") or {}).get("info_kind", "")
        result[link["ifname"]] = kind
    return result


def cgroup_dirs() -> set[str]:
    """Every cgroup directory, on v1 and v2 hierarchies (a few hundred on a normal host)."""
    found: set[str] = set()
    if not CGROUP_ROOT.is_dir():
        return found
    for dirpath, dirnames, _files in os.walk(CGROUP_ROOT):
        for d in dirnames:
            found.add(os.path.join(dirpath, d))
    return found


def _is_container_cgroup(path: str, ids: set[str]) -> bool:
    # dockerd names them "docker/<id>" or "docker-<id>.scope"; an engine may also use the
    # 12-char short id. Any new directory carrying an id, or the engine's name, counts.
    name = os.path.basename(path)
    if _ID_RE.search(name) or "pydockerd" in path:
        return True
    return any(i in name or i[:12] in name for i in ids)


def _proc_read(pid: str, name: str) -> bytes:
    try:
        with open(f"/proc/{pid}/{name}", "rb") as f:
            return f.read()
    except OSError:
        return b""


def _ns(pid: str, kind: str) -> str:
    try:
        return os.readlink(f"/proc/{pid}/ns/{kind}")
    except OSError:
        return ""


def processes() -> dict[int, tuple[str, str]]:
    """pid -> (cmdline, pid namespace) for every live process (kernel threads excluded)."""
    result = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        raw = _proc_read(entry, "cmdline")
        if not raw:
            continue  # kernel thread or already gone
        cmd = raw.rstrip(b"\0").replace(b"\0", b" ").decode(errors="replace")
        result[int(entry)] = (cmd, _ns(entry, "pid"))
    return result


@dataclass
class Snapshot:
    mounts: list[str] = field(default_factory=list)
    netns: set[str] = field(default_factory=set)
    links: dict[str, str] = field(default_factory=dict)
    cgroups: set[str] = field(default_factory=set)
    procs: dict[int, tuple[str, str]] = field(default_factory=dict)

    @classmethod
    def take(cls) -> Snapshot:
        return cls(mount_points(), named_netns(), interfaces(), cgroup_dirs(), processes())


def find_leaks(
    baseline: Snapshot,
    roots: Iterable[str],
    bridge_prefixes: Iterable[str],
    container_ids: Iterable[str] = (),
    now: Snapshot | None = None,
) -> list[str]:
    """Return one human-readable line per leaked object (empty list: clean)."""
    now = now or Snapshot.take()
    roots = [os.path.realpath(r).rstrip("/") for r in roots]
    prefixes = tuple(bridge_prefixes)
    ids = {i for i in container_ids if i}
    leaks: list[str] = []

    def under_roots(path: str) -> bool:
        return any(path == r or path.startswith(r + "/") for r in roots)

    base_mounts = set(baseline.mounts)
    for mp in now.mounts:
        if under_roots(mp) or (mp not in base_mounts and any(i in mp for i in ids)):
            leaks.append(f"mount: {mp}")

    for ns in sorted(now.netns - baseline.netns):
        leaks.append(f"named netns: /run/netns/{ns}")

    for name, kind in sorted(now.links.items()):
        ours = bool(prefixes) and name.startswith(prefixes)
        new_virtual = name not in baseline.links and kind in ("veth", "bridge")
        if ours or new_virtual:
            leaks.append(f"interface: {name} ({kind or 'device'})")

    for cg in sorted(now.cgroups - baseline.cgroups):
        if _is_container_cgroup(cg, ids):
            leaks.append(f"cgroup: {cg}")

    host_pidns = _ns("self", "pid")
    base_namespaces = {ns for _cmd, ns in baseline.procs.values()}
    me = os.getpid()
    for pid, (cmd, pidns) in sorted(now.procs.items()):
        if pid == me:
            continue
        if any(r in cmd for r in roots):
            leaks.append(f"process {pid}: {cmd[:200]}")
        elif pidns and pidns != host_pidns and pidns not in base_namespaces:
            # A process in a pid namespace that did not exist at the start: a container
            # process whose monitor is gone or was never reaped.
            leaks.append(f"process {pid} in {pidns}: {cmd[:200]}")
    return leaks
