"""IPv4 address management: picking free subnets and handing out addresses inside one.

Pure logic (no I/O): the daemon passes in what is routed on the host and what its own
networks already use, so this is unit-testable and never guesses at the host's state.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Iterator
from typing import Any

IPv4Net = ipaddress.IPv4Network
IPv4Addr = ipaddress.IPv4Address


def default_pools() -> Iterator[IPv4Net]:
    """dockerd's local pools minus 172.17/16 (docker0's), then 10.x /16s as a fallback."""
    for second in range(18, 32):
        yield ipaddress.IPv4Network(f"172.{second}.0.0/16")
    for third in range(0, 256, 16):
        yield ipaddress.IPv4Network(f"192.168.{third}.0/20")
    for second in range(100, 200):
        yield ipaddress.IPv4Network(f"10.{second}.0.0/16")


def subnets_of(pools: Iterable[tuple[IPv4Net, int]]) -> Iterator[IPv4Net]:
    """The subnets `--default-address-pool base=...,size=N` hands out, pool by pool."""
    for base, size in pools:
        yield from base.subnets(new_prefix=size)


def pick_subnet(taken: Iterable[IPv4Net], pools: Iterable[IPv4Net] | None = None) -> IPv4Net:
    """The first pool subnet that overlaps nothing routed/addressed on the host or used by us."""
    used = list(taken)
    for net in pools if pools is not None else default_pools():
        if not any(net.overlaps(u) for u in used):
            return net
    raise LookupError("could not find an available, non-overlapping IPv4 address pool among the defaults "
                      "to assign to the network")


def mac_for(ip: str) -> str:
    """dockerd's MAC for an address: 02:42 followed by the four bytes of the IPv4 address."""
    return "02:42:" + ":".join(f"{b:02x}" for b in ipaddress.IPv4Address(ip).packed)


def first_address(subnet: str, ip_range: str = "") -> str:
    """The default gateway: dockerd takes the first address of the range addresses are handed
    out from (the ip-range when given, so `--ip-range 10.0.0.128/25` gives a .128 gateway).
    LookupError when the pool has no usable address (a /31 or /32)."""
    a = SubnetAllocator(subnet, "", ip_range)
    try:
        return a.allocate()
    except ValueError:
        raise LookupError("No available addresses on this pool") from None


class SubnetAllocator:
    """Addresses of one subnet: the gateway and every assigned address are reserved.

    Allocation picks the lowest free address of the range (dockerd hands them out in
    order too, so the first container gets .2). Only the subnet's own network and
    broadcast addresses are never handed out: a range's first address is usable.
    """

    def __init__(self, subnet: str, gateway: str, ip_range: str = "") -> None:
        # IPv4 or IPv6 (an IPv6 network's addresses are handed out the same way).
        self.subnet: Any = ipaddress.ip_network(subnet, strict=False)
        self.gateway: Any = ipaddress.ip_address(gateway) if gateway else None
        self.range: Any = ipaddress.ip_network(ip_range, strict=False) if ip_range else self.subnet
        self.used: set[Any] = {self.gateway} if self.gateway is not None else set()

    def _edges(self) -> tuple[Any, Any]:
        return self.subnet.network_address, self.subnet.broadcast_address

    def reserve(self, ip: str) -> None:
        """Marks a specific address used; ValueError when it is taken or outside the subnet."""
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            raise ValueError(f"invalid address {ip}") from None
        if addr.version != self.subnet.version or addr not in self.subnet or addr in self._edges():
            raise ValueError(f"no available IPv4 address on network for {ip}: address out of range")
        if addr in self.used:
            raise ValueError(f"Address already in use: {ip}")
        self.used.add(addr)

    def allocate(self) -> str:
        net = self.range
        edges = self._edges()
        make = ipaddress.IPv4Address if self.subnet.version == 4 else ipaddress.IPv6Address
        for n in range(int(net.network_address), int(net.broadcast_address) + 1):
            addr = make(n)
            if addr not in self.used and addr not in edges:
                self.used.add(addr)
                return str(addr)
        raise ValueError("no available IPv4 addresses on this network's address pools")

    def release(self, ip: str) -> None:
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            return
        if addr != self.gateway:
            self.used.discard(addr)
