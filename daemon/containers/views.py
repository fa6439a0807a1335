"""What `docker inspect` and `docker ps` show of containers: the inspect document, the list
rows and the list filters, and the counts of `docker info`.

Read-only: it looks containers up in the registry and asks networking, volumes and the
container's files for their parts of the documents.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from daemon.containers import health
from daemon.containers.collaborators import ContainerImages, ContainerNetworking, ContainerVolumes
from daemon.containers.container import Container, paths
from daemon.containers.files import ContainerFiles
from daemon.containers.registry import ContainerRegistry
from daemon.errors import InvalidParameter
from daemon.util.filters import Filters
from daemon.util.timeutil import ZERO_TIME, parse_timestamp
from daemon.volumes import mounts
from network import ports

PS_FILTERS = {"id", "name", "label", "label!", "status", "exited", "ancestor", "before", "since", "volume",
              "network", "health", "isolation", "is-task", "publish", "expose"}
STATUSES = ("created", "restarting", "running", "removing", "paused", "exited", "dead")


class ContainerViews:
    def __init__(self, *, registry: ContainerRegistry, images: ContainerImages, networks: ContainerNetworking,
                 volumes: ContainerVolumes, files: ContainerFiles) -> None:
        self.registry = registry
        self.images = images
        self.networks = networks
        self.volumes = volumes
        self.files = files

    def inspect(self, ref: str) -> dict:
        c = self.registry.get(ref)
        p = self.files.paths(c)
        names = self.name_files(c)
        state = dict(c.state)
        if c.removing:
            state["Status"] = "removing"
        data = {
            "Id": c.id,
            "Created": c.created,
            "Path": c.path,
            "Args": c.args,
            "State": state,
            "Image": c.image_id,
            "ResolvConfPath": str(names["resolv"]),
            "HostnamePath": str(names["hostname"]),
            "HostsPath": str(names["hosts"]),
            "LogPath": "" if (c.host_config.get("LogConfig") or {}).get("Type") == "none" else str(p["log"]),
            "Name": c.name,
            "RestartCount": c.restart_count,
            "Driver": c.driver,
            "Platform": "linux",
            "MountLabel": "",
            "ProcessLabel": "",
            "AppArmorProfile": "",
            "ExecIDs": list(c.exec_ids) or None,
            "HostConfig": c.host_config,
            "GraphDriver": self.files.graph_driver(c),
            "Mounts": mounts.inspect_entries(c.mount_points, self.volumes.source),
            "Config": c.config,
            "NetworkSettings": self.networks.settings(c),
        }
        return data

    async def add_sizes(self, docs: list[dict]) -> None:
        """SizeRw/SizeRootFs for `ps -s` and `inspect -s`: a walk of each container's own
        layer, so off the event loop."""
        found = [(doc, self.registry.find(doc["Id"])) for doc in docs]
        sizes = await asyncio.to_thread(lambda: [self.files.size_rw(c) if c else 0 for _, c in found])
        for (doc, c), size in zip(found, sizes, strict=True):
            img = self.images.images.get(c.image_id) if c else None
            doc["SizeRw"] = size
            doc["SizeRootFs"] = size + (img.size if img else 0)

    def name_files(self, c: Container) -> dict[str, Path]:
        """Where a container's hostname/hosts/resolv.conf live: the other container's with
        --net=container: once started, as dockerd shows them."""
        mode = c.network_mode
        if mode.startswith("container:") and c.state["StartedAt"] != ZERO_TIME:
            other = self.registry.find(mode.split(":", 1)[1])
            if other is not None:
                return paths(self.files.data_root, other.id)
        return self.files.paths(c)

    def list(self, all_: bool, limit: int, filters_raw: str | None, before_ref: str = "",
             since_ref: str = "") -> tuple[list[dict], float | None]:
        """The rows of `docker ps`, and when the first of their STATUS texts next reads otherwise by
        time alone ("Up 3 seconds"; None when none shows time)."""
        f = Filters.parse(filters_raw, PS_FILTERS)
        for st in f.get("status"):
            if st not in STATUSES:
                raise InvalidParameter(f"Invalid filter 'status={st}'")
        for h in f.get("health"):
            if h not in health.STATUSES:
                raise InvalidParameter(f"Unrecognised filter value for health: {h}")
        exited = []
        for e in f.get("exited"):
            try:
                exited.append(int(e))
            except ValueError:
                raise InvalidParameter(f"Invalid filter 'exited={e}'") from None
        before = [self.registry.get(r) for r in f.get("before") + ([before_ref] if before_ref else [])]
        since = [self.registry.get(r) for r in f.get("since") + ([since_ref] if since_ref else [])]
        ancestors = set()
        for a in f.get("ancestor"):
            img = self.images.find(a)
            if img is not None:
                ancestors.add(img.id)
            else:
                ancestors.add("<none>")
        show_all = all_ or bool(f.get("status")) or bool(exited) or limit > 0 or bool(before) or bool(since)
        rows = sorted(self.registry, key=lambda c: c.created, reverse=True)
        out = []
        now = time.time()
        changes_at: float | None = None
        for c in rows:
            status = "removing" if c.removing else ("paused" if c.state["Paused"] else c.state["Status"])
            if not show_all and not c.running:
                continue
            if f.get("status") and status not in f.get("status"):
                continue
            if exited and (c.running or c.state["FinishedAt"] == ZERO_TIME or c.state["ExitCode"] not in exited):
                continue
            if f.get("id") and not any(c.id.startswith(i) for i in f.get("id")):
                continue
            if not f.match_regex("name", c.name.lstrip("/")) and not f.match_regex("name", c.name):
                continue
            if not f.match_labels(c.labels):
                continue
            if before and not all(c.created < b.created for b in before):
                continue
            if since and not all(c.created > s.created for s in since):
                continue
            if ancestors and c.image_id not in ancestors:
                continue
            if f.get("network") and not any(n in c.networks for n in f.get("network")):
                continue
            if f.get("publish") and not ports.filter_match(f.get("publish"), (c.host_config.get("PortBindings") or {})):
                continue
            if f.get("expose") and not ports.filter_match(f.get("expose"), (c.config.get("ExposedPorts") or {})):
                continue
            if f.get("volume") and not mounts.matches(c.mount_points, f.get("volume")):
                continue
            if f.get("health") and health.status_of(c.state) not in f.get("health"):
                continue
            text, at = c.status(now)
            out.append(self._summary(c, text))
            if at is not None and (changes_at is None or at < changes_at):
                changes_at = at
            if limit > 0 and len(out) >= limit:
                break
        return out, changes_at

    def _summary(self, c: Container, status: str) -> dict:
        row: dict[str, Any] = {
            "Id": c.id,
            "Names": [c.name],
            "Image": self.images.display_name(c.image_id, c.config.get("Image", "")),
            "ImageID": c.image_id,
            "Command": c.command_text,
            "Created": int(parse_timestamp(c.created)),
            "Ports": self.networks.summary_ports(c),
            "Labels": c.labels,
            "State": "removing" if c.removing else c.state["Status"],
            "Status": status,
            "HostConfig": {"NetworkMode": c.host_config.get("NetworkMode", "default")},
            "NetworkSettings": {"Networks": self.networks.public_networks(c)},
            "Mounts": mounts.inspect_entries(c.mount_points, self.volumes.source),
        }
        return row

    def counts(self) -> dict[str, int]:
        running = sum(1 for c in self.registry if c.running and not c.state["Paused"])
        paused = sum(1 for c in self.registry if c.state["Paused"])
        return {"Containers": len(self.registry), "ContainersRunning": running, "ContainersPaused": paused,
                "ContainersStopped": len(self.registry) - running - paused}
