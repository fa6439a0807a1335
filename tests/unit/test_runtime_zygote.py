"""Monitors and exec processes forked by the template process (run as root): what they
guarantee is what a freshly started monitor guarantees, with or without the template."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from runtime import client
from runtime.client import Monitor
from runtime.execclient import spawn_exec
from runtime.launcher import ZygoteLauncher
from tests.unit.test_runtime_monitor import (  # noqa: F401 - fixtures
    _alive,
    _spawned,
    applets,
    box,
    demux,
    make_spec,
    no_leaks,
)

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (namespaces, mounts)"),
    pytest.mark.skipif(not os.path.exists("/bin/busybox"), reason="needs /bin/busybox (busybox-static)"),
    pytest.mark.timeout(60),
]


def _ppid(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[1])


def _gone(pid: int, timeout: float = 5) -> bool:
    deadline = time.monotonic() + timeout
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    return not _alive(pid)


async def _run_to_end(m: Monitor) -> tuple[int, bytes, bytes]:
    reader, writer = await m.attach(stdin=False, stdout=True, stderr=True)
    await m.start()
    data = await reader.read()
    writer.close()
    status = await m.wait()
    return (status.exit_code, *demux(data))


def test_monitor_outlives_the_template(box: Path, tmp_path: Path) -> None:  # noqa: F811
    async def scenario() -> None:
        launcher = ZygoteLauncher(tmp_path / "exec")
        assert await launcher.start()
        zygote = launcher.pid
        assert zygote
        m = await Monitor.spawn(box / "bundle", make_spec(box, ["sh", "-c", "echo hi; sleep 0.5; exit 7"]), launcher)
        _spawned.append(m)  # killed at the end if a check failed first
        try:
            # The template's child in a session of its own, never the daemon's: the template's
            # death cannot take it along.
            assert _ppid(m.monitor_pid) == zygote
            assert os.getsid(m.monitor_pid) == m.monitor_pid
            os.kill(zygote, signal.SIGKILL)  # the template dies while the container runs
            assert (await _run_to_end(m)) == (7, b"hi\n", b"")
            # The next launch starts a new template.
            m2 = await Monitor.spawn(box / "bundle", make_spec(box, ["true"]), launcher)
            _spawned.append(m2)  # killed at the end if a check failed first
            assert launcher.pid not in (None, zygote)
            assert (await _run_to_end(m2))[0] == 0
        finally:
            await launcher.close()
        assert _gone(m.monitor_pid) and _gone(m2.monitor_pid)

    asyncio.run(asyncio.wait_for(scenario(), 30))


def test_a_monitor_that_ends_leaves_no_zombie_of_the_template(box: Path, tmp_path: Path) -> None:  # noqa: F811
    async def scenario() -> None:
        launcher = ZygoteLauncher(tmp_path / "exec")
        assert await launcher.start()
        try:
            m = await Monitor.spawn(box / "bundle", make_spec(box, ["true"]), launcher)
            _spawned.append(m)  # killed at the end if a check failed first
            assert _ppid(m.monitor_pid) == launcher.pid
            assert (await _run_to_end(m))[0] == 0
            # The template ignores SIGCHLD: the kernel reaps its children, no zombie is left.
            deadline = time.monotonic() + 5
            while os.path.exists(f"/proc/{m.monitor_pid}") and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            assert not os.path.exists(f"/proc/{m.monitor_pid}")
        finally:
            await launcher.close()

    asyncio.run(asyncio.wait_for(scenario(), 30))


def test_close_ends_the_template_not_the_containers(box: Path, tmp_path: Path) -> None:  # noqa: F811
    async def scenario() -> None:
        launcher = ZygoteLauncher(tmp_path / "exec")
        await launcher.start()
        zygote = launcher.pid
        m = await Monitor.spawn(box / "bundle", make_spec(box, ["sleep", "30"]), launcher)
        _spawned.append(m)  # killed at the end if a check failed first
        await m.start()
        await launcher.close()
        assert zygote and _gone(zygote)
        assert _alive(m.pid) and _alive(m.monitor_pid)
        again = await Monitor.connect(box / "bundle")
        assert again is not None and again.pid == m.pid
        await again.kill(signal.SIGKILL)
        status = await again.wait()
        assert status.exit_code == 137
        assert _gone(m.monitor_pid)

    asyncio.run(asyncio.wait_for(scenario(), 30))


def test_without_a_template_monitors_start_fresh(box: Path, tmp_path: Path) -> None:  # noqa: F811
    async def scenario() -> None:
        launcher = ZygoteLauncher(tmp_path / "exec", python="/nonexistent/python", )
        assert not await launcher.start()
        launcher.fallback.python = sys.executable  # the fallback itself works
        m = await Monitor.spawn(box / "bundle", make_spec(box, ["sh", "-c", "echo fresh"]), launcher)
        _spawned.append(m)  # killed at the end if a check failed first
        assert (await _run_to_end(m)) == (0, b"fresh\n", b"")
        await launcher.close()

    asyncio.run(asyncio.wait_for(scenario(), 30))


def _exec_spec(pid: int, args: list[str], **kw: object) -> dict:
    return {"pid": pid, "args": args, "env": ["PATH=/bin"], "cwd": "/", "user": "", "tty": False,
            "open_stdin": False, "capabilities": [], "privileged": True, **kw}


def test_exec_forked_by_the_template(box: Path, tmp_path: Path) -> None:  # noqa: F811
    async def scenario() -> None:
        launcher = ZygoteLauncher(tmp_path / "exec")
        assert await launcher.start()
        m = await Monitor.spawn(box / "bundle", make_spec(box, ["sleep", "30"]), launcher)
        _spawned.append(m)  # killed at the end if a check failed first
        try:
            await m.start()
            ex = await spawn_exec(_exec_spec(m.pid, ["sh", "-c", "echo $$; ls /proc/$$/fd; echo err >&2; exit 3"]),
                                  launcher)
            out, err = await asyncio.gather(ex.proc.stdout.read(), ex.proc.stderr.read())
            assert await ex.wait() == 3
            pid, *fds = out.decode().split()
            assert pid != "1" and fds == ["0", "1", "2"]  # nothing of the template's or the status pipe
            assert err == b"err\n"

            ex = await spawn_exec(_exec_spec(m.pid, ["cat"], open_stdin=True), launcher)
            ex.proc.stdin.write(b"through stdin\n")
            ex.proc.stdin.close()
            assert await ex.proc.stdout.read() == b"through stdin\n"
            assert await ex.wait() == 0

            ex = await spawn_exec(_exec_spec(m.pid, ["nosuchcommand"]), launcher)
            assert b"executable file not found" in await ex.proc.stderr.read()
            assert await ex.wait() == 127

            ex = await spawn_exec(_exec_spec(m.pid, ["sh", "-c", "tty; exit 4"], tty=True, console_size=[20, 70]),
                                  launcher)
            reader, _ = await ex.tty_streams()
            data = b""
            while chunk := await reader.read(4096):
                data += chunk
            assert b"/dev/pts/" in data
            assert await ex.wait() == 4
            ex.close()
        finally:
            await m.kill(signal.SIGKILL)
            await m.wait()
            await launcher.close()

    asyncio.run(asyncio.wait_for(scenario(), 30))


def test_the_init_reads_the_config_and_reports_a_bad_one(box: Path, tmp_path: Path,  # noqa: F811
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """The monitor reads monitor.json only; config.json is the init's, which says what is wrong with it."""
    from runtime import client
    from runtime.client import StartError

    write = client._write_file

    def truncated_config(path: Path, data: bytes) -> None:
        write(path, data[:10] if path.name == "config.json" else data)

    async def scenario() -> None:
        launcher = ZygoteLauncher(tmp_path / "exec")
        assert await launcher.start()
        try:
            with pytest.raises(StartError) as e:
                await Monitor.spawn(box / "bundle", make_spec(box, ["true"]), launcher)
            assert e.value.message.startswith("cannot read config.json:")
            assert e.value.exit_code == 128
            assert not {"control.sock", "attach.sock", "monitor.pid"} & set(os.listdir(box / "bundle"))
        finally:
            await launcher.close()

    monkeypatch.setattr(client, "_write_file", truncated_config)
    asyncio.run(asyncio.wait_for(scenario(), 30))


