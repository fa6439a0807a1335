"""The endpoint template and its validation, and the container side of networking against
fakes: create-time endpoints, and which endpoint carries the default route and the published
ports as a running container connects and disconnects (no root: netlink and `ip` are faked,
port sockets are real ones on 127.0.0.1)."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from pathlib import Path
from typing import Any

import pytest

from daemon.containers.container import Container, paths
from daemon.containers.registry import ContainerRegistry
from daemon.errors import DaemonError, Forbidden, InvalidParameter, NotFound
from daemon.events import EventBus
from daemon.networks import endpoints as endpoints_mod
from daemon.networks.dns import ContainerNames, EmbeddedDns
from daemon.networks.endpoints import SandboxService
from daemon.networks.network import Network, empty_endpoint, endpoint_config
from daemon.networks.sandbox import Sandboxes
from network import inside as inside_mod
from network import ipam

# -- the template ----------------------------------------------------------------------------

# dockerd's EndpointSettings as `docker inspect` shows it (API 1.47+ has GwPriority).
ENDPOINT_FIELDS = ["IPAMConfig", "Links", "Aliases", "MacAddress", "DriverOpts", "GwPriority", "NetworkID",
                   "EndpointID", "Gateway", "IPAddress", "IPPrefixLen", "IPv6Gateway", "GlobalIPv6Address",
                   "GlobalIPv6PrefixLen", "DNSNames"]


def _net(name: str, subnet: str = "", driver: str = "bridge", **kw: Any) -> Network:
    gw = str(next(ipaddress.ip_network(subnet).hosts())) if subnet else ""
    return Network(id=(name * 64)[:64], name=name, driver=driver, created="2024-01-01T00:00:00Z", subnet=subnet,
                   gateway=gw, bridge=f"br-{name}"[:15] if driver == "bridge" else "", **kw)


def test_empty_endpoint_has_dockerd_fields_and_is_fresh_each_time() -> None:
    ep = empty_endpoint()
    assert list(ep) == ENDPOINT_FIELDS
    assert ep["GwPriority"] == 0 and ep["NetworkID"] == "" and ep["DNSNames"] is None
    ep["Aliases"] = ["x"]
    assert empty_endpoint("abc")["Aliases"] is None
    assert empty_endpoint("abc")["NetworkID"] == "abc"


def test_endpoint_config_host_and_null_are_the_template() -> None:
    host = _net("host", driver="host")
    assert endpoint_config(host, {}) == empty_endpoint(host.id)
    with pytest.raises(InvalidParameter):
        endpoint_config(host, {"Aliases": ["a"]})


def test_endpoint_config_user_network_echoes_the_request() -> None:
    n = _net("front", "10.1.0.0/24")
    ep = endpoint_config(n, {"Aliases": ["web", ""], "IPAMConfig": {"IPv4Address": "10.1.0.9"},
                             "MacAddress": "02:42:ac:11:00:09", "GwPriority": 5, "Links": ["db:d"]})
    assert [k for k in ep if not k.startswith("_")] == ENDPOINT_FIELDS
    assert ep["Aliases"] == ["web"] and ep["IPAMConfig"] == {"IPv4Address": "10.1.0.9"}
    assert ep["GwPriority"] == 5 and ep["Links"] == ["db:d"] and ep["NetworkID"] == n.id
    assert ep["MacAddress"] == ep["_UserMac"] == "02:42:ac:11:00:09"
    assert endpoint_config(n, {"GwPriority": "7"})["GwPriority"] == 0


@pytest.mark.parametrize("src, message", [
    ({"IPAMConfig": {"IPv4Address": "10.9.0.2"}}, "no configured subnet"),
    ({"IPAMConfig": {"IPv4Address": "nonsense"}}, "invalid IPv4 address"),
    ({"IPAMConfig": {"IPv6Address": "fd00::2"}}, "IPv6 is not enabled"),
    ({"MacAddress": "02:42"}, "invalid MAC address"),
])
def test_endpoint_config_rejects(src: dict, message: str) -> None:
    with pytest.raises(InvalidParameter, match=message):
        endpoint_config(_net("front", "10.1.0.0/24"), src)


def test_default_bridge_takes_no_static_address_nor_alias() -> None:
    bridge = _net("bridge", "172.17.0.0/16")
    with pytest.raises(InvalidParameter, match="user defined networks only"):
        endpoint_config(bridge, {"IPAMConfig": {"IPv4Address": "172.17.0.9"}})
    with pytest.raises(InvalidParameter, match="user defined networks"):
        endpoint_config(bridge, {"Aliases": ["a"]})


# -- fakes -----------------------------------------------------------------------------------

class FakeNetworks:
    """The NetworkService surface SandboxService uses, with real address pools."""

    nft_ok = True
    ipv6 = False
    userland_proxy = True
    bridge_disabled = False

    def __init__(self, *nets: Network) -> None:
        self.networks = {n.id: n for n in nets}
        self.pools = {n.id: ipam.SubnetAllocator(n.subnet, n.gateway) for n in nets if n.driver == "bridge"}
        self.rules: list[list[tuple[int, str]]] = []  # each sync: (host port, target ip)
        self.sandboxes: Sandboxes | None = None

    def find(self, ref: str) -> Network | None:
        return next((n for n in self.networks.values() if ref in (n.id, n.name)), None)

    def get(self, ref: str) -> Network:
        n = self.find(ref)
        if n is None:
            raise NotFound(f"network {ref} not found")
        return n

    def by_name(self, name: str) -> Network | None:
        return next((n for n in self.networks.values() if n.name == name), None)

    def bridges(self) -> list[Network]:
        return [n for n in self.networks.values() if n.driver == "bridge"]

    def host_gateway_ip(self) -> str:
        return "172.17.0.1"

    def allocate(self, n: Network, static: str = "", static6: str = "") -> tuple[str, str]:
        try:
            if static:
                self.pools[n.id].reserve(static)
                return static, ""
            return self.pools[n.id].allocate(), ""
        except ValueError as e:
            raise DaemonError(str(e)) from None

    def reserve(self, n: Network, ip: str, ip6: str = "") -> None:
        self.pools[n.id].reserve(ip)

    def release(self, n: Network, ip: str, ip6: str = "") -> None:
        if ip and n.id in self.pools:
            self.pools[n.id].release(ip)

    async def sync_firewall(self) -> None:
        assert self.sandboxes is not None
        self.rules.append([(r.host_port, r.container_ip) for r in self.sandboxes.port_rules()])


class FakeResolver:
    """The embedded resolver's surface: which containers it serves."""

    def __init__(self) -> None:
        self.attached: dict[str, list[str]] = {}

    def serving(self, owner: str) -> bool:
        return owner in self.attached

    async def attach(self, owner: str, path: Path, upstreams: list[str]) -> None:
        self.attached[owner] = upstreams

    async def detach(self, owner: str) -> None:
        self.attached.pop(owner, None)

    async def close(self) -> None:
        self.attached.clear()

    def forget_answers(self) -> None:
        pass


