"""Healthchecks: a container's HEALTHCHECK (image config or --health-*; read by
health_config.py), probed on a schedule while it runs, as dockerd's daemon/health.go.

The decisions are plain functions (``record``, ``next_delay``, ``result_entry``) so that unit
tests drive them with a clock of their own; ``HealthMonitor``
owns one probe loop per running container and runs each probe as an exec inside it through
a ``ProbeRunner`` (the exec service). The state is ``State.Health`` of the container record
({"Status", "FailingStreak", "Log"}), persisted with it when the status changes: dockerd, too,
keeps the probe log only best-effort across a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from daemon.containers.health_config import ProbeConfig, go_duration, probe_config
from daemon.errors import DaemonError
from daemon.events import EventBus
from daemon.util.timeutil import format_time, parse_timestamp

if TYPE_CHECKING:  # container.py uses status_text: no import at run time
    from daemon.containers.container import Container

log = logging.getLogger("pydockerd.health")

STARTING, HEALTHY, UNHEALTHY, NONE = "starting", "healthy", "unhealthy", "none"
STATUSES = (STARTING, HEALTHY, UNHEALTHY, NONE)  # what `ps --filter health=` accepts

MAX_LOG_ENTRIES = 5
MAX_OUTPUT = 4096  # bytes of a probe's output kept; more is cut and marked with "..."
_STOP_WAIT = 15.0  # a stopped loop's probe is killed; how long to wait for that before giving up


@dataclass(frozen=True)
class ProbeOutcome:
    """One probe run as the exec service reports it."""

    exit_code: int
    output: bytes  # at most the limit asked for
    truncated: bool = False  # more output was discarded
    timed_out: bool = False  # killed at the timeout


class ProbeRunner(Protocol):
    async def run_probe(self, cid: str, cmd: list[str], timeout: float, output_limit: int) -> ProbeOutcome:
        """Runs `cmd` as an exec in the running container `cid` (exec_create/exec_start/exec_die
        events as for any exec); past `timeout` seconds the command is killed and the outcome
        says so. Raises DaemonError when it cannot start."""
        ...


# -- decisions -------------------------------------------------------------------------------
def status_of(state: dict) -> str:
    """The health of `ps --filter health=`: none without a healthcheck ever run."""
    health = state.get("Health")
    if not health:
        return NONE
    return health.get("Status") or UNHEALTHY


def status_text(health: dict) -> str:
    """The part of `docker ps`'s STATUS in parentheses."""
    status = health.get("Status") or UNHEALTHY
    return "health: starting" if status == STARTING else status


def next_delay(cfg: ProbeConfig, since_start: float, status: str) -> float:
    """Seconds until the next probe (from the end of the last one): the start interval while
    starting within the start period, the interval otherwise."""
    if since_start >= cfg.start_period:
        return cfg.interval
    return cfg.start_interval if status == STARTING else cfg.interval


def result_entry(outcome: ProbeOutcome, start: float, end: float, timeout: float) -> dict:
    """A Log entry of State.Health, output as dockerd keeps it."""
    text = outcome.output.decode(errors="replace") + ("..." if outcome.truncated else "")
    if outcome.timed_out:
        head = f"Health check exceeded timeout ({go_duration(timeout)})"
        text = f"{head}: {text}" if text else head
    return {"Start": format_time(int(start * 1e9)), "End": format_time(int(end * 1e9)),
            "ExitCode": -1 if outcome.timed_out else outcome.exit_code, "Output": text}


def record(health: dict, entry: dict, cfg: ProbeConfig, since_start_at_probe: float) -> None:
    """Applies one probe result to State.Health (handleProbeResult): last 5 entries kept;
    success is healthy; failures count towards `retries` unless the container is still
    starting within its start period."""
    health["Log"] = (list(health.get("Log") or []) + [entry])[-MAX_LOG_ENTRIES:]
    if entry["ExitCode"] == 0:
        health["FailingStreak"] = 0
        health["Status"] = HEALTHY
        return
    if (health.get("Status") or UNHEALTHY) == STARTING and since_start_at_probe < cfg.start_period:
        return
    health["FailingStreak"] = int(health.get("FailingStreak") or 0) + 1
    if health["FailingStreak"] >= cfg.retries:
        health["Status"] = UNHEALTHY


