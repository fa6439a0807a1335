"""The harness itself: its error paths must be loud and its leak check must catch leaks.

None of these needs a working pydockerd; they run fake daemons and synthetic snapshots.
"""

from __future__ import annotations

import sys
import tarfile
import time
from pathlib import Path

import pytest

from tests import leakcheck
from tests.helpers import Daemon, build_busybox_rootfs

pytestmark = pytest.mark.e2e


def _fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: str) -> Daemon:
    monkeypatch.setenv("PYDOCKERD_CMD", f"{sys.executable} -c '{code}'")
    return Daemon(tmp_path / "fake", "pydtfake0", "10.250.250.1/24")


def test_daemon_that_exits_is_reported_with_its_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dm = _fake(tmp_path, monkeypatch, 'import sys; print("boom: no such flag", file=sys.stderr); sys.exit(3)')
    with pytest.raises(RuntimeError, match=r"(?s)exited with 3 before answering /_ping.*boom: no such flag"):
        dm.start(timeout=20)


def test_daemon_that_never_answers_is_killed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dm = _fake(tmp_path, monkeypatch, "import time; time.sleep(60)")
    t0 = time.monotonic()
    with pytest.raises(RuntimeError, match="did not answer /_ping within 1"):
        dm.start(timeout=1.0)
    assert time.monotonic() - t0 < 15
    assert dm.proc is not None and dm.proc.poll() is not None, "the hung daemon was left running"


def test_docker_helper_raises_with_output(tmp_path: Path) -> None:
    dm = Daemon(tmp_path / "nodaemon", "pydtfake1", "10.250.251.1/24")
    with pytest.raises(AssertionError, match=r"(?s)`docker ps` exited 1.*stderr:"):
        dm.docker("ps", timeout=20)
    r = dm.docker("ps", check=False, timeout=20)
    assert r.returncode == 1 and "connect" in r.stderr.lower()
    assert dm.env["DOCKER_CONFIG"] == str(dm.docker_config)


def test_docker_helper_timeout_kills(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A fake `docker` that ignores SIGTERM, like the CLI while attached.
    bindir = tmp_path / "bin"
    bindir.mkdir()
    fake = bindir / "docker"
    fake.write_text("#!/bin/sh\ntrap '' TERM\nsleep 30\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}:/usr/bin:/bin")
    dm = Daemon(tmp_path / "slow", "pydtfake2", "10.250.252.1/24")
    t0 = time.monotonic()
    r = dm.docker("run", "x", timeout=1, check=False, env=dm.env | {"PATH": f"{bindir}:/usr/bin:/bin"})
    assert r.returncode == 137 and time.monotonic() - t0 < 10


def test_busybox_rootfs(tmp_path: Path) -> None:
    tar = build_busybox_rootfs(tmp_path / "rootfs.tar")
    with tarfile.open(tar) as tf:
        names = {m.name: m for m in tf.getmembers()}
    assert names["bin/busybox"].isfile() and names["bin/busybox"].mode & 0o111
    assert names["bin/sh"].issym() and names["bin/sh"].linkname == "busybox"
    assert names["tmp"].mode == 0o1777
    assert all(m.uid == 0 and m.gid == 0 for m in names.values())
    for f in ("etc/passwd", "etc/group", "root", "proc", "sys", "dev"):
        assert f in names


def test_leak_check_finds_leaks(tmp_path: Path) -> None:
    base = leakcheck.Snapshot(
        mounts=["/", "/proc"], netns={"old"}, links={"lo": "", "eth0": "", "veth-old": "veth"},
        cgroups={"/sys/fs/cgroup/memory/" + "a" * 64}, procs={1: ("/sbin/init", "pid:[1]")},
    )
    root = str(tmp_path)
    cid = "b" * 64
    now = leakcheck.Snapshot(
        mounts=["/", "/proc", f"{root}/data/containers/{cid}/merged", "/other/mount"],
        netns={"old", "pydt-ns"},
        links={"lo": "", "eth0": "", "veth-old": "veth", "veth1234": "veth", "pydt1232": "bridge"},
        cgroups={"/sys/fs/cgroup/memory/" + "a" * 64, f"/sys/fs/cgroup/memory/pydockerd/{cid}",
                 f"/sys/fs/cgroup/pids/ctr-{cid[:12]}", "/sys/fs/cgroup/pids/unrelated"},
        procs={1: ("/sbin/init", "pid:[1]"), 4242: (f"python3 runtime/monitor.py {root}/exec/x", "pid:[1]")},
    )
    leaks = leakcheck.find_leaks(base, [root], ("pydt123",), [cid], now=now)
    text = "\n".join(leaks)
    assert f"mount: {root}/data/containers/{cid}/merged" in text
    assert "/other/mount" not in text
    assert "named netns: /run/netns/pydt-ns" in text
    assert "veth1234" in text and "pydt1232" in text and "veth-old" not in text
    assert f"/pydockerd/{cid}" in text and f"ctr-{cid[:12]}" in text
    assert "a" * 64 not in text and "unrelated" not in text
    assert "process 4242" in text
    assert leakcheck.find_leaks(base, [root], ("pydt123",), [cid], now=base) == []


def test_leak_check_live_snapshot_is_clean_against_itself() -> None:
    snap = leakcheck.Snapshot.take()
    assert snap.mounts and snap.links and snap.procs
    leaks = leakcheck.find_leaks(snap, ["/nonexistent-root-xyz"], ("pydtzz",), now=snap)
    assert leaks == []
