"""Daemon side of `docker exec`: runtime/nsexec.py with the exec's stdio, forked by the
template process (runtime/zygote.py) or started as runtime/execproc.py.

Without a TTY the exec gets three pipes (stdin only when attached); with one, a pty whose
master stays with the daemon for the stream and for resizes.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import json
import os
import signal
import socket
import struct
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from runtime import procfs

from .launcher import ZygoteLauncher
from .zygote import EXEC

_EXECPROC = str(Path(__file__).with_name("execproc.py"))
_LIMIT = 1 << 20
_TIOCSWINSZ = 0x5414


class _PtyReaderProtocol(asyncio.StreamReaderProtocol):
    """EIO on a pty master means the terminal's other side is gone: end of output. As an
    exception it would reach the reader before the output still buffered (StreamReader
    raises a pending exception first), and fast commands would lose all their output."""

    def connection_lost(self, exc: Exception | None) -> None:
        if isinstance(exc, OSError) and exc.errno == errno.EIO:
            exc = None
        super().connection_lost(exc)


@dataclass
class ExecStdio:
    """The non-tty exec's pipes, as asyncio.subprocess.Process has them."""

    stdin: asyncio.StreamWriter | None
    stdout: asyncio.StreamReader | None
    stderr: asyncio.StreamReader | None


class ExecProcess:
    """A running exec: its pid, its exit code (``wait``), its pipes (``proc``) or pty (``master``)."""

    def __init__(self, pid: int, wait: Callable[[], Awaitable[int]], stdio: ExecStdio,
                 master: int | None) -> None:
        self.pid = pid
        self._wait = wait
        self.proc = stdio
        self.master = master
        self._tty: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        self._tty_read: asyncio.BaseTransport | None = None

    @classmethod
    def of_subprocess(cls, proc: asyncio.subprocess.Process, master: int | None) -> ExecProcess:
        async def wait() -> int:
            rc = await proc.wait()
            return 128 - rc if rc < 0 else rc

        return cls(proc.pid, wait, ExecStdio(proc.stdin, proc.stdout, proc.stderr), master)

    async def wait(self) -> int:
        return await self._wait()

    def kill_all(self) -> None:
        """SIGKILL to the command, its process group and whatever it started (blocking: reads
        /proc). The exec process forwards catchable signals only; a health probe past its
        timeout must leave nothing running, or probes pile up."""
        for pid in procfs.children(self.pid):
            with contextlib.suppress(OSError):
                os.killpg(pid, signal.SIGKILL)  # the command is a session (and group) leader
        for pid in procfs.descendants(self.pid):
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)

    def resize(self, height: int, width: int) -> None:
        if self.master is not None:
            fcntl.ioctl(self.master, _TIOCSWINSZ, struct.pack("HHHH", height, width, 0, 0))

    async def tty_streams(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """Reader/writer on the pty master (tty execs only), opened once, at spawn: reading
        must start at once, because the exit of the command (the session leader) hangs the
        terminal up and the kernel drops output nobody has read yet."""
        if self._tty is not None:
            return self._tty
        assert self.master is not None
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=1 << 20)
        self._tty_read, _ = await loop.connect_read_pipe(lambda: _PtyReaderProtocol(reader),
                                                         os.fdopen(os.dup(self.master), "rb", buffering=0))
        wtransport, wproto = await loop.connect_write_pipe(
            lambda: asyncio.streams.FlowControlMixin(), os.fdopen(os.dup(self.master), "wb", buffering=0))
        writer = asyncio.StreamWriter(wtransport, wproto, None, loop)
        self._tty = (reader, writer)
        return self._tty

    def close(self) -> None:
        # The streams hold duplicates of the master: closing only the master kept the pty (and a
        # /dev/pts/N in the container) alive for good, one per `docker exec -t`.
        if self._tty is not None:
            self._tty[1].close()
            if self._tty_read is not None:
                self._tty_read.close()
        if self.master is not None:
            os.close(self.master)
            self.master = None


async def _read_pipe(fd: int) -> asyncio.StreamReader:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=_LIMIT)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(fd, "rb", buffering=0))
    return reader


async def _write_pipe(fd: int) -> asyncio.StreamWriter:
    loop = asyncio.get_running_loop()
    transport, proto = await loop.connect_write_pipe(lambda: asyncio.streams.FlowControlMixin(),
                                                     os.fdopen(fd, "wb", buffering=0))
    return asyncio.StreamWriter(transport, proto, None, loop)


