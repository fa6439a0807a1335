"""The embedded DNS resolver without root: which names a container sees (ContainerNames,
against a real registry and sandbox table), the answers built from them (Resolver against a
fake directory), its bounds and bad input, forwarding over real sockets on 127.0.0.1 to a
stand-in upstream, and the resolv.conf it is announced in."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import dns.asyncquery
import dns.exception
import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import dns.reversename
import dns.rrset
import pytest

from daemon.containers.container import Container
from daemon.containers.registry import ContainerRegistry
from daemon.networks.dns import ContainerNames
from daemon.networks.network import Network
from daemon.networks.sandbox import Sandbox, Sandboxes
from network import dns as dns_mod
from network import dnswire, hosts
from network.dns import Addresses, Resolver
from tests.helpers import udp_tcp_pair


class FakeStore:
    async def put_container(self, cid: str, name: str, doc: dict) -> None:
        pass


NETS = {"front": Network(id="f" * 64, name="front", driver="bridge", created="", subnet="10.1.0.0/24"),
        "back": Network(id="b" * 64, name="back", driver="bridge", created="", subnet="10.2.0.0/24"),
        "inner": Network(id="i" * 64, name="inner", driver="bridge", created="", subnet="10.3.0.0/24",
                         internal=True),
        "bridge": Network(id="d" * 64, name="bridge", driver="bridge", created="", subnet="172.17.0.0/16")}


def _ctr(cid: str, name: str, eps: dict[str, tuple[str, list[str]]], links: list[str] | None = None,
         hostname: str = "") -> Container:
    networks = {net: {"IPAddress": ip, "Aliases": aliases or None, "GlobalIPv6Address": ""}
                for net, (ip, aliases) in eps.items()}
    return Container(id=cid * 64, name="/" + name, created="", path="sh", args=[],
                     config={"Hostname": hostname or cid * 12}, host_config={"Links": links},
                     image_id="", networks=networks, state={"Running": True})


@pytest.fixture
def world() -> tuple[ContainerNames, ContainerRegistry, Sandboxes]:
    registry = ContainerRegistry(FakeStore())  # type: ignore[arg-type]
    sandboxes = Sandboxes()
    names = ContainerNames(registry=registry, sandboxes=sandboxes, network=NETS.get)
    return names, registry, sandboxes


def _run(world, *ctrs: Container) -> None:
    names, registry, sandboxes = world
    for c in ctrs:
        registry.add(c)
        sandboxes.add(c.id, Sandbox(Path("/nonexistent") / c.id[:12]))
    names.invalidate()


def test_names_aliases_short_id_hostname_and_network_suffix(world) -> None:
    names = world[0]
    web = _ctr("a", "web", {"front": ("10.1.0.2", ["svc"])}, hostname="webhost")
    cli = _ctr("c", "cli", {"front": ("10.1.0.9", [])})
    _run(world, web, cli)
    for q in ("web", "svc", "a" * 12, "webhost", "web.front", "svc.front"):
        assert names.addresses(cli.id, q) == Addresses(["10.1.0.2"], []), q
    assert names.addresses(cli.id, "web.back") is None  # not a network web is on
    assert names.addresses(cli.id, "example.com") is None


def test_only_networks_the_asker_is_on_and_never_the_default_bridge(world) -> None:
    names = world[0]
    hidden = _ctr("h", "hidden", {"back": ("10.2.0.2", [])})
    legacy = _ctr("l", "legacy", {"bridge": ("172.17.0.2", [])})
    cli = _ctr("c", "cli", {"front": ("10.1.0.9", []), "bridge": ("172.17.0.9", [])})
    _run(world, hidden, legacy, cli)
    assert names.addresses(cli.id, "hidden") is None
    assert names.addresses(cli.id, "legacy") is None
    assert names.addresses(legacy.id, "cli") is None  # only on the default bridge: no names at all


def test_a_shared_alias_gives_every_replica_and_follows_them(world) -> None:
    names, _, sandboxes = world
    replicas = [_ctr(x, f"proj-web-{i}", {"front": (f"10.1.0.{10 + i}", ["web"])}) for i, x in enumerate("pqr")]
    cli = _ctr("c", "cli", {"front": ("10.1.0.9", [])})
    _run(world, *replicas, cli)
    assert sorted(names.addresses(cli.id, "web").v4) == ["10.1.0.10", "10.1.0.11", "10.1.0.12"]
    sandboxes.pop(replicas[0].id)  # stopped
    names.invalidate()
    assert sorted(names.addresses(cli.id, "web").v4) == ["10.1.0.11", "10.1.0.12"]


def test_links_are_names_of_the_linking_container_only(world) -> None:
    names = world[0]
    db = _ctr("d", "db", {"front": ("10.1.0.5", [])})
    app = _ctr("a", "app", {"front": ("10.1.0.6", [])}, links=["/db:/app/database"])
    other = _ctr("o", "other", {"front": ("10.1.0.7", [])})
    _run(world, db, app, other)
    assert names.addresses(app.id, "database") == Addresses(["10.1.0.5"], [])
    assert names.addresses(app.id, "database.front") == Addresses(["10.1.0.5"], [])
    assert names.addresses(other.id, "database") is None


def test_ptr_and_forwarding_policy(world) -> None:
    names = world[0]
    web = _ctr("a", "web", {"front": ("10.1.0.2", [])})
    cli = _ctr("c", "cli", {"front": ("10.1.0.9", [])})
    shut_in = _ctr("s", "shut", {"inner": ("10.3.0.2", [])})
    _run(world, web, cli, shut_in)
    assert names.hostname(cli.id, "10.1.0.2") == "web.front"
    assert names.hostname(cli.id, "10.3.0.2") is None
    assert names.hostname(shut_in.id, "10.1.0.2") is None
    assert names.may_forward(cli.id) and not names.may_forward(shut_in.id)
    assert names.addresses("x" * 64, "web") is None  # an unknown asker sees nothing


# -- answers -----------------------------------------------------------------------------------

class FakeDirectory:
    def __init__(self, forward: bool = True) -> None:
        self.forward = forward
        self.one = "10.1.0.4"

    def addresses(self, owner: str, name: str) -> Addresses | None:
        if name == "one":
            return Addresses([self.one], [])
        if name == "web":
            return Addresses(["10.1.0.2", "10.1.0.3"], [])
        if name == "many":
            return Addresses([f"10.1.{i // 250}.{i % 250 + 1}" for i in range(200)], [])
        return None

    def hostname(self, owner: str, address: str) -> str | None:
        return "web.front" if address == "10.1.0.2" else None

    def may_forward(self, owner: str) -> bool:
        return self.forward


def _ask(r: Resolver, name: str, kind: str) -> dns.message.Message | None:
    return r.answer_local("o", dns.message.make_query(name, kind))


def test_answers_a_nodata_mx_ptr_and_leaves_the_rest_to_upstream() -> None:
    r = Resolver(FakeDirectory())
    a = _ask(r, "WEB.", "A")
    assert a is not None and a.rcode() == dns.rcode.NOERROR and a.flags & dns.flags.RA
    assert sorted(str(x) for x in a.answer[0]) == ["10.1.0.2", "10.1.0.3"] and a.answer[0].ttl == 600
    for kind in ("AAAA", "MX"):  # ours, without such records: NOERROR, nothing to forward
        resp = _ask(r, "web", kind)
        assert resp is not None and resp.rcode() == dns.rcode.NOERROR and not resp.answer
    ptr = _ask(r, dns.reversename.from_address("10.1.0.2").to_text(), "PTR")
    assert ptr is not None and str(ptr.answer[0][0]) == "web.front."
    assert _ask(r, dns.reversename.from_address("10.9.9.9").to_text(), "PTR") is None
    assert _ask(r, "example.com", "A") is None and _ask(r, "web", "TXT") is None


def test_a_udp_answer_too_big_is_truncated_for_tcp() -> None:
    r = Resolver(FakeDirectory())
    q = dns.message.make_query("many", "A")
    resp = r.answer_local("o", q)
    assert resp is not None
    wire = dnswire.reply_wire(resp, dnswire.udp_limit(q))
    assert len(wire) <= 512
    small = dns.message.from_wire(wire)
    assert small.flags & dns.flags.TC and 0 < len(small.answer[0]) < 200
    full = dns.message.from_wire(dnswire.reply_wire(r.answer_local("o", q), 65535))  # type: ignore[arg-type]
    assert not full.flags & dns.flags.TC and len(full.answer[0]) == 200


def test_garbage_gets_formerr_or_nothing_and_is_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    r = Resolver(FakeDirectory())
    q, reply = r.parse("o" * 64, b"\x12\x34\x01\x00" + b"\xff" * 30)
    assert q is None and reply is not None
    parsed = dns.message.from_wire(reply)
    assert parsed.id == 0x1234 and parsed.rcode() == dns.rcode.FORMERR
    assert r.parse("o" * 64, b"\x00") == (None, None)  # not even a header
    # Over 255 bytes of name.
    header = b"\xab\xcd\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00"
    long_name = header + (b"\x3f" + b"a" * 63) * 5 + b"\x00\x00\x01\x00\x01"
    assert r.parse("o" * 64, long_name)[1] is not None
    response = dns.message.make_response(dns.message.make_query("web", "A")).to_wire()
    assert r.parse("o" * 64, response) == (None, None)  # never answer an answer
    assert r.parse("o" * 64, b"\x00" * 2 + b"\x80" + b"\x00" * 20) == (None, None)
    notify = dns.message.make_query("web", "SOA")
    notify.set_opcode(dns.opcode.NOTIFY)
    assert dns.message.from_wire(r.parse("o" * 64, notify.to_wire())[1]).rcode() == dns.rcode.NOTIMP  # type: ignore
    assert caplog.text.count("malformed DNS query from container oooooooooooo") == 1  # once a minute


# -- serving and forwarding over real sockets (127.0.0.1, no namespace) -------------------------

class Upstream(asyncio.DatagramProtocol):
    """ext.example has an address, fail.example SERVFAIL, slow.example no answer, else NXDOMAIN."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple) -> None:
        q = dns.message.from_wire(data)
        name = q.question[0].name.to_text(omit_final_dot=True)
        self.asked.append(name)
        if name == "slow.example":
            return
        r = dns.message.make_response(q)
        if name == "ext.example":
            r.answer.append(dns.rrset.from_text(q.question[0].name, 60, "IN", "A", "192.0.2.7"))
        else:
            r.set_rcode(dns.rcode.SERVFAIL if name == "fail.example" else dns.rcode.NXDOMAIN)
        self.transport.sendto(r.to_wire(), addr)  # type: ignore[attr-defined]


