"""The system views: /version, /info, /events and /system/df, from the services that own the facts."""

from __future__ import annotations

import asyncio
import ipaddress
import os
import platform
import socket
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Protocol

from daemon.config import Config
from daemon.events import EventBus, EventFilter
from daemon.looplag import LoopLag
from daemon.security import SecurityFacts
from daemon.version import GIT_COMMIT, VERSION


class ContainerViews(Protocol):
    """What the system views read of the containers."""

    init_path: str | None

    def counts(self) -> dict[str, int]:
        """Containers, ContainersRunning, ContainersPaused, ContainersStopped."""

    def list(self, all_: bool, limit: int, filters_raw: str | None) -> list[dict]: ...

    async def add_sizes(self, docs: list[dict]) -> None:
        """SizeRw/SizeRootFs into the `docker ps` documents."""


class ImageViews(Protocol):
    def list(self, all_: bool, filters_raw: str | None) -> list[dict]: ...

    def count(self) -> int: ...

    def total_size(self) -> int:
        """LayersSize of docker system df."""


class VolumeViews(Protocol):
    def usage(self) -> list[dict]:
        """The volumes with their UsageData (blocking: it walks them)."""


class BuildCacheViews(Protocol):
    def usage(self) -> list[dict]:
        """The BuildCache rows of docker system df."""


