"""Docker's port JSON and the typed port values of network/ports.py, both ways: a create
request's PortBindings/ExposedPorts/PublishAllPorts become Wanted mappings, and what is
published becomes NetworkSettings.Ports of `docker inspect` and the Ports of `docker ps`."""

from __future__ import annotations

from network.ports import PortSpecError, Published, Wanted, split_key


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
    """What a container asks for, in a stable order (container port, then binding order);
    with publish_all, every exposed port without a binding gets one on any free port."""
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
    """Raises PortSpecError for a malformed port key or host port."""
    for key in list((port_bindings or {}).keys()) + list((exposed or {}).keys()):
        split_key(key)
    wanted(port_bindings, exposed, False)


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


def summary_ports(exposed: dict | None, published: list[Published] | None) -> list[dict]:
    """The Ports array of GET /containers/json: what is published, then the exposed rest."""
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