def _pair() -> tuple[socket.socket, socket.socket, int]:
    udp, tcp = udp_tcp_pair()
    return udp, tcp, udp.getsockname()[1]


def test_serving_and_forwarding(monkeypatch: pytest.MonkeyPatch) -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        up_sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        up_sock.bind(("127.0.0.2", 0))
        upstream = Upstream()
        up_transport, _ = await loop.create_datagram_endpoint(lambda: upstream, sock=up_sock)
        up_port = up_sock.getsockname()[1]
        directory = FakeDirectory()
        r = Resolver(directory, upstream_port=up_port, timeout=0.5)
        udp, tcp, port = _pair()
        # Two upstreams: the first one's SERVFAIL sends the query on to the second.
        await r.serve("o" * 64, (udp, tcp), ["127.0.0.2", "127.0.0.2"])
        try:
            async def ask(name: str, tcp_: bool = False, timeout: float = 5) -> dns.message.Message:
                q = dns.message.make_query(name, "A")
                if tcp_:
                    return await dns.asyncquery.tcp(q, "127.0.0.1", port=port, timeout=timeout)
                return await dns.asyncquery.udp(q, "127.0.0.1", port=port, timeout=timeout)

            assert sorted(str(x) for x in (await ask("web")).answer[0]) == ["10.1.0.2", "10.1.0.3"]
            # A single answer is kept and reused (with each query's own id) until names change.
            assert str((await ask("one")).answer[0][0]) == "10.1.0.4"
            directory.one = "10.1.0.5"
            assert str((await ask("one")).answer[0][0]) == "10.1.0.4"
            r.forget_answers()
            assert str((await ask("one")).answer[0][0]) == "10.1.0.5"
            assert [str(x) for x in (await ask("web", tcp_=True)).answer[0]] != []
            assert str((await ask("ext.example")).answer[0][0]) == "192.0.2.7"
            assert (await ask("nope.example")).rcode() == dns.rcode.NXDOMAIN
            upstream.asked.clear()
            assert (await ask("fail.example")).rcode() == dns.rcode.SERVFAIL
            assert upstream.asked == ["fail.example", "fail.example"]
            assert (await ask("slow.example")).rcode() == dns.rcode.SERVFAIL  # nobody answered in time
            # The bound on queries in flight: past it, SERVFAIL at once, local names still answered.
            monkeypatch.setattr(dns_mod, "MAX_FORWARDS_PER_CONTAINER", 2)
            slow = [asyncio.create_task(ask("slow.example")) for _ in range(2)]
            await asyncio.sleep(0.1)
            t0 = loop.time()
            assert (await ask("other.example")).rcode() == dns.rcode.SERVFAIL and loop.time() - t0 < 0.4
            assert (await ask("web")).answer
            await asyncio.gather(*slow)
            # Queries in flight when the container goes (its network removed): dropped quietly.
            pending = [asyncio.create_task(ask("slow.example", timeout=1)) for _ in range(2)]
            await asyncio.sleep(0.1)
            await r.detach("o" * 64)
            assert r._forwards == 0
            results = await asyncio.gather(*pending, return_exceptions=True)
            assert all(isinstance(x, dns.exception.Timeout) for x in results), results
        finally:
            await r.close()
            up_transport.close()
        assert not r.serving("o" * 64)

    asyncio.run(scenario())


