"""A container's healthcheck configuration, as dockerd reads it: Config.Healthcheck checked at
create and merged with the image's, a `HEALTHCHECK` line (import/commit changes) parsed, and
the probe command and schedule (``ProbeConfig``) that daemon/containers/health.py runs.
Go's duration syntax both ways: durations are nanoseconds in the API, Go strings in messages."""

from __future__ import annotations

import contextlib
import json
import re
from dataclasses import dataclass
from typing import Any

from daemon.errors import InvalidParameter

# dockerd's defaults (daemon/health.go), in seconds.
DEFAULT_INTERVAL = 30.0
DEFAULT_TIMEOUT = 30.0
DEFAULT_START_PERIOD = 0.0
DEFAULT_START_INTERVAL = 5.0
DEFAULT_RETRIES = 3
_MIN_DURATION_NS = 1_000_000  # container.MinimumDuration: 1ms
_INT64_MAX = 2**63 - 1
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
