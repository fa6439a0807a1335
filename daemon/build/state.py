"""What one build carries from step to step (the stage's image and config), the engine's
services it drives, and the error that stops it."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

from daemon.build.cache import BuildCache
from daemon.build.collaborators import BuildContainers, BuildImages, ContainerLayers, ContainerRootfs, Pulls
from daemon.build.instructions import DEFAULT_SHELL
from daemon.containers.container_config import DEFAULT_PATH
from daemon.errors import DaemonError
from daemon.images.service import GOARCH, Image
from storage.blobs import BlobStore
from storage.layers import LayerStore
from storage.layersource import LayerSources


class BuildFailed(DaemonError):
    """A build that stops at a step: the message (and exit code of a RUN) end the stream."""

    status = 400

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class Engine:
    """The engine's services the builder drives."""

    images: BuildImages
    containers: BuildContainers
    rootfs: ContainerRootfs
    commits: ContainerLayers
    pulls: Pulls
    blobs: BlobStore
    layers: LayerStore
    sources: LayerSources
    cache: BuildCache


@dataclass
class StageState:
    image_id: str  # "" for FROM scratch until the first step
    doc: dict  # the image config document the next step builds on
    chain_ids: list[str]
    size: int
    shell: list[str] = field(default_factory=lambda: list(DEFAULT_SHELL))
    cmd_set: bool = False

    @property
    def config(self) -> dict:
        return self.doc.setdefault("config", {})

    @property
    def top_chain(self) -> str | None:
        return self.chain_ids[-1] if self.chain_ids else None

    @classmethod
    def of(cls, img: Image | None) -> StageState:
        if img is None:
            doc: dict = {"architecture": GOARCH, "os": "linux", "config": {"Env": [DEFAULT_PATH]},
                         "rootfs": {"type": "layers", "diff_ids": []}, "history": []}
            return cls("", doc, [], 0)
        doc = copy.deepcopy(img.config)
        cfg = doc.setdefault("config", {}) or {}
        doc["config"] = cfg
        if not any(e.startswith("PATH=") for e in cfg.get("Env") or []):
            cfg["Env"] = [DEFAULT_PATH, *(cfg.get("Env") or [])]
        st = cls(img.id, doc, list(img.chain_ids), img.size)
        if cfg.get("Shell"):
            st.shell = list(cfg["Shell"])
        return st
