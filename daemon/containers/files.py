"""A container's files on the host: its directory (init layer, name files, log), its rootfs
from the storage driver, and its runtime bundle directory.

Blocking file-system work; the lifecycle calls it from a thread. Images are looked up only
for their layers, which make the rootfs's lower directories.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

from daemon.containers.collaborators import ContainerImages
from daemon.containers.container import Container, paths
from daemon.containers.defaults import ContainerDefaults
from network import hosts

log = logging.getLogger("pydockerd.containers")

# What dockerd's "-init" layer holds: the mount points the runtime needs, so that creating
# them never copies up into the container's own layer (and `docker diff` stays clean).
_INIT_DIRS = ("dev/pts", "dev/shm", "dev/mqueue", "proc", "sys", "etc")
_INIT_FILES = ("dev/console", "etc/hostname", "etc/hosts", "etc/resolv.conf", ".dockerenv")


def make_init_layer(root: Path) -> None:
    root.mkdir(mode=0o755)
    for d in _INIT_DIRS:
        (root / d).mkdir(mode=0o755, parents=True, exist_ok=True)
    for f in _INIT_FILES:
        (root / f).touch(mode=0o644 if f != "dev/console" else 0o600)
    (root / "etc" / "mtab").symlink_to("/proc/mounts")


class ContainerFiles:
    def __init__(self, *, driver: Any, images: ContainerImages, data_root: Path, exec_root: Path,
                 defaults: ContainerDefaults | None = None) -> None:
        self.defaults = defaults or ContainerDefaults()
        self.driver = driver
        self.images = images
        self.data_root = data_root
        self.exec_root = exec_root

    def paths(self, c: Container) -> dict[str, Path]:
        return paths(self.data_root, c.id)

    def bundle(self, c: Container) -> Path:
        # Short on purpose: the monitor's sockets live here and sun_path holds 108 bytes.
        return self.exec_root / "ctr" / c.id[:12]  # as in remove_by_id

    def lowers(self, c: Container) -> list[Path]:
        """The container's init layer on top of the image's layers (overlayfs lowerdir order)."""
        img = self.images.images.get(c.image_id)
        top = c.top_chain or (img.top_chain_id if img else None)
        image_lowers = self.images.layers.lowers(top) if top else []
        return [self.paths(c)["init"], *image_lowers]

    def create(self, c: Container) -> None:
        """The container's directory, init layer and rootfs (not mounted)."""
        p = self.paths(c)
        p["dir"].mkdir(parents=True, exist_ok=False)
        make_init_layer(p["init"])
        self.driver.create(c.id, self.lowers(c))

    def remove(self, c: Container) -> None:
        self.remove_by_id(c.id)

    def remove_by_id(self, cid: str) -> None:
        """The container's directory goes last: while it is there, a daemon that died meanwhile
        finds the rest at its next start (orphans())."""
        try:
            self.driver.remove(cid)
        except FileNotFoundError:
            pass
        shutil.rmtree(self.exec_root / "ctr" / cid[:12], ignore_errors=True)
        shutil.rmtree(paths(self.data_root, cid)["dir"], ignore_errors=True)

    def orphans(self, known: set[str]) -> list[str]:
        """Ids of container directories without a container: a removal (or a create) that a
        crash interrupted."""
        try:
            entries = list((self.data_root / "containers").iterdir())
        except FileNotFoundError:
            return []
        return [p.name for p in entries if p.name not in known and len(p.name) == 64 and p.is_dir()]

    def mount(self, c: Container) -> Path:
        return self.driver.mount(c.id, self.lowers(c))

    def unmount_quietly(self, c: Container) -> None:
        try:
            self.driver.unmount(c.id)
        except OSError as e:
            log.warning("unmounting %s: %s", c.id, e)

    def size_rw(self, c: Container) -> int:
        try:
            return self.driver.size_rw(c.id)
        except OSError:
            return 0

    def changes(self, c: Container) -> list[tuple[str, int]]:
        return self.driver.changes(c.id, self.lowers(c))

    def graph_driver(self, c: Container) -> dict:
        """GraphDriver of `docker inspect`."""
        if c.driver == "vfs":
            return {"Name": "vfs", "Data": None}
        base = Path(getattr(self.driver, "root", self.data_root)) / c.id
        lowers = ":".join(str(x) for x in self.lowers(c))
        return {"Name": c.driver, "Data": {"LowerDir": lowers, "MergedDir": str(base / "merged"),
                                           "UpperDir": str(base / "upper"), "WorkDir": str(base / "work")}}

    def write_name_files(self, c: Container, extra_hosts: list[tuple[str, str]], ipv6: bool, *,
                         host_network: bool, internal_dns: bool = False, hosts_file: bool = True) -> None:
        """/etc/hostname, /etc/hosts (unless `hosts_file` is False: the network service writes it
        once addressed) and /etc/resolv.conf of a container with its own network or the host's;
        with `internal_dns` (user networks) the resolv.conf points at the embedded resolver."""
        p = self.paths(c)
        hc = self.defaults.with_dns(c.host_config)
        hosts.write_hostname(p["hostname"], c.config["Hostname"])
        if hosts_file:
            hosts.write_hosts(p["hosts"], c.config["Hostname"], c.config.get("Domainname", ""), None, extra_hosts,
                              host_network=host_network)
        dns = hc.get("Dns") or []
        search = hc.get("DnsSearch") or []
        options = hc.get("DnsOptions") or []
        if internal_dns:
            hosts.write_internal_resolv_conf(p["resolv"], dns=dns, search=search, options=options, ipv6=ipv6)
            return
        hosts.write_resolv_conf(p["resolv"], host_network=host_network, dns=dns, search=search, options=options,
                                ipv6=ipv6)
