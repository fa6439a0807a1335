"""The monitor's ends of the container's stdio: output pumps and the stdin sink.

All fds are non-blocking and driven by the reactor; neither side buffers without bound:
pumps are paused by the monitor while a consumer is congested, and the stdin sink reports
congestion so its producers (attach clients) stop reading.
"""

from __future__ import annotations

import errno
import fcntl
import os

from .reactor import Reactor

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

# Large reads (with pipes enlarged to PIPE_SIZE) keep the per-chunk Python work, log record
# encoding above all, a small share of a bulk transfer.
READ_SIZE = 256 * 1024
PIPE_SIZE = 1024 * 1024
F_SETPIPE_SZ = 1031


def enlarge_pipe(fd: int) -> None:
    """Best effort: an unprivileged monitor may be capped by /proc/sys/fs/pipe-max-size."""
    try:
        fcntl.fcntl(fd, F_SETPIPE_SZ, PIPE_SIZE)
    except OSError:
        pass
STDIN_LIMIT = 1024 * 1024


class OutputPump:
    """Reads one output fd (a pipe, or the pty master) and hands each chunk to ``on_data``."""

    def __init__(self, reactor: Reactor, fd: int, stream: str,
                 on_data: Callable[[str, bytes], None], on_eof: Callable[[OutputPump], None]) -> None:
        self.reactor = reactor
        self.fd = fd
        self.stream = stream
        self.open = True
        self._on_data = on_data
        self._on_eof = on_eof
        self._paused = False
        os.set_blocking(fd, False)
        reactor.set_reader(fd, self._readable)

    def pause(self) -> None:
        if self.open and not self._paused:
            self._paused = True
            self.reactor.set_reader(self.fd, None)

    def resume(self) -> None:
        if self.open and self._paused:
            self._paused = False
            self.reactor.set_reader(self.fd, self._readable)

    def _readable(self) -> None:
        try:
            data = os.read(self.fd, READ_SIZE)
        except BlockingIOError:
            return
        except OSError as e:
            # EIO is how a pty master reports that every slave fd is closed.
            if e.errno not in (errno.EIO, errno.EBADF):
                raise
            data = b""
        if data:
            self._on_data(self.stream, data)
        else:
            self.close()

    def close(self) -> None:
        if not self.open:
            return
        self.open = False
        self.reactor.set_reader(self.fd, None)
        self._on_eof(self)
        self.reactor.forget(self.fd)
        os.close(self.fd)


class StdinSink:
    """Buffered non-blocking writer for the container's stdin (pipe, or the pty master).

    For a pty the fd belongs to the output pump: closing the sink only stops writing.
    """

    def __init__(self, reactor: Reactor, fd: int, shared_fd: bool, on_drained: Callable[[], None]) -> None:
        self.reactor = reactor
        self.fd = fd
        self.open = True
        self._shared = shared_fd
        self._buf = bytearray()
        self._close_when_drained = False
        self._on_drained = on_drained
        os.set_blocking(fd, False)

    @property
    def congested(self) -> bool:
        return len(self._buf) >= STDIN_LIMIT

    def write(self, data: bytes) -> None:
        if not self.open or self._close_when_drained:
            return
        if not self._buf:
            # Straight to the pipe: only what it cannot take now is copied into the buffer.
            try:
                n = os.write(self.fd, data)
            except BlockingIOError:
                n = 0
            except OSError:
                self.close(now=True)
                return
            data = data[n:]
            if not data:
                return
        self._buf += data
        if self.open:
            self.reactor.set_writer(self.fd, self._flush)

    def _flush(self) -> None:
        was_congested = self.congested
        try:
            while self._buf:
                n = os.write(self.fd, self._buf)
                del self._buf[:n]
        except BlockingIOError:
            pass
        except OSError:
            # EPIPE: the container closed its stdin or exited; what is left is undeliverable.
            self._buf.clear()
            self.close(now=True)
            return
        if not self._buf:
            self.reactor.set_writer(self.fd, None)
            if self._close_when_drained:
                self.close(now=True)
        if was_congested and not self.congested:
            self._on_drained()

    def close(self, now: bool = False) -> None:
        """Close stdin once the buffered bytes are written (at once with ``now``)."""
        if not self.open:
            return
        if self._buf and not now:
            self._close_when_drained = True
            return
        self.open = False
        self._buf.clear()
        self.reactor.set_writer(self.fd, None)
        if not self._shared:
            self.reactor.forget(self.fd)
            os.close(self.fd)
        self._on_drained()
