"""The inside of a new container's network namespace, set through netlink (network/rtnl.py):
loopback up, IPv6 off, the endpoints' IPv4 addresses, their links up, the default route.

These functions run on a thread that is inside the namespace (network/netns.py `create` and
`run_in`): a netlink socket talks to the namespace of the thread that opened it, so no
process is needed (`nsenter ... ip -batch -` forked and exec'd three programs per container
start). What the `ip` commands did is kept exactly: `addr add A/N brd + dev IF`, `link set IF
up`, `route replace default via G dev IF`, and the sysctls of network/netns.py's _NO_IPV6.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from network.netlink import index_of

from . import netns
from .rtnl import RTPROT_BOOT, Rtnl

_IPV6_CONF = "/proc/sys/net/ipv6/conf"


@dataclass(frozen=True)
class Address:
    ifname: str
    address: str  # IPv4
    prefixlen: int


@dataclass
class Inside:
    addresses: list[Address] = field(default_factory=list)
    macs: list[tuple[str, str]] = field(default_factory=list)  # (ifname, MAC) set before they go up
    up: list[str] = field(default_factory=list)
    gateway: tuple[str, str] | None = None  # (IPv4 gateway, ifname) of the default route
    disable_ipv6: bool = True

    def commands(self) -> list[str]:
        """The same as `ip -batch` commands (what apply() does, for logs and tests)."""
        out = [f"link set {ifname} address {mac}" for ifname, mac in self.macs]
        out += [f"addr add {a.address}/{a.prefixlen} brd + dev {a.ifname}" for a in self.addresses]
        out += [f"link set {ifname} up" for ifname in self.up]
        if self.gateway is not None:
            out.append(f"route replace default via {self.gateway[0]} dev {self.gateway[1]}")
        return out


def _write(path: str | Path, value: str) -> None:
    with open(path, "w") as f:
        f.write(value)


def _no_ipv6() -> None:
    # As dockerd for networks without IPv6: no link-local addresses, no ::1. /proc/sys/net is
    # the namespace of the thread that opens it: this thread is inside. "all" reaches the
    # interfaces already there, "default" those that come later.
    _write(f"{_IPV6_CONF}/all/disable_ipv6", "1")
    _write(f"{_IPV6_CONF}/default/disable_ipv6", "1")


def loopback(disable_ipv6: bool = False) -> None:
    """`lo` up (and IPv6 off): a new namespace's first step. Runs inside the namespace."""
    if disable_ipv6:
        _no_ipv6()
    with Rtnl() as nl:
        nl.set_link(_index("lo"), up=True)


def apply(cfg: Inside) -> None:
    """IPv6 off, addresses, links up and the default route, in that order (that of the `ip`
    batch it replaces). Runs inside the namespace."""
    if cfg.disable_ipv6:
        _no_ipv6()
    with Rtnl() as nl:
        for ifname, mac in cfg.macs:
            nl.set_link(_index(ifname), address=mac)
        for a in cfg.addresses:
            nl.add_address(_index(a.ifname), a.address, a.prefixlen)
        for ifname in cfg.up:
            nl.set_link(_index(ifname), up=True)
        if cfg.gateway is not None:
            gateway, ifname = cfg.gateway
            # proto boot: what `ip route` sets, and shows inside the container.
            nl.replace_default_route(gateway, _index(ifname), RTPROT_BOOT)


async def apply_in(path: Path, cfg: Inside, before: Callable[[], None] | None = None) -> None:
    """apply() inside the namespace file `path`, from a thread of its own; `before` runs on it
    first, outside (netns.run_in)."""
    await netns.run_in(path, functools.partial(apply, cfg), before)


def _index(ifname: str) -> int:
    # Runs in a thread inside the namespace: the ioctl looks the name up there.
    found = index_of(ifname)
    if found is None:
        raise RuntimeError(f"no interface {ifname} in the namespace")
    return found
