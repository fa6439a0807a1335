"""Host port choice between containers: typed wanted mappings in, held sockets out (real
sockets on 127.0.0.1, a fake firewall)."""

from __future__ import annotations

import asyncio
import json
import socket
from pathlib import Path

import pytest

from daemon.errors import DaemonError
from daemon.networks.publish import PortPublisher, _addresses_overlap
from daemon.networks.sandbox import Sandbox
from network.ports import Published, Wanted


class FakeFirewall:
    nft_ok = True
    ipv6 = False
    userland_proxy = True

    def __init__(self) -> None:
        self.syncs = 0

    async def sync_firewall(self) -> None:
        self.syncs += 1


def _free_ports(n: int) -> int:
    """The first of n consecutive ports free on 127.0.0.1 now."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            base = s.getsockname()[1]
        if base + n >= 65536:
            continue
        try:
            held = []
            for p in range(base, base + n):
                t = socket.socket()
                held.append(t)
                t.bind(("127.0.0.1", p))
            return base
        except OSError:
            continue
        finally:
            for t in held:
                t.close()
    pytest.skip("no run of free ports")


@pytest.mark.parametrize("a, b, overlap", [
    ("0.0.0.0", "127.0.0.1", True), ("127.0.0.1", "127.0.0.2", False), ("::", "0.0.0.0", False),
    ("::", "::1", True), ("10.0.0.1", "10.0.0.1", True)])
def test_addresses_overlap(a: str, b: str, overlap: bool) -> None:
    assert _addresses_overlap(a, b) is overlap
    assert _addresses_overlap(b, a) is overlap


def test_second_container_gets_the_next_port_of_a_range_and_conflicts_on_a_fixed_one(tmp_path: Path) -> None:
    base = _free_ports(2)
    fw = FakeFirewall()
    pub = PortPublisher(fw)
    one, two, three = (Sandbox(tmp_path / n, port_ip=ip) for n, ip in (("one", "10.0.0.2"), ("two", "10.0.0.3"),
                                                                         ("three", "10.0.0.4")))
    rng = [Wanted("tcp", 80, "127.0.0.1", base, base + 1)]

    async def scenario() -> None:
        await pub.publish("c1", "one", one, rng, "", "ep1")
        await pub.publish("c2", "two", two, rng, "", "ep2")
        assert one.published == [Published("tcp", 80, "127.0.0.1", base)]
        assert two.published == [Published("tcp", 80, "127.0.0.1", base + 1)]
        assert json.loads((tmp_path / "two.ports").read_text()) == [
            {"proto": "tcp", "container_port": 80, "host_ip": "127.0.0.1", "host_port": base + 1}]
        with pytest.raises(DaemonError, match=f"endpoint three \\(ep3\\).*Bind for 127.0.0.1:{base} failed: "
                                              "port is already allocated"):
            await pub.publish("c3", "three", three, [Wanted("tcp", 80, "127.0.0.1", base, base)], "", "ep3")
        assert three.published == [] and three.bindings == []  # all or nothing
        # The same port on udp is another port.
        await pub.publish("c3", "three", three, [Wanted("udp", 53, "127.0.0.1", base, base)], "", "ep3")
        await pub.unpublish("c1", one)
        assert not (tmp_path / "one.ports").exists()
        await pub.publish("c3", "three", three, [Wanted("tcp", 80, "127.0.0.1", base, base)], "", "ep3")
        for sb, cid in ((two, "c2"), (three, "c3")):
            await pub.unpublish(cid, sb)

    asyncio.run(scenario())
    assert fw.syncs >= 5
