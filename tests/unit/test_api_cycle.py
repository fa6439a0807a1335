"""api/cycle.py: the cycle writes what uvicorn's RequestResponseCycle writes (same bytes, same errors,
same end of response), in one write when the body follows the head at once."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from typing import Any

import pytest
from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse
from uvicorn.protocols.http.flow_control import FlowControl
from uvicorn.protocols.http.httptools_impl import RequestResponseCycle

from api.app import add_error_handlers
from api.cycle import BODY_FOLLOWS, COALESCE_MAX, Cycle, start
from api.hijack import HijackRoutes
from api.params import json_body
from api.responses import JSONResponse
from api.routing import RouteIndex
from api.server import open_listeners
from api.stack import EngineAPI
from api.versioning import VersionPrefixMiddleware
from tests.unit.test_api_hijack import ServerThread


class _Transport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: Any) -> None:
        self.writes.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


def _cycle(cls: type[RequestResponseCycle], method: str = "GET", keep_alive: bool = True
           ) -> tuple[RequestResponseCycle, _Transport, list[int]]:
    transport = _Transport()
    done: list[int] = []
    cycle = cls(scope={"type": "http", "method": method, "http_version": "1.1", "path": "/x",  # type: ignore[arg-type]
                       "query_string": b"", "client": None},
                transport=transport, flow=FlowControl(transport), logger=logging.getLogger("test"),
                access_logger=logging.getLogger("test"),
                access_log=False, default_headers=[(b"date", b"Sat, 05 Dec 2026 13:00:00 GMT")],
                message_event=asyncio.Event(), expect_100_continue=False, keep_alive=keep_alive,
                on_response=lambda: done.append(1))
    return cycle, transport, done


def _start(status: int = 200, headers: list[tuple[bytes, bytes]] | None = None, follows: bool = True
           ) -> dict[str, Any]:
    message = {"type": "http.response.start", "status": status, "headers": headers or []}
    if follows:
        message[BODY_FOLLOWS] = True  # uvicorn's cycle ignores it
    return message


def _body(body: bytes, more: bool = False) -> dict[str, Any]:
    return {"type": "http.response.body", "body": body, "more_body": more}


JSON = [(b"content-length", b"2"), (b"content-type", b"application/json"), (b"Api-Version", b"1.50")]
CASES: list[tuple[str, str, bool, list[dict[str, Any]]]] = [
    ("json", "GET", True, [_start(200, JSON), _body(b"[]")]),
    ("head", "HEAD", True, [_start(200, JSON), _body(b"[]")]),
    ("closing", "GET", False, [_start(404, JSON), _body(b"{}")]),
    ("in parts", "GET", True, [_start(200, [(b"content-length", b"4")]), _body(b"ab", True), _body(b"cd")]),
    ("chunked", "GET", True, [_start(200, [(b"content-type", b"text/plain")]), _body(b"ab", True), _body(b"")]),
    ("empty 204", "GET", True, [_start(204), _body(b"")]),
    ("zero length", "GET", True, [_start(200, [(b"content-length", b"0")]), _body(b"")]),
    ("connection close", "GET", True, [_start(200, [(b"content-length", b"1"), (b"connection", b"close")]),
                                       _body(b"x")]),
    ("too long", "GET", True, [_start(200, [(b"content-length", b"1")]), _body(b"xy")]),
    ("too short", "GET", True, [_start(200, [(b"content-length", b"3")]), _body(b"xy")]),
    ("bad name", "GET", True, [_start(200, [(b"content-length", b"1"), (b"a b", b"v")]), _body(b"x")]),
    ("bad value", "GET", True, [_start(200, [(b"content-length", b"1"), (b"a", b"v\r\nx: y")]), _body(b"x")]),
    ("body first", "GET", True, [_body(b"x")]),
    ("start twice", "GET", True, [_start(200, [(b"content-length", b"1")]), _start(200)]),
    ("after the end", "GET", True, [_start(200, [(b"content-length", b"1")]), _body(b"x"), _body(b"y")]),
    ("big", "GET", True, [_start(200, [(b"content-length", b"%d" % (COALESCE_MAX + 1))]),
                          _body(b"x" * (COALESCE_MAX + 1))]),
]


async def _play(cls: type[RequestResponseCycle], method: str, keep_alive: bool,
                messages: list[dict[str, Any]]) -> tuple[bytes, str, bool, bool, int, int]:
    cycle, transport, done = _cycle(cls, method, keep_alive)
    error = ""
    for message in messages:
        try:
            await cycle.send(message)
        except RuntimeError as e:
            error = str(e)
            break
    await asyncio.sleep(0)  # a head held back goes out at the loop's next turn
    return (b"".join(transport.writes), error, cycle.response_complete, transport.closed, len(done),
            len(transport.writes))


@pytest.mark.parametrize("name,method,keep_alive,messages", CASES, ids=[c[0] for c in CASES])
def test_same_answer_as_uvicorn(name: str, method: str, keep_alive: bool, messages: list[dict[str, Any]]) -> None:
    ours = asyncio.run(_play(Cycle, method, keep_alive, messages))
    theirs = asyncio.run(_play(RequestResponseCycle, method, keep_alive, messages))
    assert ours[:5] == theirs[:5]


def test_small_answer_is_one_write() -> None:
    written, error, complete, _, _, writes = asyncio.run(_play(Cycle, "GET", True, CASES[0][3]))
    assert not error and complete and writes == 1 and written.endswith(b"\r\n\r\n[]")


def test_head_without_the_promise_is_written_at_once() -> None:
    async def run() -> list[bytes]:
        cycle, transport, _ = _cycle(Cycle)
        await cycle.send(_start(200, JSON, follows=False))
        return list(transport.writes)

    writes = asyncio.run(run())
    assert len(writes) == 1 and writes[0].startswith(b"HTTP/1.1 200 OK\r\n")


def test_broken_promise_head_goes_out_when_the_app_returns(caplog: pytest.LogCaptureFixture) -> None:
    async def run() -> list[bytes]:
        cycle, transport, _ = _cycle(Cycle)

        async def app(scope: Any, receive: Any, send: Any) -> None:
            await send(_start(200, JSON))

        tasks: set[asyncio.Task[None]] = set()
        start(asyncio.get_running_loop(), cycle, app, tasks)
        await asyncio.gather(*tasks)
        return transport.writes

    writes = asyncio.run(run())
    assert len(writes) == 1 and writes[0].startswith(b"HTTP/1.1 200 OK\r\n")
    assert "without completing response" in caplog.text


def test_task_leaves_the_set_when_done() -> None:
    async def run() -> tuple[int, int]:
        cycle, _, _ = _cycle(Cycle)
        tasks: set[asyncio.Task[None]] = set()

        async def app(scope: Any, receive: Any, send: Any) -> None:
            await send(_start(200, JSON))
            await send(_body(b"[]"))

        start(asyncio.get_running_loop(), cycle, app, tasks)
        during = len(tasks)
        task = next(iter(tasks))
        await task
        return during, len(tasks)

    assert asyncio.run(run()) == (1, 0)


# --------------------------------------------------------------------------- through the real server


def _served_app() -> Any:
    router = APIRouter()

    @router.get("/n/{i}")
    async def number(i: str, request: Request) -> JSONResponse:
        return JSONResponse({"i": i})

    @router.get("/stream")
    async def stream(request: Request) -> StreamingResponse:
        async def parts() -> Any:
            yield b"a"
            await asyncio.sleep(0.01)
            yield b"b"

        return StreamingResponse(parts(), media_type="text/plain")

    @router.post("/echo")
    async def echo(request: Request) -> JSONResponse:
        return JSONResponse(await json_body(request))

    app = EngineAPI(routes=[RouteIndex([router])])
    add_error_handlers(app)
    return VersionPrefixMiddleware(app)


def _responses(raw: bytes, methods: list[str]) -> list[tuple[int, bytes]]:
    """Split a connection's bytes into (status, body) per response (Content-Length or chunked)."""
    out = []
    for method in methods:
        head, _, raw = raw.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        headers = dict(line.lower().split(b": ", 1) for line in lines[1:])
        status = int(lines[0].split()[1])
        if method == "HEAD":
            body = b""
        elif b"content-length" in headers:
            n = int(headers[b"content-length"])
            body, raw = raw[:n], raw[n:]
        else:
            body = b""
            while True:
                size_line, _, raw = raw.partition(b"\r\n")
                size = int(size_line, 16)
                chunk, raw = raw[:size], raw[size + 2:]
                if not size:
                    break
                body += chunk
        assert headers[b"api-version"] == b"1.50"
        out.append((status, body))
    assert raw == b""
    return out