def test_warm_up_leaves_nothing_behind() -> None:
    """The template's rehearsal of a monitor (runtime/shim.py warm_up) closes every fd it
    opens and creates no file: it runs in the template, whose fds the monitors inherit."""
    from runtime import shim

    before = sorted(os.listdir("/proc/self/fd"))
    shim.warm_up(3)
    assert sorted(os.listdir("/proc/self/fd")) == before
    assert not os.path.exists("/exit.json") and not os.path.exists("/monitor.pid")


def test_template_compiles_missing_bytecode_in_a_child(tmp_path: Path) -> None:
    """The template byte-compiles its package before importing it when a .pyc is missing
    (in another process: compiling in the template costs every monitor memory)."""
    from runtime import zygote

    (tmp_path / "mod.py").write_text("X = 1\n")
    zygote._ensure_bytecode(str(tmp_path))
    assert (tmp_path / "__pycache__" / f"mod.{sys.implementation.cache_tag}.pyc").exists()


def test_a_monitor_never_ready_is_a_clear_error(box: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    # asyncio.wait_for's TimeoutError has no message: `docker start` answered
    # "failed to start container X: " with nothing after the colon.
    class Stuck:
        async def launch(self, bundle_dir: Path, log_fd: int) -> bytes:
            await asyncio.Event().wait()
            return b""

    monkeypatch.setattr(client, "READY_TIMEOUT", 0.2)
    with pytest.raises(TimeoutError, match=r"^the container monitor was not ready within 0\.2 s$"):
        asyncio.run(Monitor.spawn(box / "bundle", make_spec(box, ["true"]), Stuck()))


def test_after_the_fill_new_objects_sit_next_to_each_other() -> None:
    # The template takes every free block of the allocator's partly used pools before it
    # forks monitors, so that what a monitor allocates lands in empty pools, block after block,
    # rather than one object on each shared page. Checked in a fresh interpreter the way the
    # template runs (-S -I, the runtime imported and rehearsed).
    script = textwrap.dedent("""
        import gc, json, sys
        sys.path.insert(0, sys.argv[1])
        from runtime import shim, zygote
        shim.warm_up(2)
        gc.collect()
        before = zygote.free_blocks()
        keep = zygote._fill_pools()
        objs = [bytes(64 - zygote._BYTES_HEADER) for _ in range(40)]
        span = max(map(id, objs)) - min(map(id, objs))
        print(json.dumps({"sizes": sorted(before), "kept": len(keep), "span": span}))
    """)
    out = subprocess.run([sys.executable, "-S", "-I", "-c", script, str(ROOT)], capture_output=True,
                         text=True, check=True).stdout
    got = json.loads(out)
    assert got["sizes"][:4] == [16, 32, 48, 64] and got["sizes"][-1] == 512  # CPython's table was read
    assert got["kept"] > 0
    # 40 blocks of 64 bytes within two 16 KiB pools (block after block, now and then one the
    # list's own growth freed); without the fill they were scattered over megabytes.
    assert got["span"] < 2 * 16384, got["span"]