def test_no_forwarding_from_internal_networks() -> None:
    async def scenario() -> None:
        r = Resolver(FakeDirectory(forward=False))
        q = dns.message.make_query("ext.example", "A")
        assert (await r.forward("o", q, ["127.0.0.2"], tcp=False)).rcode() == dns.rcode.SERVFAIL

    asyncio.run(scenario())


# -- resolv.conf ---------------------------------------------------------------------------------

def test_internal_resolv_conf_from_the_host_file(tmp_path: Path) -> None:
    host = tmp_path / "resolv.conf"
    host.write_text("# comment\nnameserver 127.0.0.53\nnameserver 10.0.0.1\nsearch corp.example\n"
                    "options edns0 trust-ad\n")
    text, servers = hosts.internal_resolv_conf(source=host, resolved_source=tmp_path / "none")
    assert servers == ["127.0.0.53", "10.0.0.1"]
    assert text == (
        "# Generated by Docker Engine.\n"
        "# This file can be edited; Docker Engine will not make further changes once it\n"
        "# has been modified.\n\n"
        "nameserver 127.0.0.11\nsearch corp.example\noptions edns0 trust-ad ndots:0\n\n"
        f"# Based on host file: '{host}' (internal resolver)\n"
        "# ExtServers: [host(127.0.0.53) 10.0.0.1]\n# Overrides: []\n# Option ndots from: internal\n")
    out = tmp_path / "ctr-resolv.conf"
    out.write_text(text)
    assert hosts.ext_servers(out) == servers


