"""Published ports: request parsing and the shapes inspect and ps show."""

from __future__ import annotations

import pytest

from network import ports
from network.ports import Published


def test_wanted_bindings_ranges_and_publish_all() -> None:
    pb = {"80/tcp": [{"HostIp": "", "HostPort": "8080"}, {"HostIp": "127.0.0.1", "HostPort": "9000-9005"}]}
    exposed = {"80/tcp": {}, "53/udp": {}}
    got = ports.wanted(pb, exposed, publish_all=True)
    assert got == [ports.Wanted("udp", 53, "", 0, 0), ports.Wanted("tcp", 80, "", 8080, 8080),
                   ports.Wanted("tcp", 80, "127.0.0.1", 9000, 9005)]
    assert ports.wanted(None, exposed, publish_all=False) == []


@pytest.mark.parametrize("key", ["abc/tcp", "0/tcp", "70000", "80/icmp"])
def test_bad_container_ports(key: str) -> None:
    with pytest.raises(ports.PortSpecError):
        ports.validate({key: [{"HostPort": "1"}]}, None)


def test_bad_host_port() -> None:
    with pytest.raises(ports.PortSpecError):
        ports.validate({"80/tcp": [{"HostPort": "x"}]}, None)


def test_settings_and_summary_shapes() -> None:
    pub = [Published("tcp", 80, "0.0.0.0", 8080), Published("tcp", 80, "::", 8080)]
    exposed = {"80/tcp": {}, "2000/tcp": {}}
    assert ports.settings_ports({"80/tcp": []}, exposed, pub) == {
        "80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8080"}, {"HostIp": "::", "HostPort": "8080"}],
        "2000/tcp": None,
    }
    assert ports.summary_ports(None, exposed, pub) == [
        {"IP": "0.0.0.0", "PrivatePort": 80, "PublicPort": 8080, "Type": "tcp"},
        {"IP": "::", "PrivatePort": 80, "PublicPort": 8080, "Type": "tcp"},
        {"PrivatePort": 2000, "Type": "tcp"},
    ]
