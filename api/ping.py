"""`GET /_ping` and `HEAD /_ping`, answered by the HTTP protocol itself (api/hijack.py) with prebuilt bytes.

This is the only place the endpoint lives. Clients ping before nearly everything (the CLI on every
command, SDKs on connect, health checks in loops), and through the ASGI app a ping cost 60-80 us of
daemon CPU where the answer itself is a constant: a task, a scope, the middleware and two writes for
nothing. Here it is one lookup and one write. The answers are dockerd's (Go's canonical header names,
its order: sorted, then Date, Content-Length and Content-Type as net/http adds them), plus our
Builder-Version and Swarm; only Date changes, at most once a second (uvicorn's clock).

A versioned `/v1.NN/_ping` is answered here too when the version is supported; an unsupported one
falls through to the app, whose version middleware gives dockerd's 400, and so does any other method:
the app has no `/_ping` route, 404 as dockerd answers `POST /_ping`. A ping that the protocol cannot
answer on the spot (HTTP/1.0, `Connection: close`, pipelined behind an unfinished response) runs
through uvicorn's request cycle as any request does, with :func:`asgi_app` instead of the app.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from .versioning import STANDARD_HEADERS, check_version

_PING_HEADERS = sorted(
    [
        *((name, value) for name, value in STANDARD_HEADERS),
        ("Builder-Version", "1"),
        ("Cache-Control", "no-cache, no-store, must-revalidate"),
        ("Pragma", "no-cache"),
        ("Swarm", "inactive"),
    ]
)
_TEXT = "text/plain; charset=utf-8"


def _head(headers: list[tuple[str, str]]) -> bytes:
    return "".join(f"{name}: {value}\r\n" for name, value in headers).encode("latin-1")


# Everything but the Date line, before and after it.
_GET_BEFORE = b"HTTP/1.1 200 OK\r\n" + _head(_PING_HEADERS)
_GET_AFTER = _head([("Content-Length", "2"), ("Content-Type", _TEXT)]) + b"\r\nOK"
# dockerd's HEAD handler sets Content-Length and Content-Type itself: they are sorted in.
_HEAD_BEFORE = b"HTTP/1.1 200 OK\r\n" + _head(sorted([*_PING_HEADERS, ("Content-Length", "0"),
                                                       ("Content-Type", _TEXT)]))
_HEAD_AFTER = b"\r\n"

_PATH = b"/_ping"


def is_ping(method: bytes, url: bytes) -> bool | None:
    """For a request line: None when this is not a ping the protocol answers, else whether it is a HEAD.

    `url` is the raw request target; a query string is ignored, as dockerd does.
    """
    if method == b"GET":
        head = False
    elif method == b"HEAD":
        head = True
    else:
        return None
    q = url.find(b"?")
    path = url if q < 0 else url[:q]
    if path == _PATH:
        return head
    # /v1.NN/_ping: a prefix of digits and dots, and a version the daemon supports.
    if path.startswith(b"/v") and path.endswith(_PATH):
        version = path[2:-len(_PATH)]
        if version and version[:1].isdigit() and not version.strip(b"0123456789."):
            if check_version(version.decode("ascii")) is None:
                return head
    return None


_GET_LINE = b"GET /_ping HTTP/1.1\r\n"
_HEAD_LINE = b"HEAD /_ping HTTP/1.1\r\n"
# Headers that change what a request means for the connection: such a ping goes through the parser.
_SPECIAL = (b"content-length", b"transfer-encoding", b"connection", b"upgrade", b"expect")


# Reads already found to be plain pings: a client sends the same bytes every time (same Host and
# User-Agent), and a dict lookup is cheaper than looking into them again. Bounded: cleared when full.
_KNOWN: dict[bytes, bool] = {}
_KNOWN_MAX = 64
_KNOWN_SIZE = 1024  # bytes: a ping with kilobytes of headers is looked into every time, not kept


def is_plain_ping(data: bytes) -> bool | None:
    """For one read that is exactly one whole request head: None unless it is `GET|HEAD /_ping
    HTTP/1.1` with nothing that changes the connection (no body, no Connection, Upgrade or Expect
    header), else whether it is a HEAD.

    This is how clients ping (CLI, SDKs, health checks), and it lets the protocol answer without
    running the parser's callbacks at all. The header lines are not checked beyond that: a ping
    with malformed ones is answered all the same.
    """
    known = _KNOWN.get(data)
    if known is not None:
        return known
    if data.startswith(_GET_LINE):
        head = False
    elif data.startswith(_HEAD_LINE):
        head = True
    else:
        return None
    if data.find(b"\r\n\r\n") != len(data) - 4:
        return None  # more than one request head in this read, or none complete
    lowered = data.lower()
    for name in _SPECIAL:
        if name in lowered:
            return None
    if len(data) <= _KNOWN_SIZE:
        if len(_KNOWN) >= _KNOWN_MAX:
            _KNOWN.clear()
        _KNOWN[data] = head
    return head


class PingAnswers:
    """The two answers for the current Date, rebuilt when the date changes."""

    def __init__(self) -> None:
        self._date = b""
        self._get = b""
        self._head = b""

    def answer(self, head: bool, date: bytes) -> bytes:
        """The complete response (head and body) for a Date header value."""
        if date != self._date:
            line = b"Date: " + date + b"\r\n"
            self._get = _GET_BEFORE + line + _GET_AFTER
            self._head = _HEAD_BEFORE + line + _HEAD_AFTER
            self._date = date
        return self._head if head else self._get


ANSWERS = PingAnswers()

# For asgi_app: uvicorn adds Date (and Connection: close when it closes).
_ASGI_HEADERS = [(name.lower().encode("latin-1"), value.encode("latin-1"))
                 for name, value in (*_PING_HEADERS, ("Content-Type", _TEXT))]
_ASGI_GET = {"type": "http.response.start", "status": 200, "headers": [*_ASGI_HEADERS, (b"content-length", b"2")]}
_ASGI_HEAD = {"type": "http.response.start", "status": 200, "headers": [*_ASGI_HEADERS, (b"content-length", b"0")]}


async def asgi_app(scope: dict[str, Any], receive: Callable[[], Awaitable[Any]],
                   send: Callable[[dict[str, Any]], Awaitable[None]]) -> None:
    """The same answer as an ASGI app, for the pings uvicorn's cycle has to carry."""
    head = scope["method"] == "HEAD"
    await send(_ASGI_HEAD if head else _ASGI_GET)
    await send({"type": "http.response.body", "body": b"" if head else b"OK"})

__all__ = ["ANSWERS", "PingAnswers", "asgi_app", "is_ping", "is_plain_ping"]
