"""Bridges and veth pairs through netlink (host side only).

The kernel carries out a netlink request inside send(), under the rtnl lock that every
other program changing links on the host contends for: creating a veth took up to
hundreds of ms on a busy host, and on the event loop that stalled every client. So the
per-container changes (add_veth, delete, the owner tag) run in a worker thread, pyroute2's
messages sent by network/rtnl.py without IPRoute (whose machinery spent 1-3 ms of CPU under
the GIL on each); the rare bridge-level ones use pyroute2's AsyncIPRoute. IPRoute(netns=...)
is never used: it forks, which the threaded daemon must not do.
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
from pathlib import Path

from network.netlink import AsyncIPRoute, index_of
from network.rtnl import Rtnl

ALIAS_PREFIX = "pydockerd:"

log = logging.getLogger("pydockerd.network")

# pyroute2 logs every netlink message at DEBUG: megabytes per container in a debug log.
logging.getLogger("pyroute2").setLevel(logging.WARNING)


async def _index(ipr: AsyncIPRoute, name: str) -> int | None:
    found = await ipr.link_lookup(ifname=name)
    return found[0] if found else None


async def exists(name: str) -> bool:
    async with AsyncIPRoute() as ipr:
        return await _index(ipr, name) is not None


async def ensure_bridge(name: str, gateway: str, prefixlen: int, mtu: int = 1500) -> bool:
    """Creates the bridge (or adopts the one we made before a restart), with the gateway
    address and up. Returns True when it was created now."""
    created = False
    async with AsyncIPRoute() as ipr:
        idx = await _index(ipr, name)
        if idx is None:
            await ipr.link("add", ifname=name, kind="bridge", mtu=mtu)
            idx = await _index(ipr, name)
            created = True
        assert idx is not None
        have = [a.get("address") async for a in await ipr.addr("dump", index=idx)]
        if gateway not in have:
            await ipr.addr("add", index=idx, address=gateway, prefixlen=prefixlen)
        await ipr.link("set", index=idx, state="up")
    return created


async def add_address(name: str, address: str, prefixlen: int) -> None:
    """Adds an address to a link unless it is there (IPv6 gateways of bridges)."""
    async with AsyncIPRoute() as ipr:
        idx = await _index(ipr, name)
        if idx is None:
            raise RuntimeError(f"link {name} does not exist")
        have = [a.get("address") async for a in await ipr.addr("dump", index=idx)]
        if address not in have:
            await ipr.addr("add", index=idx, address=address, prefixlen=prefixlen)


def delete_sync(name: str) -> None:
    index = index_of(name)
    if index is None:
        return
    with Rtnl() as nl:
        try:
            nl.delete_link(index)
        except OSError as e:
            if e.errno != errno.ENODEV:  # gone meanwhile
                raise


async def delete(name: str) -> None:
    """Deletes a link by name; a missing link is not an error (cleanup is idempotent)."""
    await asyncio.to_thread(delete_sync, name)


def _add_veth_sync(host_if: str, bridge: str, netns: Path, inner_if: str, mac: str, mtu: int, owner: str) -> None:
    fd = os.open(netns, os.O_RDONLY | os.O_CLOEXEC)
    try:
        bridge_index = index_of(bridge)
        if bridge_index is None:
            raise RuntimeError(f"bridge {bridge} does not exist")
        with Rtnl() as nl:
            nl.add_veth(host_if, inner_if, peer_netns_fd=fd, peer_address=mac, mtu=mtu)
            idx = index_of(host_if)
            if idx is None:
                raise RuntimeError(f"veth {host_if} vanished as it was made")
            try:
                nl.set_link(idx, master=bridge_index, up=True, alias=ALIAS_PREFIX + owner)
                # Hairpin: a container reaching its own published port through the host comes
                # back in on the port it left from (sysfs: pyroute2's brport("set") silently
                # ignored the flag here).
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
    index = index_of(host_if)
    if index is None:
        raise RuntimeError(f"link {host_if} does not exist")
    with Rtnl() as nl:
        nl.set_link(index, alias=ALIAS_PREFIX + owner)


async def veths_of(bridge: str) -> dict[str, str]:
    """Our veths enslaved to `bridge`: name -> owner (from the ifalias)."""
    out: dict[str, str] = {}
    async with AsyncIPRoute() as ipr:
        br = await _index(ipr, bridge)
        if br is None:
            return out
        async for link in await ipr.link("dump", master=br):
            alias = link.get("IFLA_IFALIAS") or ""
            if alias.startswith(ALIAS_PREFIX):
                out[link.get("IFLA_IFNAME")] = alias[len(ALIAS_PREFIX):]
    return out


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
