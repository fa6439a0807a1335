"""HostConfig options that the runtime applies to the container's process: --read-only,
--security-opt, --ulimit, --group-add, --oom-score-adj, --pid/--ipc, --device, --log-driver.

``validate`` runs at create (dockerd's wording); the parsers it shares (``rlimits``,
``devices``, ``no_new_privileges``, ``parse_size``) also serve daemon/containers/spec.py, which
turns a stored HostConfig into the runtime spec at start, and exec.
"""

from __future__ import annotations

import re
from typing import Any

from daemon.errors import DaemonError, InvalidParameter

RLIMIT_NAMES = ("as", "core", "cpu", "data", "fsize", "locks", "memlock", "msgqueue", "nice", "nofile",
                "nproc", "rss", "rtprio", "rttime", "sigpending", "stack")
# "local" is dockerd's rotated-by-default driver; here it is written as json-file is, with
# local's rotation defaults (LOCAL_DEFAULTS) and local's options.
LOG_DRIVERS = ("json-file", "local", "none")
JSON_FILE_OPTS = ("max-size", "max-file", "compress", "labels", "labels-regex", "env", "env-regex", "tag")
LOCAL_OPTS = ("max-size", "max-file", "compress")
LOCAL_DEFAULTS = {"max-size": "20m", "max-file": "5"}
IPC_MODES = ("", "private", "shareable", "host", "none")
_SIZE_RE = re.compile(r"^(\d+(?:\.\d+)*) ?([kKmMgGtTpP])?[iI]?[bB]?$")
_DEVICE_PERMS_RE = re.compile(r"^[rwm]{1,3}$")
_BOOLS = {"1": True, "t": True, "T": True, "true": True, "TRUE": True, "True": True,
          "0": False, "f": False, "F": False, "false": False, "FALSE": False, "False": False}


class LogsNotSupported(DaemonError):
    """dockerd's ErrReadLogsNotSupported: a NotImplemented error."""

    status = 501

    def __init__(self) -> None:
        super().__init__("configured logging driver does not support reading")


def no_new_privileges(hc: dict) -> bool:
    """Parses --security-opt as dockerd's parseSecurityOpt does; other known options
    (label, apparmor, seccomp) have nothing to apply to here and are accepted."""
    nnp = False
    for opt in hc.get("SecurityOpt") or []:
        if not isinstance(opt, str):
            raise InvalidParameter("json: cannot unmarshal into Go struct field HostConfig.SecurityOpt of type string")
        if opt == "no-new-privileges":
            nnp = True
            continue
        if opt == "disable":
            continue
        sep = "=" if "=" in opt else ":" if ":" in opt else ""
        if not sep:
            raise InvalidParameter(f'invalid --security-opt 1: "{opt}"')
        key, value = opt.split(sep, 1)
        if key == "no-new-privileges":
            if value not in _BOOLS:
                raise InvalidParameter(f'invalid --security-opt 2: "{opt}"')
            nnp = _BOOLS[value]
        elif key not in ("label", "apparmor", "seccomp", "writable-cgroups"):
            raise InvalidParameter(f'invalid --security-opt 2: "{opt}"')
    return nnp


