"""daemon/containers/spec.py: a container's HostConfig becomes the runtime's typed spec and cgroup limits."""

from __future__ import annotations

from pathlib import Path

import pytest

from daemon.containers import container_config, spec
from daemon.containers.container import Container
from daemon.errors import DaemonError
from runtime import spec as runtime_spec
from runtime.cgroups import Resources
from runtime.libc import CAPABILITIES

IMAGE_CONFIG = {"Cmd": ["sh"], "Env": ["PATH=/bin"]}


def _container(body: dict) -> Container:
    config, hc = container_config.merge({"Image": "busybox", **body}, IMAGE_CONFIG)
    config["Hostname"] = config["Hostname"] or "abc"
    return Container(id="c" * 64, name="/x", created="", path=config["Cmd"][0], args=config["Cmd"][1:],
                     config=config, host_config=hc, image_id="sha256:1")


def _build(c: Container, user_mounts: list[dict] | None = None, netns: str | None = None,
           init_path: str | None = None) -> runtime_spec.ContainerSpec:
    files = {k: Path(f"/f/{k}") for k in ("hostname", "hosts", "resolv")}
    prepared = spec.Prepared(rootfs=Path("/r"), name_files=files, log_path=Path("/l/log"),
                             user_mounts=user_mounts or [],
                             namespaces=spec.namespaces(c, lambda ref: c))
    return spec.build(c, prepared, netns=netns, link_env=["DB_PORT=tcp://10.0.0.2:5432"], init_path=init_path,
                      confinement=spec.Confinement(seccomp=None, cgroup_procs=[], cgroup_hierarchies=[]))


def test_resources_from_host_config() -> None:
    assert spec.resources({}) == Resources()
    hc = {"Memory": 64 << 20, "MemorySwap": -1, "NanoCpus": 500_000_000, "CpuShares": 512, "PidsLimit": 20}
    assert spec.resources(hc) == Resources(memory=64 << 20, memory_swap=-1, cpu_quota=50_000, cpu_period=100_000,
                                           cpu_shares=512, pids_limit=20)
    assert spec.resources({"CpuQuota": 20_000, "CpuPeriod": 50_000}) == Resources(cpu_quota=20_000, cpu_period=50_000)


def test_defaults_masked_paths_and_shm() -> None:
    s = runtime_spec.normalize(_build(_container({})))
    assert s["masked_paths"] == list(runtime_spec.DEFAULT_MASKED_PATHS)
    assert s["readonly_paths"] == list(runtime_spec.DEFAULT_READONLY_PATHS)
    assert s["shm_size"] == runtime_spec.DEFAULT_SHM_SIZE == 64 << 20
    assert s["capabilities"] == list(runtime_spec.DEFAULT_CAPABILITIES)
    assert not s["privileged"] and s["network"] == "new" and s["pid_ns"] == "new"
    assert s["env"] == ["PATH=/bin", "HOSTNAME=abc", "DB_PORT=tcp://10.0.0.2:5432"]
    assert [m["destination"] for m in s["mounts"]] == ["/etc/resolv.conf", "/etc/hostname", "/etc/hosts"]


def test_shm_size_given() -> None:
    assert _build(_container({"HostConfig": {"ShmSize": 1 << 20}}))["shm_size"] == 1 << 20


def test_privileged() -> None:
    c = _container({"HostConfig": {"Privileged": True, "CapDrop": ["ALL"]}})
    s = _build(c)
    assert s["privileged"] and s["masked_paths"] == [] and s["readonly_paths"] == []
    assert sorted(s["capabilities"]) == sorted(CAPABILITIES)
    assert runtime_spec.normalize(s)["masked_paths"] == []


def test_user_mount_replaces_name_file_and_mounts_sorted() -> None:
    c = _container({"Tty": True, "HostConfig": {"ReadonlyRootfs": True}})
    s = _build(c, user_mounts=[{"type": "bind", "source": "/h/b", "destination": "/a/b"},
                               {"type": "bind", "source": "/h/hosts", "destination": "/etc/hosts"},
                               {"type": "bind", "source": "/h/a", "destination": "/a"}], netns="/run/netns/x")
    # Parents before children (by depth, stable), after the name files the user did not replace.
    assert [m["destination"] for m in s["mounts"]] == ["/etc/resolv.conf", "/etc/hostname", "/a", "/a/b",
                                                        "/etc/hosts"]
    assert s["mounts"][0]["readonly"] and s["readonly_rootfs"]
    assert s["network"] == "/run/netns/x" and "TERM=xterm" in s["env"]


def test_init_and_host_namespaces() -> None:
    c = _container({"HostConfig": {"Init": True, "PidMode": "host", "NetworkMode": "host"}})
    s = _build(c, init_path="/usr/bin/tini")
    assert s["init"] == "/usr/bin/tini" and s["pid_ns"] == "host" and s["network"] == "host"


def test_joins_another_containers_namespaces() -> None:
    other = _container({})
    other.state.update(Running=True, Pid=4242)
    c = _container({"HostConfig": {"NetworkMode": "container:db", "PidMode": "container:db",
                                   "IpcMode": "container:db"}})
    ns = spec.namespaces(c, lambda ref: other)
    assert ns == spec.Namespaces(network="/proc/4242/ns/net", pid="/proc/4242/ns/pid", ipc="/proc/4242/ns/ipc")
    other.state.update(Running=False)
    with pytest.raises(DaemonError, match="cannot join network of a non running container"):
        spec.namespaces(c, lambda ref: other)
