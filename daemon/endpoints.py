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
from typing import TYPE_CHECKING, Any

from daemon.container import Container, paths
from daemon.errors import DaemonError, Forbidden, NotFound
from network import hosts, ipam, links, netns, ports, proxy

if TYPE_CHECKING:
    from daemon.networks import Network

log = logging.getLogger("pydockerd.networks")

@dataclass
class Sandbox:
    """A running container's network namespace and what hangs off it."""

    path: Path
    interfaces: dict[str, str] = field(default_factory=dict)  # network id -> ethN
    published: list[ports.Published] = field(default_factory=list)
    bindings: list[proxy.Binding] = field(default_factory=list)
    port_ip: str = ""  # the address published ports lead to


_RUNTIME_FIELDS = {"EndpointID": "", "Gateway": "", "IPAddress": "", "IPPrefixLen": 0, "DNSNames": None,
                   "IPv6Gateway": "", "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0}


class EndpointsMixin:
    """Container-side networking; see NetworkService for the attributes used."""

    sandboxes: dict[str, Sandbox]
    containers: Any

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
            commands, routes = ["link set lo up"], {}
            for i, name in enumerate(list(c.networks)):
                n = self._by_name(name)
                if n is None:
                    raise NotFound(f"network {name} not found")
                ifname = f"eth{i}"
                ep = await self._plug(c, sb, n, ifname)
                commands += self._addr_commands(n, ep, ifname)
                if not n.internal:
                    # The first network with a way out gives the default route (per family).
                    routes.setdefault(4, f"route add default via {n.gateway} dev {ifname}")
                    if ep.get("GlobalIPv6Address"):
                        routes.setdefault(6, f"route add default via {n.gateway6} dev {ifname}")
            commands += list(routes.values())
            v6 = any(ep.get("GlobalIPv6Address") for ep in c.networks.values())
            await netns.configure(sb.path, commands, disable_ipv6=not v6)
            await self._publish(c, sb)
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
        cmds = [f"addr add {ep['IPAddress']}/{n.prefixlen} dev {ifname}"]
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
        ep.update(NetworkID=n.id, EndpointID=endpoint_id, Gateway=n.gateway, IPAddress=ip,
                  IPPrefixLen=n.prefixlen, MacAddress=mac,
                  DNSNames=None if n.name == "bridge" else [c.name.lstrip("/"), c.id[:12], *(ep.get("Aliases") or [])])
        if not sb.port_ip:
            sb.port_ip = ip
        await links.add_veth(_host_if(endpoint_id), n.bridge, sb.path, ifname, mac, n.mtu, c.id)
        return ep

    async def _publish(self, c: Container, sb: Sandbox) -> None:
        hc = c.host_config
        want = ports.wanted(hc.get("PortBindings"), c.config.get("ExposedPorts"), bool(hc.get("PublishAllPorts")))
        if not want:
            return
        ep_id = next(iter(c.networks.values())).get("EndpointID", "")
        for w in want:
            host_ips = [w.host_ip] if w.host_ip else (["0.0.0.0", "::"] if self.ipv6 else ["0.0.0.0"])
            port = self._pick_port(c, sb, w, host_ips, ep_id)
            for hip in host_ips:
                sb.published.append(ports.Published(w.proto, w.container_port, hip, port))
        for b, p in zip(sb.bindings, sb.published, strict=True):
            if ":" in p.host_ip or not self.nft_ok:
                await proxy.start_proxy(b, sb.port_ip, p.container_port)
        await self._sync_firewall()
        await asyncio.to_thread(sb.path.with_suffix(".ports").write_text,
                                json.dumps([p.__dict__ for p in sb.published]))

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
            if (w.proto, port) in self._taken_ports:
                last_err = f"Bind for {host_ips[0]}:{port} failed: port is already allocated"
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
            self._taken_ports[(w.proto, port)] = c.id
            return port
        if not w.host_lo:
            raise fail("no free host port in the ephemeral range")
        raise fail(last_err)

    async def teardown(self, c: Container) -> None:
        """Undoes setup (idempotent, never raises for what is already gone)."""
        sb = self.sandboxes.pop(c.id, None)
        if sb is None:
            path = self.netns_dir / c.id[:12]
            if path.exists():
                sb = Sandbox(path)
        if sb is not None:
            for b in sb.bindings:
                b.close()
            for key, owner in list(self._taken_ports.items()):
                if owner == c.id:
                    del self._taken_ports[key]
            if sb.published:
                with contextlib.suppress(DaemonError):
                    await self._sync_firewall()
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
        c = self.containers.get(body.get("Container") or "")
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
                except BaseException as e:
                    await self._unplug(c, n)
                    del c.networks[n.name]
                    if isinstance(e, DaemonError):
                        raise
                    raise DaemonError(f"failed to connect {c.id[:12]} to {n.name}: {e}") from e
                await asyncio.to_thread(self._write_hosts, c, True)
                await self._refresh_peers(c)
            await self.containers._persist(c)
        self.events.publish("network", "connect", n.id, {"container": c.id, "name": n.name, "type": n.driver})

    async def disconnect(self, ref: str, body: dict) -> None:
        n = self.get(ref)
        body = body or {}
        c = self.containers.find(body.get("Container") or "")
        if c is None:
            if body.get("Force"):
                return
            raise NotFound(f"No such container: {body.get('Container')}")
        if n.driver != "bridge":
            raise Forbidden(f"container cannot be disconnected from host network or connected to {n.name} network")
        if n.name not in c.networks:
            raise Forbidden(f"container {c.id} is not connected to network {n.name}")
        async with c.lock:
            if c.running:
                await self._unplug(c, n)
            del c.networks[n.name]
            if c.running:
                await asyncio.to_thread(self._write_hosts, c, True)
                await self._refresh_peers(c, extra=[n])
            await self.containers._persist(c)
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
        """(address, names) of running containers sharing a user-defined network with c."""
        out, seen = [], set()
        for name, ep in c.networks.items():
            if name == "bridge" or not ep.get("IPAddress"):
                continue
            for other in self._containers().values():
                if other.id == c.id or other.id in seen or other.id not in self.sandboxes:
                    continue
                oep = other.networks.get(name)
                if oep and oep.get("IPAddress"):
                    seen.add(other.id)
                    names = [other.name.lstrip("/"), *(oep.get("Aliases") or []), other.id[:12]]
                    out.append((oep["IPAddress"], " ".join(dict.fromkeys(names))))
        return out

    def _links(self, c: Container) -> tuple[list[tuple[str, str]], list[str]]:
        """--link: hosts entries (alias shortid name) and the legacy environment variables."""
        entries: list[tuple[str, str]] = []
        env: list[str] = []
        for link in c.host_config.get("Links") or []:
            target, _, alias = link.partition(":")
            other = self.containers.find(target.lstrip("/"))
            if other is None or not other.running:
                continue
            alias = alias.rsplit("/", 1)[-1] or other.name.lstrip("/")
            ip = next((ep["IPAddress"] for name, ep in other.networks.items()
                       if ep.get("IPAddress") and name in c.networks), "")
            if not ip:
                continue
            entries.append((f"{alias} {other.id[:12]} {other.name.lstrip('/')}", ip))
            env += _link_env(alias, c.name, ip, other)
        # `network connect --link` (and links in EndpointsConfig): on a user network a link is
        # only a name for the other container, visible to this one, without the legacy env.
        for name, ep in c.networks.items():
            for link in ep.get("Links") or []:
                target, _, alias = link.partition(":")
                other = self.containers.find(target.lstrip("/"))
                oep = other.networks.get(name) if other is not None and other.running else None
                if oep and oep.get("IPAddress"):
                    entries.append((alias.rsplit("/", 1)[-1] or other.name.lstrip("/"), oep["IPAddress"]))
        return entries, env

    def _write_hosts(self, c: Container, in_place: bool = False) -> list[str]:
        p = paths(self.data_root, c.id)
        extra = []
        for item in c.host_config.get("ExtraHosts") or []:
            name, _, addr = item.partition(":")
            extra.append((name, addr))
        link_entries, env = self._links(c)
        ip = next((ep["IPAddress"] for ep in c.networks.values() if ep.get("IPAddress")), None)
        hosts.write_hosts(p["hosts"], c.config["Hostname"], c.config.get("Domainname", ""), ip,
                          extra + link_entries, peers=self._peers(c), in_place=in_place)
        return env

    async def _refresh_peers(self, c: Container, extra: list[Network] | None = None) -> None:
        nets = {name for name in c.networks if name != "bridge"} | {n.name for n in extra or []}
        if not nets:
            return
        others = [o for o in self._containers().values()
                  if o.id != c.id and o.id in self.sandboxes and nets & set(o.networks)]

        def rewrite() -> None:
            for o in others:
                with contextlib.suppress(OSError):
                    self._write_hosts(o, in_place=True)

        if others:
            await asyncio.to_thread(rewrite)


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