def test_internal_resolv_conf_overrides(tmp_path: Path) -> None:
    host = tmp_path / "resolv.conf"
    host.write_text("nameserver 10.0.0.1\noptions ndots:3\n")
    text, servers = hosts.internal_resolv_conf(["10.9.0.53"], ["a.example", "."], ["ndots:2", "timeout:1"],
                                               source=host, resolved_source=tmp_path / "none")
    assert servers == ["10.9.0.53"]
    assert "search a.example\noptions ndots:2 timeout:1\n" in text
    assert "# ExtServers: [10.9.0.53]\n# Overrides: [nameservers search options]\n# Option ndots from: override" in text
    # The host's own ndots is kept; nothing at all on the host: dockerd's public defaults.
    assert "options ndots:3\n" in hosts.internal_resolv_conf(source=host, resolved_source=tmp_path / "none")[0]
    empty = tmp_path / "empty"
    empty.write_text("")
    text, servers = hosts.internal_resolv_conf(source=empty, resolved_source=tmp_path / "none")
    assert servers == ["8.8.8.8", "8.8.4.4"] and "# Used default nameservers.\n" in text
    assert hosts.ext_servers(tmp_path / "missing") is None


# -- when the resolver listens ---------------------------------------------------------------------

class RecordingResolver:
    def __init__(self, fail: OSError | None = None) -> None:
        self.fail = fail
        self.attached: dict[str, list[str]] = {}

    def serving(self, owner: str) -> bool:
        return owner in self.attached

    async def attach(self, owner: str, path: Path, upstreams: list[str]) -> None:
        if self.fail is not None:
            raise self.fail
        self.attached[owner] = upstreams

    async def detach(self, owner: str) -> None:
        self.attached.pop(owner, None)


