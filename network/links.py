"""Bridges and veth pairs through netlink (network/rtnl.py, host side only).

The kernel carries out a netlink request inside send(), under the rtnl lock that every
other program changing links on the host contends for: creating a veth took up to
hundreds of ms on a busy host, and on the event loop that stalled every client. So every
change runs in a worker thread. Nothing here forks or enters a namespace: the threaded
daemon must not.
The container side of a veth is created directly inside the container's namespace (the
spike measured 20-30 ms per container this way against 50-80 ms for moving it there).
Every veth we create carries an ifalias naming its container, so crash reconciliation can
tell our links from anyone else's.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ipaddress
import json
import logging
import os
import socket
from pathlib import Path

from network import rtnl

ALIAS_PREFIX = "pydockerd:"

log = logging.getLogger("pydockerd.network")


def _exists_sync(name: str) -> bool:
    with rtnl.Socket() as nl:
        return nl.link_index(name) is not None


async def exists(name: str) -> bool:
    return await asyncio.to_thread(_exists_sync, name)


def _ensure_bridge_sync(name: str, gateway: str, prefixlen: int, mtu: int) -> bool:
    created = False
    with rtnl.Socket() as nl:
        idx = nl.link_index(name)
        if idx is None:
            nl.add_bridge(name, mtu)
            idx = nl.link_index(name)
            created = True
        assert idx is not None
        if gateway not in nl.addresses(idx):
            nl.add_address(idx, gateway, prefixlen)
        nl.set_link(idx, up=True)
    return created


async def ensure_bridge(name: str, gateway: str, prefixlen: int, mtu: int = 1500) -> bool:
    """Creates the bridge (or adopts the one we made before a restart), with the gateway
    address and up. Returns True when it was created now."""
    return await asyncio.to_thread(_ensure_bridge_sync, name, gateway, prefixlen, mtu)


def _add_address_sync(name: str, address: str, prefixlen: int) -> None:
    with rtnl.Socket() as nl:
        idx = nl.link_index(name)
        if idx is None:
            raise RuntimeError(f"link {name} does not exist")
        if address not in nl.addresses(idx):
            nl.add_address(idx, address, prefixlen)


async def add_address(name: str, address: str, prefixlen: int) -> None:
    """Adds an address to a link unless it is there (IPv6 gateways of bridges)."""
    await asyncio.to_thread(_add_address_sync, name, address, prefixlen)


def delete_sync(name: str) -> None:
    with rtnl.Socket() as nl:
        idx = nl.link_index(name)
        if idx is None:
            return
        try:
            nl.delete_link(idx)
        except rtnl.NetlinkError as e:
            if e.errno != errno.ENODEV:  # gone meanwhile
                raise


async def delete(name: str) -> None:
    """Deletes a link by name; a missing link is not an error (cleanup is idempotent)."""
    await asyncio.to_thread(delete_sync, name)


def _add_veth_sync(host_if: str, bridge: str, netns: Path, inner_if: str, mac: str, mtu: int, owner: str) -> None:
    fd = os.open(netns, os.O_RDONLY | os.O_CLOEXEC)
    try:
        with rtnl.Socket() as nl:
            br = nl.link_index(bridge)
            if br is None:
                raise RuntimeError(f"bridge {bridge} does not exist")
            nl.add_veth(host_if, mtu, inner_if, fd, bytes.fromhex(mac.replace(":", "")))
            idx = nl.link_index(host_if)
            assert idx is not None
            try:
                nl.set_link(idx, up=True, master=br, alias=ALIAS_PREFIX + owner)
                # Hairpin: a container reaching its own published port through the host comes
                # back in on the port it left from (a bridge port flag, set through sysfs).
                Path(f"/sys/class/net/{host_if}/brport/hairpin_mode").write_text("1")
            except BaseException:
                nl.delete_link(idx)
                raise
    finally:
        os.close(fd)


async def add_veth(host_if: str, bridge: str, netns: Path, inner_if: str, mac: str, mtu: int,
                   owner: str) -> None:
    """A veth pair: `host_if` enslaved to `bridge` (up, hairpin on), `inner_if` created inside
    the namespace file `netns` with the given MAC and MTU."""
    await asyncio.to_thread(_add_veth_sync, host_if, bridge, netns, inner_if, mac, mtu, owner)


def set_owner_sync(host_if: str, owner: str) -> None:
    """Names the owner of one of our veths (its ifalias), blocking: a veth made ahead of the
    container that takes it (daemon/networks/pool.py)."""
    try:
        index = socket.if_nametoindex(host_if)  # one ioctl; a lookup by name can dump every link
    except OSError:
        raise RuntimeError(f"link {host_if} does not exist") from None
    with rtnl.Socket() as nl:
        nl.set_link(index, alias=ALIAS_PREFIX + owner)


def _veths_of_sync(bridge: str) -> dict[str, str]:
    out: dict[str, str] = {}
    with rtnl.Socket() as nl:
        br = nl.link_index(bridge)
        if br is None:
            return out
        for link in nl.links():
            alias = link.alias or ""
            if link.master == br and alias.startswith(ALIAS_PREFIX) and link.name:
                out[link.name] = alias[len(ALIAS_PREFIX):]
    return out


async def veths_of(bridge: str) -> dict[str, str]:
    """Our veths enslaved to `bridge`: name -> owner (from the ifalias)."""
    return await asyncio.to_thread(_veths_of_sync, bridge)


def set_sysctl(path: str, value: str) -> None:
    Path("/proc/sys", path).write_text(value)


def route_localnet(bridge: str) -> None:
    """127.0.0.1:PORT DNATed to a container leaves through the bridge with a loopback source;
    without route_localnet the kernel drops it as martian."""
    set_sysctl(f"net/ipv4/conf/{bridge}/route_localnet", "1")


def bridge_sysctls(bridge: str, ip_forward: bool = True) -> None:
    """What a bridge of ours needs from the kernel (blocking: call from a thread)."""
    route_localnet(bridge)
    if not ip_forward:
        return
    # dockerd turns forwarding on too: without it no container reaches past its bridge and
    # a published port is unreachable from another namespace routed through the host.
    fwd = Path("/proc/sys/net/ipv4/ip_forward")
    if fwd.read_text().strip() != "1":
        log.info("enabling net.ipv4.ip_forward, as dockerd does")
        fwd.write_text("1")


def bridge_netfilter() -> bool:
    """Makes bridged IPv4 traffic go through the IP hooks, which `enable_icc=false` filters
    in (dockerd turns it on for the same reason). False when br_netfilter is not loaded."""
    knob = Path("/proc/sys/net/bridge/bridge-nf-call-iptables")
    try:
        if knob.read_text().strip() != "1":
            log.info("enabling net.bridge.bridge-nf-call-iptables, as dockerd does for enable_icc=false")
            knob.write_text("1")
    except OSError:
        return False
    return True


async def routed_subnets() -> list[ipaddress.IPv4Network]:
    """IPv4 subnets routed (any table) or addressed on the host: a new network's subnet must
    overlap none of them. The default route is not a subnet."""
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
