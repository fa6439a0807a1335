"""Networking end to end: bridge/host/none/container modes, user networks, name resolution,
isolation, published ports with a real data path, and cleanup (300 run/rm cycles).

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

from tests.conftest import Daemon, allocate_subnet, import_busybox
from tests.e2e.helpers import inspect, wait_for

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
    """Veths pydockerd made (it tags them with an ifalias), by owner or by bridge: other
    daemons on the host may be creating their own meanwhile."""
    argv = ["ip", "-o", "link", "show", "type", "veth"] + (["master", bridge] if bridge else [])
    out = subprocess.run(argv, capture_output=True, text=True).stdout
    found = []
    for line in out.splitlines():
        if "alias pydockerd:" not in line:
            continue
        owner = line.rsplit("alias pydockerd:", 1)[1].split()[0]
        if owner_ids is None or owner in owner_ids:
            found.append(line.split(":")[1].strip())
    return found


def nft_table(d: Daemon) -> str:
    name = "pydockerd_" + d.bridge.replace("-", "_")
    return subprocess.run(["nft", "list", "table", "ip", name], capture_output=True, text=True).stdout


def netns_files(d: Daemon) -> set[str]:
    try:
        return set(os.listdir(d.exec_root / "netns"))
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
    assert f"inet {list(sub.subnets(new_prefix=28))[1].network_address + 1}/24" in out, out
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
        # The first container learns about one started later (hosts file kept up to date).
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
        assert "OK" in out, "a running container's hosts file is updated in place on connect"
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
    dm.kill()  # a crash: no shutdown code runs
    monitor = dm.exec_root / "ctr" / dies[:12] / "monitor.pid"
    os.kill(int(monitor.read_text()), 9)
    time.sleep(0.5)
    assert dies[:12] in netns_files(dm)
    dm.pidfile.unlink(missing_ok=True)
    dm.start()
    wait_for(lambda: dies[:12] not in netns_files(dm), timeout=10, what="leftover netns removed")
    assert our_veths({dies}) == []
    assert inspect(dm, "dies")["State"]["Running"] is False
    assert wait_http(port).startswith("hello-")
    dm.docker("rm", "-f", "keep", "dies")
    assert netns_files(dm) == set() and "dnat to" not in nft_table(dm)
    rc = dm.stop()
    assert rc == 0
    assert nft_table(dm) == "", "rules stay after the last container and the daemon are gone"


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
        r = d.docker("network", "create", "--subnet", "fd00:1::/64", uname("bad"), check=False)
        assert r.returncode != 0 and "--ipv6" in r.stderr
    finally:
        d.docker("rm", "-f", uname("a"), check=False)
        d.docker("network", "rm", n)
