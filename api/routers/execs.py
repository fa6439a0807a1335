"""docker exec: /containers/{id}/exec, /exec/{id}/start (hijacked), /exec/{id}/json, /exec/{id}/resize."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse

from api.backends import Backends
from api.backends.execs import ExecBackend
from api.detach import DEFAULT_DETACH_KEYS, DetachMatcher, parse_keys
from api.hijack import (
    HijackRequest,
    HijackRoutes,
    close_gracefully,
    send_empty_ok,
    send_error,
    send_stream_start,
    send_upgrade,
)
from api.params import json_body, qint_required
from api.responses import JSONResponse
from api.streams import STDERR, STDOUT, frame, relay, stream_content_type
from api.versioning import request_version
from daemon.errors import DaemonError, InvalidParameter
from daemon.util.gojson import fold_keys

if TYPE_CHECKING:
    from daemon.execs.service import ExecInstance

log = logging.getLogger("pydockerd.exec")
router = APIRouter()
_CHUNK = 1 << 16


def _svc(request: Request) -> ExecBackend:
    return request.app.state.backends.execs


@router.post("/containers/{name}/exec", status_code=201)
async def create(name: str, request: Request) -> JSONResponse:
    body = await json_body(request, allow_empty=False)
    if isinstance(body, dict) and (keys := fold_keys(body, ("DetachKeys",)).get("DetachKeys")):
        parse_keys(keys)
    return JSONResponse({"Id": _svc(request).create(name, body)}, status_code=201)


@router.get("/exec/{exec_id}/json")
async def inspect(exec_id: str, request: Request) -> JSONResponse:
    return JSONResponse(_svc(request).get(exec_id).inspect())


@router.post("/exec/{exec_id}/resize")
async def resize(exec_id: str, request: Request) -> Response:
    await _svc(request).resize(exec_id, qint_required(request, "h"), qint_required(request, "w"))
    return Response(status_code=200)


@router.post("/exec/{exec_id}/start")
async def start_plain(exec_id: str, request: Request) -> Response:
    """A start without the upgrade headers: detached (`docker exec -d`, docker-py's
    detach=True) answers at once; otherwise (curl, dockerode) the output is the response body,
    framed as on a hijacked connection, as dockerd does. No stdin without a hijack."""
    body = await json_body(request) or {}
    if not isinstance(body, dict):
        raise InvalidParameter("invalid JSON: expected an object")
    ex = await _svc(request).start(exec_id, body.get("Tty"))
    if body.get("Detach"):
        _discard_output(ex)
        return Response(status_code=200)
    raw = bool(body.get("Tty"))
    return StreamingResponse(_output(ex, raw), media_type=stream_content_type(raw, request_version(request)))


async def _output(ex: ExecInstance, raw: bool) -> AsyncIterator[bytes]:
    proc = ex.process
    if proc is None:
        return
    queue: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=8)  # bounded: back-pressure

    async def pump(src: asyncio.StreamReader | None, stream: int | None) -> None:
        try:
            while src is not None and (data := await src.read(_CHUNK)):
                await queue.put(data if stream is None else frame(stream, data))
        except OSError:
            pass  # EIO from a pty whose command is gone: the end of its output
        finally:
            await queue.put(None)

    if proc.master is not None:
        reader, _ = await proc.tty_streams()
        sources = [pump(reader, None if raw else STDOUT)]
    else:
        if proc.proc.stdin is not None:
            proc.proc.stdin.close()  # nobody can write to it: EOF, as dockerd without a hijack
        sources = [pump(proc.proc.stdout, STDOUT), pump(proc.proc.stderr, STDERR)]
    tasks = [asyncio.create_task(s) for s in sources]
    complete = False
    try:
        ended = 0
        while ended < len(tasks):
            item = await queue.get()
            if item is None:
                ended += 1
            else:
                yield item
        await ex.done.wait()  # the client may ask for the exit code as soon as the body ends
        complete = True
    finally:
        for t in tasks:
            t.cancel()
        if not complete:
            _discard_output(ex)  # the client left: the command must not block on its output
        elif proc.master is not None:
            proc.close()


def _discard_output(ex: ExecInstance) -> None:
    """A detached exec's output goes nowhere, but its pipes must be drained or it blocks."""
    proc = ex.process
    if proc is None:
        return

    async def drain(stream: asyncio.StreamReader | None) -> None:
        if stream is not None:
            with contextlib.suppress(Exception):
                while await stream.read(_CHUNK):
                    pass

    if proc.master is not None:
        async def tty() -> None:
            reader, writer = await proc.tty_streams()
            await drain(reader)
            writer.close()
            proc.close()

        asyncio.create_task(tty())
    else:
        if proc.proc.stdin is not None:
            proc.proc.stdin.close()
        asyncio.create_task(drain(proc.proc.stdout))
        asyncio.create_task(drain(proc.proc.stderr))


