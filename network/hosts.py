"""The per-container /etc/hosts, /etc/hostname and /etc/resolv.conf, written as dockerd writes them."""

from __future__ import annotations

import collections
import os
import re
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
    tmp = path.with_name(path.name + ".tmp")
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
                peers: list[tuple[str, str]] | None = None, in_place: bool = False) -> None:
    """extra: (hostname, address) pairs (--add-host, --link); host_network copies the host's
    file; peers: (address, names) of the other containers on the same user networks, which
    is how names resolve there (see daemon/networks/names.py). An in-place rewrite keeps the lines
    added to the file since it was last written."""
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
    for addr, names in peers or []:
        text += f"{addr}\t{names}\n"
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
