"""Daemon configuration: dockerd's flag names, merged with daemon.json (dockerd's key names).

One table (OPTIONS) says, for every setting, its daemon.json key, its flags, how a value
is parsed from either, and whether SIGHUP reloads it; the argument parser, the file
reader, the conflict check and the reload diff are all driven by it. A new setting is one
row here (and a field of Config).
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from daemon.containers import runtime_options
from daemon.containers.runtime_options import JSON_FILE_OPTS, LOCAL_OPTS, RLIMIT_NAMES
from daemon.errors import InvalidParameter
from runtime import cgroups
from runtime.spec import DEFAULT_SHM_SIZE

DEFAULT_HOST = "unix:///run/pydockerd.sock"
DEFAULT_CONFIG_FILE = Path("/etc/pydockerd/daemon.json")
STORAGE_DRIVERS = ("overlay2", "vfs")
# dockerd's `overlay` was removed; we accept it as a synonym because users type it.
STORAGE_ALIASES = {"overlay": "overlay2", "copy": "vfs"}
LOG_LEVELS = ("debug", "info", "warn", "error", "fatal")
# Daemon-wide log drivers: the ones containers may use (daemon/containers/runtime_options.py).
LOG_DRIVERS = ("json-file", "local", "none")


class ConfigError(Exception):
    """A configuration problem, reported as one line before the daemon starts."""


@dataclass(frozen=True)
class Ulimit:
    name: str
    soft: int
    hard: int


@dataclass(frozen=True)
class AddressPool:
    base: ipaddress.IPv4Network
    size: int


@dataclass
class Config:
    hosts: list[str] = field(default_factory=lambda: [DEFAULT_HOST])
    data_root: Path = Path("/var/lib/pydockerd")
    exec_root: Path = Path("/run/pydockerd")
    pidfile: Path | None = None
    config_file: Path = DEFAULT_CONFIG_FILE
    debug: bool = False
    log_level: str = "info"
    bridge: str = "pyd0"
    bip: str | None = None
    storage_driver: str = "overlay2"
    ip_masq: bool = True
    iptables: bool = True
    ip_forward: bool = True
    userland_proxy: bool = True
    tls: bool = False
    tlsverify: bool = False
    tlscacert: str | None = None
    tlscert: str | None = None
    tlskey: str | None = None
    insecure_registries: list[str] = field(default_factory=list)
    registry_mirrors: list[str] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    init_path: str | None = None
    cgroup_parent: str = "pydockerd"
    default_ulimits: dict[str, Ulimit] = field(default_factory=dict)
    dns: list[str] = field(default_factory=list)
    dns_search: list[str] = field(default_factory=list)
    dns_opts: list[str] = field(default_factory=list)
    default_address_pools: list[AddressPool] = field(default_factory=list)
    log_driver: str = "json-file"
    log_opts: dict[str, str] = field(default_factory=dict)
    shutdown_timeout: int = 15
    default_shm_size: int = DEFAULT_SHM_SIZE
    max_concurrent_downloads: int = 3
    max_concurrent_uploads: int = 5
    live_restore: bool = False
    metrics_addr: str = ""
    # IPv6 on the default bridge, from this subnet (dockerd's --ipv6 --fixed-cidr-v6).
    ipv6: bool = False
    fixed_cidr_v6: str | None = None

    @property
    def pidfile_path(self) -> Path:
        return self.pidfile or self.exec_root / "pydockerd.pid"

    @property
    def effective_log_level(self) -> str:
        """The Python logging level: --debug wins over --log-level, as in dockerd."""
        if self.debug:
            return "debug"
        return {"warn": "warning", "fatal": "critical"}.get(self.log_level, self.log_level)


# --------------------------------------------------------------------------- value parsers
# Each kind parses a flag's text (`flag`) and a daemon.json value (`file`); both raise
# ValueError with what was expected, which the callers wrap with the key's name.


def _bool_text(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on", "t"):
        return True
    if text.lower() in ("0", "false", "no", "off", "f"):
        return False
    raise ValueError(f"invalid boolean value {text!r}")


def _json_bool(v: Any) -> bool:
    if not isinstance(v, bool):
        raise ValueError(f"expected true or false, got {json.dumps(v)}")
    return v


def _json_str(v: Any) -> str:
    if not isinstance(v, str):
        raise ValueError(f"expected a string, got {json.dumps(v)}")
    return v


def _json_int(v: Any) -> int:
    if not isinstance(v, int) or isinstance(v, bool):
        raise ValueError(f"expected an integer, got {json.dumps(v)}")
    return v


def _int_text(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"expected an integer, got {text!r}") from None


def _json_str_list(v: Any) -> list[str]:
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise ValueError(f"expected a list of strings, got {json.dumps(v)}")
    return list(v)


def parse_size(text: str) -> int:
    """go-units RAMInBytes (the containers' parser): binary multiples, "64m" is 64 MiB."""
    try:
        return runtime_options.parse_size(text.strip())
    except InvalidParameter:
        raise ValueError(f"invalid size: '{text}'") from None


def _size_file(v: Any) -> int:
    if isinstance(v, int) and not isinstance(v, bool):
        return v
    return parse_size(_json_str(v))


def _limit(text: str) -> int:
    if text == "unlimited":
        return -1
    return int(text)


def parse_ulimit(text: str) -> Ulimit:
    """`name=soft[:hard]` as docker's --ulimit / dockerd's --default-ulimit."""
    name, sep, limits = text.partition("=")
    if not sep:
        raise ValueError(f"invalid ulimit argument: {text}")
    soft_text, _, hard_text = limits.partition(":")
    try:
        soft = _limit(soft_text)
        hard = _limit(hard_text) if hard_text else soft
    except ValueError:
        raise ValueError(f"invalid ulimit argument: {text}") from None
    return _check_ulimit(Ulimit(name, soft, hard))


def _check_ulimit(u: Ulimit) -> Ulimit:
    if u.name not in RLIMIT_NAMES:
        raise ValueError(f"invalid ulimit type: {u.name}")
    if u.soft < -1 or u.hard < -1 or (u.hard != -1 and (u.soft == -1 or u.soft > u.hard)):
        raise ValueError(f"ulimit soft limit must be less than or equal to hard limit: {u.soft} > {u.hard}")
    return u


def _ulimits_flag(values: list[str]) -> dict[str, Ulimit]:
    return {u.name: u for u in map(parse_ulimit, values)}


def _ulimits_file(v: Any) -> dict[str, Ulimit]:
    if not isinstance(v, dict):
        raise ValueError(f"expected an object of ulimits by name, got {json.dumps(v)}")
    out = {}
    for name, ul in v.items():
        if not isinstance(ul, dict) or set(ul) - {"Name", "Soft", "Hard"}:
            raise ValueError(f'expected {{"Name": ..., "Soft": ..., "Hard": ...}} for {name}, got {json.dumps(ul)}')
        out[name] = _check_ulimit(Ulimit(_json_str(ul.get("Name", name)), _json_int(ul.get("Soft", 0)),
                                         _json_int(ul.get("Hard", 0))))
    return out


def _pool(base: Any, size: Any) -> AddressPool:
    try:
        net = ipaddress.IPv4Network(_json_str(base))
    except ValueError as e:
        raise ValueError(f"invalid base pool {base!r}: {e}") from None
    size = _json_int(size)
    if not net.prefixlen <= size <= 32:
        raise ValueError(f"invalid pools size {size} for {net}: it must be between {net.prefixlen} and 32")
    return AddressPool(net, size)


def parse_pool(text: str) -> AddressPool:
    """`base=10.10.0.0/16,size=24` as dockerd's --default-address-pool."""
    parts = dict(p.partition("=")[::2] for p in text.split(","))
    if set(parts) != {"base", "size"}:
        raise ValueError(f"invalid address pool {text!r}: expected base=CIDR,size=N")
    try:
        size = int(parts["size"])
    except ValueError:
        raise ValueError(f"invalid address pool {text!r}: size is not a number") from None
    return _pool(parts["base"], size)


def _pools_file(v: Any) -> list[AddressPool]:
    if not isinstance(v, list) or not all(isinstance(p, dict) and set(p) == {"base", "size"} for p in v):
        raise ValueError(f'expected a list of {{"base": CIDR, "size": N}}, got {json.dumps(v)}')
    return [_pool(p["base"], p["size"]) for p in v]


def _kv(text: str) -> tuple[str, str]:
    k, sep, v = text.partition("=")
    if not sep or not k:
        raise ValueError(f"invalid option {text!r}: expected key=value")
    return k, v


def _dict_file(v: Any) -> dict[str, str]:
    if not isinstance(v, dict) or not all(isinstance(x, str) for x in v.values()):
        raise ValueError(f"expected an object of strings, got {json.dumps(v)}")
    return dict(v)


@dataclass(frozen=True)
class Kind:
    flag: Callable[[Any], Any]  # the flag's value (a string, or the list of a repeatable flag)
    file: Callable[[Any], Any]
    repeat: bool = False  # a repeatable flag (argparse append)
    switch: bool = False  # a boolean flag: `--x`, `--x=false`


STR = Kind(str, _json_str)
BOOL = Kind(lambda v: v, _json_bool, switch=True)
INT = Kind(_int_text, _json_int)
LIST = Kind(list, _json_str_list, repeat=True)
SIZE = Kind(parse_size, _size_file)
ULIMITS = Kind(_ulimits_flag, _ulimits_file, repeat=True)
POOLS = Kind(lambda vs: [parse_pool(v) for v in vs], _pools_file, repeat=True)
DICT = Kind(lambda vs: dict(map(_kv, vs)), _dict_file, repeat=True)


@dataclass(frozen=True)
class Option:
    key: str  # daemon.json
    attr: str  # Config
    kind: Kind
    flags: tuple[str, ...]
    help: str = ""
    reload: bool = False  # SIGHUP applies it to the running daemon
    choices: tuple[str, ...] = ()


OPTIONS: tuple[Option, ...] = (
    Option("hosts", "hosts", LIST, ("-H", "--host"), "listener: unix:///path, tcp://HOST:PORT or fd:// (repeatable)"),
    Option("data-root", "data_root", STR, ("--data-root",), "root of persistent state (default /var/lib/pydockerd)"),
    Option("exec-root", "exec_root", STR, ("--exec-root",), "root of runtime state (default /run/pydockerd)"),
    Option("pidfile", "pidfile", STR, ("-p", "--pidfile"), "path of the daemon's pid file"),
    Option("debug", "debug", BOOL, ("-D", "--debug"), "debug logging", reload=True),
    Option("log-level", "log_level", STR, ("-l", "--log-level"), "debug, info, warn, error or fatal",
           reload=True, choices=LOG_LEVELS),
    Option("bridge", "bridge", STR, ("-b", "--bridge"),
           "device name of the default bridge (default pyd0); none: no default bridge network, as dockerd"),
    Option("bip", "bip", STR, ("--bip",), "CIDR of the default bridge"),
    Option("storage-driver", "storage_driver", STR, ("-s", "--storage-driver"), "overlay2 (default) or vfs"),
    Option("ip-masq", "ip_masq", BOOL, ("--ip-masq",), "masquerade container traffic (default true)"),
    Option("iptables", "iptables", BOOL, ("--iptables",), "kernel (nftables) rules for published ports and "
           "masquerading (default true); without them the userland proxy publishes ports"),
    Option("ip-forward", "ip_forward", BOOL, ("--ip-forward",), "enable net.ipv4.ip_forward (default true)"),
    Option("userland-proxy", "userland_proxy", BOOL, ("--userland-proxy",),
           "also proxy published ports in user space, for loopback clients (default true)"),
    Option("tls", "tls", BOOL, ("--tls",)),
    Option("tlsverify", "tlsverify", BOOL, ("--tlsverify",)),
    Option("tlscacert", "tlscacert", STR, ("--tlscacert",)),
    Option("tlscert", "tlscert", STR, ("--tlscert",)),
    Option("tlskey", "tlskey", STR, ("--tlskey",)),
    Option("insecure-registries", "insecure_registries", LIST, ("--insecure-registry",), reload=True),
    Option("registry-mirrors", "registry_mirrors", LIST, ("--registry-mirror",),
           "a mirror of Docker Hub tried first for docker.io pulls", reload=True),
    Option("labels", "labels", LIST, ("--label",), "key=value of this daemon (docker info)", reload=True),
    Option("init-path", "init_path", STR, ("--init-path",)),
    Option("cgroup-parent", "cgroup_parent", STR, ("--cgroup-parent",),
           "parent cgroup of the containers' cgroups: relative to the daemon's own cgroup, or absolute "
           "(default pydockerd)"),
    Option("default-ulimits", "default_ulimits", ULIMITS, ("--default-ulimit",),
           "name=soft[:hard] for containers that do not set it", reload=True),
    Option("dns", "dns", LIST, ("--dns",), "DNS server for containers"),
    Option("dns-search", "dns_search", LIST, ("--dns-search",), "DNS search domain for containers"),
    Option("dns-opts", "dns_opts", LIST, ("--dns-opt",), "resolv.conf option for containers"),
    Option("default-address-pools", "default_address_pools", POOLS, ("--default-address-pool",),
           "base=CIDR,size=N: where new networks take their subnets"),
    Option("log-driver", "log_driver", STR, ("--log-driver",), "containers' default log driver: json-file, local, none",
           choices=LOG_DRIVERS),
    Option("log-opts", "log_opts", DICT, ("--log-opt",), "key=value for the default log driver"),
    Option("shutdown-timeout", "shutdown_timeout", INT, ("--shutdown-timeout",),
           "seconds the daemon gives open requests when it stops (default 15)", reload=True),
    Option("default-shm-size", "default_shm_size", SIZE, ("--default-shm-size",),
           "containers' default /dev/shm size (default 64M)"),
    Option("max-concurrent-downloads", "max_concurrent_downloads", INT, ("--max-concurrent-downloads",),
           "layers downloaded at once per pull (default 3)", reload=True),
    Option("max-concurrent-uploads", "max_concurrent_uploads", INT, ("--max-concurrent-uploads",),
           "layers uploaded at once per push (default 5)", reload=True),
    Option("live-restore", "live_restore", BOOL, ("--live-restore",),
           "accepted: containers always keep running while the daemon is down", reload=True),
    Option("metrics-addr", "metrics_addr", STR, ("--metrics-addr",), "HOST:PORT serving Prometheus /metrics"),
    Option("ipv6", "ipv6", BOOL, ("--ipv6",), "IPv6 on the default bridge"),
    Option("fixed-cidr-v6", "fixed_cidr_v6", STR, ("--fixed-cidr-v6",),
           "IPv6 subnet of the default bridge (with --ipv6)"),
)
_BY_KEY = {o.key: o for o in OPTIONS}
RELOADABLE = tuple(o for o in OPTIONS if o.reload)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pydockerd", description="A Docker Engine API compatible container engine")
    p.add_argument("--config-file", help=f"daemon.json (default {DEFAULT_CONFIG_FILE})")
    for o in OPTIONS:
        kw: dict[str, Any] = {"dest": o.attr, "help": o.help or None}
        if o.kind.switch:
            kw.update(nargs="?", const=True, type=_arg(_bool_text))
        elif o.kind.repeat:
            kw.update(action="append", metavar="VALUE")
        else:
            kw.update(type=str)
        if o.choices:
            kw["choices"] = o.choices
        p.add_argument(*o.flags, **kw)
    p.add_argument("--validate", action="store_true", help="check the configuration and exit")
    p.add_argument("-v", "--version", action="store_true", help="print the version and exit")
    return p


def _arg(fn: Callable[[str], Any]) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            return fn(text)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None

    return parse


@dataclass
class Loaded:
    """A configuration and the flags it was made with (a reload reads the file again with them)."""

    config: Config
    flags: dict[str, Any]
    validate_only: bool = False


def parse_flags(argv: list[str] | None) -> tuple[argparse.Namespace, dict[str, Any]]:
    """The arguments, and the settings given as flags (attr -> parsed value), checked one by one."""
    args = build_parser().parse_args(argv)
    given: dict[str, Any] = {}
    for o in OPTIONS:
        raw = getattr(args, o.attr)
        if raw is None:
            continue
        try:
            given[o.attr] = o.kind.flag(raw)
        except ValueError as e:
            raise ConfigError(f"invalid value for {o.flags[-1]}: {e}") from None
    return args, given


def load(argv: list[str] | None = None) -> Config:
    return load_all(argv).config


def load_all(argv: list[str] | None = None) -> Loaded:
    args, flags = parse_flags(argv)
    if args.version:
        from daemon.version import VERSION

        print(f"pydockerd version {VERSION}")
        raise SystemExit(0)
    path = Path(args.config_file) if args.config_file else DEFAULT_CONFIG_FILE
    cfg = from_sources(path, flags)
    return Loaded(cfg, flags, validate_only=args.validate)


def from_sources(path: Path, flags: dict[str, Any]) -> Config:
    """The configuration from daemon.json at `path` and the flags; ConfigError with dockerd's
    wording for unknown keys, wrong types and settings given both ways."""
    file_values = read_file(path)
    conflicts = [f"{_BY_KEY_ATTR[a].key}: (from flag: {_go(v)}, from file: {_go(file_values[a])})"
                 for a, v in flags.items() if a in file_values]
    if conflicts:
        raise ConfigError(f"unable to configure the Docker daemon with file {path}: the following directives are "
                          f"specified both as a flag and in the configuration file: {', '.join(conflicts)}")
    cfg = Config(config_file=path)
    for attr, value in {**file_values, **flags}.items():
        setattr(cfg, attr, value)
    _validate(cfg)
    return cfg


_BY_KEY_ATTR = {o.attr: o for o in OPTIONS}


def show(v: Any) -> str:
    """A setting's value for the log: as dockerd prints it."""
    return _go(v)


def _go(v: Any) -> str:
    """A value as dockerd's conflict message prints it (Go's %v)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, list):
        return "[" + " ".join(map(_go, v)) + "]"
    if isinstance(v, dict):
        return "map[" + " ".join(f"{k}:{_go(x)}" for k, x in v.items()) + "]"
    if isinstance(v, Ulimit):
        return f"{v.name}={v.soft}:{v.hard}"
    if isinstance(v, AddressPool):
        return f"base={v.base},size={v.size}"
    return str(v)


def read_file(path: Path) -> dict[str, Any]:
    """daemon.json's settings by Config attribute; {} when the file does not exist (as dockerd's
    default file; the test harness relies on a missing explicit file too)."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return {}
    except OSError as e:
        raise ConfigError(f"unable to configure the Docker daemon with file {path}: {e.strerror or e}") from None
    prefix = f"unable to configure the Docker daemon with file {path}"
    try:
        data = json.loads(text) if text.strip() else {}
    except json.JSONDecodeError as e:
        raise ConfigError(f"{prefix}: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix}: not a JSON object")
    unknown = [k for k in data if k not in _BY_KEY]
    if unknown:
        raise ConfigError(f"{prefix}: the following directives don't match any configuration option: "
                          f"{', '.join(unknown)}")
    out: dict[str, Any] = {}
    for key, value in data.items():
        o = _BY_KEY[key]
        try:
            out[o.attr] = o.kind.file(value)
        except ValueError as e:
            raise ConfigError(f"{prefix}: invalid value for {key!r}: {e}") from None
        if o.choices and out[o.attr] not in o.choices:
            raise ConfigError(f"{prefix}: invalid value for {key!r}: {value!r} is not one of {', '.join(o.choices)}")
    return out


