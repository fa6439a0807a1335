"""dockerode (Node.js; IDE Docker extensions and dashboards use it) against pydockerd: attach and
exec with stdin written on the request's own connection (no Upgrade header), exec output, logs,
the events of a docker stop, archives and its run helper. The checks are tests/e2e/dockerode/
check.js; scripts/test.sh installs Node, npm and dockerode (npm ci there)."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.helpers import Daemon

HERE = Path(__file__).resolve().parent / "dockerode"


def test_dockerode(d: Daemon, uname: Callable[[str], str]) -> None:
    node = shutil.which("node")
    if node is None or not (HERE / "node_modules" / "dockerode").is_dir():
        pytest.fail("node and dockerode are not installed: scripts/test.sh installs them (npm ci in "
                    "tests/e2e/dockerode)")
    r = subprocess.run([node, str(HERE / "check.js"), str(d.sock), "busybox:latest", uname("dockerode")],
                       capture_output=True, text=True, timeout=180)
    lines = r.stdout.splitlines()
    assert r.returncode == 0 and not any(line.startswith("FAIL") for line in lines), r.stdout + r.stderr
    assert sorted(line.split()[1] for line in lines if line.startswith("ok ")) == [
        "archives", "attach_stdin", "events_stop", "exec_output", "exec_stdin", "logs", "run_helper"]
