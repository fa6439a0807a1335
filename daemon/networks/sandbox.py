"""The sandboxes of running containers: each one's network namespace, the interfaces it
has on which networks, and the host ports published into it.

One table, handed by the composition root to both sides of networking: the container side
(daemon/networks/endpoints.py) fills it as containers connect and leave; the network side
(daemon/networks/service.py) reads it to know which networks have active endpoints and
which port rules the firewall needs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from network import proxy
from network.firewall import PortRule
from network.ports import Published


@dataclass
class Sandbox:
    """A running container's network namespace and what hangs off it."""

    path: Path
    interfaces: dict[str, str] = field(default_factory=dict)  # network id -> ethN
    published: list[Published] = field(default_factory=list)
    bindings: list[proxy.Binding] = field(default_factory=list)
    port_ip: str = ""  # the address published ports lead to: the gateway endpoint's
    gateway: str = ""  # id of the network giving the default route and carrying the ports
    # The inside of a namespace made ahead, still being configured while the container's
    # monitor starts (daemon/networks/endpoints.py: setup, ready); None once nothing is left.
    pending: asyncio.Future | None = None

    def next_ifname(self) -> str:
        used = set(self.interfaces.values())
        i = 0
        while f"eth{i}" in used:
            i += 1
        return f"eth{i}"


class Sandboxes:
    """Container id -> Sandbox, for the containers whose network is set up."""

    def __init__(self) -> None:
        self._by_container: dict[str, Sandbox] = {}

    def get(self, cid: str) -> Sandbox | None:
        return self._by_container.get(cid)

    def add(self, cid: str, sb: Sandbox) -> None:
        self._by_container[cid] = sb

    def pop(self, cid: str) -> Sandbox | None:
        return self._by_container.pop(cid, None)

    def __contains__(self, cid: object) -> bool:
        return cid in self._by_container

    def __iter__(self) -> Iterator[Sandbox]:
        return iter(list(self._by_container.values()))

    def on_network(self, network_id: str) -> set[str]:
        """Ids of the containers with an interface on that network."""
        return {cid for cid, sb in self._by_container.items() if network_id in sb.interfaces}

    def port_rules(self) -> list[PortRule]:
        """The DNAT rules for what is published: IPv4 tcp/udp only ([::] and sctp have none)."""
        return [PortRule(p.proto, p.host_ip, p.host_port, sb.port_ip, p.container_port)
                for sb in self._by_container.values() for p in sb.published
                if ":" not in p.host_ip and p.proto in ("tcp", "udp") and sb.port_ip]
