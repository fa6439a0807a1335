"""HTTP hijacking for attach and exec start, under uvicorn.

The Engine API answers `Upgrade: tcp` requests on attach/exec-start with
`101 UPGRADED` and then speaks a raw full-duplex byte stream on the same connection.
dockerd takes these connections over without the upgrade headers too (a bare `200 OK`,
`application/vnd.docker.raw-stream`, no length: the body lasts until the connection
closes), and dockerode relies on it: it writes stdin on the same connection after such a
request. Routes registered with `plain=True` are taken over that way as well.
ASGI cannot express that (by default uvicorn logs "Unsupported upgrade request" and serves
it as plain HTTP, and the CLI then fails), so this module subclasses uvicorn's httptools
protocol: when the request headers are complete and the
request is an `Upgrade: tcp` on a registered route, the transport is taken away from
uvicorn and handed to an asyncio handler as a StreamReader/StreamWriter pair. Every
other request goes through the ASGI app untouched.

The protocol also answers `/_ping` itself (api/ping.py): see _quick_ping and _take_ping; and it
replays the kept answers of GET requests (api/replay.py): see _quick_replay and _replay_candidate.

uvicorn internals relied on (uvicorn and httptools are pinned for this):
`HttpToolsProtocol.{parser, url, headers, scope, expect_100_continue, transport, loop, app,
connections, cycle, pipeline, server_state, app_state, timeout_keep_alive(_task),
timeout_keep_alive_handler, access_log(ger), on_message_begin (replaced: it builds the scope),
on_headers_complete, on_body, on_message_complete, on_response_complete (replaced), data_received,
_start_asgi_task, _get_upgrade, _should_upgrade, _unset_keepalive_if_required, send_400_response,
flow}` and `RequestResponseCycle.{keep_alive, body, message_event, response_complete, transport, on_response}`, and
httptools raising `HttpParserUpgrade(offset)`.
For TLS, asyncio's private `SSLProtocol._start_shutdown` (see _allow_tls_half_close).
"""

from __future__ import annotations

import asyncio
import http
import json
import logging
import re
import socket
import urllib.parse
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from . import ping
from .limits import HeaderGuard, error_response
from .params import parse_json
from .replay import SCOPE_KEY as REPLAY_KEY
from .replay import ReplayCache, Slot
from .streams import RAW_STREAM
from .versioning import API_VERSION, STANDARD_HEADERS, check_version, strip_version

log = logging.getLogger(__name__)

# Requests bodies on hijacked routes are tiny JSON documents (exec start); anything
# bigger is a client bug or abuse and must not be buffered.
MAX_BODY = 1 << 20
BODY_TIMEOUT = 30.0
READER_LIMIT = 1 << 20


@dataclass
class HijackRequest:
    method: str
    path: str  # version prefix stripped
    version: str  # API version of the request
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-case keys
    body: bytes
    params: dict[str, str] = field(default_factory=dict)
    upgrade: bool = True  # False: taken over without `Upgrade: tcp` (see send_stream_start)

    def arg(self, name: str, default: str | None = None) -> str | None:
        """First value of a query parameter, as Go's r.Form.Get."""
        values = self.query.get(name)
        return values[0] if values else default

    def flag(self, name: str, default: bool = False) -> bool:
        """A boolean query parameter the way dockerd reads them (httputils.BoolValue)."""
        value = self.arg(name)
        if value is None:
            return default
        return value.strip().lower() not in ("", "0", "no", "false", "none")

    def json(self) -> Any:
        return parse_json(self.body) if self.body.strip() else None