def test_pipelined_keepalive_and_close_through_the_server(tmp_path: Any) -> None:
    sock = str(tmp_path / "d.sock")
    listeners = open_listeners([f"unix://{sock}"], None, socket_group="")
    server = ServerThread(_served_app(), HijackRoutes(), listeners).start()
    try:
        requests = (b"GET /v1.41/n/1 HTTP/1.1\r\nHost: x\r\n\r\n"
                    b"GET /n/2 HTTP/1.1\r\nHost: x\r\n\r\n"
                    b"HEAD /n/3 HTTP/1.1\r\nHost: x\r\n\r\n"
                    b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n"
                    b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 7\r\n\r\n{\"a\":")
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            # No half-close: uvicorn drops what is still pipelined when the client's EOF comes.
            s.settimeout(5)
            s.connect(sock)
            s.sendall(requests)
            time.sleep(0.1)
            s.sendall(b"1}GET /v1.99/n/5 HTTP/1.1\r\nHost: x\r\n\r\n"
                      b"GET /n/6 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            raw = b""
            while chunk := s.recv(65536):  # the server closes after the last
                raw += chunk
        assert _responses(raw, ["GET", "GET", "HEAD", "GET", "POST", "GET", "GET"]) == [
            (200, b'{"i":"1"}'), (200, b'{"i":"2"}'), (405, b""), (200, b"ab"), (200, b'{"a":1}'),
            (400, b'{"message": "client version 1.99 is too new. Maximum supported API version is 1.50"}\n'),
            (200, b'{"i":"6"}')]
    finally:
        server.stop()
