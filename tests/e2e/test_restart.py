"""Live restore: containers keep running while pydockerd is stopped and started again.

One daemon of its own (restarting the shared one would disturb other tests). The module
fixture sets the scene once — containers in every interesting state — restarts the daemon
with a pause in between during which some containers exit, and the tests then check what
each container looks like afterwards.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.helpers import fmt, inspect, pid_alive, status, wait_for
from tests.helpers import Daemon, import_busybox, new_daemon_obj

pytestmark = pytest.mark.e2e

TICKER = "i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.2; done"
DOWNTIME = 3.0
WAIT_FLAG = "while [ ! -e /tmp/go ]; do sleep 0.1; done"


@pytest.fixture(scope="module")
def scene(busybox_rootfs: Path) -> Iterator[dict[str, Any]]:
    dm = new_daemon_obj("restart")
    dm.start()
    try:
        import_busybox(dm, busybox_rootfs)
        run = ("run", "-d", "--name")
        dm.docker(*run, "ticker", "busybox", "sh", "-c", TICKER)
        for n in ("stopme", "killme", "waitme", "rmme"):
            dm.docker(*run, n, "busybox", "sleep", "300")
        # Exits with 4 while the daemon is down.
        dm.docker(*run, "exits", "busybox", "sh", "-c", f"{WAIT_FLAG}; exit 4")
        # Policies: `always` comes back even when its process died while the daemon was
        # down, and also after a manual stop (dockerd restarts it on daemon start);
        # `unless-stopped` that was stopped by hand stays stopped.
        dm.docker(*run, "always", "--restart", "always", "busybox", "sh", "-c", f"{WAIT_FLAG}; rm /tmp/go; exit 1")
        dm.docker(*run, "always-stopped", "--restart", "always", "busybox", "sleep", "300")
        dm.docker(*run, "unless-stopped", "--restart", "unless-stopped", "busybox", "sleep", "300")
        dm.docker("stop", "-t", "0", "always-stopped", "unless-stopped")
        dm.docker("create", "--name", "created", "busybox", "true")
        wait_for(lambda: "tick 3" in dm.docker("logs", "ticker").stdout, what="ticker output")
        before = {n: inspect(dm, n) for n in ("ticker", "stopme", "killme", "waitme", "rmme", "exits", "always")}

        rc = dm.stop()
        assert rc == 0, f"pydockerd exited {rc} on SIGTERM\n{dm.log_tail()}"
        for n in ("ticker", "stopme", "killme", "waitme", "rmme"):
            pid = before[n]["State"]["Pid"]
            assert pid_alive(pid), f"container {n} (pid {pid}) died with the daemon"
        # Let two containers exit while the daemon is down: the flag is dropped into their
        # root filesystems from the host side.
        for n in ("exits", "always"):
            Path(f"/proc/{before[n]['State']['Pid']}/root/tmp/go").touch()
        time.sleep(DOWNTIME)
        dm.start()
        yield {"d": dm, "before": before}
    finally:
        dm.close()


def test_running_containers_survive(scene: dict[str, Any]) -> None:
    dm: Daemon = scene["d"]
    running = set(dm.docker("ps", "--format", "{{.Names}}").stdout.split())
    assert {"ticker", "stopme", "killme", "waitme", "rmme"} <= running
    for n in ("ticker", "stopme", "killme", "waitme", "rmme"):
        st = inspect(dm, n)["State"]
        old = scene["before"][n]["State"]
        assert st["Running"] and st["Pid"] == old["Pid"] and st["StartedAt"] == old["StartedAt"], n
    ids = dm.docker("ps", "-aq").stdout.split()
    assert len(ids) == 10


def test_exited_meanwhile_shows_exit_code(scene: dict[str, Any]) -> None:
    dm: Daemon = scene["d"]
    st = inspect(dm, "exits")["State"]
    assert (st["Status"], st["ExitCode"], st["Running"]) == ("exited", 4, False)
    assert st["FinishedAt"] != "0001-01-01T00:00:00Z"
    assert "Exited (4)" in dm.docker("ps", "-a", "--filter", "name=^exits$", "--format", "{{.Status}}").stdout
    assert dm.docker("wait", "exits").stdout.strip() == "4"


def test_logs_written_while_daemon_was_down(scene: dict[str, Any]) -> None:
    dm: Daemon = scene["d"]
    lines = dm.docker("logs", "ticker").stdout.splitlines()
    nums = [int(ln.split()[1]) for ln in lines]
    assert nums == list(range(len(nums))), "ticks were lost or duplicated across the restart"
    assert len(nums) >= DOWNTIME / 0.2, "the monitor did not log while the daemon was down"


def test_logs_follow_after_restart(scene: dict[str, Any]) -> None:
    dm: Daemon = scene["d"]
    p = subprocess.Popen(["timeout", "-s", "KILL", "20", "docker", "logs", "-f", "--tail", "1", "ticker"],
                         env=dm.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         stdin=subprocess.DEVNULL)
    try:
        assert p.stdout is not None
        first = int(p.stdout.readline().split()[1])
        later = [int(p.stdout.readline().split()[1]) for _ in range(3)]
        assert later == [first + 1, first + 2, first + 3]
    finally:
        p.kill()
        p.wait()


def test_stop_kill_wait_rm_after_restart(scene: dict[str, Any]) -> None:
    dm: Daemon = scene["d"]
    b = scene["before"]
    dm.docker("stop", "-t", "1", "stopme")
    assert fmt(dm, "stopme", "{{.State.Status}} {{.State.ExitCode}}") == "exited 137"
    assert not pid_alive(b["stopme"]["State"]["Pid"])

    dm.docker("kill", "killme")
    wait_for(lambda: status(dm, "killme") == "exited", what="killme to exit")
    assert fmt(dm, "killme", "{{.State.ExitCode}}") == "137"

    w = subprocess.Popen(["timeout", "-s", "KILL", "30", "docker", "wait", "waitme"], env=dm.env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
    time.sleep(0.5)
    assert w.poll() is None, "docker wait returned while the container still runs"
    dm.docker("kill", "-s", "KILL", "waitme")
    out, err = w.communicate(timeout=30)
    assert (w.returncode, out.strip()) == (0, "137"), err

    dm.docker("rm", "-f", "rmme")
    assert not pid_alive(b["rmme"]["State"]["Pid"])
    assert dm.docker("ps", "-aq", "--filter", "name=^rmme$").stdout.strip() == ""


def test_restart_policies_across_restart(scene: dict[str, Any]) -> None:
    dm: Daemon = scene["d"]
    old_pid = scene["before"]["always"]["State"]["Pid"]
    wait_for(lambda: status(dm, "always") == "running" and int(fmt(dm, "always", "{{.State.Pid}}")) != old_pid,
             20, what="`always` container to be restarted")
    wait_for(lambda: status(dm, "always-stopped") == "running", 20,
             what="manually stopped `always` container to start with the daemon")
    assert status(dm, "unless-stopped") == "exited"
    assert status(dm, "created") == "created"


def test_second_restart_keeps_state(scene: dict[str, Any]) -> None:
    dm: Daemon = scene["d"]
    pid = int(fmt(dm, "ticker", "{{.State.Pid}}"))
    dm.restart()
    assert int(fmt(dm, "ticker", "{{.State.Pid}}")) == pid
    assert dm.docker("logs", "--tail", "1", "ticker").stdout.startswith("tick ")
    dm.docker("rm", "-f", "ticker")
    assert not pid_alive(pid)
