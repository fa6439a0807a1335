"""Docker's port JSON <-> typed port values: PortBindings/ExposedPorts/PublishAllPorts to
wanted mappings, and published bindings to the inspect and ps shapes."""

from __future__ import annotations

import pytest

from daemon.networks import ports
from network.ports import PortSpecError, Published, Wanted


def test_wanted_bindings_ranges_and_publish_all() -> None:
    pb = {"80/tcp": [{"HostIp": "", "HostPort": "8080"}, {"HostIp": "127.0.0.1", "HostPort": "9000-9005"}]}
    exposed = {"80/tcp": {}, "53/udp": {}}
    got = ports.wanted(pb, exposed, publish_all=True)
    assert got == [Wanted("udp", 53, "", 0, 0), Wanted("tcp", 80, "", 8080, 8080),
                   Wanted("tcp", 80, "127.0.0.1", 9000, 9005)]
    assert ports.wanted(None, exposed, publish_all=False) == []


def test_wanted_empty_or_null_binding_means_any_port() -> None:
    """A null list publishes nothing; a null entry in a list is a binding to any port."""
    pb = {"8080": [{"HostIp": "::1", "HostPort": ""}, None], "81/udp": None}
    assert ports.wanted(pb, None, publish_all=False) == [Wanted("tcp", 8080, "::1", 0, 0),
                                                         Wanted("tcp", 8080, "", 0, 0)]


def test_publish_all_keeps_explicit_bindings() -> None:
    pb = {"80/tcp": [{"HostIp": "", "HostPort": "8080"}]}
    assert ports.wanted(pb, {"80/tcp": {}}, publish_all=True) == [Wanted("tcp", 80, "", 8080, 8080)]


@pytest.mark.parametrize("key", ["abc/tcp", "0/tcp", "70000", "80/icmp"])
def test_bad_container_ports(key: str) -> None:
    with pytest.raises(PortSpecError):
        ports.validate({key: [{"HostPort": "1"}]}, None)


@pytest.mark.parametrize("key", ["abc/tcp", "80/icmp"])
def test_bad_exposed_ports(key: str) -> None:
    with pytest.raises(PortSpecError):
        ports.validate(None, {key: {}})


@pytest.mark.parametrize("host_port", ["x", "9-8", "70000", "1-x"])
def test_bad_host_port(host_port: str) -> None:
    with pytest.raises(PortSpecError):
        ports.validate({"80/tcp": [{"HostPort": host_port}]}, None)


def test_settings_and_summary_shapes() -> None:
    pub = [Published("tcp", 80, "0.0.0.0", 8080), Published("tcp", 80, "::", 8080)]
    exposed = {"80/tcp": {}, "2000/tcp": {}}
    assert ports.settings_ports({"80/tcp": []}, exposed, pub) == {
        "80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8080"}, {"HostIp": "::", "HostPort": "8080"}],
        "2000/tcp": None,
    }
    assert ports.summary_ports(exposed, pub) == [
        {"IP": "0.0.0.0", "PrivatePort": 80, "PublicPort": 8080, "Type": "tcp"},
        {"IP": "::", "PrivatePort": 80, "PublicPort": 8080, "Type": "tcp"},
        {"PrivatePort": 2000, "Type": "tcp"},
    ]


def test_round_trip_request_to_shapes() -> None:
    """What is asked for comes back under the same keys, sorted by port, null until published."""
    pb = {"443/tcp": [{"HostIp": "127.0.0.1", "HostPort": "8443"}], "53/udp": [{"HostIp": "", "HostPort": ""}]}
    want = ports.wanted(pb, None, publish_all=False)
    pub = [Published(w.proto, w.container_port, w.host_ip or "0.0.0.0", w.host_lo or 49153) for w in want]
    shown = ports.settings_ports(pb, None, pub)
    assert list(shown) == ["53/udp", "443/tcp"]
    assert shown["443/tcp"] == [{"HostIp": "127.0.0.1", "HostPort": "8443"}]
    assert shown["53/udp"] == [{"HostIp": "0.0.0.0", "HostPort": "49153"}]
    assert ports.settings_ports(pb, None, None) == {"53/udp": None, "443/tcp": None}
    assert ports.summary_ports(None, pub) == [
        {"IP": "0.0.0.0", "PrivatePort": 53, "PublicPort": 49153, "Type": "udp"},
        {"IP": "127.0.0.1", "PrivatePort": 443, "PublicPort": 8443, "Type": "tcp"},
    ]
