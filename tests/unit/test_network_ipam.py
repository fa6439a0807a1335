"""IPAM: subnet picking around what the host routes, address allocation, MACs."""

from __future__ import annotations

import ipaddress

import pytest

from network import ipam


def net(s: str) -> ipaddress.IPv4Network:
    return ipaddress.IPv4Network(s)


def test_pick_subnet_skips_taken_and_never_docker0() -> None:
    assert ipam.pick_subnet([]) == net("172.18.0.0/16")
    taken = [net("172.18.5.0/24"), net("172.19.0.0/16"), net("172.16.0.0/12")]
    assert ipam.pick_subnet(taken) == net("192.168.0.0/20")
    assert all(not n.overlaps(net("172.17.0.0/16")) for n in ipam.default_pools())


def test_pick_subnet_exhausted() -> None:
    with pytest.raises(LookupError):
        ipam.pick_subnet([net("0.0.0.0/0")])


def test_allocator_lowest_free_and_release() -> None:
    a = ipam.SubnetAllocator("10.5.0.0/24", "10.5.0.1")
    assert [a.allocate() for _ in range(3)] == ["10.5.0.2", "10.5.0.3", "10.5.0.4"]
    a.release("10.5.0.3")
    assert a.allocate() == "10.5.0.3"
    a.release("10.5.0.1")  # the gateway is never released
    assert a.allocate() == "10.5.0.5"


def test_allocator_static_and_range() -> None:
    # As dockerd: a range's first address is handed out (only the subnet's edges are not).
    a = ipam.SubnetAllocator("10.5.0.0/24", "10.5.0.1", "10.5.0.16/28")
    assert a.allocate() == "10.5.0.16"
    a.reserve("10.5.0.200")
    with pytest.raises(ValueError, match="already in use"):
        a.reserve("10.5.0.200")
    with pytest.raises(ValueError, match="out of range"):
        a.reserve("10.6.0.1")
    with pytest.raises(ValueError):
        a.reserve("10.5.0.255")


def test_allocator_full() -> None:
    a = ipam.SubnetAllocator("10.5.0.0/30", "10.5.0.1")
    assert a.allocate() == "10.5.0.2"
    with pytest.raises(ValueError, match="no available"):
        a.allocate()


def test_mac_like_dockerd() -> None:
    assert ipam.mac_for("172.17.0.2") == "02:42:ac:11:00:02"
    assert ipam.mac_for("10.231.0.50") == "02:42:0a:e7:00:32"


def test_allocator_ipv6() -> None:
    a = ipam.SubnetAllocator("fd42::/64", "fd42::1")
    assert [a.allocate(), a.allocate()] == ["fd42::2", "fd42::3"]
    a.reserve("fd42::99")
    with pytest.raises(ValueError):
        a.reserve("10.0.0.1")
    a.release("fd42::2")
    assert a.allocate() == "fd42::2"


def test_default_gateway_is_the_first_address_of_the_range() -> None:
    assert ipam.first_address("10.5.0.0/24") == "10.5.0.1"
    assert ipam.first_address("10.5.0.0/24", "10.5.0.128/25") == "10.5.0.128"
    assert ipam.first_address("10.5.0.0/24", "10.5.0.0/25") == "10.5.0.1"
    a = ipam.SubnetAllocator("10.5.0.0/24", "10.5.0.128", "10.5.0.128/25")
    assert a.allocate() == "10.5.0.129"
    for tiny in ("10.5.0.0/31", "10.5.0.0/32"):
        with pytest.raises(LookupError, match="No available addresses on this pool"):
            ipam.first_address(tiny)