class FakeStore:
    async def put_container(self, cid: str, name: str, doc: dict) -> None:
        pass


class Kernel:
    """Records what would have been done to interfaces and namespaces."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.log: list[tuple[str, ...]] = []
        self.fail_veth_on = ""

        async def create(path: Path, inside: object = None) -> None:
            path.parent.mkdir(parents=True, exist_ok=True)  # the published-ports record lives beside it
            self.log.append(("netns", path.name))

        async def apply_in(path: Path, cfg: inside_mod.Inside, before: object = None) -> None:
            self.log.extend(("ip", cmd) for cmd in cfg.commands())

        async def configure(path: Path, commands: list[str], disable_ipv6: bool = False,
                            enable_ipv6_on: tuple[str, ...] = ()) -> None:
            self.log.extend(("ip", cmd) for cmd in commands)

        async def add_veth(host_if: str, bridge: str, netns: Path, inner_if: str, mac: str, mtu: int,
                           owner: str) -> None:
            if bridge == self.fail_veth_on:
                raise OSError("no such bridge")
            self.log.append(("veth", bridge, inner_if))

        async def delete(name: str) -> None:
            self.log.append(("delete", name))

        monkeypatch.setattr(endpoints_mod.netns, "create", create)
        monkeypatch.setattr(endpoints_mod.netns, "configure", configure)
        monkeypatch.setattr(endpoints_mod.inside, "apply_in", apply_in)
        monkeypatch.setattr(endpoints_mod.netns, "remove", lambda path: self.log.append(("rm-netns", path.name)))
        monkeypatch.setattr(endpoints_mod.links, "add_veth", add_veth)
        monkeypatch.setattr(endpoints_mod.links, "delete", delete)

    def routes(self) -> list[str]:
        return [e[1] for e in self.log if e[0] == "ip" and e[1].startswith("route")]


def _container(cid: str, name: str, networks: dict, port_bindings: dict | None = None) -> Container:
    return Container(id=cid * 8, name="/" + name, created="", path="sh", args=[],
                     config={"Hostname": cid[:12], "ExposedPorts": {k: {} for k in port_bindings or {}}},
                     host_config={"NetworkMode": "front", "PortBindings": port_bindings or {}}, image_id="",
                     networks=networks, state={"Running": True})


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _held(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    front, back = _net("front", "10.1.0.0/24"), _net("back", "10.2.0.0/24")
    inner = _net("inner", "10.3.0.0/24", internal=True)
    nets = FakeNetworks(front, back, inner)
    sandboxes = Sandboxes()
    nets.sandboxes = sandboxes
    registry = ContainerRegistry(FakeStore())  # type: ignore[arg-type]
    events = EventBus()
    names = ContainerNames(registry=registry, sandboxes=sandboxes, network=nets.by_name)
    resolver = FakeResolver()
    dns = EmbeddedDns(names=names, resolver=resolver, network=nets.by_name, data_root=tmp_path)  # type: ignore[arg-type]
    svc = SandboxService(networks=nets, sandboxes=sandboxes, registry=registry,  # type: ignore[arg-type]
                         events=events, exec_root=tmp_path / "exec", data_root=tmp_path, dns=dns)
    kernel = Kernel(monkeypatch)
    published: list[tuple[str, str, str]] = []
    monkeypatch.setattr(events, "publish", lambda t, action, nid, attrs=None: published.append(
        (action, nets.networks[nid].name, attrs["container"][:4] if attrs else "")))

    class World:
        pass

    w = World()
    w.__dict__.update(nets=nets, svc=svc, registry=registry, kernel=kernel, sandboxes=sandboxes, events=published,
                      front=front, back=back, inner=inner, tmp=tmp_path, resolver=resolver, names=names)
    return w


def _add(w: Any, c: Container) -> Container:
    w.registry.add(c)
    paths(w.tmp, c.id)["dir"].mkdir(parents=True)
    return c


# -- create ----------------------------------------------------------------------------------

def test_endpoints_for_create(world: Any) -> None:
    svc = world.svc
    assert svc.endpoints_for_create({}, {"NetworkMode": "container:abc"}, None) == {}
    eps = svc.endpoints_for_create({}, {"NetworkMode": "front"},
                                   {"EndpointsConfig": {"back": {"Aliases": ["b"]}, "default": {}}})
    assert list(eps) == ["front", "back"]
    assert {k: v for k, v in eps["front"].items() if not k.startswith("_")} == empty_endpoint(world.front.id)
    assert eps["back"]["Aliases"] == ["b"] and eps["back"]["NetworkID"] == world.back.id
    with pytest.raises(InvalidParameter, match="network nowhere not found"):
        svc.endpoints_for_create({}, {"NetworkMode": "nowhere"}, None)
    with pytest.raises(InvalidParameter, match="sctp"):
        svc.endpoints_for_create({}, {"NetworkMode": "front", "PortBindings": {"9/sctp": [{}]}}, None)
    with pytest.raises(InvalidParameter, match="invalid hostPort"):
        svc.endpoints_for_create({}, {"NetworkMode": "front", "PortBindings": {"80": [{"HostPort": "x"}]}}, None)


# -- start, connect, disconnect ----------------------------------------------------------------

def test_gateway_endpoint_and_ports_follow_connect_and_disconnect(world: Any) -> None:
    port = _free_port()
    c = _add(world, _container("c1", "web", {"front": endpoint_config(world.front, {})},
                               {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(port)}]}))
    svc, nets = world.svc, world.nets

    async def scenario() -> None:
        path, env = await svc.setup(c)
        assert path is not None and path.endswith(c.id[:12]) and env == []
        sb = world.sandboxes.get(c.id)
        assert (sb.gateway, sb.port_ip) == (world.front.id, "10.1.0.2")
        assert nets.rules[-1] == [(port, "10.1.0.2")]
        assert _held(port)
        assert world.kernel.routes() == ["route replace default via 10.1.0.1 dev eth0"]
        assert svc.settings(c)["Ports"] == {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(port)}]}
        assert svc.summary_ports(c) == [{"IP": "127.0.0.1", "PrivatePort": 80, "PublicPort": port, "Type": "tcp"}]

        # An internal network is never the way out: nothing moves.
        await svc.connect("inner", {"Container": c.id})
        assert sb.gateway == world.front.id and nets.rules[-1] == [(port, "10.1.0.2")]

        # A higher GwPriority takes the default route and the ports, on the same host port.
        await svc.connect("back", {"Container": c.id, "EndpointConfig": {"GwPriority": 10}})
        assert c.networks["back"]["_IfName"] == "eth2"
        assert (sb.gateway, sb.port_ip) == (world.back.id, "10.2.0.2")
        assert nets.rules[-1] == [(port, "10.2.0.2")]
        assert world.kernel.routes()[-1] == "route replace default via 10.2.0.1 dev eth2"
        assert _held(port)

        # Leaving it hands them back, and its address is free for the next container.
        await svc.disconnect("back", {"Container": c.id})
        assert "back" not in c.networks and world.back.id not in sb.interfaces
        assert (sb.gateway, sb.port_ip) == (world.front.id, "10.1.0.2")
        assert nets.rules[-1] == [(port, "10.1.0.2")]
        assert world.kernel.routes()[-1] == "route replace default via 10.1.0.1 dev eth0"
        assert nets.pools[world.back.id].allocate() == "10.2.0.2"

        # No way out left: nothing is published, the host port is free again.
        await svc.disconnect("front", {"Container": c.id})
        assert sb.gateway == "" and sb.published == [] and nets.rules[-1] == []
        assert not _held(port)
        # dockerd shows no ports at all for a container without a gateway endpoint.
        assert svc.summary_ports(c) == [] and svc.settings(c)["Ports"] == {}

        await svc.teardown(c)
        assert c.id not in world.sandboxes
        assert c.networks["inner"]["IPAddress"] == "" and c.networks["inner"]["EndpointID"] == ""

    asyncio.run(scenario())
    assert world.events == [("connect", "front", "c1c1"), ("connect", "inner", "c1c1"),
                            ("connect", "back", "c1c1"), ("disconnect", "back", "c1c1"),
                            ("disconnect", "front", "c1c1"), ("disconnect", "inner", "c1c1")]


def test_failed_connect_leaves_the_container_as_it_was(world: Any) -> None:
    c = _add(world, _container("c2", "app", {"front": endpoint_config(world.front, {})}))

    async def scenario() -> None:
        await svc.setup(c)
        world.kernel.fail_veth_on = world.back.bridge
        with pytest.raises(DaemonError, match="no such bridge"):
            await svc.connect("back", {"Container": c.id, "EndpointConfig": {"GwPriority": 10}})
        sb = world.sandboxes.get(c.id)
        assert "back" not in c.networks and world.back.id not in sb.interfaces
        assert sb.gateway == world.front.id
        assert world.nets.pools[world.back.id].allocate() == "10.2.0.2"  # the address went back
        await svc.teardown(c)

    svc = world.svc
    asyncio.run(scenario())
    assert [e for e in world.events if e[1] == "back"] == []


def test_connect_and_disconnect_refusals(world: Any) -> None:
    c = _add(world, _container("c3", "db", {"front": endpoint_config(world.front, {})}))
    host = _container("c4", "h", {})
    host.host_config["NetworkMode"] = "host"
    _add(world, host)

    async def scenario() -> None:
        with pytest.raises(Forbidden, match="already exists in network front"):
            await world.svc.connect("front", {"Container": c.id})
        with pytest.raises(Forbidden, match="sharing network namespace"):
            await world.svc.connect("back", {"Container": host.id})
        with pytest.raises(Forbidden, match="is not connected to network back"):
            await world.svc.disconnect("back", {"Container": c.id})
        with pytest.raises(NotFound, match="No such container: nobody"):
            await world.svc.disconnect("back", {"Container": "nobody"})
        # A stopped container only changes its record.
        c.state["Running"] = False
        await world.svc.connect("back", {"Container": c.id})
        assert c.networks["back"]["IPAddress"] == "" and world.kernel.log == []

    asyncio.run(scenario())


def test_user_networks_answer_names_by_dns_not_hosts_files(world: Any) -> None:
    """On a user network names come from the embedded resolver: it serves each running
    container, answers for peers as they come and go, and nobody's hosts file names a peer."""
    a = _add(world, _container("aa", "alpha", {"front": endpoint_config(world.front, {"Aliases": ["al"]})}))
    b = _add(world, _container("bb", "beta", {"front": endpoint_config(world.front, {})}))

    async def scenario() -> None:
        await world.svc.setup(a)
        hosts_before = paths(world.tmp, a.id)["hosts"].read_text()
        await world.svc.setup(b)
        assert paths(world.tmp, a.id)["hosts"].read_text() == hosts_before  # not rewritten when b came
        assert "beta" not in hosts_before and "10.1.0.2\taa" in hosts_before  # its own line only
        assert set(world.resolver.attached) == {a.id, b.id}
        assert world.names.addresses(a.id, "beta").v4 == ["10.1.0.3"]
        assert world.names.addresses(b.id, "al").v4 == ["10.1.0.2"]
        await world.svc.teardown(b)
        assert set(world.resolver.attached) == {a.id}
        assert world.names.addresses(a.id, "beta") is None

    asyncio.run(scenario())


