"""The per-container /etc/hosts, /etc/hostname and /etc/resolv.conf, written as dockerd writes them."""

from __future__ import annotations

import collections
import ipaddress
import os
import re
import uuid
from pathlib import Path

_DEFAULT_HOSTS = (
    "127.0.0.1\tlocalhost\n"
    "::1\tlocalhost ip6-localhost ip6-loopback\n"
    "fe00::0\tip6-localnet\n"
    "ff00::0\tip6-mcastprefix\n"
    "ff02::1\tip6-allnodes\n"
    "ff02::2\tip6-allrouters\n"
)
_LOCAL_NS = re.compile(r"^\s*nameserver\s+(127\.\d+\.\d+\.\d+|::1)\s*$")
_V6_NS = re.compile(r"^\s*nameserver\s+\S*:\S*\s*$")
SYSTEMD_RESOLV_CONF = Path("/run/systemd/resolve/resolv.conf")
DEFAULT_DNS = ["8.8.8.8", "8.8.4.4"]
DEFAULT_DNS6 = ["2001:4860:4860::8888", "2001:4860:4860::8844"]


def _write(path: Path, text: str, in_place: bool = False) -> None:
    if in_place and path.exists():
        # The file is bind-mounted into a running container: replacing it would leave the
        # container on the old inode, so rewrite the same inode.
        with open(path, "r+") as f:
            f.write(text)
            f.truncate()
        return
    # A name of its own per write: two writers of one file never rename each other's temp file.
    tmp = path.with_name(f"{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    tmp.write_text(text)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def write_hostname(path: Path, hostname: str) -> None:
    _write(path, hostname + "\n")


def _user_lines(path: Path) -> list[str]:
    """Lines of the current file that were not in what we wrote last time: the ones a user (or
    a program in the container) added, which a refresh must keep, as dockerd keeps them."""
    try:
        current = path.read_text().splitlines()
        ours = collections.Counter(_managed_record(path).read_text().splitlines())
    except OSError:
        return []
    kept = []
    for line in current:
        if ours[line] > 0:
            ours[line] -= 1
        else:
            kept.append(line)
    return kept


def _managed_record(path: Path) -> Path:
    return path.with_name(path.name + ".managed")


def write_hosts(path: Path, hostname: str, domainname: str = "", ip: str | None = None,
                extra: list[tuple[str, str]] | None = None, host_network: bool = False,
                in_place: bool = False) -> None:
    """extra: (hostname, address) pairs (--add-host, --link); host_network copies the host's
    file. An in-place rewrite (a legacy link's target moved) keeps the lines added to the file
    since it was last written."""
    if host_network:
        try:
            text = Path("/etc/hosts").read_text()
        except OSError:
            text = _DEFAULT_HOSTS
    else:
        text = _DEFAULT_HOSTS
    for name, addr in extra or []:
        text += f"{addr}\t{name}\n"
    if ip and not host_network:
        names = f"{hostname}.{domainname} {hostname}" if domainname else hostname
        text += f"{ip}\t{names}\n"
    kept = _user_lines(path) if in_place else []
    _write(_managed_record(path), text)
    _write(path, text + "".join(line + "\n" for line in kept), in_place)


def _nameservers(lines: list[str]) -> list[str]:
    return [ln for ln in lines if ln.strip().startswith("nameserver")]


def _read_lines(path: Path) -> list[str]:
    try:
        return path.read_text().splitlines()
    except OSError:
        return []


def write_resolv_conf(path: Path, host_network: bool = False, dns: list[str] | None = None,
                      search: list[str] | None = None, options: list[str] | None = None,
                      source: Path = Path("/etc/resolv.conf"), resolved_source: Path = SYSTEMD_RESOLV_CONF,
                      ipv6: bool = False) -> None:
    """The container's resolver config from the host's, as dockerd derives it.

    A host running systemd-resolved points at its stub (127.0.0.53), useless from another
    netns: the upstream servers in resolved's own file are used instead. Without host
    networking, loopback servers (unreachable from the container) are dropped, IPv6 ones
    too when the container has no IPv6, and when nothing is left dockerd's public defaults
    stand in, so that names still resolve."""
    lines = _read_lines(source)
    ns = _nameservers(lines)
    if ns and all(_LOCAL_NS.match(ln) for ln in ns) and resolved_source.exists():
        lines = _read_lines(resolved_source)
    if not host_network:
        lines = [ln for ln in lines if not _LOCAL_NS.match(ln)]
        if not ipv6:
            lines = [ln for ln in lines if not _V6_NS.match(ln)]
    if dns:
        lines = [ln for ln in lines if not ln.strip().startswith("nameserver")]
        lines += [f"nameserver {d}" for d in dns]
    elif not host_network and not _nameservers(lines):
        lines += [f"nameserver {d}" for d in DEFAULT_DNS + (DEFAULT_DNS6 if ipv6 else [])]
    if search:
        lines = [ln for ln in lines if not ln.strip().startswith(("search", "domain"))]
        lines.append("search " + " ".join(search))
    if options:
        lines = [ln for ln in lines if not ln.strip().startswith("options")]
        lines.append("options " + " ".join(options))
    _write(path, "\n".join(lines) + "\n" if lines else "")


INTERNAL_NAMESERVER = "127.0.0.11"
_HEADER = ("# Generated by Docker Engine.\n"
           "# This file can be edited; Docker Engine will not make further changes once it\n"
           "# has been modified.\n\n")
_EXT_SERVERS = re.compile(r"^# ExtServers: \[(.*)\]\s*$", re.M)


def _host_only(addr: str, ipv6: bool) -> bool:
    """dockerd's HostLoopback: a server from the host's file that only the host can reach."""
    try:
        ip = ipaddress.ip_address(addr.split("%")[0])
    except ValueError:
        return False
    return ip.is_loopback or (ip.version == 6 and not ipv6) or "%" in addr


def write_internal_resolv_conf(path: Path, dns: list[str] | None = None, search: list[str] | None = None,
                               options: list[str] | None = None, source: Path = Path("/etc/resolv.conf"),
                               resolved_source: Path = SYSTEMD_RESOLV_CONF, ipv6: bool = False) -> list[str]:
    """Writes internal_resolv_conf's text; returns the servers the resolver forwards to."""
    text, servers = internal_resolv_conf(dns, search, options, source, resolved_source, ipv6)
    _write(path, text)
    return servers


def rebuilt_for_internal_resolver(path: Path) -> tuple[str, list[str]]:
    """A container's own resolv.conf, written without the embedded resolver, made into one for
    it, as dockerd's rebuildDNS when a container joins its first user network: its servers
    become the ones forwarded to, its search and options stay. Returns (text, servers)."""
    return internal_resolv_conf(source=path, resolved_source=path.with_name(path.name + ".none"))


def rewrite(path: Path, text: str) -> None:
    """Replaces the content of a name file a running container has bind-mounted (same inode)."""
    _write(path, text, in_place=True)


def internal_resolv_conf(dns: list[str] | None = None, search: list[str] | None = None,
                         options: list[str] | None = None, source: Path = Path("/etc/resolv.conf"),
                         resolved_source: Path = SYSTEMD_RESOLV_CONF, ipv6: bool = False) -> tuple[str, list[str]]:
    """The resolv.conf of a container on a user network, as dockerd writes it: the embedded
    resolver as the only nameserver, `ndots:0` unless an ndots option is given, and the
    servers it forwards to in the ExtServers comment (read back by ext_servers after a daemon
    restart). Returns (text, those servers)."""
    source_used = source
    lines = _read_lines(source)
    ns = _nameservers(lines)
    if ns and all(_LOCAL_NS.match(ln) for ln in ns) and resolved_source.exists():
        lines, source_used = _read_lines(resolved_source), resolved_source
    servers, host_search, host_options, other = [], [], [], []
    for ln in lines:
        fields = ln.split()
        if not fields or fields[0][0] in "#;":
            continue
        if fields[0] == "nameserver" and len(fields) > 1:
            servers.append(fields[1])
        elif fields[0] in ("search", "domain") and len(fields) > 1:
            host_search = fields[1:]
        elif fields[0] == "options":
            host_options += fields[1:]
        else:
            other.append(ln)
    overrides = []
    if dns:
        ext = [(d, False) for d in dns]
        overrides.append("nameservers")
    else:
        ext = [(d, _host_only(d, ipv6)) for d in servers]
    used_default = not ext
    if used_default:
        ext = [(d, False) for d in DEFAULT_DNS + (DEFAULT_DNS6 if ipv6 else [])]
    if search:
        host_search = [s for s in search if s != "."]
        overrides.append("search")
    ndots_from = "host" if any(o.startswith("ndots:") for o in host_options) else ""
    if options:
        host_options = list(options)
        overrides.append("options")
        ndots_from = "override" if any(o.startswith("ndots:") for o in options) else ""
    host_options = [o for o in host_options if not o.startswith("ndots:") or _valid_ndots(o)]
    if not any(o.startswith("ndots:") for o in host_options):
        host_options.append("ndots:0")
        ndots_from = "internal"
    text = _HEADER + f"nameserver {INTERNAL_NAMESERVER}\n"
    if host_search:
        text += "search " + " ".join(host_search) + "\n"
    text += "options " + " ".join(host_options) + "\n"
    text += "".join(ln + "\n" for ln in other)
    text += f"\n# Based on host file: '{source_used}' (internal resolver)\n"
    if used_default:
        text += "# Used default nameservers.\n"
    text += "# ExtServers: [" + " ".join(f"host({a})" if host else a for a, host in ext) + "]\n"
    text += "# Overrides: [" + " ".join(overrides) + "]\n"
    if ndots_from:
        text += f"# Option ndots from: {ndots_from}\n"
    return text, [a for a, _ in ext]


def _valid_ndots(option: str) -> bool:
    value = option.partition(":")[2]
    return value.isdigit()


def ext_servers(path: Path) -> list[str] | None:
    """The servers named in the ExtServers comment of a resolv.conf we wrote (None when the
    comment is not there: the file predates the resolver, or a user rewrote it)."""
    try:
        m = _EXT_SERVERS.search(path.read_text())
    except OSError:
        return None
    if m is None:
        return None
    out = []
    for item in m.group(1).split():
        if item.startswith("host(") and item.endswith(")"):
            item = item[5:-1]
        out.append(item)
    return out