@dataclass
class SystemService:
    cfg: Config
    engine_id: str
    driver_name: str
    containers: ContainerViews
    images: ImageViews
    volumes: VolumeViews
    events: EventBus
    build_cache: BuildCacheViews
    security: SecurityFacts = field(default_factory=SecurityFacts)
    looplag: LoopLag | None = None

    def debug_vars(self) -> dict:
        """GET /debug/vars (dockerd's expvar page): the daemon's own health figures."""
        doc: dict = {"cmdline": sys.argv, "memstats": _memstats()}
        if self.looplag is not None:
            doc["looplag"] = {"percentiles": self.looplag.percentiles(), "histogram": self.looplag.histogram()}
        if os.environ.get("PYDOCKERD_MEMDEBUG", "") not in ("", "0"):
            # Imported only here: tracemalloc pulls in pickle, and the report is for debugging.
            from daemon.util import memdebug
            doc["memdebug"] = memdebug.report()
        return doc
    # The API's TCP listeners as bound (fd:// ones included), for docker info's warnings.
    tcp_listeners: tuple[str, ...] = ()

    def events_stream(self, filters_raw: str | None, since: str, until: str) -> AsyncIterator[dict]:
        """GET /events. The filters and times are checked now: a bad one is an error response,
        not a cut stream."""
        return self.events.subscribe(EventFilter.parse(filters_raw, since, until))

    async def disk_usage(self) -> dict:
        """GET /system/df: images with how many containers use each, containers with sizes, volumes."""
        imgs = self.images.list(False, None)
        ctrs, _ = self.containers.list(True, 0, None)
        await self.containers.add_sizes(ctrs)
        users: dict[str, int] = {}
        for c in ctrs:
            users[c["ImageID"]] = users.get(c["ImageID"], 0) + 1
        for img in imgs:
            img["Containers"] = users.get(img["Id"], 0)
            img["SharedSize"] = 0
        return {"LayersSize": self.images.total_size(), "Images": imgs, "Containers": ctrs,
                "Volumes": await asyncio.to_thread(self.volumes.usage),
                "BuildCache": await asyncio.to_thread(self.build_cache.usage)}

    def version(self, api_version: str, min_version: str) -> dict:
        """GET /version: the engine's component, as dockerd reports it."""
        kernel = platform.release()
        arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())
        return {
            "Platform": {"Name": "pydockerd"},
            "Components": [{
                "Name": "Engine", "Version": VERSION,
                "Details": {"ApiVersion": api_version, "Arch": arch, "BuildTime": "", "Experimental": "false",
                            "GitCommit": GIT_COMMIT, "GoVersion": f"python{platform.python_version()}",
                            "KernelVersion": kernel, "MinAPIVersion": min_version, "Os": "linux"},
            }],
            "Version": VERSION, "ApiVersion": api_version, "MinAPIVersion": min_version, "GitCommit": GIT_COMMIT,
            "GoVersion": f"python{platform.python_version()}", "Os": "linux", "Arch": arch,
            "KernelVersion": kernel, "BuildTime": "",
        }

    def info(self) -> dict:
        """GET /info."""
        counts = self.containers.counts()
        try:
            mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        except (ValueError, OSError):
            mem = 0
        cgroup_version = "2" if Path("/sys/fs/cgroup/cgroup.controllers").exists() else "1"
        swap_limit = _swap_limit(cgroup_version)
        nf4 = _sysctl("net/bridge/bridge-nf-call-iptables") == "1"
        nf6 = _sysctl("net/bridge/bridge-nf-call-ip6tables") == "1"
        return {
            "ID": self.engine_id,
            **counts,
            "Images": self.images.count(),
            "Driver": self.driver_name,
            "DriverStatus": [["Backing Filesystem", _fs_type(self.cfg.data_root)],
                             ["Supports d_type", "true"], ["Native Overlay Diff", "true"],
                             ["userxattr", "false"]] if self.driver_name == "overlay2" else [],
            "Plugins": {"Volume": ["local"], "Network": ["bridge", "host", "null"], "Authorization": None,
                        "Log": ["json-file", "local"]},
            "MemoryLimit": True, "SwapLimit": swap_limit, "KernelMemory": False, "KernelMemoryTCP": False,
            "CpuCfsPeriod": True, "CpuCfsQuota": True, "CPUShares": True, "CPUSet": True, "PidsLimit": True,
            "IPv4Forwarding": _sysctl("net/ipv4/ip_forward") == "1",
            "BridgeNfIptables": nf4,
            "BridgeNfIp6tables": nf6,
            "Debug": self.cfg.debug,
            "NFd": len(os.listdir("/proc/self/fd")),
            "OomKillDisable": cgroup_version == "1",
            "NGoroutines": len(asyncio.all_tasks()),
            "SystemTime": _now_local(),
            "LoggingDriver": self.cfg.log_driver,
            "CgroupDriver": "cgroupfs",
            "CgroupVersion": cgroup_version,
            "NEventsListener": self.events.listeners,
            "KernelVersion": platform.release(),
            "OperatingSystem": _os_name(),
            "OSVersion": _os_release().get("VERSION_ID", ""),
            "OSType": "linux",
            "Architecture": platform.machine(),
            "IndexServerAddress": "https://index.docker.io/v1/",
            "RegistryConfig": _registry_config(self.cfg.insecure_registries, self.cfg.registry_mirrors),
            "NCPU": os.cpu_count() or 1,
            "MemTotal": mem,
            "GenericResources": None,
            "DockerRootDir": str(self.cfg.data_root),
            "HttpProxy": os.environ.get("HTTP_PROXY", ""), "HttpsProxy": os.environ.get("HTTPS_PROXY", ""),
            "NoProxy": os.environ.get("NO_PROXY", ""),
            "Name": socket.gethostname(),
            "Labels": list(self.cfg.labels),
            "ExperimentalBuild": False,
            "ServerVersion": VERSION,
            "Runtimes": {"pydockerd": {"path": "pydockerd-monitor"}},
            "DefaultRuntime": "pydockerd",
            "Swarm": {"NodeID": "", "NodeAddr": "", "LocalNodeState": "inactive", "ControlAvailable": False,
                      "Error": "", "RemoteManagers": None},
            "LiveRestoreEnabled": True,
            "Isolation": "",
            "InitBinary": "docker-init" if self.containers.init_path else "",
            "ContainerdCommit": {"ID": ""}, "RuncCommit": {"ID": ""}, "InitCommit": {"ID": ""},
            "SecurityOptions": list(self.security.options),
            "Warnings": list(self.security.warnings)
            + warnings(self.cfg, self.tcp_listeners, swap_limit=swap_limit, nf4=nf4, nf6=nf6),
        }

