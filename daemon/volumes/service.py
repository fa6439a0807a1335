"""The volume service: create, list, inspect, remove, prune, and the volumes of containers.

Every volume is a row in the store (name, labels, options, creation time) and a directory of
the local driver; the row is written after the directory exists and deleted before it goes, so a
crash leaves at worst an orphan directory, never a row without data. Which containers use a
volume is not stored twice: it is read from the containers' mount points (`users`).
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Protocol

from daemon.errors import Conflict, DaemonError, InvalidParameter, NotFound
from daemon.events import EventBus
from daemon.store import Store
from daemon.util.filters import Filters
from daemon.util.prune import remove_each
from daemon.volumes import mounts
from storage.archive import ArchiveError, extract_tar
from storage.mounts import propagation
from storage.rootpath import resolve_in_root
from storage.tarwriter import tar_directory
from storage.volumes import NAME_RE, LocalDriver, VolumeDriverError, validate_options

log = logging.getLogger("pydockerd.volumes")

ANONYMOUS_LABEL = "com.docker.volume.anonymous"
LIST_FILTERS = {"dangling", "name", "label", "label!", "driver"}
PRUNE_FILTERS = {"label", "label!", "all"}


class VolumeUsers(Protocol):
    def volume_users(self, name: str) -> list[tuple[str, bool]]:
        """(container id, running) of the containers that mount the volume."""


def _created_at() -> str:
    text = datetime.now().astimezone().replace(microsecond=0).isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


@dataclass
class Volume:
    name: str
    created_at: str
    driver: str = "local"
    labels: dict[str, str] | None = None
    options: dict[str, str] | None = None
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def doc(self) -> dict:
        return {"Name": self.name, "CreatedAt": self.created_at, "Driver": self.driver, "Labels": self.labels,
                "Options": self.options}

    @property
    def anonymous(self) -> bool:
        return ANONYMOUS_LABEL in (self.labels or {})


class VolumeService:
    def __init__(self, store: Store, driver: LocalDriver, events: EventBus, users: VolumeUsers) -> None:
        self.store = store
        self.driver = driver
        self.events = events
        self.volumes: dict[str, Volume] = {}
        self.users = users
        self._lock = asyncio.Lock()

    def load(self) -> None:
        for doc in self.store.load_volumes():
            self.volumes[doc["Name"]] = Volume(doc["Name"], doc["CreatedAt"], doc.get("Driver", "local"),
                                               doc.get("Labels"), doc.get("Options"))

    def reconcile(self) -> None:
        """Start-up: unmount device-backed volumes (tmpfs...) that no running container uses."""
        for name in self.driver.names():
            if name not in self.volumes:
                # Left by a crash in a create or a remove; deleted when the name is created again
                # (never at start-up: a store that failed to load must not cost the volumes' data).
                log.warning("volume directory %s has no record", name)
        for v in self.volumes.values():
            if self.driver.needs_mount(v.options) and not any(r for _, r in self.users.volume_users(v.name)):
                try:
                    self.driver.unmount(v.name)
                except OSError as e:
                    log.warning("unmounting volume %s: %s", v.name, e)

    # -- views -------------------------------------------------------------------------------
    def view(self, v: Volume) -> dict:
        return {"CreatedAt": v.created_at, "Driver": v.driver, "Labels": v.labels,
                "Mountpoint": str(self.driver.data_path(v.name)), "Name": v.name, "Options": v.options,
                "Scope": "local"}

    def get(self, name: str) -> Volume:
        v = self.volumes.get(name)
        if v is None:
            raise NotFound(f"get {name}: no such volume")
        return v

    def inspect(self, name: str) -> dict:
        return self.view(self.get(name))

    def list(self, filters_raw: str | None) -> dict:
        f = Filters.parse(filters_raw, LIST_FILTERS)
        dangling = f.bool("dangling")
        out = []
        for v in sorted(self.volumes.values(), key=lambda v: v.name):
            if dangling is not None and bool(self.users.volume_users(v.name)) == dangling:
                continue
            if not f.match_regex("name", v.name):
                continue
            if f.get("driver") and v.driver not in f.get("driver"):
                continue
            if not f.match_label_filters(v.labels):
                continue
            out.append(self.view(v))
        return {"Volumes": out, "Warnings": None}

    def usage(self) -> list[dict]:
        """For /system/df: every volume with UsageData (Size in bytes, RefCount)."""
        return [dict(self.view(v), UsageData={"Size": self._size(v), "RefCount": len(self.users.volume_users(v.name))})
                for v in self.volumes.values()]

    def _size(self, v: Volume) -> int:
        try:
            return self.driver.size(v.name)
        except OSError:
            return -1

    # -- create / remove ---------------------------------------------------------------------
    async def create(self, body: dict | None) -> dict:
        body = body or {}
        if not isinstance(body, dict):
            raise InvalidParameter("invalid JSON: expected an object")
        name = body.get("Name") or ""
        driver = body.get("Driver") or "local"
        labels = body.get("Labels") or None
        opts = body.get("DriverOpts") or None
        if not isinstance(name, str) or not isinstance(driver, str):
            raise InvalidParameter("json: cannot unmarshal into Go struct field VolumeCreateOptions.Name")
        for what, value in (("Labels", labels), ("DriverOpts", opts)):
            if value is not None and (not isinstance(value, dict)
                                      or not all(isinstance(x, str) for x in value.values())):
                raise InvalidParameter(f"json: cannot unmarshal into Go struct field VolumeCreateOptions.{what}")
        v = await self.ensure(name or mounts.new_volume_name(), driver, labels, opts)
        return self.view(v)

    async def ensure(self, name: str, driver: str = "local", labels: dict[str, str] | None = None,
                     opts: dict[str, str] | None = None) -> Volume:
        """The volume `name`, created if it does not exist (as dockerd: an existing one is returned)."""
        if driver != "local":
            raise NotFound(f'create {name}: error looking up volume plugin {driver}: plugin "{driver}" not found')
        if not NAME_RE.match(name):
            raise InvalidParameter(f'create {name}: "{name}" includes invalid characters for a local volume '
                                   'name, only "[a-zA-Z0-9][a-zA-Z0-9_.-]" are allowed. If you intended to '
                                   "pass a host directory, use absolute path")
        async with self._lock:
            existing = self.volumes.get(name)
            if existing is not None:
                return existing
            try:
                validate_options(opts or {})
            except VolumeDriverError as e:
                raise InvalidParameter(f"create {name}: {e}") from None
            v = Volume(name, _created_at(), driver, labels, opts)
            if await asyncio.to_thread(self.driver.exists, name):
                # No record but a directory: a crash interrupted a create or a remove (the row is
                # written after the directory is made and deleted before it goes). Start empty.
                await asyncio.to_thread(self.driver.remove, name)
            await asyncio.to_thread(self.driver.create, name)
            try:
                await self.store.put_volume(name, v.doc())
            except BaseException:
                await asyncio.to_thread(self.driver.remove, name)
                raise
            self.volumes[name] = v
        self.events.publish("volume", "create", name, {"driver": driver})
        return v

    async def remove(self, name: str, force: bool = False) -> None:
        v = self.volumes.get(name)
        if v is None:
            if force:
                return
            raise NotFound(f"get {name}: no such volume")
        users = self.users.volume_users(name)
        if users:
            raise Conflict(f"remove {name}: volume is in use - [{', '.join(cid for cid, _ in users)}]")
        async with self._lock:
            if self.volumes.get(name) is not v:
                return
            await self.store.delete_volume(name)
            del self.volumes[name]
            try:
                await asyncio.to_thread(self.driver.remove, name)
            except OSError as e:
                log.warning("removing the data of volume %s: %s", name, e)
        self.events.publish("volume", "destroy", name, {"driver": v.driver})

    async def prune(self, filters_raw: str | None, all_by_default: bool = False) -> dict:
        f = Filters.parse(filters_raw, PRUNE_FILTERS)
        all_ = f.bool("all")
        if all_ is None:
            all_ = all_by_default
        unused = [v for v in list(self.volumes.values())
                  if (all_ or v.anonymous) and f.match_label_filters(v.labels) and not self.users.volume_users(v.name)]
        deleted, reclaimed = await remove_each(unused, lambda v: v.name, self._size, self.remove)
        return {"VolumesDeleted": deleted or None, "SpaceReclaimed": reclaimed}

    # -- containers --------------------------------------------------------------------------
    async def attach(self, points: list[dict]) -> None:
        """Container create: name anonymous volumes and create every volume that does not exist.

        On failure the anonymous volumes made here are removed again (named ones stay, as in dockerd).
        """
        made: list[str] = []
        try:
            for mp in points:
                if mp["Type"] != "volume":
                    continue
                labels = mp.get("VolumeLabels") or None
                driver, opts = mp.get("Driver") or "local", mp.get("VolumeOptions") or None
                if mp["Anonymous"] and not mp["Name"]:
                    mp["Name"] = mounts.new_volume_name()
                    await self.ensure(mp["Name"], driver, {**(labels or {}), ANONYMOUS_LABEL: ""}, opts)
                    made.append(mp["Name"])
                else:
                    await self.ensure(mp["Name"], driver, labels, opts)
        except BaseException:
            await self.remove_anonymous(made)
            raise

    async def remove_anonymous(self, names: list[str]) -> None:
        for name in names:
            v = self.volumes.get(name)
            if v is None or not v.anonymous or self.users.volume_users(name):
                continue
            try:
                await self.remove(name)
            except DaemonError as e:
                log.warning("removing anonymous volume %s: %s", name, e.message)

    def source(self, mp: dict) -> str:
        """The host path a mount point binds (a volume's _data, or the bind source)."""
        if mp["Type"] == "volume":
            return str(self.driver.data_path(mp["Name"]))
        return mp["Source"]

    def spec_mounts(self, points: list[dict], rootfs: Path) -> list[dict]:
        """Container start (blocking): mount device volumes, fill empty volumes from the image,
        create missing `-v` bind sources; returns the runtime spec's mounts for `points`."""
        specs = []
        for mp in points:
            if mp["Type"] == "tmpfs":
                continue
            if mp["Type"] == "volume":
                v = self.volumes.get(mp["Name"])
                if v is None:
                    raise NotFound(f"get {mp['Name']}: no such volume")
                with v.lock:
                    if self.driver.needs_mount(v.options):
                        try:
                            self.driver.mount(v.name, v.options or {})
                        except VolumeDriverError as e:
                            raise DaemonError(str(e)) from None
                    if mp["CopyData"]:
                        copy_image_content(rootfs, mp["Destination"], self.driver.data_path(v.name))
                options = ",".join(filter(None, ["rbind", mp["Propagation"] or "rprivate"]))
            else:
                if mp["Create"] and not os.path.lexists(mp["Source"]):
                    os.makedirs(mp["Source"], 0o755, exist_ok=True)
                _check_propagation(mp["Source"], mp["Propagation"])
                options = ",".join(["rbind", mp["Propagation"] or "rprivate"])
            specs.append({"type": "bind", "source": self.source(mp), "destination": mp["Destination"],
                          "readonly": not mp["RW"], "options": options})
        return specs

    def release(self, points: list[dict]) -> None:
        """Container exit (blocking): unmount device volumes that no running container uses now."""
        for mp in points:
            v = self.volumes.get(mp["Name"]) if mp["Type"] == "volume" else None
            if v is None or not self.driver.needs_mount(v.options):
                continue
            with v.lock:
                if not any(running for _, running in self.users.volume_users(v.name)):
                    try:
                        self.driver.unmount(v.name)
                    except OSError as e:
                        log.warning("unmounting volume %s: %s", v.name, e)


def copy_image_content(rootfs: Path, dest: str, data: Path) -> None:
    """dockerd's first-use copy: an empty volume receives what the image has at `dest`.

    The source is resolved inside the rootfs (image symlinks never lead to the host), and the copy
    goes through a tar stream so that the same symlink-safe writer and extractor do the work.
    """
    if any(os.scandir(data)):
        return
    src = resolve_in_root(rootfs, dest)
    try:
        if not src.is_dir() or src.is_symlink():
            return
        empty = not any(os.scandir(src))
    except OSError:
        return
    if not empty:
        _copy_tree(src, data)
    # Also for an empty directory, as dockerd: a data dir owned by a service user stays its own.
    st = os.stat(src)
    os.chown(data, st.st_uid, st.st_gid)
    os.chmod(data, st.st_mode & 0o7777)


def _copy_tree(src: Path, data: Path) -> None:
    r, w = os.pipe()
    errors: list[BaseException] = []

    def produce() -> None:
        try:
            with os.fdopen(w, "wb") as out:
                tar_directory(src, out)
        except BaseException as e:  # noqa: BLE001 - reported by the consumer
            errors.append(e)

    t = threading.Thread(target=produce, daemon=True)
    t.start()
    try:
        with os.fdopen(r, "rb") as inp:
            extract_tar(inp, data)
    except ArchiveError as e:
        raise DaemonError(f"copying image content into the volume: {e}") from e
    finally:
        t.join()
    if errors:
        raise DaemonError(f"copying image content into the volume: {errors[0]}")


def _check_propagation(source: str, wanted: str) -> None:
    """dockerd's check: shared (or slave) propagation needs a source on a shared (or slave)
    mount, else the container's mount would silently be private."""
    if wanted not in ("shared", "rshared", "slave", "rslave"):
        return
    point, kind = propagation(source)
    if wanted.endswith("shared") and kind != "shared":
        raise DaemonError(f"linux mounts: path {source} is mounted on {point} but it is not a shared mount")
    if wanted.endswith("slave") and kind == "private":
        raise DaemonError(f"linux mounts: path {source} is mounted on {point} but it is not a shared or slave mount")
