"""Daemon side of `docker exec`: starts runtime/execproc.py with the exec's stdio.

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
from pathlib import Path

from runtime import procfs

_EXECPROC = str(Path(__file__).with_name("execproc.py"))
_TIOCSWINSZ = 0x5414


class _PtyReaderProtocol(asyncio.StreamReaderProtocol):
    """EIO on a pty master means the terminal's other side is gone: end of output. As an
    exception it would reach the reader before the output still buffered (StreamReader
    raises a pending exception first), and fast commands would lose all their output."""

    def connection_lost(self, exc: Exception | None) -> None:
        if isinstance(exc, OSError) and exc.errno == errno.EIO:
            exc = None
        super().connection_lost(exc)


class ExecProcess:
    def __init__(self, proc: asyncio.subprocess.Process, master: int | None) -> None:
        self.proc = proc
        self.pid = proc.pid
        self.master = master
        self._tty: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        self._tty_read: asyncio.BaseTransport | None = None

    async def wait(self) -> int:
        rc = await self.proc.wait()
        if self.master is not None:
            # The stream may still be reading it; the pump's EIO/EOF ends that.
            pass
        return 128 - rc if rc < 0 else rc

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


async def spawn_exec(spec: dict, python: str = sys.executable) -> ExecProcess:
    """spec: pid (container init, host view), args, env, cwd, user, tty, open_stdin,
    console_size, capabilities, privileged."""
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
        exec_proc = ExecProcess(proc, master)
        await exec_proc.tty_streams()
        return exec_proc
    proc = await asyncio.create_subprocess_exec(
        python, "-S", "-I", _EXECPROC, json.dumps(spec),
        stdin=asyncio.subprocess.PIPE if spec.get("open_stdin") else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, limit=1 << 20)
    return ExecProcess(proc, None)
