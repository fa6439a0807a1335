"""The daemon's side of the per-container monitor (asyncio, runs in the daemon's event loop).

The daemon is multi-threaded, so it never forks by itself and never touches namespaces:
the monitor is forked by the template process or started with
``asyncio.create_subprocess_exec`` (runtime/launcher.py), and everything after that goes
over the monitor's unix sockets in the bundle directory.
Each call opens its own connection, so calls may run concurrently (a ``wait`` blocked
while ``kill`` goes through).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .jsonlog import rfc3339nano
from .launcher import FreshLauncher, Launcher
from .spec import MONITOR_KEYS, normalize

CONTROL_SOCK = "control.sock"
ATTACH_SOCK = "attach.sock"
READY_TIMEOUT = 90.0
REQUEST_TIMEOUT = 30.0
# sun_path is 108 bytes; longer socket paths are reached through /proc/self/fd/<dirfd>/.
_SUN_PATH_MAX = 107


class StartError(Exception):
    """The container could not be started: setup failed, or the command could not be exec'd.

    ``exit_code`` is the one dockerd records: 127 (not found), 126 (cannot execute), 128
    (other runtime failures).
    """

    def __init__(self, message: str, exit_code: int = 128) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code


class MonitorError(Exception):
    """The monitor refused a request."""


class MonitorGone(MonitorError):
    """The monitor cannot be reached: the container has exited (or the monitor died)."""


class NotRunning(MonitorError):
    """The request needs a live container (kill, resize) and it has exited."""


@dataclass
class ExitStatus:
    exit_code: int
    finished_at: str
    oom_killed: bool = False
    error: str = ""


def read_exit_status(bundle_dir: Path) -> ExitStatus | None:
    """The exit status the monitor recorded (``<bundle>/exit.json``), or None if there is none."""
    try:
        with open(Path(bundle_dir) / "exit.json", "rb") as f:
            data = json.load(f)
        return ExitStatus(int(data["exit_code"]), str(data.get("finished_at", "")),
                          bool(data.get("oom_killed", False)), str(data.get("error", "")))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _write_file(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
    tmp.rename(path)


def _prepare_bundle(bundle_dir: Path, config: dict) -> int:
    """Write config.json and monitor.json (its part the monitor reads, runtime/spec.py), clear a
    previous run's leftovers; return monitor.log's fd.

    Not fsynced: only the monitor started next (and its init) reads them, and no crash that
    loses the page cache (the host's) leaves that monitor or its container alive to need them.
    A daemon killed meanwhile loses nothing: the files are in the page cache all the same.
    """
    bundle_dir.mkdir(parents=True, exist_ok=True)
    for stale in ("exit.json", CONTROL_SOCK, ATTACH_SOCK, "monitor.pid"):
        with contextlib.suppress(FileNotFoundError):
            (bundle_dir / stale).unlink()
    _write_file(bundle_dir / "monitor.json", json.dumps({k: config[k] for k in MONITOR_KEYS}).encode())
    _write_file(bundle_dir / "config.json", json.dumps(config).encode())
    return os.open(bundle_dir / "monitor.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)


def _log_tail(bundle_dir: Path) -> str:
    try:
        with open(bundle_dir / "monitor.log", "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 2000))
            return f.read().decode(errors="replace").strip()
    except OSError:
        return ""


def _kill_monitor(bundle_dir: Path, pid: int = 0) -> bool:
    """SIGKILL the bundle's monitor (`pid`, else the one monitor.pid names); False if it is not there.

    The container's init has PDEATHSIG=SIGKILL: killing the monitor takes it down too. A pid is
    only a name that the kernel gives out again, so the process is first checked to be this
    bundle's monitor (it holds the bundle directory open, as no other process does) and is
    signalled through a pidfd opened before the check: the check and the kill name the same
    process, and one that died in between is not replaced by whoever got its pid."""
    try:
        pid = pid or int((bundle_dir / "monitor.pid").read_text())
        pidfd = os.pidfd_open(pid)
    except (OSError, ValueError):
        return False
    try:
        target = os.path.realpath(bundle_dir)
        fds = f"/proc/{pid}/fd"
        for name in os.listdir(fds):
            with contextlib.suppress(OSError):
                if os.readlink(f"{fds}/{name}") == target:
                    signal.pidfd_send_signal(pidfd, signal.SIGKILL)
                    return True
        return False
    except OSError:
        return False
    finally:
        os.close(pidfd)


class Monitor:
    def __init__(self, bundle_dir: Path, pid: int, monitor_pid: int = 0) -> None:
        self.bundle_dir = Path(bundle_dir)
        self.pid = pid
        self.monitor_pid = monitor_pid
        # Set by kill_process(): the exit wait() reports when the monitor left no record.
        self.killed = False

    def __repr__(self) -> str:
        return f"Monitor({str(self.bundle_dir)!r}, pid={self.pid})"

    # -- life cycle

    @classmethod
    async def spawn(cls, bundle_dir: Path, spec: Mapping[str, Any], launcher: Launcher | None = None) -> Monitor:
        """Start the monitor; return once the container's init exists, blocked before exec.

        Raises ``spec.SpecError`` (a ValueError) for a malformed spec and StartError when the
        container cannot be set up (mount failures, unknown user, ...). ``launcher`` starts
        the monitor process (runtime/launcher.py; default: a fresh interpreter).
        """
        bundle_dir = Path(bundle_dir)
        config = normalize(spec)
        if await cls.connect(bundle_dir) is not None:
            # Preparing the bundle would pull the sockets from under a live monitor.
            raise StartError("a monitor is already running for this container")
        log_fd = await asyncio.to_thread(_prepare_bundle, bundle_dir, config)
        try:
            line = await asyncio.wait_for((launcher or FreshLauncher()).launch(bundle_dir, log_fd), READY_TIMEOUT)
        except BaseException as e:
            # Timed out or cancelled: a created container nobody knows about must not stay.
            await asyncio.to_thread(_kill_monitor, bundle_dir)
            if isinstance(e, TimeoutError):
                # wait_for's has no message: the API answered "failed to start container X: ".
                raise TimeoutError(f"the container monitor was not ready within {READY_TIMEOUT:g} s") from None
            raise
        finally:
            os.close(log_fd)
        if not line:
            tail = await asyncio.to_thread(_log_tail, bundle_dir)
            raise StartError(f"container monitor failed to start: {tail or 'no output'}")
        try:
            ready = json.loads(line)
        except ValueError:
            raise StartError(f"container monitor said {line[:200]!r}") from None
        if not ready.get("ok"):
            raise StartError(ready.get("error") or "unknown error", int(ready.get("exit_code", 128)))
        return cls(bundle_dir, int(ready["pid"]), int(ready.get("monitor_pid", 0)))

    @classmethod
    async def connect(cls, bundle_dir: Path) -> Monitor | None:
        """Find the container's monitor again (after a daemon restart); None when it is gone.

        Then the container has exited: see :func:`read_exit_status` (no exit.json means the
        monitor itself died, and its container with it).
        """
        monitor = cls(Path(bundle_dir), 0)
        try:
            state = await monitor._request({"op": "state"})
        except MonitorGone:
            return None
        monitor.pid = int(state["pid"])
        monitor.monitor_pid = int(state.get("monitor_pid", 0))
        return monitor

    async def start(self) -> int:
        """Let the init exec the command; returns its pid once the exec has succeeded."""
        try:
            reply = await self._request({"op": "start"}, timeout=None)
        except MonitorGone:
            status = await asyncio.to_thread(read_exit_status, self.bundle_dir)
            if status is None:
                raise StartError("container monitor is gone") from None
            raise StartError(status.error or "container has exited", status.exit_code) from None
        if not reply.get("ok"):
            raise StartError(reply.get("error") or "unknown error", int(reply.get("exit_code") or 128))
        return int(reply["pid"])

    async def kill(self, signal: int, all: bool = False) -> None:
        try:
            reply = await self._request({"op": "kill", "signal": int(signal), "all": all})
        except MonitorGone:
            raise NotRunning("container is not running") from None
        if not reply.get("ok"):
            raise NotRunning(reply.get("error") or "container is not running")

    async def wait(self) -> ExitStatus:
        """The exit status, once the container has exited and all its output is delivered."""
        try:
            reply: dict[str, Any] | None = await self._request({"op": "wait"}, timeout=None)
        except MonitorGone:
            reply = None
        if reply is not None and "exit_code" in reply:
            return ExitStatus(int(reply["exit_code"]), str(reply.get("finished_at", "")),
                              bool(reply.get("oom_killed", False)), str(reply.get("error", "")))
        status = await asyncio.to_thread(read_exit_status, self.bundle_dir)
        if status is None:
            if self.killed:
                # The container went with it (SIGKILL): 137, as containerd records for a dead shim.
                return ExitStatus(137, rfc3339nano(), False, "the container monitor did not answer and was killed")
            return ExitStatus(255, rfc3339nano(), False, "container monitor exited unexpectedly")
        return status

    async def responds(self, timeout: float) -> bool:
        """Whether the monitor answers a request within `timeout` seconds."""
        try:
            await asyncio.wait_for(self._request({"op": "state"}), timeout)
        except (MonitorError, TimeoutError, OSError, ValueError):
            return False
        return True

    async def kill_process(self) -> bool:
        """SIGKILL the monitor process itself (and so its container), for a monitor that no longer
        answers (deadlocked, stopped, a bug): the pending wait() then ends and reports exit code
        137. False if the process is not there (any more)."""
        # Set before the kill: the wait() that ends with it may read it before this resumes.
        self.killed = True
        self.killed = await asyncio.to_thread(_kill_monitor, self.bundle_dir, self.monitor_pid)
        return self.killed

    async def state(self) -> dict:
        """``{"status": "created|running|exited", "pid", "started_at", "finished_at", "exit_code", ...}``."""
        try:
            return await self._request({"op": "state"})
        except MonitorGone:
            status = await asyncio.to_thread(read_exit_status, self.bundle_dir)
            if status is None:
                raise
            return {"status": "exited", "pid": self.pid, "exit_code": status.exit_code,
                    "finished_at": status.finished_at, "error": status.error}

    async def resize(self, height: int, width: int) -> None:
        await self._checked({"op": "resize", "height": int(height), "width": int(width)})

    async def close_stdin(self) -> None:
        await self._checked({"op": "close_stdin"})

    async def attach(self, stdin: bool, stdout: bool, stderr: bool) -> tuple[asyncio.StreamReader,
                                                                                asyncio.StreamWriter]:
        """Connect to the container's stdio; returns once the monitor has registered us.

        The reader yields stdcopy frames (no tty) or raw bytes (tty) and reaches EOF after
        the container exited and all its output was sent. Bytes written go to its stdin;
        ``writer.write_eof()`` is the client's half-close (closes stdin with StdinOnce).
        """
        reader, writer = await self._open(ATTACH_SOCK)
        try:
            writer.write(json.dumps({"stdin": stdin, "stdout": stdout, "stderr": stderr}).encode() + b"\n")
            await writer.drain()
            line = await asyncio.wait_for(reader.readline(), REQUEST_TIMEOUT)
            reply = json.loads(line) if line else None
        except (TimeoutError, OSError, ValueError) as e:
            writer.close()
            raise MonitorGone(f"cannot attach: {e}") from None
        if not reply or not reply.get("ok"):
            writer.close()
            raise MonitorGone(f"cannot attach: {(reply or {}).get('error', 'container has exited')}")
        return reader, writer

    # -- plumbing

    async def _checked(self, message: dict) -> None:
        reply = await self._request(message)
        if not reply.get("ok"):
            raise MonitorError(reply.get("error") or "request failed")

    async def _open(self, name: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        path = str(self.bundle_dir / name)
        dir_fd = -1
        try:
            if len(os.fsencode(path)) > _SUN_PATH_MAX:
                dir_fd = os.open(self.bundle_dir, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
                path = f"/proc/self/fd/{dir_fd}/{name}"
            return await asyncio.open_unix_connection(path)
        except (FileNotFoundError, ConnectionError, NotADirectoryError) as e:
            raise MonitorGone(f"container monitor is not running ({e.strerror or e})") from None
        finally:
            if dir_fd >= 0:
                os.close(dir_fd)

    async def _request(self, message: dict, timeout: float | None = REQUEST_TIMEOUT) -> dict:
        reader, writer = await self._open(CONTROL_SOCK)
        try:
            writer.write(json.dumps(message).encode() + b"\n")
            await writer.drain()
            line = await asyncio.wait_for(reader.readline(), timeout)
        except (ConnectionError, BrokenPipeError) as e:
            raise MonitorGone(f"container monitor went away ({e})") from None
        except TimeoutError:
            raise MonitorError(f"container monitor did not answer {message.get('op')!r}") from None
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
        if not line:
            raise MonitorGone("container monitor went away")
        return json.loads(line)
