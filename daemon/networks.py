"""The network service: networks CRUD, IPAM, and each container's endpoints and ports.

Mechanisms live in `network/` (netns files, netlink, nftables, port sockets); this module
decides what exists. Networks are rows of the store; which addresses are in use is derived
from the endpoints of running containers (their records are persisted too), so IPAM
survives restarts without a second source of truth that could disagree with it.

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
import ipaddress
import json
import logging
import secrets
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from daemon.container import Container, paths
from daemon.errors import Conflict, DaemonError, Forbidden, InvalidParameter, NotFound
from daemon.events import EventBus
from daemon.filters import Filters
from daemon.store import Store
from daemon.timeutil import now_rfc3339, parse_time_filter, parse_timestamp
from network import firewall, hosts, ipam, links, netns, ports, proxy
from network.firewall import BridgeSpec, Firewall, PortRule

log = logging.getLogger("pydockerd.networks")

BUILTIN = ("bridge", "host", "none")
LIST_FILTERS = {"driver", "id", "label", "name", "scope", "type", "dangling"}
PRUNE_FILTERS = {"label", "label!", "until"}
BRIDGE_NAME_OPT = "com.docker.network.bridge.name"
MTU_OPT = "com.docker.network.driver.mtu"


@dataclass
class Network:
    id: str
    name: str
    driver: str  # "bridge" | "host" | "null"
    created: str
    subnet: str = ""
    gateway: str = ""
    ip_range: str = ""
    internal: bool = False
    attachable: bool = False
    labels: dict = field(default_factory=dict)
    options: dict = field(default_factory=dict)
    ipam_options: dict | None = None
    ipam_config: list = field(default_factory=list)  # as shown by inspect
    bridge: str = ""

    _PERSISTED = ("id", "name", "driver", "created", "subnet", "gateway", "ip_range", "internal", "attachable",
                  "labels", "options", "ipam_options", "ipam_config", "bridge")

    def doc(self) -> dict:
        return {k: getattr(self, k) for k in self._PERSISTED}

    @classmethod
    def from_doc(cls, doc: dict) -> Network:
        return cls(**{k: doc[k] for k in cls._PERSISTED if k in doc})

    @property
    def builtin(self) -> bool:
        return self.name in BUILTIN

    @property
    def prefixlen(self) -> int:
        return ipaddress.ip_network(self.subnet).prefixlen if self.subnet else 0

    @property
    def mtu(self) -> int:
        try:
            return int(self.options.get(MTU_OPT) or 1500)
        except ValueError:
            return 1500


@dataclass
class Sandbox:
    """A running container's network namespace and what hangs off it."""

    path: Path
    interfaces: dict[str, str] = field(default_factory=dict)  # network id -> ethN
    published: list[ports.Published] = field(default_factory=list)
    bindings: list[proxy.Binding] = field(default_factory=list)
    port_ip: str = ""  # the address published ports lead to


