"""docker cp (the archive API) and docker export: both directions, running and stopped containers,
volumes and binds, symlinks, ownership, error messages, hostile archives, export/import round trip."""

from __future__ import annotations

import base64
import io
import json
import os
import subprocess
import tarfile
import urllib.parse
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.helpers import Daemon, build_busybox_rootfs, tmp_base

pytestmark = pytest.mark.e2e

DIR_BIT = 1 << 31
SYMLINK_BIT = 1 << 27


@pytest.fixture
def ctr(d: Daemon, uname: Callable[[str], str], tmp_path: Path) -> Iterator[str]:
    """A running busybox container with a named volume at /vol and a bind at /bind."""
    name = uname("cp")
    vol = uname("cpvol")
    (tmp_path / "bind").mkdir()
    d.docker("run", "-d", "--name", name, "-v", f"{vol}:/vol", "-v", f"{tmp_path / 'bind'}:/bind",
             "busybox", "sleep", "300")
    yield name
    d.docker("rm", "-f", "-v", name, check=False)
    d.docker("volume", "rm", "-f", vol, check=False)


def _q(path: str) -> str:
    return urllib.parse.quote(path, safe="")


def _tar(*entries: tuple[str, bytes | str | None, dict]) -> bytes:
    """A tar from (name, data | None for a directory | str for a symlink target, extra attrs)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name, data, extra in entries:
            ti = tarfile.TarInfo(name)
            ti.mode = 0o644
            if data is None:
                ti.type, ti.mode = tarfile.DIRTYPE, 0o755
            elif isinstance(data, str):
                ti.type, ti.linkname = tarfile.SYMTYPE, data
            else:
                ti.size = len(data)
            for k, val in extra.items():
                setattr(ti, k, val)
            tf.addfile(ti, io.BytesIO(data) if isinstance(data, bytes) else None)
    return buf.getvalue()


def _put(d: Daemon, name: str, path: str, body: bytes, flags: str = "") -> tuple[int, str]:
    r = d.api("PUT", f"/containers/{name}/archive?path={_q(path)}{flags}", body,
              headers={"Content-Type": "application/x-tar"})
    return r.status, r.message() if r.status != 200 else ""


def _exec(d: Daemon, name: str, script: str) -> str:
    return d.docker("exec", name, "sh", "-c", script).stdout


# -- host -> container --------------------------------------------------------------------------


def test_cp_into_container(d: Daemon, ctr: str, tmp_path: Path) -> None:
    f = tmp_path / "cpfile.txt"
    f.write_text("cp file\n")
    os.chmod(f, 0o640)
    src = tmp_path / "srcdir"
    (src / "sub").mkdir(parents=True)
    (src / "sub" / "a").write_text("a\n")
    os.symlink("sub/a", src / "link")
    d.docker("cp", f, f"{ctr}:/tmp/")
    d.docker("cp", src, f"{ctr}:/tmp/")
    d.docker("cp", f, f"{ctr}:/tmp/renamed.txt")
    out = _exec(d, ctr, "cat /tmp/cpfile.txt /tmp/renamed.txt /tmp/srcdir/sub/a; readlink /tmp/srcdir/link;"
                        "stat -c %a /tmp/cpfile.txt")
    assert out == "cp file\ncp file\na\nsub/a\n640\n"
    # into the volume and the bind mount
    d.docker("cp", f, f"{ctr}:/vol/")
    d.docker("cp", f, f"{ctr}:/bind/inbind.txt")
    assert _exec(d, ctr, "cat /vol/cpfile.txt /bind/inbind.txt") == "cp file\ncp file\n"
    assert (tmp_path / "bind" / "inbind.txt").read_text() == "cp file\n"
    # a tar on stdin; with -a the archive's owners are kept (the container has no User)
    d.docker("cp", "-a", "-", f"{ctr}:/tmp/", input=_tar(("fromstdin", b"s\n", {"uid": 1000, "gid": 1001})))
    assert _exec(d, ctr, "cat /tmp/fromstdin; stat -c '%u:%g' /tmp/fromstdin") == "s\n1000:1001\n"


def test_cp_into_stopped_container_and_volume(d: Daemon, ctr: str, tmp_path: Path) -> None:
    f = tmp_path / "x.txt"
    f.write_text("x\n")
    d.docker("stop", "-t", "0", ctr)
    d.docker("cp", f, f"{ctr}:/stopped.txt")
    d.docker("cp", f, f"{ctr}:/vol/stopped.txt")
    out = tmp_path / "out"
    out.mkdir()
    d.docker("cp", f"{ctr}:/stopped.txt", out)
    d.docker("cp", f"{ctr}:/vol/stopped.txt", out / "v.txt")
    assert (out / "stopped.txt").read_text() == "x\n" and (out / "v.txt").read_text() == "x\n"
    d.docker("start", ctr)
    assert _exec(d, ctr, "cat /stopped.txt /vol/stopped.txt") == "x\nx\n"
    # the temporary rootfs mount of the stopped container is gone
    d.docker("stop", "-t", "0", ctr)
    cid = d.docker("inspect", "-f", "{{.Id}}", ctr).stdout.strip()
    mounts = Path("/proc/self/mountinfo").read_text()
    assert f"{cid}/merged" not in mounts


def test_cp_errors(d: Daemon, ctr: str, tmp_path: Path) -> None:
    f = tmp_path / "f.txt"
    f.write_text("f\n")
    r = d.docker("cp", f, f"{ctr}:/nonexistent-dir/x", check=False)
    assert r.returncode == 1
    assert f"Error response from daemon: Could not find the file /nonexistent-dir in container {ctr}" in r.stderr
    r = d.docker("cp", f"{ctr}:/nope", tmp_path, check=False)
    assert r.returncode == 1 and f"Could not find the file /nope in container {ctr}" in r.stderr
    r = d.api("HEAD", f"/containers/{ctr}/archive?path=%2Fnope")
    assert r.status == 404
    r = d.api("GET", "/containers/no-such-ctr-x/archive?path=%2F")
    assert r.status == 404 and r.message() == "No such container: no-such-ctr-x"
    # a directory onto a file
    dsrc = tmp_path / "adir"
    dsrc.mkdir()
    r = d.docker("cp", dsrc, f"{ctr}:/etc/passwd", check=False)
    assert r.returncode == 1 and "cannot copy directory" in r.stderr
    # noOverwriteDirNonDir: a file over a directory, a directory over a file
    status, msg = _put(d, ctr, "/", _tar(("tmp", b"x", {})), "&noOverwriteDirNonDir=true")
    assert status == 400 and "cannot overwrite directory" in msg
    status, msg = _put(d, ctr, "/etc", _tar(("passwd", None, {})), "&noOverwriteDirNonDir=true")
    assert status == 400 and "cannot overwrite non-directory" in msg
    assert _exec(d, ctr, "test -d /tmp && test -f /etc/passwd && echo ok") == "ok\n"
    status, msg = _put(d, ctr, "/etc/passwd", _tar(("x", b"x", {})))
    assert status == 400 and msg == "extraction point is not a directory"
    # "file/" and "file/." name no directory: not the file itself
    for path in ("/etc/passwd/", "/etc/passwd/."):
        r = d.docker("cp", f"{ctr}:{path}", "-", check=False)
        assert r.returncode == 1 and "not a directory" in r.stderr, r
    r = d.docker("cp", f, f"{ctr}:/etc/passwd/", check=False)
    assert r.returncode == 1 and "no such directory" in r.stderr, r
    assert _exec(d, ctr, "head -c 5 /etc/passwd") == "root:"


def test_cp_read_only_targets(d: Daemon, uname: Callable[[str], str], tmp_path: Path) -> None:
    name = uname("ro")
    d.docker("create", "--name", name, "--read-only", "-v", f"{tmp_path}:/ro:ro", "-v", f"{uname('rw')}:/rw",
             "busybox", "true")
    f = tmp_path / "f"
    f.write_text("f")
    r = d.docker("cp", f, f"{name}:/ro/", check=False)
    assert r.returncode == 1 and "mounted volume is marked read-only" in r.stderr
    r = d.docker("cp", f, f"{name}:/tmp/", check=False)
    assert r.returncode == 1 and "container rootfs is marked read-only" in r.stderr
    d.docker("cp", f, f"{name}:/rw/")  # a writable volume in a read-only container is fine
    d.docker("rm", "-v", name)
    d.docker("volume", "rm", uname("rw"))


# -- container -> host --------------------------------------------------------------------------


def test_cp_out_of_container(d: Daemon, ctr: str, tmp_path: Path) -> None:
    _exec(d, ctr, "mkdir -p /tmp/d/sub && echo hi > /tmp/d/sub/f && ln -s /etc/passwd /tmp/d/pw"
                  " && echo v > /vol/vf && echo b > /bind/bf && chown 1000:1001 /tmp/d/sub/f")
    out = tmp_path / "out"
    out.mkdir()
    d.docker("cp", f"{ctr}:/tmp/d", out / "dir")
    assert (out / "dir" / "sub" / "f").read_text() == "hi\n"
    assert os.readlink(out / "dir" / "pw") == "/etc/passwd"
    d.docker("cp", f"{ctr}:/tmp/d/pw", out / "pw")
    assert os.readlink(out / "pw") == "/etc/passwd"
    d.docker("cp", "-L", f"{ctr}:/tmp/d/pw", out / "pwL")
    assert (out / "pwL").read_text().startswith("root:")
    # the CLI extracts without chown (files belong to whoever runs docker cp), -a or not
    d.docker("cp", "-a", f"{ctr}:/tmp/d/sub/f", out / "owned")
    assert (out / "owned").read_text() == "hi\n"
    d.docker("cp", f"{ctr}:/vol/vf", out)
    d.docker("cp", f"{ctr}:/bind/bf", out)
    assert (out / "vf").read_text() == "v\n" and (out / "bf").read_text() == "b\n"
    # to stdout: the raw tar, top entry the base name
    raw = subprocess.run(["docker", "cp", f"{ctr}:/etc/hostname", "-"], env=d.env, capture_output=True,
                         check=True).stdout
    with tarfile.open(fileobj=io.BytesIO(raw)) as tf:
        members = tf.getmembers()
        assert [m.name for m in members] == ["hostname"]
        hostname = tf.extractfile(members[0]).read()  # type: ignore[union-attr]
    cid = d.docker("inspect", "-f", "{{.Id}}", ctr).stdout.strip()
    assert hostname == (cid[:12] + "\n").encode()


def test_stat_header(d: Daemon, ctr: str) -> None:
    _exec(d, ctr, "ln -s /etc /tmp/etclink")
    r = d.api("HEAD", f"/containers/{ctr}/archive?path=%2Ftmp%2F")
    assert r.status == 200
    st = json.loads(base64.b64decode(r.headers["X-Docker-Container-Path-Stat"]))
    assert list(st) == ["name", "size", "mode", "mtime", "linkTarget"]
    assert st["name"] == "tmp" and st["mode"] & DIR_BIT and st["linkTarget"] == ""
    r = d.api("HEAD", f"/containers/{ctr}/archive?path=%2Ftmp%2Fetclink")
    st = json.loads(base64.b64decode(r.headers["X-Docker-Container-Path-Stat"]))
    assert st["mode"] & SYMLINK_BIT and st["linkTarget"] == "/etc" and st["name"] == "etclink"
    r = d.api("GET", f"/containers/{ctr}/archive?path=%2Fetc%2Fpasswd")
    assert r.status == 200 and r.headers["Content-Type"] == "application/x-tar"
    st = json.loads(base64.b64decode(r.headers["X-Docker-Container-Path-Stat"]))
    assert st["mode"] == 0o644 and st["name"] == "passwd"


# -- hostile input ------------------------------------------------------------------------------


def test_hostile_archives_stay_inside(d: Daemon, ctr: str) -> None:
    canary = f"pydockerd-escape-{uuid.uuid4().hex[:8]}"
    outside = [Path("/tmp") / canary, Path("/") / canary]
    bad = [
        _tar((f"../../../../tmp/{canary}", b"x", {})),
        _tar(("esc", "../../../../../tmp", {}), (f"esc/{canary}", b"x", {})),
        _tar(("hl", b"", {"type": tarfile.LNKTYPE, "linkname": "../../../../etc/passwd"})),
    ]
    for body in bad:
        status, msg = _put(d, ctr, "/tmp", body)
        assert status == 400, msg
    # an absolute name lands inside the target
    status, _ = _put(d, ctr, "/tmp", _tar((f"/{canary}", b"abs", {})))
    assert status == 200
    assert _exec(d, ctr, f"cat /tmp/{canary}") == "abs"
    # symlinks inside the container pointing out are resolved inside it
    _exec(d, ctr, "ln -s / /up && ln -s ../../../../../../.. /up2 && mkdir -p /tmp/x && ln -s /tmp /tmp/x/t")
    for target in ("/up", "/up2", "/up2/tmp"):
        status, msg = _put(d, ctr, target, _tar((canary, b"in", {})))
        assert status == 200, msg
    assert _exec(d, ctr, f"cat /{canary} /tmp/{canary}") == "inin"
    raw = d.api("GET", f"/containers/{ctr}/archive?path={_q('/up2/etc/passwd')}")
    assert raw.status == 200
    with tarfile.open(fileobj=io.BytesIO(raw.body)) as tf:
        data = tf.extractfile("passwd").read()  # type: ignore[union-attr]
    assert data == _busybox_passwd()  # the container's passwd, not the host's
    for p in outside:
        assert not p.exists(), f"{p} was written outside the container"


def _busybox_passwd() -> bytes:
    with tarfile.open(build_busybox_rootfs(tmp_base() / "passwd-check.tar")) as tf:
        return tf.extractfile("etc/passwd").read()  # type: ignore[union-attr]


def test_etc_symlink_to_root(d: Daemon, uname: Callable[[str], str]) -> None:
    """A container whose /etc is a symlink to /: reads and writes through it stay in the container."""
    name = uname("etcroot")
    d.docker("create", "--name", name, "busybox", "true")
    status, msg = _put(d, name, "/", _tar(("etc", "/", {})))  # no noOverwriteDirNonDir: replaces /etc
    assert status == 200, msg
    canary = f"pydockerd-etc-{uuid.uuid4().hex[:8]}"
    status, msg = _put(d, name, "/etc", _tar((canary, b"c", {})))
    assert status == 200, msg
    assert not Path("/", canary).exists() and not Path("/etc", canary).exists()
    r = d.api("GET", f"/containers/{name}/archive?path={_q('/etc/' + canary)}")
    assert r.status == 200
    r = d.api("GET", f"/containers/{name}/archive?path={_q('/etc/shadow')}")
    assert r.status == 404  # the host's /etc/shadow is not reachable
    r = d.api("HEAD", f"/containers/{name}/archive?path=%2Fetc")
    st = json.loads(base64.b64decode(r.headers["X-Docker-Container-Path-Stat"]))
    assert st["linkTarget"] == "/"
    exported = d.api("GET", f"/containers/{name}/export", timeout=60)
    with tarfile.open(fileobj=io.BytesIO(exported.body)) as tf:
        names = tf.getnames()
    assert canary in names and "etc" in names and not any(n.startswith("etc/") for n in names)


# -- export / import ----------------------------------------------------------------------------


def test_export_import_round_trip(d: Daemon, uname: Callable[[str], str], tmp_path: Path) -> None:
    name = uname("exp")
    d.docker("create", "--name", name, "busybox", "true")
    payload = _tar(
        ("rt", None, {}),
        ("rt/file", b"content\n", {"mode": 0o4755, "uid": 1234, "gid": 4321}),
        ("rt/hard", b"", {"type": tarfile.LNKTYPE, "linkname": "rt/file"}),
        ("rt/sym", "file", {}),
        ("rt/null", b"", {"type": tarfile.CHRTYPE, "devmajor": 1, "devminor": 3, "mode": 0o666}),
        ("rt/x", b"x", {"pax_headers": {"SCHILY.xattr.user.k": "v1"}}),
    )
    status, msg = _put(d, name, "/", payload)
    assert status == 200, msg
    out = tmp_path / "exp.tar"
    d.docker("export", "-o", out, name)
    with_stdout = subprocess.run(["docker", "export", name], env=d.env, capture_output=True, check=True).stdout
    assert len(with_stdout) == out.stat().st_size
    with tarfile.open(out) as tf:
        m = {x.name: x for x in tf.getmembers()}
    assert m["rt/file"].mode == 0o4755 and (m["rt/file"].uid, m["rt/file"].gid) == (1234, 4321)
    assert m["rt/hard"].islnk() and m["rt/hard"].linkname == "rt/file"
    assert m["rt/sym"].issym() and m["rt/sym"].linkname == "file"
    assert m["rt/null"].ischr() and (m["rt/null"].devmajor, m["rt/null"].devminor) == (1, 3)
    assert m["rt/x"].pax_headers.get("SCHILY.xattr.user.k") == "v1"
    assert "bin/busybox" in m

    img = uname("reimported") + ":1"
    d.docker("import", out, img, timeout=120)
    script = ("stat -c '%a %u %g %h' /rt/file; cat /rt/hard; readlink /rt/sym; stat -c '%F %t %T' /rt/null;"
              "echo ok")
    res = d.docker("run", "--rm", img, "sh", "-c", script).stdout
    assert res == "4755 1234 4321 2\ncontent\nfile\ncharacter special file 1 3\nok\n"
    # xattrs survive too: export the new container and look
    c2 = d.docker("create", img, "true").stdout.strip()
    again = d.api("GET", f"/containers/{c2}/export", timeout=60)
    with tarfile.open(fileobj=io.BytesIO(again.body)) as tf:
        assert tf.getmember("rt/x").pax_headers.get("SCHILY.xattr.user.k") == "v1"
    d.docker("rm", c2)
    d.docker("rmi", img)


def test_abandoned_downloads_free_their_threads(d: Daemon, ctr: str) -> None:
    """Clients that stop reading an export or a cp download half-way (`| head`) must not each keep
    a daemon thread waiting forever: a handful of them used to hang every blocking operation."""
    assert d.proc is not None
    pid = d.proc.pid
    before = len(os.listdir(f"/proc/{pid}/task"))
    for _ in range(10):
        for cmd in (f"docker export {ctr} | head -c 1000 >/dev/null",
                    f"docker cp {ctr}:/bin - | head -c 100 >/dev/null"):
            subprocess.run(["sh", "-c", cmd], env=d.env, timeout=60, check=False)
    assert d.docker("run", "--rm", "busybox", "echo", "alive", timeout=30).stdout == "alive\n"
    assert d.docker("exec", ctr, "true", timeout=30).returncode == 0
    # Threads come and go with work; twenty abandoned streams must not leave twenty behind.
    assert len(os.listdir(f"/proc/{pid}/task")) < before + 8


def test_cp_of_a_tree_goes_through_its_mounts(d: Daemon, ctr: str, tmp_path: Path) -> None:
    """A directory copied in or out across mount points goes through the volumes and binds, as
    the container sees them, never into (or out of) what they hide; a mounted file is not replaced."""
    tree = tmp_path / "tree"
    for rel, data in (("vol/tv", "tv\n"), ("bind/tb", "tb\n"), ("top", "top\n")):
        (tree / rel).parent.mkdir(parents=True, exist_ok=True)
        (tree / rel).write_text(data)
    d.docker("cp", f"{tree}/.", f"{ctr}:/")
    assert _exec(d, ctr, "cat /vol/tv /bind/tb /top") == "tv\ntb\ntop\n"
    assert (tmp_path / "bind" / "tb").read_text() == "tb\n"  # the host side of the bind
    out = subprocess.run(["docker", "cp", f"{ctr}:/", "-"], env=d.env, capture_output=True, check=True).stdout
    with tarfile.open(fileobj=io.BytesIO(out)) as tf:
        names = set(tf.getnames())
        hosts = tf.extractfile("./etc/hosts").read()  # type: ignore[union-attr]
    assert {"./vol/tv", "./bind/tb"} <= names, sorted(n for n in names if "vol" in n or "bind" in n)
    assert b"localhost" in hosts  # the daemon's file, not the empty mount point under it
    evil = tmp_path / "evil"
    (evil / "etc").mkdir(parents=True)
    (evil / "etc" / "hosts").write_text("evil\n")
    r = d.docker("cp", f"{evil}/.", f"{ctr}:/", check=False)
    assert r.returncode == 1 and "mount point" in r.stderr, r
    assert "localhost" in _exec(d, ctr, "cat /etc/hosts")
    assert _exec(d, ctr, "grep -c ' /etc/hosts ' /proc/self/mountinfo") == "1\n"
