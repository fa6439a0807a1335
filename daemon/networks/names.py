"""How containers find each other by name in files: the /etc/hosts file of each connected
container (its own address, --add-host entries, and on the default bridge its --link
targets), the legacy --link environment, and the DNS names of an endpoint.

On user-defined networks names are answered by the embedded DNS resolver (dns.py), as
under dockerd: a container's hosts file holds only its own lines there, and nobody
rewrites a peer's file when a container comes or goes. Only a legacy link's hosts line
follows its target (rewritten in place, the file is bind-mounted).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from pathlib import Path

from daemon.containers.container import Container, paths
from daemon.containers.registry import ContainerRegistry
from daemon.networks.sandbox import Sandboxes
from network import hosts
from network.ports import split_key


def dns_names(c: Container, ep: dict) -> list[str]:
    """The names an endpoint answers to on a user network, in dockerd's order: name,
    aliases, short id, hostname."""
    names = [c.name.lstrip("/"), *(ep.get("Aliases") or []), c.id[:12], c.config.get("Hostname") or ""]
    return [n for n in dict.fromkeys(names) if n]


class NameFiles:
    def __init__(self, *, registry: ContainerRegistry, sandboxes: Sandboxes, data_root: Path,
                 host_gateway_ip: Callable[[], str]) -> None:
        self.registry = registry
        self.sandboxes = sandboxes  # a container has an address (and a hosts file to keep) while in here
        self.data_root = data_root
        self.host_gateway_ip = host_gateway_ip

    def extra_hosts(self, c: Container) -> list[tuple[str, str]]:
        """--add-host entries as (name, address), host-gateway resolved."""
        out = []
        for item in c.host_config.get("ExtraHosts") or []:
            name, _, addr = item.partition(":")
            out.append((name, self.host_gateway_ip() if addr == "host-gateway" else addr))
        return out

    def write(self, c: Container, in_place: bool = False) -> list[str]:
        """Writes c's hosts file (blocking); returns the --link environment."""
        p = paths(self.data_root, c.id)
        link_entries, env = self._links(c)
        ip = next((ep["IPAddress"] for ep in c.networks.values() if ep.get("IPAddress")), None)
        hosts.write_hosts(p["hosts"], c.config["Hostname"], c.config.get("Domainname", ""), ip,
                          self.extra_hosts(c) + link_entries, in_place=in_place)
        return env

    async def refresh_linkers(self, c: Container) -> None:
        """Rewrites the hosts files of the running containers with a legacy link to c (dockerd
        updates a parent's entry when the linked container moves)."""
        others = [o for o in self.registry if o.id != c.id and o.id in self.sandboxes and self._links_to(o, c)]

        def rewrite() -> None:
            for o in others:
                with contextlib.suppress(OSError):
                    self.write(o, in_place=True)

        if others:
            await asyncio.to_thread(rewrite)

    def link_env(self, c: Container) -> list[str]:
        return self._links(c)[1]

    def _links(self, c: Container) -> tuple[list[tuple[str, str]], list[str]]:
        """Legacy --link on the default bridge: hosts entries (alias shortid name) and the
        environment variables. On a user network a link is only a name the embedded resolver
        answers for this container (dockerd writes neither there)."""
        entries: list[tuple[str, str]] = []
        env: list[str] = []
        if c.network_mode not in ("default", "bridge"):
            return entries, env
        for link in c.host_config.get("Links") or []:
            target, _, alias = link.partition(":")
            other = self.registry.find(target.lstrip("/"))
            if other is None or other.id not in self.sandboxes:
                continue
            alias = alias.rsplit("/", 1)[-1] or other.name.lstrip("/")
            ip = next((ep["IPAddress"] for name, ep in other.networks.items()
                       if ep.get("IPAddress") and name in c.networks), "")
            if not ip:
                continue
            entries.append((f"{alias} {other.id[:12]} {other.name.lstrip('/')}", ip))
            env += _link_env(alias, c.name, ip, other)
        return entries, env

    def _links_to(self, o: Container, c: Container) -> bool:
        refs = list(o.host_config.get("Links") or [])
        refs += [link for ep in o.networks.values() for link in ep.get("Links") or []]
        return any(self.registry.find(link.partition(":")[0].lstrip("/")) is c for link in refs)


def _link_env(alias: str, me: str, ip: str, other: Container) -> list[str]:
    """dockerd's link variables: per exposed port (by number, tcp first on a tie) its URL,
    address, port and protocol, the lowest as ALIAS_PORT, _START/_END for a run of
    consecutive ports, the link's name, and the linked container's environment."""
    prefix = alias.upper().replace("-", "_")
    env: list[str] = []
    exposed = sorted((split_key(k) for k in other.config.get("ExposedPorts") or {}),
                     key=lambda pp: (pp[0], pp[1] != "tcp", pp[1]))
    start = end = exposed[0] if exposed else (0, "")
    for i, (port, proto) in enumerate(exposed):
        if i == 0:
            env.append(f"{prefix}_PORT={proto}://{ip}:{port}")
        base = f"{prefix}_PORT_{port}_{proto.upper()}"
        env += [f"{base}={proto}://{ip}:{port}", f"{base}_ADDR={ip}", f"{base}_PORT={port}", f"{base}_PROTO={proto}"]
        if i and port == end[0] + 1 and proto == end[1]:
            end = (port, proto)
            if i < len(exposed) - 1:
                continue
        if end != start:
            first = f"{prefix}_PORT_{start[0]}_{start[1].upper()}"
            env += [f"{first}_START={start[1]}://{ip}:{start[0]}", f"{first}_PORT_START={start[0]}",
                    f"{first}_END={end[1]}://{ip}:{end[0]}", f"{first}_PORT_END={end[0]}"]
        start = end = (port, proto)
    env.append(f"{prefix}_NAME={me}/{alias}")
    for e in other.config.get("Env") or []:
        k, sep, v = e.partition("=")
        if sep and k not in ("HOME", "PATH"):
            env.append(f"{prefix}_ENV_{k}={v}")
    return env
