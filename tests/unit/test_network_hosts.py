"""/etc/hosts as written for containers: peers on user networks, in-place updates."""

from __future__ import annotations

import os
from pathlib import Path

from network import hosts


def test_hosts_with_links_and_peers(tmp_path: Path) -> None:
    p = tmp_path / "hosts"
    hosts.write_hosts(p, "abc", "", "10.0.0.2", [("webalias 123456789abc web", "10.0.0.3")],
                      peers=[("10.0.0.4", "db alias 0123456789ab")])
    lines = p.read_text().splitlines()
    assert lines[0] == "127.0.0.1\tlocalhost"
    assert lines[-3:] == ["10.0.0.3\twebalias 123456789abc web", "10.0.0.2\tabc", "10.0.0.4\tdb alias 0123456789ab"]


def test_in_place_keeps_the_inode(tmp_path: Path) -> None:
    p = tmp_path / "hosts"
    hosts.write_hosts(p, "abc", ip="10.0.0.2", peers=[("10.0.0.9", "a-much-longer-peer-name-here")])
    ino = os.stat(p).st_ino
    hosts.write_hosts(p, "abc", ip="10.0.0.2", in_place=True)  # shorter: must truncate
    assert os.stat(p).st_ino == ino
    assert "peer" not in p.read_text() and p.read_text().endswith("10.0.0.2\tabc\n")
