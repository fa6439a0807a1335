"""Validating a create request and merging it with the image config, as dockerd does."""

from __future__ import annotations

import os
import re
import signal as signal_mod
from collections.abc import Awaitable, Callable
from typing import Any

from daemon.containers import health_config, resource_checks, runtime_options
from daemon.containers.defaults import ContainerDefaults
from daemon.errors import Conflict, InvalidParameter
from daemon.util.gojson import fold_keys
from runtime.libc import CAPABILITIES
from runtime.spec import DEFAULT_CAPABILITIES, DEFAULT_MASKED_PATHS, DEFAULT_READONLY_PATHS, DEFAULT_SHM_SIZE

NAME_RE = re.compile(r"^/?[a-zA-Z0-9][a-zA-Z0-9_.-]+$")
DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
RESTART_POLICIES = ("", "no", "always", "unless-stopped", "on-failure")

# Field -> expected JSON type(s), for the fields whose wrong type would break us later.
_CONFIG_TYPES: dict[str, tuple[type, ...]] = {
    "Hostname": (str,), "Domainname": (str,), "User": (str,), "AttachStdin": (bool,), "AttachStdout": (bool,),
    "AttachStderr": (bool,), "Tty": (bool,), "OpenStdin": (bool,), "StdinOnce": (bool,),
    "Env": (list, type(None)), "Cmd": (list, str, type(None)), "Entrypoint": (list, str, type(None)),
    "Image": (str,), "WorkingDir": (str,), "Labels": (dict, type(None)), "StopSignal": (str,),
    "StopTimeout": (int, type(None)), "ExposedPorts": (dict, type(None)), "Volumes": (dict, type(None)),
}
_HOST_TYPES: dict[str, tuple[type, ...]] = {
    "AutoRemove": (bool,), "Init": (bool, type(None)), "Privileged": (bool,), "NetworkMode": (str,),
    "RestartPolicy": (dict, type(None)), "Binds": (list, type(None)), "CapAdd": (list, type(None)),
    "CapDrop": (list, type(None)), "ShmSize": (int,), "Memory": (int,), "NanoCpus": (int,),
    "PortBindings": (dict, type(None)), "Links": (list, type(None)), "ExtraHosts": (list, type(None)),
    "Dns": (list, type(None)), "DnsSearch": (list, type(None)), "DnsOptions": (list, type(None)),
}


def parse_signal(sig: str | int | None, default: int = signal_mod.SIGKILL) -> int:
    if sig is None or sig == "":
        return int(default)
    if isinstance(sig, int):
        value = sig
    elif sig.isdigit():
        value = int(sig)
    else:
        name = sig.upper()
        if not name.startswith("SIG"):
            name = "SIG" + name
        try:
            value = int(getattr(signal_mod.Signals, name))
        except AttributeError:
            raise InvalidParameter(f"Invalid signal: {sig}") from None
    if not 0 < value < 65:
        raise InvalidParameter(f"Invalid signal: {sig}")
    return value


def validate_name(name: str) -> str:
    """Returns the name with its leading slash."""
    if not NAME_RE.match(name):
        raise InvalidParameter(f"Invalid container name ({name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")
    return name if name.startswith("/") else "/" + name


def _check_types(section: str, data: dict, types: dict[str, tuple[type, ...]]) -> None:
    for key, allowed in types.items():
        if key in data and not isinstance(data[key], allowed):
            # bool is an int in Python; a bool where an int belongs is still wrong JSON.
            raise InvalidParameter(f"json: cannot unmarshal {type(data[key]).__name__} into Go struct field "
                                   f"{section}.{key}")
        if key in data and int in allowed and isinstance(data[key], bool):
            raise InvalidParameter(f"json: cannot unmarshal bool into Go struct field {section}.{key}")


def _str_list(value: Any, what: str) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidParameter(f"json: cannot unmarshal into {what}: expected a list of strings")
    return value


def validate_restart_policy(hc: dict) -> dict:
    rp = hc.get("RestartPolicy") or {}
    name = rp.get("Name", "") or ""
    count = rp.get("MaximumRetryCount", 0) or 0
    if not isinstance(name, str) or name not in RESTART_POLICIES:
        raise InvalidParameter(f"invalid restart policy: unknown policy '{name}'; use one of 'no', 'always', "
                               "'on-failure', or 'unless-stopped'")
    if not isinstance(count, int) or isinstance(count, bool):
        raise InvalidParameter("invalid restart policy: maximum retry count must be an integer")
    if count < 0:
        raise InvalidParameter("invalid restart policy: maximum retry count cannot be negative")
    if count and name != "on-failure":
        raise InvalidParameter("invalid restart policy: maximum retry count can only be used with 'on-failure'")
    if hc.get("AutoRemove") and name not in ("", "no"):
        raise InvalidParameter("can't create 'AutoRemove' container with restart policy")
    return {"Name": name or "no", "MaximumRetryCount": count}


