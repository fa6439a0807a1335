"""The Daemon object: wires config, store, storage, runtime and services together."""

from __future__ import annotations

import asyncio
import logging
import os
import platform
import shutil
import socket
import uuid
from pathlib import Path

from api.backends import Backends
from daemon.config import Config
from daemon.containers.archive import ArchiveService
from daemon.containers.registry import ContainerRegistry
from daemon.containers.service import ContainerService
from daemon.containers.stats import StatsService
from daemon.events import EventBus
from daemon.execs.service import ExecService
from daemon.images.service import ImageService
from daemon.networks.service import NetworkService
from daemon.store import Store
from daemon.version import GIT_COMMIT, VERSION
from daemon.volumes.service import VolumeService
from runtime import cgroups
from storage.blobs import BlobStore
from storage.layers import LayerStore
from storage.layersource import LayerSources
from storage.rootfs import make_driver, mounted_under
from storage.volumes import LocalDriver

log = logging.getLogger("pydockerd")


def find_init(cfg: Config) -> str | None:
    """The binary behind `docker run --init` (tini, as dockerd's docker-init)."""
    for candidate in (cfg.init_path, "/usr/bin/tini-static", "/usr/bin/docker-init", "/usr/libexec/docker/docker-init"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return shutil.which("tini-static")


class Daemon:
    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        root = cfg.data_root
        self.store = Store(root / "pydockerd.db")
        self.events = EventBus()
        self.blobs = BlobStore(root / "blobs")
        self.layers = LayerStore(root / "layers")
        self.driver = make_driver(cfg.storage_driver, root / "rootfs")
        self.cgroups = cgroups.detect(cfg.cgroup_parent)
        # Built first: every subsystem finds containers (and who uses an image or a volume) here.
        self.registry = ContainerRegistry(self.store)
        self.images = ImageService(self.store, self.blobs, self.layers,
                                   LayerSources(root / "layer-sources", self.blobs, self.layers),
                                   self.registry, self.events, self.driver.name)
        self.volumes = VolumeService(self.store, LocalDriver(root / "volumes"), self.events, self.registry)
        self.networks = NetworkService(store=self.store, registry=self.registry, events=self.events,
                                       exec_root=cfg.exec_root, data_root=root, default_bridge=cfg.bridge,
                                       bip=cfg.bip, ip_masq=cfg.ip_masq)
        self.containers = ContainerService(store=self.store, registry=self.registry, images=self.images,
                                           volumes=self.volumes, networks=self.networks, events=self.events,
                                           driver=self.driver, data_root=root, exec_root=cfg.exec_root,
                                           init_path=find_init(cfg), cgroups=self.cgroups)
        self.archive = ArchiveService(registry=self.registry, files=self.containers.files, volumes=self.volumes,
                                      events=self.events)
        self.execs = ExecService(self.registry, self.events, self.cgroups)
        self.stats = StatsService(self.registry, self.cgroups)
        self.id = self._engine_id()
        # Set on SIGTERM/SIGINT, before the API stops: responses that would last as long as the
        # daemon (wait, logs -f, events, stats) end then.
        self.stopping = asyncio.Event()

    def backends(self) -> Backends:
        """What the HTTP layer may call: the services, each seen through its router's Protocol."""
        return Backends(containers=self.containers, archive=self.archive, stats=self.stats, execs=self.execs,
                        images=self.images, distribution=self, networks=self.networks, volumes=self.volumes,
                        system=self, stopping=self.stopping)

    def _engine_id(self) -> str:
        path = self.cfg.data_root / "engine-id"
        try:
            return path.read_text().strip()
        except FileNotFoundError:
            value = str(uuid.uuid4())
            path.write_text(value + "\n")
            return value

    async def start(self) -> None:
        self.store.open()
        self.images.load()
        self.volumes.load()
        await self.networks.load()
        await self.containers.load()
        # load() has scheduled the restarts of policy containers; they wait for this clean-up
        # of what a crash left, which would otherwise take away the rootfs and network
        # namespace they had just set up.
        self._reconcile_mounts()
        self.volumes.reconcile()
        await self.networks.reconcile()
        self.containers.booted.set()

    def _reconcile_mounts(self) -> None:
        """Unmounts the rootfs and removes the cgroups of containers that are not running (left
        by a crash). Only our own containers: other daemons may share the cgroup parent."""
        running = {c.id for c in self.registry if c.running}
        for cid in self.cgroups.list() & (self.registry.ids() - running):
            try:
                self.cgroups.remove(cid)
            except OSError as e:
                log.warning("cannot remove the cgroup of %s: %s", cid, e)
        for mnt in mounted_under(self.cfg.data_root / "rootfs"):
            cid = Path(mnt).parent.name
            if cid not in running:
                log.info("unmounting leftover %s", mnt)
                try:
                    self.driver.unmount(cid)
                except OSError as e:
                    log.warning("cannot unmount %s: %s", mnt, e)

    async def stop(self) -> None:
        await self.containers.shutdown()
        await asyncio.to_thread(self.cgroups.release)
        await self.networks.shutdown()
        await asyncio.to_thread(self.layers.wait_discards)
        self.store.close()

    # -- system views ------------------------------------------------------------------------
    def version(self, api_version: str, min_version: str) -> dict:
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
        counts = self.containers.counts()
        try:
            mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        except (ValueError, OSError):
            mem = 0
        cgroup_version = "2" if Path("/sys/fs/cgroup/cgroup.controllers").exists() else "1"
        return {
            "ID": self.id,
            **counts,
            "Images": len(self.images.images),
            "Driver": self.driver.name,
            "DriverStatus": [["Backing Filesystem", _fs_type(self.cfg.data_root)],
                             ["Supports d_type", "true"], ["Native Overlay Diff", "true"],
                             ["userxattr", "false"]] if self.driver.name == "overlay2" else [],
            "Plugins": {"Volume": ["local"], "Network": ["bridge", "host", "null"], "Authorization": None,
                        "Log": ["json-file"]},
            "MemoryLimit": True, "SwapLimit": True, "KernelMemory": False, "KernelMemoryTCP": False,
            "CpuCfsPeriod": True, "CpuCfsQuota": True, "CPUShares": True, "CPUSet": True, "PidsLimit": True,
            "IPv4Forwarding": _sysctl("net/ipv4/ip_forward") == "1",
            "BridgeNfIptables": _sysctl("net/bridge/bridge-nf-call-iptables") == "1",
            "BridgeNfIp6tables": _sysctl("net/bridge/bridge-nf-call-ip6tables") == "1",
            "Debug": self.cfg.log_level == "debug",
            "NFd": len(os.listdir("/proc/self/fd")),
            "OomKillDisable": cgroup_version == "1",
            "NGoroutines": len(asyncio.all_tasks()),
            "SystemTime": _now_local(),
            "LoggingDriver": "json-file",
            "CgroupDriver": "cgroupfs",
            "CgroupVersion": cgroup_version,
            "NEventsListener": self.events.listeners,
            "KernelVersion": platform.release(),
            "OperatingSystem": _os_name(),
            "OSVersion": _os_release().get("VERSION_ID", ""),
            "OSType": "linux",
            "Architecture": platform.machine(),
            "IndexServerAddress": "https://index.docker.io/v1/",
            "RegistryConfig": {"AllowNondistributableArtifactsCIDRs": [],
                               "AllowNondistributableArtifactsHostnames": [],
                               "InsecureRegistryCIDRs": ["127.0.0.0/8", "::1/128"],
                               "IndexConfigs": {}, "Mirrors": []},
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
            "SecurityOptions": ["name=cgroupns"] if cgroup_version == "2" else [],
            "Warnings": [],
        }


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
    from datetime import datetime

    return datetime.now().astimezone().isoformat()
