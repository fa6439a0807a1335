"""The per-container /etc/hosts, /etc/hostname and /etc/resolv.conf, written as dockerd writes them."""

from __future__ import annotations

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


def write_hosts(path: Path, hostname: str, domainname: str = "", ip: str | None = None,
                extra: list[tuple[str, str]] | None = None, host_network: bool = False,
                peers: list[tuple[str, str]] | None = None, in_place: bool = False) -> None:
    """extra: (hostname, address) pairs (--add-host, --link); host_network copies the host's
    file; peers: (address, names) of the other containers on the same user networks, which
    is how names resolve there (see daemon/networks.py)."""
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
    _write(path, text, in_place)


def write_resolv_conf(path: Path, host_network: bool = False, dns: list[str] | None = None,
                      search: list[str] | None = None, options: list[str] | None = None,
                      source: Path = Path("/etc/resolv.conf")) -> None:
    """Copies the host's resolver config; without host networking, loopback servers are dropped
    (they are unreachable from the container's netns), as dockerd does."""
    try:
        lines = source.read_text().splitlines()
    except OSError:
        lines = []
    if not host_network:
        lines = [ln for ln in lines if not _LOCAL_NS.match(ln)]
    if dns:
        lines = [ln for ln in lines if not ln.strip().startswith("nameserver")]
        lines += [f"nameserver {d}" for d in dns]
    if search:
        lines = [ln for ln in lines if not ln.strip().startswith(("search", "domain"))]
        lines.append("search " + " ".join(search))
    if options:
        lines = [ln for ln in lines if not ln.strip().startswith("options")]
        lines.append("options " + " ".join(options))
    _write(path, "\n".join(lines) + "\n" if lines else "")
