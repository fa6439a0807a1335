"""network/rtnl.py and the links built on it: message encoding, and (as root) a real bridge
and veth pair made, found, and removed again."""

from __future__ import annotations

import asyncio
import os
import struct
import subprocess
import uuid
from pathlib import Path

import pytest

from network import links, rtnl


def test_attributes_are_padded_and_parsed_back() -> None:
    raw = rtnl.string(rtnl.IFLA_IFNAME, "eth0") + rtnl.u32(rtnl.IFLA_MTU, 1400) + rtnl.attr(rtnl.IFLA_ADDRESS, b"\1\2")
    assert len(raw) % 4 == 0
    attrs = rtnl.parse_attrs(raw)
    assert attrs[rtnl.IFLA_IFNAME] == b"eth0\0"
    assert struct.unpack("=I", attrs[rtnl.IFLA_MTU])[0] == 1400
    assert attrs[rtnl.IFLA_ADDRESS] == b"\1\2"


def test_nested_flag_dropped_and_garbage_tolerated() -> None:
    raw = rtnl.nested(rtnl.IFLA_LINKINFO, rtnl.string(rtnl.IFLA_INFO_KIND, "veth"))
    inner = rtnl.parse_attrs(rtnl.parse_attrs(raw)[rtnl.IFLA_LINKINFO])
    assert inner[rtnl.IFLA_INFO_KIND] == b"veth\0"
    assert rtnl.parse_attrs(b"\0\0\0\0\1") == {}  # a zero length ends the walk


def test_link_text_attributes() -> None:
    link = rtnl.Link(5, 0, {rtnl.IFLA_IFNAME: b"veth1\0", rtnl.IFLA_IFALIAS: b"pydockerd:abc\0",
                            rtnl.IFLA_MASTER: struct.pack("=I", 7)})
    assert (link.name, link.alias, link.master) == ("veth1", "pydockerd:abc", 7)
    assert rtnl.Link(1, 0, {}).master is None


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to make links")
def test_bridge_and_veth_round_trip() -> None:
    tag = uuid.uuid4().hex[:6]
    bridge, veth = f"pydrt{tag}", f"vrt{tag}"
    ns = subprocess.Popen(["unshare", "--net", "sleep", "60"])

    async def scenario() -> None:
        assert not await links.exists(bridge)
        assert await links.ensure_bridge(bridge, "10.251.77.1", 24, 1400)
        assert not await links.ensure_bridge(bridge, "10.251.77.1", 24, 1400)  # adopted, address not doubled
        await links.add_address(bridge, "fd00:251:77::1", 64)
        await links.add_address(bridge, "fd00:251:77::1", 64)
        await links.add_veth(veth, bridge, Path(f"/proc/{ns.pid}/ns/net"), "eth0", "02:42:0a:fb:4d:02", 1400, "cid1")
        assert await links.veths_of(bridge) == {veth: "cid1"}
        with pytest.raises(OSError):
            await links.add_veth(veth, bridge, Path(f"/proc/{ns.pid}/ns/net"), "eth1", "02:42:0a:fb:4d:03", 1400, "x")
        assert Path(f"/sys/class/net/{veth}/brport/hairpin_mode").read_text().strip() == "1"
        with rtnl.Socket() as nl:
            idx = nl.link_index(bridge)
            assert idx is not None
            assert sorted(a for a in nl.addresses(idx) if not a.startswith("fe80")) == ["10.251.77.1",
                                                                                          "fd00:251:77::1"]
            mine = {link.name: link for link in nl.links()}
            assert mine[bridge].flags & rtnl.IFF_UP
        inner = subprocess.run(["nsenter", "-t", str(ns.pid), "-n", "ip", "-o", "link", "show", "eth0"],
                               capture_output=True, text=True, check=True).stdout
        assert "02:42:0a:fb:4d:02" in inner and "mtu 1400" in inner

    try:
        asyncio.run(scenario())
    finally:
        asyncio.run(links.delete(veth))
        asyncio.run(links.delete(veth))  # gone already: not an error
        asyncio.run(links.delete(bridge))
        ns.kill()
        ns.wait()
    assert not asyncio.run(links.exists(bridge))


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to make a namespace")
def test_inside_of_a_namespace() -> None:
    """network/inside.py on rtnl: what `ip -batch` did (MAC, addr with brd, up, default route)."""
    from network import inside, netns

    ns = subprocess.Popen(["unshare", "--net", "sleep", "60"])
    try:
        for _ in range(50):  # the namespace exists once unshare has exec'd sleep
            if os.readlink(f"/proc/{ns.pid}/ns/net") != os.readlink("/proc/self/ns/net"):
                break
            subprocess.run(["sleep", "0.05"])
        subprocess.run(["nsenter", "-t", str(ns.pid), "-n", "ip", "link", "add", "v0", "type", "veth", "peer", "v1"],
                       check=True)
        cfg = inside.Inside(addresses=[inside.Address("v0", "10.9.8.2", 24)], macs=[("v0", "02:42:0a:09:08:02")],
                            up=["v0", "v1"], gateway=("10.9.8.1", "v0"), disable_ipv6=False)
        asyncio.run(netns.run_in(Path(f"/proc/{ns.pid}/ns/net"), lambda: (inside.loopback(), inside.apply(cfg))))

        def ip(*args: str) -> str:
            return subprocess.run(["nsenter", "-t", str(ns.pid), "-n", "ip", *args], capture_output=True,
                                  text=True, check=True).stdout

        assert "inet 10.9.8.2/24 brd 10.9.8.255" in ip("-4", "addr", "show", "v0")
        assert "02:42:0a:09:08:02" in ip("link", "show", "v0")
        assert "unicast default via 10.9.8.1 dev v0 proto boot" in ip("-d", "-4", "route")
        assert "UP" in ip("link", "show", "lo")
    finally:
        ns.kill()
        ns.wait()