HijackHandler = Callable[[HijackRequest, asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class HijackRoutes:
    """Registry of hijackable routes, and the set of running hijack tasks.

    The tasks live here rather than in uvicorn's server state: uvicorn's graceful
    shutdown would otherwise wait for every open attach session.
    """

    def __init__(self) -> None:
        self._routes: list[tuple[str, re.Pattern[str], HijackHandler, bool]] = []
        # The methods of all routes, and of the plain ones: every request without upgrade is
        # looked at (see HijackProtocol._match_hijack), and a GET must cost nothing there.
        self._methods: set[bytes] = set()
        self._plain_methods: set[bytes] = set()
        self.tasks: set[asyncio.Task[None]] = set()

    def add(self, method: str, regex: str, handler: HijackHandler, plain: bool = False) -> None:
        """plain: take the connection over without `Upgrade: tcp` too, as dockerd does."""
        self._routes.append((method.upper(), re.compile(regex), handler, plain))
        self._methods.add(method.upper().encode("ascii"))
        if plain:
            self._plain_methods.add(method.upper().encode("ascii"))

    def may_match(self, method: bytes, upgrade: bool = True) -> bool:
        """False when no route can take a request with this method."""
        return method in (self._methods if upgrade else self._plain_methods)

    @property
    def has_plain(self) -> bool:
        return bool(self._plain_methods)

    def route(self, method: str, regex: str) -> Callable[[HijackHandler], HijackHandler]:
        def decorator(handler: HijackHandler) -> HijackHandler:
            self.add(method, regex, handler)
            return handler

        return decorator

    def match(self, method: str, path: str, upgrade: bool = True) -> tuple[HijackHandler, dict[str, str]] | None:
        for m, pattern, handler, plain in self._routes:
            if m != method or not (upgrade or plain):
                continue
            found = pattern.match(path)
            if found is not None:
                return handler, {k: v for k, v in found.groupdict().items() if v is not None}
        return None

    async def cancel_all(self, timeout: float = 2.0) -> None:
        """Cancel every running hijack session and wait (bounded) for them to end."""
        tasks = [t for t in self.tasks if not t.done()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=timeout)


class HijackWriter(asyncio.StreamWriter):
    """StreamWriter that remembers whether anything was written.

    The task wrapper needs to know whether a 500 can still be answered after a handler
    failed, and send_error needs the reader to drain the connection before closing.
    """

    def __init__(
        self,
        transport: asyncio.Transport,
        protocol: asyncio.StreamReaderProtocol,
        reader: asyncio.StreamReader,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        super().__init__(transport, protocol, reader, loop)
        self.hijack_reader = reader
        self.response_started = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.response_started = True
        super().write(data)

    def writelines(self, data: Any) -> None:
        self.response_started = True
        super().writelines(data)


@dataclass
class _Pending:
    """What on_headers_complete learned about a request that is going to be hijacked."""

    handler: HijackHandler
    method: str
    path: str
    version: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    params: dict[str, str]
    upgrade: bool
    body: bytearray = field(default_factory=bytearray)


def _header_block(status_line: str, headers: list[tuple[str, str]]) -> bytes:
    lines = [status_line]
    lines.extend(f"{k}: {v}" for k, v in headers)
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


async def send_upgrade(writer: asyncio.StreamWriter, content_type: str) -> None:
    """Write the `101 UPGRADED` response; after it the connection is a raw stream."""
    headers = [
        ("Content-Type", content_type),
        ("Connection", "Upgrade"),
        ("Upgrade", "tcp"),
        *STANDARD_HEADERS,
    ]
    # Written and flushed on its own: docker-py reads the 101 with http.client's
    # buffered reader and then reads the raw socket, so stream bytes glued to the
    # header block could be swallowed by that buffer.
    writer.write(_header_block("HTTP/1.1 101 UPGRADED", headers))
    await writer.drain()


async def send_stream_start(writer: asyncio.StreamWriter, request: HijackRequest, content_type: str) -> None:
    """Start the stream: `101 UPGRADED` when the client asked for it, else dockerd's bare `200 OK`.

    The bare answer has neither a length nor chunking (dockerd writes it on the hijacked
    connection): the stream lasts until the connection closes, and stdin is what the client
    writes after its request.
    """
    if request.upgrade:
        await send_upgrade(writer, content_type)
        return
    writer.write(_header_block("HTTP/1.1 200 OK", [("Content-Type", RAW_STREAM), *STANDARD_HEADERS]))
    await writer.drain()


async def send_empty_ok(writer: asyncio.StreamWriter) -> None:
    """A complete `200 OK` without a body (a detached exec start taken over without upgrade)."""
    writer.write(_header_block("HTTP/1.1 200 OK", [("Content-Length", "0"), ("Connection", "close"),
                                                   *STANDARD_HEADERS]))
    await writer.drain()


async def send_error(writer: asyncio.StreamWriter, status: int, message: str) -> None:
    """Answer a plain HTTP error (before any upgrade) with `{"message": ...}` and close."""
    body = json.dumps({"message": message}).encode() + b"\n"
    try:
        phrase = http.HTTPStatus(status).phrase
    except ValueError:
        phrase = ""
    headers = [
        ("Content-Type", "application/json"),
        ("Content-Length", str(len(body))),
        ("Connection", "close"),
        *STANDARD_HEADERS,
    ]
    try:
        writer.write(_header_block(f"HTTP/1.1 {status} {phrase}".rstrip(), headers) + body)
        await writer.drain()
    except (ConnectionError, OSError):
        pass
    reader = getattr(writer, "hijack_reader", None)
    if isinstance(reader, asyncio.StreamReader):
        await close_gracefully(writer, reader, timeout=2.0)
    else:
        writer.close()


async def close_gracefully(
    writer: asyncio.StreamWriter, reader: asyncio.StreamReader, timeout: float = 5.0
) -> None:
    """End a hijacked connection without making the kernel send a reset.

    Closing a socket that still has unread input makes Linux answer with RST, and the
    client then reports "connection reset by peer" (e.g. `yes | docker run -i ... head
    -n 3`, where stdin is still flowing when the container exits). So: flush, half-close
    our side (the client sees end of output), discard what the client still sends until
    it closes too, then close. Nothing else may be reading `reader` at that point.

    asyncio's SSL transport has no write_eof: over TLS, the close_notify that close()
    sends is the end-of-output signal, and the SSL shutdown then waits for the client's.
    """
    transport = writer.transport
    if transport.is_closing():
        return
    try:
        await asyncio.wait_for(writer.drain(), timeout)
        if writer.can_write_eof():
            writer.write_eof()
            async with asyncio.timeout(timeout):
                while await reader.read(1 << 16):
                    pass
    except (ConnectionError, OSError, TimeoutError):
        pass
    except RuntimeError:
        # Another coroutine is still reading: the handler did not stop its stdin pump.
        log.warning("close_gracefully: reader still in use, closing without draining")
    finally:
        writer.close()
    try:
        await asyncio.wait_for(writer.wait_closed(), timeout)
    except (ConnectionError, OSError, TimeoutError):
        transport.abort()


def _allow_tls_half_close(transport: asyncio.BaseTransport) -> None:
    """Keep a TLS hijack writable after the client's close_notify.

    The CLI ends stdin over TLS with Go's tls.Conn.CloseWrite, which sends close_notify
    and keeps reading; dockerd (Go) keeps writing output after it. asyncio's SSL
    protocol (3.11) instead starts shutting the whole connection down when it receives
    close_notify and silently drops everything written afterwards, so `docker
    --tlsverify run -i ...` would lose its output. Here the peer-initiated shutdown is
    skipped (the reader still gets its EOF); the connection shuts down when we close
    it. Relies on asyncio's private `_SSLProtocolTransport._ssl_protocol` and
    `SSLProtocol._start_shutdown`; without them the default behaviour stays.
    """
    ssl_protocol = getattr(transport, "_ssl_protocol", None)
    start_shutdown = getattr(ssl_protocol, "_start_shutdown", None)
    if ssl_protocol is None or start_shutdown is None:
        log.warning("TLS half-close not available on this Python: output after stdin EOF may be lost")
        return

    def _start_shutdown() -> None:
        # Our close() marks the app transport closed before calling this; a call
        # while it is still open comes from the peer's close_notify.
        if transport.is_closing():
            start_shutdown()

    ssl_protocol._start_shutdown = _start_shutdown


def _content_length(raw: list[tuple[bytes, bytes]]) -> int:
    for name, value in raw:
        if name == b"content-length":
            try:
                return max(0, int(value))
            except ValueError:
                return 0
    return 0


def _parse_headers(raw: list[tuple[bytes, bytes]]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for name, value in raw:
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        headers[key] = f"{headers[key]}, {text}" if key in headers else text
    return headers


async def _read_body(pending: _Pending, reader: asyncio.StreamReader) -> bytes:
    """The request body after the headers.

    httptools stops parsing at the headers of an upgrade request, so the body (the exec
    start JSON) arrives as the first bytes of the stream; read exactly Content-Length of
    them. If the parser did deliver some body itself, it is in pending.body already.
    """
    headers = pending.headers
    body = bytes(pending.body)
    if "chunked" in headers.get("transfer-encoding", "").lower():
        return body + await _read_chunked(reader)
    length_text = headers.get("content-length", "").strip()
    if not length_text:
        return body
    length = int(length_text)
    if length < 0 or length > MAX_BODY:
        raise ValueError(f"request body too large ({length} bytes)")
    missing = length - len(body)
    if missing > 0:
        body += await reader.readexactly(missing)
    return body


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    out = bytearray()
    while True:
        size_line = await reader.readuntil(b"\r\n")
        size = int(size_line.split(b";", 1)[0].strip(), 16)
        if size == 0:
            # Trailers, if any, end with an empty line.
            while (await reader.readuntil(b"\r\n")) != b"\r\n":
                pass
            return bytes(out)
        if len(out) + size > MAX_BODY:
            raise ValueError("request body too large")
        out += await reader.readexactly(size)
        await reader.readexactly(2)


class _BadRequest(Exception):
    pass


async def _run_hijack(
    pending: _Pending, reader: asyncio.StreamReader, writer: HijackWriter, client: str
) -> None:
    try:
        try:
            async with asyncio.timeout(BODY_TIMEOUT):
                body = await _read_body(pending, reader)
        except (ValueError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError) as exc:
            raise _BadRequest(f"invalid request body: {exc}") from exc
        request = HijackRequest(
            method=pending.method,
            path=pending.path,
            version=pending.version,
            query=pending.query,
            headers=pending.headers,
            body=body,
            params=pending.params,
            upgrade=pending.upgrade,
        )
        await pending.handler(request, reader, writer)
    except asyncio.CancelledError:
        # Daemon shutdown: no goodbye, the client sees the stream end.
        writer.transport.abort()
        raise
    except _BadRequest as exc:
        if not writer.response_started:
            await send_error(writer, 400, str(exc))
    except (ConnectionError, BrokenPipeError) as exc:
        # The client hung up: normal for attach (the CLI just closes when it is done).
        log.debug("hijack %s %s from %s: client went away: %r", pending.method, pending.path, client, exc)
    except Exception:
        log.exception("hijack handler for %s %s failed", pending.method, pending.path)
        if not writer.response_started and not writer.transport.is_closing():
            await send_error(writer, 500, "internal server error")
    finally:
        if not writer.transport.is_closing():
            await close_gracefully(writer, reader)


_BODY_HIGH_WATER = 1 << 20  # unread request body per connection before reading pauses
_SEND_BUFFER = 1 << 20  # SO_SNDBUF of each connection (the kernel doubles it)


class _Recorder:
    """The transport of a request cycle whose answer may be kept: what is written, also kept."""

    __slots__ = ("transport", "written")

    def __init__(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        self.written: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.written.append(data)
        self.transport.write(data)

    def is_closing(self) -> bool:
        return self.transport.is_closing()

    def close(self) -> None:
        self.transport.close()


def protocol_class(routes: HijackRoutes, replay: ReplayCache | None = None) -> type[HttpToolsProtocol]:
    """The uvicorn protocol class for `uvicorn.Config(http=..., ws="none")`; `replay`: the kept
    answers of GET requests (none kept without it)."""
    answers = replay if replay is not None else ReplayCache.off()

    class HijackProtocol(HttpToolsProtocol):
        _hijack_routes = routes
        _replay = answers
        # The read being parsed when it began at a request boundary: the key of a kept answer.
        _head_read: bytes | None = None
        _hijack: _Pending | None = None
        _plain_body_left = 0
        # Between a request's headers and its end: data then is body, not a head to look into.
        _in_body = False
        _head_tail = b""  # the last bytes of a head split between two reads
        # Set while the parser is fed exactly up to the end of a head: only then can a request
        # without upgrade be taken over, since the bytes after it are known (see data_received).
        _at_head_end = False
        _guard: HeaderGuard
        # The answer of a /_ping being read (api/ping.py): written when its request ends.
        _ping: bytes | None = None
        # When an idle keep-alive connection is closed; None while a request is in progress.
        _idle_deadline: float | None = None
        # The parser is between two requests (nothing of a next one read yet).
        _between = True

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            # The default send buffer (208 KiB) makes big responses (export, cp, save, logs)
            # ping-pong with the client: measured 0.29 s -> 0.24 s for a 200 MB docker export.
            sock = transport.get_extra_info("socket")
            if sock is not None:
                try:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, _SEND_BUFFER)
                except OSError:
                    pass
            super().connection_made(transport)
            self._guard = HeaderGuard(self.loop, self._reject_headers)
            self._guard.begin()

        def connection_lost(self, exc: Exception | None) -> None:
            self._guard.stop()
            self._cancel_keepalive()
            super().connection_lost(exc)

        # uvicorn arms a keep-alive timer after every response and cancels it on every read: a
        # call_later and a cancel per request. Here one timer per connection follows a deadline
        # instead (as HeaderGuard does), and is only re-armed when it fires early.
        def _unset_keepalive_if_required(self) -> None:
            self._idle_deadline = None

        def _cancel_keepalive(self) -> None:
            self._idle_deadline = None
            if self.timeout_keep_alive_task is not None:
                self.timeout_keep_alive_task.cancel()
                self.timeout_keep_alive_task = None

        def _arm_keepalive(self) -> None:
            self._idle_deadline = deadline = self.loop.time() + self.timeout_keep_alive
            if self.timeout_keep_alive_task is None:
                self.timeout_keep_alive_task = self.loop.call_at(deadline, self._keepalive_due)

        def _keepalive_due(self) -> None:
            self.timeout_keep_alive_task = None
            deadline = self._idle_deadline
            if deadline is None:
                return  # busy: the next response arms it again
            if self.loop.time() < deadline:
                self.timeout_keep_alive_task = self.loop.call_at(deadline, self._keepalive_due)
            else:
                self.timeout_keep_alive_handler()

        def on_response_complete(self) -> None:
            # HttpToolsProtocol.on_response_complete with the deadline-based keep-alive timer.
            self.server_state.total_requests += 1
            if self.transport.is_closing():
                return
            self._idle_deadline = None
            self.flow.resume_reading()
            if self.pipeline:
                cycle, app = self.pipeline.pop()
                self._start_asgi_task(cycle, app)
            else:
                self._arm_keepalive()

        def _reject_headers(self, status: int, message: str) -> None:
            self.logger.debug("closing a connection from %s: %s", self.client or "unix", message)
            if not self.transport.is_closing():
                self.transport.write(error_response(status, message))
                self.transport.close()

        def on_message_begin(self) -> None:
            self._guard.begin()
            self._between = False
            self._hijack = None
            self._plain_body_left = 0
            # HttpToolsProtocol.on_message_begin without the scope: a ping needs none, so it is
            # built in on_headers_complete (see _new_scope).
            self.url = b""
            self.expect_100_continue = False
            self.headers = []

        def _new_scope(self) -> None:
            self.scope = {  # type: ignore[typeddict-item]
                "type": "http",
                "asgi": {"version": self.asgi_version, "spec_version": "2.3"},
                "http_version": "1.1",
                "server": self.server,
                "client": self.client,
                "scheme": self.scheme,  # type: ignore[typeddict-item]
                "root_path": self.root_path,
                "headers": self.headers,
                "state": self.app_state.copy(),
            }

        def on_url(self, url: bytes) -> None:
            self._guard.parsed(len(url))
            super().on_url(url)

        def on_header(self, name: bytes, value: bytes) -> None:
            self._guard.parsed(len(name) + len(value) + 4)
            super().on_header(name, value)

        def on_headers_complete(self) -> None:
            if not self._guard.complete():
                return
            is_ping = self._take_ping()
            if is_ping is True:
                self._in_body = True
                return
            self._new_scope()
            method = self.parser.get_method()
            if method != b"GET" and method != b"HEAD":
                # It may change what kept answers show: none is replayed from now, nor after its answer.
                self._replay.invalidate()
                mutating = True
            else:
                mutating = False
            if is_ping is None:
                # A ping for uvicorn's cycle to carry (see _take_ping): the same answer, as an app.
                app = self.app
                self.app = ping.asgi_app
                self._in_body = True
                try:
                    super().on_headers_complete()
                finally:
                    self.app = app
                return
            pending = self._match_hijack()
            if pending is not None:
                # No RequestResponseCycle: the HttpParserUpgrade that feed_data raises next
                # (in data_received), or data_received itself for a plain one, takes the
                # connection over.
                self._hijack = pending
                return
            self._in_body = True
            slot = self._replay_candidate(method)
            super().on_headers_complete()
            cycle = self.cycle
            if mutating and cycle is not None:
                cycle.on_response = self._after_mutation
            elif slot is not None and cycle is not None and not self.pipeline:
                recorder = _Recorder(cycle.transport)
                cycle.transport = recorder  # type: ignore[assignment]
                cycle.on_response = lambda: self._after_candidate(slot, recorder)
            if self.parser.should_upgrade() and self.cycle is not None and not self._should_upgrade():
                # An upgrade request we do not hijack (HTTP/1.0, another path, another
                # protocol) is served as plain HTTP, as dockerd does. httptools skips the
                # body of every upgrade request, so it is fed to the cycle by hand from
                # the raw bytes; after it the connection closes, since the parser cannot
                # be trusted with what follows.
                self.cycle.keep_alive = False
                self._plain_body_left = _content_length(self.headers)

        def _replay_candidate(self, method: bytes) -> Slot | None:
            """A slot in the scope when this request's answer may be kept (api/replay.py): a GET
            that was one whole read at a request boundary, not queued behind another response."""
            head, self._head_read = self._head_read, None
            if head is None or method != b"GET" or self.pipeline or self.parser.should_upgrade():
                return None
            cycle = self.cycle
            if cycle is not None and not cycle.response_complete:
                return None
            slot = self._replay.slot(head)
            if slot is not None:
                self.scope[REPLAY_KEY] = slot  # type: ignore[literal-required]
            return slot

        def _after_candidate(self, slot: Slot, recorder: _Recorder) -> None:
            self._replay.keep(slot, recorder.written)
            self.on_response_complete()

        def _after_mutation(self) -> None:
            self._replay.invalidate()
            self.on_response_complete()

        def _quick_replay(self, data: bytes) -> bool:
            """Write the kept answer of a read that is one GET request head seen before (api/replay.py)."""
            answer = self._replay.answer(data, self._date())
            if answer is None or not self._may_answer_now():
                return False
            self._guard.complete()
            self._answer_now(answer, b"GET", data[4:data.find(b" HTTP/1.1\r\n")])
            return True

        def _take_ping(self) -> bool | None:
            """For a /_ping (api/ping.py): True when it is answered here when its request ends, None
            when uvicorn's cycle must carry it (closing the connection after it, or queued behind an
            unfinished response); False for any other request."""
            parser = self.parser
            head = ping.is_ping(parser.get_method(), self.url)
            if head is None or parser.should_upgrade():
                return False
            if parser.get_http_version() != "1.1" or not parser.should_keep_alive() or self.pipeline:
                return None
            cycle = self.cycle
            if cycle is not None and not cycle.response_complete:
                return None  # answered now, it would overtake that response
            self._ping = ping.ANSWERS.answer(head, self._date())
            return True

        def _date(self) -> bytes:
            # uvicorn's Date header value, which its server loop renews every second.
            for name, value in self.server_state.default_headers:
                if name == b"date":
                    return value
            return b""

        def _quick_ping(self, data: bytes) -> bool:
            """Answer a read that is one plain `/_ping` without the parser (see ping.is_plain_ping)."""
            head = ping.is_plain_ping(data)
            if head is None or not self._may_answer_now():
                return False
            # The head is complete and within limits: what the guard waits for (only the first
            # request of a connection is being waited for here; later ones begin in the parser).
            self._guard.complete()
            self._answer_now(ping.ANSWERS.answer(head, self._date()), b"HEAD" if head else b"GET", b"/_ping")
            return True

        def _may_answer_now(self) -> bool:
            """Whether an answer written now follows every earlier one (none queued or unfinished)."""
            if self.pipeline or self._plain_body_left:
                return False
            cycle = self.cycle
            return cycle is None or cycle.response_complete

        def _answer_now(self, answer: bytes, method: bytes, url: bytes) -> None:
            self._ping = None
            self.transport.write(answer)
            if self.access_log:
                self.access_logger.info('%s - "%s %s HTTP/1.1" 200', f"{self.client[0]}:{self.client[1]}"
                                        if self.client else "unix", method.decode("ascii"), url.decode("latin-1"))
            self.server_state.total_requests += 1
            if not self.transport.is_closing():
                self._arm_keepalive()

        def _match_hijack(self) -> _Pending | None:
            parser = self.parser
            if parser.should_upgrade():
                if parser.get_http_version() != "1.1" or self._get_upgrade() != b"tcp":
                    return None
                upgrade = True
            elif self._at_head_end:
                upgrade = False
            else:
                return None
            raw_method = parser.get_method()
            if not self._hijack_routes.may_match(raw_method, upgrade):
                return None
            if self.cycle is not None and not self.cycle.response_complete:
                # A hijack pipelined behind an unfinished response would interleave with
                # it; no real client does that, so let uvicorn treat it as plain HTTP.
                return None
            method = raw_method.decode("ascii")
            parsed = httptools.parse_url(self.url)
            path = parsed.path.decode("latin-1")
            if "%" in path:
                path = urllib.parse.unquote(path)
            version, path = strip_version(path)
            found = self._hijack_routes.match(method, path, upgrade)
            if found is None:
                return None
            handler, params = found
            query = urllib.parse.parse_qs(
                (parsed.query or b"").decode("latin-1"), keep_blank_values=True
            )
            return _Pending(
                handler=handler,
                method=method,
                path=path,
                version=version or API_VERSION,
                query=query,
                headers=_parse_headers(self.headers),
                params=params,
                upgrade=upgrade,
            )

        def on_body(self, body: bytes) -> None:
            if self._guard.rejected or self._ping is not None:
                return
            if self._hijack is not None:
                self._hijack.body += body
                return
            # HttpToolsProtocol.on_body with a higher mark: uvicorn pauses reading above 64 KiB
            # of unread body, i.e. after every socket read of an upload (two epoll_ctl calls
            # per read, a fifth of the event loop's time in a 200 MB docker import).
            cycle = self.cycle
            if (self.parser.should_upgrade() and self._should_upgrade()) or cycle.response_complete:
                return
            cycle.body += body
            if len(cycle.body) > _BODY_HIGH_WATER:
                self.flow.pause_reading()
            cycle.message_event.set()

        def on_message_complete(self) -> None:
            self._in_body = False
            self._between = True
            answer = self._ping
            if answer is not None:
                self._answer_now(answer, self.parser.get_method(), self.url)
                return
            if self._hijack is not None or self._plain_body_left or self._guard.rejected:
                return
            super().on_message_complete()

        def _feed_plain_body(self, data: bytes) -> None:
            take = data[: self._plain_body_left]
            self._plain_body_left -= len(take)
            if take:
                super().on_body(take)
            if not self._plain_body_left:
                super().on_message_complete()

        def data_received(self, data: bytes) -> None:
            # Mirrors HttpToolsProtocol.data_received, plus the take-overs.
            if self._guard.rejected:
                return
            self._unset_keepalive_if_required()
            if self._between:
                if self._quick_ping(data) or self._quick_replay(data):
                    return
                self._head_read = data
            else:
                self._head_read = None
            if self._plain_body_left:
                self._feed_plain_body(data)
                return
            end = None
            if not self._in_body and self._hijack_routes.has_plain:
                # httptools goes on parsing whatever follows a request without upgrade (body,
                # then stdin as if it were the next request), and cannot say where the head
                # ended: so the parser gets the bytes up to the first blank line alone, and a
                # plain take-over (see _match_hijack) gets the rest.
                found = (self._head_tail + data).find(b"\r\n\r\n")
                end = found + 4 - len(self._head_tail) if found >= 0 else None
                self._head_tail = b"" if end is not None else (self._head_tail + data)[-3:]
            if end is None:
                self._feed(data)
                return
            # Most reads are one whole request without a body: no copies then.
            head, rest = (data, b"") if end == len(data) else (data[:end], data[end:])
            self._at_head_end = True
            try:
                done = self._feed(head, rest)
            finally:
                self._at_head_end = False
            if done:
                return
            pending = self._hijack
            if pending is not None and not pending.upgrade:
                self._take_over(pending, rest)
            elif rest:
                self.data_received(rest)

        def _feed(self, data: bytes, rest: bytes = b"") -> bool:
            """Parse `data`; True when the connection is no longer uvicorn's (taken over, or
            answered 400). `rest` is what follows data in this read (for an upgrade)."""
            try:
                self.parser.feed_data(data)
            except httptools.HttpParserError:
                msg = "Invalid HTTP request received."
                self.logger.warning(msg)
                self.send_400_response(msg)
                return True
            except httptools.HttpParserUpgrade as exc:
                pending = self._hijack
                if pending is not None:
                    self._take_over(pending, data[exc.args[0] :] + rest)
                    return True
                if self._should_upgrade():
                    self.handle_websocket_upgrade()
                    return True
                # uvicorn warns about these; for us they are ordinary requests.
                self.logger.debug("serving upgrade request to %s as plain HTTP", self.url[:200])
                if self._plain_body_left:
                    self._feed_plain_body(data[exc.args[0] :] + rest)
                return True
            if self._guard.reading:
                self._guard.received(len(data))
            return False

        def _take_over(self, pending: _Pending, leftover: bytes) -> None:
            self._hijack = None
            # From here on uvicorn must not know this connection: not in its shutdown,
            # not in its keep-alive timer, not in its concurrency count.
            self.connections.discard(self)
            self._cancel_keepalive()
            transport = self.transport
            loop = self.loop
            client = f"{self.client[0]}:{self.client[1]}" if self.client else "unix"

            error = check_version(pending.version)
            reader = asyncio.StreamReader(limit=READER_LIMIT, loop=loop)
            proto = asyncio.StreamReaderProtocol(reader, loop=loop)
            if transport.get_extra_info("sslcontext") is not None:
                _allow_tls_half_close(transport)
            transport.set_protocol(proto)
            proto.connection_made(transport)
            if self.flow is not None and self.flow.read_paused:
                self.flow.resume_reading()
            if leftover:
                reader.feed_data(leftover)
            writer = HijackWriter(transport, proto, reader, loop)

            if error is not None:
                coro: Awaitable[None] = send_error(writer, 400, error)
            else:
                coro = _run_hijack(pending, reader, writer, client)
            task = loop.create_task(coro)
            tasks = self._hijack_routes.tasks
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            replay = self._replay
            task.add_done_callback(lambda _: replay.invalidate())

    return HijackProtocol
