"""POST /containers/{id}/attach over a hijacked connection: the client's stream <-> the monitor's.

The monitor already speaks the wire format (stdcopy frames without a TTY, raw bytes with
one), so this only connects the two sockets, with back-pressure in both directions. A request
without the upgrade headers (curl, dockerode) is taken over all the same, as dockerd does
(api/hijack.py); attach_plain serves the rare one that cannot be (pipelined behind another).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from fastapi import APIRouter, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import StreamingResponse

from api.backends import Backends
from api.backends.containers import AttachSession, ContainerBackend
from api.detach import DEFAULT_DETACH_KEYS, DetachMatcher, parse_keys
from api.hijack import HijackRequest, HijackRoutes, close_gracefully, send_error, send_stream_start
from api.params import qbool
from api.responses import JSONResponse
from api.streams import STDERR, STDOUT, Demuxer, frame, relay, stream_content_type, until_stopping
from api.versioning import request_version, version_at_least
from daemon.errors import DaemonError

log = logging.getLogger("pydockerd.attach")
_CHUNK = 1 << 18
_STDIN_FLUSH_TIMEOUT = 1.0


router = APIRouter()


@router.post("/containers/{name}/attach")
async def attach_plain(name: str, request: Request) -> StreamingResponse:
    svc: ContainerBackend = request.app.state.backends.containers
    att = svc.attach(name, stdin=False, stdout=qbool(request, "stdout"), stderr=qbool(request, "stderr"))
    logs, stream = qbool(request, "logs"), qbool(request, "stream")

    async def body() -> AsyncIterator[bytes]:
        if logs:
            async for is_err, data in att.replay():
                yield _log_chunk(att, is_err, data)
        if not stream:
            return
        try:
            m_reader, m_writer = await att.connect()
        except (DaemonError, OSError, ConnectionError) as e:
            log.debug("attach to %s ended before start: %s", att.id, e)
            return
        async def chunks() -> AsyncIterator[bytes]:
            while data := await m_reader.read(_CHUNK):
                yield data

        try:
            async for data in until_stopping(request, chunks()):
                yield data
        finally:
            m_writer.close()

    return StreamingResponse(body(), media_type=stream_content_type(att.tty, request_version(request)))


@router.websocket("/containers/{name}/attach/ws")
async def attach_ws(name: str, ws: WebSocket) -> None:
    """Attach over a websocket (Portainer, docker-py's attach_socket(ws=True)), as dockerd's
    wsContainersAttach: the output raw in binary messages (text before API 1.28), stdout and
    stderr not told apart; every message received is stdin."""
    svc: ContainerBackend = ws.app.state.backends.containers
    stdin = qbool(ws, "stdin")
    try:
        att = svc.attach(name, stdin=stdin, stdout=qbool(ws, "stdout"), stderr=qbool(ws, "stderr"))
        keys = parse_keys(ws.query_params.get("detachKeys") or DEFAULT_DETACH_KEYS)
    except DaemonError as e:
        await ws.send_denial_response(JSONResponse({"message": e.message}, status_code=e.status))
        return
    await ws.accept()
    binary = version_at_least(request_version(ws), "1.28")

    async def send(data: bytes) -> None:
        if binary:
            await ws.send_bytes(data)
        else:
            await ws.send_text(data.decode(errors="replace"))

    if qbool(ws, "logs"):
        async for _, data in att.replay():
            await send(data)
    if not qbool(ws, "stream"):
        await ws.close()
        return
    try:
        m_reader, m_writer = await att.connect()
    except (DaemonError, OSError, ConnectionError) as e:
        log.debug("ws attach to %s ended before start: %s", att.id, e)
        await ws.close()
        return

    async def output() -> None:
        demux = None if att.tty else Demuxer()
        while data := await m_reader.read(_CHUNK):
            for _, payload in demux.feed(data) if demux is not None else [(None, data)]:
                await send(payload)

    async def input_() -> None:
        matcher = DetachMatcher(keys) if att.tty else None
        try:
            while True:
                msg = await ws.receive()
                if msg["type"] == "websocket.disconnect":
                    return
                data = msg.get("bytes") or (msg.get("text") or "").encode()
                if matcher is not None:
                    data, detach = matcher.feed(data)
                    if detach:
                        return
                if stdin and data:
                    m_writer.write(data)
                    await m_writer.drain()
        except (WebSocketDisconnect, ConnectionError, OSError):
            return

    out_task = asyncio.create_task(output())
    in_task = asyncio.create_task(input_())
    try:
        await asyncio.wait([out_task, in_task], return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (out_task, in_task):
            task.cancel()
        await asyncio.gather(out_task, in_task, return_exceptions=True)
        if att.close_stdin and m_writer.can_write_eof():
            with contextlib.suppress(OSError):
                m_writer.write_eof()
        m_writer.close()
        with contextlib.suppress(Exception):
            await ws.close()


def _log_chunk(att: AttachSession, is_err: bool, data: bytes) -> bytes:
    """A replayed log record as the attach stream carries it: raw with a TTY, framed without."""
    return data if att.tty else frame(STDERR if is_err else STDOUT, data)


def register(routes: HijackRoutes, backends: Backends) -> None:
    async def attach(req: HijackRequest, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await handle_attach(backends.containers, req, reader, writer)

    routes.add("POST", r"^/containers/(?P<name>[^/]+)/attach$", attach, plain=True)


async def handle_attach(svc: ContainerBackend, req: HijackRequest, reader: asyncio.StreamReader,
                        writer: asyncio.StreamWriter) -> None:
    stdin, stdout, stderr = req.flag("stdin"), req.flag("stdout"), req.flag("stderr")
    try:
        att = svc.attach(req.params["name"], stdin=stdin, stdout=stdout, stderr=stderr)
        keys = parse_keys(req.arg("detachKeys") or DEFAULT_DETACH_KEYS)
    except DaemonError as e:
        await send_error(writer, e.status, e.message)
        return
    await send_stream_start(writer, req, stream_content_type(att.tty, req.version))
    if req.flag("logs"):
        async for is_err, data in att.replay():
            writer.write(_log_chunk(att, is_err, data))
            await writer.drain()
    if not req.flag("stream"):
        await close_gracefully(writer, reader)
        return
    try:
        m_reader, m_writer = await att.connect()
    except (DaemonError, OSError, ConnectionError) as e:
        log.debug("attach to %s ended before start: %s", att.id, e)
        await close_gracefully(writer, reader)
        return
    matcher = DetachMatcher(keys) if att.tty else None
    close_stdin = att.close_stdin  # the engine's StdinOnce rule
    in_task = asyncio.create_task(_pump_stdin(reader, m_writer, stdin, matcher, close_stdin))
    out_task = asyncio.create_task(relay(m_reader, writer, chunk=_CHUNK))
    try:
        await asyncio.wait([out_task, in_task], return_when=asyncio.FIRST_COMPLETED)
    finally:
        out_task.cancel()
        in_task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await in_task
        if close_stdin:
            # However the client went (half-close, reset, killed mid-upload), StdinOnce means
            # its stdin ends with it: `yes | docker run -i` killed must not leave cat waiting.
            # Input still queued for a container that stopped reading is dropped (abort: the
            # monitor then closes the container's stdin); a clean EOF goes after what is queued.
            try:
                if m_writer.can_write_eof():
                    m_writer.write_eof()
                await asyncio.wait_for(m_writer.drain(), _STDIN_FLUSH_TIMEOUT)
            except (TimeoutError, ConnectionError, OSError):
                m_writer.transport.abort()
        m_writer.close()
        await close_gracefully(writer, reader)


async def _pump_stdin(src: asyncio.StreamReader, dst: asyncio.StreamWriter, stdin: bool,
                      matcher: DetachMatcher | None, close_stdin: bool) -> None:
    """Client -> container stdin. Returns when the session must end: detach keys (TTY
    only), the client's half-close (unless close_stdin: then it becomes the container's EOF
    and the output goes on), or a broken connection."""
    try:
        while data := await src.read(_CHUNK):
            if matcher is not None:
                data, detach = matcher.feed(data)
                if detach:
                    return
            if stdin and data:
                dst.write(data)
                await dst.drain()
        if stdin and not close_stdin:
            return
        if close_stdin and dst.can_write_eof():
            dst.write_eof()
    except (ConnectionError, OSError):
        return
    # Keep the task alive so the caller's cancel() is what ends it, not a close race.
    await asyncio.Event().wait()
