"""Limits on how a client may send request headers, so that a hostile one cannot hurt the others.

httptools (llhttp) has no bound on header size and uvicorn no header timeout, so the protocol
(api/hijack.py) keeps one :class:`HeaderGuard` per connection: the headers of a request must fit
in ``MAX_HEADER_BYTES`` (dockerd's net/http MaxHeaderBytes, 1 MiB: 431 beyond) and be complete
within ``HEADER_TIMEOUT`` of the connection or the request's first byte (a client that trickles
them, or says nothing, is cut with 408). Neither costs the other connections anything: the
timers are event-loop timers and nothing is buffered beyond the limit.

Size is counted twice over, because neither count alone sees everything: the bytes read while
the headers are still incomplete (a single endless header line, which httptools buffers without
a callback) and the URL and header lines the parser hands over (headers that complete in the
same read as the bytes that pushed them over the limit).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

MAX_HEADER_BYTES = 1 << 20
HEADER_TIMEOUT = 15.0

_REASONS = {408: "Request Timeout", 431: "Request Header Fields Too Large"}


def error_response(status: int, message: str) -> bytes:
    """A complete HTTP/1.1 error response that closes the connection (sent before any ASGI cycle)."""
    body = json.dumps({"message": message}).encode()
    return (f"HTTP/1.1 {status} {_REASONS[status]}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode() + body


class HeaderGuard:
    """Watches one connection's request headers; calls ``reject(status, message)`` once when they
    break a limit."""

    def __init__(self, loop: asyncio.AbstractEventLoop, reject: Callable[[int, str], None],
                 max_bytes: int = MAX_HEADER_BYTES, timeout: float = HEADER_TIMEOUT) -> None:
        self._loop = loop
        self._reject = reject
        self._max = max_bytes
        self._timeout = timeout
        self._timer: asyncio.TimerHandle | None = None
        self._deadline = 0.0
        self._received = 0  # bytes read while the headers were incomplete (a header still being sent)
        self._parsed = 0  # bytes of the URL and the header lines the parser has handed over
        self.reading = False  # between a request's first byte (or the connection) and its headers' end
        self.rejected = False  # the connection is being closed: ignore whatever else it sends

    def begin(self) -> None:
        """A connection opened or a request's first byte arrived."""
        if not self.reading:
            self._received = self._parsed = 0
            self._deadline = self._loop.time() + self._timeout
        self.reading = True
        # One timer per connection, not per request: a keep-alive connection's timer moves on
        # to the current request's deadline when it fires (call_later and cancel for every
        # request were 2 us of a 60 us /_ping).
        if self._timer is None:
            self._timer = self._loop.call_later(self._timeout, self._expired)

    def received(self, size: int) -> None:
        """``size`` bytes were read and the headers are still not complete."""
        if self.reading:
            self._received += size
            self._check()

    def parsed(self, size: int) -> None:
        """The parser handed over ``size`` bytes of URL or header lines."""
        if self.reading:
            self._parsed += size
            self._check()

    def _check(self) -> None:
        if max(self._received, self._parsed) > self._max and not self.rejected:
            self._fail(431, f"request headers larger than {self._max} bytes")

    def complete(self) -> bool:
        """The headers are complete (the body and the response have no such limit); False when
        the request must not be served."""
        self.reading = False
        return not self.rejected

    def _fail(self, status: int, message: str) -> None:
        self.rejected = True
        self.reading = False
        self.stop()
        self._reject(status, message)

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _expired(self) -> None:
        self._timer = None
        if not self.reading or self.rejected:
            return
        left = self._deadline - self._loop.time()
        if left > 0:
            self._timer = self._loop.call_later(left, self._expired)
            return
        self._fail(408, f"request headers not received within {self._timeout:g} s")