def merge(body: dict, image_config: dict, daemon_defaults: ContainerDefaults | None = None) -> tuple[dict, dict]:
    """Returns (Config, HostConfig) as dockerd stores them: the request merged with the image
    and the daemon's defaults."""
    daemon_defaults = daemon_defaults or ContainerDefaults()
    if not isinstance(body, dict):
        raise InvalidParameter("invalid JSON: expected an object")
    cfg = {k: v for k, v in body.items() if k not in ("HostConfig", "NetworkingConfig")}
    hc = body.get("HostConfig") or {}
    if not isinstance(hc, dict):
        raise InvalidParameter("json: cannot unmarshal into Go struct field ContainerCreateConfig.HostConfig")
    # Go's decoder matches keys to fields ignoring case: docker-py sends CPURealtimePeriod.
    hc = fold_keys(hc, [*default_host_config(), *_HOST_TYPES, "Mounts", "Tmpfs", "Sysctls", "StorageOpt",
                        "Annotations", "VolumesFrom", "Isolation", "KernelMemory", "KernelMemoryTCP"])
    _check_types("Config", cfg, _CONFIG_TYPES)
    _check_types("HostConfig", hc, _HOST_TYPES)
    img = image_config or {}

    cmd = _str_list(cfg.get("Cmd"), "Config.Cmd")
    entrypoint = _str_list(cfg.get("Entrypoint"), "Config.Entrypoint")
    if entrypoint is not None and entrypoint in ([], [""]):
        entrypoint = []  # `--entrypoint ""` resets the image's entrypoint
    if entrypoint is None:
        entrypoint = img.get("Entrypoint")
        if not cmd:
            cmd = img.get("Cmd")
    env_user = _str_list(cfg.get("Env"), "Config.Env") or []
    env: dict[str, str] = {}
    for item in (img.get("Env") or []) + env_user:
        k, sep, v = item.partition("=")
        if not k:
            raise InvalidParameter(f"invalid environment variable: {item}")
        env[k] = item if sep else k
    env_list = list(env.values())
    if not any(e.startswith("PATH=") for e in env_list):
        env_list.insert(0, DEFAULT_PATH)
    workdir = cfg.get("WorkingDir") or img.get("WorkingDir") or ""
    if workdir and not workdir.startswith("/"):
        raise InvalidParameter(f"the working directory '{workdir}' is invalid, it needs to be an absolute path")
    labels = dict(img.get("Labels") or {})
    labels.update(cfg.get("Labels") or {})
    exposed = dict(img.get("ExposedPorts") or {})
    exposed.update(cfg.get("ExposedPorts") or {})
    volumes = dict(img.get("Volumes") or {})
    volumes.update(cfg.get("Volumes") or {})
    if not (entrypoint or []) + (cmd or []):
        raise InvalidParameter("No command specified")

    config = {
        "Hostname": cfg.get("Hostname", ""),
        "Domainname": cfg.get("Domainname", ""),
        "User": cfg.get("User") or img.get("User", ""),
        "AttachStdin": bool(cfg.get("AttachStdin")),
        "AttachStdout": bool(cfg.get("AttachStdout")),
        "AttachStderr": bool(cfg.get("AttachStderr")),
        "ExposedPorts": exposed or None,
        "Tty": bool(cfg.get("Tty")),
        "OpenStdin": bool(cfg.get("OpenStdin")),
        "StdinOnce": bool(cfg.get("StdinOnce")),
        "Env": env_list,
        "Cmd": cmd,
        "Image": cfg.get("Image", ""),
        "Volumes": volumes or None,
        "WorkingDir": workdir,
        "Entrypoint": entrypoint or None,
        "OnBuild": img.get("OnBuild"),
        "Labels": labels,
    }
    if not config["ExposedPorts"]:
        del config["ExposedPorts"]
    if isinstance(cfg.get("MacAddress"), str) and cfg["MacAddress"]:
        # The container-wide MAC of older clients (docker-py): the main endpoint takes it.
        config["MacAddress"] = cfg["MacAddress"]
    stop_signal = cfg.get("StopSignal") or img.get("StopSignal")
    if stop_signal:
        parse_signal(stop_signal)  # refused at create, as dockerd: else every `docker stop` would fail
        config["StopSignal"] = stop_signal
    if cfg.get("StopTimeout") is not None:
        config["StopTimeout"] = cfg["StopTimeout"]
    health_config.validate(cfg.get("Healthcheck"))
    healthcheck = health_config.merge(cfg.get("Healthcheck"), img.get("Healthcheck"))
    if healthcheck:
        config["Healthcheck"] = healthcheck

    host_config = default_host_config()
    host_config.update({k: v for k, v in hc.items() if v is not None or k in ("Init",)})
    host_config["RestartPolicy"] = validate_restart_policy(hc)
    if not host_config.get("NetworkMode"):
        host_config["NetworkMode"] = "default"
    # What the CLI sends empty, dockerd fills with its defaults (and -1 swappiness means unset).
    defaults = default_host_config()
    for key in ("IpcMode", "CgroupnsMode"):
        if not host_config.get(key):
            host_config[key] = defaults[key]
    if isinstance(host_config.get("LogConfig") or {}, dict):
        host_config["LogConfig"] = daemon_defaults.log_config(host_config.get("LogConfig"))
    if host_config.get("MemorySwappiness") == -1:
        host_config["MemorySwappiness"] = None
    if host_config.get("Privileged"):
        host_config["MaskedPaths"] = None
        host_config["ReadonlyPaths"] = None
    # From the request: the template above holds the built-in default, not the daemon's.
    shm = hc.get("ShmSize") or 0
    if shm < 0:
        raise InvalidParameter("SHM size can not be less than 0")
    host_config["ShmSize"] = shm or daemon_defaults.shm_size
    validate_resources(host_config)
    runtime_options.validate(host_config)
    return config, host_config


