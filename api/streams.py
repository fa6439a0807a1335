"""Stream formats of the Engine API: stdcopy frames and chunked JSON lines."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import struct
from collections.abc import AsyncIterable, AsyncIterator, Mapping
from typing import Any, TypeVar

from fastapi.responses import StreamingResponse

from daemon.errors import DaemonError

from .versioning import version_at_least

log = logging.getLogger(__name__)
T = TypeVar("T")

STDIN = 0
STDOUT = 1
STDERR = 2
# stdcopy.Systemerr: the CLI reports the payload as an error and stops reading.
SYSTEMERR = 3

RAW_STREAM = "application/vnd.docker.raw-stream"
MULTIPLEXED_STREAM = "application/vnd.docker.multiplexed-stream"

_HEADER = struct.Struct(">BxxxL")
HEADER_SIZE = _HEADER.size
MAX_FRAME = 0xFFFFFFFF


async def until_stopping(request: Any, items: AsyncIterable[T]) -> AsyncIterator[T]:
    """`items` until the daemon starts stopping. Responses that only end with a container or
    the client (wait, logs -f, events, stats) then end cleanly, as dockerd cuts them, instead of
    holding the shutdown for uvicorn's graceful timeout and being cancelled with a traceback.

    One waiter per stream, nothing per item (a task per item cost 9 µs, `docker logs` of a
    big log paid it on every line): the stop cancels the consuming task only while it waits
    for the next item; at any other moment the next round sees the flag.
    """
    stopping: asyncio.Event = request.app.state.backends.stopping
    it = aiter(items)
    task = asyncio.current_task()
    waiting = stopped = False

    def on_stop(f: asyncio.Future[Any]) -> None:
        nonlocal stopped
        if f.cancelled():
            return
        stopped = True
        if waiting and task is not None:
            task.cancel()

    waiter = asyncio.ensure_future(stopping.wait()) if stopping is not None else None
    if waiter is not None:
        waiter.add_done_callback(on_stop)
    try:
        while not stopped:
            waiting = True
            try:
                item = await anext(it)
            except StopAsyncIteration:
                return
            except asyncio.CancelledError:
                if stopped and task is not None and task.cancelling():
                    task.uncancel()
                    return
                raise
            finally:
                waiting = False
            yield item
    finally:
        if waiter is not None:
            waiter.cancel()
        if hasattr(it, "aclose"):
            with contextlib.suppress(Exception):
                await it.aclose()


def frame(stream: int, data: bytes) -> bytes:
    """One stdcopy frame: [stream, 0, 0, 0, len32be] + payload."""
    if not 0 <= stream <= 3:
        raise ValueError(f"invalid stdcopy stream id {stream}")
    if len(data) > MAX_FRAME:
        raise ValueError("stdcopy frame payload larger than 4 GiB")
    return _HEADER.pack(stream, len(data)) + data


def stream_content_type(tty: bool, api_version: str) -> str:
    """Content-Type of an attach/exec/logs stream as dockerd chooses it.

    Before 1.42 dockerd said raw-stream even for multiplexed data; clients of that era
    ignore the header, and clients from 1.42 on pass it on to their callers.
    """
    if tty or not version_at_least(api_version, "1.42"):
        return RAW_STREAM
    return MULTIPLEXED_STREAM


class Demuxer:
    """Incremental stdcopy parser: feed bytes as they arrive, get whole frames back."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        self._buf += data
        out: list[tuple[int, bytes]] = []
        pos = 0
        buf = self._buf
        while len(buf) - pos >= HEADER_SIZE:
            stream, size = _HEADER.unpack_from(buf, pos)
            if stream > 3:
                raise ValueError(f"invalid stdcopy stream id {stream}")
            end = pos + HEADER_SIZE + size
            if len(buf) < end:
                break
            out.append((stream, bytes(buf[pos + HEADER_SIZE : end])))
            pos = end
        del buf[:pos]
        return out

    @property
    def pending(self) -> int:
        """Bytes held back because their frame is not complete yet."""
        return len(self._buf)

    def close(self) -> None:
        """Call at end of stream: a partial frame left over means the stream was cut."""
        if self._buf:
            raise ValueError(f"stdcopy stream ended inside a frame ({len(self._buf)} bytes left)")


