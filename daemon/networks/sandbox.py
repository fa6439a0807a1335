"""A running container's side of networking: its sandbox (netns), endpoints, published
ports and hosts file.

Mixed into NetworkService (daemon/networks.py), which owns the networks, IPAM allocators
and firewall model these methods use; kept apart so that each file has one job: that one
manages networks, this one connects containers to them.

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
import json
import logging
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from daemon.containers.container import Container, paths
from daemon.containers.registry import ContainerRegistry
from daemon.errors import DaemonError, Forbidden, NotFound
from network import hosts, ipam, links, netns, ports, proxy

if TYPE_CHECKING:
    from daemon.networks.service import Network

log = logging.getLogger("pydockerd.networks")

@dataclass
class Sandbox:
    """A running container's network namespace and what hangs off it."""

    path: Path
    interfaces: dict[str, str] = field(default_factory=dict)  # network id -> ethN
    published: list[ports.Published] = field(default_factory=list)
    bindings: list[proxy.Binding] = field(default_factory=list)
    port_ip: str = ""  # the address published ports lead to: the gateway endpoint's
    gateway: str = ""  # id of the network giving the default route and carrying the ports


HOST_BINDING_OPT = "com.docker.network.bridge.host_binding_ipv4"


_RUNTIME_FIELDS = {"EndpointID": "", "Gateway": "", "IPAddress": "", "IPPrefixLen": 0, "DNSNames": None,
                   "IPv6Gateway": "", "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0, "_IfName": ""}


class EndpointsMixin:
    """Container-side networking; see NetworkService for the attributes used."""

    sandboxes: dict[str, Sandbox]
    registry: ContainerRegistry

    # -- start / exit ------------------------------------------------------------------------
    def _has_own_netns(self, c: Container) -> bool:
        return c.network_mode not in ("host", "none") and not c.network_mode.startswith("container:")

    def netns_path(self, c: Container) -> str | None:
        sb = self.sandboxes.get(c.id)
        return str(sb.path) if sb else None

    async def setup(self, c: Container) -> tuple[str | None, list[str]]:
        """Connects a starting container: netns, veths, addresses, routes, ports, hosts.
        Returns (netns path for the runtime or None, extra environment for --link).
        All or nothing: on failure everything made here is undone."""
        if c.network_mode == "none":
            return await self._isolated(c), []
        if not self._has_own_netns(c):
            return None, []
        await self.teardown(c)  # a stale sandbox from an interrupted stop
        started = time.perf_counter()
        sb = Sandbox(self.netns_dir / c.id[:12])
        self.sandboxes[c.id] = sb
        try:
            await netns.create(sb.path)
            commands = ["link set lo up"]
            for i, name in enumerate(list(c.networks)):
                n = self._by_name(name)
                if n is None:
                    raise NotFound(f"network {name} not found")
                ifname = f"eth{i}"
                ep = await self._plug(c, sb, n, ifname)
                commands += self._addr_commands(n, ep, ifname)
            ways_out = self._ways_out(c)
            commands += _route_commands(ways_out)
            v6 = any(ep.get("GlobalIPv6Address") for ep in c.networks.values())
            await netns.configure(sb.path, commands, disable_ipv6=not v6)
            if ways_out:
                await self._publish(c, sb, *ways_out[0])
            env = await asyncio.to_thread(self._write_hosts, c)
            await self._refresh_peers(c)
        except BaseException as e:
            await self.teardown(c)
            if isinstance(e, DaemonError):
                raise
            if isinstance(e, (OSError, netns.NetnsError, RuntimeError)) or type(e).__name__ == "NetlinkError":
                raise DaemonError(f"failed to set up the network of container {c.id[:12]}: {e}") from e
            raise
        for name in c.networks:
            n = self._by_name(name)
            if n is not None:
                self.events.publish("network", "connect", n.id, {"container": c.id, "name": n.name, "type": n.driver})
        log.debug("network setup of %s: %.1f ms", c.id[:12], (time.perf_counter() - started) * 1000)
        return str(sb.path), env

    @staticmethod
    def _addr_commands(n: Network, ep: dict, ifname: str) -> list[str]:
        # brd +: the broadcast address dockerd's interfaces show (`brd 10.x.y.255`).
        cmds = [f"addr add {ep['IPAddress']}/{n.prefixlen} brd + dev {ifname}"]
        if ep.get("GlobalIPv6Address"):
            # nodad: the address is this endpoint's alone and must work at once.
            cmds.append(f"addr add {ep['GlobalIPv6Address']}/{n.prefixlen6} dev {ifname} nodad")
        return cmds + [f"link set {ifname} up"]

    async def _isolated(self, c: Container) -> str:
        """--net=none: a namespace with only `lo`, IPv6 off, as dockerd gives (the runtime's
        own fresh netns would keep ::1)."""
        await self.teardown(c)
        sb = Sandbox(self.netns_dir / c.id[:12])
        self.sandboxes[c.id] = sb
        try:
            await netns.create(sb.path)
            await netns.configure(sb.path, ["link set lo up"], disable_ipv6=True)
        except BaseException as e:
            await self.teardown(c)
            if isinstance(e, netns.NetnsError):
                raise DaemonError(f"failed to set up the network of container {c.id[:12]}: {e}") from e
            raise
        return str(sb.path)

    async def _plug(self, c: Container, sb: Sandbox, n: Network, ifname: str) -> dict:
        """One endpoint: an address from IPAM and a veth into the sandbox."""
        ep = c.networks[n.name]
        alloc = self.allocators[n.id]
        static = (ep.get("IPAMConfig") or {}).get("IPv4Address") or ""
        try:
            if static:
                alloc.reserve(static)
                ip = static
            else:
                ip = alloc.allocate()
        except ValueError as e:
            raise DaemonError(str(e)) from None
        ip6 = ""
        if n.id in self.allocators6:
            static6 = (ep.get("IPAMConfig") or {}).get("IPv6Address") or ""
            try:
                if static6:
                    self.allocators6[n.id].reserve(static6)
                    ip6 = static6
                else:
                    ip6 = self.allocators6[n.id].allocate()
            except ValueError as e:
                alloc.release(ip)
                raise DaemonError(str(e)) from None
            ep.update(GlobalIPv6Address=ip6, GlobalIPv6PrefixLen=n.prefixlen6, IPv6Gateway=n.gateway6)
        sb.interfaces[n.id] = ifname
        endpoint_id = secrets.token_hex(32)
        mac = ep.get("_UserMac") or ipam.mac_for(ip)
        # The interface name is kept with the endpoint (persisted): after a daemon restart
        # it cannot be guessed from the order of the networks.
        ep.update(NetworkID=n.id, EndpointID=endpoint_id, Gateway=n.gateway, IPAddress=ip,
                  IPPrefixLen=n.prefixlen, MacAddress=mac, _IfName=ifname,
                  DNSNames=None if n.name == "bridge" else dns_names(c, ep))
        await links.add_veth(_host_if(endpoint_id), n.bridge, sb.path, ifname, mac, n.mtu, c.id)
        return ep

    def _ways_out(self, c: Container) -> list[tuple[Network, dict]]:
        """Connected endpoints that can be the gateway one, best first: dockerd orders them by
        GwPriority (higher first), then by network name; an internal network never is one."""
        found = []
        for name, ep in c.networks.items():
            n = self._by_name(name)
            if n is not None and n.driver == "bridge" and not n.internal and ep.get("IPAddress"):
                found.append((n, ep))
        found.sort(key=lambda t: (-int(t[1].get("GwPriority") or 0), t[0].name))
        return found

    async def _follow_gateway(self, c: Container, sb: Sandbox, routes: bool = False) -> None:
        """After a connect or disconnect: the default route and the published ports move to
        the best remaining gateway endpoint, as dockerd moves them (a disconnected address can
        be handed to another container, which must not receive this one's traffic)."""
        ways_out = self._ways_out(c)
        best = ways_out[0] if ways_out else None
        if (best[0].id if best else "") != sb.gateway:
            await self._move_ports(c, sb, best)
            routes = True
        if routes and ways_out:
            await netns.configure(sb.path, _route_commands(ways_out))

    async def _move_ports(self, c: Container, sb: Sandbox, best: tuple[Network, dict] | None) -> None:
        if best is None:
            await self._unpublish(c, sb)
            sb.gateway = sb.port_ip = ""
            return
        n, ep = best
        if not sb.published:
            await self._publish(c, sb, n, ep)
            return
        sb.gateway, sb.port_ip = n.id, ep["IPAddress"]
        for b, p in zip(sb.bindings, sb.published, strict=True):
            if b.target[0]:
                proxy.retarget(b, sb.port_ip, p.container_port)
        await self._sync_firewall()
        await self._save_ports(sb)

    async def _publish(self, c: Container, sb: Sandbox, n: Network, ep: dict) -> None:
        """Publishes the container's ports on its gateway endpoint `ep` (all or nothing)."""
        sb.gateway, sb.port_ip = n.id, ep["IPAddress"]
        hc = c.host_config
        want = ports.wanted(hc.get("PortBindings"), c.config.get("ExposedPorts"), bool(hc.get("PublishAllPorts")))
        if not want:
            return
        default_ips = ["0.0.0.0", "::"] if self.ipv6 else ["0.0.0.0"]
        bind_ip = n.options.get(HOST_BINDING_OPT, "")
        if bind_ip and bind_ip != "0.0.0.0":
            # A network's own default host address (dockerd: no [::] then, unless it is IPv6).
            default_ips = [bind_ip]
        try:
            for w in want:
                host_ips = [w.host_ip] if w.host_ip else default_ips
                port = self._pick_port(c, sb, w, host_ips, ep.get("EndpointID", ""))
                for hip in host_ips:
                    sb.published.append(ports.Published(w.proto, w.container_port, hip, port))
            for b, p in zip(sb.bindings, sb.published, strict=True):
                if ":" in p.host_ip or not self.nft_ok:
                    await proxy.start_proxy(b, sb.port_ip, p.container_port)
            await self._sync_firewall()
            await self._save_ports(sb)
        except BaseException:
            await self._unpublish(c, sb)
            raise

    async def _unpublish(self, c: Container, sb: Sandbox) -> None:
        for b in sb.bindings:
            b.close()
        had = bool(sb.published)
        sb.bindings.clear()
        sb.published.clear()
        for key, owner in list(self._taken_ports.items()):
            if owner == c.id:
                del self._taken_ports[key]
        if had:
            with contextlib.suppress(DaemonError):
                await self._sync_firewall()
            await self._save_ports(sb)

    async def _save_ports(self, sb: Sandbox) -> None:
        """What is published survives a daemon restart in a file beside the netns."""
        path = sb.path.with_suffix(".ports")
        if sb.published:
            await asyncio.to_thread(path.write_text, json.dumps([p.__dict__ for p in sb.published]))
        else:
            with contextlib.suppress(OSError):
                await asyncio.to_thread(path.unlink)

    def _pick_port(self, c: Container, sb: Sandbox, w: ports.Wanted, host_ips: list[str], ep_id: str) -> int:
        name = c.name.lstrip("/")

        def fail(msg: str) -> DaemonError:
            return DaemonError(f"driver failed programming external connectivity on endpoint {name} ({ep_id}): {msg}")

        if w.host_lo:
            candidates = range(w.host_lo, w.host_hi + 1)
        else:
            lo, hi = ports.ephemeral_range()
            candidates = range(lo, hi + 1)
        last_err = ""
        for port in candidates:
            taken = next((hip for hip in host_ips if self._port_taken(w.proto, hip, port)), None)
            if taken is not None:
                last_err = f"Bind for {taken}:{port} failed: port is already allocated"
                continue
            held = []
            try:
                for hip in host_ips:
                    held.append(proxy.reserve(w.proto, hip, port))
            except proxy.PortInUse as e:
                for b in held:
                    b.close()
                last_err = f"Error starting userland proxy: {e}"
                continue
            except OSError as e:
                for b in held:
                    b.close()
                raise fail(f"Error starting userland proxy: {e}") from None
            sb.bindings.extend(held)
            for hip in host_ips:
                self._taken_ports[(w.proto, hip, port)] = c.id
            return port
        if not w.host_lo:
            raise fail("no free host port in the ephemeral range")
        raise fail(last_err)

    def _port_taken(self, proto: str, host_ip: str, port: int) -> bool:
        """Whether one of our containers holds the port on an overlapping address: the same
        port on two different host addresses is fine, as with dockerd."""
        return any(p == proto and hp == port and _addresses_overlap(ip, host_ip)
                   for p, ip, hp in self._taken_ports)

    async def teardown(self, c: Container) -> None:
        """Undoes setup (idempotent, never raises for what is already gone)."""
        sb = self.sandboxes.pop(c.id, None)
        if sb is None:
            path = self.netns_dir / c.id[:12]
            if path.exists():
                sb = Sandbox(path)
        if sb is not None:
            await self._unpublish(c, sb)
        for name, ep in c.networks.items():
            n = self._by_name(name)
            if ep.get("EndpointID"):
                with contextlib.suppress(Exception):
                    await links.delete(_host_if(ep["EndpointID"]))
                if n is not None:
                    self.events.publish("network", "disconnect", n.id,
                                        {"container": c.id, "name": n.name, "type": n.driver})
            if n is not None and n.id in self.allocators and ep.get("IPAddress"):
                self.allocators[n.id].release(ep["IPAddress"])
            if n is not None and n.id in self.allocators6 and ep.get("GlobalIPv6Address"):
                self.allocators6[n.id].release(ep["GlobalIPv6Address"])
            ep.update(_RUNTIME_FIELDS)
            if not ep.get("_UserMac"):
                ep["MacAddress"] = ""
        if sb is not None:
            with contextlib.suppress(OSError, netns.NetnsError):
                netns.remove(sb.path)
            with contextlib.suppress(OSError):
                sb.path.with_suffix(".ports").unlink()
            await self._refresh_peers(c)

    # -- connect / disconnect ----------------------------------------------------------------
    async def connect(self, ref: str, body: dict) -> None:
        n = self.get(ref)
        body = body or {}
        c = self.registry.get(body.get("Container") or "")
        if n.driver != "bridge":
            if n.name == c.network_mode:
                raise Forbidden(f"container {c.name.lstrip('/')} is already connected to network {n.name}")
            raise Forbidden(f"container cannot be disconnected from host network or connected to {n.name} network")
        if not self._has_own_netns(c):
            raise Forbidden("container sharing network namespace with another container or host cannot be "
                            "connected to any other network")
        if n.name in c.networks:
            raise Forbidden(f"endpoint with name {c.name.lstrip('/')} already exists in network {n.name}")
        ep = self._endpoint_config(n, body.get("EndpointConfig") or {})
        async with c.lock:
            c.networks[n.name] = ep
            sb = self.sandboxes.get(c.id)
            if c.running and sb is not None:
                ifname = _next_ifname(sb)
                try:
                    await self._plug(c, sb, n, ifname)
                    await netns.configure(sb.path, self._addr_commands(n, ep, ifname),
                                          enable_ipv6_on=(ifname,) if ep.get("GlobalIPv6Address") else ())
                    await self._follow_gateway(c, sb)
                except BaseException as e:
                    await self._unplug(c, n)
                    del c.networks[n.name]
                    with contextlib.suppress(Exception):
                        await self._follow_gateway(c, sb, routes=True)
                    if isinstance(e, DaemonError):
                        raise
                    raise DaemonError(f"failed to connect {c.id[:12]} to {n.name}: {e}") from e
                await asyncio.to_thread(self._write_hosts, c, True)
                await self._refresh_peers(c)
            await self.registry.persist(c)
        self.events.publish("network", "connect", n.id, {"container": c.id, "name": n.name, "type": n.driver})

    async def disconnect(self, ref: str, body: dict) -> None:
        n = self.get(ref)
        body = body or {}
        c = self.registry.find(body.get("Container") or "")
        if c is None:
            if body.get("Force"):
                # dockerd then looks for a stale endpoint of that name, and finds none here.
                raise NotFound(f"endpoint {body.get('Container')} not found")
            raise NotFound(f"No such container: {body.get('Container')}")
        if n.driver != "bridge":
            raise Forbidden(f"container cannot be disconnected from host network or connected to {n.name} network")
        if n.name not in c.networks:
            raise Forbidden(f"container {c.id} is not connected to network {n.name}")
        async with c.lock:
            if c.running:
                await self._unplug(c, n)
            del c.networks[n.name]
            sb = self.sandboxes.get(c.id)
            if c.running and sb is not None:
                await self._follow_gateway(c, sb)
            if c.running:
                await asyncio.to_thread(self._write_hosts, c, True)
                await self._refresh_peers(c, extra=[n])
            await self.registry.persist(c)
        self.events.publish("network", "disconnect", n.id, {"container": c.id, "name": n.name, "type": n.driver})

    async def _unplug(self, c: Container, n: Network) -> None:
        ep = c.networks.get(n.name) or {}
        if ep.get("EndpointID"):
            await links.delete(_host_if(ep["EndpointID"]))
        if ep.get("IPAddress"):
            self.allocators[n.id].release(ep["IPAddress"])
        if ep.get("GlobalIPv6Address") and n.id in self.allocators6:
            self.allocators6[n.id].release(ep["GlobalIPv6Address"])
        sb = self.sandboxes.get(c.id)
        if sb is not None:
            sb.interfaces.pop(n.id, None)

    # -- hosts files -------------------------------------------------------------------------
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
                if oep and oep.get("IPAddress"):
                    entries.append((alias.rsplit("/", 1)[-1] or other.name.lstrip("/"), oep["IPAddress"]))
        return entries, env

    def host_gateway_ip(self) -> str:
        """What `--add-host NAME:host-gateway` means: the default bridge's address, as dockerd."""
        n = self._by_name("bridge")
        return n.gateway if n is not None else ""

    def extra_hosts(self, c: Container) -> list[tuple[str, str]]:
        """--add-host entries as (name, address), host-gateway resolved."""
        out = []
        for item in c.host_config.get("ExtraHosts") or []:
            name, _, addr = item.partition(":")
            out.append((name, self.host_gateway_ip() if addr == "host-gateway" else addr))
        return out

    def _write_hosts(self, c: Container, in_place: bool = False) -> list[str]:
        p = paths(self.data_root, c.id)
        link_entries, env = self._links(c)
        ip = next((ep["IPAddress"] for ep in c.networks.values() if ep.get("IPAddress")), None)
        hosts.write_hosts(p["hosts"], c.config["Hostname"], c.config.get("Domainname", ""), ip,
                          self.extra_hosts(c) + link_entries, peers=self._peers(c), in_place=in_place)
        return env

    def _links_to(self, o: Container, c: Container) -> bool:
        refs = list(o.host_config.get("Links") or [])
        refs += [link for ep in o.networks.values() for link in ep.get("Links") or []]
        return any(self.registry.find(link.partition(":")[0].lstrip("/")) is c for link in refs)

    async def _refresh_peers(self, c: Container, extra: list[Network] | None = None) -> None:
        """Rewrites the hosts files that name c: its peers on user networks, and containers
        linked to it (dockerd updates a parent's entry when the linked container moves)."""
        nets = {name for name in c.networks if name != "bridge"} | {n.name for n in extra or []}
        others = [o for o in self.registry
                  if o.id != c.id and o.id in self.sandboxes and (nets & set(o.networks) or self._links_to(o, c))]

        def rewrite() -> None:
            for o in others:
                with contextlib.suppress(OSError):
                    self._write_hosts(o, in_place=True)

        if others:
            await asyncio.to_thread(rewrite)

    async def renamed(self, c: Container, old_name: str) -> None:
        """A container's new name replaces the old one in its DNS names and in the hosts files
        of the containers that resolve it."""
        old = old_name.lstrip("/")
        for name, ep in c.networks.items():
            if name != "bridge" and ep.get("DNSNames"):
                ep["DNSNames"] = list(dict.fromkeys(c.name.lstrip("/") if x == old else x for x in ep["DNSNames"]))
        await self.registry.persist(c)
        if c.id in self.sandboxes:
            await asyncio.to_thread(self._write_hosts, c, True)
            await self._refresh_peers(c)


def dns_names(c: Container, ep: dict) -> list[str]:
    """The names an endpoint answers to on a user network, in dockerd's order: name,
    aliases, short id, hostname."""
    names = [c.name.lstrip("/"), *(ep.get("Aliases") or []), c.id[:12], c.config.get("Hostname") or ""]
    return [n for n in dict.fromkeys(names) if n]


def _addresses_overlap(a: str, b: str) -> bool:
    """Two host addresses one port cannot be held on at once: equal, or one is the wildcard
    of the other's family ([::] is IPv6-only here, as docker-proxy binds it)."""
    if a == b:
        return True
    v6a, v6b = ":" in a, ":" in b
    return v6a == v6b and ((a in ("0.0.0.0", "::")) or (b in ("0.0.0.0", "::")))


def _route_commands(ways_out: list[tuple[Network, dict]]) -> list[str]:
    """The default routes through the gateway endpoint (per family: the first with IPv6)."""
    cmds = []
    if ways_out:
        n, ep = ways_out[0]
        cmds.append(f"route replace default via {n.gateway} dev {ep['_IfName']}")
    v6 = next(((n, ep) for n, ep in ways_out if ep.get("GlobalIPv6Address")), None)
    if v6 is not None:
        cmds.append(f"route replace default via {v6[0].gateway6} dev {v6[1]['_IfName']}")
    return cmds


def _host_if(endpoint_id: str) -> str:
    return "veth" + endpoint_id[:7]

def _next_ifname(sb: Sandbox) -> str:
    used = set(sb.interfaces.values())
    i = 0
    while f"eth{i}" in used:
        i += 1
    return f"eth{i}"

def _link_env(alias: str, me: str, ip: str, other: Container) -> list[str]:
    prefix = alias.upper().replace("-", "_").replace(".", "_")
    env = [f"{prefix}_NAME={me}/{alias}"]
    exposed = sorted((other.config.get("ExposedPorts") or {}), key=ports.split_key)
    for i, key in enumerate(exposed):
        port, proto = ports.split_key(key)
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

