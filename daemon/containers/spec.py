"""The runtime boundary: a container's stored configuration turned into what the runtime takes.

As moby's daemon/oci_linux.go does for runc, this is the one place where Docker's Config and
HostConfig become the monitor's typed spec (runtime/spec.py's ContainerSpec: process, mounts,
namespaces, rlimits, devices) and the cgroup limits (runtime/cgroups.py's Resources). Below
this module the runtime never sees Docker's JSON.

Nothing here does I/O: the lifecycle's start mounts the rootfs, writes the name files, mounts
the volumes and sets up the network first, and hands their results in as a Prepared.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from daemon.containers import container_config, runtime_options
from daemon.containers.container import Container
from daemon.errors import DaemonError
from daemon.volumes import mounts
from runtime.cgroups import Resources
from runtime.spec import DEFAULT_SHM_SIZE, ContainerSpec, DeviceSpec, MountSpec, RlimitSpec

# The CFS period dockerd uses for --cpus.
_CPU_PERIOD = 100_000


@dataclass(frozen=True)
class Namespaces:
    """Each is "new", "host" (stay in the host's) or the path of a namespace file to join."""

    network: str
    pid: str
    ipc: str


@dataclass(frozen=True)
class Confinement:
    """What confines the container besides namespaces and capabilities, decided before the spec."""

    seccomp: bytes | None  # the compiled BPF program; None runs unconfined
    cgroup_procs: list[str]  # what the init writes "0" into to join: Cgroups.join_files
    cgroup_hierarchies: list[tuple[str, str]]  # (hierarchy, host directory) shown at /sys/fs/cgroup


@dataclass(frozen=True)
class Prepared:
    """What start has set up on the host before the spec can be written."""

    rootfs: Path
    name_files: dict[str, Path]  # hostname, hosts, resolv: the container's own or the one it joins
    log_path: Path
    user_mounts: list[dict]  # volumes, binds and tmpfs, as runtime mount specs
    namespaces: Namespaces


def resources(hc: dict, devices: tuple[str, ...] | None = None) -> Resources:
    """The cgroup limits of --memory, --memory-swap, --memory-reservation, --cpus (or
    --cpu-quota/--cpu-period), --cpu-shares, --cpuset-cpus/-mems, --blkio-weight and --pids-limit;
    ``devices`` the devices cgroup's allow-list (None: all)."""
    quota, period = hc.get("CpuQuota") or 0, hc.get("CpuPeriod") or 0
    if hc.get("NanoCpus"):
        period = _CPU_PERIOD
        quota = hc["NanoCpus"] * period // 1_000_000_000
    return Resources(memory=hc.get("Memory") or 0, memory_swap=hc.get("MemorySwap") or 0, cpu_quota=quota,
                     cpu_period=period, cpu_shares=hc.get("CpuShares") or 0, pids_limit=hc.get("PidsLimit") or 0,
                     memory_reservation=hc.get("MemoryReservation") or 0, cpuset_cpus=hc.get("CpusetCpus") or "",
                     cpuset_mems=hc.get("CpusetMems") or "", blkio_weight=hc.get("BlkioWeight") or 0,
                     devices=devices)


def _join(mode: str, kind: str, ns_file: str, lookup: Callable[[str], Container]) -> str:
    if mode == "host":
        return "host"
    if not mode.startswith("container:"):
        return "new"
    other = lookup(mode.split(":", 1)[1])
    if not other.running:
        raise DaemonError(f"cannot join {kind} of a non running container: {other.id}")
    return f"/proc/{other.state['Pid']}/ns/{ns_file}"


def namespaces(c: Container, lookup: Callable[[str], Container]) -> Namespaces:
    """The namespaces the container joins; raises when a container to join is not running.
    A network of its own ("new") is replaced by the sandbox's netns once the network is set up."""
    hc = c.host_config
    return Namespaces(network=_join(c.network_mode, "network", "net", lookup),
                      pid=_join(hc.get("PidMode") or "", "pid", "pid", lookup),
                      ipc=_join(hc.get("IpcMode") or "", "ipc", "ipc", lookup))


def log_rotation(hc: dict) -> tuple[int, int]:
    """json-file's (max size in bytes, 0 = never rotate; number of files); `local` rotates by default."""
    lc = hc.get("LogConfig") or {}
    opts = {**(runtime_options.LOCAL_DEFAULTS if lc.get("Type") == "local" else {}), **(lc.get("Config") or {})}
    size = runtime_options.parse_size(opts["max-size"]) if opts.get("max-size") else 0
    return size, int(opts.get("max-file") or 1)


def _env(c: Container, hostname: str, link_env: list[str]) -> list[str]:
    env = list(c.config.get("Env") or [])
    if not any(e.startswith("HOSTNAME=") for e in env):
        env.insert(1, f"HOSTNAME={hostname}")
    if c.tty and not any(e.startswith("TERM=") for e in env):
        env.append("TERM=xterm")
    return env + link_env


def _mounts(files: dict[str, Path], readonly: bool, user_mounts: list[dict]) -> list[MountSpec]:
    # dockerd: the name files follow --read-only, and a user mount on one of them replaces ours.
    taken = {m["destination"] for m in user_mounts}
    ours: list[MountSpec] = [
        {"type": "bind", "source": str(files[key]), "destination": dest, "readonly": readonly, "options": ""}
        for key, dest in (("resolv", "/etc/resolv.conf"), ("hostname", "/etc/hostname"), ("hosts", "/etc/hosts"))
        if dest not in taken]
    return ours + [MountSpec(**m) for m in mounts.depth_order(user_mounts)]  # type: ignore[typeddict-item]


def build(c: Container, prepared: Prepared, *, netns: str | None, link_env: list[str],
          init_path: str | None, confinement: Confinement, ulimits: list[dict] | None = None) -> ContainerSpec:
    """The monitor's spec for starting `c`. `netns` is the sandbox's network namespace (None:
    the container has none of its own), `link_env` the --link variables, `ulimits` its
    HostConfig.Ulimits merged with the daemon's (at start, as dockerd: a reload reaches the next start)."""
    hc = c.host_config
    if hc.get("Init") and not init_path:
        raise DaemonError("--init requested but no init binary found (install tini or pass --init-path)")
    hostname = c.config["Hostname"]
    ns = prepared.namespaces
    log_max_size, log_max_file = log_rotation(hc)
    logging_on = (hc.get("LogConfig") or {}).get("Type") != "none"
    rlimits: list[RlimitSpec] = [{"type": r["type"], "soft": r["soft"], "hard": r["hard"]}
                                 for r in runtime_options.rlimits(hc if ulimits is None else {"Ulimits": ulimits})]
    devices: list[DeviceSpec] = [{"source": d["source"], "destination": d["destination"]}
                                 for d in runtime_options.devices(hc)]
    return {
        "id": c.id,
        "rootfs": str(prepared.rootfs),
        "args": [c.path, *c.args],
        "env": _env(c, hostname, link_env),
        "cwd": c.config.get("WorkingDir") or "/",
        "user": c.config.get("User") or "",
        "hostname": hostname,
        "domainname": c.config.get("Domainname", ""),
        "tty": c.tty,
        "open_stdin": bool(c.config.get("OpenStdin")),
        "stdin_once": bool(c.config.get("StdinOnce")),
        "console_size": None,
        "network": netns or ns.network,
        "mounts": _mounts(prepared.name_files, bool(hc.get("ReadonlyRootfs")), prepared.user_mounts),
        "capabilities": container_config.capabilities(hc),
        "privileged": bool(hc.get("Privileged")),
        "no_new_privileges": runtime_options.no_new_privileges(hc),
        # The stored lists (dockerd's defaults, filled in at create; empty when privileged).
        "masked_paths": list(hc.get("MaskedPaths") or []),
        "readonly_paths": list(hc.get("ReadonlyPaths") or []),
        "log_path": str(prepared.log_path) if logging_on else "",
        "init": init_path if hc.get("Init") else None,
        "shm_size": hc.get("ShmSize") or DEFAULT_SHM_SIZE,
        "readonly_rootfs": bool(hc.get("ReadonlyRootfs")),
        "rlimits": rlimits,
        "group_add": list(hc.get("GroupAdd") or []),
        "oom_score_adj": hc.get("OomScoreAdj") or None,
        "pid_ns": ns.pid,
        "ipc_ns": ns.ipc,
        "devices": devices,
        "log_max_size": log_max_size,
        "log_max_file": log_max_file,
        "seccomp": base64.b64encode(confinement.seccomp).decode() if confinement.seccomp else "",
        "cgroup_procs": list(confinement.cgroup_procs),
        "cgroupns": "private" if hc.get("CgroupnsMode") == "private" else "host",
        "cgroup_mounts": [{"hierarchy": h, "source": d} for h, d in confinement.cgroup_hierarchies],
    }
