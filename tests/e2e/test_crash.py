"""A daemon killed with SIGKILL: nothing acknowledged is lost, the next start reconciles; a monitor
that stops answering does not keep its container from being stopped, killed or removed."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.e2e.helpers import container_mounts, fmt, inspect, pid_alive, status, wait_for
from tests.helpers import Daemon, import_busybox

pytestmark = pytest.mark.e2e


def test_sigkill_then_restart_reconciles(new_daemon, busybox_rootfs) -> None:
    dm = new_daemon()
    import_busybox(dm, busybox_rootfs)
    dm.docker("run", "-d", "--name", "live", "busybox", "sh", "-c", "while :; do echo tick; sleep 0.2; done")
    dm.docker("run", "-d", "--name", "dies", "busybox", "sh", "-c", "sleep 1; exit 9")
    dm.docker("run", "-d", "--name", "back", "--restart", "always", "busybox", "sh", "-c", "sleep 1; exit 3")
    dm.docker("create", "--name", "made", "busybox", "true")
    live_pid = fmt(dm, "live", "{{.State.Pid}}")
    dm.kill()  # SIGKILL: no shutdown code runs
    time.sleep(2.5)  # "dies" and "back" exit while nobody watches
    dm.start()
    assert fmt(dm, "live", "{{.State.Status}} {{.State.Pid}}") == f"running {live_pid}"
    assert fmt(dm, "dies", "{{.State.Status}} {{.State.ExitCode}}") == "exited 9"
    assert fmt(dm, "made", "{{.State.Status}}") == "created"
    wait_for(lambda: int(fmt(dm, "back", "{{.RestartCount}}")) >= 1, what="restart policy after the crash")
    # the rootfs of the exited container was unmounted at start-up; only running ones stay
    wait_for(lambda: len([m for m in container_mounts(dm) if "/rootfs/" in m]) <= 2,
             what="leftover rootfs mounts unmounted")
    assert "tick" in dm.docker("logs", "--tail", "1", "live").stdout
    dm.docker("rm", "-f", "live", "dies", "back", "made")
    assert not [m for m in container_mounts(dm) if "/rootfs/" in m]


# --------------------------------------------------------------------------- a monitor that stops answering
# Its control socket still accepts connections (the backlog) but nothing is answered: as a
# deadlocked or stopped monitor (SIGSTOP here). stop, kill and rm -f must still end the
# container, as dockerd does past a shim that hangs (daemon/containers/service.py,
# _kill_directly): ~13 s each, dockerd's 10 s wait for a SIGKILL's exit included.


def _hang_monitor(d: Daemon, name: str) -> tuple[int, list[int]]:
    """SIGSTOP the container's monitor; returns it and the container's processes."""
    init = int(fmt(d, name, "{{.State.Pid}}"))
    with open(f"/proc/{init}/stat") as f:
        monitor = int(f.read().rsplit(")", 1)[1].split()[1])
    with open(f"/proc/{init}/task/{init}/children") as f:
        procs = [init, *map(int, f.read().split())]
    os.kill(monitor, signal.SIGSTOP)
    return monitor, procs


def test_stop_ends_a_container_whose_monitor_does_not_answer(d: Daemon, uname: Callable[[str], str]) -> None:
    n = uname("hung")
    # --pid host: the background sleep does not die with the init (no pid namespace to end):
    # only the kill of the container's cgroup takes it down.
    d.docker("run", "-d", "--name", n, "--pid", "host", "busybox", "sh", "-c", "sleep 1001 & exec sleep 1002")
    wait_for(lambda: d.docker("top", n).stdout.count("sleep 100") == 2, what="both sleeps")
    since = int(time.time())
    monitor, procs = _hang_monitor(d, n)
    assert len(procs) == 2
    t0 = time.monotonic()
    r = d.docker("stop", "-t", "1", n, check=False, timeout=60)
    took = time.monotonic() - t0
    assert r.returncode == 0, r
    assert took < 30, took
    st = inspect(d, n)["State"]
    assert (st["Status"], st["ExitCode"], st["Running"]) == ("exited", 137, False)
    assert "monitor did not answer" in st["Error"]
    wait_for(lambda: not any(pid_alive(p) for p in [monitor, *procs]), what="the monitor and both sleeps gone")
    events = d.docker("events", "--since", str(since), "--until", str(int(time.time()) + 1), "--filter",
                      f"container={n}", "--format", "{{.Action}} {{.Actor.Attributes.signal}}").stdout.splitlines()
    assert events[-4:] == ["kill 15", "kill 9", "die <no value>", "stop <no value>"], events
    d.docker("start", n)  # the container is whole: it runs again
    assert status(d, n) == "running"
    d.docker("rm", "-f", n)


def test_kill_and_rm_f_end_a_container_whose_monitor_does_not_answer(d: Daemon,
                                                                      uname: Callable[[str], str]) -> None:
    a, b = uname("hung-kill"), uname("hung-rm")
    for n in (a, b):
        d.docker("run", "-d", "--name", n, "busybox", "sleep", "1000")
    hung = [_hang_monitor(d, n) for n in (a, b)]
    with ThreadPoolExecutor(2) as pool:  # side by side: ~12 s each
        killed = pool.submit(d.docker, "kill", a, timeout=60)
        removed = pool.submit(d.docker, "rm", "-f", b, timeout=60)
        assert killed.result().stdout.strip() == a
        removed.result()
    assert fmt(d, a, "{{.State.Status}} {{.State.ExitCode}}") == "exited 137"
    assert d.docker("ps", "-aq", "--filter", f"name={b}").stdout == ""
    gone = [monitor for monitor, _ in hung] + [p for _, procs in hung for p in procs]
    wait_for(lambda: not any(pid_alive(p) for p in gone), what="the monitors and their containers gone")
    d.docker("rm", a)


def test_a_daemon_restarted_past_a_monitor_that_does_not_answer(new_daemon, busybox_rootfs) -> None:
    dm = new_daemon()
    import_busybox(dm, busybox_rootfs)
    dm.docker("run", "-d", "--name", "hung", "busybox", "sleep", "1000")
    dm.docker("run", "-d", "--name", "fine", "busybox", "sleep", "1000")
    monitor, procs = _hang_monitor(dm, "hung")
    t0 = time.monotonic()
    dm.restart()  # it asked the one that does not answer for 5 s, and not the others after it
    assert time.monotonic() - t0 < 25
    assert fmt(dm, "hung", "{{.State.Status}}") == "running"
    assert fmt(dm, "fine", "{{.State.Status}}") == "running"
    dm.docker("exec", "fine", "true")
    dm.docker("rm", "-f", "hung", timeout=60)
    wait_for(lambda: not any(pid_alive(p) for p in [monitor, *procs]), what="the monitor and its container gone")
    dm.docker("rm", "-f", "fine")


def _template(d: Daemon) -> int:
    assert d.proc is not None
    with open(f"/proc/{d.proc.pid}/task/{d.proc.pid}/children") as f:
        for pid in map(int, f.read().split()):
            with open(f"/proc/{pid}/cmdline", "rb") as c:
                if b"zygote.py" in c.read():
                    return pid
    raise AssertionError("no template process")


def test_a_template_that_does_not_read_is_replaced(d: Daemon, uname: Callable[[str], str]) -> None:
    """The template is an optimisation, never a dependency (runtime/launcher.py): stopped, it
    would hold every exec for ever and every run for 90 s. It is killed 5 s after a request it
    has not read, and what it was sent starts as new processes."""
    n = uname("tmpl")
    d.docker("run", "-d", "--name", n, "busybox", "sleep", "1000")
    template = _template(d)
    os.kill(template, signal.SIGSTOP)
    t0 = time.monotonic()
    with ThreadPoolExecutor(3) as pool:  # all three sent to the stopped template
        execd = pool.submit(d.docker, "exec", n, "echo", "exec-ok", timeout=60)
        tty = pool.submit(d.docker, "exec", "-t", n, "echo", "tty-ok", timeout=60)
        ran = pool.submit(d.docker, "run", "--rm", "busybox", "echo", "run-ok", timeout=60)
        assert execd.result().stdout == "exec-ok\n"
        assert tty.result().stdout == "tty-ok\r\n"
        assert ran.result().stdout == "run-ok\n"
    assert time.monotonic() - t0 < 30
    wait_for(lambda: not pid_alive(template), what="the stopped template killed")
    d.docker("exec", n, "true")  # the next request starts a new template
    assert _template(d) != template
    d.docker("rm", "-f", n)
