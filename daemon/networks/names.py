"""How containers find each other by name: the /etc/hosts file of each connected
container (its own address, --add-host entries, --link targets, and its peers on
user-defined networks), the legacy --link environment, and the DNS names of an endpoint.

Name resolution on user-defined networks uses /etc/hosts files kept up to date rather than
an embedded DNS server: dockerd's 127.0.0.11 resolver needs a socket and NAT rules inside
every container's namespace, which a threaded daemon cannot create itself (no setns), and
a resolver is one more thing to keep alive. A hosts file is read by every libc and by
busybox, costs nothing at lookup time, and is rewritten (in place, it is bind-mounted)
whenever a container joins or leaves a network it shares.
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
                          self.extra_hosts(c) + link_entries, peers=self._peers(c), in_place=in_place)
        return env

    async def refresh_peers(self, c: Container, left: set[str] | None = None) -> None:
        """Rewrites the hosts files that name c: its peers on user networks (and on the
        networks `left`, which it has just left), and containers linked to it (dockerd
        updates a parent's entry when the linked container moves)."""
        nets = {name for name in c.networks if name != "bridge"} | (left or set())
        others = [o for o in self.registry
                  if o.id != c.id and o.id in self.sandboxes and (nets & set(o.networks) or self._links_to(o, c))]

        def rewrite() -> None:
            for o in others:
                with contextlib.suppress(OSError):
                    self.write(o, in_place=True)

        if others:
            await asyncio.to_thread(rewrite)

    def _peers(self, c: Container) -> list[tuple[str, str]]:
        """(address, names) of c itself and of the running containers sharing a user-defined
        network with it: dockerd's resolver answers all of them there."""
        out, seen = [], set()
        for name, ep in c.networks.items():
            if name == "bridge" or not ep.get("IPAddress"):
                continue
            out.append((ep["IPAddress"], " ".join(ep.get("DNSNames") or dns_names(c, ep))))
            for other in self.registry:
                if other.id == c.id or other.id in seen or other.id not in self.sandboxes:
                    continue
                oep = other.networks.get(name)
                if oep and oep.get("IPAddress"):
                    seen.add(other.id)
                    out.append((oep["IPAddress"], " ".join(oep.get("DNSNames") or dns_names(other, oep))))
        return out

    def _links(self, c: Container) -> tuple[list[tuple[str, str]], list[str]]:
        """--link: hosts entries (alias shortid name) and the legacy environment variables."""
        entries: list[tuple[str, str]] = []
        env: list[str] = []
        # Only the default bridge has legacy links; on a user network a link is just a name
        # (dockerd adds no environment there).
        legacy = c.network_mode in ("default", "bridge")
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
            if legacy:
                env += _link_env(alias, c.name, ip, other)
        # `network connect --link` (and links in EndpointsConfig): on a user network a link is
        # only a name for the other container, visible to this one, without the legacy env.
        for name, ep in c.networks.items():
            for link in ep.get("Links") or []:
                target, _, alias = link.partition(":")
                other = self.registry.find(target.lstrip("/"))
                oep = other.networks.get(name) if other is not None and other.id in self.sandboxes else None
                if other is not None and oep and oep.get("IPAddress"):
                    entries.append((alias.rsplit("/", 1)[-1] or other.name.lstrip("/"), oep["IPAddress"]))
        return entries, env

    def _links_to(self, o: Container, c: Container) -> bool:
        refs = list(o.host_config.get("Links") or [])
        refs += [link for ep in o.networks.values() for link in ep.get("Links") or []]
        return any(self.registry.find(link.partition(":")[0].lstrip("/")) is c for link in refs)


def _link_env(alias: str, me: str, ip: str, other: Container) -> list[str]:
    prefix = alias.upper().replace("-", "_").replace(".", "_")
    env = [f"{prefix}_NAME={me}/{alias}"]
    exposed = sorted((other.config.get("ExposedPorts") or {}), key=split_key)
    for i, key in enumerate(exposed):
        port, proto = split_key(key)
        base = f"{prefix}_PORT_{port}_{proto.upper()}"
        if i == 0:
            env.append(f"{prefix}_PORT={proto}://{ip}:{port}")
        env += [f"{base}={proto}://{ip}:{port}", f"{base}_ADDR={ip}", f"{base}_PORT={port}", f"{base}_PROTO={proto}"]
    skip = {"HOME", "PATH", "HOSTNAME"}
    for e in other.config.get("Env") or []:
        k, _, v = e.partition("=")
        if k not in skip:
            env.append(f"{prefix}_ENV_{k}={v}")
    return env