def test_embedded_dns_listens_for_user_networks_with_the_servers_of_resolv_conf(
        world, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from daemon.containers.container import paths
    from daemon.networks.dns import EmbeddedDns

    names = world[0]
    resolver = RecordingResolver()
    edns = EmbeddedDns(names=names, resolver=resolver, network=NETS.get, data_root=tmp_path)  # type: ignore[arg-type]
    user = _ctr("u", "user", {"front": ("10.1.0.2", [])})
    user.host_config["NetworkMode"] = "front"
    legacy = _ctr("l", "legacy", {"bridge": ("172.17.0.2", [])})
    legacy.host_config["NetworkMode"] = "bridge"
    joined = _ctr("j", "joined", {})
    joined.host_config["NetworkMode"] = "container:" + user.id
    assert edns.wanted(user) and not edns.wanted(legacy) and not edns.wanted(joined)
    resolv = paths(tmp_path, user.id)["resolv"]
    resolv.parent.mkdir(parents=True)
    hosts.write_internal_resolv_conf(resolv, dns=["10.9.0.53", "10.9.0.54"])

    async def scenario() -> None:
        await edns.start(user, tmp_path / "netns")
        await edns.start(legacy, tmp_path / "netns")
        assert resolver.attached == {user.id: ["10.9.0.53", "10.9.0.54"]}
        await edns.stop(user)
        resolv.write_text("nameserver 127.0.0.11\n")  # rewritten by the user: --dns (none) or the host's
        user.host_config["Dns"] = ["10.9.0.99"]
        await edns.start(user, tmp_path / "netns")
        assert resolver.attached[user.id] == ["10.9.0.99"]
        # A container that took 127.0.0.11:53 itself: logged, its start goes on.
        taken = EmbeddedDns(names=names, resolver=RecordingResolver(OSError(98, "Address in use")),  # type: ignore
                            network=NETS.get, data_root=tmp_path)
        await taken.start(user, tmp_path / "netns")
        assert "cannot listen on 127.0.0.11:53 (Address in use)" in caplog.text

    asyncio.run(scenario())


def test_link_environment_as_dockerd() -> None:
    from daemon.networks.names import _link_env

    web = Container(id="w" * 64, name="/web", created="", path="sh", args=[], image_id="", host_config={},
                    config={"ExposedPorts": {"8001/tcp": {}, "8000/tcp": {}, "8002/tcp": {}, "53/udp": {}},
                            "Env": ["COLOR=blue", "PATH=/bin", "HOME=/root", "EMPTY="]})
    env = _link_env("my-db", "/app", "10.0.0.2", web)
    assert env[0] == "MY_DB_PORT=udp://10.0.0.2:53"  # the lowest port
    for line in ("MY_DB_PORT_8001_TCP=tcp://10.0.0.2:8001", "MY_DB_PORT_8001_TCP_ADDR=10.0.0.2",
                 "MY_DB_PORT_8001_TCP_PORT=8001", "MY_DB_PORT_8001_TCP_PROTO=tcp",
                 "MY_DB_PORT_8000_TCP_START=tcp://10.0.0.2:8000", "MY_DB_PORT_8000_TCP_PORT_START=8000",
                 "MY_DB_PORT_8000_TCP_END=tcp://10.0.0.2:8002", "MY_DB_PORT_8000_TCP_PORT_END=8002",
                 "MY_DB_NAME=/app/my-db", "MY_DB_ENV_COLOR=blue", "MY_DB_ENV_EMPTY="):
        assert line in env, line
    assert not any("_ENV_PATH" in e or "_ENV_HOME" in e or "PORT_53_UDP_START" in e for e in env)


def test_a_legacy_resolv_conf_rebuilt_for_the_resolver(tmp_path: Path) -> None:
    own = tmp_path / "resolv.conf"
    own.write_text("nameserver 10.9.0.53\nsearch corp.example\noptions timeout:1\n")
    text, servers = hosts.rebuilt_for_internal_resolver(own)
    assert servers == ["10.9.0.53"]
    assert "nameserver 127.0.0.11\nsearch corp.example\noptions timeout:1 ndots:0\n" in text
    inode = own.stat().st_ino
    hosts.rewrite(own, text)
    assert own.stat().st_ino == inode and hosts.ext_servers(own) == ["10.9.0.53"]  # same file: bind-mounted


_LAZY_PROBE = """
import asyncio, socket, sys
from network.dns import Resolver
from tests.helpers import udp_tcp_pair

class Names:
    def addresses(self, owner, name):
        return None
    def hostname(self, owner, address):
        return None
    def may_forward(self, owner):
        return False

async def main():
    udp, tcp = udp_tcp_pair()
    r = Resolver(Names())
    await r.serve("o" * 64, (udp, tcp), [])
    assert not any(m == "dns" or m.startswith("dns.") for m in sys.modules), "dnspython imported before a query"
    # A query (for a name of nobody's, not forwarded from an internal network): SERVFAIL.
    client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    client.setblocking(False)
    query = bytes.fromhex("12340100000100000000000003776562000001" "0001")
    client.sendto(query, udp.getsockname())
    loop = asyncio.get_running_loop()
    reply = await asyncio.wait_for(loop.sock_recv(client, 512), 5)
    assert reply[:2] == b"\\x12\\x34" and reply[3] & 0x0F == 2, reply
    assert "dns.message" in sys.modules and "dns.asyncquery" not in sys.modules
    await r.close()
    client.close()
    print("ok")

asyncio.run(main())
"""


def test_dnspython_is_imported_with_the_first_query() -> None:
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-c", _LAZY_PROBE], cwd=root, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
