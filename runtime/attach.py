"""The attach socket: streams the container's output to clients and their input to its stdin.

Protocol (``<bundle>/attach.sock``, unix stream): the client sends one JSON line
``{"stdin": bool, "stdout": bool, "stderr": bool}``; the monitor answers ``{"ok": true}\\n``
once the client is registered (so output produced after that is never missed), then
sends the output it asked for: Docker stdcopy frames without a tty (8-byte header: stream
1=stdout 2=stderr, 3 zero bytes, big-endian u32 length), raw bytes with one. Bytes the
client sends go to the container's stdin (when it asked for stdin and the container has
OpenStdin); its half-close closes the container's stdin when the spec has StdinOnce.
When the container has exited and its output is all sent, the monitor half-closes and
closes every attach connection.

A client that stops reading congests once it holds ATTACH_LIMIT bytes: the monitor then
stops reading the container's output (as dockerd's attach does) instead of buffering.
"""

from __future__ import annotations

import struct
import time

from . import lean
from .reactor import Reactor, Timer
from .stdio import READ_SIZE, StdinSink

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

ATTACH_LIMIT = 1024 * 1024
STREAM_IDS = {"stdout": 1, "stderr": 2}
HEADER_LIMIT = 4096
# During the final drain, a client that accepts no byte for this long is dropped.
DRAIN_IDLE_TIMEOUT = 5.0


class AttachClient:
    def __init__(self, hub: AttachHub, sock: lean.Socket) -> None:
        self.hub = hub
        self.sock = sock
        self.fd = sock.fileno()
        self.streams: set[str] = set()
        self.stdin = False
        self.registered = False
        self.closing = False
        self.last_progress = time.monotonic()
        self._header = bytearray()
        self._out = bytearray()
        self._reading = True
        sock.setblocking(False)
        hub.reactor.set_reader(self.fd, self._readable)

    @property
    def pending(self) -> int:
        return len(self._out)

    def send(self, data: bytes) -> None:
        if self.sock is None:
            return
        if self._out:
            self._out += data
            return
        # Straight to the socket: only what it cannot take now is copied into the buffer.
        try:
            n = self.sock.send(data)
        except BlockingIOError:
            n = 0
        except OSError:
            self.drop()
            return
        self.last_progress = time.monotonic()
        if n < len(data):
            self._out += data[n:]
        self._writable()

    def _writable(self) -> None:
        try:
            while self._out:
                n = self.sock.send(self._out)
                del self._out[:n]
                self.last_progress = time.monotonic()
        except BlockingIOError:
            pass
        except OSError:
            self.drop()
            return
        if self._out:
            self.hub.reactor.set_writer(self.fd, self._writable)
            return
        self.hub.reactor.set_writer(self.fd, None)
        if self.closing:
            self._finish_close()
        else:
            self.hub.client_drained()

    def _readable(self) -> None:
        try:
            data = self.sock.recv(READ_SIZE)
        except BlockingIOError:
            return
        except OSError:
            self.drop()
            return
        if not self.registered:
            self._read_header(data)
            return
        if not data:
            self._reading = False
            self.hub.reactor.set_reader(self.fd, None)
            if self.stdin:
                self.hub.client_stdin_eof()
            return
        if self.stdin:
            self.hub.client_stdin(data)

    def _read_header(self, data: bytes) -> None:
        if not data:
            self.drop()
            return
        self._header += data
        end = self._header.find(b"\n")
        if end < 0:
            if len(self._header) > HEADER_LIMIT:
                self.drop()
            return
        rest = bytes(self._header[end + 1:])
        try:
            request = lean.loads(self._header[:end])
            if not isinstance(request, dict):
                raise ValueError("expected an object")
        except ValueError as e:
            self.send(lean.dumps({"ok": False, "error": f"bad attach request: {e}"}) + b"\n")
            self.close()
            return
        self._header = bytearray()
        self.stdin = bool(request.get("stdin"))
        self.streams = {s for s in ("stdout", "stderr") if request.get(s)}
        self.registered = True
        self.send(b'{"ok":true}\n')
        self.hub.registered(self)
        if rest and self.sock is not None:
            self._readable_data(rest)

    def _readable_data(self, data: bytes) -> None:
        if self.stdin:
            self.hub.client_stdin(data)

    def pause_reading(self) -> None:
        if self._reading and self.sock is not None:
            self.hub.reactor.set_reader(self.fd, None)

    def resume_reading(self) -> None:
        if self._reading and self.sock is not None:
            self.hub.reactor.set_reader(self.fd, self._readable)

    def close(self) -> None:
        """Half-close once everything queued is sent, then close."""
        self.closing = True
        if not self._out and self.sock is not None:
            self._finish_close()

    def _finish_close(self) -> None:
        try:
            self.sock.shutdown(lean.SHUT_WR)
            # Unread input left in our receive queue would turn the peer's EOF into ECONNRESET.
            while self.sock.recv(65536):
                pass
        except OSError:
            pass
        self.drop()

    def drop(self) -> None:
        if self.sock is None:
            return
        self.hub.reactor.forget(self.fd)
        self.sock.close()
        self.sock = None
        self._out.clear()
        self.hub.client_gone(self)