_ATTACK_SURFACE = """
         Access to the remote API is equivalent to root access on the host. Refer
         to the 'Docker daemon attack surface' section in the documentation for
         more information: https://docs.docker.com/go/attack-surface/"""


def warnings(cfg: Config, tcp_listeners: tuple[str, ...], *, swap_limit: bool, nf4: bool, nf6: bool) -> list[str]:
    """`docker info`'s WARNING lines, dockerd's words (daemon/info.go, info_unix.go)."""
    out = []
    for url in tcp_listeners:
        addr = url.partition("://")[2]
        if not (cfg.tls or cfg.tlsverify):
            out.append(f"WARNING: API is accessible on http://{addr} without encryption.{_ATTACK_SURFACE}")
        elif not cfg.tlsverify:
            out.append(f"WARNING: API is accessible on https://{addr} without TLS client verification."
                       f"{_ATTACK_SURFACE}")
    if not swap_limit:
        out.append("WARNING: No swap limit support")
    if not nf4:
        out.append("WARNING: bridge-nf-call-iptables is disabled")
    if not nf6:
        out.append("WARNING: bridge-nf-call-ip6tables is disabled")
    return out


def _swap_limit(cgroup_version: str) -> bool:
    """Whether the kernel accounts swap per cgroup (memory.memsw / memory.swap.max), which --memory-swap needs."""
    if cgroup_version == "1":
        return Path("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes").exists()
    return any(Path("/sys/fs/cgroup").glob("*/memory.swap.max"))


def _registry_config(insecure: list[str], mirrors: list[str]) -> dict:
    """RegistryConfig as dockerd fills it: insecure CIDRs apart from insecure names, loopback always insecure."""
    cidrs = ["::1/128", "127.0.0.0/8"]
    index = {"docker.io": {"Name": "docker.io", "Mirrors": list(mirrors), "Secure": True, "Official": True}}
    for entry in insecure:
        try:
            cidrs.append(str(ipaddress.ip_network(entry, strict=False)))
        except ValueError:
            index[entry] = {"Name": entry, "Mirrors": [], "Secure": False, "Official": False}
    return {"AllowNondistributableArtifactsCIDRs": None, "AllowNondistributableArtifactsHostnames": None,
            "InsecureRegistryCIDRs": cidrs, "IndexConfigs": index, "Mirrors": list(mirrors)}


def _memstats() -> dict[str, int]:
    """Rss, Pss, Private_Dirty... of this process in bytes (/proc/self/smaps_rollup)."""
    out: dict[str, int] = {}
    try:
        with open("/proc/self/smaps_rollup") as f:
            for line in f:
                key, _, rest = line.partition(":")
                parts = rest.split()
                if len(parts) == 2 and parts[1] == "kB":
                    out[key] = int(parts[0]) * 1024
    except OSError:
        pass
    return out


def _sysctl(name: str) -> str:
    try:
        return Path("/proc/sys", name).read_text().strip()
    except OSError:
        return ""


def _os_release() -> dict[str, str]:
    out = {}
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            k, _, v = line.partition("=")
            out[k] = v.strip('"')
    except OSError:
        pass
    return out


def _os_name() -> str:
    return _os_release().get("PRETTY_NAME", "Linux")


def _fs_type(path: Path) -> str:
    best, fstype = "", "unknown"
    try:
        for line in Path("/proc/self/mounts").read_text().splitlines():
            parts = line.split()
            mnt = parts[1]
            if str(path).startswith(mnt) and len(mnt) > len(best):
                best, fstype = mnt, parts[2]
    except OSError:
        pass
    return {"ext4": "extfs", "ext3": "extfs"}.get(fstype, fstype)


def _now_local() -> str:
    return datetime.now().astimezone().isoformat()
