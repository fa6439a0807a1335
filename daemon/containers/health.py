"""Healthchecks: a container's HEALTHCHECK (image config or --health-*), probed on a schedule
while it runs, as dockerd's daemon/health.go.

The decisions are plain functions (``validate``, ``merge``, ``probe_config``, ``record``,
``next_delay``) so that unit tests drive them with a clock of their own; ``HealthMonitor``
owns one probe loop per running container and runs each probe as an exec inside it through
a ``ProbeRunner`` (the exec service). The state is ``State.Health`` of the container record
({"Status", "FailingStreak", "Log"}), persisted with it when the status changes: dockerd, too,
keeps the probe log only best-effort across a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from daemon.errors import DaemonError, InvalidParameter
from daemon.events import EventBus
from daemon.util.timeutil import format_time, parse_timestamp

if TYPE_CHECKING:  # container.py uses status_text: no import at run time
    from daemon.containers.container import Container

log = logging.getLogger("pydockerd.health")

STARTING, HEALTHY, UNHEALTHY, NONE = "starting", "healthy", "unhealthy", "none"
STATUSES = (STARTING, HEALTHY, UNHEALTHY, NONE)  # what `ps --filter health=` accepts

# dockerd's defaults (daemon/health.go), in seconds.
DEFAULT_INTERVAL = 30.0
DEFAULT_TIMEOUT = 30.0
DEFAULT_START_PERIOD = 0.0
DEFAULT_START_INTERVAL = 5.0
DEFAULT_RETRIES = 3
MAX_LOG_ENTRIES = 5
MAX_OUTPUT = 4096  # bytes of a probe's output kept; more is cut and marked with "..."
_MIN_DURATION_NS = 1_000_000  # container.MinimumDuration: 1ms
_INT64_MAX = 2**63 - 1
_STOP_WAIT = 15.0  # a stopped loop's probe is killed; how long to wait for that before giving up

_DURATIONS = ("Interval", "Timeout", "StartPeriod", "StartInterval")


@dataclass(frozen=True)
class ProbeConfig:
    """A container's healthcheck, ready to run: the command and the schedule in seconds."""

    cmd: list[str]
    interval: float
    timeout: float
    start_period: float
    start_interval: float
    retries: int


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


# -- configuration ---------------------------------------------------------------------------
def validate(hc: Any) -> None:
    """Config.Healthcheck of a create request, with dockerd's checks and wording."""
    if hc is None:
        return
    if not isinstance(hc, dict):
        raise InvalidParameter("json: cannot unmarshal into Go struct field Config.Healthcheck of type "
                               "container.HealthConfig")
    test = hc.get("Test")
    if test is not None and (not isinstance(test, list) or not all(isinstance(t, str) for t in test)):
        raise InvalidParameter("json: cannot unmarshal into Go struct field HealthConfig.Healthcheck.Test of "
                               "type []string")
    for key in (*_DURATIONS, "Retries"):
        value = hc.get(key)
        if value is None:
            continue
        if not isinstance(value, int) or isinstance(value, bool) or not -_INT64_MAX - 1 <= value <= _INT64_MAX:
            kind = "int" if key == "Retries" else "time.Duration"
            raise InvalidParameter(f"json: cannot unmarshal {value!r} into Go struct field "
                                   f"HealthConfig.Healthcheck.{key} of type {kind}")
    for key in _DURATIONS:
        value = hc.get(key) or 0
        if value != 0 and value < _MIN_DURATION_NS:
            raise InvalidParameter(f"{key} in Healthcheck cannot be less than 1ms")
    if (hc.get("Retries") or 0) < 0:
        raise InvalidParameter("Retries in Healthcheck cannot be negative")


def merge(user: dict | None, image: dict | None) -> dict | None:
    """The container's healthcheck: the request's, its unset fields taken from the image's
    (dockerd's merge in daemon/commit.go)."""
    if not user:
        return dict(image) if image else None
    out = dict(user)
    if image:
        if not out.get("Test"):
            out["Test"] = image.get("Test")
        for key in (*_DURATIONS, "Retries"):
            if not out.get(key) and image.get(key):
                out[key] = image[key]
    return out


def probe_config(config: dict) -> ProbeConfig | None:
    """None when the container has no healthcheck to run (none, NONE, or a test dockerd does
    not know)."""
    hc = config.get("Healthcheck")
    if not hc or not hc.get("Test"):
        return None
    test = hc["Test"]
    if test[0] == "CMD":
        cmd = list(test[1:])
    elif test[0] == "CMD-SHELL":
        cmd = list(config.get("Shell") or ["/bin/sh", "-c"]) + list(test[1:])
    else:
        return None
    if not cmd:
        return None

    def seconds(key: str, default: float) -> float:
        return (hc.get(key) or 0) / 1e9 or default

    return ProbeConfig(cmd=cmd, interval=seconds("Interval", DEFAULT_INTERVAL),
                       timeout=seconds("Timeout", DEFAULT_TIMEOUT),
                       start_period=seconds("StartPeriod", DEFAULT_START_PERIOD),
                       start_interval=seconds("StartInterval", DEFAULT_START_INTERVAL),
                       retries=hc.get("Retries") or DEFAULT_RETRIES)


