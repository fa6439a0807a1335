"""The container spec: the JSON document the daemon hands the monitor as ``<bundle>/config.json``.

It is our (much smaller) OCI ``config.json``: everything the monitor needs to create the
container's init, and nothing it would have to look up elsewhere. The daemon builds it
(image config merged with the create request), calls :func:`normalize` (``Monitor.spawn``
does) and the monitor then trusts it: every field is present after normalization.

Fields (defaults in brackets):

``id``
    the container id, 64 lowercase hex digits.
``rootfs``
    absolute path of the container's root directory, already mounted by the daemon
    (overlayfs). The monitor bind-mounts it onto itself and pivots into it.
``args``
    full argv (entrypoint + cmd already merged). ``args[0]`` without a ``/`` is looked up in
    the container's ``PATH`` (from ``env``; the usual default when env has none).
``env``
    ``["K=V", ...]`` exactly as the process gets it; ``HOME`` is added from the user's
    passwd entry when missing [``[]``].
``cwd``
    working directory, created inside the rootfs when missing, as runc does [``/``].
``user``
    ``""``, ``uid``, ``name``, ``uid:gid``, ``name:group``, ... resolved with the
    container's own /etc/passwd and /etc/group; supplementary groups from /etc/group
    when no group is given. [``""`` = root]
``hostname``, ``domainname``
    UTS names [``id[:12]``, ``""``].
``tty``, ``open_stdin``, ``stdin_once``
    as Docker's Tty/OpenStdin/StdinOnce [false].
``console_size``
    ``[height, width]`` of the tty before the process starts, or null [null].
``network``
    ``"new"`` (fresh netns with only ``lo``, up), ``"host"`` (stay in the host's), or the
    absolute path of a netns file to join (``network`` prepared it) [``"new"``].
``mounts``
    applied in order after the standard mounts (proc, sys, dev, ...). Each is
    ``{"type": "bind", "source": "/abs", "destination": "/abs", "readonly": false,
    "options": ""}`` or ``{"type": "tmpfs", "destination": "/abs", "options":
    "size=65536k,mode=1777,nosuid"}`` (any other filesystem type is passed to mount(2) with
    ``source``). ``options`` is a mount(8)-style list: flag words (ro, nosuid, nodev,
    noexec, ...) become mount flags, the rest is filesystem data. Destinations are
    resolved inside the rootfs (symlinks never lead out of it) and created when missing,
    as a file or a directory to match the source.
``capabilities``
    the bounding, permitted and effective set, e.g. ``["CAP_CHOWN", ...]`` [dockerd's
    default set]. The inheritable and ambient sets are empty, as in dockerd since
    CVE-2022-24769.
``privileged``
    all capabilities, no masked or read-only paths, /sys read-write [false].
``no_new_privileges``
    set PR_SET_NO_NEW_PRIVS [false].
``masked_paths``, ``readonly_paths``
    [dockerd's defaults, or ``[]`` when privileged].
``log_path``
    json-file log (Docker's format), appended; ``""`` for no log [``""``].
``init``
    null, or the host path of an init binary (``docker run --init``): bind-mounted
    read-only at ``/sbin/docker-init``, which then runs ``["/sbin/docker-init", "--",
    *args]`` [null].
``shm_size``
    size of the /dev/shm tmpfs in bytes [64 MiB].
``readonly_rootfs``
    remount the rootfs read-only once everything is mounted on it (``--read-only``);
    the mounts on top of it keep their own flags [false].
``rlimits``
    ``[{"type": "nofile", "soft": 1024, "hard": 2048}, ...]`` set before exec; -1 is
    unlimited [``[]``].
``group_add``
    extra supplementary groups, numbers or names from the container's /etc/group [``[]``].
``oom_score_adj``
    written to the init's /proc/self/oom_score_adj, or null to inherit [null].
``pid_ns``, ``ipc_ns``
    ``"new"``, ``"host"`` (stay in the host's), or the absolute path of a namespace file
    to join (``--pid container:X``) [``"new"``].
``devices``
    ``[{"source": "/dev/null", "destination": "/dev/mynull"}, ...]``: nodes created in the
    container with the host device's type, numbers, mode and owner, as runc does [``[]``].
``log_max_size``, ``log_max_file``
    json-file rotation: the log moves to ``<log>.1`` (and up to ``.N-1``) once it reaches
    ``log_max_size`` bytes (0 = never) [0, 1].
``seccomp``
    the seccomp BPF program (struct sock_filter array, base64), compiled by the daemon and
    loaded by the init as late as the kernel allows; ``""`` runs unconfined [``""``].
``cgroup_procs``
    the files the init writes "0" into to join the container's cgroups (v1: ``tasks``, see
    runtime/cgroups.py ``join_files``; v2: ``cgroup.procs``) before it makes its cgroup
    namespace, so that namespace is rooted at the container's cgroup [``[]``].
``cgroupns``
    ``"private"`` (a cgroup namespace of its own) or ``"host"`` [``"host"``].
``cgroup_mounts``
    what the container sees under /sys/fs/cgroup: ``[{"hierarchy": "memory", "source":
    "/sys/fs/cgroup/memory/.../<id>"}, ...]`` (v1: one per controller, the container's own
    cgroup; v2: one with hierarchy ``""``), read-only unless privileged [``[]``].
"""

