"""What the embedded DNS resolver answers (network/dns.py serves it): the names of the
containers on user-defined networks, as one asking container sees them.

dockerd's rules: a container resolves the names of the endpoints on the networks it is on
itself (never the default bridge, which has no names), each endpoint under its DNS names
(container name, aliases — compose's service name among them —, short id, hostname) and
under NAME.NETWORK; a name that several endpoints share (a scaled service) gives all their
addresses; the asker's links are names of its own for their targets; an address of a peer
gives back NAME.NETWORK (PTR).

The tables are built from the registry when first asked after a change, so a query costs
a few dictionary look-ups whatever the number of containers; the sandbox service says when
endpoints change (invalidate).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from daemon.containers.container import Container, paths
from daemon.containers.registry import ContainerRegistry
from daemon.errors import DaemonError
from daemon.networks.names import dns_names
from daemon.networks.network import Network
from daemon.networks.sandbox import Sandboxes
from network import hosts
from network.dnsnames import Addresses, LazyResolver

if TYPE_CHECKING:
    from network.dns import Resolver

DEFAULT_BRIDGE = "bridge"

log = logging.getLogger("pydockerd.dns")


def user_networks(c: Container) -> list[str]:
    """The networks c has an address on that give it names (every one but the default bridge)."""
    return [name for name, ep in c.networks.items() if name != DEFAULT_BRIDGE and ep.get("IPAddress")]


class ContainerNames:
    def __init__(self, *, registry: ContainerRegistry, sandboxes: Sandboxes,
                 network: Callable[[str], Network | None]) -> None:
        self.registry = registry
        self.sandboxes = sandboxes  # a container has addresses while in here
        self.network = network
        self._names: dict[str, dict[str, list[tuple[str, str]]]] | None = None  # net -> name -> [(v4, v6)]
        self._reverse: dict[str, dict[str, str]] = {}  # net -> address -> NAME.NET

    def invalidate(self) -> None:
        self._names = None

    def _tables(self) -> dict[str, dict[str, list[tuple[str, str]]]]:
        if self._names is not None:
            return self._names
        names: dict[str, dict[str, list[tuple[str, str]]]] = {}
        reverse: dict[str, dict[str, str]] = {}
        for o in self.registry:
            if o.id not in self.sandboxes:
                continue
            for net in user_networks(o):
                ep = o.networks[net]
                entry = (ep["IPAddress"], ep.get("GlobalIPv6Address") or "")
                table = names.setdefault(net, {})
                for name in ep.get("DNSNames") or dns_names(o, ep):
                    found = table.setdefault(name.lower(), [])
                    if entry not in found:
                        found.append(entry)
                full = f"{o.name.lstrip('/')}.{net}"
                for address in entry:
                    if address:
                        reverse.setdefault(net, {})[address] = full
        self._names, self._reverse = names, reverse
        return names

    def addresses(self, owner: str, name: str) -> Addresses | None:
        c = self.registry.find(owner)
        if c is None or owner not in self.sandboxes:
            return None
        nets = user_networks(c)
        if not nets:
            return None
        tables = self._tables()
        name = self._link_target(c, name)
        # dockerd's order for a.b.c: a.b.c on every network, then a.b on network c, then a on b.c.
        for net in nets:
            found = tables.get(net, {}).get(name)
            if found:
                return _split(found)
        labels = name.split(".")
        for i in range(len(labels) - 1, 0, -1):
            prefix, suffix = ".".join(labels[:i]), ".".join(labels[i:])
            for net in nets:
                if net.lower() == suffix:
                    found = tables.get(net, {}).get(self._link_target(c, prefix))
                    if found:
                        return _split(found)
        return None

    def hostname(self, owner: str, address: str) -> str | None:
        c = self.registry.find(owner)
        if c is None or owner not in self.sandboxes:
            return None
        self._tables()
        for net in user_networks(c):
            found = self._reverse.get(net, {}).get(address)
            if found:
                return found
        return None

    def may_forward(self, owner: str) -> bool:
        c = self.registry.find(owner)
        if c is None:
            return False
        for name, ep in c.networks.items():
            n = self.network(name)
            if n is not None and not n.internal and ep.get("IPAddress"):
                return True
        return False

    def _link_target(self, c: Container, name: str) -> str:
        """A link's alias is, for the container that has the link only, the name of its target."""
        links = list(c.host_config.get("Links") or [])
        for ep in c.networks.values():
            links += ep.get("Links") or []
        for link in links:
            target, _, alias = link.partition(":")
            alias = alias.rsplit("/", 1)[-1] or target.lstrip("/")
            if alias.lower() == name:
                try:
                    other = self.registry.find(target.lstrip("/"))
                except DaemonError:  # an id prefix that became ambiguous
                    continue
                if other is not None:
                    return other.name.lstrip("/").lower()
        return name


def _split(found: list[tuple[str, str]]) -> Addresses:
    return Addresses(v4=[a for a, _ in found if a], v6=[b for _, b in found if b])


class EmbeddedDns:
    """When a container's resolver listens and where it forwards: it listens while the
    container runs with a user network, and forwards to the servers its resolv.conf names."""

    def __init__(self, *, names: ContainerNames, resolver: Resolver | LazyResolver,
                 network: Callable[[str], Network | None], data_root: Path) -> None:
        self.names = names
        self.resolver = resolver
        self.network = network
        self.data_root = data_root

    def wanted(self, c: Container) -> bool:
        """A container with a network namespace of its own and a user-defined bridge network
        (dockerd gives the default bridge no resolver)."""
        mode = c.network_mode
        if mode in ("host", "none") or mode.startswith("container:"):
            return False
        for name in c.networks:
            n = self.network(name)
            if name != DEFAULT_BRIDGE and n is not None and n.driver == "bridge":
                return True
        return False

    def changed(self) -> None:
        """Endpoints came, went or were renamed: answers are rebuilt at the next query."""
        self.names.invalidate()
        self.resolver.forget_answers()

    async def start(self, c: Container, netns_path: Path, joined: bool = False) -> None:
        """Starts c's resolver unless it runs; a container that took 127.0.0.11:53 itself keeps
        it (logged), as under dockerd it would lose its own server instead. `joined`: c has
        just been connected to a network; if it ran without a resolver until now, its
        resolv.conf is rebuilt to point at it."""
        if not self.wanted(c) or self.resolver.serving(c.id):
            return
        resolv = paths(self.data_root, c.id)["resolv"]
        upstreams = hosts.ext_servers(resolv)
        rebuilt = None
        if upstreams is None and joined:
            rebuilt, upstreams = await asyncio.to_thread(hosts.rebuilt_for_internal_resolver, resolv)
        if upstreams is None:  # rewritten by the user: the servers it would have had
            upstreams = hosts.internal_resolv_conf(dns=c.host_config.get("Dns"))[1]
        try:
            await self.resolver.attach(c.id, netns_path, upstreams)
        except OSError as e:
            log.warning("container %s: the embedded DNS server cannot listen on 127.0.0.11:53 (%s); "
                        "names are not answered for it", c.id[:12], e.strerror or e)
            return
        if rebuilt is not None:
            try:
                await asyncio.to_thread(hosts.rewrite, resolv, rebuilt)
            except OSError as e:
                log.warning("container %s: cannot point its resolv.conf at the embedded DNS server: %s",
                            c.id[:12], e)

    async def stop(self, c: Container) -> None:
        await self.resolver.detach(c.id)

    async def close(self) -> None:
        await self.resolver.close()