_GO_DURATION = re.compile(r"(\d+\.?\d*|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNIT_NS = {"ns": 1, "us": 1_000, "µs": 1_000, "ms": 1_000_000, "s": 10**9, "m": 60 * 10**9, "h": 3600 * 10**9}
_FLAGS = {"interval": "Interval", "timeout": "Timeout", "start-period": "StartPeriod",
          "start-interval": "StartInterval", "retries": "Retries"}


def parse_go_duration(text: str) -> int:
    """Go's time.ParseDuration, in nanoseconds ("1m30s", "500ms", "0")."""
    if text in ("0", "+0", "-0"):
        return 0
    sign = -1 if text.startswith("-") else 1
    body = text.lstrip("+-")
    if body.replace(".", "").isdigit():
        raise InvalidParameter(f'time: missing unit in duration "{text}"')
    pos, total = 0, 0.0
    while pos < len(body):
        m = _GO_DURATION.match(body, pos)
        if m is None:
            raise InvalidParameter(f'time: invalid duration "{text}"')
        total += float(m.group(1)) * _UNIT_NS[m.group(2)]
        pos = m.end()
    if not body:
        raise InvalidParameter(f'time: invalid duration "{text}"')
    return sign * round(total)


def parse_instruction(args: str) -> dict:
    """The Healthcheck of a `HEALTHCHECK ...` line (its arguments): `NONE`, or
    `[--interval=D] [--timeout=D] [--start-period=D] [--start-interval=D] [--retries=N] CMD ...`
    with the command in JSON (CMD) or shell form (CMD-SHELL); dockerd's messages."""
    rest = args.strip()
    flags: dict[str, str] = {}
    while rest.startswith("--"):
        word, _, rest = rest.partition(" ")
        rest = rest.lstrip()
        name, eq, value = word[2:].partition("=")
        if name not in _FLAGS:
            raise InvalidParameter(f"Unknown flag: {name}")
        if not eq:
            raise InvalidParameter(f"Missing a value on flag: {name}")
        flags[name] = value
    if not rest:
        raise InvalidParameter("HEALTHCHECK requires at least one argument")
    kind, _, command = rest.partition(" ")
    kind, command = kind.upper(), command.strip()
    if kind == "NONE":
        if command or flags:
            raise InvalidParameter("HEALTHCHECK NONE takes no arguments")
        return {"Test": ["NONE"]}
    if kind != "CMD":
        raise InvalidParameter(f'Unknown type "{kind}" in HEALTHCHECK (try CMD)')
    test: list[str] | None = None
    if command.startswith("["):
        with contextlib.suppress(ValueError):
            value = json.loads(command)
            if isinstance(value, list) and all(isinstance(v, str) for v in value):
                test = ["CMD", *value]
    if test is None:
        test = ["CMD-SHELL", command] if command else ["CMD"]
    if len(test) == 1:
        raise InvalidParameter("Missing command after HEALTHCHECK CMD")
    out: dict[str, Any] = {"Test": test}
    for flag, value in flags.items():
        key = _FLAGS[flag]
        if key == "Retries":
            try:
                retries = int(value)
            except ValueError:
                raise InvalidParameter(f'strconv.ParseInt: parsing "{value}": invalid syntax') from None
            if retries < 0:
                raise InvalidParameter(f"--retries cannot be negative ({retries})")
            out[key] = retries
            continue
        ns = parse_go_duration(value) if value else 0
        if ns and ns < _MIN_DURATION_NS:
            raise InvalidParameter(f'Interval "{flag}" cannot be less than 1ms')
        if ns:  # dockerd's JSON leaves unset durations out
            out[key] = ns
    return out


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


def go_duration(seconds: float) -> str:
    """Go's time.Duration.String() for the durations of a healthcheck (1s, 500ms, 1m30s)."""
    ns = round(seconds * 1e9)
    if ns == 0:
        return "0s"
    if ns < 1_000_000_000:
        for unit, size in (("ms", 1_000_000), ("µs", 1_000)):
            if ns >= size:
                return f"{_trim(ns / size)}{unit}"
        return f"{ns}ns"
    h, rest = divmod(ns, 3600 * 10**9)
    m, rest = divmod(rest, 60 * 10**9)
    secs = _trim(rest / 1e9)
    if h:
        return f"{h}h{m}m{secs}s"
    if m:
        return f"{m}m{secs}s"
    return f"{secs}s"


def _trim(value: float) -> str:
    return f"{value:.9f}".rstrip("0").rstrip(".")


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
