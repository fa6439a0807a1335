"""A daemon killed with SIGKILL: nothing acknowledged is lost, the next start reconciles."""

from __future__ import annotations

import time

import pytest

from tests.e2e.helpers import container_mounts, fmt, wait_for
from tests.helpers import import_busybox

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