def register(routes: HijackRoutes, backends: Backends) -> None:
    async def start(req: HijackRequest, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await handle_start(backends.execs, req, reader, writer)

    routes.add("POST", r"^/exec/(?P<id>[^/]+)/start$", start, plain=True)


async def handle_start(svc: ExecBackend, req: HijackRequest, reader: asyncio.StreamReader,
                       writer: asyncio.StreamWriter) -> None:
    try:
        body = req.json() or {}
        if not isinstance(body, dict):
            raise InvalidParameter("invalid JSON: expected an object")
        ex = svc.check_start(req.params["id"])
        keys = parse_keys(ex.detach_keys or DEFAULT_DETACH_KEYS)
        if body.get("Detach"):
            ex = await svc.start(ex.id, body.get("Tty"))
    except ValueError as e:
        await send_error(writer, 400, f"invalid JSON: {e}")
        return
    except DaemonError as e:
        await send_error(writer, e.status, e.message)
        return
    except OSError as e:
        await send_error(writer, 500, f"exec failed: {e}")
        return
    # As dockerd: the start request's Tty, not the exec's, says whether the output is framed
    # (docker-py's exec_start(tty=False) of an exec created with a TTY gets its terminal's
    # output as stdout frames).
    raw = bool(body.get("Tty"))
    if body.get("Detach"):
        _discard_output(ex)
        if req.upgrade:
            await send_upgrade(writer, stream_content_type(raw, req.version))
        else:
            await send_empty_ok(writer)
        await close_gracefully(writer, reader)
        return
    # The stream starts before the command, as with dockerd: output glued to the 101's header
    # block is lost to a client that reads the headers through a buffer (docker-py).
    await send_stream_start(writer, req, stream_content_type(raw, req.version))
    try:
        ex = await svc.start(ex.id, body.get("Tty"))
    except (DaemonError, OSError) as e:
        # After the upgrade, as dockerd: the error is the stream's text.
        message = e.message if isinstance(e, DaemonError) else f"exec failed: {e}"
        writer.write(message.encode() + b"\r\n")
        await close_gracefully(writer, reader)
        return
    proc = ex.process
    assert proc is not None
    detached = asyncio.Event()
    if proc.master is not None:
        out_reader, in_writer = await proc.tty_streams()
        outputs = [relay(out_reader, writer, None if raw else STDOUT)]
    else:
        in_writer = proc.proc.stdin  # type: ignore[assignment]
        outputs = [relay(proc.proc.stdout, writer, STDOUT), relay(proc.proc.stderr, writer, STDERR)]
    in_task = asyncio.create_task(_pump_in(reader, in_writer, ex, keys, detached))
    out_task = asyncio.gather(*outputs)
    try:
        waiter = asyncio.create_task(detached.wait())
        await asyncio.wait([out_task, waiter], return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        if not detached.is_set():
            # The CLI asks for the exit code as soon as the stream ends: record it first.
            await ex.done.wait()
    finally:
        in_task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await in_task
        if detached.is_set():
            out_task.cancel()
            # A cancelled gather ends with CancelledError as its exception: retrieve it, or asyncio
            # logs "exception was never retrieved" with a traceback for every detach.
            out_task.add_done_callback(lambda f: f.cancelled() or f.exception())
            if proc.master is not None:
                # The command runs on: keep draining its terminal (output after a detach goes
                # nowhere, as with dockerd) so it never blocks, and release it at its end.
                _spawn(_drain_tty(out_reader, in_writer, proc))
        elif proc.master is not None:
            proc.close()
        await close_gracefully(writer, reader)


_background: set[asyncio.Task[None]] = set()


def _spawn(coro: Any) -> None:
    task = asyncio.create_task(coro)
    _background.add(task)  # the loop keeps only weak references to tasks
    task.add_done_callback(_background.discard)


async def _drain_tty(src: asyncio.StreamReader, sink: asyncio.StreamWriter, proc: Any) -> None:
    with contextlib.suppress(Exception):
        while await src.read(_CHUNK):
            pass
    sink.close()
    proc.close()


async def _pump_in(src: asyncio.StreamReader, dst: asyncio.StreamWriter | None, ex: ExecInstance, keys: bytes,
                   detached: asyncio.Event) -> None:
    matcher = DetachMatcher(keys) if ex.tty else None
    try:
        while data := await src.read(_CHUNK):
            if matcher is not None:
                data, detach = matcher.feed(data)
                if detach:
                    detached.set()
                    return
            if dst is not None and ex.attach_stdin and data:
                dst.write(data)
                await dst.drain()
        if dst is not None and not ex.tty:
            dst.close()  # the client's half-close is the command's EOF
        elif ex.tty and ex.attach_stdin:
            # As dockerd: with a TTY the end of stdin ends the session (the command keeps
            # its terminal), like the detach keys.
            detached.set()
            return
    except (ConnectionError, OSError):
        pass
    await asyncio.Event().wait()
