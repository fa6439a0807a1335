"""Port values: the "port/proto" notation, the ps port filter, the ephemeral range."""

from __future__ import annotations

import pytest

from network import ports


@pytest.mark.parametrize("key", ["abc/tcp", "0/tcp", "70000", "80/icmp"])
def test_bad_container_ports(key: str) -> None:
    with pytest.raises(ports.PortSpecError):
        ports.split_key(key)


def test_split_key_defaults_to_tcp_and_lowercases() -> None:
    assert ports.split_key("80") == (80, "tcp")
    assert ports.split_key("53/UDP") == (53, "udp")
    assert ports.split_key("9/sctp") == (9, "sctp")


def test_filter_match_single_ranges_and_protocols() -> None:
    keys = {"80/tcp", "53/udp"}
    assert ports.filter_match(["80"], keys)
    assert ports.filter_match(["70-90/tcp"], keys)
    assert ports.filter_match(["53/udp"], keys)
    assert not ports.filter_match(["53"], keys)
    assert not ports.filter_match(["x"], keys)


def test_ephemeral_range_is_ordered() -> None:
    lo, hi = ports.ephemeral_range()
    assert 0 < lo <= hi < 65536
