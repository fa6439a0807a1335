"""A network as the store keeps it (the Network record), the options dockerd names, and
the endpoint JSON a container has on each of its networks: the one template it starts
from, and its validation from a create or connect request's EndpointConfig."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from daemon.errors import InvalidParameter

BUILTIN = ("bridge", "host", "none")
BRIDGE_NAME_OPT = "com.docker.network.bridge.name"
MTU_OPT = "com.docker.network.driver.mtu"
ICC_OPT = "com.docker.network.bridge.enable_icc"
MASQ_OPT = "com.docker.network.bridge.enable_ip_masquerade"
HOST_BINDING_OPT = "com.docker.network.bridge.host_binding_ipv4"


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


# What an endpoint has only while its container is connected (cleared at disconnect).
RUNTIME_FIELDS = {"EndpointID": "", "Gateway": "", "IPAddress": "", "IPPrefixLen": 0, "DNSNames": None,
                  "IPv6Gateway": "", "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0, "_IfName": ""}


def empty_endpoint(network_id: str = "") -> dict:
    """The endpoint of a container on one network before it is connected, as dockerd shows it
    (NetworkSettings.Networks.<name>). Fields starting with "_" are ours and never shown."""
    return {"IPAMConfig": None, "Links": None, "Aliases": None, "MacAddress": "", "DriverOpts": None,
            "GwPriority": 0, "NetworkID": network_id, "EndpointID": "", "Gateway": "", "IPAddress": "",
            "IPPrefixLen": 0, "IPv6Gateway": "", "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0,
            "DNSNames": None}


def endpoint_config(n: Network, src: dict) -> dict:
    """A container's endpoint on `n` from the client's EndpointSettings `src` (validated)."""
    ipam_cfg = src.get("IPAMConfig") or None
    aliases = [a for a in (src.get("Aliases") or []) if a]
    if n.driver in ("host", "null"):
        if aliases or ipam_cfg:
            raise InvalidParameter("network-scoped aliases and static addresses need a bridge network")
        return empty_endpoint(n.id)
    if ipam_cfg and (ipam_cfg.get("IPv4Address") or ipam_cfg.get("IPv6Address")):
        if n.name == "bridge":
            raise InvalidParameter("user specified IP address is supported on user defined networks only")
        _check_static(n, ipam_cfg.get("IPv4Address") or "", ipam_cfg.get("IPv6Address") or "")
    if aliases and n.name == "bridge":
        raise InvalidParameter("network-scoped alias is supported only for containers in user defined networks")
    mac = src.get("MacAddress") or ""
    if mac and not _valid_mac(mac):
        raise InvalidParameter(f"invalid MAC address: {mac}")
    ep = empty_endpoint(n.id)
    # Echo what the client sent (connect sends {} where run sends null), as dockerd does.
    ipam_shown = src.get("IPAMConfig") if isinstance(src.get("IPAMConfig"), dict) else None
    opts = src.get("DriverOpts") if isinstance(src.get("DriverOpts"), dict) else None
    if n.name == "bridge" and not ipam_shown:
        ipam_shown = None  # on the default bridge an empty one is not echoed; LinkLocalIPs are
    ep.update(IPAMConfig=ipam_shown, Aliases=aliases or None, MacAddress=mac,
              Links=src.get("Links") or None, DriverOpts=opts,
              GwPriority=src.get("GwPriority") if isinstance(src.get("GwPriority"), int) else 0)
    ep["_UserMac"] = mac
    return ep


def _check_static(n: Network, addr: str, addr6: str) -> None:
    # Without IPv6 enabled, an IPv6 pool may still be configured (and the address only recorded).
    subnets6 = [n.subnet6] if n.subnet6 else [c["Subnet"] for c in n.ipam_config if ":" in c.get("Subnet", "")]
    if addr6 and not subnets6:
        raise InvalidParameter("invalid IPv6 address: IPv6 is not enabled on this network")
    try:
        if addr6 and not any(ipaddress.IPv6Address(addr6) in ipaddress.ip_network(s) for s in subnets6):
            raise InvalidParameter(f"no configured subnet or ip-range contain the IP address {addr6}")
    except ValueError:
        raise InvalidParameter(f"invalid IPv6 address: {addr6}") from None
    try:
        if addr and ipaddress.IPv4Address(addr) not in ipaddress.ip_network(n.subnet):
            raise InvalidParameter(f"no configured subnet or ip-range contain the IP address {addr}")
    except ValueError:
        raise InvalidParameter(f"invalid IPv4 address: {addr}") from None


def _valid_mac(mac: str) -> bool:
    parts = mac.split(":")
    return len(parts) == 6 and all(len(p) == 2 and all(ch in "0123456789abcdefABCDEF" for ch in p) for p in parts)


def public(ep: dict) -> dict:
    """An endpoint without our private ("_"-prefixed) fields; most have none, so no copy."""
    if not any(f[0] == "_" for f in ep):
        return ep
    return {f: v for f, v in ep.items() if f[0] != "_"}