class AttachHub:
    def __init__(self, reactor: Reactor, listener: lean.Socket, tty: bool, stdin: StdinSink | None,
                 stdin_once: bool, on_congestion_change: Callable[[], None]) -> None:
        self.reactor = reactor
        self.listener = listener
        self.tty = tty
        self.stdin = stdin
        self.stdin_once = stdin_once
        self.clients: set[AttachClient] = set()
        self._on_congestion_change = on_congestion_change
        self._finishing = False
        self._on_finished: Callable[[], None] | None = None
        self._drain_timer: Timer | None = None
        listener.setblocking(False)
        reactor.set_reader(listener.fileno(), self._accept)

    def _accept(self) -> None:
        try:
            sock = lean.accept(self.listener)
        except BlockingIOError:
            return
        self.clients.add(AttachClient(self, sock))

    @property
    def congested(self) -> bool:
        return any(c.pending >= ATTACH_LIMIT for c in self.clients)

    def broadcast(self, stream: str, data: bytes) -> None:
        if self.tty:
            framed = data
        else:
            framed = struct.pack(">BxxxI", STREAM_IDS[stream], len(data)) + data
        for client in list(self.clients):
            if client.registered and not client.closing and (
                    stream in client.streams or (self.tty and client.streams)):
                client.send(framed)

    # -- callbacks from clients

    def registered(self, client: AttachClient) -> None:
        if self._finishing:
            client.close()
        elif self.stdin is not None and self.stdin.congested:
            client.pause_reading()

    def client_stdin(self, data: bytes) -> None:
        if self.stdin is None or not self.stdin.open:
            return
        self.stdin.write(data)
        if self.stdin.congested:
            for client in self.clients:
                client.pause_reading()

    def client_stdin_eof(self) -> None:
        if self.stdin_once and self.stdin is not None:
            self.stdin.close()

    def stdin_drained(self) -> None:
        for client in list(self.clients):
            client.resume_reading()

    def client_drained(self) -> None:
        self._on_congestion_change()

    def client_gone(self, client: AttachClient) -> None:
        self.clients.discard(client)
        if client.stdin and client.registered:
            self.client_stdin_eof()  # a vanished stdin client ends StdinOnce input as its EOF would
        self._on_congestion_change()
        self._check_finished()

    # -- end of the container

    def finish(self, on_finished: Callable[[], None]) -> None:
        """Send what is queued, close every connection, stop accepting; then ``on_finished``."""
        self._finishing = True
        self._on_finished = on_finished
        for client in list(self.clients):
            if client.registered:
                client.close()
        self._drain_timer = self.reactor.call_later(1.0, self._drain_tick)
        self._check_finished()

    def _drain_tick(self) -> None:
        now = time.monotonic()
        for client in list(self.clients):
            if not client.registered or now - client.last_progress > DRAIN_IDLE_TIMEOUT:
                client.drop()
        if self._on_finished is not None:
            self._drain_timer = self.reactor.call_later(1.0, self._drain_tick)

    def _check_finished(self) -> None:
        if not self._finishing or self.clients or self._on_finished is None:
            return
        callback, self._on_finished = self._on_finished, None
        if self._drain_timer is not None:
            self._drain_timer.cancel()
        self.reactor.forget(self.listener.fileno())
        self.listener.close()
        callback()
