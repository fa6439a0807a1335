"""Unit tests for operating the daemon: the option table (flags, daemon.json, conflicts, reload
diff), socket activation's fd handover, sd_notify, container defaults, info warnings, metrics."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import os
import socket
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from api import activation
from daemon import config as cfgmod
from daemon.config import AddressPool, ConfigError, Ulimit, load, load_all, reload_changes
from daemon.containers import container_config, runtime_options, spec
from daemon.containers.defaults import ContainerDefaults
from daemon.errors import InvalidParameter
from daemon.looplag import LoopLag
from daemon.metrics.metrics import Metrics, RunningContainer
from daemon.sdnotify import Notifier
from daemon.system import warnings
from network import ipam


def _file(tmp_path: Path, data: object) -> Path:
    f = tmp_path / "daemon.json"
    f.write_text(data if isinstance(data, str) else json.dumps(data))
    return f


def test_every_option_has_a_flag_a_key_and_a_config_field() -> None:
    fields = set(cfgmod.Config.__dataclass_fields__)
    keys = [o.key for o in cfgmod.OPTIONS]
    assert len(keys) == len(set(keys))
    for o in cfgmod.OPTIONS:
        assert o.attr in fields, o
        assert o.flags and all(f.startswith("-") for f in o.flags), o
    assert {o.key for o in cfgmod.RELOADABLE} == {
        "debug", "log-level", "labels", "insecure-registries", "registry-mirrors", "max-concurrent-downloads",
        "max-concurrent-uploads", "live-restore", "shutdown-timeout", "default-ulimits"}


def test_file_values_parsed_by_kind(tmp_path: Path) -> None:
    f = _file(tmp_path, {
        "default-ulimits": {"nofile": {"Name": "nofile", "Soft": 1024, "Hard": 2048}},
        "default-address-pools": [{"base": "10.10.0.0/16", "size": 24}],
        "default-shm-size": "128M", "log-driver": "none", "dns": ["1.1.1.1"], "dns-opts": ["ndots:2"],
        "max-concurrent-downloads": 6, "iptables": False, "userland-proxy": False, "live-restore": True,
        "registry-mirrors": ["https://mirror.test"], "metrics-addr": "127.0.0.1:9323", "shutdown-timeout": 3,
    })
    cfg = load(["--config-file", str(f)])
    assert cfg.default_ulimits == {"nofile": Ulimit("nofile", 1024, 2048)}
    assert cfg.default_address_pools == [AddressPool(ipaddress.IPv4Network("10.10.0.0/16"), 24)]
    assert cfg.default_shm_size == 128 << 20 and cfg.log_driver == "none" and cfg.dns == ["1.1.1.1"]
    assert cfg.max_concurrent_downloads == 6 and not cfg.iptables and not cfg.userland_proxy and cfg.live_restore
    assert cfg.metrics_addr == "127.0.0.1:9323" and cfg.shutdown_timeout == 3


def test_flag_values_parsed_by_kind(tmp_path: Path) -> None:
    none = str(tmp_path / "none.json")
    cfg = load(["--config-file", none, "--default-ulimit", "nofile=10:20", "--default-ulimit", "nproc=unlimited",
                "--default-address-pool", "base=10.20.0.0/16,size=26", "--log-opt", "max-size=1m",
                "--log-opt", "max-file=2", "--iptables=false", "--userland-proxy", "false", "--ip-forward",
                "--default-shm-size", "1g", "-D", "-l", "warn"])
    assert cfg.default_ulimits == {"nofile": Ulimit("nofile", 10, 20), "nproc": Ulimit("nproc", -1, -1)}
    assert cfg.default_address_pools == [AddressPool(ipaddress.IPv4Network("10.20.0.0/16"), 26)]
    assert cfg.log_opts == {"max-size": "1m", "max-file": "2"}
    assert (cfg.iptables, cfg.userland_proxy, cfg.ip_forward) == (False, False, True)
    assert cfg.default_shm_size == 1 << 30 and cfg.debug and cfg.log_level == "warn"
    assert cfg.effective_log_level == "debug"
    assert load(["--config-file", none, "-l", "fatal"]).effective_log_level == "critical"


@pytest.mark.parametrize(("data", "message"), [
    ({"debug": 1}, "invalid value for 'debug': expected true or false, got 1"),
    ({"labels": "a=b"}, "expected a list of strings"),
    ({"labels": ["novalue"]}, "labels must be key=value"),
    ({"max-concurrent-downloads": 0}, "invalid max concurrent downloads: 0"),
    ({"max-concurrent-uploads": True}, "expected an integer"),
    ({"shutdown-timeout": -1}, "invalid shutdown timeout"),
    ({"default-shm-size": "lots"}, "invalid size"),
    ({"default-ulimits": {"nofile": {"Name": "nofile", "Soft": 2, "Hard": 1}}}, "soft limit"),
    ({"default-ulimits": {"bogus": {"Name": "bogus", "Soft": 1, "Hard": 1}}}, "invalid ulimit type: bogus"),
    ({"default-ulimits": {"nofile": 5}}, "expected"),
    ({"default-address-pools": [{"base": "10.0.0.0/33", "size": 24}]}, "invalid base pool"),
    ({"default-address-pools": [{"base": "10.0.0.0/16"}]}, "expected a list of"),
    ({"log-driver": "gelf"}, "is not one of json-file, local, none"),
    ({"log-driver": "none", "log-opts": {"max-size": "1m"}}, "unknown log opt 'max-size' for none log driver"),
    ({"log-opts": {"max-sise": "1m"}}, "unknown log opt 'max-sise' for json-file log driver"),
    ({"log-opts": {"max-size": 1}}, "expected an object of strings"),
    ({"dns": ["not-an-ip"]}, "not-an-ip is not an ip address"),
    ({"metrics-addr": "nowhere"}, "invalid --metrics-addr"),
    ({"registry-mirrors": ["mirror.test"]}, "invalid mirror: 'mirror.test'"),
    ({"registry-mirrors": ["ftp://mirror.test"]}, "invalid mirror"),
    ({"unknown-a": 1, "debug": True, "unknown-b": 2},
     "the following directives don't match any configuration option: unknown-a, unknown-b"),
    ([1, 2], "not a JSON object"),
    ('{"debug": tru', "unable to configure the Docker daemon with file"),
])
def test_bad_files_refused_with_one_line(tmp_path: Path, data: object, message: str) -> None:
    f = _file(tmp_path, data)
    with pytest.raises(ConfigError) as e:
        load(["--config-file", str(f)])
    assert message in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize(("flags", "message"), [
    (["--default-ulimit", "nofile"], "invalid ulimit argument: nofile"),
    (["--default-ulimit", "nofile=a:b"], "invalid ulimit argument"),
    (["--default-address-pool", "base=10.0.0.0/8"], "expected base=CIDR,size=N"),
    (["--default-address-pool", "base=10.0.0.0/8,size=x"], "size is not a number"),
    (["--log-opt", "novalue"], "expected key=value"),
    (["--default-shm-size", "x"], "invalid size"),
    (["--max-concurrent-downloads", "many"], "expected an integer, got 'many'"),
])
def test_bad_flags_refused(tmp_path: Path, flags: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load(["--config-file", str(tmp_path / "none.json"), *flags])


def test_flag_and_file_conflict_as_dockerd(tmp_path: Path) -> None:
    f = _file(tmp_path, {"debug": False, "labels": ["a=b"], "hosts": ["unix:///x.sock"]})
    with pytest.raises(ConfigError) as e:
        load(["--config-file", str(f), "-D", "--label", "c=d", "--label", "e=f", "-H", "fd://"])
    assert str(e.value) == (
        f"unable to configure the Docker daemon with file {f}: the following directives are specified both as a "
        "flag and in the configuration file: hosts: (from flag: [fd://], from file: [unix:///x.sock]), "
        "debug: (from flag: true, from file: false), labels: (from flag: [c=d e=f], from file: [a=b])")
    # Different settings from each side merge.
    cfg = load(["--config-file", str(_file(tmp_path, {"labels": ["a=b"]})), "-D"])
    assert cfg.labels == ["a=b"] and cfg.debug


def test_validate_and_missing_file(tmp_path: Path) -> None:
    loaded = load_all(["--config-file", str(tmp_path / "none.json"), "--validate"])
    assert loaded.validate_only and loaded.config.hosts == [cfgmod.DEFAULT_HOST]


def test_reload_diff_keeps_flags_and_reports_the_rest(tmp_path: Path) -> None:
    f = _file(tmp_path, {"labels": ["a=1"], "bip": "10.1.0.1/24"})
    loaded = load_all(["--config-file", str(f), "--max-concurrent-downloads", "4"])
    cfg = loaded.config
    f.write_text(json.dumps({"labels": ["a=2"], "debug": True, "bip": "10.2.0.1/24",
                             "default-ulimits": {"core": {"Name": "core", "Soft": 0, "Hard": 0}}}))
    _, changes, ignored = reload_changes(cfg, f, loaded.flags)
    assert {c.key: (c.old, c.new) for c in changes} == {
        "debug": (False, True), "labels": (["a=1"], ["a=2"]),
        "default-ulimits": ({}, {"core": Ulimit("core", 0, 0)})}
    assert ignored == ["bip"]
    cfgmod.apply(cfg, changes)
    assert cfg.labels == ["a=2"] and cfg.debug and cfg.bip == "10.1.0.1/24" and cfg.max_concurrent_downloads == 4
    # The flag still conflicts with the file at reload, as at start: nothing is applied.
    f.write_text(json.dumps({"labels": ["a=3"], "max-concurrent-downloads": 9}))
    with pytest.raises(ConfigError, match="max-concurrent-downloads: \\(from flag: 4, from file: 9\\)"):
        reload_changes(cfg, f, loaded.flags)
    assert cfg.labels == ["a=2"]


# --------------------------------------------------------------------------- socket activation


def test_listen_fds_protocol() -> None:
    env = {"LISTEN_PID": "123", "LISTEN_FDS": "0", "LISTEN_FDNAMES": ""}
    assert activation.listen_fds(env, pid=123) == {} and env == {}
    env = {"LISTEN_PID": "999", "LISTEN_FDS": "2"}
    assert activation.listen_fds(env, pid=123) == {} and env == {}  # meant for another process
    with pytest.raises(activation.ActivationError, match="not a number"):
        activation.listen_fds({"LISTEN_PID": "1", "LISTEN_FDS": "x"}, pid=1)
    assert activation.listen_fds({}, pid=1) == {}


def test_select_all_or_one() -> None:
    a, b = socket.socket(), socket.socket()
    try:
        got = {3: a, 4: b}
        assert activation.select(got, "") == [a, b]
        assert activation.select(got, "4") == [b]
        with pytest.raises(activation.ActivationError, match="too few socket activated files"):
            activation.select(got, "7")
        with pytest.raises(activation.ActivationError, match="should be a number: x"):
            activation.select(got, "x")
        with pytest.raises(activation.ActivationError, match="no sockets found via socket activation"):
            activation.select({}, "")
    finally:
        a.close()
        b.close()


def test_adopt_checks_the_fd(tmp_path: Path) -> None:
    listening = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listening.bind(str(tmp_path / "s"))
    listening.listen(1)
    idle = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    plain = os.open(tmp_path / "plain", os.O_CREAT | os.O_RDWR)
    try:
        adopted = activation._adopt(os.dup(listening.fileno()))
        assert not adopted.get_inheritable() and not adopted.getblocking()
        adopted.close()
        with pytest.raises(activation.ActivationError, match="not listening"):
            activation._adopt(idle.fileno())
        with pytest.raises(activation.ActivationError, match="not a socket"):
            activation._adopt(plain)
    finally:
        listening.close()
        idle.close()
        os.close(plain)


def test_notifier(tmp_path: Path) -> None:
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(str(tmp_path / "n"))
    server.settimeout(5)
    try:
        n = Notifier(str(tmp_path / "n"))
        n.ready()
        assert server.recv(100).decode().startswith("READY=1\nMAINPID=")
        n.reloading()
        assert server.recv(100).decode().startswith("RELOADING=1\nMONOTONIC_USEC=")
        Notifier(None).ready()  # outside systemd: nothing, no error
        Notifier(str(tmp_path / "gone")).stopping()  # logged, not raised
    finally:
        server.close()


# --------------------------------------------------------------------------- container defaults


def test_defaults_fill_what_the_container_leaves_out() -> None:
    d = ContainerDefaults(log_driver="json-file", log_opts={"max-size": "1m", "max-file": "2"}, shm_size=1 << 20,
                          ulimits=[{"Name": "nofile", "Soft": 1, "Hard": 2}, {"Name": "core", "Soft": 0, "Hard": 0}],
                          dns=["10.0.0.2"], dns_options=["ndots:1"])
    _, hc = container_config.merge({"Image": "x", "Cmd": ["sh"]}, {}, d)
    assert hc["LogConfig"] == {"Type": "json-file", "Config": {"max-size": "1m", "max-file": "2"}}
    assert hc["ShmSize"] == 1 << 20
    _, hc = container_config.merge({"Image": "x", "Cmd": ["sh"], "HostConfig": {
        "LogConfig": {"Type": "json-file", "Config": {"max-size": "5m"}}, "ShmSize": 4096}}, {}, d)
    assert hc["LogConfig"]["Config"] == {"max-size": "5m", "max-file": "2"} and hc["ShmSize"] == 4096
    _, hc = container_config.merge({"Image": "x", "Cmd": ["sh"], "HostConfig": {"LogConfig": {"Type": "none"}}}, {}, d)
    assert hc["LogConfig"] == {"Type": "none", "Config": {}}  # the daemon's options are for its own driver
    assert d.merged_ulimits([{"Name": "nofile", "Soft": 5, "Hard": 6}]) == [
        {"Name": "nofile", "Soft": 5, "Hard": 6}, {"Name": "core", "Soft": 0, "Hard": 0}]
    hc = {"Dns": [], "DnsSearch": ["own.test"], "DnsOptions": None}
    assert d.with_dns(hc) == {"Dns": ["10.0.0.2"], "DnsSearch": ["own.test"], "DnsOptions": ["ndots:1"]}
    assert hc["Dns"] == []  # the stored HostConfig is not touched
    assert ContainerDefaults().with_dns(hc) is hc


def test_local_log_driver_rotates_by_default() -> None:
    assert spec.log_rotation({"LogConfig": {"Type": "local", "Config": {}}}) == (20 << 20, 5)
    assert spec.log_rotation({"LogConfig": {"Type": "local", "Config": {"max-file": "2"}}}) == (20 << 20, 2)
    assert spec.log_rotation({"LogConfig": {"Type": "json-file", "Config": {}}}) == (0, 1)
    with pytest.raises(InvalidParameter, match="unknown log opt 'tag' for local log driver"):
        runtime_options.log_config({"LogConfig": {"Type": "local", "Config": {"tag": "x"}}})


def test_address_pools_hand_out_subnets_in_order() -> None:
    pools = [(ipaddress.IPv4Network("10.50.0.0/23"), 24), (ipaddress.IPv4Network("10.60.0.0/16"), 28)]
    taken = [ipaddress.IPv4Network("10.50.0.0/24")]
    assert ipam.pick_subnet(taken, ipam.subnets_of(pools)) == ipaddress.IPv4Network("10.50.1.0/24")
    taken.append(ipaddress.IPv4Network("10.50.1.0/24"))
    assert ipam.pick_subnet(taken, ipam.subnets_of(pools)) == ipaddress.IPv4Network("10.60.0.0/28")


# --------------------------------------------------------------------------- info, metrics


def test_info_warnings_words(tmp_path: Path) -> None:
    cfg = load(["--config-file", str(tmp_path / "none.json")])
    w = warnings(cfg, ("tcp://127.0.0.1:2375",), swap_limit=False, nf4=False, nf6=True)
    assert w[0].startswith("WARNING: API is accessible on http://127.0.0.1:2375 without encryption.\n")
    assert "docs.docker.com/go/attack-surface" in w[0]
    assert w[1:] == ["WARNING: No swap limit support", "WARNING: bridge-nf-call-iptables is disabled"]
    cfg.tls = True
    assert "without TLS client verification" in warnings(cfg, ("tcp://h:2376",), swap_limit=True, nf4=True,
                                                         nf6=True)[0]
    cfg.tlsverify = True
    assert warnings(cfg, ("tcp://h:2376",), swap_limit=True, nf4=True, nf6=True) == []


class _FakeCgroups:
    def stats(self, cid: str) -> dict:
        if cid == "gone":
            raise FileNotFoundError(cid)
        return {"cpu_total": 2_500_000_000, "memory": {"usage": 4096}, "io": {"read_bytes": 7, "write_bytes": 9}}


def test_metrics_text_parses() -> None:
    m = Metrics(_FakeCgroups(), LoopLag())
    m.observe_request("GET", "/containers/json", 200, 0.004)
    m.observe_request("GET", "/containers/json", 200, 0.2)
    m.observe_container_action("start", 0.05)
    m.observe_pull(False)
    running = [RunningContainer("c1", "web", "busybox", 0, own_netns=False),
               RunningContainer("gone", "x", "busybox", 0, own_netns=False)]
    text = asyncio.run(m.render({"running": 2, "paused": 0, "stopped": 3}, running)).decode()
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for f in text_string_to_metric_families(text) for s in f.samples}
    assert samples[("pydockerd_api_requests_total", (("method", "GET"), ("route", "/containers/json"),
                                                     ("status", "200")))] == 2
    assert samples[("pydockerd_api_request_duration_seconds_bucket", (("le", "0.005"), ("method", "GET"),
                                                                      ("route", "/containers/json")))] == 1
    assert samples[("engine_daemon_container_states_containers", (("state", "stopped"),))] == 3
    assert samples[("engine_daemon_container_actions_seconds_count", (("action", "start"),))] == 1
    assert samples[("pydockerd_image_pulls_total", (("result", "failure"),))] == 1
    web = (("id", "c1"), ("image", "busybox"), ("name", "web"))
    assert samples[("container_cpu_usage_seconds_total", web)] == 2.5
    assert samples[("container_memory_usage_bytes", web)] == 4096
    assert samples[("container_fs_writes_bytes_total", web)] == 9
    assert not any(dict(k[1]).get("id") == "gone" for k in samples)


def test_request_metrics_label_routes_by_template() -> None:
    from fastapi import FastAPI

    from api.metrics import RequestMetrics

    seen: list[tuple[str, str, int]] = []

    class Observer:
        def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
            assert seconds >= 0
            seen.append((method, route, status))

    app = FastAPI()

    @app.get("/containers/{name}/json")
    async def inspect(name: str) -> dict:
        return {"Id": name}

    app.add_middleware(RequestMetrics, observer=Observer())

    async def call(path: str) -> None:
        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
                 "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
                 "headers": [], "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 2)}
        sent: list[dict] = []

        async def receive() -> dict:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: dict) -> None:
            sent.append(message)

        await app(scope, receive, send)

    asyncio.run(call("/containers/abc123/json"))
    asyncio.run(call("/no/such/route"))
    assert seen == [("GET", "/containers/{name}/json", 200), ("GET", "unmatched", 404)]
