"""What the engine counts, in prometheus_client's types, and one scrape's text.

Names follow dockerd's where it has the metric (`engine_daemon_container_states_containers`,
`engine_daemon_container_actions_seconds`) and cAdvisor's for per-container usage (which
dockerd leaves to cAdvisor): `container_cpu_usage_seconds_total`, `container_memory_usage_bytes`,
`container_network_{receive,transmit}_bytes_total`, `container_fs_{reads,writes}_bytes_total`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from daemon.containers.stats import net_dev
from daemon.looplag import LoopLag

log = logging.getLogger(__name__)

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
_LAG_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class Sampler(Protocol):
    """The cgroup counters of one container (runtime/cgroups.py's stats)."""

    def stats(self, cid: str) -> dict: ...


@dataclass(frozen=True)
class RunningContainer:
    """What a scrape needs of a running container, copied on the loop before the thread reads files."""

    id: str
    name: str
    image: str
    pid: int
    own_netns: bool


class Metrics:
    def __init__(self, cgroups: Sampler, looplag: LoopLag) -> None:
        self.cgroups = cgroups
        self.looplag = looplag
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.api_requests = Counter("pydockerd_api_requests", "Engine API requests by route and status",
                                    ["method", "route", "status"], registry=r)
        self.api_latency = Histogram("pydockerd_api_request_duration_seconds",
                                     "Engine API request duration, to the end of the response (streams included)",
                                     ["method", "route"], buckets=_LATENCY_BUCKETS, registry=r)
        self.container_actions = Histogram("engine_daemon_container_actions_seconds",
                                           "The number of seconds it takes to process each container action",
                                           ["action"], buckets=_LATENCY_BUCKETS, registry=r)
        self.pulls = Counter("pydockerd_image_pulls", "Image pulls by result", ["result"], registry=r)
        self.loop_lag = Histogram("pydockerd_event_loop_lag_seconds",
                                  "How late a timer on the daemon's event loop fires", buckets=_LAG_BUCKETS,
                                  registry=r)
        self.loop_lag_last = Gauge("pydockerd_event_loop_lag_last_seconds", "The last event-loop lag measured",
                                   registry=r)

    # -- observations (called on the loop) ------------------------------------------------------
    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        self.api_requests.labels(method, route, str(status)).inc()
        self.api_latency.labels(method, route).observe(seconds)

    def observe_container_action(self, action: str, seconds: float) -> None:
        self.container_actions.labels(action).observe(seconds)

    def observe_pull(self, ok: bool) -> None:
        self.pulls.labels("success" if ok else "failure").inc()

    def _observe_lag(self, seconds: float) -> None:
        self.loop_lag.observe(seconds)
        self.loop_lag_last.set(seconds)

    def start(self) -> None:
        # The daemon's one loop-lag probe (daemon/looplag.py, also behind /debug/vars) feeds the histogram.
        self.looplag.observers.append(self._observe_lag)

    async def stop(self) -> None:
        if self._observe_lag in self.looplag.observers:
            self.looplag.observers.remove(self._observe_lag)

    # -- a scrape ---------------------------------------------------------------------------------
    async def render(self, states: dict[str, int], running: list[RunningContainer]) -> bytes:
        """The exposition text: the counters above, container states, and per-container usage read
        from the cgroups and /proc in a thread (file reads must not hold up the loop)."""
        return await asyncio.to_thread(self._render, states, running)

    def _render(self, states: dict[str, int], running: list[RunningContainer]) -> bytes:
        return generate_latest(_Scrape(self.registry, [*_state_families(states), *self._usage(running)]))

    def _usage(self, running: list[RunningContainer]) -> list[Metric]:
        labels = ["id", "name", "image"]
        cpu = CounterMetricFamily("container_cpu_usage_seconds", "Cumulative CPU time consumed", labels=labels)
        mem = GaugeMetricFamily("container_memory_usage_bytes", "Memory in use (cgroup usage)", labels=labels)
        rx = CounterMetricFamily("container_network_receive_bytes", "Bytes received",
                                 labels=[*labels, "interface"])
        tx = CounterMetricFamily("container_network_transmit_bytes", "Bytes transmitted",
                                 labels=[*labels, "interface"])
        reads = CounterMetricFamily("container_fs_reads_bytes", "Bytes read from block devices", labels=labels)
        writes = CounterMetricFamily("container_fs_writes_bytes", "Bytes written to block devices", labels=labels)
        for c in running:
            values = [c.id, c.name, c.image]
            try:
                raw = self.cgroups.stats(c.id)
            except OSError as e:
                # Gone between the snapshot and now: it is simply not in this scrape.
                log.debug("metrics: no cgroup stats for %s: %s", c.id[:12], e)
                continue
            cpu.add_metric(values, raw.get("cpu_total", 0) / 1e9)
            mem.add_metric(values, raw.get("memory", {}).get("usage", 0))
            io = raw.get("io") or {}
            reads.add_metric(values, io.get("read_bytes", 0))
            writes.add_metric(values, io.get("write_bytes", 0))
            if c.own_netns and c.pid:
                for ifname, dev in net_dev(c.pid).items():
                    rx.add_metric([*values, ifname], dev["rx_bytes"])
                    tx.add_metric([*values, ifname], dev["tx_bytes"])
        return [cpu, mem, rx, tx, reads, writes]


def _state_families(states: dict[str, int]) -> Iterable[Metric]:
    g = GaugeMetricFamily("engine_daemon_container_states_containers", "The count of containers in various states",
                          labels=["state"])
    for state in ("running", "paused", "stopped"):
        g.add_metric([state], states.get(state, 0))
    yield g


class _Scrape:
    """The daemon's registry plus this scrape's families: generate_latest reads any `collect()`."""

    def __init__(self, registry: CollectorRegistry, extra: list[Metric]) -> None:
        self.registry = registry
        self.extra = extra

    def collect(self) -> Iterator[Any]:
        yield from self.registry.collect()
        yield from self.extra
