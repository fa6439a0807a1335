"""How the daemon starts a container's monitor (and exec processes, runtime/execclient.py):
forked from the template process (runtime/zygote.py, one per daemon), or as a fresh
interpreter (runtime/monitor.py).

Either way the monitor ends up detached from the daemon (see runtime/zygote.py for why the
guarantees hold) and its first and only line on its stdout is the ready line; ``launch``
returns that line (b"" when the monitor died before writing it). The template is an
optimisation, never a dependency: while it is not running (it failed to start, it died, the
daemon is stopping) monitors start as fresh interpreters, and it is started again at the
next launch; one that does not read its requests (stopped, stuck) is killed
ZYGOTE_TAKE_TIMEOUT after a request it left unread, and what it was sent starts afresh.
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import fcntl
import logging
import os
import socket
import sys
import termios
from pathlib import Path
from typing import Protocol

from . import zygote

log = logging.getLogger("pydockerd.runtime")

MONITOR_PATH = Path(__file__).resolve().with_name("monitor.py")
ZYGOTE_PATH = Path(__file__).resolve().with_name("zygote.py")
ZYGOTE_READY_TIMEOUT = 30.0
# The template reads a request within microseconds; one with requests still unread after this
# many seconds, and no CPU used in the next ZYGOTE_RECHECK, does not read (stopped, stuck): it is
# replaced (ZygoteLauncher._check_taken).
ZYGOTE_TAKE_TIMEOUT = 4.0
ZYGOTE_RECHECK = 1.0


class Launcher(Protocol):
    async def launch(self, bundle_dir: Path, log_fd: int) -> bytes:
        """Start the monitor of `bundle_dir` (stderr: `log_fd`); return its ready line."""
        ...


async def _read_ready_line(reader: asyncio.StreamReader) -> bytes:
    line = await reader.readline()
    # The monitor closes its stdout right after that line. Wait for the EOF: the process
    # that started it may have exited before the pipe is finished.
    await reader.read()
    return line


class FreshLauncher:
    """`python3 -S -I monitor.py BUNDLE`: a new interpreter per monitor (~50 ms, ~4 MiB)."""

    def __init__(self, python: str = sys.executable) -> None:
        self.python = python

    async def launch(self, bundle_dir: Path, log_fd: int) -> bytes:
        proc = await asyncio.create_subprocess_exec(
            self.python, "-S", "-I", str(MONITOR_PATH), str(bundle_dir),
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=log_fd,
            start_new_session=True, close_fds=True)
        try:
            assert proc.stdout is not None
            return await _read_ready_line(proc.stdout)
        finally:
            # monitor.py forks the monitor and exits at once: reap it, keep no child.
            with contextlib.suppress(ProcessLookupError):
                await proc.wait()


class ZygoteLauncher:
    """Forks monitors (and exec processes) from the template process; monitors start with
    `fallback` without one.

    The template is the daemon's child, started by ``start()`` and ended by ``close()``
    (it also ends by itself when the daemon dies: its socket reaches EOF).
    """

    def __init__(self, exec_root: Path, python: str = sys.executable, fallback: Launcher | None = None) -> None:
        self.exec_root = exec_root
        self.python = python
        self.fallback = fallback or FreshLauncher(python)
        self._proc: asyncio.subprocess.Process | None = None
        self._sock: socket.socket | None = None
        self._starting: asyncio.Lock | None = None
        self._closed = False
        # Templates killed for not reading their requests: what they were sent starts afresh.
        self._abandoned: set[int] = set()
        self._watch: asyncio.TimerHandle | None = None  # _check_taken, armed by a request

    @property
    def pid(self) -> int | None:
        """The template's pid while it runs."""
        return self._proc.pid if self.running and self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._sock is not None and self._proc is not None and self._proc.returncode is None

    async def start(self) -> bool:
        """Start the template unless it runs; False (and a warning) when it cannot."""
        if self._starting is None:
            self._starting = asyncio.Lock()
        async with self._starting:
            if self.running or self._closed:
                return self.running
            await self._stop()
            ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            try:
                # Its own session: a Ctrl-C meant for a foreground daemon must not reach it.
                # The exec root on its command line names it (and the monitors it forks,
                # which share that command line) as this daemon's.
                proc = await asyncio.create_subprocess_exec(
                    self.python, "-S", "-I", str(ZYGOTE_PATH), str(self.exec_root),
                    stdin=theirs.fileno(), stdout=asyncio.subprocess.DEVNULL, start_new_session=True)
            except OSError as e:
                ours.close()
                log.warning("cannot start the monitor template, monitors start as new processes: %s", e)
                return False
            finally:
                theirs.close()
            ours.setblocking(False)
            self._proc, self._sock = proc, ours
            try:
                ready = await asyncio.wait_for(asyncio.get_running_loop().sock_recv(ours, 16),
                                               ZYGOTE_READY_TIMEOUT)
            except (TimeoutError, OSError) as e:
                ready = repr(e).encode()
            if ready != b"ready":
                log.warning("the monitor template did not start (%r), monitors start as new processes",
                            ready[:200])
                await self._stop()
                return False
            return True

    async def close(self) -> None:
        """End the template; running monitors are not affected."""
        self._closed = True
        if self._watch is not None:
            self._watch.cancel()
            self._watch = None
        await self._stop()

    async def _stop(self) -> None:
        sock, proc = self._sock, self._proc
        self._sock = self._proc = None
        if sock is not None:
            sock.close()  # EOF: the template exits
        if proc is not None:
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()

    async def request(self, kind: bytes, arg: bytes, fds: list[int]) -> bool:
        """Hand a request to the template (runtime/zygote.py); False when there is none to take
        it (the caller then starts a fresh process)."""
        if not self.running and not self._closed:
            await self.start()
        sock = self._sock
        if sock is None or not self.running or len(arg) + 1 > zygote.MAX_REQUEST:
            return False
        try:
            socket.send_fds(sock, [kind + arg], fds)
        except OSError as e:
            # Gone (EPIPE) or not reading (its queue is full): the next request starts a new
            # template if this one has died.
            log.warning("monitor template unavailable (%s), starting a new process instead", e)
            return False
        if self._watch is None:  # one armed check covers the requests sent meanwhile
            self._watch = asyncio.get_running_loop().call_later(ZYGOTE_TAKE_TIMEOUT, self._check_taken)
        return True

    def abandoned(self, pid: int | None) -> bool:
        """Whether the template `pid` (self.pid when a request was made) was killed for not
        reading its requests: a request of it that came to nothing is then to be started afresh."""
        return pid is not None and pid in self._abandoned

    def _check_taken(self, cpu_before: int = -1) -> None:
        """ZYGOTE_TAKE_TIMEOUT after a request: is the template still reading? One that is not
        (stopped, stuck) would hold every `docker run` and `exec` (an exec for ever). Bytes in its
        queue (SIOCOUTQ) are not enough to tell: under a stream of requests one may have just
        been sent. So the template's CPU time is read, and looked at again a second later: with
        requests still unread and no CPU used meanwhile it is killed. The requests in its queue
        go with it, their pipes reach EOF and their callers start them as new processes
        (abandoned()); the next request starts a new template."""
        self._watch = None
        sock, proc = self._sock, self._proc
        if sock is None or proc is None or proc.returncode is not None:
            return
        queued = array.array("i", [0])
        try:
            fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, queued, True)
            with open(f"/proc/{proc.pid}/schedstat", "rb") as f:
                cpu = int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            return
        if queued[0] <= 0:
            return
        if cpu_before < 0 or cpu != cpu_before:
            self._watch = asyncio.get_running_loop().call_later(ZYGOTE_RECHECK, self._check_taken, cpu)
            return
        log.warning("the monitor template (pid %d) has not read its requests in %g s: killing it; "
                    "what it was sent starts as new processes", proc.pid, ZYGOTE_TAKE_TIMEOUT + ZYGOTE_RECHECK)
        self._abandoned.add(proc.pid)
        self._sock = self._proc = None
        sock.close()
        with contextlib.suppress(ProcessLookupError):
            proc.kill()  # asyncio's child watcher reaps it

    async def launch(self, bundle_dir: Path, log_fd: int) -> bytes:
        r, w = os.pipe2(os.O_CLOEXEC)
        try:
            sent = await self.request(zygote.MONITOR, os.fsencode(bundle_dir), [log_fd, w])
            template = self.pid
        finally:
            os.close(w)
        if not sent:
            os.close(r)
            return await self.fallback.launch(bundle_dir, log_fd)
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        transport, _ = await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader),
                                                    os.fdopen(r, "rb", buffering=0))
        try:
            line = await _read_ready_line(reader)
        finally:
            transport.close()
        if not line and self.abandoned(template):
            return await self.fallback.launch(bundle_dir, log_fd)
        return line