def demux_all(data: bytes) -> dict[int, bytes]:
    """Whole-buffer convenience for tests: stream id -> concatenated payload."""
    d = Demuxer()
    out: dict[int, bytearray] = {}
    for stream, payload in d.feed(data):
        out.setdefault(stream, bytearray()).extend(payload)
    d.close()
    return {k: bytes(v) for k, v in out.items()}


def json_line(obj: Any) -> bytes:
    """One JSON document plus newline, in the shape Go's json.Encoder writes.

    Go escapes <, > and & (and U+2028/9) in strings; the CLI does not care, but other
    clients compare output byte for byte with dockerd's. These characters can only
    occur inside JSON strings, so replacing them is safe.
    """
    text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
    text = (
        text.replace("<", "\\u003c")
        .replace(">", "\\u003e")
        .replace("&", "\\u0026")
        .replace("\u2028", "\\u2028")
        .replace("\u2029", "\\u2029")
    )
    return text.encode() + b"\n"


def error_line(message: str, code: int | None = None) -> bytes:
    """The in-stream error record for errors after a 200 stream has begun."""
    detail: dict[str, Any] = {"message": message}
    if code is not None:
        detail["code"] = code
    return json_line({"errorDetail": detail, "error": message})


async def _json_lines(items: AsyncIterable[Any], first: list[Any]) -> AsyncIterator[bytes]:
    try:
        for obj in first:
            yield json_line(obj)
        async for obj in items:
            yield json_line(obj)
    except DaemonError as exc:
        # Headers are out already: the only way left to report is in the stream.
        yield error_line(exc.message)
    except Exception as exc:  # noqa: BLE001 - anything else would cut the stream silently
        log.exception("error in JSON stream")
        yield error_line(str(exc) or type(exc).__name__)


def json_stream(
    items: AsyncIterable[Any],
    *,
    status_code: int = 200,
    headers: Mapping[str, str] | None = None,
) -> StreamingResponse:
    """Chunked `application/json` response, one object per line and per chunk.

    The headers go out at once (what /wait and /events clients need); an error raised
    by the iterator later becomes an `errorDetail` line.
    """
    return StreamingResponse(
        _json_lines(items, []),
        status_code=status_code,
        headers=dict(headers or {}),
        media_type="application/json",
    )


async def json_stream_first(
    items: AsyncIterable[Any],
    *,
    status_code: int = 200,
    headers: Mapping[str, str] | None = None,
    errors_in_stream: bool = False,
) -> StreamingResponse:
    """Like json_stream, but waits for the first object before answering.

    An error raised before the first object propagates to the caller and so becomes a
    normal `{"message"}` error response with its status code, as dockerd does for pulls
    that fail before any progress; with errors_in_stream it is the stream's only line
    instead (dockerd's load: docker-py raises ImageLoadError only for that form).
    """
    iterator = aiter(items)
    first: list[Any] = []
    try:
        first.append(await anext(iterator))
    except StopAsyncIteration:
        pass
    except DaemonError as exc:
        if not errors_in_stream:
            raise
        return StreamingResponse(iter([error_line(exc.message)]), status_code=status_code,
                                 headers=dict(headers or {}), media_type="application/json")
    return StreamingResponse(
        _json_lines(iterator, first),
        status_code=status_code,
        headers=dict(headers or {}),
        media_type="application/json",
    )


async def framed(chunks: AsyncIterable[tuple[int, bytes]]) -> AsyncIterator[bytes]:
    """(stream, data) pairs to stdcopy frames, for multiplexed logs responses."""
    async for stream, data in chunks:
        if data:
            yield frame(stream, data)


async def relay(src: asyncio.StreamReader | None, dst: asyncio.StreamWriter, stream: int | None = None,
                chunk: int = 1 << 16) -> None:
    """Copies a container's output to a hijacked client until EOF, with back-pressure; framed
    as `stream` when given. EIO from a pty master whose command is gone, or a client that
    left, end it like EOF."""
    if src is None:
        return
    try:
        while data := await src.read(chunk):
            dst.write(data if stream is None else frame(stream, data))
            await dst.drain()
    except (ConnectionError, OSError):
        pass
