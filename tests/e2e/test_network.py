"""Networking end to end: bridge/host/none/container modes, user networks, name resolution,
isolation, published ports with a real data path, and cleanup (300 run/rm cycles).
Long on purpose: one file per CLI area; its tests share the helpers below (http_get,
our_veths, nft_table...).

Traffic only goes to 127.0.0.1 or to addresses on bridges this session's daemons made.
Containers talk with busybox `nc` and `ping` (this busybox's wget crashes).
"""

from __future__ import annotations

import ipaddress
import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.e2e.helpers import inspect, nothing_created, wait_for
from tests.helpers import Daemon, allocate_subnet, import_busybox

pytestmark = pytest.mark.e2e

HTTPD = "mkdir -p /www && echo hello-$HOSTNAME > /www/index.html && exec httpd -f -p 80 -h /www"
UDP_ECHO = ("import socket\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\ns.bind(('0.0.0.0', 81))\n"
            "while True:\n    data, peer = s.recvfrom(2048)\n    s.sendto(data, peer)\n")
GET = 'printf "GET /index.html HTTP/1.0\\r\\n\\r\\n" | nc -w 3 {} {} | tail -n 1'


def http_get(port: int, host: str = "127.0.0.1", timeout: float = 3) -> str:
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.sendall(b"GET /index.html HTTP/1.0\r\n\r\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    return data.decode(errors="replace").rsplit("\r\n\r\n", 1)[-1].strip()


def wait_http(port: int, host: str = "127.0.0.1") -> str:
    def attempt() -> str:
        try:
            return http_get(port, host, timeout=1)
        except OSError:
            return ""

    return str(wait_for(attempt, timeout=10, what=f"HTTP on {host}:{port}"))


def our_veths(owner_ids: set[str] | None = None, bridge: str = "") -> list[str]:
    """Veths pydockerd made for containers (it tags them with an ifalias), by owner or by
    bridge: other daemons on the host may be creating their own meanwhile. Those made ahead
    (owner "pool", daemon/networks/pool.py) are no container's: they come and go."""
    argv = ["ip", "-o", "link", "show", "type", "veth"] + (["master", bridge] if bridge else [])
    out = subprocess.run(argv, capture_output=True, text=True).stdout
    found = []
    for line in out.splitlines():
        if "alias pydockerd:" not in line:
            continue
        owner = line.rsplit("alias pydockerd:", 1)[1].split()[0]
        if owner != "pool" and (owner_ids is None or owner in owner_ids):
            found.append(line.split(":")[1].strip())
    return found


def pool_veths(bridge: str) -> set[str]:
    """The veths made ahead for containers to come (daemon/networks/pool.py)."""
    out = subprocess.run(["ip", "-o", "link", "show", "type", "veth", "master", bridge],
                         capture_output=True, text=True).stdout
    return {line.split(":")[1].strip().split("@")[0] for line in out.splitlines() if "alias pydockerd:pool" in line}


def nft_table(d: Daemon) -> str:
    name = "pydockerd_" + d.bridge.replace("-", "_")
    return subprocess.run(["nft", "list", "table", "ip", name], capture_output=True, text=True).stdout


def netns_files(d: Daemon, pool: bool = False) -> set[str]:
    """The daemon's namespace files; those made ahead (pool-*) only with `pool`."""
    try:
        return {f for f in os.listdir(d.exec_root / "netns") if pool or not f.startswith("pool-")}
    except FileNotFoundError:
        return set()


def bridge_net(d: Daemon) -> tuple[str, str]:
    gw, _, plen = d.bip.partition("/")
    return gw, plen


# --------------------------------------------------------------------------- modes


def test_default_bridge_gives_eth0_address_route_mtu(d: Daemon, uname) -> None:
    gw, plen = bridge_net(d)
    prefix = gw.rsplit(".", 1)[0] + "."
    d.docker("run", "-d", "--name", uname("b"), "busybox", "sleep", "60")
    out = d.docker("exec", uname("b"), "sh", "-c",
                   "ip -o -4 addr show eth0; ip route; cat /sys/class/net/eth0/mtu; ip -o addr | wc -l").stdout
    assert f"inet {prefix}" in out and f"/{plen} " in out, out
    assert f"default via {gw} dev eth0" in out, out
    assert "\n1500\n" in out, out
    assert out.strip().endswith("2"), f"IPv6 should be off inside (only lo + eth0 inet): {out}"
    data = inspect(d, uname("b"))
    ns = data["NetworkSettings"]
    ep = ns["Networks"]["bridge"]
    assert ep["IPAddress"].startswith(prefix) and ep["Gateway"] == gw and ep["IPPrefixLen"] == int(plen)
    octets = [int(x) for x in ep["IPAddress"].split(".")]
    assert ep["MacAddress"] == "02:42:" + ":".join(f"{o:02x}" for o in octets)
    assert len(ep["NetworkID"]) == 64 and len(ep["EndpointID"]) == 64
    assert ns["IPAddress"] == ep["IPAddress"] and ns["MacAddress"] == ep["MacAddress"]
    assert ns["SandboxKey"] and Path(ns["SandboxKey"]).exists()
    netinfo = json.loads(d.docker("network", "inspect", "bridge").stdout)[0]
    assert data["Id"] in netinfo["Containers"]
    assert netinfo["Containers"][data["Id"]]["IPv4Address"] == f"{ep['IPAddress']}/{plen}"
    assert netinfo["Options"]["com.docker.network.bridge.name"] == d.bridge
    d.docker("rm", "-f", uname("b"))
    after = inspect_missing(d, data["Id"])
    assert after, "container still listed"
    assert not our_veths({data["Id"]}), "veth left behind"
    assert data["Id"][:12] not in netns_files(d)


def inspect_missing(d: Daemon, cid: str) -> bool:
    return d.docker("inspect", cid, check=False).returncode != 0


def test_none_host_and_container_modes(d: Daemon, uname) -> None:
    out = d.docker("run", "--rm", "--net=none", "busybox", "ip", "-o", "addr").stdout
    assert len(out.splitlines()) == 1 and "inet 127.0.0.1/8" in out, f"only lo, IPv4 only, as dockerd: {out}"
    out = d.docker("run", "--rm", "--net=host", "busybox", "hostname").stdout.strip()
    assert out == socket.gethostname()
    d.docker("run", "-d", "--name", uname("web"), "busybox", "sh", "-c", HTTPD)
    web_ip = inspect(d, uname("web"))["NetworkSettings"]["IPAddress"]
    out = d.docker("run", "--rm", f"--net=container:{uname('web')}", "busybox", "sh", "-c",
                   "ip -o -4 addr show eth0; " + GET.format("127.0.0.1", 80)).stdout
    assert web_ip in out and "hello-" in out, out
    r = d.docker("run", "--rm", f"--net=container:{uname('web')}", "-p", "8999:80", "busybox", "true", check=False)
    assert r.returncode != 0 and "conflicting options: port publishing and the container type network mode" \
        in r.stderr
    r = d.docker("run", "--rm", f"--net=container:{uname('web')}", "-h", "x", "busybox", "true", check=False)
    assert r.returncode != 0 and "conflicting options: hostname and the network mode" in r.stderr


def test_containers_on_default_bridge_reach_each_other_and_links(d: Daemon, uname) -> None:
    d.docker("run", "-d", "--name", uname("web"), "--expose", "80", "-e", "COLOR=blue", "busybox", "sh", "-c", HTTPD)
    ip = inspect(d, uname("web"))["NetworkSettings"]["IPAddress"]
    out = d.docker("run", "--rm", "busybox", "sh", "-c", GET.format(ip, 80)).stdout
    assert "hello-" in out
    out = d.docker("run", "--rm", "--link", f"{uname('web')}:webalias", "busybox", "sh", "-c",
                   "grep webalias /etc/hosts; env | grep WEBALIAS_ | sort; " + GET.format("webalias", 80)).stdout
    short = inspect(d, uname("web"))["Id"][:12]
    assert f"{ip}\twebalias {short} {uname('web')}" in out, out
    for line in (f"WEBALIAS_PORT_80_TCP=tcp://{ip}:80", f"WEBALIAS_PORT_80_TCP_ADDR={ip}",
                 "WEBALIAS_PORT_80_TCP_PORT=80", "WEBALIAS_PORT_80_TCP_PROTO=tcp", "WEBALIAS_ENV_COLOR=blue"):
        assert line in out, out
    assert "hello-" in out
    out = d.docker("run", "--rm", "--add-host", "foo.example:10.1.2.3", "--dns", "10.9.9.9", "--dns-search",
                   "example.org", "-h", "myhost", "--domainname", "dom.test", "busybox", "sh", "-c",
                   "cat /etc/hosts /etc/resolv.conf; hostname").stdout
    assert "10.1.2.3\tfoo.example" in out and "nameserver 10.9.9.9" in out and "search example.org" in out
    assert "\tmyhost.dom.test myhost\n" in out, out


# --------------------------------------------------------------------------- published ports


def test_publish_tcp_udp_port_command_and_ps(d: Daemon, uname) -> None:
    name = uname("pub")
    d.docker("run", "-d", "--name", name, "-p", "80", "-p", "81/udp", "-p", "127.0.0.1::80",
             "--expose", "2000-2001", "busybox", "sh", "-c", HTTPD)
    ports = inspect(d, name)["NetworkSettings"]["Ports"]
    assert ports["2000/tcp"] is None and ports["2001/tcp"] is None
    tcp = ports["80/tcp"]
    assert [b["HostIp"] for b in tcp] == ["0.0.0.0", "::", "127.0.0.1"], tcp
    p_any, p_lo = int(tcp[0]["HostPort"]), int(tcp[2]["HostPort"])
    assert tcp[1]["HostPort"] == tcp[0]["HostPort"] and p_any != p_lo
    p_udp = int(ports["81/udp"][0]["HostPort"])
    out = set(d.docker("port", name).stdout.splitlines())
    assert out == {f"80/tcp -> 0.0.0.0:{p_any}", f"80/tcp -> [::]:{p_any}", f"80/tcp -> 127.0.0.1:{p_lo}",
                   f"81/udp -> 0.0.0.0:{p_udp}", f"81/udp -> [::]:{p_udp}"}, out
    assert d.docker("port", name, "81/udp").stdout.splitlines()[0] == f"0.0.0.0:{p_udp}"
    ps = d.docker("ps", "--filter", f"name={name}", "--format", "{{.Ports}}").stdout.strip()
    assert set(ps.split(", ")) == {"2000-2001/tcp", f"0.0.0.0:{p_any}->80/tcp", f"[::]:{p_any}->80/tcp",
                                   f"127.0.0.1:{p_lo}->80/tcp", f"0.0.0.0:{p_udp}->81/udp",
                                   f"[::]:{p_udp}->81/udp"}, ps
    # The data path: DNAT for 127.0.0.1 (route_localnet + masquerade), the proxy for [::1],
    # and the bridge's own address from another network namespace (a second container).
    assert wait_http(p_any).startswith("hello-")
    assert wait_http(p_lo).startswith("hello-")
    assert http_get(p_any, "::1").startswith("hello-")
    gw, _ = bridge_net(d)
    out = d.docker("run", "--rm", "busybox", "sh", "-c", GET.format(gw, p_any)).stdout
    assert "hello-" in out
    # Hairpin: the container reaches its own published port through the host.
    out = d.docker("exec", name, "sh", "-c", GET.format(gw, p_any)).stdout
    assert "hello-" in out
    # UDP through DNAT from 127.0.0.1, both ways. busybox has no UDP server, so an echo
    # server runs in the container's network namespace (the test, not the daemon, enters it).
    sandbox = inspect(d, name)["NetworkSettings"]["SandboxKey"]
    echo = subprocess.Popen(["nsenter", f"--net={sandbox}", sys.executable, "-c", UDP_ECHO])
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(0.5)

            def echoed() -> bool:
                s.sendto(b"udp-hello", ("127.0.0.1", p_udp))
                try:
                    return s.recvfrom(100)[0] == b"udp-hello"
                except OSError:
                    return False

            wait_for(echoed, timeout=10, what="UDP echo through the published port")
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s6:  # [::] goes through the proxy
            s6.settimeout(2)
            s6.sendto(b"udp-v6", ("::1", p_udp))
            assert s6.recvfrom(100)[0] == b"udp-v6"
    finally:
        echo.kill()
        echo.wait()
    d.docker("rm", "-f", name)
    assert f"dport {p_any} " not in nft_table(d)
    with socket.socket() as s:  # the port is free again
        s.bind(("0.0.0.0", p_any))


def test_publish_all_P_and_ranges(d: Daemon, uname) -> None:
    name = uname("P")
    d.docker("run", "-d", "--name", name, "-P", "--expose", "3000", "--expose", "4000/udp", "busybox",
             "sleep", "60")
    out = d.docker("port", name).stdout.splitlines()
    assert len(out) == 4 and out[0].startswith("3000/tcp -> 0.0.0.0:") and out[2].startswith("4000/udp -> 0.0.0.0:")
    base = _free_port_range(3)
    name2 = uname("range")
    d.docker("run", "-d", "--name", name2, "-p", f"{base}-{base + 2}:{80}-{82}", "busybox", "sleep", "60")
    ports = inspect(d, name2)["NetworkSettings"]["Ports"]
    assert [ports[f"{80 + i}/tcp"][0]["HostPort"] for i in range(3)] == [str(base + i) for i in range(3)]


def _free_port_range(n: int) -> int:
    for base in range(39000, 60000, 7):
        socks = []
        try:
            for p in range(base, base + n):
                s = socket.socket()
                socks.append(s)
                s.bind(("0.0.0.0", p))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise AssertionError("no free port range")


def test_port_conflicts_leave_nothing_behind(d: Daemon, uname) -> None:
    port = _free_port_range(1)
    d.docker("run", "-d", "--name", uname("first"), "-p", f"{port}:80", "busybox", "sleep", "60")
    veths, files = our_veths(bridge=d.bridge), netns_files(d)
    r = d.docker("run", "-d", "--name", uname("second"), "-p", f"{port}:80", "busybox", "sleep", "60", check=False)
    assert r.returncode != 0
    assert f"Bind for 0.0.0.0:{port} failed: port is already allocated" in r.stderr, r.stderr
    assert "driver failed programming external connectivity on endpoint " + uname("second") in r.stderr
    assert our_veths(bridge=d.bridge) == veths and netns_files(d) == files
    assert inspect(d, uname("second"))["State"]["Running"] is False
    held = _free_port_range(1)
    with socket.socket() as s:
        s.bind(("0.0.0.0", held))
        s.listen()
        r = d.docker("run", "--rm", "-p", f"{held}:80", "busybox", "true", check=False)
    assert r.returncode != 0 and f"0.0.0.0:{held}: bind: address already in use" in r.stderr, r.stderr
    assert our_veths(bridge=d.bridge) == veths and netns_files(d) == files
    assert f"dport {held} " not in nft_table(d)
    assert "masquerade" in nft_table(d) and "oifname != " not in nft_table(d), "--ip-masq=false: no NAT out"


# --------------------------------------------------------------------------- user networks


def test_network_create_ls_inspect_rm_prune(d: Daemon, uname) -> None:
    sub = allocate_subnet()
    n1, n2 = uname("n1"), uname("my net")
    nid = d.docker("network", "create", n1).stdout.strip()
    assert len(nid) == 64
    gw = str(sub.network_address + 1)
    rng = str(list(sub.subnets(new_prefix=28))[1])
    bridge_name = "pydx" + nid[:6]
    d.docker("network", "create", "--subnet", str(sub), "--gateway", gw, "--ip-range", rng, "--internal",
             "--label", "k=v", "-o", f"com.docker.network.bridge.name={bridge_name}", n2)
    r = d.docker("network", "create", n1, check=False)
    assert r.returncode != 0 and f"network with name {n1} already exists" in r.stderr
    info = json.loads(d.docker("network", "inspect", n2).stdout)[0]
    assert info["Name"] == n2 and info["Driver"] == "bridge" and info["Internal"] is True
    assert info["IPAM"] == {"Driver": "default", "Options": {},
                            "Config": [{"Subnet": str(sub), "Gateway": gw, "IPRange": rng}]}
    assert info["Labels"] == {"k": "v"} and info["Options"] == {"com.docker.network.bridge.name": bridge_name}
    assert Path(f"/sys/class/net/{bridge_name}").exists()
    ls = d.docker("network", "ls", "--format", "{{.Name}}|{{.Driver}}|{{.Scope}}").stdout.splitlines()
    assert {"bridge|bridge|local", "host|host|local", "none|null|local", f"{n1}|bridge|local",
            f"{n2}|bridge|local"} <= set(ls)
    q = d.docker("network", "ls", "-q", "--filter", "label=k=v").stdout.split()
    assert q == [info["Id"][:12]]
    out = d.docker("run", "--rm", "--network", n2, "busybox", "ip", "-o", "-4", "addr", "show", "eth0").stdout
    # With a gateway given, the range's first address is the first container's (as dockerd).
    assert f"inet {list(sub.subnets(new_prefix=28))[1].network_address}/24" in out, out
    r = d.docker("network", "rm", "bridge", check=False)
    assert r.returncode != 0 and "pre-defined network" in r.stderr
    d.docker("network", "rm", n1)
    out = d.docker("network", "prune", "-f", "--filter", "label=k=v").stdout
    assert n2 in out
    assert not Path(f"/sys/class/net/{bridge_name}").exists()
    r = d.docker("network", "rm", uname("nope"), check=False)
    assert r.returncode != 0 and f"network {uname('nope')} not found" in r.stderr


def test_user_network_names_aliases_isolation_internal(d: Daemon, uname) -> None:
    s1, s2, s3 = allocate_subnet(), allocate_subnet(), allocate_subnet()
    n1, n2, n3 = uname("a"), uname("b"), uname("int")
    for n, s in ((n1, s1), (n2, s2)):
        d.docker("network", "create", "--subnet", str(s), n)
    d.docker("network", "create", "--subnet", str(s3), "--internal", n3)
    try:
        d.docker("run", "-d", "--name", uname("srv"), "--network", n1, "--network-alias", "alpha",
                 "busybox", "sh", "-c", HTTPD)
        srv_ip = inspect(d, uname("srv"))["NetworkSettings"]["Networks"][n1]["IPAddress"]
        d.docker("run", "-d", "--name", uname("peer"), "--network", n1, "busybox", "sleep", "60")
        # The first container finds one started later (the embedded resolver, tests/e2e/test_dns.py).
        d.docker("run", "-d", "--name", uname("late"), "--network", n1, "busybox", "sleep", "60")
        out = d.docker("exec", uname("srv"), "sh", "-c", f"ping -c1 -W2 {uname('late')} >/dev/null && echo OK").stdout
        assert "OK" in out
        for target in (uname("srv"), "alpha"):
            out = d.docker("exec", uname("peer"), "sh", "-c", GET.format(target, 80)).stdout
            assert "hello-" in out, (target, out)
        ep = inspect(d, uname("srv"))["NetworkSettings"]["Networks"][n1]
        assert ep["Aliases"] == ["alpha"] and ep["DNSNames"][0] == uname("srv") and "alpha" in ep["DNSNames"]
        # Isolation: another user network cannot reach it.
        out = d.docker("run", "--rm", "--network", n2, "busybox", "sh", "-c",
                       f"ping -c1 -W1 {srv_ip} >/dev/null && echo REACHED || echo BLOCKED").stdout
        assert "BLOCKED" in out
        # --internal: no default route, nothing beyond the bridge.
        out = d.docker("run", "--rm", "--network", n3, "busybox", "sh", "-c",
                       f"ip route; ping -c1 -W1 {srv_ip} >/dev/null && echo REACHED || echo BLOCKED").stdout
        assert "default" not in out and "BLOCKED" in out, out
        # connect with --alias/--ip: two interfaces, resolvable alias, then disconnect.
        ip2 = str(s2.network_address + 50)
        d.docker("run", "-d", "--name", uname("n2peer"), "--network", n2, "busybox", "sleep", "60")
        d.docker("network", "connect", "--alias", "beta", "--ip", ip2, n2, uname("srv"))
        out = d.docker("exec", uname("srv"), "sh", "-c", f"ping -c1 -W2 {uname('n2peer')} >/dev/null && echo OK").stdout
        assert "OK" in out, "a running container resolves the peers of a network it is connected to"
        out = d.docker("exec", uname("srv"), "ip", "-o", "-4", "addr").stdout
        assert f"eth1    inet {ip2}/24" in out, out
        info = json.loads(d.docker("network", "inspect", n2).stdout)[0]
        srv_id = inspect(d, uname("srv"))["Id"]
        assert info["Containers"][srv_id]["IPv4Address"] == f"{ip2}/24"
        ep2 = inspect(d, uname("srv"))["NetworkSettings"]["Networks"][n2]
        assert ep2["IPAMConfig"] == {"IPv4Address": ip2} and ep2["Aliases"] == ["beta"]
        assert ep2["MacAddress"] == "02:42:" + ":".join(f"{int(o):02x}" for o in ip2.split("."))
        out = d.docker("run", "--rm", "--network", n2, "busybox", "sh", "-c", GET.format("beta", 80)).stdout
        assert "hello-" in out
        r = d.docker("network", "rm", n2, check=False)
        assert r.returncode != 0 and "has active endpoints" in r.stderr
        d.docker("network", "disconnect", n2, uname("srv"))
        out = d.docker("exec", uname("srv"), "ip", "-o", "-4", "addr").stdout
        assert "eth1" not in out
    finally:
        for c in ("srv", "peer", "late", "n2peer"):
            d.docker("rm", "-f", uname(c), check=False)
        for n in (n1, n2, n3):
            d.docker("network", "rm", n, check=False)


def test_static_ip_and_mac(d: Daemon, uname) -> None:
    sub = allocate_subnet()
    n = uname("st")
    d.docker("network", "create", "--subnet", str(sub), n)
    try:
        ip = str(sub.network_address + 77)
        out = d.docker("run", "--rm", "--network", n, "--ip", ip, "--mac-address", "02:11:22:33:44:55", "busybox",
                       "sh", "-c", "ip -o -4 addr show eth0; cat /sys/class/net/eth0/address").stdout
        assert f"inet {ip}/24" in out and "02:11:22:33:44:55" in out, out
        r = d.docker("run", "--rm", "--ip", "10.0.0.5", "busybox", "true", check=False)
        assert r.returncode != 0 and "user specified IP address is supported on user defined networks only" \
            in r.stderr
    finally:
        d.docker("network", "rm", n)


# --------------------------------------------------------------------------- cleanup and faults


def test_300_run_rm_cycles_leave_nothing(d: Daemon) -> None:
    before_veths, before_ns = set(our_veths(bridge=d.bridge)), netns_files(d)
    ids: list[str] = []
    errors: list[str] = []
    lock = threading.Lock()

    def one(i: int) -> None:
        body = {"Image": "busybox", "Cmd": ["sleep", "30"], "HostConfig": {}}
        if i % 3 == 0:
            body["HostConfig"]["PortBindings"] = {"80/tcp": [{"HostPort": ""}], "81/udp": [{"HostPort": ""}]}
        r = d.api("POST", "/containers/create", body)
        if r.status != 201:
            errors.append(f"create: {r.status} {r.text}")
            return
        cid = r.json()["Id"]
        with lock:
            ids.append(cid)
        r = d.api("POST", f"/containers/{cid}/start")
        if r.status != 204:
            errors.append(f"start: {r.status} {r.text}")
        r = d.api("DELETE", f"/containers/{cid}?force=1", timeout=60)
        if r.status != 204:
            errors.append(f"rm: {r.status} {r.text}")

    t0 = time.monotonic()
    for batch in range(30):
        threads = [threading.Thread(target=one, args=(batch * 10 + i,)) for i in range(10)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    elapsed = time.monotonic() - t0
    assert not errors, errors[:5]
    assert len(ids) == 300
    assert set(our_veths(bridge=d.bridge)) == before_veths, "veths left behind"
    assert our_veths(set(ids)) == []
    assert netns_files(d) == before_ns, "netns files left behind"
    assert "dnat to" not in nft_table(d), nft_table(d)
    mounts = Path("/proc/self/mountinfo").read_text()
    assert not [cid for cid in ids if f"{d.exec_root}/netns/{cid[:12]} " in mounts], "netns mounts left behind"
    print(f"300 run/rm cycles in {elapsed:.1f}s")


def test_restart_keeps_ports_and_crash_is_reconciled(new_daemon, busybox_rootfs: Path) -> None:
    dm = new_daemon()
    import_busybox(dm, busybox_rootfs)
    port = _free_port_range(1)
    dm.docker("run", "-d", "--name", "keep", "-p", f"{port}:80", "busybox", "sh", "-c", HTTPD)
    dm.docker("run", "-d", "--name", "dies", "busybox", "sleep", "300")
    assert wait_http(port).startswith("hello-")
    dm.restart()
    assert wait_http(port).startswith("hello-")
    assert http_get(port, "::1").startswith("hello-")
    dies = inspect(dm, "dies")["Id"]
    wait_for(lambda: len(pool_veths(dm.bridge)) == 2, timeout=10, what="namespaces made ahead")
    old_pool = (netns_files(dm, pool=True) - netns_files(dm), pool_veths(dm.bridge))
    dm.kill()  # a crash: no shutdown code runs
    monitor = dm.exec_root / "ctr" / dies[:12] / "monitor.pid"
    os.kill(int(monitor.read_text()), 9)
    time.sleep(0.5)
    assert dies[:12] in netns_files(dm)
    dm.pidfile.unlink(missing_ok=True)
    dm.start()
    wait_for(lambda: dies[:12] not in netns_files(dm), timeout=10, what="leftover netns removed")
    assert our_veths({dies}) == []
    # What was made ahead before the crash is gone too (a new pool is made after that).
    wait_for(lambda: not old_pool[0] & netns_files(dm, pool=True) and not old_pool[1] & pool_veths(dm.bridge),
             timeout=10, what="the crashed daemon's namespaces made ahead removed")
    assert inspect(dm, "dies")["State"]["Running"] is False
    assert wait_http(port).startswith("hello-")
    dm.docker("rm", "-f", "keep", "dies")
    assert netns_files(dm) == set() and "dnat to" not in nft_table(dm)
    rc = dm.stop()
    assert rc == 0
    assert nft_table(dm) == "", "rules stay after the last container and the daemon are gone"
    assert netns_files(dm, pool=True) == set() and not pool_veths(dm.bridge), "namespaces made ahead outlive the daemon"


def test_ipv6_network_addresses_ip6_and_routes(d: Daemon, uname) -> None:
    sub4 = allocate_subnet()
    sub6 = str(ipaddress.IPv6Network(f"fd{os.getpid() % 256:02x}:{os.urandom(2).hex()}:{os.urandom(2).hex()}::/64"))
    n = uname("v6")
    d.docker("network", "create", "--ipv6", "--subnet", str(sub4), "--subnet", sub6, n)
    try:
        info = json.loads(d.docker("network", "inspect", n).stdout)[0]
        prefix = sub6.split("::")[0]
        assert info["EnableIPv6"] is True
        assert info["IPAM"]["Config"][1] == {"Subnet": sub6, "Gateway": f"{prefix}::1"}
        d.docker("run", "-d", "--name", uname("a"), "--network", n, "busybox", "sleep", "60")
        ep = inspect(d, uname("a"))["NetworkSettings"]["Networks"][n]
        assert ep["GlobalIPv6Address"] == f"{prefix}::2" and ep["GlobalIPv6PrefixLen"] == 64
        assert ep["IPv6Gateway"] == f"{prefix}::1"
        out = d.docker("run", "--rm", "--network", n, "--ip6", f"{prefix}::99", "busybox", "sh", "-c",
                       f"ip -o -6 addr show eth0; ip -6 route; ping6 -c1 -W2 {prefix}::2 >/dev/null && echo OK6").stdout
        assert f"inet6 {prefix}::99/64" in out and f"default via {prefix}::1 dev eth0" in out and "OK6" in out, out
        # Without --ipv6 an IPv6 pool is only recorded (as dockerd): no IPv6 address is given out.
        d.docker("network", "create", "--subnet", "fd00:1::/64", uname("nov6"))
        info = json.loads(d.docker("network", "inspect", uname("nov6")).stdout)[0]
        assert info["EnableIPv6"] is False and {"Subnet": "fd00:1::/64"} in info["IPAM"]["Config"], info
        d.docker("run", "-d", "--name", uname("b"), "--network", uname("nov6"), "--ip6", "fd00:1::9", "busybox",
                 "sleep", "60")
        ep = inspect(d, uname("b"))["NetworkSettings"]["Networks"][uname("nov6")]
        assert ep["IPAMConfig"]["IPv6Address"] == "fd00:1::9" and ep["GlobalIPv6Address"] == "", ep
        r = d.docker("run", "--rm", "--network", uname("nov6"), "--ip6", "fd00:2::9", "busybox", "true", check=False)
        assert r.returncode != 0 and "no configured subnet" in r.stderr, r.stderr
    finally:
        d.docker("rm", "-f", uname("a"), uname("b"), check=False)
        d.docker("network", "rm", n)
        d.docker("network", "rm", uname("nov6"), check=False)


# --------------------------------------------------------------------------- gateway endpoint


def _routes(d: Daemon, name: str) -> str:
    return d.docker("exec", name, "ip", "route").stdout


def _refused(port: int, host: str = "127.0.0.1") -> bool:
    try:
        http_get(port, host, timeout=1)
    except OSError:
        return True
    return False


def test_default_route_and_published_ports_follow_the_gateway_endpoint(d: Daemon, uname) -> None:
    sub = allocate_subnet()
    n1, pd, other = uname("n1"), uname("pd"), uname("other")
    d.docker("network", "create", "--subnet", str(sub), n1)
    try:
        port = _free_port_range(1)
        d.docker("run", "-d", "--name", pd, "-p", f"{port}:80", "busybox", "sh", "-c", HTTPD)
        me = f"hello-{inspect(d, pd)['Config']['Hostname']}"
        assert wait_http(port) == me
        old_ip = inspect(d, pd)["NetworkSettings"]["Networks"]["bridge"]["IPAddress"]
        d.docker("network", "connect", n1, pd)
        n1_ip = inspect(d, pd)["NetworkSettings"]["Networks"][n1]["IPAddress"]
        assert f"default via {bridge_net(d)[0]} dev eth0" in _routes(d, pd), "bridge sorts before n1: it stays"
        d.docker("network", "disconnect", "bridge", pd)
        assert f"default via {sub.network_address + 1} dev eth1" in _routes(d, pd)
        # The freed address goes to the next container: it must not get pd's published port.
        d.docker("run", "-d", "--name", other, "busybox", "sh", "-c", HTTPD)
        assert inspect(d, other)["NetworkSettings"]["IPAddress"] == old_ip
        assert wait_http(port) == me
        assert http_get(port, "::1") == me, "the [::] proxy moved too"
        assert f"dnat to {n1_ip}:80" in nft_table(d) and f"dnat to {old_ip}:80" not in nft_table(d)
        # Reconnecting the default bridge makes it the gateway again (dockerd orders by name).
        d.docker("network", "connect", "bridge", pd)
        new_ip = inspect(d, pd)["NetworkSettings"]["Networks"]["bridge"]["IPAddress"]
        assert f"default via {bridge_net(d)[0]} dev eth0" in _routes(d, pd)
        assert f"dnat to {new_ip}:80" in nft_table(d)
        assert wait_http(port) == me
        # No network with a way out left: nothing is published; a new one publishes again.
        d.docker("network", "disconnect", "bridge", pd)
        d.docker("network", "disconnect", n1, pd)
        assert inspect(d, pd)["NetworkSettings"]["Ports"] == {}
        assert d.docker("port", pd).stdout.strip() == "" and _refused(port)
        d.docker("network", "connect", n1, pd)
        assert f"default via {sub.network_address + 1} dev " in _routes(d, pd)
        assert wait_http(port) == me
    finally:
        d.docker("rm", "-f", pd, other, check=False)
        d.docker("network", "rm", n1, check=False)


def test_restart_then_connect_uses_the_real_interface_names(new_daemon, busybox_rootfs: Path) -> None:
    dm = new_daemon()
    import_busybox(dm, busybox_rootfs)
    subs = [allocate_subnet() for _ in range(3)]
    try:
        for i, sub in enumerate(subs):
            dm.docker("network", "create", "--subnet", str(sub), f"n{i}")
        dm.docker("run", "-d", "--name", "cc", "--network", "n0", "busybox", "sleep", "300")
        dm.docker("network", "connect", "n1", "cc")
        dm.docker("network", "disconnect", "n0", "cc")  # n1 stays on eth1, eth0 is free
        dm.restart()
        dm.docker("network", "connect", "n2", "cc")
        out = dm.docker("exec", "cc", "ip", "-o", "-4", "addr").stdout
        assert f"eth1    inet {subs[1].network_address + 2}/24" in out, out
        assert f"eth0    inet {subs[2].network_address + 2}/24" in out, out
    finally:
        # A daemon keeps its networks' bridges when it stops (as dockerd): remove them here.
        dm.docker("rm", "-f", "cc", check=False)
        for i in range(3):
            dm.docker("network", "rm", f"n{i}", check=False)


# --------------------------------------------------------------------------- container mode, names


def test_container_mode_shares_hostname_and_name_files(d: Daemon, uname) -> None:
    base, j = uname("base"), uname("j")
    d.docker("run", "-d", "--name", base, "-h", "basehost", "--add-host", "extra.example:10.1.2.3",
             "busybox", "sleep", "60")
    out = d.docker("run", "--rm", f"--net=container:{base}", "busybox", "sh", "-c",
                   "hostname; cat /etc/hostname; grep extra.example /etc/hosts").stdout.splitlines()
    assert out == ["basehost", "basehost", "10.1.2.3\textra.example"], out
    d.docker("create", "--name", j, f"--net=container:{base}", "busybox", "sleep", "60")
    d.docker("start", j)
    b, jj = inspect(d, base), inspect(d, j)
    assert jj["Config"]["Hostname"] == "basehost"
    for key in ("HostsPath", "ResolvConfPath", "HostnamePath"):
        assert jj[key] == b[key], key
    refusals = ((("--dns", "10.9.9.9"), "dns and the network mode"),
                (("--add-host", "a:10.0.0.1"), "custom host-to-IP mapping and the network mode"),
                (("--expose", "80"), "port exposing and the container type network mode"))
    for flag, msg in refusals:
        msg = "conflicting options: " + msg
        r = d.docker("run", "--rm", f"--net=container:{base}", *flag, "busybox", "true", check=False)
        assert r.returncode != 0 and msg in r.stderr, (flag, r.stderr)


def test_add_host_host_gateway(d: Daemon, uname) -> None:
    gw, _ = bridge_net(d)
    out = d.docker("run", "--rm", "--add-host", "gw.example:host-gateway", "busybox", "cat", "/etc/hosts").stdout
    assert f"{gw}\tgw.example\n" in out, out
    sub, n = allocate_subnet(), uname("hg")
    d.docker("network", "create", "--subnet", str(sub), n)
    try:
        out = d.docker("run", "--rm", "--network", n, "--add-host", "gw.example:host-gateway", "busybox",
                       "cat", "/etc/hosts").stdout
        assert f"{gw}\tgw.example\n" in out, out
        out = d.docker("run", "--rm", "--net=host", "--add-host", "gw.example:host-gateway", "busybox",
                       "cat", "/etc/hosts").stdout
        assert f"{gw}\tgw.example\n" in out, out
    finally:
        d.docker("network", "rm", n)


def test_unknown_network_container_or_link_at_create_is_not_a_404(d: Daemon, uname) -> None:
    for args, msg in (
        (("--net", "nosuch-net"), "network nosuch-net not found"),
        (("--net", "container:nosuch-ctr"), "No such container: nosuch-ctr"),
        (("--link", "nosuch-ctr:db"), "could not get container for nosuch-ctr: No such container: nosuch-ctr"),
    ):
        with nothing_created(d):
            r = d.docker("run", "--rm", *args, "busybox", "true", check=False)
        assert r.returncode != 0 and msg in r.stderr, (args, r.stderr)
        assert "Unable to find image" not in r.stderr, "a 404 made the CLI try to pull"
        resp = d.api("POST", "/containers/create", {"Image": "busybox", "HostConfig": {"NetworkMode": "nosuch-net"}})
        assert resp.status == 400, resp.text


# --------------------------------------------------------------------------- publishing per network


def test_internal_network_publishes_nothing(d: Daemon, uname) -> None:
    sub, n, name = allocate_subnet(), uname("int"), uname("c")
    d.docker("network", "create", "--internal", "--subnet", str(sub), n)
    try:
        port = _free_port_range(1)
        d.docker("run", "-d", "--name", name, "--network", n, "-p", f"{port}:80", "busybox", "sh", "-c", HTTPD)
        assert inspect(d, name)["NetworkSettings"]["Ports"] == {}
        assert d.docker("port", name).stdout.strip() == ""
        assert d.docker("ps", "--filter", f"name={name}", "--format", "{{.Ports}}").stdout.strip() == ""
        assert f"dport {port} " not in nft_table(d)
        assert _refused(port) and _refused(port, "::1")
    finally:
        d.docker("rm", "-f", name, check=False)
        d.docker("network", "rm", n, check=False)


def test_bridge_options_host_binding_ipv4_and_icc(d: Daemon, uname) -> None:
    s1, s2, n1, n2 = allocate_subnet(), allocate_subnet(), uname("hb"), uname("noicc")
    # enable_icc=false turns on bridge-nf-call-iptables (as dockerd): a host-wide knob, put
    # back as it was when the test ends.
    knob = Path("/proc/sys/net/bridge/bridge-nf-call-iptables")
    before = knob.read_text() if knob.exists() else None
    d.docker("network", "create", "--subnet", str(s1), "-o", "com.docker.network.bridge.host_binding_ipv4=127.0.0.2",
             n1)
    d.docker("network", "create", "--subnet", str(s2), "-o", "com.docker.network.bridge.enable_icc=false", n2)
    try:
        port = _free_port_range(1)
        d.docker("run", "-d", "--name", uname("web"), "--network", n1, "-p", f"{port}:80", "busybox", "sh", "-c",
                 HTTPD)
        ports = inspect(d, uname("web"))["NetworkSettings"]["Ports"]
        assert ports["80/tcp"] == [{"HostIp": "127.0.0.2", "HostPort": str(port)}], ports
        assert wait_http(port, "127.0.0.2").startswith("hello-")
        assert _refused(port, "127.0.0.1")
        d.docker("run", "-d", "--name", uname("a"), "--network", n2, "busybox", "sh", "-c", HTTPD)
        ip_a = inspect(d, uname("a"))["NetworkSettings"]["Networks"][n2]["IPAddress"]
        out = d.docker("run", "--rm", "--network", n2, "busybox", "sh", "-c",
                       f"ping -c1 -W1 {ip_a} >/dev/null && echo REACHED || echo BLOCKED; "
                       f"ping -c1 -W1 {s2.network_address + 1} >/dev/null && echo GW").stdout
        assert "BLOCKED" in out and "GW" in out, out
    finally:
        d.docker("rm", "-f", uname("web"), uname("a"), check=False)
        d.docker("network", "rm", n1, n2, check=False)
        if before is not None and knob.read_text() != before:
            knob.write_text(before)


def test_same_host_port_on_two_host_addresses(d: Daemon, uname) -> None:
    port = _free_port_range(1)
    d.docker("run", "-d", "--name", uname("two"), "-p", f"127.0.0.2:{port}:80", "-p", f"127.0.0.3:{port}:80",
             "busybox", "sh", "-c", HTTPD)
    assert wait_http(port, "127.0.0.2").startswith("hello-") and wait_http(port, "127.0.0.3").startswith("hello-")
    r = d.docker("run", "-d", "--name", uname("dup"), "-p", f"{port}:80", "busybox", "sleep", "60", check=False)
    assert r.returncode != 0 and f"Bind for 0.0.0.0:{port} failed: port is already allocated" in r.stderr, r.stderr
    r = d.docker("run", "--rm", "-p", f"{port}:80/sctp", "busybox", "true", check=False)
    assert r.returncode != 0 and "sctp" in r.stderr and "Unable to find image" not in r.stderr, r.stderr


def test_ps_shows_no_ports_for_containers_not_running(d: Daemon, uname) -> None:
    port = _free_port_range(1)
    d.docker("create", "--name", uname("cr"), "-p", f"{port}:80", "busybox", "true")
    d.docker("run", "--name", uname("ex"), "-p", f"{port + 1}:80", "busybox", "true")
    for name in (uname("cr"), uname("ex")):
        assert d.docker("ps", "-a", "--filter", f"name={name}", "--format", "{{.Ports}}").stdout.strip() == ""
        assert inspect(d, name)["NetworkSettings"]["Ports"] == {}


# --------------------------------------------------------------------------- names and hosts files


def test_user_network_names_hosts_lines_rename_and_links(d: Daemon, uname) -> None:
    sub, n = allocate_subnet(), uname("names")
    d.docker("network", "create", "--subnet", str(sub), n)
    a, b, c = uname("a"), uname("b"), uname("c")
    try:
        d.docker("run", "-d", "--name", a, "--network", n, "--network-alias", "alpha", "busybox", "sleep", "60")
        d.docker("run", "-d", "--name", b, "--network", n, "-h", "myhost", "--link", f"{a}:zz", "busybox",
                 "sleep", "60")
        ping = "ping -c1 -W2 {} >/dev/null && echo OK-{}"
        out = d.docker("exec", a, "sh", "-c", "; ".join(ping.format(x, x) for x in (a, "alpha", "myhost"))).stdout
        assert out.split() == [f"OK-{a}", "OK-alpha", "OK-myhost"], out
        assert "myhost" in inspect(d, b)["NetworkSettings"]["Networks"][n]["DNSNames"]
        # A legacy link on a user network is a name only: no ZZ_ variables.
        out = d.docker("exec", b, "sh", "-c", "env | grep ^ZZ_ ; " + ping.format("zz", "zz")).stdout
        assert out.split() == ["OK-zz"], out
        # Lines added to /etc/hosts survive a peer starting and stopping.
        d.docker("exec", a, "sh", "-c", "echo '10.77.0.1 mine.example' >> /etc/hosts")
        d.docker("run", "-d", "--name", c, "--network", n, "busybox", "sleep", "60")
        d.docker("rm", "-f", c)
        hosts = d.docker("exec", a, "cat", "/etc/hosts").stdout
        assert "10.77.0.1 mine.example" in hosts and c not in hosts, hosts
        # A rename reaches the peers' answers and DNSNames.
        d.docker("rename", b, uname("b2"))
        out = d.docker("exec", a, "sh", "-c", ping.format(uname("b2"), "renamed")).stdout
        assert "OK-renamed" in out
        assert inspect(d, uname("b2"))["NetworkSettings"]["Networks"][n]["DNSNames"][0] == uname("b2")
    finally:
        d.docker("rm", "-f", a, b, c, uname("b2"), check=False)
        d.docker("network", "rm", n, check=False)


def test_link_entry_follows_the_linked_container_to_its_new_address(d: Daemon, uname) -> None:
    srv, parent, filler = uname("srv"), uname("parent"), uname("filler")
    d.docker("run", "-d", "--name", srv, "busybox", "sleep", "300")
    d.docker("run", "-d", "--name", parent, "--link", f"{srv}:db", "busybox", "sleep", "300")
    d.docker("stop", "-t", "0", srv)
    d.docker("run", "-d", "--name", filler, "busybox", "sleep", "300")  # takes srv's old address
    d.docker("start", srv)
    ip = inspect(d, srv)["NetworkSettings"]["IPAddress"]
    assert ip != inspect(d, filler)["NetworkSettings"]["IPAddress"]
    hosts = d.docker("exec", parent, "cat", "/etc/hosts").stdout
    assert f"{ip}\tdb " in hosts, hosts


def test_host_mode_hostname_and_port_warning(d: Daemon, uname) -> None:
    assert d.docker("run", "--rm", "--net=host", "-h", "foo", "busybox", "hostname").stdout.strip() == "foo"
    d.docker("create", "--name", uname("h"), "--net=host", "busybox", "true")
    assert inspect(d, uname("h"))["Config"]["Hostname"] == socket.gethostname()
    r = d.docker("create", "--name", uname("hp"), "--net=host", "-p", "18899:80", "busybox", "true")
    assert "Published ports are discarded when using host network mode" in r.stderr, r.stderr


def test_eth0_broadcast_and_disconnect_of_unknown_container(d: Daemon, uname) -> None:
    gw, _ = bridge_net(d)
    out = d.docker("run", "--rm", "busybox", "ip", "-o", "-4", "addr", "show", "eth0").stdout
    assert f"brd {gw.rsplit('.', 1)[0]}.255 " in out, out
    sub, n = allocate_subnet(), uname("dis")
    d.docker("network", "create", "--subnet", str(sub), n)
    try:
        r = d.docker("network", "disconnect", "-f", n, "nosuch-ctr", check=False)
        assert r.returncode == 1 and "endpoint nosuch-ctr not found" in r.stderr, r.stderr
    finally:
        d.docker("network", "rm", n)


def test_ipam_range_gateway_and_tiny_subnets(d: Daemon, uname) -> None:
    sub, n = allocate_subnet(), uname("rng")
    base = sub.network_address
    d.docker("network", "create", "--subnet", str(sub), "--ip-range", f"{base + 128}/25", n)
    try:
        info = json.loads(d.docker("network", "inspect", n).stdout)[0]
        assert info["IPAM"]["Config"] == [{"Subnet": str(sub), "IPRange": f"{base + 128}/25"}]
        # As dockerd: the gateway is the range's first address, the first container the next.
        out = d.docker("run", "--rm", "--network", n, "busybox", "sh", "-c", "ip -o -4 addr show eth0; ip route").stdout
        assert f"inet {base + 129}/24" in out and f"default via {base + 128} " in out, out
    finally:
        d.docker("network", "rm", n)
    d.docker("network", "create", "--subnet", str(sub), n)
    try:
        info = json.loads(d.docker("network", "inspect", n).stdout)[0]
        assert info["IPAM"]["Config"] == [{"Subnet": str(sub)}]
    finally:
        d.docker("network", "rm", n)
    for gw in (base, sub.broadcast_address):
        r = d.docker("network", "create", "--subnet", str(sub), "--gateway", str(gw), n, check=False)
        assert r.returncode != 0 and f"failed to allocate gateway ({gw}): Address already in use" in r.stderr
    r = d.docker("network", "create", "--subnet", f"{base}/31", n, check=False)
    assert r.returncode != 0 and "failed to allocate gateway (): No available addresses on this pool" in r.stderr
    assert d.docker("network", "ls", "-q", "--filter", f"name={n}").stdout.strip() == ""