# -- the probe loops -------------------------------------------------------------------------
class HealthMonitor:
    """One probe loop per running container with a healthcheck; never two for one container,
    and never a second probe while one runs."""

    def __init__(self, *, runner: ProbeRunner, events: EventBus,
                 persist: Callable[[Container], Awaitable[None]], clock: Callable[[], float] = time.time) -> None:
        self.runner = runner
        self.events = events
        self.persist = persist
        self.clock = clock
        self._loops: dict[str, asyncio.Task] = {}

    def started(self, c: Container) -> None:
        """A container that has just started: health starting, probes from now on."""
        cfg = probe_config(c.config)
        if cfg is None:
            return
        health = c.state.get("Health") or {"Status": "", "FailingStreak": 0, "Log": []}
        health.update(Status=STARTING, FailingStreak=0)
        c.state["Health"] = health
        self._spawn(c, cfg)

    def resumed(self, c: Container) -> None:
        """A running container found at daemon start, or unpaused: probes go on from the
        recorded health (a record without one starts over)."""
        if "Health" not in c.state:
            self.started(c)
            return
        cfg = probe_config(c.config)
        if cfg is not None:
            self._spawn(c, cfg)

    async def stopped(self, c: Container) -> None:
        """Stopping, exited or paused: the loop ends (a running probe is killed, and waited
        for: dying probes must not pile up) and the health reads unhealthy, as dockerd's."""
        task = self._loops.pop(c.id, None)
        if task is not None:
            await _cancel(task)
        # Also without a loop (a container that died while the daemon was down): a stopped
        # container is never reported healthy.
        health = c.state.get("Health")
        if health is not None:
            health["Status"] = UNHEALTHY

    async def shutdown(self) -> None:
        """Daemon shutdown: the loops end, the health stays as it is (probes resume at start)."""
        tasks = list(self._loops.values())
        self._loops.clear()
        await asyncio.gather(*(_cancel(t) for t in tasks))

    def probing(self, cid: str) -> bool:
        task = self._loops.get(cid)
        return task is not None and not task.done()

    def _spawn(self, c: Container, cfg: ProbeConfig) -> None:
        old = self._loops.pop(c.id, None)
        if old is not None:
            old.cancel()
        self._loops[c.id] = asyncio.create_task(self._loop(c, cfg), name=f"health {c.short_id}")

    async def _loop(self, c: Container, cfg: ProbeConfig) -> None:
        started_at = parse_timestamp(c.state["StartedAt"])
        while True:
            health = c.state.get("Health") or {}
            await asyncio.sleep(next_delay(cfg, self.clock() - started_at, health.get("Status", "")))
            start = self.clock()
            try:
                outcome = await self.runner.run_probe(c.id, cfg.cmd, cfg.timeout, MAX_OUTPUT)
            except asyncio.CancelledError:
                raise
            except DaemonError as e:
                outcome = ProbeOutcome(exit_code=-1, output=e.message.encode())
            except Exception as e:  # a bug: logged, and the loop goes on as dockerd's does
                log.exception("health check of %s", c.id)
                outcome = ProbeOutcome(exit_code=-1, output=str(e).encode())
            health = c.state.get("Health")
            if health is None or self._loops.get(c.id) is not asyncio.current_task():
                return
            before = health.get("Status")
            record(health, result_entry(outcome, start, self.clock(), cfg.timeout), cfg, start - started_at)
            if health["Status"] != before:
                await self.persist(c)
                self.events.publish("container", f"health_status: {health['Status']}", c.id, c.event_attrs())


async def _cancel(task: asyncio.Task) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await asyncio.wait_for(task, _STOP_WAIT)
