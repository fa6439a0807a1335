"""Operating the daemon as dockerd's: socket activation (`-H fd://`, the units in contrib/systemd),
daemon.json and its flags (--validate, conflicts, unknown keys, per-container defaults), SIGHUP
reload seen in `docker info`, `--metrics-addr`, and `docker info`'s warnings."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.helpers import assert_clear_refusal, run_refusal, wait_for
from tests.e2e.registry_fixture import docker_registry
from tests.helpers import REPO, Daemon, free_tcp_port, import_busybox, tmp_base

pytestmark = pytest.mark.e2e

UNITS = REPO / "contrib" / "systemd"


def _unit(name: str) -> dict[str, str]:
    out = {}
    for line in (UNITS / name).read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep and not line.startswith("#"):
            out[key.strip()] = value.strip()
    return out


def _info(dm: Daemon) -> dict:
    return json.loads(dm.docker("info", "--format", "{{json .}}").stdout)


# --------------------------------------------------------------------------- socket activation


def test_socket_activation_as_the_units_say(new_daemon: Callable[..., Daemon], busybox_rootfs: Path,
                                            tmp_path: Path) -> None:
    """systemd-socket-activate binds a unix and a TCP socket and execs the daemon with the unit's
    ExecStart arguments, as systemd does; both answer the CLI, readiness and reload are notified."""
    service, sock_unit = _unit("pydockerd.service"), _unit("pydockerd.socket")
    exec_args = service["ExecStart"].split()[1:]
    assert exec_args == ["-H", "fd://"], service["ExecStart"]
    assert service["KillMode"] == "process" and service["Delegate"] == "yes" and "LimitNOFILE" in service
    assert service["Type"] == "notify" and "network-online.target" in service["After"]
    assert (sock_unit["ListenStream"], sock_unit["SocketMode"], sock_unit["SocketGroup"]) == (
        "/run/pydockerd.sock", "0660", "docker")

    notify_path = tmp_path / "notify.sock"
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(notify_path))
    notify.settimeout(30)
    port = free_tcp_port()
    dm = new_daemon(start=False, hosts=[exec_args[1]])
    dm.launcher = ["systemd-socket-activate", "-l", str(dm.sock), "-l", f"127.0.0.1:{port}",
                   "-E", f"NOTIFY_SOCKET={notify_path}"]
    try:
        dm.start()
        assert "READY=1" in notify.recv(4096).decode()
        import_busybox(dm, busybox_rootfs)
        assert dm.docker("run", "--rm", "busybox", "echo", "via-fd").stdout == "via-fd\n"
        over_tcp = dm.docker("version", "--format", "{{.Server.APIVersion}}",
                             env={**dm.env, "DOCKER_HOST": f"tcp://127.0.0.1:{port}"})
        assert over_tcp.stdout.strip() == "1.50"
        log = dm.log_text()
        assert "API listen on unix://" in log and f"API listen on tcp://127.0.0.1:{port}" in log
        # The activated TCP listener counts as a plain TCP listener for docker info's warning.
        assert any(f"http://127.0.0.1:{port} without encryption" in w for w in _info(dm)["Warnings"])
        # The monitors are children: they must not see the handed-over sockets' variables.
        cid = dm.docker("run", "-d", "busybox", "sleep", "60").stdout.strip()
        pid = dm.client.containers.get(cid).attrs["State"]["Pid"]
        monitor = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        env = Path(f"/proc/{monitor}/environ").read_bytes().split(b"\0")
        assert not any(v.startswith((b"LISTEN_FDS=", b"NOTIFY_SOCKET=")) for v in env)
        dm.docker("rm", "-f", cid)
        assert dm.proc is not None
        dm.proc.send_signal(signal.SIGHUP)
        got = notify.recv(4096).decode() + notify.recv(4096).decode()
        assert "RELOADING=1" in got and "READY=1" in got, got
    finally:
        notify.close()
    assert dm.stop() == 0
    # The socket file is the socket unit's (here systemd-socket-activate's): never removed by us.
    assert dm.sock.exists()


def test_fd_number_takes_one_socket(new_daemon: Callable[..., Daemon]) -> None:
    """`-H fd://3` serves the first handed-over socket only; the others are closed, as dockerd does."""
    port = free_tcp_port()
    dm = new_daemon(start=False, hosts=["fd://3"], log_level="info")
    dm.launcher = ["systemd-socket-activate", "-l", str(dm.sock), "-l", f"127.0.0.1:{port}"]
    dm.start()
    assert dm.docker("version", "--format", "{{.Server.APIVersion}}").stdout.strip() == "1.50"
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    assert dm.stop() == 0


def test_fd_listeners_refused_without_sockets(new_daemon: Callable[..., Daemon], tmp_path: Path) -> None:
    dm = new_daemon(start=False, hosts=["fd://"], log_level="info")
    rc, out = run_refusal(dm)
    assert_clear_refusal(rc, out, ("no sockets found via socket activation",))
    # LISTEN_FDS naming an fd that is a plain file, for this very process.
    plain = tmp_path / "plain"
    plain.write_text("")
    prefix = ("sh", "-c", f'export LISTEN_PID=$$ LISTEN_FDS=1; exec "$@" 3<{plain}', "sh")
    rc, out = run_refusal(dm, prefix=prefix)
    assert_clear_refusal(rc, out, ("fd 3, which is not a socket",))
    assert not dm.pidfile.exists() and not Path(f"/sys/class/net/{dm.bridge}").exists(), "half-started"


# --------------------------------------------------------------------------- daemon.json and flags


def test_validate_good_and_bad_files(new_daemon: Callable[..., Daemon]) -> None:
    dm = new_daemon(start=False, log_level="info")
    cases = {
        json.dumps({"debug": True, "labels": ["a=b"], "default-ulimits": {"nofile": {"Name": "nofile", "Soft": 1024,
                                                                                    "Hard": 2048}},
                    "log-opts": {"max-size": "10m"}, "default-address-pools": [{"base": "10.123.0.0/16",
                                                                               "size": 24}]}): None,
        '{"debug": "yes"}': "invalid value for 'debug'",
        '{"max-concurrent-downloads": "3"}': "expected an integer",
        '{"labels": "a=b"}': "expected a list of strings",
        '{"default-ulimits": {"nofile": {"Name": "nofile", "Soft": 10, "Hard": 5}}}': "soft limit",
        '{"default-address-pools": [{"base": "10.1.0.0/16", "size": 8}]}': "invalid pools size",
        '{"log-driver": "syslog"}': "is not one of",
        '{"bogus": 1, "also-bogus": 2, "debug": true}': "don't match any configuration option: bogus, also-bogus",
        '{"debug": tru': "unable to configure the Docker daemon with file",
        '["debug"]': "not a JSON object",
        # The harness passes --bridge and --log-level as flags.
        '{"bridge": "br0", "log-level": "info"}': "bridge: (from flag: ",
    }
    for text, error in cases.items():
        dm.config_file.write_text(text)
        p = subprocess.run(dm.argv("--validate"), capture_output=True, text=True, cwd=REPO, timeout=60)
        if error is None:
            assert (p.returncode, p.stdout.strip()) == (0, "configuration OK"), (text, p.stderr)
        else:
            assert_clear_refusal(p.returncode, p.stderr + p.stdout, (error,))
    dm.config_file.write_text('{"bogus": 1}')
    rc, out = run_refusal(dm)  # a real start, not --validate: refused before anything is made
    assert_clear_refusal(rc, out, ("bogus",))
    assert not dm.data_root.exists() and not dm.sock.exists()
    for flags, error in ((("--default-ulimit", "nofile=abc"),  "invalid ulimit argument"),
                         (("--shutdown-timeout", "soon"), "expected an integer"),
                         (("--default-address-pool", "base=10.1.0.0/16"), "base=CIDR,size=N")):
        dm.config_file.write_text("{}")
        rc, out = run_refusal(dm, *flags)
        assert_clear_refusal(rc, out, (error,))
    version = subprocess.run(dm.argv("--version"), capture_output=True, text=True, cwd=REPO, timeout=60)
    assert version.returncode == 0 and version.stdout.startswith("pydockerd version "), version


def test_container_defaults_from_flags(new_daemon: Callable[..., Daemon], busybox_rootfs: Path,
                                       uname: Callable[[str], str]) -> None:
    pool = _free_pool()
    dm = new_daemon(start=False)
    dm.extra_args += ["--default-ulimit", "nofile=1234:2345", "--default-shm-size", "32M",
                      "--default-address-pool", f"base={pool},size=24", "--log-driver", "none",
                      "--dns", "10.9.9.9", "--dns-search", "example.test", "--dns-opt", "ndots:3"]
    dm.start()
    import_busybox(dm, busybox_rootfs)
    out = dm.docker("run", "--rm", "busybox", "sh", "-c",
                    "ulimit -Sn; ulimit -Hn; df -k /dev/shm | tail -1; cat /etc/resolv.conf").stdout.split("\n")
    assert out[:2] == ["1234", "2345"], out
    assert out[2].split()[1] == "32768", out
    resolv = "\n".join(out[3:])
    assert "nameserver 10.9.9.9" in resolv and "search example.test" in resolv and "ndots:3" in resolv, resolv
    # The container's own settings win, name by name.
    own = dm.docker("run", "--rm", "--ulimit", "nofile=100:200", "--shm-size", "8m", "--dns", "10.8.8.8", "busybox",
                    "sh", "-c", "ulimit -Sn; df -k /dev/shm | tail -1; grep nameserver /etc/resolv.conf").stdout
    assert own.split("\n")[0] == "100" and own.split("\n")[1].split()[1] == "8192", own
    assert "10.8.8.8" in own and "10.9.9.9" not in own, own
    # --log-driver none: no log kept, and docker logs says so as dockerd does.
    name = uname("nolog")
    dm.docker("run", "--name", name, "busybox", "echo", "lost")
    assert dm.client.containers.get(name).attrs["HostConfig"]["LogConfig"]["Type"] == "none"
    r = dm.docker("logs", name, check=False)
    assert r.returncode != 0 and "does not support reading" in r.stderr, r
    assert dm.docker("run", "--rm", "--log-driver", "json-file", "busybox", "echo", "kept").stdout == "kept\n"
    local = uname("local")
    dm.docker("run", "--name", local, "--log-driver", "local", "busybox", "echo", "kept-local")
    assert dm.docker("logs", local).stdout == "kept-local\n"
    assert _info(dm)["LoggingDriver"] == "none"
    # --default-address-pool: a new network's subnet comes from it.
    net = uname("pooled")
    dm.docker("network", "create", net)
    try:
        subnet = dm.client.networks.get(net).attrs["IPAM"]["Config"][0]["Subnet"]
        import ipaddress

        assert ipaddress.ip_network(subnet).subnet_of(ipaddress.ip_network(pool)), subnet
        assert subnet.endswith("/24"), subnet
    finally:
        dm.docker("network", "rm", net)


def test_iptables_off_ports_by_the_proxy_and_userland_proxy_off(
        new_daemon: Callable[..., Daemon], busybox_rootfs: Path, uname: Callable[[str], str]) -> None:
    """--iptables=false: no kernel rules, a published port is carried by the userland proxy;
    with --userland-proxy=false as well nothing can carry it, and the run says so (400)."""
    dm = new_daemon(start=False, log_level="info")
    dm.extra_args += ["--iptables=false"]
    dm.start()
    import_busybox(dm, busybox_rootfs)
    port = free_tcp_port()
    dm.docker("run", "-d", "--name", uname("web"), "-p", f"127.0.0.1:{port}:80", "busybox", "sh", "-c",
              "mkdir -p /www && echo hello-proxy > /www/index.html && exec httpd -f -p 80 -h /www")

    def get() -> str:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
                s.sendall(b"GET /index.html HTTP/1.0\r\n\r\n")
                return s.makefile("rb").read().decode(errors="replace")
        except OSError:
            return ""

    assert "hello-proxy" in wait_for(get, what="the published port through the proxy")
    assert "--iptables=false" in dm.log_text()
    nft = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout
    assert dm.bridge not in nft
    dm.stop()
    dm.extra_args += ["--userland-proxy=false"]
    dm.start()
    r = dm.docker("run", "-d", "--name", uname("noproxy"), "-p", f"127.0.0.1:{free_tcp_port()}:80", "busybox",
                  "sleep", "60", check=False)
    assert r.returncode != 0 and "--userland-proxy=false" in r.stderr, r


def _free_pool() -> str:
    """A 10.x /16 that nothing on the host routes (the pool of --default-address-pool)."""
    routes = subprocess.run(["ip", "-4", "-j", "route", "show", "table", "all"], capture_output=True,
                            text=True).stdout
    used = {r.get("dst", "") for r in json.loads(routes or "[]")}
    for second in range(150, 200):
        if not any(u.startswith(f"10.{second}.") for u in used):
            return f"10.{second}.0.0/16"
    pytest.skip("no unrouted 10.x /16 for an address pool")


# --------------------------------------------------------------------------- SIGHUP


def test_sighup_reloads_labels_debug_and_ulimits(new_daemon: Callable[..., Daemon], busybox_rootfs: Path) -> None:
    dm = new_daemon(start=False, log_level="info")
    dm.config_file.write_text(json.dumps({"labels": ["tier=one"], "log-opts": {"max-size": "5m"}}))
    dm.start()
    import_busybox(dm, busybox_rootfs)
    info = _info(dm)
    assert info["Labels"] == ["tier=one"] and info["Debug"] is False
    cid = dm.docker("create", "busybox", "true").stdout.strip()
    assert dm.client.containers.get(cid).attrs["HostConfig"]["LogConfig"] == {"Type": "json-file",
                                                                               "Config": {"max-size": "5m"}}

    def hup(config: dict | str) -> int:
        before = dm.log_size()
        dm.config_file.write_text(config if isinstance(config, str) else json.dumps(config))
        assert dm.proc is not None
        dm.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: any(k in dm.log_text(before) for k in ("reloaded the configuration", "reload failed")),
                 what="the reload's last line in the log")
        return before

    at = hup({"labels": ["tier=two", "zone=b"], "debug": True, "log-opts": {"max-size": "5m"},
              "default-ulimits": {"nofile": {"Name": "nofile", "Soft": 777, "Hard": 888}}, "bridge": "other0"})
    # "bridge" conflicts with the harness's --bridge flag: the whole file is refused, nothing changes.
    assert "specified both as a flag and in the configuration file" in dm.log_text(at)
    assert _info(dm)["Labels"] == ["tier=one"]
    at = hup({"labels": ["tier=two", "zone=b"], "debug": True, "log-opts": {"max-size": "9m"},
              "default-ulimits": {"nofile": {"Name": "nofile", "Soft": 777, "Hard": 888}}})
    info = _info(dm)
    assert info["Labels"] == ["tier=two", "zone=b"] and info["Debug"] is True
    log = dm.log_text(at)
    assert "labels changed from [tier=one] to [tier=two zone=b]" in log and "debug changed" in log, log
    assert "log-opts" in log and "next start" in log, log  # not reloadable: said, not applied
    assert dm.docker("run", "--rm", "busybox", "sh", "-c", "ulimit -Sn").stdout.strip() == "777"
    assert dm.docker("run", "--rm", "busybox", "true").returncode == 0
    cid2 = dm.docker("create", "busybox", "true").stdout.strip()
    assert dm.client.containers.get(cid2).attrs["HostConfig"]["LogConfig"]["Config"] == {"max-size": "5m"}
    # Broken files keep the configuration that runs.
    for broken in ('{"labels": ["x=y"], ', '{"labels": ["x=y"], "nope": 1}', '{"debug": "no"}'):
        at = hup(broken)
        assert "reload failed, the configuration stays as it was" in dm.log_text(at)
        info = _info(dm)
        assert info["Labels"] == ["tier=two", "zone=b"] and info["Debug"] is True
    assert dm.running


def test_sighup_during_a_pull_loses_nothing(new_daemon: Callable[..., Daemon]) -> None:
    """A pull stuck on a registry that does not answer goes on through a reload, and fails cleanly
    when the registry goes away."""
    dm = new_daemon(start=False, log_level="info")
    dm.start()
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)  # never accepted: the pull's connection waits in the backlog
    port = silent.getsockname()[1]
    pull = subprocess.Popen(["timeout", "-s", "KILL", "120", "docker", "pull", f"127.0.0.1:{port}/stuck:1"],
                            env=dm.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(1.5)
        dm.config_file.write_text(json.dumps({"labels": ["during=pull"]}))
        assert dm.proc is not None
        dm.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: _info(dm)["Labels"] == ["during=pull"], what="the reload during the pull")
        assert pull.poll() is None, "the pull ended at the reload"
    finally:
        silent.close()
    _, err = pull.communicate(timeout=90)
    assert pull.returncode not in (0, 137), err
    assert dm.running and dm.api("GET", "/_ping").status == 200


def test_registry_mirror_serves_docker_hub_names(d: Daemon, new_daemon: Callable[..., Daemon],
                                                 uname: Callable[[str], str]) -> None:
    """A Docker Hub name (`NAME:1` is docker.io/library/NAME:1) pulled from the mirror in daemon.json:
    nothing goes to Docker Hub while the mirror has it."""
    with docker_registry(tmp_base() / "registry-mirror") as addr:
        name = uname("mirrored")
        d.docker("tag", "busybox", f"{addr}/library/{name}:1")
        d.docker("push", f"{addr}/library/{name}:1")
        d.docker("rmi", f"{addr}/library/{name}:1")
        dm = new_daemon(start=False, log_level="info")
        dm.config_file.write_text(json.dumps({"registry-mirrors": [f"http://{addr}"]}))
        dm.start()
        out = dm.docker("pull", f"{name}:1", timeout=120).stdout
        assert f"Downloaded newer image for {name}:1" in out, out
        assert dm.docker("run", "--rm", f"{name}:1", "echo", "from-mirror").stdout == "from-mirror\n"
        assert _info(dm)["RegistryConfig"]["Mirrors"] == [f"http://{addr}"]


# --------------------------------------------------------------------------- metrics


def _scrape(port: int) -> dict[str, list]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30).read().decode()
    return {f.name: f.samples for f in text_string_to_metric_families(text)}


def test_metrics_while_containers_run(new_daemon: Callable[..., Daemon], busybox_rootfs: Path,
                                      uname: Callable[[str], str]) -> None:
    port = free_tcp_port()
    dm = new_daemon(start=False, log_level="info")
    dm.extra_args += ["--metrics-addr", f"127.0.0.1:{port}"]
    dm.start()
    import_busybox(dm, busybox_rootfs)
    name = uname("busy")
    cid = dm.docker("run", "-d", "--name", name, "busybox", "sh", "-c",
                    "i=0; while [ $i -lt 100000 ]; do i=$((i+1)); done; sleep 300").stdout.strip()
    dm.docker("run", "--rm", "busybox", "true")
    r = dm.docker("pull", "127.0.0.1:1/nothing-here:1", check=False)
    assert r.returncode != 0
    wait_for(lambda: any(s.labels.get("id") == cid and s.value > 0.01
                         for s in _scrape(port).get("container_cpu_usage_seconds", [])),
             what="CPU time of the running container")
    m = _scrape(port)

    def value(family: str, sample: str, **labels: str) -> float:
        return sum(s.value for s in m[family] if s.name == sample and labels.items() <= s.labels.items())

    assert value("pydockerd_api_requests", "pydockerd_api_requests_total", route="/containers/create",
                 status="201") == 2
    assert value("pydockerd_api_request_duration_seconds", "pydockerd_api_request_duration_seconds_count",
                 route="/containers/{name}/start", method="POST") == 2
    # Routes are templates, never ids: label values stay few.
    assert not any(cid in s.labels.get("route", "") for s in m["pydockerd_api_requests"])
    assert value("engine_daemon_container_states_containers", "engine_daemon_container_states_containers",
                 state="running") == 1
    assert value("engine_daemon_container_actions_seconds", "engine_daemon_container_actions_seconds_count",
                 action="start") == 2
    assert value("pydockerd_image_pulls", "pydockerd_image_pulls_total", result="failure") == 1
    # The probe measures every half second: wait for its first measurement.
    wait_for(lambda: any(s.name.endswith("_count") and s.value >= 1
                         for s in _scrape(port)["pydockerd_event_loop_lag_seconds"]), what="a loop-lag sample")
    assert value("container_memory_usage_bytes", "container_memory_usage_bytes", id=cid, name=name) > 0
    assert any(s.labels.get("interface") == "eth0" for s in m["container_network_receive_bytes"]
               if s.labels.get("id") == cid)
    assert [s for s in m["container_fs_writes_bytes"] if s.labels.get("id") == cid]
    # Only running containers are sampled.
    dm.docker("rm", "-f", name)
    m = _scrape(port)
    assert not [s for s in m["container_cpu_usage_seconds"] if s.labels.get("id") == cid]
    assert urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30).status == 200
    with pytest.raises(urllib.error.HTTPError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/other", timeout=30)


def test_metrics_address_in_use_refused(new_daemon: Callable[..., Daemon]) -> None:
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    try:
        dm = new_daemon(start=False, log_level="info")
        rc, out = run_refusal(dm, "--metrics-addr", f"127.0.0.1:{taken.getsockname()[1]}")
        assert_clear_refusal(rc, out, ("cannot serve metrics",))
        assert not dm.sock.exists(), "the refused daemon left its API socket behind"
    finally:
        taken.close()


# --------------------------------------------------------------------------- docker info


def test_info_warnings_as_dockerd(d: Daemon) -> None:
    info = _info(d)
    tcp = [w for w in info["Warnings"] if "without encryption" in w]
    assert tcp and tcp[0].startswith(f"WARNING: API is accessible on http://127.0.0.1:{d.tcp_port} without "
                                     "encryption."), info["Warnings"]
    nf = Path("/proc/sys/net/bridge/bridge-nf-call-iptables")
    expect_nf = not nf.exists() or nf.read_text().strip() != "1"
    assert ("WARNING: bridge-nf-call-iptables is disabled" in info["Warnings"]) == expect_nf
    assert ("WARNING: No swap limit support" in info["Warnings"]) == (not info["SwapLimit"])
    # The CLI prints them as dockerd's are printed (to stderr, after the rest).
    assert "without encryption" in d.docker("info").stderr
    assert os.path.exists(d.sock)


# --------------------------------------------------------------------------- --bridge none


def test_bridge_none_as_dockerd(new_daemon: Callable[..., Daemon], busybox_rootfs: Path,
                                uname: Callable[[str], str]) -> None:
    """`--bridge none`: no default bridge network (and no interface called "none"); default-mode
    containers get only `lo`, their "bridge" endpoint shown empty and their -p accepted and
    unpublished, as dockerd 20.10 does; user networks work. A data root that had a default
    bridge loses it, its interface with it."""
    dm = new_daemon(log_level="info")
    assert Path(f"/sys/class/net/{dm.bridge}").exists()
    dm.stop()
    dm.extra_args += ["--bridge", "none"]  # after the harness's own --bridge: the last one counts
    dm.start()
    assert not Path(f"/sys/class/net/{dm.bridge}").exists(), "the old default bridge stayed"
    assert not Path("/sys/class/net/none").exists()
    import_busybox(dm, busybox_rootfs)
    names = dm.docker("network", "ls", "--format", "{{.Name}}").stdout.split()
    assert sorted(names) == ["host", "none"]
    r = dm.docker("network", "inspect", "bridge", check=False)
    assert r.returncode != 0 and "network bridge not found" in r.stderr
    for net in ([], ["--network", "bridge"]):
        links = dm.docker("run", "--rm", *net, "busybox", "ls", "/sys/class/net").stdout.split()
        assert links == ["lo"], (net, links)
    ctr = uname("web")
    dm.docker("run", "-d", "--name", ctr, "-p", f"127.0.0.1:{free_tcp_port()}:80", "busybox", "sleep", "60")
    info = json.loads(dm.docker("inspect", ctr).stdout)[0]
    assert info["HostConfig"]["NetworkMode"] == "default"
    ep = info["NetworkSettings"]["Networks"]["bridge"]
    assert (ep["NetworkID"], ep["EndpointID"], ep["IPAddress"]) == ("", "", ""), ep
    assert info["NetworkSettings"]["Ports"] == {}
    net = uname("net")
    dm.docker("network", "create", net)
    try:
        dm.docker("network", "connect", net, ctr)
        addrs = dm.docker("exec", ctr, "ip", "-o", "-4", "addr", "show", "eth0").stdout
        assert " inet " in addrs, addrs
        dm.docker("rm", "-f", ctr)
        links = dm.docker("run", "--rm", "--network", net, "busybox", "ls", "/sys/class/net").stdout.split()
        assert links == ["eth0", "lo"], links
    finally:
        dm.docker("rm", "-f", ctr, check=False)
        dm.docker("network", "rm", net)