def _int64(value: Any, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidParameter(f"json: cannot unmarshal into Go struct field {what} of type int64")
    return value


def rlimits(hc: dict) -> list[dict]:
    out = []
    for ul in hc.get("Ulimits") or []:
        if not isinstance(ul, dict):
            raise InvalidParameter("json: cannot unmarshal into Go struct field HostConfig.Ulimits")
        name = ul.get("Name")
        if name not in RLIMIT_NAMES:
            raise InvalidParameter(f"invalid ulimit type: {name}")
        soft = _int64(ul.get("Soft", 0), "Ulimit.Soft")
        hard = _int64(ul.get("Hard", 0), "Ulimit.Hard")
        # -1 is "unlimited" (the CLI's `--ulimit nofile=unlimited`).
        if hard != -1 and (soft == -1 or soft > hard) or soft < -1 or hard < -1:
            raise InvalidParameter(f"ulimit soft limit must be less than or equal to hard limit: {soft} > {hard}")
        out.append({"type": name, "soft": soft, "hard": hard})
    return out


def parse_size(text: str) -> int:
    """go-units RAMInBytes: binary multiples, "10m" is 10 MiB."""
    m = _SIZE_RE.match(text)
    if not m:
        raise InvalidParameter(f"failed to initialize logging driver: invalid size: '{text}'")
    power = " kmgtp".index((m.group(2) or " ").lower())
    return int(float(m.group(1)) * 1024**power)


def log_config(hc: dict) -> dict:
    """The stored LogConfig, validated: {"Type": ..., "Config": {...}}."""
    lc = hc.get("LogConfig") or {}
    if not isinstance(lc, dict):
        raise InvalidParameter("json: cannot unmarshal into Go struct field HostConfig.LogConfig")
    driver = lc.get("Type") or "json-file"
    opts = lc.get("Config") or {}
    if not isinstance(driver, str) or not isinstance(opts, dict) \
            or not all(isinstance(k, str) and isinstance(v, str) for k, v in opts.items()):
        raise InvalidParameter("json: cannot unmarshal into Go struct field HostConfig.LogConfig")
    if driver not in LOG_DRIVERS:
        raise InvalidParameter(f"logger: no log driver named '{driver}' is registered")
    allowed = {"json-file": JSON_FILE_OPTS, "local": LOCAL_OPTS}.get(driver, ())
    for key in opts:
        if key not in allowed:
            raise InvalidParameter(f"unknown log opt '{key}' for {driver} log driver")
    if "max-size" in opts:
        parse_size(opts["max-size"])
    if "max-file" in opts:
        try:
            max_file = int(opts["max-file"])
        except ValueError:
            raise InvalidParameter(f"failed to initialize logging driver: strconv.Atoi: parsing "
                                   f"\"{opts['max-file']}\": invalid syntax") from None
        if max_file < 1:
            raise InvalidParameter("failed to initialize logging driver: max-file cannot be less than 1")
    return {"Type": driver, "Config": opts}


def _namespace_mode(value: Any, what: str, allowed: tuple[str, ...]) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InvalidParameter(f"json: cannot unmarshal into Go struct field HostConfig.{what}Mode of type string")
    if value in allowed or (value.startswith("container:") and value.split(":", 1)[1]):
        return value
    raise InvalidParameter(f"Invalid {what} mode: {value}")


def devices(hc: dict) -> list[dict]:
    out = []
    for dev in hc.get("Devices") or []:
        if not isinstance(dev, dict) or not isinstance(dev.get("PathOnHost"), str):
            raise InvalidParameter("json: cannot unmarshal into Go struct field HostConfig.Devices")
        source = dev["PathOnHost"]
        dest = dev.get("PathInContainer") or source
        perms = dev.get("CgroupPermissions") or "rwm"
        if not source.startswith("/") or not isinstance(dest, str) or not dest.startswith("/"):
            raise InvalidParameter(f"invalid device path: {source}:{dest}")
        if not isinstance(perms, str) or not _DEVICE_PERMS_RE.match(perms):
            raise InvalidParameter(f"invalid device mode: {perms}")
        out.append({"source": source, "destination": dest})
    return out


def validate(hc: dict) -> None:
    """Create-time checks; also fills in LogConfig's default type, as dockerd stores it."""
    if not isinstance(hc.get("ReadonlyRootfs", False), bool):
        raise InvalidParameter("json: cannot unmarshal into Go struct field HostConfig.ReadonlyRootfs of type bool")
    no_new_privileges(hc)
    rlimits(hc)
    oom = hc.get("OomScoreAdj") or 0
    _int64(oom, "HostConfig.OomScoreAdj")
    if not -1000 <= oom <= 1000:
        raise InvalidParameter(f"Invalid value {oom}, range for oom score adj is [-1000, 1000]")
    groups = hc.get("GroupAdd") or []
    if not isinstance(groups, list) or not all(isinstance(g, str) and g for g in groups):
        raise InvalidParameter("json: cannot unmarshal into Go struct field HostConfig.GroupAdd of type string")
    _namespace_mode(hc.get("PidMode"), "PID", ("", "host"))
    _namespace_mode(hc.get("IpcMode"), "IPC", IPC_MODES)
    if hc.get("CgroupnsMode") not in (None, "", "host", "private"):
        raise InvalidParameter(f"invalid cgroup namespace mode: {hc['CgroupnsMode']}")
    devices(hc)
    hc["LogConfig"] = log_config(hc)


def check_logs_readable(hc: dict) -> None:
    if (hc.get("LogConfig") or {}).get("Type") == "none":
        raise LogsNotSupported()
