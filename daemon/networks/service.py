"""The network service: networks CRUD, IPAM, start-up reconciliation, and the views
(inspect, ps) of containers' networking.

Mechanisms live in `network/` (netns files, netlink, nftables, port sockets); this module
decides what exists. Connecting containers (sandboxes, endpoints, ports, hosts files) is
daemon/endpoints.py, mixed into the service. Networks are rows of the store; which
addresses are in use is derived from the endpoints of running containers (their records
are persisted too), so IPAM survives restarts without a second source of truth that could
disagree with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import logging
import secrets
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

from daemon.containers.container import Container
from daemon.containers.registry import ContainerRegistry
from daemon.errors import Conflict, DaemonError, Forbidden, InvalidParameter, NotFound
from daemon.events import EventBus
from daemon.networks.sandbox import EndpointsMixin, Sandbox
from daemon.store import Store
from daemon.util.filters import Filters
from daemon.util.timeutil import now_rfc3339, parse_time_filter, parse_timestamp
from network import firewall, ipam, links, netns, ports, proxy
from network.firewall import BridgeSpec, Firewall, PortRule

log = logging.getLogger("pydockerd.networks")

BUILTIN = ("bridge", "host", "none")
LIST_FILTERS = {"driver", "id", "label", "name", "scope", "type", "dangling"}
PRUNE_FILTERS = {"label", "label!", "until"}
BRIDGE_NAME_OPT = "com.docker.network.bridge.name"
MTU_OPT = "com.docker.network.driver.mtu"
ICC_OPT = "com.docker.network.bridge.enable_icc"


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
    subnet6: str = ""  # set when IPv6 is enabled
    gateway6: str = ""

    _PERSISTED = ("id", "name", "driver", "created", "subnet", "gateway", "ip_range", "internal", "attachable",
                  "labels", "options", "ipam_options", "ipam_config", "bridge", "subnet6", "gateway6")

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
    def prefixlen6(self) -> int:
        return ipaddress.ip_network(self.subnet6).prefixlen if self.subnet6 else 0

    @property
    def mtu(self) -> int:
        try:
            return int(self.options.get(MTU_OPT) or 1500)
        except ValueError:
            return 1500


def empty_endpoint() -> dict:
    return {"IPAMConfig": None, "Links": None, "Aliases": None, "MacAddress": "", "DriverOpts": None,
            "GwPriority": 0, "NetworkID": "", "EndpointID": "", "Gateway": "", "IPAddress": "", "IPPrefixLen": 0,
            "IPv6Gateway": "", "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0, "DNSNames": None}


class NetworkService(EndpointsMixin):
    def __init__(self, *, store: Store, registry: ContainerRegistry, events: EventBus, exec_root: Path,
                 data_root: Path, default_bridge: str, bip: str | None, ip_masq: bool) -> None:
        self.store = store
        self.events = events
        self.data_root = data_root
        self.netns_dir = exec_root / "netns"
        self.default_bridge = default_bridge
        self.bip = bip
        self.ip_masq = ip_masq
        self.firewall = Firewall(default_bridge)
        self.nft_ok = True
        self.ipv6 = True  # whether [::] ports are published too (probed at load)
        self.networks: dict[str, Network] = {}
        self.allocators: dict[str, ipam.SubnetAllocator] = {}
        self.allocators6: dict[str, ipam.SubnetAllocator] = {}
        self.sandboxes: dict[str, Sandbox] = {}  # container id -> sandbox
        self.registry = registry
        self._taken_ports: dict[tuple[str, str, int], str] = {}  # (proto, host ip, port) -> container id
        # Creates are serialised: picking a free subnet awaits `ip`, and two concurrent
        # creates must not both pick the same one.
        self._create_lock = asyncio.Lock()

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
        self.nft_ok = await firewall.available()
        self.ipv6 = proxy.ipv6_available()
        if not self.nft_ok:
            log.warning("nftables unavailable: published ports use the userland proxy only")
        for n in self.networks.values():
            if n.driver == "bridge":
                self.allocators[n.id] = ipam.SubnetAllocator(n.subnet, n.gateway, n.ip_range)
                if n.subnet6:
                    self.allocators6[n.id] = ipam.SubnetAllocator(n.subnet6, n.gateway6)
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
        # As dockerd shows docker0: the gateway only when it was configured (--bip).
        n.ipam_config = [{"Subnet": subnet, "Gateway": gateway}] if self.bip else [{"Subnet": subnet}]
        await self._save(n)

    async def _save(self, n: Network) -> None:
        await self.store.put_network(n.id, n.name, n.doc())
        self.networks[n.id] = n

    async def _bridge_up(self, n: Network) -> None:
        await links.ensure_bridge(n.bridge, n.gateway, n.prefixlen, n.mtu)
        if n.subnet6:
            await links.add_address(n.bridge, n.gateway6, n.prefixlen6)
        await asyncio.to_thread(links.bridge_sysctls, n.bridge)
        if n.options.get(ICC_OPT, "true") == "false" and not await asyncio.to_thread(links.bridge_netfilter):
            log.warning("br_netfilter is not loaded: containers on %s can still reach each other "
                        "(enable_icc=false)", n.name)
        await self.firewall.allow_forward(n.bridge)

    async def reconcile(self) -> None:
        """After containers loaded: re-adopt live sandboxes, remove what a crash left behind."""
        running = {c.id: c for c in self.registry if c.running}
        for c in running.values():
            if c.id not in self.sandboxes and (self._has_own_netns(c) or c.network_mode == "none"):
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
        inside: dict[str, str] | None = None
        for name, ep in c.networks.items():
            n = self._by_name(name)
            if n is None or not ep.get("IPAddress"):
                continue
            with contextlib.suppress(ValueError):
                self.allocators[n.id].reserve(ep["IPAddress"])
            if ep.get("GlobalIPv6Address") and n.id in self.allocators6:
                with contextlib.suppress(ValueError):
                    self.allocators6[n.id].reserve(ep["GlobalIPv6Address"])
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
        try:
            saved = json.loads(sb.path.with_suffix(".ports").read_text())
            sb.published = [ports.Published(**p) for p in saved]
        except (OSError, ValueError, TypeError):
            sb.published = []
        self.sandboxes[c.id] = sb
        for p in sb.published:
            self._taken_ports[(p.proto, p.host_ip, p.host_port)] = c.id
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
        if any(c.running for c in self.registry):
            return
        await self.firewall.remove()
        for n in self.networks.values():
            if n.driver == "bridge":
                await self.firewall.disallow_forward(n.bridge)

    async def _taken_subnets(self, exclude: str = "") -> list[ipaddress.IPv4Network]:
        taken = await links.routed_subnets()
        taken += [ipaddress.ip_network(n.subnet) for n in self.networks.values() if n.subnet and n.id != exclude]
        return taken

    def _model(self) -> tuple[list[BridgeSpec], list[PortRule]]:
        bridges = [BridgeSpec(n.bridge, n.subnet, n.internal,
                              self.ip_masq and n.options.get("com.docker.network.bridge.enable_ip_masquerade",
                                                             "true") == "true",
                              icc=n.options.get(ICC_OPT, "true") != "false")
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
        async with self._create_lock:
            return await self._create(body)

    async def _create(self, body: dict) -> dict:
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
        options = {str(k): str(v) for k, v in (body.get("Options") or {}).items()}
        ipam_body = body.get("IPAM") or {}
        if (ipam_body.get("Driver") or "default") != "default":
            raise NotFound(f'plugin "{ipam_body.get("Driver")}" not found')
        nid = secrets.token_hex(32)
        subnet, gateway, ip_range, shown = await self._ipam_config(ipam_body.get("Config") or [])
        subnet6, gateway6, shown6 = self._ipam_config6(ipam_body.get("Config") or [], bool(body.get("EnableIPv6")))
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
                    ipam_options=dict(ipam_body.get("Options") or {}), ipam_config=shown + shown6, bridge=bridge,
                    subnet6=subnet6, gateway6=gateway6)
        try:
            await self.store.put_network(n.id, n.name, n.doc())
        except sqlite3.IntegrityError:
            raise Conflict(f"network with name {name} already exists") from None
        self.networks[n.id] = n
        self.allocators[n.id] = ipam.SubnetAllocator(subnet, gateway, ip_range)
        if subnet6:
            self.allocators6[n.id] = ipam.SubnetAllocator(subnet6, gateway6)
        try:
            await self._bridge_up(n)
            await self._sync_firewall()
        except BaseException:
            await self._destroy(n)
            raise
        self.events.publish("network", "create", n.id, {"name": n.name, "type": n.driver})
        return {"Id": n.id, "Warning": ""}

    def _ipam_config6(self, cfgs: list, enabled: bool) -> tuple[str, str, list[dict]]:
        """The IPv6 subnet of a network: only with --ipv6, and (no default IPv6 pool, as in
        dockerd 20.10) only when one is given."""
        v6 = [c for c in cfgs if isinstance(c, dict) and ":" in str(c.get("Subnet") or "")]
        if not enabled:
            if v6:
                raise InvalidParameter("an IPv6 subnet needs IPv6 enabled on the network (--ipv6)")
            return "", "", []
        if len(v6) != 1:
            raise InvalidParameter("could not find an available, non-overlapping IPv6 address pool: "
                                   "give exactly one IPv6 --subnet with --ipv6")
        try:
            net = ipaddress.IPv6Network(v6[0]["Subnet"], strict=False)
        except ValueError:
            raise InvalidParameter(f"invalid subnet {v6[0]['Subnet']}") from None
        if any(n.subnet6 and net.overlaps(ipaddress.ip_network(n.subnet6)) for n in self.networks.values()):
            raise Forbidden("Pool overlaps with other one on this address space")
        gw = v6[0].get("Gateway") or str(net.network_address + 1)
        try:
            if ipaddress.IPv6Address(gw) not in net:
                raise InvalidParameter(f"gateway {gw} is not in subnet {net}")
        except ValueError:
            raise InvalidParameter(f"invalid gateway {gw}") from None
        return str(net), gw, [{"Subnet": str(net), "Gateway": gw}]

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
        shown = {"Subnet": str(net)}
        if gw:
            try:
                if ipaddress.IPv4Address(gw) not in net:
                    raise InvalidParameter(f"gateway {gw} is not in subnet {net}")
            except ValueError:
                raise InvalidParameter(f"invalid gateway {gw}") from None
            if gw in (str(net.network_address), str(net.broadcast_address)):
                raise DaemonError(f"failed to allocate gateway ({gw}): Address already in use")
            shown["Gateway"] = gw  # dockerd shows the gateway only when it was given
        else:
            try:
                gw = ipam.first_address(str(net), ip_range)
            except LookupError as e:
                raise DaemonError(f"failed to allocate gateway (): {e}") from None
        if ip_range:
            shown["IPRange"] = ip_range
        return str(net), gw, ip_range, [shown]

    def _active(self, n: Network) -> list[Container]:
        return [c for c in self.registry if c.id in self.sandboxes and n.id in
                self.sandboxes[c.id].interfaces]

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
        self.allocators6.pop(n.id, None)
        with contextlib.suppress(DaemonError):
            await self._sync_firewall()
        await self.store.delete_network(n.id)

    async def prune(self, filters_raw: str | None) -> dict:
        f = Filters.parse(filters_raw, PRUNE_FILTERS)
        until = [parse_time_filter(u) for u in f.get("until")]
        deleted = []
        for n in list(self.networks.values()):
            if n.builtin or self._active(n) or not f.match_label_filters(n.labels):
                continue
            if until and not all(parse_timestamp(n.created) <= u for u in until):
                continue
            await self._destroy(n)
            self.events.publish("network", "destroy", n.id, {"name": n.name, "type": n.driver})
            deleted.append(n.name)
        return {"NetworksDeleted": deleted or None}

    def list(self, filters_raw: str | None) -> list[dict]:
        f = Filters.parse(filters_raw, LIST_FILTERS)
        raise_if_bad_type(f.get("type"))
        dangling = f.bool("dangling")
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
                    continue
            if not f.match_labels(n.labels):
                continue
            if dangling is not None and dangling == (n.builtin or bool(self._active(n))):
                continue
            out.append(self.inspect(n.id, containers=False))
        return out

    def inspect(self, ref: str, containers: bool = True) -> dict:
        n = self.get(ref)
        members: dict[str, dict] = {}
        if containers:
            for c in self.registry:
                ep = c.networks.get(n.name)
                if ep is None or not ep.get("EndpointID"):
                    continue
                members[c.id] = {"Name": c.name.lstrip("/"), "EndpointID": ep["EndpointID"],
                                 "MacAddress": ep["MacAddress"],
                                 "IPv4Address": f"{ep['IPAddress']}/{ep['IPPrefixLen']}" if ep["IPAddress"] else "",
                                 "IPv6Address": f"{ep['GlobalIPv6Address']}/{ep['GlobalIPv6PrefixLen']}"
                                 if ep.get("GlobalIPv6Address") else ""}
            if n.name == "host":
                for c in self.registry:
                    if c.running and c.network_mode == "host":
                        members[c.id] = {"Name": c.name.lstrip("/"), "EndpointID": "", "MacAddress": "",
                                         "IPv4Address": "", "IPv6Address": ""}
        return {
            "Name": n.name, "Id": n.id, "Created": n.created, "Scope": "local", "Driver": n.driver,
            "EnableIPv4": True, "EnableIPv6": bool(n.subnet6),
            "IPAM": {"Driver": "default", "Options": n.ipam_options, "Config": n.ipam_config},
            "Internal": n.internal, "Attachable": n.attachable, "Ingress": False,
            "ConfigFrom": {"Network": ""}, "ConfigOnly": False, "Containers": members,
            "Options": n.options, "Labels": n.labels,
        }

    # -- container create --------------------------------------------------------------------
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
        except ports.PortSpecError as e:
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
        n = self._for_create(primary)
        out: dict[str, dict] = {}
        names = [primary] + [k for k in eps_in if k not in (primary, "default")]
        for name in names:
            net = n if name == primary else self._for_create(name)
            src = eps_in.get(name) or (eps_in.get("default") if name == primary else None) or {}
            out[net.name] = self._endpoint_config(net, src)
        return out

    def _for_create(self, ref: str) -> Network:
        n = self.find(ref)
        if n is None:
            # Not 404: the CLI takes any 404 from create for a missing image and pulls.
            raise InvalidParameter(f"network {ref} not found")
        return n

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
            addr6 = ipam_cfg.get("IPv6Address") or ""
            if addr6 and not n.subnet6:
                raise InvalidParameter("invalid IPv6 address: IPv6 is not enabled on this network")
            try:
                if addr6 and ipaddress.IPv6Address(addr6) not in ipaddress.ip_network(n.subnet6):
                    raise InvalidParameter(f"no configured subnet or ip-range contain the IP address {addr6}")
            except ValueError:
                raise InvalidParameter(f"invalid IPv6 address: {addr6}") from None
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
                  NetworkID=n.id, Links=src.get("Links") or None, DriverOpts=opts,
                  GwPriority=src.get("GwPriority") if isinstance(src.get("GwPriority"), int) else 0)
        ep["_UserMac"] = mac
        return ep

    # -- views for containers ----------------------------------------------------------------
    def published(self, c: Container) -> list[ports.Published]:
        sb = self.sandboxes.get(c.id)
        return sb.published if sb else []

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
            "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0, "IPAddress": main.get("IPAddress", ""),
            "IPPrefixLen": main.get("IPPrefixLen", 0), "IPv6Gateway": "", "MacAddress": main.get("MacAddress", ""),
            "Networks": nets,
        }

    def summary_ports(self, c: Container) -> list[dict]:
        sb = self._port_view(c)
        return ports.summary_ports(None, c.config.get("ExposedPorts"), sb.published) if sb else []

    def ipv6_enabled(self, c: Container) -> bool:
        """Whether one of the container's networks gives it IPv6 (its resolv.conf keeps IPv6
        name servers then)."""
        return any(n is not None and n.subnet6 for n in map(self._by_name, c.networks))

    def public_networks(self, c: Container) -> dict:
        return {k: _public(ep) for k, ep in c.networks.items()}




def _public(ep: dict) -> dict:
    """An endpoint without our private ("_"-prefixed) fields; most have none, so no copy."""
    if not any(f[0] == "_" for f in ep):
        return ep
    return {f: v for f, v in ep.items() if f[0] != "_"}


def _sandbox_id(cid: str) -> str:
    import hashlib

    return hashlib.sha256(b"sandbox:" + cid.encode()).hexdigest()


def _valid_mac(mac: str) -> bool:
    parts = mac.split(":")
    return len(parts) == 6 and all(len(p) == 2 and all(ch in "0123456789abcdefABCDEF" for ch in p) for p in parts)


def raise_if_bad_type(values: list[str]) -> None:
    for v in values:
        if v not in ("custom", "builtin"):
            raise InvalidParameter(f"invalid filter: 'type'='{v}'")