def test_default_bridge_has_no_resolver(world: Any) -> None:
    bridge = _net("bridge", "172.17.0.0/16")
    world.nets.networks[bridge.id] = bridge
    world.nets.pools[bridge.id] = ipam.SubnetAllocator(bridge.subnet, bridge.gateway)
    c = _add(world, _container("cc", "cee", {"bridge": endpoint_config(bridge, {})}))
    c.host_config["NetworkMode"] = "bridge"
    assert not world.svc.uses_internal_dns(c)

    async def scenario() -> None:
        await world.svc.setup(c)
        assert world.resolver.attached == {}
        await world.svc.teardown(c)

    asyncio.run(scenario())


def test_deferred_inside_fails_the_start_and_teardown_waits_for_it(world: Any) -> None:
    """The inside of a namespace made ahead is configured while the monitor starts (setup leaves
    it pending): ready() reports its failure as the start's, and a teardown never runs while
    its thread may still be at work."""
    c = _add(world, _container("c5", "db", {"front": endpoint_config(world.front, {})}))
    svc = world.svc

    async def scenario() -> None:
        await svc.setup(c)
        await svc.ready(c)  # nothing pending: returns at once
        sb = world.sandboxes.get(c.id)
        gate = asyncio.Event()

        async def configuring() -> None:
            await gate.wait()
            raise OSError(17, "File exists")

        sb.pending = asyncio.ensure_future(configuring())
        ready = asyncio.ensure_future(svc.ready(c))
        teardown = asyncio.ensure_future(svc.teardown(c))
        await asyncio.sleep(0.01)
        assert not ready.done() and not teardown.done()
        assert world.sandboxes.get(c.id) is sb and ("rm-netns", c.id[:12]) not in world.kernel.log
        gate.set()
        with pytest.raises(DaemonError, match="failed to set up the network of container"):
            await ready
        await teardown
        assert world.sandboxes.get(c.id) is None and ("rm-netns", c.id[:12]) in world.kernel.log

    asyncio.run(scenario())
