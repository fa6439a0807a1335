"""The engine as the HTTP layer sees it: one typing.Protocol per resource (as moby's
api/server/router/<resource>/backend.go), bundled for create_app. Routers call only these;
the composition root (daemon/main.py) hands in the engine's services, which satisfy them."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from api.backends.archive import ArchiveBackend
from api.backends.build import BuildBackend
from api.backends.containers import ContainerBackend
from api.backends.distribution import DistributionBackend
from api.backends.execs import ExecBackend
from api.backends.images import CommitBackend, ImageArchiveBackend, ImageBackend
from api.backends.metrics import RequestObserver
from api.backends.networks import NetworkBackend, NetworkConnectBackend
from api.backends.stats import StatsBackend
from api.backends.swarm import SwarmBackend
from api.backends.system import SystemBackend
from api.backends.updates import UpdateBackend
from api.backends.volumes import VolumeBackend
from api.replay import StateRevision


@dataclass(frozen=True)
class Backends:
    containers: ContainerBackend
    updates: UpdateBackend
    archive: ArchiveBackend
    stats: StatsBackend
    execs: ExecBackend
    images: ImageBackend
    image_archives: ImageArchiveBackend
    commit: CommitBackend
    build: BuildBackend
    distribution: DistributionBackend
    networks: NetworkBackend
    network_connect: NetworkConnectBackend
    volumes: VolumeBackend
    system: SystemBackend
    swarm: SwarmBackend
    # Set when the daemon starts stopping: responses that would last as long as the daemon
    # (wait, logs -f, events, stats, attach) end then.
    stopping: asyncio.Event
    # Moves whenever anything an answer shows may have changed: kept GET answers are replayed
    # while it stays (api/replay.py).
    revision: StateRevision
    # With --metrics-addr: told about every request (route template, status, duration).
    metrics: RequestObserver | None = None
