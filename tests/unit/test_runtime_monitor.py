"""The monitor with real namespaces (run as root): busybox containers in a temp rootfs.

Long on purpose: every case needs the same rootfs fixture and spawn helpers kept here."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import textwrap
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import pytest

from runtime.client import ExitStatus, Monitor, NotRunning, StartError, read_exit_status

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (namespaces, mounts)"),
    pytest.mark.skipif(not os.path.exists("/bin/busybox"), reason="needs /bin/busybox (busybox-static)"),
    pytest.mark.timeout(60),
]

ID = "c0ffee" + "0" * 58
PASSWD = """root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/bin/false
nobody:x:65534:65534:nobody:/home:/bin/false
"""
GROUP = """root:x:0:
tty:x:5:
wheel:x:10:root
nogroup:x:65534:
"""

_spawned: list[Monitor] = []


def run(coro: Coroutine[Any, Any, Any]) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 30))


@pytest.fixture(scope="module")
def applets() -> list[str]:
    out = subprocess.run(["/bin/busybox", "--list"], capture_output=True, text=True, check=True).stdout
    return [name for name in out.split() if name != "busybox"]


@pytest.fixture()
def box(tmp_path: Path, applets: list[str]) -> Path:
    """A fresh container dir: <box>/rootfs (busybox, /etc/passwd, /etc/group) and <box>/bundle."""
    root = tmp_path / "rootfs"
    for d in ("bin", "etc", "tmp"):
        (root / d).mkdir(parents=True)
    shutil.copy2("/bin/busybox", root / "bin" / "busybox")
    for name in applets:
        os.symlink("busybox", root / "bin" / name)
    (root / "etc" / "passwd").write_text(PASSWD)
    (root / "etc" / "group").write_text(GROUP)
    (tmp_path / "bundle").mkdir()
    return tmp_path


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.fixture(autouse=True)
def no_leaks(tmp_path: Path):
    _spawned.clear()
    yield
    leaked = []
    deadline = time.monotonic() + 5
    for m in _spawned:
        for pid in (m.monitor_pid, m.pid):
            while pid and _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.02)
            if pid and _alive(pid):
                leaked.append(pid)
                os.kill(pid, signal.SIGKILL)
    with open("/proc/self/mountinfo") as f:
        mounts = [line for line in f if str(tmp_path) in line]
    assert not leaked, f"processes left behind: {leaked}"
    assert not mounts, f"mounts left behind: {mounts}"


def make_spec(box: Path, args: list[str], **kw: Any) -> dict:
    spec = {
        "id": ID, "rootfs": str(box / "rootfs"), "args": args,
        "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOSTNAME=c0ffee000000"],
        "hostname": "c0ffee000000", "log_path": str(box / "bundle" / "c-json.log"),
    }
    spec.update(kw)
    return spec


async def spawn(box: Path, args: list[str], **kw: Any) -> Monitor:
    m = await Monitor.spawn(box / "bundle", make_spec(box, args, **kw))
    _spawned.append(m)
    return m


def demux(data: bytes) -> tuple[bytes, bytes]:
    out = {1: b"", 2: b""}
    while data:
        stream, size = struct.unpack(">BxxxI", data[:8])
        out[stream] += data[8:8 + size]
        data = data[8 + size:]
    return out[1], out[2]


async def run_box(box: Path, args: list[str], **kw: Any) -> tuple[ExitStatus, bytes, bytes]:
    """Spawn, attach stdout+stderr, start, collect the output, wait."""
    m = await spawn(box, args, **kw)
    reader, writer = await m.attach(stdin=False, stdout=True, stderr=True)
    await m.start()
    data = await reader.read()
    writer.close()
    status = await m.wait()
    if kw.get("tty"):
        return status, data, b""
    out, err = demux(data)
    return status, out, err


def log_records(box: Path) -> list[dict]:
    return [json.loads(line) for line in (box / "bundle" / "c-json.log").read_text().splitlines()]


# -- output, log, exit codes


def test_output_reaches_attach_and_log(box: Path) -> None:
    status, out, err = run(run_box(box, ["sh", "-c", "echo hi; echo oops >&2; printf partial"]))
    assert (status.exit_code, status.error, status.oom_killed) == (0, "", False)
    assert status.finished_at.endswith("Z")
    assert out == b"hi\npartial" and err == b"oops\n"
    records = log_records(box)
    assert sorted((r["stream"], r["log"]) for r in records) == [
        ("stderr", "oops\n"), ("stdout", "hi\n"), ("stdout", "partial")]
    exit_json = json.loads((box / "bundle" / "exit.json").read_text())
    assert exit_json["exit_code"] == 0
    assert read_exit_status(box / "bundle") == status
    # The monitor cleaned up after itself.
    assert not {"control.sock", "attach.sock", "monitor.pid"} & set(os.listdir(box / "bundle"))


@pytest.mark.parametrize("script, code", [("exit 0", 0), ("exit 3", 3), ("sleep 5 & kill -9 $!; wait $!", 137)])
def test_exit_codes(box: Path, script: str, code: int) -> None:
    status, _, _ = run(run_box(box, ["sh", "-c", script]))
    assert status.exit_code == code


def test_killed_by_signal_is_128_plus_n(box: Path) -> None:
    async def main() -> ExitStatus:
        m = await spawn(box, ["sleep", "30"])
        await m.start()
        await m.kill(signal.SIGKILL)
        return await m.wait()

    assert run(main()).exit_code == 137


@pytest.mark.parametrize("args, code, text", [
    (["nosuchcmd"], 127, 'exec: "nosuchcmd": executable file not found in $PATH'),
    (["/nonexistent-binary"], 127, 'exec: "/nonexistent-binary": stat /nonexistent-binary: no such file or directory'),
    (["/etc/passwd"], 126, 'exec: "/etc/passwd": permission denied'),
    (["/etc"], 126, 'exec: "/etc": permission denied'),
])
def test_exec_failures(box: Path, args: list[str], code: int, text: str) -> None:
    async def main() -> tuple[StartError, ExitStatus]:
        m = await spawn(box, args)
        with pytest.raises(StartError) as e:
            await m.start()
        return e.value, await m.wait()

    err, status = run(main())
    assert (err.message, err.exit_code) == (text, code)
    assert (status.exit_code, status.error) == (code, text)


def test_setup_failure_is_reported_at_spawn(box: Path) -> None:
    spec = make_spec(box, ["true"], mounts=[{"type": "bind", "source": "/nonexistent/src", "destination": "/x"}])
    with pytest.raises(StartError) as e:
        run(Monitor.spawn(box / "bundle", spec))
    assert e.value.message == ('error mounting "/nonexistent/src" to rootfs at "/x": '
                               "stat /nonexistent/src: no such file or directory")
    assert e.value.exit_code == 127
    assert not {"control.sock", "attach.sock", "monitor.pid"} & set(os.listdir(box / "bundle"))


def test_unknown_user(box: Path) -> None:
    with pytest.raises(StartError, match="unable to find user bob: no matching entries in passwd file"):
        run(spawn(box, ["true"], user="bob"))


# -- the container's view


def test_isolation(box: Path) -> None:
    script = textwrap.dedent("""\
        echo pid=$$
        hostname
        grep -E '^Cap(Inh|Prm|Eff|Bnd|Amb)' /proc/self/status
        ls /dev
        ls /sys/class/net
        cat /sys/class/net/lo/flags
        touch /sys/x 2>&1 || true
        sh -c 'echo 1 > /proc/sys/kernel/domainname' 2>&1 || true
        wc -c < /proc/timer_list 2>/dev/null || echo 0
        grep -E ' /(proc|sys|dev|dev/pts|dev/shm|dev/mqueue) ' /proc/mounts | cut -d' ' -f2-4
        pwd
        id
    """)
    status, out, err = run(run_box(box, ["sh", "-c", script], cwd="/work/dir"))
    assert status.exit_code == 0, err
    text = out.decode()
    lines = text.splitlines()
    assert lines[0] == "pid=1"
    assert lines[1] == "c0ffee000000"
    assert "CapInh:\t0000000000000000" in lines
    assert "CapPrm:\t00000000a80425fb" in lines
    assert "CapEff:\t00000000a80425fb" in lines
    assert "CapBnd:\t00000000a80425fb" in lines
    assert "CapAmb:\t0000000000000000" in lines
    for entry in ("null", "zero", "full", "random", "urandom", "tty", "fd", "stdin", "stdout", "stderr",
                  "ptmx", "core", "pts", "shm", "mqueue"):
        assert entry in lines, entry
    assert "lo" in lines and "0x9" in lines  # only lo, and it is up
    assert "eth0" not in text
    assert "Read-only file system" in text and text.count("Read-only file system") == 2
    assert "0" in lines  # /proc/timer_list masked by /dev/null
    assert "/proc proc rw,nosuid,nodev,noexec,relatime" in lines
    assert "/sys sysfs ro,nosuid,nodev,noexec,relatime" in lines
    assert any(line.startswith("/dev/shm tmpfs rw,nosuid,nodev,noexec,relatime,size=65536k") for line in lines)
    assert "/work/dir" in lines
    assert "uid=0(root) gid=0(root) groups=0(root),10(wheel)" in lines
    assert (box / "rootfs" / "work" / "dir").is_dir()


def test_devices_work(box: Path) -> None:
    status, out, err = run(run_box(box, ["sh", "-c", "head -c 3 /dev/zero | wc -c; echo x > /dev/null; "
                                                   "head -c 8 /dev/urandom | wc -c; ls -l /dev/null"]))
    assert status.exit_code == 0, err
    assert out.decode().splitlines()[:2] == ["3", "8"]
    assert out.decode().splitlines()[2].startswith("crw-rw-rw-")


@pytest.mark.parametrize("user, expected, capeff", [
    ("nobody", "uid=65534(nobody) gid=65534(nogroup) groups=65534(nogroup)", "0000000000000000"),
    ("1000:1000", "uid=1000 gid=1000 groups=1000", "0000000000000000"),
    ("0", "uid=0(root) gid=0(root) groups=0(root),10(wheel)", "00000000a80425fb"),
])
def test_user(box: Path, user: str, expected: str, capeff: str) -> None:
    status, out, err = run(run_box(box, ["sh", "-c", "id; grep CapEff /proc/self/status; echo $HOME"], user=user))
    assert status.exit_code == 0, err
    lines = out.decode().splitlines()
    assert lines[0] == expected
    assert lines[1] == f"CapEff:\t{capeff}"
    assert lines[2] == {"nobody": "/home", "1000:1000": "/", "0": "/root"}[user]


def test_privileged(box: Path) -> None:
    status, out, _ = run(run_box(box, ["sh", "-c", "grep CapEff /proc/self/status; "
                                                   "grep ' /sys ' /proc/mounts | cut -d' ' -f4; "
                                                   "grep -c /proc/timer_list /proc/mounts"],
                                 privileged=True))
    lines = out.decode().splitlines()
    with open("/proc/self/status") as f:
        ours = next(line.split()[1] for line in f if line.startswith("CapPrm:"))
    assert lines[0] == f"CapEff:\t{ours}"
    assert lines[1].startswith("rw,")
    assert lines[2] == "0"  # nothing masked


def test_mounts(box: Path) -> None:
    host_file = box / "hosts"
    host_file.write_text("127.0.0.1 localhost\n")
    host_dir = box / "data"
    host_dir.mkdir()
    (host_dir / "f").write_text("data\n")
    # Image content that points out of the rootfs: must stay inside it.
    os.symlink("/", box / "rootfs" / "evil")
    os.symlink("../../../../../../../..", box / "rootfs" / "etc" / "up")
    escape = Path("/") / f"pydockerd-escape-{os.getpid()}"
    mounts = [
        {"type": "bind", "source": str(host_file), "destination": "/etc/hosts"},
        {"type": "bind", "source": str(host_dir), "destination": "/data", "readonly": True},
        {"type": "tmpfs", "destination": "/scratch", "options": "size=1m,mode=1777,noexec"},
        {"type": "tmpfs", "destination": f"/evil/{escape.name}"},
        {"type": "tmpfs", "destination": f"/etc/up/{escape.name}-2"},
    ]
    script = ("cat /etc/hosts /data/f; touch /data/x 2>&1; grep -E ' /(scratch|data) ' /proc/mounts | cut -d' ' -f2-4;"
              f" ls -d /{escape.name} /{escape.name}-2")
    try:
        status, out, err = run(run_box(box, ["sh", "-c", script], mounts=mounts))
        assert not escape.exists() and not Path(f"{escape}-2").exists()
    finally:
        for p in (escape, Path(f"{escape}-2")):
            if p.exists():
                p.rmdir()
    assert status.exit_code == 0, err
    lines = out.decode().splitlines()
    assert lines[:2] == ["127.0.0.1 localhost", "data"]
    assert "Read-only file system" in lines[2]
    assert any(line.startswith("/data ") and " ro," in line for line in lines)
    assert any(line.startswith("/scratch tmpfs rw,") and "noexec" in line and "size=1024k" in line for line in lines)
    assert (box / "rootfs" / escape.name).is_dir() and (box / "rootfs" / f"{escape.name}-2").is_dir()
    assert (box / "rootfs" / "etc" / "hosts").is_file()


def test_init_binary(box: Path) -> None:
    init = box / "fake-init"
    # Stands in for tini: an init that runs what follows "--".
    init.write_text('#!/bin/sh\n[ "$1" = -- ] && shift\necho "init:$0"\nexec "$@"\n')
    init.chmod(0o755)
    status, out, err = run(run_box(box, ["sh", "-c", "echo child; grep docker-init /proc/mounts | cut -d' ' -f2,4"],
                                   init=str(init)))
    assert status.exit_code == 0, err
    lines = out.decode().splitlines()
    assert lines[0] == "init:/sbin/docker-init" and lines[1] == "child"
    assert lines[2].startswith("/sbin/docker-init ro,")


def test_host_network(box: Path) -> None:
    # The host's links come and go while this runs (other daemons' veths, namespaces made
    # ahead): the container must see every link present throughout and none that never was.
    before = set(os.listdir("/sys/class/net"))
    status, out, _ = run(run_box(box, ["ls", "/sys/class/net"], network="host"))
    after = set(os.listdir("/sys/class/net"))
    seen = set(out.decode().split())
    assert before & after <= seen <= before | after
    assert len(seen) > 1  # not a namespace of its own (only lo)


# -- stdin, tty


def test_stdin_half_close_with_stdin_once(box: Path) -> None:
    async def main() -> tuple[bytes, ExitStatus]:
        m = await spawn(box, ["cat"], open_stdin=True, stdin_once=True)
        reader, writer = await m.attach(stdin=True, stdout=True, stderr=True)
        await m.start()
        writer.write(b"hello\n")
        writer.write(b"world\n")
        await writer.drain()
        writer.write_eof()
        data = await reader.read()
        writer.close()
        return data, await m.wait()

    data, status = run(main())
    assert demux(data) == (b"hello\nworld\n", b"")
    assert status.exit_code == 0


def test_close_stdin_op(box: Path) -> None:
    async def main() -> tuple[bytes, ExitStatus]:
        m = await spawn(box, ["sh", "-c", "cat; echo done"], open_stdin=True)
        reader, writer = await m.attach(stdin=True, stdout=True, stderr=False)
        await m.start()
        writer.write(b"abc\n")
        await writer.drain()
        await asyncio.sleep(0.1)
        await m.close_stdin()
        data = await reader.read()
        writer.close()
        return data, await m.wait()

    data, status = run(main())
    assert demux(data)[0] == b"abc\ndone\n"


def test_tty(box: Path) -> None:
    async def main() -> tuple[bytes, ExitStatus]:
        m = await spawn(box, ["sh", "-c", "sleep 0.2; tty; stty size; echo out; echo err >&2"], tty=True,
                        console_size=[24, 80])
        reader, writer = await m.attach(stdin=False, stdout=True, stderr=True)
        await m.resize(40, 120)
        await m.start()
        data = await reader.read()
        writer.close()
        return data, await m.wait()

    data, status = run(main())
    assert status.exit_code == 0
    assert data == b"/dev/pts/0\r\n40 120\r\nout\r\nerr\r\n"
    assert [r["stream"] for r in log_records(box)] == ["stdout"] * 4


# -- control


def test_state_kill_wait(box: Path) -> None:
    async def main() -> None:
        m = await spawn(box, ["sh", "-c", "trap 'exit 42' TERM; while :; do sleep 0.05; done"])
        assert (await m.state())["status"] == "created"
        pid = await m.start()
        assert pid == m.pid
        assert await m.start() == pid  # idempotent
        state = await m.state()
        assert state["status"] == "running" and state["pid"] == pid and state["started_at"].endswith("Z")
        waiters = [asyncio.create_task(m.wait()) for _ in range(3)]
        await asyncio.sleep(0.1)
        await m.kill(signal.SIGTERM)
        statuses = await asyncio.gather(*waiters)
        assert {s.exit_code for s in statuses} == {42}
        assert (await m.wait()).exit_code == 42  # after the fact, from exit.json
        state = await m.state()
        assert state["status"] == "exited" and state["exit_code"] == 42
        with pytest.raises(NotRunning):
            await m.kill(signal.SIGKILL)

    run(main())


def test_kill_all(box: Path) -> None:
    async def main() -> ExitStatus:
        m = await spawn(box, ["sh", "-c", "sleep 30 & wait $!; echo waited $?"])
        reader, writer = await m.attach(stdin=False, stdout=True, stderr=False)
        await m.start()
        await asyncio.sleep(0.2)
        await m.kill(signal.SIGTERM, all=True)  # sh (PID 1) ignores it, sleep dies
        data = await reader.read()
        writer.close()
        assert demux(data)[0] == b"waited 143\n"
        return await m.wait()

    assert run(main()).exit_code == 0


def test_kill_created_container(box: Path) -> None:
    async def main() -> None:
        m = await spawn(box, ["true"])
        await m.kill(signal.SIGKILL)
        status = await m.wait()
        assert status.exit_code == 137
        with pytest.raises(StartError):
            await m.start()

    run(main())


def test_connect_after_daemon_restart(box: Path) -> None:
    # The "daemon" is a separate process that spawns and starts the container, then exits.
    script = textwrap.dedent(f"""
        import asyncio, json, sys
        sys.path.insert(0, {str(Path(__file__).resolve().parents[2])!r})
        from runtime.client import Monitor
        async def main():
            m = await Monitor.spawn({str(box / "bundle")!r}, json.loads(sys.argv[1]))
            await m.start()
            print(json.dumps([m.pid, m.monitor_pid]))
        asyncio.run(main())
    """)
    spec = make_spec(box, ["sh", "-c", "echo started; sleep 30"])
    res = subprocess.run([sys.executable, "-c", script, json.dumps(spec)], capture_output=True, text=True,
                         timeout=30)
    assert res.returncode == 0, res.stderr
    pid, monitor_pid = json.loads(res.stdout)

    async def main() -> None:
        m = await Monitor.connect(box / "bundle")
        assert m is not None
        _spawned.append(m)
        assert (m.pid, m.monitor_pid) == (pid, monitor_pid)
        assert (await m.state())["status"] == "running"
        await m.kill(signal.SIGKILL)
        assert (await m.wait()).exit_code == 137
        assert await Monitor.connect(box / "bundle") is None

    run(main())
    assert [r["log"] for r in log_records(box)] == ["started\n"]


def test_long_bundle_path(box: Path) -> None:
    bundle = box / ("b" * 60) / ("c" * 60)
    bundle.mkdir(parents=True)

    async def main() -> tuple[bytes, ExitStatus]:
        m = await Monitor.spawn(bundle, make_spec(box, ["echo", "long"], log_path=""))
        _spawned.append(m)
        reader, writer = await m.attach(stdin=False, stdout=True, stderr=True)
        await m.start()
        data = await reader.read()
        writer.close()
        return data, await m.wait()

    data, status = run(main())
    assert demux(data)[0] == b"long\n" and status.exit_code == 0


def _rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


def test_back_pressure_from_a_stalled_client(box: Path) -> None:
    async def main() -> None:
        m = await spawn(box, ["sh", "-c", "yes 0123456789abcdef0123456789abcdef"], log_path="")
        _, stalled = await m.attach(stdin=False, stdout=True, stderr=True)  # never reads
        await m.start()
        await asyncio.sleep(0.5)
        first = _rss_kib(m.monitor_pid)
        await asyncio.sleep(1.0)
        second = _rss_kib(m.monitor_pid)
        assert second < 64 * 1024, f"monitor RSS {second} KiB"
        assert second - first < 4 * 1024, f"monitor RSS grew from {first} to {second} KiB"
        await m.kill(signal.SIGKILL)
        stalled.close()
        assert (await m.wait()).exit_code == 137

    run(main())


def test_attach_after_exit_and_late_clients_get_eof(box: Path) -> None:
    async def main() -> None:
        m = await spawn(box, ["sh", "-c", "echo a; sleep 0.2; echo b"])
        r1, w1 = await m.attach(stdin=False, stdout=True, stderr=False)
        await m.start()
        await asyncio.sleep(0.05)
        r2, w2 = await m.attach(stdin=False, stdout=False, stderr=True)
        d1, d2 = await asyncio.gather(r1.read(), r2.read())
        w1.close()
        w2.close()
        assert demux(d1) == (b"a\nb\n", b"")
        assert d2 == b""
        await m.wait()

    run(main())


def test_join_network_namespace_by_path(box: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    other = tmp_path_factory.mktemp("other")
    for d in ("rootfs", "bundle"):
        shutil.copytree(box / d, other / d, symlinks=True)

    async def main() -> tuple[bytes, bytes]:
        first = await spawn(other, ["sh", "-c", "readlink /proc/self/ns/net; sleep 30"])
        r1, w1 = await first.attach(stdin=False, stdout=True, stderr=False)
        await first.start()
        _, size = struct.unpack(">BxxxI", await r1.readexactly(8))
        line1 = await r1.readexactly(size)
        try:
            status, out, _ = await run_box(box, ["readlink", "/proc/self/ns/net"],
                                           network=f"/proc/{first.pid}/ns/net")
            assert status.exit_code == 0
        finally:
            await first.kill(signal.SIGKILL)
            await r1.read()
            w1.close()
            await first.wait()
        return line1, out

    first_ns, second_ns = run(main())
    assert first_ns.startswith(b"net:[") and first_ns == second_ns
    assert first_ns.strip() != os.readlink("/proc/self/ns/net").encode()


def test_sigterm_to_monitor_still_records_exit(box: Path) -> None:
    async def main() -> ExitStatus:
        m = await spawn(box, ["sleep", "30"])
        await m.start()
        os.kill(m.monitor_pid, signal.SIGTERM)
        return await m.wait()

    assert run(main()).exit_code == 137
    assert read_exit_status(box / "bundle").exit_code == 137


def test_container_dies_with_its_monitor(box: Path) -> None:
    async def main() -> ExitStatus:
        m = await spawn(box, ["sleep", "30"])
        await m.start()
        os.kill(m.monitor_pid, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while _alive(m.pid) and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        assert not _alive(m.pid)
        assert await Monitor.connect(box / "bundle") is None
        return await m.wait()

    status = run(main())
    assert (status.exit_code, status.error) == (255, "container monitor exited unexpectedly")


def test_a_monitor_that_does_not_answer_is_killed_with_its_container(box: Path) -> None:
    async def main() -> tuple[bool, bool, ExitStatus]:
        m = await spawn(box, ["sleep", "30"])
        await m.start()
        waiting = asyncio.create_task(m.wait())
        answered = await m.responds(1.0)
        os.kill(m.monitor_pid, signal.SIGSTOP)
        stopped_answers = await m.responds(0.5)
        assert await m.kill_process()
        return answered, stopped_answers, await waiting

    answered, stopped_answers, status = run(main())
    assert (answered, stopped_answers) == (True, False)
    assert (status.exit_code, status.error) == (137, "the container monitor did not answer and was killed")
    assert not _alive(_spawned[0].pid)  # PDEATHSIG


def test_kill_process_spares_a_process_that_is_not_the_bundles_monitor(box: Path) -> None:
    """monitor.pid naming another process (a reused pid): it does not hold the bundle open."""
    bundle = box / "bundle"
    other = subprocess.Popen(["sleep", "30"])
    try:
        (bundle / "monitor.pid").write_text(str(other.pid))
        assert run(Monitor(bundle, 0).kill_process()) is False
        assert other.poll() is None
        holder = subprocess.Popen([sys.executable, "-c", "import os, sys, time; fd = os.open(sys.argv[1], os.O_RDONLY);"
                                   " time.sleep(30)", str(bundle)])
        try:
            wait_for_fd = time.monotonic() + 5
            while not any(os.readlink(f"/proc/{holder.pid}/fd/{fd}") == str(bundle)
                          for fd in os.listdir(f"/proc/{holder.pid}/fd")) and time.monotonic() < wait_for_fd:
                time.sleep(0.02)
            assert run(Monitor(bundle, 0, monitor_pid=holder.pid).kill_process()) is True
            assert holder.wait(5) == -signal.SIGKILL
        finally:
            holder.kill()
            holder.wait()
    finally:
        other.kill()
        other.wait()


def test_spawn_refuses_a_bundle_with_a_live_monitor(box: Path) -> None:
    async def main() -> None:
        m = await spawn(box, ["sleep", "30"])
        with pytest.raises(StartError, match="already running"):
            await Monitor.spawn(box / "bundle", make_spec(box, ["true"]))
        await m.kill(signal.SIGKILL)
        await m.wait()

    run(main())


def test_tty_with_stdin(box: Path) -> None:
    async def main() -> tuple[bytes, ExitStatus]:
        m = await spawn(box, ["sh"], tty=True, open_stdin=True, stdin_once=True)
        reader, writer = await m.attach(stdin=True, stdout=True, stderr=True)
        await m.start()
        writer.write(b"echo hel''lo\n")
        writer.write(b"exit 5\n")
        await writer.drain()
        data = await reader.read()
        writer.close()
        return data, await m.wait()

    data, status = run(main())
    assert status.exit_code == 5
    assert b"\r\nhello\r\n" in data


def _ppid(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[1])


def test_init_is_the_monitors_child_once_started(box: Path) -> None:
    """The init is forked by the monitor's short-lived helper (runtime/shim.py run()): by the
    start it has been reparented to the monitor, the only other process of the container."""
    async def main() -> ExitStatus:
        m = await spawn(box, ["sleep", "30"])
        await m.start()
        assert _ppid(m.pid) == m.monitor_pid
        children = [int(p) for p in os.listdir("/proc") if p.isdigit() and _alive(int(p))
                    and _safe_ppid(int(p)) == m.monitor_pid]
        assert children == [m.pid]
        os.kill(m.pid, signal.SIGKILL)
        return await m.wait()

    assert run(main()).exit_code == 137


def _safe_ppid(pid: int) -> int:
    try:
        return _ppid(pid)
    except (OSError, ValueError, IndexError):
        return 0
