"""/etc/hosts and resolv.conf as written for containers: links, in-place updates."""

from __future__ import annotations

import os
from pathlib import Path

from network import hosts


def test_hosts_with_links(tmp_path: Path) -> None:
    p = tmp_path / "hosts"
    hosts.write_hosts(p, "abc", "", "10.0.0.2", [("webalias 123456789abc web", "10.0.0.3")])
    lines = p.read_text().splitlines()
    assert lines[0] == "127.0.0.1\tlocalhost"
    assert lines[-2:] == ["10.0.0.3\twebalias 123456789abc web", "10.0.0.2\tabc"]


def test_in_place_keeps_the_inode(tmp_path: Path) -> None:
    p = tmp_path / "hosts"
    hosts.write_hosts(p, "abc", ip="10.0.0.2", extra=[("a-much-longer-peer-name-here", "10.0.0.9")])
    ino = os.stat(p).st_ino
    hosts.write_hosts(p, "abc", ip="10.0.0.2", in_place=True)  # shorter: must truncate
    assert os.stat(p).st_ino == ino
    assert "peer" not in p.read_text() and p.read_text().endswith("10.0.0.2\tabc\n")


def test_in_place_keeps_lines_the_user_added(tmp_path: Path) -> None:
    p = tmp_path / "hosts"
    hosts.write_hosts(p, "abc", ip="10.0.0.2", extra=[("peer1", "10.0.0.9")])
    with open(p, "a") as f:
        f.write("1.2.3.4\tmine\n")
    hosts.write_hosts(p, "abc", ip="10.0.0.2", extra=[("peer2", "10.0.0.8")], in_place=True)
    text = p.read_text()
    assert "1.2.3.4\tmine\n" in text and "10.0.0.8\tpeer2" in text and "peer1" not in text
    assert text.count("127.0.0.1\tlocalhost") == 1
    hosts.write_hosts(p, "abc", ip="10.0.0.2", in_place=True)
    assert p.read_text().endswith("10.0.0.2\tabc\n1.2.3.4\tmine\n")


def _resolv(tmp_path: Path, host: str, resolved: str | None = None, **kw: object) -> str:
    src, res, out = tmp_path / "etc-resolv", tmp_path / "resolved-resolv", tmp_path / "out"
    src.write_text(host)
    if resolved is not None:
        res.write_text(resolved)
    hosts.write_resolv_conf(out, source=src, resolved_source=res, **kw)  # type: ignore[arg-type]
    return out.read_text()


def test_resolv_conf_systemd_resolved_stub_uses_upstream_servers(tmp_path: Path) -> None:
    stub = "nameserver 127.0.0.53\noptions edns0 trust-ad\nsearch lan\n"
    upstream = "nameserver 192.0.2.53\nnameserver 2001:db8::53\nsearch lan\n"
    assert _resolv(tmp_path, stub, upstream) == "nameserver 192.0.2.53\nsearch lan\n"
    assert _resolv(tmp_path, stub, upstream, ipv6=True) == upstream
    # The host's network reaches the stub, but dockerd still reads resolved's file.
    assert _resolv(tmp_path, stub, upstream, host_network=True) == upstream


def test_resolv_conf_defaults_when_only_loopback_servers(tmp_path: Path) -> None:
    stub = "nameserver 127.0.0.53\nsearch lan\n"
    assert _resolv(tmp_path, stub) == "search lan\nnameserver 8.8.8.8\nnameserver 8.8.4.4\n"
    assert _resolv(tmp_path, "nameserver ::1\nnameserver 127.0.0.1\n", ipv6=True) == (
        "nameserver 8.8.8.8\nnameserver 8.8.4.4\n"
        "nameserver 2001:4860:4860::8888\nnameserver 2001:4860:4860::8844\n")
    assert _resolv(tmp_path, stub, host_network=True) == stub
    assert _resolv(tmp_path, stub, dns=["10.9.9.9"]) == "search lan\nnameserver 10.9.9.9\n"
    assert _resolv(tmp_path, "nameserver 10.1.1.1\n") == "nameserver 10.1.1.1\n"