def _validate(cfg: Config) -> None:
    if not cfg.hosts:
        cfg.hosts = [DEFAULT_HOST]
    for attr in ("data_root", "exec_root", "pidfile"):
        value = getattr(cfg, attr)
        if value is not None:
            setattr(cfg, attr, Path(os.path.abspath(str(value))))
    drv = STORAGE_ALIASES.get(cfg.storage_driver, cfg.storage_driver)
    if drv not in STORAGE_DRIVERS:
        raise ConfigError(f"unknown storage driver {cfg.storage_driver!r} (choose overlay2 or vfs)")
    cfg.storage_driver = drv
    if cfg.bip is not None:
        try:
            ipaddress.ip_interface(cfg.bip)
        except ValueError as e:
            raise ConfigError(f"invalid --bip {cfg.bip!r}: {e}") from e
    if cfg.fixed_cidr_v6 is not None:
        try:
            cfg.fixed_cidr_v6 = str(ipaddress.IPv6Network(cfg.fixed_cidr_v6, strict=False))
        except ValueError as e:
            raise ConfigError(f"invalid fixed-cidr-v6 {cfg.fixed_cidr_v6!r}: {e}") from e
    if cfg.ipv6 and not cfg.fixed_cidr_v6:
        raise ConfigError("ipv6 on the default bridge needs fixed-cidr-v6 (there is no default IPv6 pool)")
    if not 1 <= len(cfg.bridge) <= 15:
        raise ConfigError(f"invalid --bridge {cfg.bridge!r}: interface names are 1 to 15 characters")
    try:
        cgroups.check_parent(cfg.cgroup_parent)
    except ValueError as e:
        raise ConfigError(f"invalid --cgroup-parent: {e}") from e
    for attr, what in (("max_concurrent_downloads", "max concurrent downloads"),
                       ("max_concurrent_uploads", "max concurrent uploads")):
        if getattr(cfg, attr) < 1:
            raise ConfigError(f"invalid {what}: {getattr(cfg, attr)} (at least 1)")
    if cfg.shutdown_timeout < 0:
        raise ConfigError(f"invalid shutdown timeout: {cfg.shutdown_timeout} (seconds, 0 or more)")
    if cfg.default_shm_size <= 0:
        raise ConfigError(f"invalid default-shm-size: {cfg.default_shm_size} (must be positive)")
    for label in cfg.labels:
        if "=" not in label or label.startswith("="):
            raise ConfigError(f"invalid label '{label}': labels must be key=value")
    for mirror in cfg.registry_mirrors:
        scheme, sep, host = mirror.rstrip("/").partition("://")
        if not sep or scheme not in ("http", "https") or not host or "/" in host:
            raise ConfigError(f"invalid mirror: {mirror!r}: expected http(s)://HOST[:PORT]")
    for server in cfg.dns:
        try:
            ipaddress.ip_address(server)
        except ValueError:
            raise ConfigError(f"{server} is not an ip address") from None
    if cfg.log_driver == "none" and cfg.log_opts:
        raise ConfigError(f"unknown log opt '{next(iter(cfg.log_opts))}' for none log driver")
    for key in cfg.log_opts:
        if key not in (LOCAL_OPTS if cfg.log_driver == "local" else JSON_FILE_OPTS):
            raise ConfigError(f"unknown log opt '{key}' for {cfg.log_driver} log driver")
    if cfg.metrics_addr:
        try:
            split_address(cfg.metrics_addr)
        except ValueError as e:
            raise ConfigError(f"invalid --metrics-addr {cfg.metrics_addr!r}: {e}") from None