async def _spawn_forked(spec: dict, zygote: ZygoteLauncher) -> ExecProcess | None:
    """The exec forked by the template process; None when there is none running."""
    tty = bool(spec.get("tty"))
    ours: list[int] = []  # closed on failure
    theirs: list[int] = []  # always closed here: the template has its copies
    try:
        if tty or not spec.get("open_stdin"):
            stdin_r, stdin_w = os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC), -1
        else:
            stdin_r, stdin_w = os.pipe2(os.O_CLOEXEC)
            ours.append(stdin_w)
        theirs.append(stdin_r)
        if tty:
            out_r, out_w = -1, os.open("/dev/null", os.O_WRONLY | os.O_CLOEXEC)
        else:
            out_r, out_w = os.pipe2(os.O_CLOEXEC)
            ours.append(out_r)
        theirs.append(out_w)
        err_r, err_w = os.pipe2(os.O_CLOEXEC)
        ours.append(err_r)
        theirs.append(err_w)
        status_r, status_w = os.pipe2(os.O_CLOEXEC)
        ours.append(status_r)
        theirs.append(status_w)
        console = None
        if tty:
            console, console_child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
            theirs.append(console_child.detach())
        if not await zygote.request(EXEC, json.dumps(spec).encode(), theirs):
            if console is not None:
                console.close()
            for fd in ours:
                os.close(fd)
            return None
        template = zygote.pid
    except BaseException:
        for fd in ours:
            os.close(fd)
        raise
    finally:
        for fd in theirs:
            os.close(fd)
    # The terminal's master first, and at once: once the command has ended, the kernel drops
    # output that nobody read from it.
    receiving = asyncio.ensure_future(asyncio.to_thread(socket.recv_fds, console, 1, 1)) if console else None
    status = await _read_pipe(status_r)
    stderr = await _read_pipe(err_r)
    pid_line = await status.readline()
    if not pid_line.strip().isdigit():
        # The template could not fork: nothing runs, and nothing holds the other ends.
        if receiving is not None:
            received = await receiving
            for fd in received[1]:
                os.close(fd)
        if console is not None:
            console.close()
        for fd in (stdin_w, out_r):
            if fd >= 0:
                os.close(fd)
        if zygote.abandoned(template):
            # Killed unread with the template that did not read it (both pipes at EOF, closed by
            # their transports): start it as a new process.
            return None
        raise OSError("exec failed: the exec process did not start")

    async def wait() -> int:
        line = await status.readline()
        # No exit code: the process between the template and the exec was killed.
        return int(line) if line.strip().isdigit() else 137

    if console is not None and receiving is not None:
        with console:
            _, fds, _, _ = await receiving
        if not fds:
            err = (await stderr.read()).decode(errors="replace").strip()
            await wait()
            raise OSError(err or "exec failed: no terminal from the exec process")
        master = fds[0]
        os.set_blocking(master, False)
        exec_proc = ExecProcess(int(pid_line), wait, ExecStdio(None, None, stderr), master)
        await exec_proc.tty_streams()
        return exec_proc
    stdin = await _write_pipe(stdin_w) if stdin_w >= 0 else None
    return ExecProcess(int(pid_line), wait, ExecStdio(stdin, await _read_pipe(out_r), stderr), None)


async def spawn_exec(spec: dict, zygote: ZygoteLauncher | None = None, python: str = sys.executable) -> ExecProcess:
    """spec: pid (container init, host view), args, env, cwd, user, tty, open_stdin,
    console_size, capabilities, privileged. Forked by `zygote` when it runs, else a fresh
    interpreter (runtime/execproc.py)."""
    if zygote is not None:
        forked = await _spawn_forked(spec, zygote)
        if forked is not None:
            return forked
    if spec.get("tty"):
        # The pty comes from inside the container (runtime/nsexec.py); its master arrives on
        # this socket.
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        with ours, theirs:
            arg = json.dumps({**spec, "console_fd": theirs.fileno()})
            proc = await asyncio.create_subprocess_exec(
                python, "-S", "-I", _EXECPROC, arg, stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE, pass_fds=(theirs.fileno(),))
            theirs.close()
            _, fds, _, _ = await asyncio.to_thread(socket.recv_fds, ours, 1, 1)
        if not fds:
            err = (await proc.stderr.read()).decode(errors="replace").strip() if proc.stderr else ""
            await proc.wait()
            raise OSError(err or "exec failed: no terminal from the exec process")
        master = fds[0]
        os.set_blocking(master, False)
        exec_proc = ExecProcess.of_subprocess(proc, master)
        await exec_proc.tty_streams()
        return exec_proc
    proc = await asyncio.create_subprocess_exec(
        python, "-S", "-I", _EXECPROC, json.dumps(spec),
        stdin=asyncio.subprocess.PIPE if spec.get("open_stdin") else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, limit=_LIMIT)
    return ExecProcess.of_subprocess(proc, None)