from __future__ import annotations

import binascii
import re
from collections.abc import Mapping
from typing import Any, TypedDict

from .libc import CAPABILITIES

# What the monitor process itself reads, as <bundle>/monitor.json: the rest of config.json
# is read by the container's init only, so that the long-lived monitor never holds (nor
# dirties memory parsing) the seccomp profile, mounts, environment... (runtime/shim.py).
MONITOR_KEYS = ("log_path", "log_max_size", "log_max_file", "tty", "open_stdin", "stdin_once", "pid_ns")

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

DEFAULT_CAPABILITIES = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
    "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
)

DEFAULT_MASKED_PATHS = (
    "/proc/asound", "/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
    "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi",
    "/sys/firmware", "/sys/devices/virtual/powercap",
)

DEFAULT_READONLY_PATHS = ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger")

DEFAULT_SHM_SIZE = 64 * 1024 * 1024

_ID_RE = re.compile(r"[0-9a-f]{64}")


class MountSpec(TypedDict, total=False):
    type: str
    source: str
    destination: str
    readonly: bool
    options: str


class RlimitSpec(TypedDict):
    type: str
    soft: int
    hard: int


class DeviceSpec(TypedDict):
    source: str
    destination: str


class CgroupMountSpec(TypedDict):
    hierarchy: str  # v1 controller ("memory"), or "" for the v2 unified hierarchy
    source: str  # host path of the container's cgroup in that hierarchy


# Docker's --ulimit names (RLIMIT_<NAME>).
RLIMIT_NAMES = ("as", "core", "cpu", "data", "fsize", "locks", "memlock", "msgqueue", "nice", "nofile",
                "nproc", "rss", "rtprio", "rttime", "sigpending", "stack")


class ContainerSpec(TypedDict):
    id: str
    rootfs: str
    args: list[str]
    env: list[str]
    cwd: str
    user: str
    hostname: str
    domainname: str
    tty: bool
    open_stdin: bool
    stdin_once: bool
    console_size: list[int] | None
    network: str
    mounts: list[MountSpec]
    capabilities: list[str]
    privileged: bool
    no_new_privileges: bool
    masked_paths: list[str]
    readonly_paths: list[str]
    log_path: str
    init: str | None
    shm_size: int
    readonly_rootfs: bool
    rlimits: list[RlimitSpec]
    group_add: list[str]
    oom_score_adj: int | None
    pid_ns: str
    ipc_ns: str
    devices: list[DeviceSpec]
    log_max_size: int
    log_max_file: int
    seccomp: str
    cgroup_procs: list[str]
    cgroupns: str
    cgroup_mounts: list[CgroupMountSpec]


class SpecError(ValueError):
    """The spec is malformed; the message says which field and why."""


def _str(spec: Mapping[str, Any], key: str, default: str) -> str:
    value = spec.get(key, default)
    if not isinstance(value, str) or "\0" in value:
        raise SpecError(f"{key}: expected a string")
    return value


def _bool(spec: Mapping[str, Any], key: str) -> bool:
    value = spec.get(key, False)
    if not isinstance(value, bool):
        raise SpecError(f"{key}: expected a boolean")
    return value


