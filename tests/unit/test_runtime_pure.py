"""Unit tests of runtime's pure parts: spec, users, lookpath, json-file log, path resolution."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from runtime import jsonlog, lookpath, rootfs, spec, users

ID = "ab" * 32


def _spec(**kw: object) -> dict:
    return {"id": ID, "rootfs": "/r", "args": ["true"], **kw}


# -- spec


def test_normalize_fills_dockerd_defaults() -> None:
    cfg = spec.normalize(_spec())
    assert cfg["hostname"] == ID[:12]
    assert cfg["cwd"] == "/" and cfg["user"] == "" and cfg["network"] == "new"
    assert cfg["capabilities"] == list(spec.DEFAULT_CAPABILITIES)
    assert "/proc/kcore" in cfg["masked_paths"] and "/proc/sys" in cfg["readonly_paths"]
    assert cfg["shm_size"] == 64 * 1024 * 1024 and cfg["init"] is None and cfg["log_path"] == ""
    assert set(cfg) == set(spec.ContainerSpec.__annotations__)


def test_normalize_default_capabilities_mask() -> None:
    mask = sum(1 << spec.CAPABILITIES.index(c) for c in spec.DEFAULT_CAPABILITIES)
    assert f"{mask:016x}" == "00000000a80425fb"


def test_normalize_privileged_and_capability_names() -> None:
    cfg = spec.normalize(_spec(privileged=True, masked_paths=["/x"]))
    assert cfg["capabilities"] == list(spec.CAPABILITIES) and cfg["masked_paths"] == []
    cfg = spec.normalize(_spec(capabilities=["chown", "CAP_KILL", "NET_ADMIN"]))
    assert cfg["capabilities"] == ["CAP_CHOWN", "CAP_KILL", "CAP_NET_ADMIN"]


def test_normalize_mounts() -> None:
    cfg = spec.normalize(_spec(mounts=[
        {"source": "/h", "destination": "/c", "type": "bind", "readonly": True},
        {"type": "tmpfs", "destination": "/t", "options": "size=1m"},
    ]))
    assert cfg["mounts"][0] == {"type": "bind", "source": "/h", "destination": "/c", "readonly": True,
                                "options": ""}
    assert cfg["mounts"][1]["source"] == "tmpfs" and cfg["mounts"][1]["options"] == "size=1m"


def test_normalize_drops_env_names_without_value() -> None:
    assert spec.normalize(_spec(env=["A=1", "UNSET"]))["env"] == ["A=1"]


@pytest.mark.parametrize("bad, text", [
    ({"id": "xyz"}, "id"),
    ({"args": []}, "args"),
    ({"rootfs": "relative"}, "rootfs"),
    ({"network": "bridge"}, "network"),
    ({"capabilities": ["CAP_NOPE"]}, "capability"),
    ({"mounts": [{"type": "bind", "source": "rel", "destination": "/x"}]}, "mounts[0].source"),
    ({"mounts": [{"type": "tmpfs"}]}, "mounts[0].destination"),
    ({"env": "A=1"}, "env"),
    ({"shm_size": 0}, "shm_size"),
    ({"tty": "yes"}, "tty"),
    ({"bogus": 1}, "bogus"),
])
def test_normalize_rejects(bad: dict, text: str) -> None:
    with pytest.raises(spec.SpecError, match=text.replace("[", r"\[").replace("]", r"\]")):
        spec.normalize(_spec(**bad))


# -- users

PASSWD = """root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/bin/false
nobody:x:65534:65534:nobody:/home:/bin/false
alice:x:1000:1000::/home/alice:/bin/sh
"""
GROUP = """root:x:0:
wheel:x:10:root,alice
staff:x:50:alice
nogroup:x:65534:
alice:x:1000:
"""


@pytest.fixture()
def etc(tmp_path: Path) -> tuple[str, str]:
    (tmp_path / "passwd").write_text(PASSWD)
    (tmp_path / "group").write_text(GROUP)
    return str(tmp_path / "passwd"), str(tmp_path / "group")


@pytest.mark.parametrize("user, uid, gid, groups, home", [
    ("", 0, 0, [0, 10], "/root"),
    ("root", 0, 0, [0, 10], "/root"),
    ("nobody", 65534, 65534, [65534], "/home"),
    ("alice", 1000, 1000, [1000, 10, 50], "/home/alice"),
    ("1000", 1000, 1000, [1000, 10, 50], "/home/alice"),
    ("1000:1000", 1000, 1000, [1000], "/home/alice"),
    ("alice:staff", 1000, 50, [50], "/home/alice"),
    ("4242", 4242, 0, [0], "/"),
    ("4242:4343", 4242, 4343, [4343], "/"),
])
def test_resolve_user(etc: tuple[str, str], user: str, uid: int, gid: int, groups: list[int], home: str) -> None:
    ident = users.resolve(user, *etc)
    assert (ident.uid, ident.gid, ident.groups, ident.home) == (uid, gid, groups, home)


def test_resolve_unknown_user_and_group(etc: tuple[str, str]) -> None:
    with pytest.raises(users.UserError, match="unable to find user bob: no matching entries in passwd file"):
        users.resolve("bob", *etc)
    with pytest.raises(users.UserError, match="unable to find group nope: no matching entries in group file"):
        users.resolve("alice:nope", *etc)


def test_resolve_without_passwd_file(tmp_path: Path) -> None:
    ident = users.resolve("", str(tmp_path / "none"), str(tmp_path / "none"))
    assert (ident.uid, ident.gid, ident.home) == (0, 0, "/")


# -- lookpath


def test_lookpath(tmp_path: Path) -> None:
    exe = tmp_path / "bin" / "tool"
    exe.parent.mkdir()
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    plain = tmp_path / "bin" / "plain"
    plain.write_text("x")
    assert lookpath.find("tool", f"/nonexistent:{exe.parent}") == str(exe)
    with pytest.raises(lookpath.ExecError) as e:
        lookpath.find("plain", str(exe.parent))
    assert (e.value.message, e.value.exit_code) == ('exec: "plain": executable file not found in $PATH', 127)
    with pytest.raises(lookpath.ExecError) as e:
        lookpath.find(str(plain), "")
    assert (e.value.message, e.value.exit_code) == (f'exec: "{plain}": permission denied', 126)
    with pytest.raises(lookpath.ExecError) as e:
        lookpath.find(str(tmp_path), "")
    assert (e.value.message, e.value.exit_code) == (f'exec: "{tmp_path}": permission denied', 126)
    with pytest.raises(lookpath.ExecError) as e:
        lookpath.find("/nonexistent-binary", "")
    assert e.value.exit_code == 127
    assert e.value.message == ('exec: "/nonexistent-binary": stat /nonexistent-binary: '
                               'no such file or directory')


# -- json-file log


def test_rfc3339nano_trims_like_go() -> None:
    assert jsonlog.rfc3339nano(1_000_000_000) == "1970-01-01T00:00:01Z"
    assert jsonlog.rfc3339nano(1_120_000_000) == "1970-01-01T00:00:01.12Z"
    assert jsonlog.rfc3339nano(1_000_000_001) == "1970-01-01T00:00:01.000000001Z"


def test_jsonlog_splits_lines_and_partials(tmp_path: Path) -> None:
    path = tmp_path / "c-json.log"
    log = jsonlog.JsonLog(str(path))
    log.write("stdout", b"a\nb")
    log.write("stderr", b"err\n")
    log.write("stdout", b"c\nlast")
    log.write("stdout", b"x" * (jsonlog.MAX_LINE + 10) + b"\n")
    log.close()
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert [(r["stream"], r["log"]) for r in records] == [
        ("stdout", "a\n"), ("stderr", "err\n"), ("stdout", "bc\n"),
        ("stdout", "last" + "x" * (jsonlog.MAX_LINE - 4)), ("stdout", "x" * 14 + "\n"),
    ]
    assert all(r["time"].endswith("Z") for r in records)


def test_jsonlog_flush_writes_unterminated_line(tmp_path: Path) -> None:
    path = tmp_path / "log"
    log = jsonlog.JsonLog(str(path))
    log.write("stdout", b"no newline")
    log.close()
    assert json.loads(path.read_text())["log"] == "no newline"


# -- rootfs path handling


def test_resolve_keeps_symlinks_inside_root(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    os.symlink("/", root / "abs")
    os.symlink("../../../../..", root / "etc" / "up")
    os.symlink("/etc", root / "etclink")
    r = str(root)
    assert rootfs.resolve(r, "/abs/etc/passwd") == f"{r}/etc/passwd"
    assert rootfs.resolve(r, "/etc/up/tmp/x") == f"{r}/tmp/x"
    assert rootfs.resolve(r, "/../../x") == f"{r}/x"
    assert rootfs.resolve(r, "/etclink/hosts") == f"{r}/etc/hosts"
    assert rootfs.resolve(r, "/") == r
    os.symlink("loop", root / "loop")
    with pytest.raises(OSError):
        rootfs.resolve(r, "/loop")


def test_parse_options() -> None:
    flags, clear, prop, data = rootfs.parse_options("size=65536k,noexec,nosuid,rprivate,mode=1777")
    assert flags == rootfs.MS_NOEXEC | rootfs.MS_NOSUID
    assert prop == rootfs.MS_PRIVATE | rootfs.MS_REC
    assert data == "size=65536k,mode=1777" and clear == 0