def validate_terminal_size(height: int, width: int) -> None:
    """Resize requests: a tty's rows and columns are 16-bit (struct winsize)."""
    if not (0 <= height <= 65535 and 0 <= width <= 65535):
        raise InvalidParameter(f"invalid terminal size {height}x{width}")


async def resize_terminal(height: int, width: int, *, what: str, running: bool, tty: bool,
                          resize: Callable[[int, int], Awaitable[None] | None]) -> None:
    """A container's or an exec's resize, as dockerd: the size is checked first, then a 409 when
    `what` is not running; without a tty there is nothing to resize, which is no error."""
    validate_terminal_size(height, width)
    if not running:
        raise Conflict(f"{what} is not running")
    if tty:
        done = resize(height, width)
        if done is not None:
            await done


_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1


def validate_resources(hc: dict) -> None:
    """dockerd's checks (and wording) for the cgroup limits a container asks for."""
    ncpu = os.cpu_count() or 1
    for key in ("Memory", "MemorySwap", "NanoCpus", "CpuQuota", "CpuPeriod", "CpuShares", "PidsLimit",
                "MemoryReservation", "ShmSize"):
        value = hc.get(key)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
            raise InvalidParameter(f"json: cannot unmarshal into Go struct field HostConfig.{key} of type int64")
        if value is not None and not _INT64_MIN <= value <= _INT64_MAX:
            # Stored, it would break every inspect of the container (and Go clients reading it).
            raise InvalidParameter(f"json: cannot unmarshal number {value} into Go struct field HostConfig.{key} "
                                   "of type int64")
    if (hc.get("CpuShares") or 0) < 0:
        raise InvalidParameter(f"invalid CPU shares ({hc['CpuShares']}): value must be a positive integer")
    for key in ("MemorySwap", "CpuQuota"):  # -1 is "unlimited"
        if (hc.get(key) or 0) < -1:
            raise InvalidParameter(f"invalid HostConfig.{key} {hc[key]}: must be -1 (unlimited) or more")
    if (hc.get("MemoryReservation") or 0) < 0:
        raise InvalidParameter("invalid HostConfig.MemoryReservation: must not be negative")
    memory = hc.get("Memory") or 0
    if memory < 0:
        raise InvalidParameter("invalid memory limit: must not be negative")
    if 0 < memory < 6 * 1024 * 1024:
        raise InvalidParameter("Minimum memory limit allowed is 6MB")
    swap = hc.get("MemorySwap") or 0
    if swap > 0 and memory and swap < memory:
        raise InvalidParameter("Minimum memoryswap limit should be larger than memory limit, see usage")
    if swap > 0 and not memory:
        raise InvalidParameter("You should always set the Memory limit when using Memoryswap limit, see usage")
    nano = hc.get("NanoCpus") or 0
    if nano and (hc.get("CpuQuota") or hc.get("CpuPeriod")):
        raise InvalidParameter("Conflicting options: Nano CPUs and CPU Period cannot both be set")
    if nano < 0 or nano > ncpu * 1_000_000_000:
        raise InvalidParameter(f"Range of CPUs is from 0.01 to {ncpu:.2f}, as there are only {ncpu} CPUs available")
    if 0 < nano < 10_000_000:
        raise InvalidParameter(f"Range of CPUs is from 0.01 to {ncpu:.2f}, as there are only {ncpu} CPUs available")
    period = hc.get("CpuPeriod") or 0
    if period and not 1000 <= period <= 1_000_000:
        raise InvalidParameter("CPU cfs period can not be less than 1ms (i.e. 1000) or larger than 1s (i.e. 1000000)")
    quota = hc.get("CpuQuota") or 0
    if 0 < quota < 1000:
        raise InvalidParameter("CPU cfs quota can not be less than 1ms (i.e. 1000)")
    resource_checks.create(hc)