def _abs(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value.startswith("/") or "\0" in value:
        raise SpecError(f"{what}: expected an absolute path, got {value!r}")
    return value


def _str_list(spec: Mapping[str, Any], key: str, default: list[str] | tuple[str, ...]) -> list[str]:
    value = spec.get(key)
    if value is None:
        return list(default)
    if not isinstance(value, list) or not all(isinstance(v, str) and "\0" not in v for v in value):
        raise SpecError(f"{key}: expected a list of strings")
    return list(value)


def _mount(raw: Any, index: int) -> MountSpec:
    where = f"mounts[{index}]"
    if not isinstance(raw, Mapping):
        raise SpecError(f"{where}: expected an object")
    unknown = set(raw) - set(MountSpec.__annotations__)
    if unknown:
        raise SpecError(f"{where}: unknown field {sorted(unknown)[0]!r}")
    mtype = _str(raw, "type", "bind")
    if not mtype:
        raise SpecError(f"{where}.type: must not be empty")
    mount: MountSpec = {
        "type": mtype,
        "destination": _abs(raw.get("destination"), f"{where}.destination"),
        "readonly": _bool(raw, "readonly"),
        "options": _str(raw, "options", ""),
    }
    if mtype == "bind":
        mount["source"] = _abs(raw.get("source"), f"{where}.source")
    else:
        mount["source"] = _str(raw, "source", mtype)
    return mount


def _int(spec: Mapping[str, Any], key: str, default: int, low: int, high: int) -> int:
    value = spec.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise SpecError(f"{key}: expected an integer in [{low}, {high}]")
    return value


def _namespace(spec: Mapping[str, Any], key: str) -> str:
    value = _str(spec, key, "new")
    if value not in ("new", "host"):
        _abs(value, key)
    return value


def _rlimits(raw: Any) -> list[RlimitSpec]:
    if not isinstance(raw, list):
        raise SpecError("rlimits: expected a list")
    out: list[RlimitSpec] = []
    for i, item in enumerate(raw):
        if not isinstance(item, Mapping) or item.get("type") not in RLIMIT_NAMES:
            raise SpecError(f"rlimits[{i}]: expected {{type, soft, hard}} with a known type")
        soft = _int(item, "soft", -1, -1, 2**63 - 1)
        hard = _int(item, "hard", -1, -1, 2**63 - 1)
        if (hard != -1 and soft > hard) or (soft == -1 and hard != -1):
            raise SpecError(f"rlimits[{i}]: soft limit {soft} is above the hard limit {hard}")
        out.append({"type": item["type"], "soft": soft, "hard": hard})
    return out


def _devices(raw: Any) -> list[DeviceSpec]:
    if not isinstance(raw, list):
        raise SpecError("devices: expected a list")
    return [{"source": _abs(d.get("source") if isinstance(d, Mapping) else None, f"devices[{i}].source"),
             "destination": _abs(d.get("destination"), f"devices[{i}].destination")}
            for i, d in enumerate(raw)]


def _seccomp(raw: Any) -> str:
    if raw in (None, ""):
        return ""
    if not isinstance(raw, str):
        raise SpecError("seccomp: expected a base64 string")
    try:
        program = binascii.a2b_base64(raw)
    except binascii.Error as e:
        raise SpecError(f"seccomp: {e}") from None
    if not program or len(program) % 8:
        raise SpecError("seccomp: not a BPF program (whole 8-byte instructions)")
    return raw


def _cgroupns(raw: Any) -> str:
    if raw in (None, ""):
        return "host"
    if raw not in ("host", "private"):
        raise SpecError("cgroupns: expected \"host\" or \"private\"")
    return raw


def _cgroup_mounts(raw: Any) -> list[CgroupMountSpec]:
    if not isinstance(raw, list):
        raise SpecError("cgroup_mounts: expected a list")
    out: list[CgroupMountSpec] = []
    for i, m in enumerate(raw):
        hierarchy = m.get("hierarchy") if isinstance(m, Mapping) else None
        if not isinstance(hierarchy, str) or "/" in hierarchy or hierarchy in (".", ".."):
            raise SpecError(f"cgroup_mounts[{i}].hierarchy: expected a controller name")
        out.append({"hierarchy": hierarchy, "source": _abs(m.get("source"), f"cgroup_mounts[{i}].source")})
    return out


def _capabilities(names: list[str]) -> list[str]:
    out = []
    for name in names:
        full = name.upper() if name.upper().startswith("CAP_") else "CAP_" + name.upper()
        if full not in CAPABILITIES:
            raise SpecError(f"capabilities: unknown capability {name!r}")
        if full not in out:
            out.append(full)
    return out


def normalize(spec: Mapping[str, Any]) -> ContainerSpec:
    """Check ``spec`` and return a copy with every field present (defaults filled in).

    Raises :class:`SpecError`. Does no I/O: whether paths exist is the monitor's problem.
    """
    if not isinstance(spec, Mapping):
        raise SpecError("spec: expected an object")
    unknown = set(spec) - set(ContainerSpec.__annotations__)
    if unknown:
        raise SpecError(f"unknown field {sorted(unknown)[0]!r}")
    cid = _str(spec, "id", "")
    if not _ID_RE.fullmatch(cid):
        raise SpecError("id: expected 64 lowercase hex digits")
    args = _str_list(spec, "args", [])
    if not args or not args[0]:
        raise SpecError("args: no command specified")
    # "NAME" alone (`docker run -e NAME` with NAME unset on the client) sets nothing, as dockerd.
    env = [e for e in _str_list(spec, "env", []) if "=" in e]

    network = _str(spec, "network", "new")
    if network not in ("new", "host"):
        _abs(network, "network")

    raw_mounts = spec.get("mounts") or []
    if not isinstance(raw_mounts, list):
        raise SpecError("mounts: expected a list")

    console_size = spec.get("console_size")
    if console_size is not None and not (
        isinstance(console_size, list) and len(console_size) == 2
        and all(isinstance(v, int) and 0 <= v < 65536 for v in console_size)
    ):
        raise SpecError("console_size: expected [height, width]")

    init = spec.get("init")
    if init is not None:
        _abs(init, "init")

    shm_size = spec.get("shm_size", DEFAULT_SHM_SIZE)
    if not isinstance(shm_size, int) or isinstance(shm_size, bool) or shm_size <= 0:
        raise SpecError("shm_size: expected a positive integer")

    log_path = _str(spec, "log_path", "")
    if log_path:
        _abs(log_path, "log_path")

    privileged = _bool(spec, "privileged")
    if privileged:
        # dockerd ignores cap-add/drop and the path lists for privileged containers.
        caps = list(CAPABILITIES)
        masked: list[str] = []
        readonly: list[str] = []
    else:
        caps = _capabilities(_str_list(spec, "capabilities", DEFAULT_CAPABILITIES))
        masked = _str_list(spec, "masked_paths", DEFAULT_MASKED_PATHS)
        readonly = _str_list(spec, "readonly_paths", DEFAULT_READONLY_PATHS)
    for path in masked + readonly:
        _abs(path, "masked_paths/readonly_paths")

    return {
        "id": cid,
        "rootfs": _abs(spec.get("rootfs"), "rootfs"),
        "args": args,
        "env": env,
        "cwd": _abs(spec.get("cwd", "/") or "/", "cwd"),
        "user": _str(spec, "user", ""),
        "hostname": _str(spec, "hostname", cid[:12]) or cid[:12],
        "domainname": _str(spec, "domainname", ""),
        "tty": _bool(spec, "tty"),
        "open_stdin": _bool(spec, "open_stdin"),
        "stdin_once": _bool(spec, "stdin_once"),
        "console_size": list(console_size) if console_size else None,
        "network": network,
        "mounts": [_mount(m, i) for i, m in enumerate(raw_mounts)],
        "capabilities": caps,
        "privileged": privileged,
        "no_new_privileges": _bool(spec, "no_new_privileges"),
        "masked_paths": masked,
        "readonly_paths": readonly,
        "log_path": log_path,
        "init": init,
        "shm_size": shm_size,
        "readonly_rootfs": _bool(spec, "readonly_rootfs"),
        "rlimits": _rlimits(spec.get("rlimits") or []),
        "group_add": _str_list(spec, "group_add", []),
        "oom_score_adj": (None if spec.get("oom_score_adj") is None
                          else _int(spec, "oom_score_adj", 0, -1000, 1000)),
        "pid_ns": _namespace(spec, "pid_ns"),
        "ipc_ns": _namespace(spec, "ipc_ns"),
        "devices": _devices(spec.get("devices") or []),
        "log_max_size": _int(spec, "log_max_size", 0, 0, 2**63 - 1),
        "log_max_file": _int(spec, "log_max_file", 1, 1, 2**31 - 1),
        "seccomp": _seccomp(spec.get("seccomp")),
        "cgroup_procs": [_abs(p, "cgroup_procs") for p in _str_list(spec, "cgroup_procs", [])],
        "cgroupns": _cgroupns(spec.get("cgroupns")),
        "cgroup_mounts": _cgroup_mounts(spec.get("cgroup_mounts") or []),
    }
