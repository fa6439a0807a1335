"""Timestamps as Docker writes them (RFC 3339 with nanoseconds, UTC) and as filters accept them."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime

ZERO_TIME = "0001-01-01T00:00:00Z"
_FRAC = re.compile(r"^(.*T\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)$")
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ns|us|ms|s|m|h)$")
_UNITS = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}


def format_time(ns: int) -> str:
    secs, frac = divmod(ns, 1_000_000_000)
    base = datetime.fromtimestamp(secs, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{base}.{frac:09d}Z"


def now_rfc3339() -> str:
    return format_time(time.time_ns())


def parse_timestamp(value: str) -> float:
    """RFC 3339 (any fraction length) -> unix seconds."""
    if not value or value.startswith("0001-01-01"):
        return 0.0
    m = _FRAC.match(value)
    if not m:
        raise ValueError(f"invalid timestamp {value!r}")
    head, frac, tz = m.groups()
    tz = "+00:00" if tz == "Z" else tz
    dt = datetime.fromisoformat(head + tz)
    return dt.timestamp() + (float(frac) if frac else 0.0)


def parse_time_filter(value: str, now: float | None = None) -> float:
    """`--since/--until` values: unix seconds (with fraction), RFC 3339 dates, or durations (10m)."""
    now = time.time() if now is None else now
    value = value.strip()
    m = _DURATION.match(value)
    if m:
        return now - float(m.group(1)) * _UNITS[m.group(2)]
    try:
        return float(value)
    except ValueError:
        pass
    for fmt in ("%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M", "%Y-%m-%d"):
        try:
            return datetime.strptime(value, fmt).replace(tzinfo=UTC).timestamp()
        except ValueError:
            continue
    try:
        return parse_timestamp(value)
    except ValueError:
        pass
    from daemon.errors import InvalidParameter

    raise InvalidParameter(f"invalid time value {value!r}")
