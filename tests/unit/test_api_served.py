"""The whole HTTP path through the real server and protocol (api/hijack.py, uvicorn's cycle,
EngineAPI): pipelined keep-alive requests, HEAD, a streamed answer, a body split across reads,
a refused version and Connection: close, each answered in order with the right framing."""

from __future__ import annotations

import asyncio
import socket
import time
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from api.app import add_error_handlers
from api.hijack import HijackRoutes
from api.params import json_body
from api.responses import JSONResponse
from api.routing import RouteIndex
from api.server import open_listeners
from api.stack import EngineAPI
from api.versioning import VersionPrefixMiddleware
from tests.unit.test_api_hijack import ServerThread


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
