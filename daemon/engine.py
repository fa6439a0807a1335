"""The Daemon object: the composition root. It builds config, store, storage, runtime and the
services, each given its collaborators by constructor, and starts and stops them in order."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from api.backends import Backends
from daemon import config as config_mod
from daemon import security
from daemon.build.cache import BuildCache
from daemon.build.contexts import ContextStore
from daemon.build.service import BuildService
from daemon.build.state import Engine as BuildEngine
from daemon.config import Config, ConfigError
from daemon.containers import container_config, seccomp
from daemon.containers.archive import ArchiveService
from daemon.containers.defaults import ContainerDefaults
from daemon.containers.health import HealthMonitor
from daemon.containers.registry import ContainerRegistry
from daemon.containers.service import ContainerService
from daemon.containers.stats import StatsService
from daemon.containers.update import UpdateService
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
from daemon.networks.dns import ContainerNames, EmbeddedDns
from daemon.networks.endpoints import SandboxService
from daemon.networks.sandbox import Sandboxes
from daemon.networks.service import NetworkService
from daemon.revision import Revision
from daemon.store import Store
from daemon.swarm import NoSwarm
from daemon.system import SystemService
from daemon.util import memtrim
from daemon.util.quiet import Starts
from daemon.volumes.service import VolumeService
from network.dnsnames import LazyResolver
from runtime import cgroups
from runtime.launcher import ZygoteLauncher
from storage.blobs import BlobStore
from storage.layers import LayerStore
from storage.layersource import LayerSources
from storage.mounts import mounted_under
from storage.rootfs import make_driver
from storage.volumes import LocalDriver

if TYPE_CHECKING:
    from daemon.metrics.metrics import Metrics

log = logging.getLogger("pydockerd")


def find_init(cfg: Config) -> str | None:
    """The binary behind `docker run --init` (tini, as dockerd's docker-init)."""
    for candidate in (cfg.init_path, "/usr/bin/tini-static", "/usr/bin/docker-init", "/usr/libexec/docker/docker-init"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return shutil.which("tini-static")


def container_defaults(cfg: Config) -> ContainerDefaults:
    return ContainerDefaults(log_driver=cfg.log_driver, log_opts=dict(cfg.log_opts), shm_size=cfg.default_shm_size,
                             ulimits=[{"Name": u.name, "Soft": u.soft, "Hard": u.hard}
                                      for u in cfg.default_ulimits.values()],
                             dns=list(cfg.dns), dns_search=list(cfg.dns_search), dns_options=list(cfg.dns_opts))


class Daemon:
    def __init__(self, cfg: Config, reload_flags: dict[str, Any] | None = None,
                 on_log_level: Callable[[str], None] | None = None, tcp_listeners: list[str] | None = None) -> None:
        self.cfg = cfg
        # What SIGHUP needs to read the configuration again: the flags it was started with.
        self.reload_flags = dict(reload_flags or {})
        self.on_log_level = on_log_level
        root = cfg.data_root
        # Moved by every change the API can show: GET answers are replayed while it stays (api/replay.py).
        self.revision = Revision()
        self.store = Store(root / "pydockerd.db", self.revision)
        self.events = EventBus(self.revision)
        self.blobs = BlobStore(root / "blobs")
        self.layers = LayerStore(root / "layers")
        self.driver = make_driver(cfg.storage_driver, root / "rootfs")
        self.cgroups = cgroups.detect(cfg.cgroup_parent)
        self.seccomp = seccomp.detect()
        # Only with --metrics-addr: without a scraper, counting is work for nobody.
        self.looplag = LoopLag()
        self.metrics: Metrics | None = None
        if cfg.metrics_addr:
            # Imported only then: prometheus_client costs ~5 MiB.
            from daemon.metrics.metrics import Metrics
            self.metrics = Metrics(self.cgroups, self.looplag)
        self.container_defaults = container_defaults(cfg)
        # Built first: every subsystem finds containers (and who uses an image or a volume) here.
        self.registry = ContainerRegistry(self.store, self.revision)
        self.sources = LayerSources(root / "layer-sources", self.blobs, self.layers)
        # The build cache forgets the steps of an image as it is deleted: nothing of it stays.
        build_cache = BuildCache(root / "builder" / "cache.json", lambda iid: iid in self.images.images)
        self.images = ImageService(self.store, self.blobs, self.layers, self.sources, self.registry, self.events,
                                   self.driver.name, on_delete=build_cache.image_gone)
        spool = Spool(root / "tmp")
        self.image_archives = ImageArchives(self.images, self.layers, self.sources, self.events, spool)
        registries = RegistryClients(cfg.insecure_registries or [], cfg.registry_mirrors)
        self.distribution = DistributionService(
            Puller(self.images, self.blobs, self.layers, self.sources, registries, self.events,
                   max_concurrent_downloads=cfg.max_concurrent_downloads),
            Pusher(self.images, self.blobs, self.layers, self.sources, registries, self.events, spool,
                   max_concurrent_uploads=cfg.max_concurrent_uploads),
            registries, on_pull=self.metrics.observe_pull if self.metrics else None)
        self.volumes = VolumeService(self.store, LocalDriver(root / "volumes"), self.events, self.registry)
        # The networks and the containers' side of them share the table of live sandboxes.
        sandboxes = Sandboxes()
        self.networks = NetworkService(store=self.store, registry=self.registry, events=self.events,
                                       sandboxes=sandboxes, default_bridge=cfg.bridge, bip=cfg.bip,
                                       ip_masq=cfg.ip_masq and cfg.iptables,
                                       address_pools=[(p.base, p.size) for p in cfg.default_address_pools],
                                       iptables=cfg.iptables, ip_forward=cfg.ip_forward,
                                       userland_proxy=cfg.userland_proxy,
                                       fixed_cidr_v6=cfg.fixed_cidr_v6 if cfg.ipv6 else None)
        names = ContainerNames(registry=self.registry, sandboxes=sandboxes, network=self.networks.by_name)
        dns = EmbeddedDns(names=names, resolver=LazyResolver(names), network=self.networks.by_name, data_root=root)
        # The starts in flight, which background work (releases, the namespace pool) lets go first.
        starts = Starts()
        self.sandboxes = SandboxService(networks=self.networks, sandboxes=sandboxes, registry=self.registry,
                                        events=self.events, exec_root=cfg.exec_root, data_root=root, dns=dns,
                                        starts=starts)
        # Monitors and exec processes are forked from a template process that shares its
        # memory with them.
        self.launcher = ZygoteLauncher(cfg.exec_root)
        self.execs = ExecService(self.registry, self.events, self.cgroups, self.seccomp, self.launcher,
                                 link_env=self.sandboxes.link_env)
        self.registry.on_discard.append(self.execs.forget_container)
        # Health probes run as execs.
        self.health = HealthMonitor(runner=self.execs, events=self.events, persist=self.registry.persist)
        self.containers = ContainerService(store=self.store, registry=self.registry, images=self.images,
                                           volumes=self.volumes, networks=self.sandboxes, events=self.events,
                                           driver=self.driver, data_root=root, exec_root=cfg.exec_root,
                                           init_path=find_init(cfg), cgroups=self.cgroups,
                                           defaults=self.container_defaults, health=self.health,
                                           on_action=self.metrics.observe_container_action if self.metrics else None,
                                           seccomp=self.seccomp, launcher=self.launcher, starts=starts)
        self.updates = UpdateService(registry=self.registry, cgroups=self.cgroups, events=self.events,
                                     persist=self.registry.persist)
        self.archive = ArchiveService(registry=self.registry, files=self.containers.files, volumes=self.volumes,
                                      events=self.events)
        self.commit = CommitService(self.containers, self.images, self.blobs, self.layers, self.sources,
                                    self.driver, self.events)
        self.build = BuildService(
            BuildEngine(images=self.images, containers=self.containers, rootfs=self.containers.files,
                        commits=self.commit, pulls=self.distribution, blobs=self.blobs, layers=self.layers,
                        sources=self.sources,
                        cache=build_cache),
            users=self.registry, tmp_root=root / "builder" / "tmp",
            contexts=ContextStore(root / "builder" / "contexts"))
        self.stats = StatsService(self.registry, self.cgroups)
        self.id = self._engine_id()
        tcp_listeners = tcp_listeners if tcp_listeners is not None else [
            h for h in cfg.hosts if h.startswith("tcp://")]
        security_facts = security.describe(seccomp=self.seccomp.enabled,
                                           cgroupns=container_config.DEFAULT_CGROUPNS == "private")
        self.system = SystemService(cfg, self.id, self.driver.name, self.containers, self.images, self.volumes,
                                    self.events, self.build, security_facts, self.looplag,
                                    tcp_listeners=tuple(tcp_listeners))
        # Set on SIGTERM/SIGINT, before the API stops: responses that would last as long as the
        # daemon (wait, logs -f, events, stats) end then.
        self.stopping = asyncio.Event()
        self._trimmer: asyncio.Task | None = None

    def backends(self) -> Backends:
        """What the HTTP layer may call: the services, each seen through its router's Protocol."""
        return Backends(containers=self.containers, updates=self.updates, archive=self.archive, stats=self.stats,
                        execs=self.execs, images=self.images, image_archives=self.image_archives, commit=self.commit,
                        build=self.build,
                        distribution=self.distribution, networks=self.networks, network_connect=self.sandboxes,
                        volumes=self.volumes, system=self.system, swarm=NoSwarm(),
                        stopping=self.stopping, revision=self.revision, metrics=self.metrics)

    def reload(self) -> None:
        """SIGHUP: daemon.json read again with the start's flags; the settings dockerd reloads are
        applied, the others wait for a restart. A broken file changes nothing."""
        path = self.cfg.config_file
        try:
            _, changes, ignored = config_mod.reload_changes(self.cfg, path, self.reload_flags)
        except ConfigError as e:
            log.error("reload failed, the configuration stays as it was: %s", e)
            return
        config_mod.apply(self.cfg, changes)
        self.revision.bump()  # answers may show these settings
        cfg = self.cfg
        if any(c.attr in ("debug", "log_level") for c in changes) and self.on_log_level is not None:
            self.on_log_level(cfg.effective_log_level)
        self.distribution.registries.insecure = list(cfg.insecure_registries)
        self.distribution.registries.mirrors = list(cfg.registry_mirrors)
        self.distribution.puller.max_concurrent_downloads = cfg.max_concurrent_downloads
        self.distribution.pusher.max_concurrent_uploads = cfg.max_concurrent_uploads
        self.container_defaults.ulimits = container_defaults(cfg).ulimits
        for c in changes:
            log.info("reload: %s changed from %s to %s", c.key, config_mod.show(c.old), config_mod.show(c.new))
        if ignored:
            log.warning("reload: %s changed in %s but only take effect at the next start",
                        ", ".join(ignored), path)
        log.info("reloaded the configuration from %s (%s)", path,
                 f"{len(changes)} change{'s' if len(changes) != 1 else ''}" if changes else "no changes")

    async def metrics_text(self) -> bytes:
        """One scrape: container states and the running containers are read here, on the loop;
        their cgroup files in a thread."""
        from daemon.metrics.metrics import RunningContainer

        assert self.metrics is not None
        counts = self.containers.counts()
        states = {"running": counts["ContainersRunning"], "paused": counts["ContainersPaused"],
                  "stopped": counts["ContainersStopped"]}
        running = [RunningContainer(c.id, c.name.lstrip("/"), c.config.get("Image", ""), int(c.state.get("Pid") or 0),
                                    own_netns=c.network_mode not in ("host",) and not
                                    c.network_mode.startswith("container:"))
                   for c in self.registry if c.running]
        return await self.metrics.render(states, running)

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
        if self.metrics is not None:
            self.metrics.start()
        self.store.open()
        self.images.load()
        self.build.load()
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
        by a crash). Only our own containers: other daemons may share the cgroup parent.
        Containers removed before a crash let them release what they held (`run --rm`
        answers first) are ours too: their directories are still in the data root."""
        running = {c.id for c in self.registry if c.running}
        orphans = self.containers.files.orphans(self.registry.ids())
        for cid in self.cgroups.list() & ((self.registry.ids() - running) | set(orphans)):
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
        for cid in orphans:
            log.info("removing the files of the removed container %s", cid)
            try:
                self.containers.files.remove_by_id(cid)
            except OSError as e:
                log.warning("cannot remove the files of %s: %s", cid, e)

    async def stop(self) -> None:
        if self.metrics is not None:
            await self.metrics.stop()
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

