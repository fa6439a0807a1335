"""The container lifecycle: create (with rollback), start, stop, kill, restart, remove, wait,
pause, rename, and what happens when a container exits (restart policy, auto-remove).

This module decides what happens and in which order, and persists every change before it is
acknowledged. Its parts live beside it: files.py (rootfs, init layer, name files), spec.py
(the runtime spec), restart.py (the policy's decisions), attaching.py, views.py (inspect,
ps), top.py, logs.py; the mechanisms come from storage/, network/ and runtime/ (the
per-container monitor), networking and volumes through collaborators.py's Protocols.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import shutil
import signal as signal_mod
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

from daemon.containers import attaching, container_config, restart
from daemon.containers import devices as devices_mod
from daemon.containers import spec as spec_mod
from daemon.containers import top as top_mod
from daemon.containers.collaborators import ContainerHealth, ContainerImages, ContainerNetworking, ContainerVolumes
from daemon.containers.container import Container, paths
from daemon.containers.container_config import parse_signal
from daemon.containers.defaults import ContainerDefaults
from daemon.containers.files import ContainerFiles
from daemon.containers.logs import container_log
from daemon.containers.registry import ContainerRegistry
from daemon.containers.seccomp import SeccompProfiles
from daemon.containers.views import ContainerViews
from daemon.errors import Conflict, DaemonError, InvalidParameter, NotFound, NotModified
from daemon.events import EventBus
from daemon.images import reference
from daemon.store import Store
from daemon.util.filters import Filters
from daemon.util.prune import remove_each
from daemon.util.quiet import Starts
from daemon.util.settle import settled
from daemon.util.steps import Steps
from daemon.util.timeutil import ZERO_TIME, now_rfc3339, parse_time_filter, parse_timestamp
from daemon.volumes import mounts
from runtime.cgroups import Cgroups
from runtime.client import ExitStatus, Monitor, MonitorError, StartError, read_exit_status
from runtime.launcher import Launcher

log = logging.getLogger("pydockerd.containers")

PRUNE_FILTERS = {"label", "label!", "until"}
DEFAULT_STOP_TIMEOUT = 10
KILL_WAIT = 10.0  # seconds `docker kill` waits for the exit, as dockerd's Kill
# Past KILL_WAIT the container is killed without its monitor (_kill_directly): the seconds the
# monitor has to answer whether it still does, and the exit's wait after that.
MONITOR_ANSWER_WAIT = 2.0
DIRECT_KILL_WAIT = 5.0
RECONNECTS_AT_ONCE = 64  # monitors asked at once at start-up (a connection each)
# A monitor answers in milliseconds; one that has not within this is taken as not answering,
# which costs nothing if it is only slow (_reconnect).
RECONNECT_TIMEOUT = 5.0
CREATE_TO_START = 0.05  # seconds within which `docker run` sends its start after the create


class ContainerService:
    def __init__(self, *, store: Store, registry: ContainerRegistry, images: ContainerImages, volumes: ContainerVolumes,
                 networks: ContainerNetworking, events: EventBus, driver: Any, data_root: Path, exec_root: Path,
                 init_path: str | None, cgroups: Cgroups, health: ContainerHealth, seccomp: SeccompProfiles,
                 launcher: Launcher, defaults: ContainerDefaults | None = None,
                 on_action: Callable[[str, float], None] | None = None, starts: Starts | None = None) -> None:
        self.store = store
        self.defaults = defaults or ContainerDefaults()
        # Told how long each start took (the metrics).
        self.on_action = on_action
        self.images = images
        self.events = events
        self.driver = driver
        self.data_root = data_root
        self.exec_root = exec_root
        self.init_path = init_path
        self.registry = registry
        self.shutting_down = False
        self.booted = asyncio.Event()  # set by the engine once start-up clean-up is done
        self._releasing: set[asyncio.Task] = set()  # what removed `--rm` containers held (_remove_at_exit)
        self.starts = starts or Starts()  # the starts in flight, which background releases let go first
        self.volumes = volumes
        self.networks = networks
        self.cgroups = cgroups
        self.health = health
        self.seccomp = seccomp
        self.launcher = launcher
        self.files = ContainerFiles(driver=driver, images=images, data_root=data_root, exec_root=exec_root,
                                    defaults=self.defaults)
        self.views = ContainerViews(registry=registry, images=images, networks=networks, volumes=volumes,
                                    files=self.files)

    # -- look-up -----------------------------------------------------------------------------
    def find(self, ref: str) -> Container | None:
        return self.registry.find(ref)

    def get(self, ref: str) -> Container:
        return self.registry.get(ref)

    # -- start-up ----------------------------------------------------------------------------
    async def load(self) -> None:
        """Rebuilds the in-memory view and reconnects to the monitors that outlived the daemon
        (at once: one that does not answer holds the start-up for RECONNECT_TIMEOUT, not each)."""
        containers = self.registry.load()
        live = [c for c in containers if c.state["Running"] or c.state["Restarting"]]
        at_once = asyncio.Semaphore(RECONNECTS_AT_ONCE)
        found = dict(zip([c.id for c in live], await asyncio.gather(*(self._reconnect(c, at_once) for c in live)),
                         strict=True))
        for c in containers:
            if c.state["Running"] or c.state["Restarting"]:
                monitor = found[c.id]
                if monitor is not None:
                    c.monitor = monitor
                    c.state["Restarting"] = False
                    c.watch_task = asyncio.create_task(self._watch(c))
                    if not c.state["Paused"]:
                        self.health.resumed(c)
                    continue
                status = read_exit_status(self.files.bundle(c)) or ExitStatus(
                    exit_code=255, finished_at=now_rfc3339(), oom_killed=False,
                    error="container monitor disappeared while the daemon was down")
                await self._on_exit(c, status, restart_allowed=True)
            elif restart.should_restart(c.host_config["RestartPolicy"], exit_code=c.state["ExitCode"],
                                        restart_count=c.restart_count, manually_stopped=c.manually_stopped,
                                        on_boot=True):
                c.manually_stopped = False
                c.restart_task = asyncio.create_task(self._restart_after(c, 0))
            elif c.host_config.get("AutoRemove") and c.state["FinishedAt"] != ZERO_TIME:
                asyncio.create_task(self._auto_remove(c))

    async def _reconnect(self, c: Container, at_once: asyncio.Semaphore) -> Monitor | None:
        """The container's monitor if it is still there. One that is there but does not answer
        (deadlocked, stopped) is kept as it is, its container running as recorded: it may answer
        again (its wait() is pending like any other), and stop, kill and rm -f end it without it
        (_kill_directly; its pid from monitor.pid)."""
        bundle = self.files.bundle(c)
        try:
            async with at_once:
                return await asyncio.wait_for(Monitor.connect(bundle), RECONNECT_TIMEOUT)
        except (MonitorError, TimeoutError):
            log.warning("the monitor of %s does not answer within %g s: its container is kept as running",
                        c.id, RECONNECT_TIMEOUT)
            return Monitor(bundle, int(c.state.get("Pid") or 0))

    # -- create ------------------------------------------------------------------------------
    async def create(self, body: dict, name: str | None) -> dict:
        # Background releases wait for it, and for the start that usually follows at once.
        with self.starts.starting():
            created = await self._create(body, name)
        self.starts.expect(CREATE_TO_START)
        return created

    async def _create(self, body: dict, name: str | None) -> dict:
        if not isinstance(body, dict):
            raise InvalidParameter("invalid JSON: expected an object")
        steps = Steps(log, "create")
        image_ref = body.get("Image")
        if not image_ref or not isinstance(image_ref, str):
            raise InvalidParameter("Config cannot be empty in order to create a container")
        cname = container_config.validate_name(name) if name else None
        img = self.images.find(image_ref)
        if img is None:
            try:
                shown = str(reference.parse(image_ref))
            except InvalidParameter:
                raise InvalidParameter(f"invalid reference format: {image_ref}") from None
            raise NotFound(f"No such image: {shown}")
        config, host_config = container_config.merge(body, img.config.get("config") or {}, self.defaults)
        net = host_config["NetworkMode"]
        warnings = self.networks.check_mode(body, host_config)
        caps = container_config.capabilities(host_config)  # validates cap names now, not at start
        devices_mod.validate(host_config)
        if self.seccomp.ready(host_config, caps):
            self.seccomp.validate(host_config, caps)
        else:  # a profile not seen before: libseccomp compiles it (milliseconds)
            await asyncio.to_thread(self.seccomp.validate, host_config, caps)
        mount_points = mounts.parse(config, host_config, lambda ref: self.get(ref).mount_points)
        cid = self.registry.new_id()
        if cname is None:
            cname = "/" + self.registry.random_name()
        elif self.registry.name_owner(cname) is not None:
            self.registry.reserve(cname, cid)  # raises dockerd's name conflict
        if not config["Hostname"]:
            # dockerd: the host's name with --net=host (its UTS namespace stays private, so
            # -h still applies), the short id otherwise; container mode takes the other
            # container's at start.
            config["Hostname"] = os.uname().nodename if net == "host" else cid[:12]
        entry = (config.get("Entrypoint") or []) + (config.get("Cmd") or [])
        c = Container(id=cid, name=cname, created=now_rfc3339(), path=entry[0], args=entry[1:], config=config,
                      host_config=host_config, image_id=img.id, driver=self.driver.name,
                      top_chain=img.top_chain_id or "")
        c.networks = self.networks.endpoints_for_create(config, host_config, body.get("NetworkingConfig"))
        c.mount_points = mount_points
        self.registry.reserve(cname, cid)  # before the first await: two creates cannot both win
        steps.mark("config")
        try:
            await self.volumes.attach(c.mount_points)
            await asyncio.to_thread(self.files.create, c)
            steps.mark("files")
            await self.store.put_container(cid, cname, c.doc())
            steps.mark("store")
        except sqlite3.IntegrityError:
            self.registry.release(cname, cid)
            await asyncio.to_thread(self.files.remove, c)
            await self.volumes.remove_anonymous(_anonymous_volumes(c))
            raise Conflict(f'Conflict. The container name "{cname}" is already in use.') from None
        except BaseException:
            self.registry.release(cname, cid)
            await asyncio.to_thread(self.files.remove, c)
            await self.volumes.remove_anonymous(_anonymous_volumes(c))
            raise
        self.registry.add(c)
        self.events.publish("container", "create", cid, c.event_attrs())
        steps.done()
        return {"Id": cid, "Warnings": warnings}

    # -- start -------------------------------------------------------------------------------
    async def start(self, ref: str) -> None:
        c = self.get(ref)
        async with c.lock:
            if c.running:
                raise NotModified()
            if c.removing:
                raise Conflict(f"cannot start container {c.id}: removal in progress")
            c.manually_stopped = False
            await self._start_locked(c)

    async def _start_locked(self, c: Container) -> None:
        began = time.monotonic()
        with self.starts.starting():
            await self._start_timed(c)
        if self.on_action is not None:
            self.on_action("start", time.monotonic() - began)

    async def _start_timed(self, c: Container) -> None:
        steps = Steps(log, f"start of {c.id[:12]}")
        cgroup: asyncio.Future | None = None
        try:
            # Made while the rootfs is mounted and the network set up (none needs another): its
            # mkdirs and writes in every hierarchy took 1-18 ms of a start on a busy host.
            cgroup = asyncio.ensure_future(asyncio.to_thread(self._create_cgroup, c))
            # The rootfs is mounted while the network is set up (1-3 ms each): the network
            # writes the hosts file of a container with a network namespace of its own, with
            # its address in it, so the rootfs' thread leaves that one file alone.
            own_netns = _has_own_netns(c)
            rootfs = asyncio.ensure_future(asyncio.to_thread(self._prepare, c, not own_netns))
            try:
                netns_path, link_env = await self.networks.setup(c)
            except BaseException:
                await settled(rootfs)  # done before the release below unmounts it
                raise
            steps.mark("network")
            prepared = await rootfs
            steps.mark("rootfs")
            caps = container_config.capabilities(c.host_config)
            confinement = (self._confinement(c) if self.seccomp.ready(c.host_config, caps)  # nothing to compile
                           else await asyncio.to_thread(self._confinement, c))
            spec = spec_mod.build(c, prepared, netns=netns_path, link_env=link_env, init_path=self.init_path,
                                  confinement=confinement,
                                  ulimits=self.defaults.merged_ulimits(c.host_config.get("Ulimits")))
        except BaseException as e:
            if cgroup is not None:
                await settled(cgroup)  # done before the release below removes it
            if not isinstance(e, DaemonError):
                raise
            # As any failed start: released, a die event, waiters woken (`run --rm` waits for the
            # removal), and an AutoRemove container removed.
            await self._start_failed(c, e.message, 128, None)
            raise
        bundle = self.files.bundle(c)
        monitor = None
        try:
            steps.mark("spec")
            await cgroup
            steps.mark("cgroup")
            monitor = await Monitor.spawn(bundle, spec, self.launcher)
            steps.mark("monitor")
            await self.networks.ready(c)  # configured meanwhile (setup's deferred part)
            steps.mark("network ready")
            # The init is in the container's cgroups already: it entered them itself before
            # its namespaces (Confinement.cgroup_procs), so all it forks inherits them.
            await attaching.connect_pending(c, monitor)
            steps.mark("attach")
            pid = await monitor.start()
            steps.mark("exec")
        except StartError as e:
            await self._start_failed(c, e.message, e.exit_code, monitor)
            raise InvalidParameter(f"failed to create task for container: {e.message}: unknown") from None
        except DaemonError as e:  # the network's deferred part: the init waits, never to run
            if monitor is not None:
                with contextlib.suppress(Exception):
                    await monitor.kill(signal_mod.SIGKILL, all=True)
            await self._start_failed(c, e.message, 128, monitor)
            raise
        except asyncio.CancelledError:
            # Never leave a created-but-not-started monitor (and its netns) behind.
            if monitor is not None:
                with contextlib.suppress(Exception):
                    await monitor.kill(signal_mod.SIGKILL, all=True)
            await self._start_failed(c, "start cancelled", 128, monitor)
            raise
        except Exception as e:
            log.exception("starting %s", c.id)
            await self._start_failed(c, str(e), 128, monitor)
            raise DaemonError(f"failed to start container {c.id}: {e}") from e
        c.monitor = monitor
        c.state.update(Status="running", Running=True, Paused=False, Restarting=False, OOMKilled=False,
                       Dead=False, Pid=pid, ExitCode=0, Error="", StartedAt=now_rfc3339())
        self.health.started(c)
        await self._persist(c)
        steps.mark("persist")
        steps.done()
        c.watch_task = asyncio.create_task(self._watch(c))
        self.events.publish("container", "start", c.id, c.event_attrs())

    def _confinement(self, c: Container) -> spec_mod.Confinement:
        """Blocking (a seccomp profile not compiled yet): the filter and the cgroups to enter."""
        hc = c.host_config
        return spec_mod.Confinement(seccomp=self.seccomp.program(hc, container_config.capabilities(hc)),
                                    cgroup_procs=self.cgroups.join_files(c.id),
                                    cgroup_hierarchies=self.cgroups.hierarchies(c.id))

    def _create_cgroup(self, c: Container) -> None:
        hc = c.host_config
        self.cgroups.create(c.id, spec_mod.resources(hc, devices_mod.cgroup_rules(hc)))

    def _prepare(self, c: Container, hosts: bool = True) -> spec_mod.Prepared:
        """Blocking part of start: mounts the rootfs and the volumes, writes the name files (the
        hosts file unless `hosts` is False: the network's setup writes it)."""
        p = paths(self.data_root, c.id)
        rootfs = self.files.mount(c)
        files = p
        mode = c.network_mode
        if mode.startswith("container:"):
            other = self.get(mode.split(":", 1)[1])
            if not other.running:
                raise DaemonError(f"cannot join network of a non running container: {other.id}")
            # dockerd: the joiner is the other container as far as names go, its hostname and
            # its hosts/resolv.conf files (kept up to date for both).
            c.config["Hostname"] = other.config["Hostname"]
            c.config["Domainname"] = other.config.get("Domainname", "")
            files = paths(self.data_root, other.id)
        else:
            self.files.write_name_files(c, self.networks.extra_hosts(c), self.networks.ipv6_enabled(c),
                                        host_network=mode == "host", internal_dns=self.networks.uses_internal_dns(c),
                                        hosts_file=hosts)
        try:
            # Inside the try: a failure here (--pid container:X not running) must not leave the
            # rootfs mounted.
            namespaces = spec_mod.namespaces(c, self.get)
            user_mounts = self.volumes.spec_mounts(c.mount_points, rootfs) + mounts.tmpfs_specs(
                c.host_config, c.mount_points)
        except BaseException:
            self.volumes.release(c.mount_points)
            self.files.unmount_quietly(c)
            raise
        return spec_mod.Prepared(rootfs=rootfs, name_files=files, log_path=p["log"], user_mounts=user_mounts,
                                 namespaces=namespaces)

    async def _start_failed(self, c: Container, message: str, exit_code: int, monitor: Monitor | None) -> None:
        c.state.update(Status="created" if c.state["StartedAt"] == ZERO_TIME else "exited", Running=False,
                       Pid=0, ExitCode=exit_code, Error=message)
        self.registry.changed()  # written after the release
        await self._release(c)
        attaching.fail_pending(c)
        await self._persist(c)
        self.events.publish("container", "die", c.id, c.event_attrs(exitCode=str(exit_code)))
        self._wake(c.exit_waiters, exit_code, message)
        if c.host_config.get("AutoRemove"):
            asyncio.create_task(self._auto_remove(c))

    async def _release(self, c: Container, steps: Steps | None = None,
                       between: Callable[[], Awaitable[None]] | None = None) -> None:
        """What a container holds only while it runs: rootfs mount, volumes, network, cgroup;
        `between` is awaited before each step (a release that can wait for starts)."""
        steps = steps or Steps(log, "")
        between = between or _nothing
        await between()
        await asyncio.to_thread(self.files.unmount_quietly, c)
        steps.mark("unmount")
        await asyncio.to_thread(self.volumes.release, c.mount_points)
        await between()
        await self.networks.teardown(c)
        steps.mark("network")
        await between()
        try:
            await asyncio.to_thread(self.cgroups.remove, c.id)
        except OSError as e:
            log.warning("removing the cgroup of %s: %s", c.id, e)
        steps.mark("cgroup")

    # -- exit, restart policy ----------------------------------------------------------------
    async def _watch(self, c: Container) -> None:
        monitor = c.monitor
        try:
            status = await monitor.wait()
        except asyncio.CancelledError:
            raise
        except Exception as e:  # the monitor died without answering
            log.warning("lost the monitor of %s: %s", c.id, e)
            status = read_exit_status(self.files.bundle(c)) or ExitStatus(
                exit_code=255, finished_at=now_rfc3339(), oom_killed=False, error=str(e))
        if c.monitor is monitor:
            await self._on_exit(c, status, restart_allowed=True)

    async def _on_exit(self, c: Container, status: ExitStatus, restart_allowed: bool) -> None:
        steps = Steps(log, f"exit of {c.id[:12]}")
        c.monitor = None
        await self.health.stopped(c)
        oom = status.oom_killed or await asyncio.to_thread(self.cgroups.oom_killed, c.id)
        steps.mark("oom check")
        c.state.update(Status="exited", Running=False, Paused=False, Pid=0, ExitCode=status.exit_code,
                       Error=status.error or "", FinishedAt=status.finished_at or now_rfc3339(),
                       OOMKilled=bool(oom))
        self.registry.changed()  # written after the release
        # Restarting from the moment it is not running (before the awaits of the release): an rm
        # without force in between must be refused, as dockerd's state goes straight to restarting.
        again = restart_allowed and not self.shutting_down and self._should_restart(c)
        if again:
            c.state.update(Status="restarting", Restarting=True)
        elif self._removed_at_exit(c):
            await self._remove_at_exit(c, status.exit_code)
            steps.mark("removed")
            steps.done()
            return
        await self._release(c, steps)
        await self._persist(c)
        steps.mark("persist")
        await asyncio.to_thread(shutil.rmtree, self.files.bundle(c), True)
        steps.mark("bundle")
        steps.done()
        self.events.publish("container", "die", c.id, c.event_attrs(exitCode=str(status.exit_code)))
        self._wake(c.exit_waiters, status.exit_code, None)
        if again:
            ran = parse_timestamp(c.state["FinishedAt"]) - parse_timestamp(c.state["StartedAt"])
            c.restart_task = asyncio.create_task(self._restart_after(c, restart.delay(c.restart_count, ran)))
        elif c.host_config.get("AutoRemove") and not self.shutting_down:
            await self._auto_remove(c)

    def _removed_at_exit(self, c: Container) -> bool:
        """`--rm` without volumes: removed before its resources are released (_remove_at_exit).
        With volumes the old order stays: `docker volume rm` or `ls` right after `run --rm`
        must find them released, anonymous ones gone."""
        # Not during start-up: the clean-up of what a crash left would race the release.
        return (bool(c.host_config.get("AutoRemove")) and self.booted.is_set() and not self.shutting_down
                and not c.removing
                and not any(mp["Type"] == "volume" for mp in c.mount_points))

    async def _remove_at_exit(self, c: Container, exit_code: int) -> None:
        """An exited `--rm` container leaves the API at once (record, name, die and destroy
        events, its waiters answered: `docker run --rm` returns) and what it held (rootfs
        mount, network namespace and veth, cgroup, files) is released right after, off the
        answer's path: the veth's deletion alone waits 13-50 ms for the kernel here.

        Crash-safe: a daemon that dies before the release is done finds at its next start
        what is left (reconcile: mounts, namespaces and veths of containers not running; the
        container directories without a record and their cgroups and bundles, in
        daemon/engine.py)."""
        c.removing = True
        self.events.publish("container", "die", c.id, c.event_attrs(exitCode=str(exit_code)))
        self._wake(c.exit_waiters, exit_code, None)  # a `docker stop` says "stop" before the destroy
        try:
            await self.store.delete_container(c.id)
        except Exception as e:  # noqa: BLE001 - then released and removed in the ordinary order
            log.warning("removing %s at its exit: %s", c.id, e)
            c.removing = False
            self.registry.changed()
            await self._release(c)
            await self._persist(c)
            await self._auto_remove(c)
            return
        self.registry.discard(c)
        attaching.fail_pending(c)
        self.events.publish("container", "destroy", c.id, c.event_attrs())
        self._wake(c.removed_waiters, exit_code, None)
        task = asyncio.create_task(self._release_removed(c))
        self._releasing.add(task)
        task.add_done_callback(self._releasing.discard)

    async def _release_removed(self, c: Container) -> None:
        steps = Steps(log, f"release of the removed {c.id[:12]}")
        try:
            # Gone from the API already: what it held can wait for the starts in flight
            # (daemon/util/quiet.py), which it slowed down by 20-60% when run back to back.
            await self._release(c, steps, between=self.starts.after_starts)
            await self.starts.after_starts()
            await asyncio.to_thread(self.files.remove, c)
            steps.mark("files")
            if c.top_chain and c.image_id not in self.images.images:
                await self.images.release_layers(c.top_chain)
        except Exception:
            log.exception("releasing the removed container %s", c.id)
        steps.done()

    def _should_restart(self, c: Container) -> bool:
        return restart.should_restart(c.host_config["RestartPolicy"], exit_code=c.state["ExitCode"],
                                      restart_count=c.restart_count,
                                      manually_stopped=c.manually_stopped or c.removing, on_boot=False)

    async def _restart_after(self, c: Container, delay: float) -> None:
        await asyncio.sleep(delay)
        # Restarts scheduled while the daemon starts wait for its clean-up of what a crash left
        # (mounts, network namespaces): it ran after them and took their rootfs and netns away.
        await self.booted.wait()
        # Once begun, a restart is not cancelled halfway (that would orphan a created monitor);
        # stop() and remove() wait for the lock and then see the container running.
        await asyncio.shield(self._restart_now(c))

    async def _restart_now(self, c: Container) -> None:
        async with c.lock:
            if c.running or c.removing or c.manually_stopped or c.id not in self.registry:
                return
            if c.state["FinishedAt"] != ZERO_TIME:
                c.restart_count += 1
            try:
                await self._start_locked(c)
            except DaemonError as e:
                log.warning("restart of %s failed: %s", c.id, e.message)
                c.state["Restarting"] = False
                await self._persist(c)
            else:
                self.events.publish("container", "restart", c.id, c.event_attrs())

    async def _auto_remove(self, c: Container) -> None:
        try:
            await self.remove(c.id, force=True, volumes=True)
        except NotFound:
            pass
        except DaemonError as e:
            log.warning("auto-removing %s: %s", c.id, e.message)

    def _wake(self, waiters: list[asyncio.Future], code: int, error: str | None) -> None:
        for fut in waiters:
            if not fut.done():
                fut.set_result((code, error))
        waiters.clear()

    async def _persist(self, c: Container) -> None:
        await self.registry.persist(c)

    # -- stop / kill / restart ---------------------------------------------------------------
    async def stop(self, ref: str, timeout: int | None = None, sig: str | None = None) -> None:
        c = self.get(ref)
        if c.restart_task and not c.restart_task.done():
            c.manually_stopped = True
            c.restart_task.cancel()
        async with c.lock:  # a start in progress (a restart policy's) completes first
            pass
        if not c.running:
            if c.state["Restarting"]:
                c.state.update(Restarting=False, Status="exited")
                c.manually_stopped = True
                await self._persist(c)
                return
            raise NotModified()
        c.manually_stopped = True
        await self._persist(c)
        await self._stop_running(c, timeout, sig)

    async def _stop_running(self, c: Container, timeout: int | None, sig: str | None) -> None:
        stop_sig = parse_signal(sig or c.config.get("StopSignal"), signal_mod.SIGTERM)
        if timeout is None:
            timeout = c.config.get("StopTimeout")
        if timeout is None:
            timeout = DEFAULT_STOP_TIMEOUT
        fut = self._exit_future(c)
        monitor = c.monitor
        if monitor is None:
            return
        await self.health.stopped(c)
        # Events as dockerd's containerStop: kill (the stop signal), kill (9) if the timeout
        # forces it, then die (from the exit), then stop.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        try:
            # Within the timeout (at least a second): a monitor that does not answer must not
            # hold the stop past it.
            await asyncio.wait_for(monitor.kill(stop_sig), max(timeout, 1.0) if timeout >= 0 else None)
        except Exception as e:  # noqa: BLE001 - already exiting
            log.debug("stop signal to %s: %s", c.id, e)
        self.events.publish("container", "kill", c.id, c.event_attrs(signal=str(int(stop_sig))))
        if timeout < 0:
            await fut
        else:
            try:
                await asyncio.wait_for(asyncio.shield(fut), max(deadline - loop.time(), 0))
            except TimeoutError:
                if not await self._kill_and_wait(c, fut):
                    raise DaemonError(f"cannot stop container: {c.id}: tried to kill container, "
                                      "but did not receive an exit event") from None
        self.events.publish("container", "stop", c.id, c.event_attrs())

    async def _kill_and_wait(self, c: Container, fut: asyncio.Future) -> bool:
        """SIGKILL to the container through its monitor and its `kill` event; True once it has
        exited (`fut` from _exit_future), False if it has not within KILL_WAIT and, after
        _kill_directly, DIRECT_KILL_WAIT more seconds (as dockerd's Kill: 10 s, its direct
        SIGKILL, then 2 s)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + KILL_WAIT
        request = asyncio.create_task(self._sigkill(c))
        try:
            await asyncio.wait({request}, timeout=KILL_WAIT)
            self.events.publish("container", "kill", c.id, c.event_attrs(signal=str(int(signal_mod.SIGKILL))))
            try:
                await asyncio.wait_for(asyncio.shield(fut), max(deadline - loop.time(), 0))
                return True
            except TimeoutError:
                pass
            await self._kill_directly(c)
            try:
                await asyncio.wait_for(asyncio.shield(fut), DIRECT_KILL_WAIT)
                return True
            except TimeoutError:
                return False
        finally:
            request.cancel()  # still waiting for a monitor that does not answer

    async def _kill_directly(self, c: Container) -> None:
        """The container did not exit within KILL_WAIT of its SIGKILL. As dockerd does past a shim
        that does not deliver it: SIGKILL every process in the container's cgroup from here; and a
        monitor that does not answer either (deadlocked, stopped, a bug) is killed too, or it
        would keep the container's record "running" forever: its exit is then recorded as 137
        (runtime/client.py, Monitor.kill_process). A monitor that answers stays: its container has
        processes that do not die (uninterruptible sleep), and it reports their exit."""
        monitor = c.monitor
        if monitor is None:
            return
        answers = await monitor.responds(MONITOR_ANSWER_WAIT)
        log.warning("container %s did not exit within %g s of SIGKILL%s: killing its processes directly",
                    c.id, KILL_WAIT, "" if answers else " and its monitor does not answer")
        try:
            await asyncio.to_thread(self.cgroups.kill_all, c.id)
        except OSError as e:
            log.warning("killing the processes of %s: %s", c.id, e)
        if not answers and not await monitor.kill_process():
            log.warning("the monitor of %s was not found to kill", c.id)

    async def _sigkill(self, c: Container) -> None:
        """SIGKILL to everything in the container. A paused one is thawed as well, as containerd
        does: frozen processes never die, and stop, kill and rm -f would wait forever."""
        if c.monitor is None:
            return
        try:
            await c.monitor.kill(signal_mod.SIGKILL, all=True)
        except Exception as e:  # noqa: BLE001 - already exiting
            log.debug("SIGKILL to %s: %s", c.id, e)
        if c.state["Paused"]:
            try:
                await asyncio.to_thread(self.cgroups.freeze, c.id, False)
            except OSError as e:
                log.warning("thawing %s to kill it: %s", c.id, e)

    def _exit_future(self, c: Container) -> asyncio.Future:
        fut = asyncio.get_running_loop().create_future()
        c.exit_waiters.append(fut)
        return fut

    async def kill(self, ref: str, sig: str | None) -> None:
        c = self.get(ref)
        signum = parse_signal(sig, signal_mod.SIGKILL)
        if not c.running or c.monitor is None:
            raise Conflict(f"Cannot kill container: {ref}: Container {c.id} is not running")
        if signum in (signal_mod.SIGKILL, signal_mod.SIGTERM, signal_mod.SIGINT):
            c.manually_stopped = True
            await self._persist(c)
        # dockerd: SIGKILL, the default, waits until the container is no longer running, so that
        # what follows (inspect, rm) sees it exited; other signals do not.
        if signum == signal_mod.SIGKILL:
            if not await self._kill_and_wait(c, self._exit_future(c)):
                raise DaemonError(f"Cannot kill container: {ref}: tried to kill container, "
                                  "but did not receive an exit event")
            return
        await c.monitor.kill(signum)  # to a paused container it stays pending until unpause, as with dockerd
        self.events.publish("container", "kill", c.id, c.event_attrs(signal=str(signum)))

    async def restart(self, ref: str, timeout: int | None = None, sig: str | None = None) -> None:
        c = self.get(ref)
        if c.running:
            c.manually_stopped = True
            await self._stop_running(c, timeout, sig)
        async with c.lock:
            if c.running:
                return
            c.manually_stopped = False
            await self._start_locked(c)
        self.events.publish("container", "restart", c.id, c.event_attrs())

    # -- remove ------------------------------------------------------------------------------
    async def remove(self, ref: str, force: bool = False, volumes: bool = False) -> None:
        c = self.get(ref)
        if (c.running or c.state["Restarting"]) and not force:
            # dockerd's state is Running while a restart policy restarts it, so a container
            # between two runs is refused too, named by its state.
            state = "paused" if c.state["Paused"] else "restarting" if c.state["Restarting"] else "running"
            procedure = "Stop the container before attempting removal or force remove"
            if state == "paused":
                procedure = "Unpause and then stop the container before attempting removal or force remove"
            raise Conflict(f"You cannot remove a {state} container {c.id}. {procedure}")
        if c.removing:
            raise Conflict(f"removal of container {c.id} is already in progress")
        c.removing = True
        self.registry.changed()  # "Removal In Progress" while the kill and the files take their time
        try:
            if c.lock.locked():
                # A start is in progress (a restart policy's, typically): cancelling it midway
                # would orphan its monitor and network namespace. Let it finish (it cannot
                # begin another: `removing` is set); the kill below stops what it started.
                async with c.lock:
                    pass
            if c.restart_task and not c.restart_task.done():
                c.restart_task.cancel()
            if c.running and c.monitor is not None:
                c.manually_stopped = True
                if not await self._kill_and_wait(c, self._exit_future(c)):
                    raise DaemonError(f"could not kill container {c.id}: it did not exit after SIGKILL")
            steps = Steps(log, f"removal of {c.id[:12]}")
            await asyncio.to_thread(self.files.remove, c)
            steps.mark("files")
            await self.store.delete_container(c.id)
            steps.mark("store")
            steps.done()
        except BaseException:
            c.removing = False
            self.registry.changed()
            await self._persist(c)  # what changed meanwhile (a kill's exit) was not written
            raise
        self.registry.discard(c)
        if c.top_chain and c.image_id not in self.images.images:
            # Its image went with `rmi -f` while it was stopped: its layers were kept for it.
            await self.images.release_layers(c.top_chain)
        if volumes:
            await self.volumes.remove_anonymous(_anonymous_volumes(c))
        attaching.fail_pending(c)
        self.events.publish("container", "destroy", c.id, c.event_attrs())
        self._wake(c.removed_waiters, c.state["ExitCode"], None)
        self._wake(c.exit_waiters, c.state["ExitCode"], None)

    async def prune(self, filters_raw: str | None) -> dict:
        f = Filters.parse(filters_raw, PRUNE_FILTERS)
        until = [parse_time_filter(u) for u in f.get("until")]
        # A generator: each candidate is judged when its turn comes, after the removals before it.
        candidates = (c for c in self.registry
                      if not (c.running or c.state["Restarting"] or c.removing)
                      and f.match_label_filters(c.labels)
                      and all(parse_timestamp(c.created) <= u for u in until))
        deleted, reclaimed = await remove_each(candidates, lambda c: c.id, self.files.size_rw, self.remove)
        return {"ContainersDeleted": deleted or None, "SpaceReclaimed": reclaimed}

    # -- wait --------------------------------------------------------------------------------
    async def wait_future(self, ref: str, condition: str) -> asyncio.Future:
        """Registers the waiter now (the CLI sends /wait before /start) and returns what to await."""
        c = self.get(ref)
        loop = asyncio.get_running_loop()
        if condition not in ("", "not-running", "next-exit", "removed"):
            raise InvalidParameter(f"invalid condition: {condition!r}")
        fut = loop.create_future()
        if condition in ("", "not-running") and not c.running and not c.state["Restarting"]:
            fut.set_result((c.state["ExitCode"], None))
        elif condition == "removed":
            c.removed_waiters.append(fut)
        else:
            c.exit_waiters.append(fut)
        return fut

    async def resize(self, ref: str, height: int, width: int) -> None:
        c = self.get(ref)
        monitor = c.monitor
        await container_config.resize_terminal(height, width, what=f"Container {c.id}",
                                               running=c.running and monitor is not None, tty=c.tty,
                                               resize=lambda h, w: monitor.resize(h, w))

    # -- logs --------------------------------------------------------------------------------
    def logs(self, ref: str, *, follow: bool, tail: str, since: str, until: str, stdout: bool,
             stderr: bool, render: Callable[[Container, list[dict]], Any] | None = None
             ) -> tuple[Container, AsyncIterator[Any]]:
        c = self.get(ref)
        transform = functools.partial(render, c) if render is not None else (lambda recs: recs)
        return c, container_log(c, self.files.paths(c)["log"], follow=follow, tail=tail, since=since, until=until,
                                stdout=stdout, stderr=stderr, transform=transform)

    # -- pause / unpause (cgroup freezer) ----------------------------------------------------
    async def pause(self, ref: str) -> None:
        c = self.get(ref)
        async with c.lock:
            if not c.running:
                raise Conflict(f"Container {c.id} is not running")
            if c.state["Paused"]:
                raise Conflict(f"Container {c.id} is already paused")
            # Probes end first: a probe frozen with the container could not be killed.
            await self.health.stopped(c)
            try:
                await asyncio.to_thread(self.cgroups.freeze, c.id, True)
            except BaseException:
                self.health.resumed(c)
                raise
            c.state.update(Paused=True, Status="paused")
            await self._persist(c)
        self.events.publish("container", "pause", c.id, c.event_attrs())

    async def unpause(self, ref: str) -> None:
        c = self.get(ref)
        async with c.lock:
            if not c.state["Paused"]:
                raise Conflict(f"Container {c.id} is not paused")
            await asyncio.to_thread(self.cgroups.freeze, c.id, False)
            c.state.update(Paused=False, Status="running")
            self.health.resumed(c)
            await self._persist(c)
        self.events.publish("container", "unpause", c.id, c.event_attrs())

    async def remove_link(self, ref: str) -> None:
        """`docker rm --link /PARENT/ALIAS`: PARENT forgets its link of that alias, and the
        line of its hosts file goes; its environment was set at start and stays, as under
        dockerd. A link is named by its parent and alias, never by the linked container."""
        parent_name, _, alias = ("/" + ref.lstrip("/")).rpartition("/")
        if not parent_name:
            raise InvalidParameter("Conflict, cannot remove the default link name of the container")
        parent = self.registry.find(parent_name.lstrip("/"))
        if parent is None:
            raise NotFound(f"Cannot get parent {parent_name} for link name /{ref.strip('/')}")
        links = list(parent.host_config.get("Links") or [])
        keep = [link for link in links if _link_alias(link) != alias]
        if len(keep) == len(links):
            raise NotFound(f"No such container: {ref}")
        async with parent.lock:
            parent.host_config["Links"] = keep or None
            await self._persist(parent)
            await self.networks.links_changed(parent)

    # -- rename / top / diff -----------------------------------------------------------------
    async def rename(self, ref: str, new_name: str) -> None:
        c = self.get(ref)
        if not new_name:
            raise InvalidParameter("Neither old nor new names may be empty")
        new = container_config.validate_name(new_name)
        if new == c.name:
            raise Conflict("Renaming a container with the same name as its current name")
        old = c.name
        self.registry.reserve(new, c.id)
        c.name = new
        try:
            await self._persist(c)
        except BaseException:
            c.name = old
            self.registry.release(new, c.id)
            raise
        self.registry.release(old, c.id)
        await self.networks.renamed(c, old)  # peers resolve it by its new name from now on
        self.events.publish("container", "rename", c.id, c.event_attrs(oldName=old))

    async def top(self, ref: str, ps_args: str) -> dict:
        return await top_mod.top(self.get(ref), self.cgroups, ps_args)

    async def changes(self, ref: str) -> list[dict]:
        c = self.get(ref)
        items = await asyncio.to_thread(self.files.changes, c)
        return [{"Path": path, "Kind": kind} for path, kind in items]

    # -- views (ContainerViews) --------------------------------------------------------------
    def inspect(self, ref: str) -> dict:
        return self.views.inspect(ref)

    def list(self, all_: bool, limit: int, filters_raw: str | None, before_ref: str = "",
             since_ref: str = "") -> tuple[list[dict], float | None]:
        return self.views.list(all_, limit, filters_raw, before_ref, since_ref)

    async def add_sizes(self, docs: list[dict]) -> None:
        await self.views.add_sizes(docs)

    def counts(self) -> dict[str, int]:
        return self.views.counts()

    # -- attach (daemon/containers/attaching.py) ----------------------------------------------
    def attach(self, ref: str, *, stdin: bool, stdout: bool, stderr: bool) -> attaching.Attachment:
        """An attach session to `ref`; refused for a paused container."""
        return attaching.Attachment(self.get(ref), stdin=stdin, stdout=stdout, stderr=stderr, read_logs=self.logs)

    async def shutdown(self) -> None:
        """Daemon shutdown: containers keep running under their monitors (live restore)."""
        self.shutting_down = True
        await self.health.shutdown()
        if self._releasing:
            # Nothing of a removed container may outlive the daemon (the next start would
            # release it, but a stopped daemon leaves nothing behind).
            await asyncio.wait(list(self._releasing), timeout=60)
        for c in self.registry:
            for task in (c.watch_task, c.restart_task):
                if task and not task.done():
                    task.cancel()
            attaching.fail_pending(c)


async def _nothing() -> None:
    return None


def _has_own_netns(c: Container) -> bool:
    """A network namespace the network sets up (and a hosts file it writes): not host, none or
    another container's."""
    mode = c.network_mode
    return mode not in ("host", "none") and not mode.startswith("container:")


def _anonymous_volumes(c: Container) -> list[str]:
    return [mp["Name"] for mp in c.mount_points if mp["Type"] == "volume" and mp["Anonymous"] and mp["Name"]]


def _link_alias(link: str) -> str:
    """The alias of a HostConfig.Links entry ("target:alias", "/target:/parent/alias", "target")."""
    target, _, alias = link.partition(":")
    return alias.rsplit("/", 1)[-1] or target.lstrip("/")