def split_address(text: str) -> tuple[str, int]:
    """HOST:PORT (IPv6 in brackets) for --metrics-addr."""
    host, sep, port = text.rpartition(":")
    if not sep or not host:
        raise ValueError("expected HOST:PORT")
    host = host.strip("[]")
    if host != "localhost":
        ipaddress.ip_address(host)
    p = int(port)
    if not 0 <= p <= 65535:
        raise ValueError("port out of range")
    return host, p


@dataclass(frozen=True)
class Change:
    key: str
    attr: str
    old: Any
    new: Any


def reload_changes(current: Config, path: Path, flags: dict[str, Any]) -> tuple[Config, list[Change], list[str]]:
    """What SIGHUP changes: the new configuration, its reloadable changes, and the keys that
    changed but only take effect at the next start. ConfigError leaves the caller's config alone."""
    new = from_sources(path, flags)
    changes = [Change(o.key, o.attr, getattr(current, o.attr), getattr(new, o.attr))
               for o in RELOADABLE if getattr(current, o.attr) != getattr(new, o.attr)]
    ignored = [o.key for o in OPTIONS if not o.reload and getattr(current, o.attr) != getattr(new, o.attr)]
    return new, changes, ignored


def apply(current: Config, changes: list[Change]) -> None:
    """Copies the reloadable changes into the live configuration (which services read)."""
    for c in changes:
        setattr(current, c.attr, c.new)