# dockerd's default-cgroupns-mode: a namespace of its own where the kernel has cgroup namespaces.
DEFAULT_CGROUPNS = "private" if os.path.exists("/proc/self/ns/cgroup") else "host"


def default_host_config() -> dict:
    return {
        "Binds": None, "ContainerIDFile": "", "LogConfig": {"Type": "json-file", "Config": {}},
        "NetworkMode": "default", "PortBindings": {}, "RestartPolicy": {"Name": "no", "MaximumRetryCount": 0},
        "AutoRemove": False, "VolumeDriver": "", "VolumesFrom": None, "ConsoleSize": [0, 0], "CapAdd": None,
        "CapDrop": None, "CgroupnsMode": DEFAULT_CGROUPNS, "Dns": [], "DnsOptions": [], "DnsSearch": [],
        "ExtraHosts": None, "GroupAdd": None, "IpcMode": "private", "Cgroup": "", "Links": None,
        "OomScoreAdj": 0, "PidMode": "", "Privileged": False, "PublishAllPorts": False, "ReadonlyRootfs": False,
        "SecurityOpt": None, "UTSMode": "", "UsernsMode": "", "ShmSize": DEFAULT_SHM_SIZE, "Runtime": "runc",
        "Isolation": "", "CpuShares": 0, "Memory": 0, "NanoCpus": 0, "CgroupParent": "", "BlkioWeight": 0,
        "BlkioWeightDevice": [], "BlkioDeviceReadBps": [], "BlkioDeviceWriteBps": [],
        "BlkioDeviceReadIOps": [], "BlkioDeviceWriteIOps": [], "CpuPeriod": 0, "CpuQuota": 0,
        "CpuRealtimePeriod": 0, "CpuRealtimeRuntime": 0, "CpusetCpus": "", "CpusetMems": "", "Devices": [],
        "DeviceCgroupRules": None, "DeviceRequests": None, "MemoryReservation": 0, "MemorySwap": 0,
        "MemorySwappiness": None, "OomKillDisable": None, "PidsLimit": None, "Ulimits": [], "CpuCount": 0,
        "CpuPercent": 0, "IOMaximumIOps": 0, "IOMaximumBandwidth": 0,
        "MaskedPaths": list(DEFAULT_MASKED_PATHS), "ReadonlyPaths": list(DEFAULT_READONLY_PATHS),
    }


# dockerd's default set first, then the rest of what the kernel knows (the runtime's lists).
DEFAULT_CAPS = list(DEFAULT_CAPABILITIES)
ALL_CAPS = DEFAULT_CAPS + [c for c in CAPABILITIES if c not in DEFAULT_CAPABILITIES]


def capabilities(hc: dict) -> list[str]:
    """--cap-add/--cap-drop applied to dockerd's default set ("ALL" works in both)."""
    if hc.get("Privileged"):
        return list(ALL_CAPS)

    def norm(c: str) -> str:
        c = c.upper()
        return c if c == "ALL" or c.startswith("CAP_") else "CAP_" + c

    add = [norm(c) for c in hc.get("CapAdd") or []]
    drop = [norm(c) for c in hc.get("CapDrop") or []]
    for c in add + drop:
        if c != "ALL" and c not in ALL_CAPS:
            raise InvalidParameter(f"unknown capability: \"{c}\"")
    caps = list(DEFAULT_CAPS)
    if "ALL" in drop:
        caps = []
    else:
        caps = [c for c in caps if c not in drop]
    if "ALL" in add:
        caps = [c for c in ALL_CAPS if c not in drop or "ALL" in drop]
    else:
        caps += [c for c in add if c not in caps]
    return caps
