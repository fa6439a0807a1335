"""The Daemon object: the composition root. It builds config, store, storage, runtime and the
services, each given its collaborators by constructor, and starts and stops them in order."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import uuid
from pathlib import Path

from api.backends import Backends
from daemon.config import Config
from daemon.containers.archive import ArchiveService
from daemon.containers.registry import ContainerRegistry
from daemon.containers.service import ContainerService
from daemon.containers.stats import StatsService
from daemon.distribution.pull import Puller
from daemon.distribution.push import Pusher
from daemon.distribution.registries import RegistryClients
from daemon.distribution.service import DistributionService
from daemon.events import EventBus
from daemon.execs.service import ExecService
from daemon.images.commit import CommitService
from daemon.images.imagefiles import ImageArchives, Spool
from daemon.images.service import ImageService
from daemon.looplag import LoopLag
from daemon.networks.endpoints import SandboxService
from daemon.networks.sandbox import Sandboxes
from daemon.networks.service import NetworkService
from daemon.store import Store
from daemon.system import SystemService
from daemon.util import memtrim
from daemon.volumes.service import VolumeService
from runtime import cgroups
from runtime.launcher import ZygoteLauncher
from storage.blobs import BlobStore
from storage.layers import LayerStore
from storage.layersource import LayerSources
from storage.mounts import mounted_under
from storage.rootfs import make_driver
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
        self.sources = LayerSources(root / "layer-sources", self.blobs, self.layers)
        self.images = ImageService(self.store, self.blobs, self.layers, self.sources, self.registry, self.events,
                                   self.driver.name)
        spool = Spool(root / "tmp")
        self.image_archives = ImageArchives(self.images, self.layers, self.sources, self.events, spool)
        registries = RegistryClients(cfg.insecure_registries or [])
        self.distribution = DistributionService(
            Puller(self.images, self.blobs, self.layers, self.sources, registries, self.events),
            Pusher(self.images, self.blobs, self.layers, self.sources, registries, self.events, spool),
            registries)
        self.volumes = VolumeService(self.store, LocalDriver(root / "volumes"), self.events, self.registry)
        # The networks and the containers' side of them share the table of live sandboxes.
        sandboxes = Sandboxes()
        self.networks = NetworkService(store=self.store, registry=self.registry, events=self.events,
                                       sandboxes=sandboxes, default_bridge=cfg.bridge, bip=cfg.bip,
                                       ip_masq=cfg.ip_masq)
        self.sandboxes = SandboxService(networks=self.networks, sandboxes=sandboxes, registry=self.registry,
                                        events=self.events, exec_root=cfg.exec_root, data_root=root)
        # Monitors and exec processes are forked from a template process that shares its
        # memory with them.
        self.launcher = ZygoteLauncher(cfg.exec_root)
        self.containers = ContainerService(store=self.store, registry=self.registry, images=self.images,
                                           volumes=self.volumes, networks=self.sandboxes, events=self.events,
                                           driver=self.driver, data_root=root, exec_root=cfg.exec_root,
                                           init_path=find_init(cfg), cgroups=self.cgroups,
                                           launcher=self.launcher)
        self.archive = ArchiveService(registry=self.registry, files=self.containers.files, volumes=self.volumes,
                                      events=self.events)
        self.commit = CommitService(self.containers, self.images, self.blobs, self.layers, self.sources,
                                    self.driver, self.events)
        self.execs = ExecService(self.registry, self.events, self.cgroups, self.launcher)
        self.stats = StatsService(self.registry, self.cgroups)
        self.id = self._engine_id()
        self.looplag = LoopLag()
        self.system = SystemService(cfg, self.id, self.driver.name, self.containers, self.images, self.volumes,
                                    self.events, self.looplag)
        # Set on SIGTERM/SIGINT, before the API stops: responses that would last as long as the
        # daemon (wait, logs -f, events, stats) end then.
        self.stopping = asyncio.Event()
        self._trimmer: asyncio.Task | None = None

    def backends(self) -> Backends:
        """What the HTTP layer may call: the services, each seen through its router's Protocol."""
        return Backends(containers=self.containers, archive=self.archive, stats=self.stats, execs=self.execs,
                        images=self.images, image_archives=self.image_archives, commit=self.commit,
                        distribution=self.distribution, networks=self.networks, network_connect=self.sandboxes,
                        volumes=self.volumes, system=self.system, stopping=self.stopping)

    def _engine_id(self) -> str:
        path = self.cfg.data_root / "engine-id"
        try:
            return path.read_text().strip()
        except FileNotFoundError:
            value = str(uuid.uuid4())
            path.write_text(value + "\n")
            return value

    async def start(self) -> None:
        self.looplag.start()
        self._trimmer = asyncio.create_task(memtrim.trim_periodically(), name="malloc-trim")
        await self.launcher.start()
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
        await self.sandboxes.reconcile()
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
        await self.launcher.close()
        await asyncio.to_thread(self.cgroups.release)
        await self.sandboxes.shutdown()
        await self.networks.shutdown()
        await asyncio.to_thread(self.layers.wait_discards)
        self.store.close()
        await self.looplag.stop()
        if self._trimmer is not None:
            self._trimmer.cancel()

