"""Published ports: from PortBindings/ExposedPorts to concrete host bindings, and back to
the shapes dockerd shows (NetworkSettings.Ports, the Ports of `docker ps`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


class PortSpecError(ValueError):
    pass


@dataclass(frozen=True)
class Wanted:
    """One requested publication: host_port 0 means "any free port", (lo, hi) a range."""

    proto: str
    container_port: int
    host_ip: str
    host_lo: int
    host_hi: int


@dataclass(frozen=True)
class Published:
    proto: str
    container_port: int
    host_ip: str  # "0.0.0.0", "::" or a specific address
    host_port: int


def split_key(key: str) -> tuple[int, str]:
    port, _, proto = key.partition("/")
    proto = (proto or "tcp").lower()
    if proto not in ("tcp", "udp", "sctp"):
        raise PortSpecError(f"invalid proto: {proto}")
    try:
        n = int(port)
    except ValueError:
        raise PortSpecError(f"invalid containerPort: {port}") from None
    if not 0 < n < 65536:
        raise PortSpecError(f"invalid containerPort: {port}")
    return n, proto


def _host_range(text: str) -> tuple[int, int]:
    if not text:
        return 0, 0
    lo_s, _, hi_s = text.partition("-")
    try:
        lo = int(lo_s)
        hi = int(hi_s) if hi_s else lo
    except ValueError:
        raise PortSpecError(f"invalid hostPort: {text}") from None
    if not (0 <= lo <= hi < 65536):
        raise PortSpecError(f"invalid hostPort: {text}")
    return lo, hi


def wanted(port_bindings: dict | None, exposed: dict | None, publish_all: bool) -> list[Wanted]:
    """What a container asks for, in a stable order (container port, then binding order)."""
    out: list[Wanted] = []
    bindings = dict(port_bindings or {})
    if publish_all:
        for key in exposed or {}:
            if not bindings.get(key):
                bindings[key] = [{"HostIp": "", "HostPort": ""}]
    for key in sorted(bindings, key=lambda k: split_key(k)):
        cport, proto = split_key(key)
        for b in bindings[key] or []:
            lo, hi = _host_range(str((b or {}).get("HostPort") or ""))
            out.append(Wanted(proto, cport, str((b or {}).get("HostIp") or ""), lo, hi))
    return out


def validate(port_bindings: dict | None, exposed: dict | None) -> None:
    for key in list((port_bindings or {}).keys()) + list((exposed or {}).keys()):
        split_key(key)
    wanted(port_bindings, exposed, False)


def ephemeral_range() -> tuple[int, int]:
    """dockerd picks ephemeral host ports from the kernel's local port range."""
    try:
        lo, hi = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(lo), int(hi)
    except (OSError, ValueError):
        return 49153, 65535


def _keys(port_bindings: dict | None, exposed: dict | None) -> list[str]:
    keys = set((exposed or {}).keys()) | set((port_bindings or {}).keys())
    return sorted(keys, key=split_key)


def settings_ports(port_bindings: dict | None, exposed: dict | None,
                   published: list[Published] | None) -> dict:
    """NetworkSettings.Ports: every exposed port, null when not published."""
    ports: dict[str, list[dict] | None] = {}
    for key in _keys(port_bindings, exposed):
        ports[key] = None
    for p in published or []:
        key = f"{p.container_port}/{p.proto}"
        entry = {"HostIp": p.host_ip, "HostPort": str(p.host_port)}
        if ports.get(key) is None:
            ports[key] = []
        ports[key].append(entry)  # type: ignore[union-attr]
    return ports


def summary_ports(port_bindings: dict | None, exposed: dict | None,
                  published: list[Published] | None) -> list[dict]:
    """The Ports array of GET /containers/json."""
    rows: list[dict] = []
    done: set[str] = set()
    for p in published or []:
        rows.append({"IP": p.host_ip, "PrivatePort": p.container_port, "PublicPort": p.host_port, "Type": p.proto})
        done.add(f"{p.container_port}/{p.proto}")
    for key in _keys(None, exposed):
        if key not in done:
            cport, proto = split_key(key)
            rows.append({"PrivatePort": cport, "Type": proto})
    return rows


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