def empty_endpoint() -> dict:
    return {"IPAMConfig": None, "Links": None, "Aliases": None, "MacAddress": "", "DriverOpts": None,
            "GwPriority": 0, "NetworkID": "", "EndpointID": "", "Gateway": "", "IPAddress": "", "IPPrefixLen": 0,
            "IPv6Gateway": "", "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0, "DNSNames": None}


_RUNTIME_FIELDS = {"EndpointID": "", "Gateway": "", "IPAddress": "", "IPPrefixLen": 0, "DNSNames": None}


class NetworkService:
    def __init__(self, *, store: Store, events: EventBus, exec_root: Path, data_root: Path, default_bridge: str,
                 bip: str | None, ip_masq: bool) -> None:
        self.store = store
        self.events = events
        self.data_root = data_root
        self.netns_dir = exec_root / "netns"
        self.default_bridge = default_bridge
        self.bip = bip
        self.ip_masq = ip_masq
        self.firewall = Firewall(default_bridge)
        self.nft_ok = True
        self.networks: dict[str, Network] = {}
        self.allocators: dict[str, ipam.SubnetAllocator] = {}
        self.sandboxes: dict[str, Sandbox] = {}  # container id -> sandbox
        self.containers: Any = None  # the ContainerService, wired by the engine
        self._taken_ports: dict[tuple[str, int], str] = {}  # (proto, port) -> container id

    # -- look-up -----------------------------------------------------------------------------
    def find(self, ref: str) -> Network | None:
        if not ref:
            return None
        if ref in self.networks:
            return self.networks[ref]
        for n in self.networks.values():
            if n.name == ref:
                return n
        matches = [n for n in self.networks.values() if n.id.startswith(ref)]
        return matches[0] if len(matches) == 1 else None

    def get(self, ref: str) -> Network:
        n = self.find(ref)
        if n is None:
            raise NotFound(f"network {ref} not found")
        return n

    def _by_name(self, name: str) -> Network | None:
        return next((n for n in self.networks.values() if n.name == name), None)

    # -- start-up / shutdown -----------------------------------------------------------------
    async def load(self) -> None:
        """Loads the networks and makes sure their bridges exist (before containers load)."""
        for doc in self.store.load_networks():
            n = Network.from_doc(doc)
            self.networks[n.id] = n
        for name, driver in (("none", "null"), ("host", "host")):
            if self._by_name(name) is None:
                await self._save(Network(id=secrets.token_hex(32), name=name, driver=driver, created=now_rfc3339()))
        await self._load_default_bridge()
        self.nft_ok = await _nft_available()
        if not self.nft_ok:
            log.warning("nftables unavailable: published ports use the userland proxy only")
        for n in self.networks.values():
            if n.driver == "bridge":
                self.allocators[n.id] = ipam.SubnetAllocator(n.subnet, n.gateway, n.ip_range)
                await self._bridge_up(n)

    async def _load_default_bridge(self) -> None:
        n = self._by_name("bridge")
        if self.bip:
            iface = ipaddress.ip_interface(self.bip)
            subnet, gateway = str(iface.network), str(iface.ip)
        elif n is not None and n.bridge == self.default_bridge:
            subnet, gateway = n.subnet, n.gateway
        else:
            subnet = str(ipam.pick_subnet(await self._taken_subnets(exclude=n.id if n else "")))
            gateway = str(next(ipaddress.ip_network(subnet).hosts()))
        opts = {"com.docker.network.bridge.default_bridge": "true", "com.docker.network.bridge.enable_icc": "true",
                "com.docker.network.bridge.enable_ip_masquerade": "true" if self.ip_masq else "false",
                "com.docker.network.bridge.host_binding_ipv4": "0.0.0.0",
                BRIDGE_NAME_OPT: self.default_bridge, MTU_OPT: "1500"}
        if n is None:
            n = Network(id=secrets.token_hex(32), name="bridge", driver="bridge", created=now_rfc3339())
        n.subnet, n.gateway, n.bridge, n.options = subnet, gateway, self.default_bridge, opts
        n.ipam_config = [{"Subnet": subnet, "Gateway": gateway}]
        await self._save(n)

    async def _save(self, n: Network) -> None:
        await self.store.put_network(n.id, n.name, n.doc())
        self.networks[n.id] = n

    async def _bridge_up(self, n: Network) -> None:
        await links.ensure_bridge(n.bridge, n.gateway, n.prefixlen, n.mtu)
        await asyncio.to_thread(_bridge_sysctls, n.bridge)
        await self.firewall.allow_forward(n.bridge)

    async def reconcile(self) -> None:
        """After containers loaded: re-adopt live sandboxes, remove what a crash left behind."""
        running = {c.id: c for c in self.containers.containers.values() if c.running}
        for c in running.values():
            if c.id not in self.sandboxes and self._has_own_netns(c):
                await self._restore(c)
        keep = {c.id[:12] for c in running.values()}
        for path in netns.leftovers(self.netns_dir, keep | {k + ".ports" for k in keep}):
            log.info("removing leftover network namespace %s", path)
            with contextlib.suppress(OSError, netns.NetnsError):
                netns.remove(path)
        for n in self.networks.values():
            if n.driver != "bridge":
                continue
            for ifname, owner in (await links.veths_of(n.bridge)).items():
                if owner not in running:
                    log.info("removing leftover veth %s of %s", ifname, owner)
                    await links.delete(ifname)
        await self._sync_firewall()

    async def _restore(self, c: Container) -> None:
        """Rebuilds the runtime view of a container that kept running while we were down."""
        sb = Sandbox(self.netns_dir / c.id[:12])
        for i, (name, ep) in enumerate(c.networks.items()):
            n = self._by_name(name)
            if n is None or not ep.get("IPAddress"):
                continue
            with contextlib.suppress(ValueError):
                self.allocators[n.id].reserve(ep["IPAddress"])
            sb.interfaces[n.id] = f"eth{i}"
            if not sb.port_ip and n.driver == "bridge":
                sb.port_ip = ep["IPAddress"]
        try:
            saved = json.loads(sb.path.with_suffix(".ports").read_text())
            sb.published = [ports.Published(**p) for p in saved]
        except (OSError, ValueError, TypeError):
            sb.published = []
        self.sandboxes[c.id] = sb
        for p in sb.published:
            self._taken_ports[(p.proto, p.host_port)] = c.id
            try:
                b = proxy.reserve(p.proto, p.host_ip, p.host_port)
            except (proxy.PortInUse, OSError) as e:
                log.warning("cannot re-reserve %s:%s for %s: %s", p.host_ip, p.host_port, c.id, e)
                continue
            sb.bindings.append(b)
            if ":" in p.host_ip or not self.nft_ok:
                await proxy.start_proxy(b, sb.port_ip, p.container_port)

    async def shutdown(self) -> None:
        """Port sockets close with us; with no container left running, rules go too (they
        are re-installed at the next start), while bridges stay as dockerd keeps docker0."""
        for sb in self.sandboxes.values():
            for b in sb.bindings:
                b.close()
        if any(c.running for c in self.containers.containers.values()):
            return
        await self.firewall.remove()
        for n in self.networks.values():
            if n.driver == "bridge":
                await self.firewall.disallow_forward(n.bridge)

    async def _taken_subnets(self, exclude: str = "") -> list[ipaddress.IPv4Network]:
        taken = await _host_subnets()
        taken += [ipaddress.ip_network(n.subnet) for n in self.networks.values() if n.subnet and n.id != exclude]
        return taken

    def _model(self) -> tuple[list[BridgeSpec], list[PortRule]]:
        bridges = [BridgeSpec(n.bridge, n.subnet, n.internal,
                              self.ip_masq and n.options.get("com.docker.network.bridge.enable_ip_masquerade",
                                                             "true") == "true")
                   for n in self.networks.values() if n.driver == "bridge"]
        rules = [PortRule(p.proto, p.host_ip, p.host_port, sb.port_ip, p.container_port)
                 for sb in self.sandboxes.values() for p in sb.published
                 if ":" not in p.host_ip and p.proto in ("tcp", "udp") and sb.port_ip]
        return bridges, rules

    async def _sync_firewall(self) -> None:
        if not self.nft_ok:
            return
        try:
            await self.firewall.apply(self._model)
        except firewall.FirewallError as e:
            raise DaemonError(f"failed to program the firewall: {e}") from e

    # -- networks CRUD -----------------------------------------------------------------------
    async def create(self, body: dict) -> dict:
        if not isinstance(body, dict):
            raise InvalidParameter("invalid JSON: expected an object")
        name = body.get("Name")
        if not name or not isinstance(name, str):
            raise InvalidParameter("invalid name: name is required")
        driver = body.get("Driver") or "bridge"
        if name in BUILTIN:
            raise Forbidden(f"{name} is a pre-defined network and cannot be created")
        if self._by_name(name) is not None:
            raise Conflict(f"network with name {name} already exists")
        if driver != "bridge":
            raise NotFound(f'plugin "{driver}" not found')
        if body.get("EnableIPv6"):
            raise InvalidParameter("IPv6 networks are not supported by this daemon")
        options = {str(k): str(v) for k, v in (body.get("Options") or {}).items()}
        ipam_body = body.get("IPAM") or {}
        if (ipam_body.get("Driver") or "default") != "default":
            raise NotFound(f'plugin "{ipam_body.get("Driver")}" not found')
        nid = secrets.token_hex(32)
        subnet, gateway, ip_range, shown = await self._ipam_config(ipam_body.get("Config") or [])
        bridge = options.get(BRIDGE_NAME_OPT) or f"br-{nid[:12]}"
        if not 1 <= len(bridge) <= 15:
            raise InvalidParameter(f"invalid bridge name {bridge!r}: interface names are 1 to 15 characters")
        if any(n.bridge == bridge for n in self.networks.values()):
            raise Conflict(f"bridge name {bridge} is already used by another network")
        if await links.exists(bridge):
            # Never adopt (and later delete) an interface somebody else made.
            raise Conflict(f"an interface named {bridge} already exists on the host")
        n = Network(id=nid, name=name, driver="bridge", created=now_rfc3339(), subnet=subnet, gateway=gateway,
                    ip_range=ip_range, internal=bool(body.get("Internal")), attachable=bool(body.get("Attachable")),
                    labels=dict(body.get("Labels") or {}), options=options,
                    ipam_options=dict(ipam_body.get("Options") or {}), ipam_config=shown, bridge=bridge)
        try:
            await self.store.put_network(n.id, n.name, n.doc())
        except sqlite3.IntegrityError:
            raise Conflict(f"network with name {name} already exists") from None
        self.networks[n.id] = n
        self.allocators[n.id] = ipam.SubnetAllocator(subnet, gateway, ip_range)
        try:
            await self._bridge_up(n)
            await self._sync_firewall()
        except BaseException:
            await self._destroy(n)
            raise
        self.events.publish("network", "create", n.id, {"name": n.name, "type": n.driver})
        return {"Id": n.id, "Warning": ""}

    async def _ipam_config(self, cfgs: list) -> tuple[str, str, str, list[dict]]:
        v4 = [c for c in cfgs if isinstance(c, dict) and ":" not in str(c.get("Subnet") or "")]
        if len(v4) > 1:
            raise InvalidParameter("only one IPv4 subnet per network is supported")
        taken = await self._taken_subnets()
        if not v4 or not v4[0].get("Subnet"):
            if v4 and (v4[0].get("Gateway") or v4[0].get("IPRange")):
                raise InvalidParameter("invalid pool request: a gateway or IP range needs a subnet")
            try:
                net = ipam.pick_subnet(taken)
            except LookupError as e:
                raise DaemonError(str(e)) from None
            gw = str(net.network_address + 1)
            return str(net), gw, "", [{"Subnet": str(net), "Gateway": gw}]
        c = v4[0]
        try:
            net = ipaddress.IPv4Network(c["Subnet"], strict=False)
        except ValueError:
            raise InvalidParameter(f"invalid subnet {c['Subnet']}") from None
        if str(net) != c["Subnet"] and c["Subnet"].split("/")[0] != str(net.network_address):
            raise InvalidParameter(f"invalid subnet {c['Subnet']}: it should be {net}")
        if any(net.overlaps(t) for t in taken):
            raise Forbidden("Pool overlaps with other one on this address space")
        ip_range = c.get("IPRange") or ""
        if ip_range:
            try:
                rng = ipaddress.IPv4Network(ip_range, strict=False)
            except ValueError:
                raise InvalidParameter(f"invalid ip-range {ip_range}") from None
            if not rng.subnet_of(net):
                raise InvalidParameter(f"ip-range {ip_range} is not in subnet {net}")
        gw = c.get("Gateway") or ""
        if gw:
            try:
                if ipaddress.IPv4Address(gw) not in net:
                    raise InvalidParameter(f"gateway {gw} is not in subnet {net}")
            except ValueError:
                raise InvalidParameter(f"invalid gateway {gw}") from None
        else:
            gw = str(net.network_address + 1)
        shown = {"Subnet": str(net), "Gateway": gw}
        if ip_range:
            shown["IPRange"] = ip_range
        return str(net), gw, ip_range, [shown]

    def _active(self, n: Network) -> list[Container]:
        return [c for cid, c in self._containers().items() if cid in self.sandboxes and n.id in
                self.sandboxes[cid].interfaces]

    def _containers(self) -> dict[str, Container]:
        return self.containers.containers if self.containers is not None else {}

    async def remove(self, ref: str) -> None:
        n = self.get(ref)
        if n.builtin:
            raise Forbidden(f"{n.name} is a pre-defined network and cannot be removed")
        if self._active(n):
            # dockerd answers 403 here; issue 5 asks for 409 (the issue wins over dockerd).
            raise Conflict(f"error while removing network: network {n.name} id {n.id} has active endpoints")
        await self._destroy(n)
        self.events.publish("network", "destroy", n.id, {"name": n.name, "type": n.driver})

    async def _destroy(self, n: Network) -> None:
        # Interface first, row last: a crash in between leaves a row whose bridge is
        # re-created at start, never a bridge nobody remembers.
        await links.delete(n.bridge)
        await self.firewall.disallow_forward(n.bridge)
        self.networks.pop(n.id, None)
        self.allocators.pop(n.id, None)
        with contextlib.suppress(DaemonError):
            await self._sync_firewall()
        await self.store.delete_network(n.id)

    async def prune(self, filters_raw: str | None) -> dict:
        f = Filters.parse(filters_raw, PRUNE_FILTERS)
        until = [parse_time_filter(u) for u in f.get("until")]
        deleted = []
        for n in list(self.networks.values()):
            if n.builtin or self._active(n) or not f.match_labels(n.labels):
                continue
            if any(_label_matches(cond, n.labels) for cond in f.get("label!")):
                continue
            if until and not all(parse_timestamp(n.created) <= u for u in until):
                continue
            await self._destroy(n)
            self.events.publish("network", "destroy", n.id, {"name": n.name, "type": n.driver})
            deleted.append(n.name)
        return {"NetworksDeleted": deleted or None}

    def list(self, filters_raw: str | None) -> list[dict]:
        f = Filters.parse(filters_raw, LIST_FILTERS)
        out = []
        for n in sorted(self.networks.values(), key=lambda n: n.created):
            if f.get("driver") and n.driver not in f.get("driver"):
                continue
            if f.get("id") and not any(n.id.startswith(i) for i in f.get("id")):
                continue
            if f.get("name") and not any(v in n.name for v in f.get("name")):
                continue
            if f.get("scope") and "local" not in f.get("scope"):
                continue
            if f.get("type"):
                kind = "builtin" if n.builtin else "custom"
                if kind not in f.get("type"):
                    raise_if_bad_type(f.get("type"))
                    continue
            if not f.match_labels(n.labels):
                continue
            dangling = f.bool("dangling")
            if dangling is not None and dangling == (n.builtin or bool(self._active(n))):
                continue
            out.append(self.inspect(n.id, containers=False))
        return out

    def inspect(self, ref: str, containers: bool = True) -> dict:
        n = self.get(ref)
        members: dict[str, dict] = {}
        if containers:
            for c in self._containers().values():
                ep = c.networks.get(n.name)
                if ep is None or not ep.get("EndpointID"):
                    continue
                members[c.id] = {"Name": c.name.lstrip("/"), "EndpointID": ep["EndpointID"],
                                 "MacAddress": ep["MacAddress"],
                                 "IPv4Address": f"{ep['IPAddress']}/{ep['IPPrefixLen']}" if ep["IPAddress"] else "",
                                 "IPv6Address": ""}
            if n.name == "host":
                for c in self._containers().values():
                    if c.running and c.network_mode == "host":
                        members[c.id] = {"Name": c.name.lstrip("/"), "EndpointID": "", "MacAddress": "",
                                         "IPv4Address": "", "IPv6Address": ""}
        return {
            "Name": n.name, "Id": n.id, "Created": n.created, "Scope": "local", "Driver": n.driver,
            "EnableIPv4": True, "EnableIPv6": False,
            "IPAM": {"Driver": "default", "Options": n.ipam_options, "Config": n.ipam_config},
            "Internal": n.internal, "Attachable": n.attachable, "Ingress": False,
            "ConfigFrom": {"Network": ""}, "ConfigOnly": False, "Containers": members,
            "Options": n.options, "Labels": n.labels,
        }

    # -- container create --------------------------------------------------------------------
    def endpoints_for_create(self, config: dict, host_config: dict, networking: dict | None) -> dict:
        """Validates the network side of a create request; returns the container's
        NetworkSettings.Networks (not yet connected: no address)."""
        mode = host_config.get("NetworkMode") or "default"
        eps_in = ((networking or {}).get("EndpointsConfig") or {}) if isinstance(networking, dict) else {}
        if mode.startswith("container:"):
            if host_config.get("PortBindings") or host_config.get("PublishAllPorts"):
                raise InvalidParameter("conflicting options: port publishing and the container type network mode")
            return {}
        if mode in ("host", "none") and host_config.get("Links"):
            raise InvalidParameter("conflicting options: host type networking can't be used with links. "
                                   "This would result in undefined behavior")
        try:
            ports.validate(host_config.get("PortBindings"), config.get("ExposedPorts"))
        except ports.PortSpecError as e:
            raise InvalidParameter(str(e)) from None
        primary = "bridge" if mode == "default" else mode
        n = self.get(primary)
        out: dict[str, dict] = {}
        names = [primary] + [k for k in eps_in if k not in (primary, "default")]
        for name in names:
            net = n if name == primary else self.get(name)
            src = eps_in.get(name) or (eps_in.get("default") if name == primary else None) or {}
            out[net.name] = self._endpoint_config(net, src)
        return out

    def _endpoint_config(self, n: Network, src: dict) -> dict:
        ep = empty_endpoint()
        ipam_cfg = src.get("IPAMConfig") or None
        aliases = [a for a in (src.get("Aliases") or []) if a]
        if n.driver in ("host", "null"):
            if aliases or ipam_cfg:
                raise InvalidParameter("network-scoped aliases and static addresses need a bridge network")
            ep["NetworkID"] = n.id
            return ep
        if ipam_cfg and (ipam_cfg.get("IPv4Address") or ipam_cfg.get("IPv6Address")):
            if n.name == "bridge":
                raise InvalidParameter("user specified IP address is supported on user defined networks only")
            addr = ipam_cfg.get("IPv4Address") or ""
            if ipam_cfg.get("IPv6Address"):
                raise InvalidParameter("invalid IPv6 address: IPv6 is not enabled on this network")
            try:
                if addr and ipaddress.IPv4Address(addr) not in ipaddress.ip_network(n.subnet):
                    raise InvalidParameter(f"no configured subnet or ip-range contain the IP address {addr}")
            except ValueError:
                raise InvalidParameter(f"invalid IPv4 address: {addr}") from None
        if aliases and n.name == "bridge":
            raise InvalidParameter("network-scoped alias is supported only for containers in user defined networks")
        mac = src.get("MacAddress") or ""
        if mac and not _valid_mac(mac):
            raise InvalidParameter(f"invalid MAC address: {mac}")
        # Echo what the client sent (connect sends {} where run sends null), as dockerd does.
        ipam_shown = src.get("IPAMConfig") if isinstance(src.get("IPAMConfig"), dict) else None
        opts = src.get("DriverOpts") if isinstance(src.get("DriverOpts"), dict) else None
        ep.update(IPAMConfig=ipam_shown if n.name != "bridge" else None, Aliases=aliases or None, MacAddress=mac,
                  NetworkID=n.id, Links=src.get("Links") or None, DriverOpts=opts)
        ep["_UserMac"] = mac
        return ep

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
        if not self._has_own_netns(c):
            return None, []
        await self.teardown(c)  # a stale sandbox from an interrupted stop
        started = time.perf_counter()
        sb = Sandbox(self.netns_dir / c.id[:12])
        self.sandboxes[c.id] = sb
        try:
            await netns.create(sb.path)
            commands = ["link set lo up"]
            gateway_set = False
            for i, name in enumerate(list(c.networks)):
                n = self._by_name(name)
                if n is None:
                    raise NotFound(f"network {name} not found")
                ifname = f"eth{i}"
                ep = await self._plug(c, sb, n, ifname)
                commands += [f"addr add {ep['IPAddress']}/{n.prefixlen} dev {ifname}", f"link set {ifname} up"]
                if not gateway_set and not n.internal:
                    commands.append(f"route add default via {n.gateway} dev {ifname}")
                    gateway_set = True
            await netns.configure(sb.path, commands, disable_ipv6=True)
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
            host_ips = [w.host_ip] if w.host_ip else ["0.0.0.0", "::"]
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
                    await netns.configure(sb.path, [f"addr add {ep['IPAddress']}/{n.prefixlen} dev {ifname}",
                                                    f"link set {ifname} up"])
                except BaseException as e:
                    await self._unplug(c, n)
                    del c.networks[n.name]
                    if isinstance(e, DaemonError):
                        raise
                    raise DaemonError(f"failed to connect {c.id[:12]} to {n.name}: {e}") from e
                await asyncio.to_thread(self._write_hosts, c)
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
                await asyncio.to_thread(self._write_hosts, c)
                await self._refresh_peers(c, extra=[n])
            await self.containers._persist(c)
        self.events.publish("network", "disconnect", n.id, {"container": c.id, "name": n.name, "type": n.driver})

    async def _unplug(self, c: Container, n: Network) -> None:
        ep = c.networks.get(n.name) or {}
        if ep.get("EndpointID"):
            await links.delete(_host_if(ep["EndpointID"]))
        if ep.get("IPAddress"):
            self.allocators[n.id].release(ep["IPAddress"])
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

    # -- views for containers ----------------------------------------------------------------
    def published(self, c: Container) -> list[ports.Published]:
        sb = self.sandboxes.get(c.id)
        return sb.published if sb else []

    def settings(self, c: Container) -> dict:
        """NetworkSettings of `docker inspect`."""
        sb = self.sandboxes.get(c.id)
        nets = {k: {f: v for f, v in ep.items() if not f.startswith("_")} for k, ep in c.networks.items()}
        main = nets.get("bridge") or {}
        return {
            "Bridge": "", "SandboxID": _sandbox_id(c.id) if c.running else "", "HairpinMode": False,
            "LinkLocalIPv6Address": "", "LinkLocalIPv6PrefixLen": 0,
            "Ports": ports.settings_ports(c.host_config.get("PortBindings"), c.config.get("ExposedPorts"),
                                          sb.published if sb else None) if c.running else {},
            "SandboxKey": str(sb.path) if sb else "",
            "SecondaryIPAddresses": None, "SecondaryIPv6Addresses": None,
            "EndpointID": main.get("EndpointID", ""), "Gateway": main.get("Gateway", ""),
            "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0, "IPAddress": main.get("IPAddress", ""),
            "IPPrefixLen": main.get("IPPrefixLen", 0), "IPv6Gateway": "", "MacAddress": main.get("MacAddress", ""),
            "Networks": nets,
        }

    def summary_ports(self, c: Container) -> list[dict]:
        sb = self.sandboxes.get(c.id)
        return ports.summary_ports(None, c.config.get("ExposedPorts"), sb.published if sb else None)

    def public_networks(self, c: Container) -> dict:
        return {k: {f: v for f, v in ep.items() if not f.startswith("_")} for k, ep in c.networks.items()}


def _host_if(endpoint_id: str) -> str:
    return "veth" + endpoint_id[:7]


def _next_ifname(sb: Sandbox) -> str:
    used = set(sb.interfaces.values())
    i = 0
    while f"eth{i}" in used:
        i += 1
    return f"eth{i}"


def _sandbox_id(cid: str) -> str:
    import hashlib

    return hashlib.sha256(b"sandbox:" + cid.encode()).hexdigest()


def _valid_mac(mac: str) -> bool:
    parts = mac.split(":")
    return len(parts) == 6 and all(len(p) == 2 and all(ch in "0123456789abcdefABCDEF" for ch in p) for p in parts)


def _label_matches(cond: str, labels: dict) -> bool:
    k, _, v = cond.partition("=")
    return k in labels and (not v or labels[k] == v)


def raise_if_bad_type(values: list[str]) -> None:
    for v in values:
        if v not in ("custom", "builtin"):
            raise InvalidParameter(f"invalid filter: 'type'='{v}'")


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


def _bridge_sysctls(bridge: str) -> None:
    links.route_localnet(bridge)
    # dockerd turns forwarding on too: without it no container reaches past its bridge and
    # a published port is unreachable from another namespace routed through the host.
    fwd = Path("/proc/sys/net/ipv4/ip_forward")
    if fwd.read_text().strip() != "1":
        log.info("enabling net.ipv4.ip_forward, as dockerd does")
        fwd.write_text("1")


async def _host_subnets() -> list[ipaddress.IPv4Network]:
    """Subnets routed or addressed on the host: a new network must overlap none of them."""
    out: list[ipaddress.IPv4Network] = []
    for argv in (["ip", "-4", "-j", "route", "show", "table", "all"], ["ip", "-4", "-j", "addr", "show"]):
        proc = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.PIPE,
                                                    stderr=asyncio.subprocess.DEVNULL)
        raw, _ = await proc.communicate()
        try:
            data = json.loads(raw or b"[]")
        except ValueError:
            continue
        for item in data:
            if "addr_info" in item:
                for a in item["addr_info"]:
                    with contextlib.suppress(ValueError, KeyError):
                        out.append(ipaddress.ip_network(f"{a['local']}/{a['prefixlen']}", strict=False))
                continue
            dst = item.get("dst", "")
            if dst in ("", "default"):
                continue
            with contextlib.suppress(ValueError):
                out.append(ipaddress.ip_network(dst if "/" in dst else dst + "/32", strict=False))
    return out


async def _nft_available() -> bool:
    try:
        proc = await asyncio.create_subprocess_exec("nft", "list", "tables", stdout=asyncio.subprocess.DEVNULL,
                                                    stderr=asyncio.subprocess.DEVNULL)
    except FileNotFoundError:
        return False
    return await proc.wait() == 0
