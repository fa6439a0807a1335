"""A container's side of networking (daemon.containers.collaborators.ContainerNetworking):
its endpoints validated at create, its sandbox (netns, veths, addresses, routes) set up at
start and torn down at exit, `network connect`/`disconnect` while it runs, re-adopting
live sandboxes after a daemon restart, and the networking parts of inspect and ps.

The networks and their addresses belong to NetworkService (daemon/networks/service.py),
published ports to PortPublisher (publish.py), hosts files and links to NameFiles
(names.py), the embedded DNS resolver of user networks to EmbeddedDns (dns.py); this class
decides when each of them acts for a container.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import logging
import secrets
from pathlib import Path

from daemon.containers.container import Container
from daemon.containers.registry import ContainerRegistry
from daemon.errors import DaemonError, Forbidden, InvalidParameter, NotFound
from daemon.events import EventBus
from daemon.networks import pool as pool_mod
from daemon.networks import ports
from daemon.networks.dns import EmbeddedDns
from daemon.networks.names import NameFiles, dns_names
from daemon.networks.network import (
    HOST_BINDING_OPT,
    RUNTIME_FIELDS,
    Network,
    empty_endpoint,
    endpoint_config,
    public,
)
from daemon.networks.publish import PortPublisher
from daemon.networks.sandbox import Sandbox, Sandboxes
from daemon.networks.service import NetworkService
from daemon.util.quiet import Starts
from daemon.util.settle import settled
from daemon.util.steps import Steps
from network import inside, ipam, links, netns
from network.ports import PortSpecError

log = logging.getLogger("pydockerd.networks")


class SandboxService:
    def __init__(self, *, networks: NetworkService, sandboxes: Sandboxes, registry: ContainerRegistry,
                 events: EventBus, exec_root: Path, data_root: Path, dns: EmbeddedDns,
                 starts: Starts | None = None) -> None:
        self.networks = networks
        self.dns = dns
        self.sandboxes = sandboxes
        self.registry = registry
        self.events = events
        self.netns_dir = exec_root / "netns"
        self.pool = pool_mod.SandboxPool(self.netns_dir, starts=starts)
        self.ports = PortPublisher(networks)
        self.names = NameFiles(registry=registry, sandboxes=sandboxes, data_root=data_root,
                               host_gateway_ip=networks.host_gateway_ip)

    # -- create ------------------------------------------------------------------------------
    def check_mode(self, requested: dict, host_config: dict) -> list[str]:
        """The network mode's conflicts in a create request, checked on the request itself
        (before the image's config is merged) and in the order of dockerd's
        validateNetContainerMode. Returns the create response's warnings."""
        mode = host_config.get("NetworkMode") or "default"
        if not mode.startswith("container:"):
            if mode == "host" and host_config.get("PortBindings"):
                return ["Published ports are discarded when using host network mode"]
            return []
        ref = mode.split(":", 1)[1]
        if not ref:
            raise InvalidParameter("Invalid network mode: invalid container format container:<name|id>")
        conflicts = (
            (requested.get("Hostname"), "conflicting options: hostname and the network mode"),
            (host_config.get("Links"), "conflicting options: container type network can't be used with links. "
                                       "This would result in undefined behavior"),
            (host_config.get("Dns"), "conflicting options: dns and the network mode"),
            (host_config.get("ExtraHosts"), "conflicting options: custom host-to-IP mapping and the network mode"),
            (host_config.get("PortBindings") or host_config.get("PublishAllPorts"),
             "conflicting options: port publishing and the container type network mode"),
            (requested.get("ExposedPorts"), "conflicting options: port exposing and the container type network mode"),
        )
        for present, message in conflicts:
            if present:
                raise InvalidParameter(message)
        if self.registry.find(ref) is None:
            # Not 404: the CLI takes any 404 from create for a missing image and pulls.
            raise InvalidParameter(f"No such container: {ref}")
        return []

    def endpoints_for_create(self, config: dict, host_config: dict, networking: dict | None) -> dict:
        """Validates the network side of a create request; returns the container's
        NetworkSettings.Networks (not yet connected: no address)."""
        mode = host_config.get("NetworkMode") or "default"
        eps_in = ((networking or {}).get("EndpointsConfig") or {}) if isinstance(networking, dict) else {}
        if mode.startswith("container:"):
            return {}
        if mode in ("host", "none") and host_config.get("Links"):
            raise InvalidParameter("conflicting options: host type networking can't be used with links. "
                                   "This would result in undefined behavior")
        try:
            ports.validate(host_config.get("PortBindings"), config.get("ExposedPorts"))
        except PortSpecError as e:
            raise InvalidParameter(str(e)) from None
        if mode not in ("host", "none") and any(
                w.proto == "sctp" for w in ports.wanted(host_config.get("PortBindings"), config.get("ExposedPorts"),
                                                       bool(host_config.get("PublishAllPorts")))):
            # No SCTP sockets to hold the port with, and no proxy for it: refuse rather than
            # publish something that does not carry sctp.
            raise InvalidParameter("publishing sctp ports is not supported by pydockerd")
        if mode in ("default", "bridge"):
            for link in host_config.get("Links") or []:
                target = link.partition(":")[0].lstrip("/")
                if self.registry.find(target) is None:
                    raise InvalidParameter(f"could not get container for {target}: No such container: {target}")
        primary = "bridge" if mode == "default" else mode
        out: dict[str, dict] = {}
        names = [primary] + [k for k in eps_in if k not in (primary, "default")]
        if primary == "bridge" and self.networks.bridge_disabled:
            # As dockerd without a default bridge: the endpoint is shown, empty, and never
            # connected; other networks asked for are.
            out["bridge"] = empty_endpoint()
            names.remove("bridge")
            if not names:
                return out
            primary = names[0]
        n = self._for_create(primary)
        for name in names:
            net = n if name == primary else self._for_create(name)
            src = eps_in.get(name) or (eps_in.get("default") if name == primary else None) or {}
            out[net.name] = endpoint_config(net, src)
        _container_wide_mac(config.get("MacAddress") or "", out[n.name], n)
        return out

    def _for_create(self, ref: str) -> Network:
        n = self.networks.find(ref)
        if n is None:
            # Not 404: the CLI takes any 404 from create for a missing image and pulls.
            raise InvalidParameter(f"network {ref} not found")
        return n

    # -- start / exit ------------------------------------------------------------------------
    async def setup(self, c: Container) -> tuple[str | None, list[str]]:
        """Connects a starting container: netns, veths, addresses, routes, ports, hosts.
        Returns (netns path for the runtime or None, extra environment for --link).
        All or nothing: on failure everything made here is undone."""
        if c.network_mode == "none":
            return await self._isolated(c), []
        if not _has_own_netns(c):
            return None, []
        if not self._connected_networks(c):
            # `--bridge none`, default mode: only lo, and the hosts file is written here as for
            # any container with a namespace of its own (the rootfs' thread leaves it to us).
            path = await self._isolated(c)
            return path, await asyncio.to_thread(self.names.write, c)
        steps = Steps(log, f"network setup of {c.id[:12]}")
        await self.teardown(c)  # a stale sandbox from an interrupted stop
        steps.mark("stale")
        sb = Sandbox(self.netns_dir / c.id[:12])
        self.sandboxes.add(c.id, sb)
        try:
            commands = []
            macs = []
            adopt = None
            env: list[str] | None = None
            ready = self._take_ready(c)
            if ready is not None:  # the namespace and veth were made ahead (pool.py)
                n, entry = ready
                try:
                    ep = self._endpoint(c, sb, n, "eth0", entry.endpoint_id)
                except BaseException:
                    await pool_mod.discard(entry)
                    raise
                # Only the file is moved now (the init's setns needs nothing more), with the
                # hosts file on the same thread hop (its address is known); the veth is tagged
                # on the thread that then configures the inside.
                env = await asyncio.to_thread(self._move_and_name, entry, sb.path, c)
                adopt = functools.partial(pool_mod.tag, entry, c.id)
                macs.append(("eth0", ep["MacAddress"]))
            else:
                await netns.create(sb.path, inside.loopback)
                steps.mark("netns")
                for i, name in enumerate(self._connected_networks(c)):
                    n = self.networks.by_name(name)
                    if n is None:
                        raise NotFound(f"network {name} not found")
                    ifname = f"eth{i}"
                    ep = await self._plug(c, sb, n, ifname)
                    commands += _addr_commands(n, ep, ifname)
                steps.mark("veths")
            ways_out = self._ways_out(c)
            if any(ep.get("GlobalIPv6Address") for ep in c.networks.values()):
                await netns.configure(sb.path, commands + _route_commands(ways_out))
            elif adopt is not None:
                # Made ahead: its owner tag, MAC, address, link and route (4-7 ms of netlink)
                # are set while the monitor and the init start, which need only the namespace
                # file; ready() waits for them before the command runs.
                cfg = self._inside(c, ways_out, macs)
                cfg.disable_ipv6 = False  # off already
                sb.pending = asyncio.ensure_future(inside.apply_in(sb.path, cfg, before=adopt))
            else:  # without a process: netlink from a thread inside
                await inside.apply_in(sb.path, self._inside(c, ways_out, macs))
            steps.mark("inside")
            if ways_out:
                await self._publish(c, sb, *ways_out[0])
            steps.mark("ports")
            self.dns.changed()
            await self.dns.start(c, sb.path)
            steps.mark("dns")
            if env is None:
                env = await asyncio.to_thread(self.names.write, c)
            await self.names.refresh_linkers(c)
            steps.mark("names")
        except BaseException as e:
            await self.teardown(c)
            if _setup_failure(e):
                raise DaemonError(f"failed to set up the network of container {c.id[:12]}: {e}") from e
            raise
        for name in c.networks:
            n = self.networks.by_name(name)
            if n is not None:
                self._event("connect", n, c)
        steps.done()
        return str(sb.path), env

    def _move_and_name(self, entry: pool_mod.Ready, path: Path, c: Container) -> list[str]:
        """Blocking: a namespace made ahead becomes c's file, and c's hosts file is written."""
        pool_mod.move(entry, path)
        return self.names.write(c)

    async def ready(self, c: Container) -> None:
        """Waits for what setup() left configuring (the inside of a namespace made ahead); a
        failure is the start's (DaemonError), and the caller then tears the sandbox down."""
        sb = self.sandboxes.get(c.id)
        pending = sb.pending if sb is not None else None
        if pending is None:
            return
        try:
            await asyncio.shield(pending)
        except Exception as e:
            if _setup_failure(e):
                raise DaemonError(f"failed to set up the network of container {c.id[:12]}: {e}") from e
            raise
        sb.pending = None

    async def _isolated(self, c: Container) -> str:
        """--net=none: a namespace with only `lo`, IPv6 off, as dockerd gives (the runtime's
        own fresh netns would keep ::1)."""
        await self.teardown(c)
        sb = Sandbox(self.netns_dir / c.id[:12])
        self.sandboxes.add(c.id, sb)
        try:
            entry = self.pool.take_isolated()
            if entry is not None:  # made ahead (pool.py): only moved to the container's file
                await asyncio.to_thread(pool_mod.adopt, entry, sb.path, c.id)
            else:
                await netns.create(sb.path, functools.partial(inside.loopback, disable_ipv6=True))
        except BaseException as e:
            await self.teardown(c)
            if _setup_failure(e):
                raise DaemonError(f"failed to set up the network of container {c.id[:12]}: {e}") from e
            raise
        return str(sb.path)

    def _connected_networks(self, c: Container) -> list[str]:
        """The networks a starting container is plugged into: all it has, but the default
        bridge's placeholder under `--bridge none`."""
        if not self.networks.bridge_disabled:
            return list(c.networks)
        return [name for name in c.networks if name != "bridge"]

    def _take_ready(self, c: Container) -> tuple[Network, pool_mod.Ready] | None:
        """A namespace made ahead, for a container on the default bridge alone (without IPv6)."""
        if list(c.networks) != ["bridge"]:
            return None
        n = self.networks.by_name("bridge")
        if n is None or n.driver != "bridge" or n.subnet6:
            return None
        entry = self.pool.take(n.bridge, n.mtu)
        return (n, entry) if entry is not None else None

    async def _plug(self, c: Container, sb: Sandbox, n: Network, ifname: str) -> dict:
        """One endpoint: an address from IPAM and a veth into the sandbox."""
        ep = self._endpoint(c, sb, n, ifname, secrets.token_hex(32))
        await links.add_veth(_host_if(ep["EndpointID"]), n.bridge, sb.path, ifname, ep["MacAddress"], n.mtu, c.id)
        return ep

    def _endpoint(self, c: Container, sb: Sandbox, n: Network, ifname: str, endpoint_id: str) -> dict:
        """One endpoint's address from IPAM and its fields (the veth is the caller's)."""
        ep = c.networks[n.name]
        ipam_cfg = ep.get("IPAMConfig") or {}
        ip, ip6 = self.networks.allocate(n, ipam_cfg.get("IPv4Address") or "", ipam_cfg.get("IPv6Address") or "")
        if ip6:
            ep.update(GlobalIPv6Address=ip6, GlobalIPv6PrefixLen=n.prefixlen6, IPv6Gateway=n.gateway6)
        sb.interfaces[n.id] = ifname
        mac = ep.get("_UserMac") or ipam.mac_for(ip)
        # The interface name is kept with the endpoint (persisted): after a daemon restart
        # it cannot be guessed from the order of the networks.
        ep.update(NetworkID=n.id, EndpointID=endpoint_id, Gateway=n.gateway, IPAddress=ip,
                  IPPrefixLen=n.prefixlen, MacAddress=mac, _IfName=ifname,
                  DNSNames=None if n.name == "bridge" else dns_names(c, ep))
        return ep

    def _inside(self, c: Container, ways_out: list[tuple[Network, dict]],
                macs: list[tuple[str, str]] | None = None) -> inside.Inside:
        """What _addr_commands and _route_commands say, for endpoints without IPv6."""
        cfg = inside.Inside(macs=macs or [])
        for name, ep in c.networks.items():
            n = self.networks.by_name(name)
            if n is not None and ep.get("IPAddress") and ep.get("_IfName"):
                cfg.addresses.append(inside.Address(ep["_IfName"], ep["IPAddress"], n.prefixlen))
                cfg.up.append(ep["_IfName"])
        if ways_out:
            n, ep = ways_out[0]
            cfg.gateway = (n.gateway, ep["_IfName"])
        return cfg

    def _ways_out(self, c: Container) -> list[tuple[Network, dict]]:
        """Connected endpoints that can be the gateway one, best first: dockerd orders them by
        GwPriority (higher first), then by network name; an internal network never is one."""
        found = []
        for name, ep in c.networks.items():
            n = self.networks.by_name(name)
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
            await self.ports.unpublish(c.id, sb)
            sb.gateway = sb.port_ip = ""
            return
        n, ep = best
        if not sb.published:
            await self._publish(c, sb, n, ep)
            return
        sb.gateway, sb.port_ip = n.id, ep["IPAddress"]
        await self.ports.retarget(sb)

    async def _publish(self, c: Container, sb: Sandbox, n: Network, ep: dict) -> None:
        """Publishes the container's ports on its gateway endpoint `ep` (all or nothing)."""
        sb.gateway, sb.port_ip = n.id, ep["IPAddress"]
        hc = c.host_config
        want = ports.wanted(hc.get("PortBindings"), c.config.get("ExposedPorts"), bool(hc.get("PublishAllPorts")))
        await self.ports.publish(c.id, c.name.lstrip("/"), sb, want, n.options.get(HOST_BINDING_OPT, ""),
                                 ep.get("EndpointID", ""))

    async def teardown(self, c: Container) -> None:
        """Undoes setup (idempotent, never raises for what is already gone)."""
        sb = self.sandboxes.get(c.id)
        if sb is not None and sb.pending is not None:
            # Its thread cannot be stopped halfway: done (whatever its outcome) before
            # anything of the sandbox goes.
            await settled(sb.pending)
            sb.pending = None
        await self.dns.stop(c)
        sb = self.sandboxes.pop(c.id)
        self.dns.changed()
        if sb is None:
            path = self.netns_dir / c.id[:12]
            if path.exists():
                sb = Sandbox(path)
        if sb is not None:
            await self.ports.unpublish(c.id, sb)
        for name, ep in c.networks.items():
            n = self.networks.by_name(name)
            if ep.get("EndpointID"):
                with contextlib.suppress(Exception):
                    await links.delete(_host_if(ep["EndpointID"]))
                if n is not None:
                    self._event("disconnect", n, c)
            if n is not None:
                self.networks.release(n, ep.get("IPAddress") or "", ep.get("GlobalIPv6Address") or "")
            ep.update(RUNTIME_FIELDS)
            if not ep.get("_UserMac"):
                ep["MacAddress"] = ""
        if sb is not None:
            with contextlib.suppress(OSError, netns.NetnsError):
                # umount waits for the kernel (a few ms, far more on a busy host): off the loop.
                await asyncio.to_thread(netns.remove, sb.path)
            self.ports.forget(sb)
            await self.names.refresh_linkers(c)

    # -- connect / disconnect ----------------------------------------------------------------
    async def connect(self, ref: str, body: dict) -> None:
        n = self.networks.get(ref)
        body = body or {}
        c = self.registry.get(body.get("Container") or "")
        if n.driver != "bridge":
            if n.name == c.network_mode:
                raise Forbidden(f"container {c.name.lstrip('/')} is already connected to network {n.name}")
            raise Forbidden(f"container cannot be disconnected from host network or connected to {n.name} network")
        if not _has_own_netns(c):
            raise Forbidden("container sharing network namespace with another container or host cannot be "
                            "connected to any other network")
        if n.name in c.networks:
            raise Forbidden(f"endpoint with name {c.name.lstrip('/')} already exists in network {n.name}")
        ep = endpoint_config(n, body.get("EndpointConfig") or {})
        async with c.lock:
            c.networks[n.name] = ep
            sb = self.sandboxes.get(c.id)
            if c.running and sb is not None:
                ifname = sb.next_ifname()
                try:
                    await self._plug(c, sb, n, ifname)
                    await netns.configure(sb.path, _addr_commands(n, ep, ifname),
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
                self.dns.changed()
                await self.dns.start(c, sb.path, joined=True)
                await asyncio.to_thread(self.names.write, c, True)
                await self.names.refresh_linkers(c)
            await self.registry.persist(c)
        self._event("connect", n, c)

    async def disconnect(self, ref: str, body: dict) -> None:
        n = self.networks.get(ref)
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
            self.dns.changed()
            if c.running:
                await asyncio.to_thread(self.names.write, c, True)
                await self.names.refresh_linkers(c)
            await self.registry.persist(c)
        self._event("disconnect", n, c)

    async def _unplug(self, c: Container, n: Network) -> None:
        ep = c.networks.get(n.name) or {}
        if ep.get("EndpointID"):
            await links.delete(_host_if(ep["EndpointID"]))
        self.networks.release(n, ep.get("IPAddress") or "", ep.get("GlobalIPv6Address") or "")
        sb = self.sandboxes.get(c.id)
        if sb is not None:
            sb.interfaces.pop(n.id, None)

    def _event(self, action: str, n: Network, c: Container) -> None:
        self.events.publish("network", action, n.id, {"container": c.id, "name": n.name, "type": n.driver})

    # -- daemon start / stop -----------------------------------------------------------------
    async def reconcile(self) -> None:
        """After containers loaded: re-adopt live sandboxes, remove what a crash left behind."""
        running = {c.id: c for c in self.registry if c.running}
        for c in running.values():
            if c.id not in self.sandboxes and (_has_own_netns(c) or c.network_mode == "none"):
                await self._restore(c)
        keep = {c.id[:12] for c in running.values()}
        for path in netns.leftovers(self.netns_dir, keep | {k + ".ports" for k in keep}):
            log.info("removing leftover network namespace %s", path)
            with contextlib.suppress(OSError, netns.NetnsError):
                netns.remove(path)
        for n in self.networks.bridges():
            for ifname, owner in (await links.veths_of(n.bridge)).items():
                if owner not in running:
                    log.info("removing leftover veth %s of %s", ifname, owner)
                    await links.delete(ifname)
        await self.networks.sync_firewall()
        default = self.networks.by_name("bridge")
        if default is not None and default.driver == "bridge" and default.bridge and not default.subnet6:
            self.pool.start(default.bridge, default.mtu)  # after the leftovers of a crash went
        else:
            self.pool.start("", 0)

    async def _restore(self, c: Container) -> None:
        """Rebuilds the runtime view of a container that kept running while we were down."""
        sb = Sandbox(self.netns_dir / c.id[:12])
        inside: dict[str, str] | None = None
        for name, ep in c.networks.items():
            n = self.networks.by_name(name)
            if n is None or not ep.get("IPAddress"):
                continue
            self.networks.reserve(n, ep["IPAddress"], ep.get("GlobalIPv6Address") or "")
            if not ep.get("_IfName"):
                # Started by a version that did not record it: ask the namespace, since the
                # order of the networks says nothing after a disconnect.
                if inside is None:
                    inside = await netns.addresses(sb.path)
                ep["_IfName"] = inside.get(ep["IPAddress"]) or f"eth{len(sb.interfaces)}"
            sb.interfaces[n.id] = ep["_IfName"]
        ways_out = self._ways_out(c)
        if ways_out:
            sb.gateway, sb.port_ip = ways_out[0][0].id, ways_out[0][1]["IPAddress"]
        self.sandboxes.add(c.id, sb)
        self.dns.changed()
        await self.ports.restore(c.id, sb)
        await self.dns.start(c, sb.path)

    async def shutdown(self) -> None:
        """Port sockets close with us (the kernel rules and the bridges are the network
        service's to keep or remove)."""
        for sb in self.sandboxes:
            for b in sb.bindings:
                b.close()
        await self.pool.close()
        await self.dns.close()

    # -- views -------------------------------------------------------------------------------
    def _port_view(self, c: Container) -> Sandbox | None:
        """The sandbox whose ports are shown: only a running container with a gateway endpoint
        has any (dockerd shows none for host, none, container and internal-only modes)."""
        sb = self.sandboxes.get(c.id)
        return sb if c.running and sb is not None and sb.gateway else None

    def settings(self, c: Container) -> dict:
        """NetworkSettings of `docker inspect`."""
        sb = self.sandboxes.get(c.id)
        nets = {k: {f: v for f, v in ep.items() if not f.startswith("_")} for k, ep in c.networks.items()}
        main = nets.get("bridge") or {}
        shown = self._port_view(c)
        return {
            "Bridge": "", "SandboxID": _sandbox_id(c.id) if c.running else "", "HairpinMode": False,
            "LinkLocalIPv6Address": "", "LinkLocalIPv6PrefixLen": 0,
            "Ports": ports.settings_ports(c.host_config.get("PortBindings"), c.config.get("ExposedPorts"),
                                          shown.published) if shown else {},
            "SandboxKey": str(sb.path) if sb else "",
            "SecondaryIPAddresses": None, "SecondaryIPv6Addresses": None,
            "EndpointID": main.get("EndpointID", ""), "Gateway": main.get("Gateway", ""),
            "GlobalIPv6Address": main.get("GlobalIPv6Address", ""),
            "GlobalIPv6PrefixLen": main.get("GlobalIPv6PrefixLen", 0), "IPAddress": main.get("IPAddress", ""),
            "IPPrefixLen": main.get("IPPrefixLen", 0), "IPv6Gateway": main.get("IPv6Gateway", ""),
            "MacAddress": main.get("MacAddress", ""),
            "Networks": nets,
        }

    def summary_ports(self, c: Container) -> list[dict]:
        sb = self._port_view(c)
        return ports.summary_ports(c.config.get("ExposedPorts"), sb.published) if sb else []

    def public_networks(self, c: Container) -> dict:
        return {k: public(ep) for k, ep in c.networks.items()}

    def uses_internal_dns(self, c: Container) -> bool:
        return self.dns.wanted(c)

    def ipv6_enabled(self, c: Container) -> bool:
        """Whether one of the container's networks gives it IPv6 (its resolv.conf keeps IPv6
        name servers then)."""
        return any(n is not None and n.subnet6 for n in map(self.networks.by_name, c.networks))

    def extra_hosts(self, c: Container) -> list[tuple[str, str]]:
        return self.names.extra_hosts(c)

    async def renamed(self, c: Container, old_name: str) -> None:
        """A container's new name replaces the old one in its DNS names and in the hosts files
        of the containers that resolve it."""
        old = old_name.lstrip("/")
        for name, ep in c.networks.items():
            if name != "bridge" and ep.get("DNSNames"):
                ep["DNSNames"] = list(dict.fromkeys(c.name.lstrip("/") if x == old else x for x in ep["DNSNames"]))
        await self.registry.persist(c)
        self.dns.changed()
        if c.id in self.sandboxes:
            await asyncio.to_thread(self.names.write, c, True)
            await self.names.refresh_linkers(c)

    def link_env(self, c: Container) -> list[str]:
        """The legacy --link variables of a running container, for its execs."""
        return self.names.link_env(c) if c.id in self.sandboxes else []

    async def links_changed(self, c: Container) -> None:
        self.dns.changed()
        if c.id in self.sandboxes:
            await asyncio.to_thread(self.names.write, c, True)


def _container_wide_mac(mac: str, ep: dict, n: Network) -> None:
    """Config.MacAddress (docker-py, API < 1.44 clients) is the main network's endpoint MAC,
    as dockerd migrates it; given both ways, they must agree."""
    if not mac or n.driver != "bridge":
        return
    if ep.get("_UserMac") and ep["_UserMac"].lower() != mac.lower():
        raise InvalidParameter("the container-wide MAC address must match the endpoint-specific MAC address "
                               "for the main network, or be left empty")
    endpoint_config(n, {"MacAddress": mac})  # validates it
    ep["MacAddress"] = ep["_UserMac"] = mac


def _setup_failure(e: BaseException) -> bool:
    """What the kernel or our mechanisms refused while a sandbox was made: the start's failure
    (a DaemonError is one already; anything else is a bug and stays what it is)."""
    return isinstance(e, (OSError, netns.NetnsError, RuntimeError)) or type(e).__name__ == "NetlinkError"


def _has_own_netns(c: Container) -> bool:
    return c.network_mode not in ("host", "none") and not c.network_mode.startswith("container:")


def _addr_commands(n: Network, ep: dict, ifname: str) -> list[str]:
    # brd +: the broadcast address dockerd's interfaces show (`brd 10.x.y.255`).
    cmds = [f"addr add {ep['IPAddress']}/{n.prefixlen} brd + dev {ifname}"]
    if ep.get("GlobalIPv6Address"):
        # nodad: the address is this endpoint's alone and must work at once.
        cmds.append(f"addr add {ep['GlobalIPv6Address']}/{n.prefixlen6} dev {ifname} nodad")
    return cmds + [f"link set {ifname} up"]


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


_host_if = pool_mod.host_if


def _sandbox_id(cid: str) -> str:
    return hashlib.sha256(b"sandbox:" + cid.encode()).hexdigest()
