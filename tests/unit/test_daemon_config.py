"""Unit tests for the daemon's pure parts: references, filters, changes, create merging, times, store."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path

import pytest

from daemon.config import ConfigError, load
from daemon.containers import container_config
from daemon.errors import InvalidParameter
from daemon.images import dockerfile_changes, reference
from daemon.store import Store
from daemon.util.filters import Filters
from daemon.util.timeutil import format_time, parse_time_filter, parse_timestamp
from runtime import cgroups


@pytest.mark.parametrize(("ref", "expected"), [
    ("busybox", "busybox:latest"),
    ("docker.io/library/busybox:1.36", "busybox:1.36"),
    ("docker.io/user/app", "user/app:latest"),
    ("localhost:5000/a/b:c", "localhost:5000/a/b:c"),
])
def test_reference_familiar(ref: str, expected: str) -> None:
    assert str(reference.parse(ref)) == expected


@pytest.mark.parametrize("ref", ["Busybox", "a b", "busybox:", ":tag", "x" * 300, "busybox@sha256:12"])
def test_reference_invalid(ref: str) -> None:
    with pytest.raises(InvalidParameter):
        reference.parse(ref)


def test_filters() -> None:
    f = Filters.parse(json.dumps({"label": {"a=b": True}, "status": ["exited"]}), {"label", "status"})
    assert f.get("status") == ["exited"]
    assert f.match_labels({"a": "b"}) and not f.match_labels({"a": "c"})
    with pytest.raises(InvalidParameter, match="Invalid filter 'bogus'"):
        Filters.parse('{"bogus": {"x": true}}', {"label"})
    with pytest.raises(InvalidParameter):
        Filters.parse("{not json", {"label"})


def test_changes() -> None:
    cfg = dockerfile_changes.apply({}, ['CMD ["sh"]', "ENTRYPOINT echo hi", "ENV A=1 B=two", "ENV C three",
                                        "WORKDIR /srv", "EXPOSE 80 53/udp", "USER nobody", 'LABEL k="v w"',
                                        "VOLUME /data", "STOPSIGNAL SIGUSR1"])
    assert cfg["Cmd"] == ["sh"]
    assert cfg["Entrypoint"] == ["/bin/sh", "-c", "echo hi"]
    assert cfg["Env"] == ["A=1", "B=two", "C=three"]
    assert cfg["WorkingDir"] == "/srv"
    assert cfg["ExposedPorts"] == {"80/tcp": {}, "53/udp": {}}
    assert cfg["Labels"] == {"k": "v w"}
    assert cfg["Volumes"] == {"/data": {}}
    assert cfg["StopSignal"] == "SIGUSR1"
    with pytest.raises(InvalidParameter):
        dockerfile_changes.apply({}, ["RUN rm -rf /"])


def test_merge_entrypoint_and_env() -> None:
    image = {"Cmd": ["sh"], "Entrypoint": None, "Env": ["PATH=/bin", "A=1"], "WorkingDir": "/w"}
    cfg, hc = container_config.merge({"Image": "x", "Env": ["A=2", "B=3"]}, image)
    assert cfg["Cmd"] == ["sh"] and cfg["Env"] == ["PATH=/bin", "A=2", "B=3"] and cfg["WorkingDir"] == "/w"
    assert hc["RestartPolicy"] == {"Name": "no", "MaximumRetryCount": 0}
    cfg, _ = container_config.merge({"Image": "x", "Entrypoint": ["echo"]}, image)
    assert cfg["Entrypoint"] == ["echo"] and cfg["Cmd"] is None
    with pytest.raises(InvalidParameter, match="restart policy"):
        container_config.merge({"Image": "x", "HostConfig": {"RestartPolicy": {"Name": "sometimes"}}}, image)
    with pytest.raises(InvalidParameter):
        container_config.merge({"Image": "x", "Tty": "yes"}, image)
    with pytest.raises(InvalidParameter, match="No command"):
        container_config.merge({"Image": "x"}, {})


def test_names_and_caps() -> None:
    assert container_config.validate_name("web-1") == "/web-1"
    with pytest.raises(InvalidParameter, match=r"Invalid container name \(bad name!\)"):
        container_config.validate_name("bad name!")
    caps = container_config.capabilities({"CapAdd": ["NET_ADMIN"], "CapDrop": ["chown"]})
    assert "CAP_NET_ADMIN" in caps and "CAP_CHOWN" not in caps
    with pytest.raises(InvalidParameter):
        container_config.capabilities({"CapAdd": ["NOPE"]})


def test_times() -> None:
    assert parse_timestamp(format_time(1_700_000_000_123_456_789)) == pytest.approx(1_700_000_000.123456789)
    assert parse_time_filter("10m", now=1000.0) == 400.0
    assert parse_time_filter("1700000000.5") == 1700000000.5
    assert parse_time_filter("2023-11-14T22:13:20Z") == 1700000000.0


def test_config_flags_and_file(tmp_path: Path) -> None:
    f = tmp_path / "daemon.json"
    f.write_text(json.dumps({"data-root": str(tmp_path / "d"), "debug": True, "storage-driver": "vfs"}))
    cfg = load(["--config-file", str(f), "-H", "unix:///tmp/x.sock", "--bip", "10.9.0.1/24"])
    assert cfg.data_root == tmp_path / "d" and cfg.debug and cfg.storage_driver == "vfs"
    assert cfg.effective_log_level == "debug"
    assert cfg.hosts == ["unix:///tmp/x.sock"]
    f.write_text('{"no-such-key": 1}')
    with pytest.raises(ConfigError, match="no-such-key"):
        load(["--config-file", str(f)])
    with pytest.raises(ConfigError):
        load(["--config-file", str(tmp_path / "none.json"), "--storage-driver", "zfs"])


def test_config_dns_keys_and_flags(tmp_path: Path) -> None:
    f = tmp_path / "daemon.json"
    f.write_text(json.dumps({"dns": ["10.9.0.53"], "dns-search": ["corp.example"], "dns-opts": ["ndots:2"]}))
    cfg = load(["--config-file", str(f)])
    assert (cfg.dns, cfg.dns_search, cfg.dns_opts) == (["10.9.0.53"], ["corp.example"], ["ndots:2"])
    # Given both ways: refused, as dockerd refuses it.
    with pytest.raises(ConfigError, match="specified both as a flag and in the configuration file"):
        load(["--config-file", str(f), "--dns", "10.9.0.54"])
    f.write_text(json.dumps({"dns-search": ["corp.example"]}))
    cfg = load(["--config-file", str(f), "--dns", "10.9.0.54", "--dns-opt", "timeout:1"])
    assert cfg.dns == ["10.9.0.54"] and cfg.dns_opts == ["timeout:1"] and cfg.dns_search == ["corp.example"]
    for bad in ({"dns": ["not-an-ip"]}, {"dns": "10.9.0.53"}, {"dns-search": [1]}):
        f.write_text(json.dumps(bad))
        with pytest.raises(ConfigError, match="dns|not an ip address"):
            load(["--config-file", str(f)])
    f.write_text(json.dumps({"ipv6": True, "fixed-cidr-v6": "fd00:1::5/64"}))
    cfg = load(["--config-file", str(f)])
    assert cfg.ipv6 and cfg.fixed_cidr_v6 == "fd00:1::/64"
    with pytest.raises(ConfigError, match="fixed-cidr-v6"):
        load(["--config-file", str(tmp_path / "none.json"), "--ipv6"])


def test_store_unique_names_and_reopen(tmp_path: Path) -> None:
    store = Store(tmp_path / "db")
    store.open()

    async def work() -> None:
        await store.put_container("a", "/x", {"id": "a"})
        with pytest.raises(sqlite3.IntegrityError):
            await store.put_container("b", "/x", {"id": "b"})
        await store.put_image("sha256:1", {"id": "sha256:1"}, ["busybox:latest"])

    asyncio.run(work())
    store.close()
    again = Store(tmp_path / "db")
    again.open()
    assert again.load_containers() == [{"id": "a"}]
    assert again.load_tags() == {"busybox:latest": "sha256:1"}
    again.close()


@pytest.mark.parametrize("parent", ["", "/", "../escape", "a/../../b", "a//b"])
def test_cgroup_parent_refused(tmp_path: Path, parent: str) -> None:
    with pytest.raises(ConfigError, match="cgroup"):
        load(["--config-file", str(tmp_path / "none.json"), "--cgroup-parent", parent])


def test_cgroup_parent_relative_nests_under_own_cgroup(tmp_path: Path) -> None:
    cfg = load(["--config-file", str(tmp_path / "none.json"), "--cgroup-parent", "mine/sub"])
    assert cfg.cgroup_parent == "mine/sub"
    assert str(cgroups._base("/user.slice/x", "mine/sub")) == "/sys/fs/cgroup/user.slice/x/mine/sub"
    assert str(cgroups._base("/", "mine")) == "/sys/fs/cgroup/mine"
    assert str(cgroups._base("/user.slice/x", "/top")) == "/sys/fs/cgroup/top"
