"""The control socket: JSON-line requests, JSON-line replies, many clients at once.

Requests on one connection are answered in order; a reply may be deferred (``start``
until the exec is known to have succeeded, ``wait`` until the container is done), and the
connection's next request waits for it.
"""

from __future__ import annotations

from . import lean
from .reactor import Reactor

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    # Returns the reply, or None when it will come later through ``conn.reply``.
    Handler = Callable[["ControlConn", dict], "dict | None"]

LINE_LIMIT = 64 * 1024


class ControlConn:
    def __init__(self, server: ControlServer, sock: lean.Socket) -> None:
        self.server = server
        self.sock: lean.Socket | None = sock
        self.fd = sock.fileno()
        self._in = bytearray()
        self._out = bytearray()
        self._busy = False
        sock.setblocking(False)
        server.reactor.set_reader(self.fd, self._readable)

    @property
    def closed(self) -> bool:
        return self.sock is None

    @property
    def flushed(self) -> bool:
        return not self._out

    def _readable(self) -> None:
        try:
            data = self.sock.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self.close()
            return
        self._in += data
        if len(self._in) > LINE_LIMIT and b"\n" not in self._in:
            self.close()
            return
        self._next()

    def poll(self) -> None:
        """Read and handle whatever the client has sent so far, without waiting."""
        while self.sock is not None and not self._busy:
            before = len(self._in)
            self._readable()
            if self.sock is None or len(self._in) == before:
                return

    def _next(self) -> None:
        while not self._busy and self.sock is not None:
            end = self._in.find(b"\n")
            if end < 0:
                return
            line = bytes(self._in[:end])
            del self._in[:end + 1]
            try:
                request = lean.loads(line)
                if not isinstance(request, dict):
                    raise ValueError("expected an object")
            except ValueError as e:
                self._write({"ok": False, "error": f"bad request: {e}"})
                continue
            self._busy = True
            reply = self.server.handler(self, request)
            if reply is not None:
                self.reply(reply)

    def reply(self, message: dict) -> None:
        """Answer the request in progress and go on with the next one."""
        if self.sock is None:
            return
        self._write(message)
        self._busy = False
        self._next()

    def _write(self, message: dict) -> None:
        self._out += lean.dumps(message) + b"\n"
        self._writable()

    def _writable(self) -> None:
        if self.sock is None:
            return
        try:
            while self._out:
                del self._out[:self.sock.send(self._out)]
        except BlockingIOError:
            pass
        except OSError:
            self.close()
            return
        self.server.reactor.set_writer(self.fd, self._writable if self._out else None)
        if not self._out:
            self.server.conn_flushed()

    def close(self) -> None:
        if self.sock is None:
            return
        self.server.reactor.forget(self.fd)
        self.sock.close()
        self.sock = None
        self.server.conns.discard(self)
        self.server.conn_flushed()


class ControlServer:
    def __init__(self, reactor: Reactor, listener: lean.Socket, handler: Handler) -> None:
        self.reactor = reactor
        self.listener: lean.Socket | None = listener
        self.handler = handler
        self.conns: set[ControlConn] = set()
        self._on_flushed: Callable[[], None] | None = None
        listener.setblocking(False)
        reactor.set_reader(listener.fileno(), self._accept)

    def _accept(self) -> None:
        try:
            sock = lean.accept(self.listener)
        except BlockingIOError:
            return
        self.conns.add(ControlConn(self, sock))

    def shutdown(self, on_done: Callable[[], None], timeout: float = 2.0) -> None:
        """Stop accepting; call ``on_done`` once every queued reply is sent (or ``timeout``)."""
        if self.listener is not None:
            self.reactor.forget(self.listener.fileno())
            self.listener.close()
            self.listener = None
        self._on_flushed = on_done
        # Answer what clients already sent (a wait right after start is common), so no
        # connection is closed with an unread request, which the client sees as a reset.
        for conn in list(self.conns):
            conn.poll()
        self.reactor.call_later(timeout, self._give_up)
        self.conn_flushed()

    def conn_flushed(self) -> None:
        if self._on_flushed is not None and all(c.flushed for c in self.conns):
            callback, self._on_flushed = self._on_flushed, None
            callback()

    def _give_up(self) -> None:
        if self._on_flushed is not None:
            callback, self._on_flushed = self._on_flushed, None
            callback()
