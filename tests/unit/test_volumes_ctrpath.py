"""daemon.containers.ctrpath: container paths across the rootfs and its mounts, never leaving them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from daemon.containers.ctrpath import Mount, locate


@pytest.fixture
def tree(tmp_path: Path) -> tuple[Path, list[Mount]]:
    rootfs, vol, host_file = tmp_path / "rootfs", tmp_path / "vol", tmp_path / "hostname"
    (rootfs / "etc").mkdir(parents=True)
    (rootfs / "etc" / "passwd").write_text("ctr")
    (rootfs / "data").mkdir()
    (rootfs / "data" / "hidden").write_text("under the mount")
    os.symlink("/", rootfs / "up")
    os.symlink("../../../../..", rootfs / "up2")
    os.symlink("/data/sub", rootfs / "into-vol")
    vol.mkdir()
    (vol / "sub").mkdir()
    (vol / "sub" / "f").write_text("v")
    os.symlink("/etc/passwd", vol / "abs")  # absolute: resolved from the container's root
    os.symlink("../../../../etc", vol / "rel")
    host_file.write_text("h")
    mounts = [Mount("/data", vol, {"RW": True}), Mount("/etc/hostname", host_file, {"RW": True})]
    return rootfs, mounts


def test_rootfs_and_mounts(tree: tuple[Path, list[Mount]]) -> None:
    rootfs, mounts = tree
    loc = locate(rootfs, mounts, "/etc/passwd", follow_last=True)
    assert (loc.root, loc.rel, loc.cpath, loc.mount) == (rootfs, ["etc", "passwd"], "/etc/passwd", None)
    loc = locate(rootfs, mounts, "/data/sub/f", follow_last=True)
    assert loc.root == mounts[0].source and loc.rel == ["sub", "f"] and loc.mount is mounts[0]
    loc = locate(rootfs, mounts, "/data/hidden", follow_last=True)  # the mount hides the rootfs file
    assert loc.root == mounts[0].source and loc.rel == ["hidden"]
    loc = locate(rootfs, mounts, "/etc/hostname", follow_last=True)
    assert loc.root == mounts[1].source.parent and loc.rel == ["hostname"]
    loc = locate(rootfs, mounts, "/into-vol/f", follow_last=True)
    assert loc.cpath == "/data/sub/f" and loc.mount is mounts[0]


def test_symlinks_stay_inside(tree: tuple[Path, list[Mount]]) -> None:
    rootfs, mounts = tree
    for p in ("/up/etc/passwd", "/up2/etc/passwd", "/../../etc/passwd", "/data/abs", "/data/rel/passwd"):
        loc = locate(rootfs, mounts, p, follow_last=True)
        assert (loc.root, loc.rel) == (rootfs, ["etc", "passwd"]), p
    loc = locate(rootfs, mounts, "/data/abs", follow_last=False)
    assert loc.cpath == "/data/abs" and loc.rel == ["abs"]
    loc = locate(rootfs, mounts, "/up/nope/x", follow_last=True)  # missing parts kept lexically
    assert loc.cpath == "/nope/x" and loc.root == rootfs


def test_symlink_loop(tmp_path: Path) -> None:
    (tmp_path / "r").mkdir()
    os.symlink("b", tmp_path / "r" / "a")
    os.symlink("a", tmp_path / "r" / "b")
    with pytest.raises(OSError, match="too many levels"):
        locate(tmp_path / "r", [], "/a/x", follow_last=True)
