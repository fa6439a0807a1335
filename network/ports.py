"""Port values as the mechanisms use them: a wanted mapping, a published binding, the
"port/proto" notation, and the range ephemeral host ports come from.

Parsing a container's request into these values, and showing them back the way dockerd
does, is the engine's job (daemon/networks/ports.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

PROTOCOLS = ("tcp", "udp", "sctp")


class PortSpecError(ValueError):
    pass


@dataclass(frozen=True)
class Wanted:
    """One requested publication: host_lo 0 means "any free port", (lo, hi) a range."""

    proto: str
    container_port: int
    host_ip: str  # "" means the default host addresses
    host_lo: int
    host_hi: int


@dataclass(frozen=True)
class Published:
    """One host port held for a container port."""

    proto: str
    container_port: int
    host_ip: str  # "0.0.0.0", "::" or a specific address
    host_port: int


def split_key(key: str) -> tuple[int, str]:
    """"80/udp" (or "80", meaning tcp) as (port, proto)."""
    port, _, proto = key.partition("/")
    proto = (proto or "tcp").lower()
    if proto not in PROTOCOLS:
        raise PortSpecError(f"invalid proto: {proto}")
    try:
        n = int(port)
    except ValueError:
        raise PortSpecError(f"invalid containerPort: {port}") from None
    if not 0 < n < 65536:
        raise PortSpecError(f"invalid containerPort: {port}")
    return n, proto


def ephemeral_range() -> tuple[int, int]:
    """dockerd picks ephemeral host ports from the kernel's local port range."""
    try:
        lo, hi = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(lo), int(hi)
    except (OSError, ValueError):
        return 49153, 65535


def filter_match(values: list[str], keys: list[str] | set[str]) -> bool:
    """`docker ps --filter publish=|expose=`: "80", "80/udp" or "8000-8080/tcp" against the
    container's port keys ("80/tcp"); a bare number means tcp, as dockerd."""
    have = {split_key(k) for k in keys}
    for v in values:
        spec, _, proto = v.partition("/")
        proto = proto or "tcp"
        lo_s, _, hi_s = spec.partition("-")
        try:
            lo = int(lo_s)
            hi = int(hi_s) if hi_s else lo
        except ValueError:
            continue
        if any(lo <= port <= hi and p == proto for port, p in have):
            return True
    return False
