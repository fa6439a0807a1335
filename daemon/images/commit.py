"""`docker commit`: a new image = the container's image + one layer holding the container's changes.

overlay2: the layer is the container's upper dir, tarred with its whiteouts (exactly what
overlayfs recorded). vfs: the paths `docker diff` reports, read from the full copy, with a
whiteout for each deletion. The tar goes into the blob store first (its digest is the layer's
diff id, so save and push reproduce it exactly), then is unpacked into the layer store.
A running container is paused (cgroup freezer) while its layer is read, unless pause=0.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import stat
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from daemon.errors import Conflict, InvalidParameter
from daemon.events import EventBus
from daemon.images import dockerfile_changes, reference
from daemon.images.service import ImageService
from daemon.util.timeutil import now_rfc3339
from daemon.version import VERSION
from storage.blobs import BlobStore
from storage.layers import Layer, LayerStore
from storage.layersource import MEDIA_TAR, LayerSources, import_blob
from storage.rootfs import RootfsDriver
from storage.tarwriter import tar_directory


class CommittedContainer(Protocol):
    """What commit reads of a container record."""

    id: str
    name: str
    image_id: str
    config: dict
    state: dict

    @property
    def running(self) -> bool: ...


class CommitContainers(Protocol):
    """What commit needs from the container side: the container, its freezer and its changes."""

    def get(self, ref: str) -> CommittedContainer: ...

    async def pause(self, ref: str) -> None: ...

    async def unpause(self, ref: str) -> None: ...

    async def changes(self, ref: str) -> list[dict]:
        """`docker diff`: [{"Path", "Kind"}] against the container's image."""


@dataclass
class CommitService:
    containers: CommitContainers
    images: ImageService
    blobs: BlobStore
    layers: LayerStore
    sources: LayerSources
    driver: RootfsDriver
    events: EventBus

    async def commit(self, container: str, repo: str, tag: str, comment: str, author: str,
                     changes: list[str], body: dict | None, pause: bool = True) -> str:
        """The new image's id."""
        svc = self.containers
        c = svc.get(container)
        ref = reference.parse_repo_tag(repo, tag or None) if repo else None
        base = self.images.images.get(c.image_id)
        if base is None:
            raise InvalidParameter(f"the image of container {c.id[:12]} no longer exists")
        if body is not None and not isinstance(body, dict):
            raise InvalidParameter("invalid JSON: the commit body must be a container config object")
        # dockerd: the request's config, then the -c changes, then the container's values fill the gaps.
        new_cfg = dockerfile_changes.apply(dict(body or {}), changes)
        for key, value in (c.config or {}).items():
            if new_cfg.get(key) in (None, "", [], {}):
                new_cfg[key] = value
        parent = base.top_chain_id
        # Frozen while its files are read (dockerd's default): the layer is one consistent moment.
        paused = pause and c.running and not c.state.get("Paused")
        if paused:
            try:
                await svc.pause(c.id)
            except Conflict:  # it stopped in the meantime: nothing to freeze
                paused = False
        try:
            layer = await self.container_layer(c.id, parent)
        finally:
            if paused:
                # A container that exits while frozen (its command was ending) is no longer
                # paused: nothing to thaw, and no reason to fail the commit.
                with contextlib.suppress(Conflict):
                    await svc.unpause(c.id)
        created = now_rfc3339()
        config = {k: v for k, v in base.config.items() if k not in ("history", "rootfs", "config", "container",
                                                                     "container_config", "comment", "author")}
        history = list(base.config.get("history") or [])
        # dockerd: the container's Cmd joined by spaces (no quoting, no entrypoint)
        entry: dict[str, Any] = {"created": created, "created_by": " ".join(c.config.get("Cmd") or [])}
        if author:
            entry["author"] = author
        if comment:
            entry["comment"] = comment
        config.update({
            "created": created,
            "container": c.id,
            "container_config": c.config,
            "config": new_cfg,
            "docker_version": VERSION,
            "history": [*history, entry],
            "rootfs": {"type": "layers", "diff_ids": [*base.config.get("rootfs", {}).get("diff_ids", []),
                                                      layer.diff_id]},
        })
        if author:
            config["author"] = author
        if comment:
            config["comment"] = comment
        img = await self.images.register(config, [*base.chain_ids, layer.chain_id], base.size + layer.size,
                                         [str(ref)] if ref else [], parent=base.id)
        self.events.publish("container", "commit", c.id,
                            {"comment": comment, "imageID": img.id, "imageRef": str(ref) if ref else img.id,
                             "name": c.name.lstrip("/")})
        return img.id

    async def container_layer(self, cid: str, parent: str | None) -> Layer:
        """The layer of a container's changes on top of `parent`, in the blob and layer stores
        (also the builder's: each RUN, COPY and ADD step is one)."""
        driver = self.driver
        # vfs keeps no upper dir: the layer is what `docker diff` finds in the full copy.
        diff = None if driver.name == "overlay2" else await self.containers.changes(cid)

        def make() -> Layer:
            with self.blobs.writer() as w:
                if diff is None:
                    tar_directory(Path(driver.root) / cid / "upper", w, layer=True)
                else:
                    _tar_changes(Path(driver.root) / cid / "merged", [(d["Path"], d["Kind"]) for d in diff], w)
            assert w.digest is not None
            return import_blob(self.layers, self.sources, w.digest, MEDIA_TAR, parent)

        return await asyncio.to_thread(make)


def _tar_changes(top: Path, changes: list[tuple[str, int]], out: Any) -> None:
    """A layer tar of a full rootfs copy: the changed paths, and whiteouts for the deleted ones."""
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tf:  # type: ignore[call-overload]
        for path, kind in changes:
            rel = path.lstrip("/")
            if kind == 2:
                head, _, name = rel.rpartition("/")
                ti = tarfile.TarInfo(f"{head}/.wh.{name}" if head else f".wh.{name}")
                ti.mode = 0o600
                tf.addfile(ti)
                continue
            full = top / rel
            # Never follow a symlink planted by the container: lstat, and open files with O_NOFOLLOW.
            real_parent = os.path.realpath(full.parent)
            if not (real_parent + "/").startswith(os.path.realpath(top) + "/") and real_parent != os.path.realpath(top):
                continue
            try:
                st = os.lstat(full)
            except FileNotFoundError:
                continue
            ti = tf.gettarinfo(str(full), arcname=rel)
            ti.uname = ti.gname = ""
            if stat.S_ISREG(st.st_mode):
                fd = os.open(full, os.O_RDONLY | os.O_NOFOLLOW)
                with os.fdopen(fd, "rb") as f:
                    tf.addfile(ti, f)
            else:
                tf.addfile(ti)
