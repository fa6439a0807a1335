#!/usr/bin/env python3
"""The ceiling under bench_http.py: a stand-in server that answers every request with canned bytes.

No HTTP parsing beyond finding the end of each request head, no framework: what is left is the
event loop, the socket syscalls and the client itself. Run it on a unix socket and point
bench_http.py at it (every request gets dockerd's `/_ping` answer, so the bench's reader is happy
whatever the path):

    python bench/http_standin.py --loop asyncio unix:///tmp/x/standin.sock &
    python bench/bench_http.py --host unix:///tmp/x/standin.sock --compare unix:///tmp/refd/docker.sock

`--loop uvloop` needs uvloop installed. The figures say how far the daemon is from what one Python
event loop can do at all, and how much of the bench's rate the clients themselves cost.

`--server pydockerd` puts the daemon's HTTP protocol (uvicorn's, as api/hijack.py
makes it, served by api/server.py) in front of an ASGI app that answers `[]` with the headers of a
JSON answer at once: the floor of a request through the protocol, without FastAPI and the
routes. Run it from the checkout to measure (it imports `api` from the current directory).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import urllib.parse

_BODY = b"OK"
_HEAD = (b"HTTP/1.1 200 OK\r\nApi-Version: 1.50\r\nBuilder-Version: 1\r\n"
         b"Cache-Control: no-cache, no-store, must-revalidate\r\nContent-Length: 2\r\n"
         b"Content-Type: text/plain; charset=utf-8\r\nDate: Sat, 05 Dec 2026 13:00:00 GMT\r\n"
         b"Docker-Experimental: false\r\nOstype: linux\r\nPragma: no-cache\r\nServer: standin\r\n"
         b"Swarm: inactive\r\n\r\n")
_GET = _HEAD + _BODY


class _Canned(asyncio.Protocol):
    """Answers each complete request head in the input; a HEAD gets the same head without body."""

    def __init__(self) -> None:
        self._buf = b""
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]  # uvloop's is no asyncio.Transport

    def data_received(self, data: bytes) -> None:
        buf = self._buf + data if self._buf else data
        out = []
        start = 0
        while True:
            end = buf.find(b"\r\n\r\n", start)
            if end < 0:
                break
            out.append(_HEAD if buf.startswith(b"HEAD ", start) else _GET)
            start = end + 4
        self._buf = buf[start:]
        if out and self._transport is not None:
            self._transport.write(out[0] if len(out) == 1 else b"".join(out))


async def _serve(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    server = await asyncio.get_running_loop().create_unix_server(_Canned, path)
    print(f"standin listening on unix://{path}", flush=True)
    try:
        await server.serve_forever()
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


_ASGI_START = {"type": "http.response.start", "status": 200,
               "headers": [(b"content-length", b"2"), (b"content-type", b"application/json"),
                           (b"api-version", b"1.50"), (b"docker-experimental", b"false"), (b"ostype", b"linux"),
                           (b"server", b"standin")],
               "pydockerd.body_follows": True}
_ASGI_BODY = {"type": "http.response.body", "body": b"[]"}


async def _asgi(scope: dict, receive: object, send: object) -> None:
    await send(_ASGI_START)  # type: ignore[operator]
    await send(_ASGI_BODY)  # type: ignore[operator]


async def _serve_pydockerd(address: str) -> None:
    sys.path.insert(0, os.getcwd())
    from api.hijack import HijackRoutes
    from api.server import open_listeners, serve

    listeners = open_listeners([address], None, socket_group="")
    print(f"standin (pydockerd protocol) listening on {address}", flush=True)
    await serve(_asgi, listeners, HijackRoutes())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--loop", choices=["asyncio", "uvloop"], default="asyncio")
    ap.add_argument("--server", choices=["canned", "pydockerd"], default="canned",
                    help="canned bytes (default), or the daemon's protocol with a constant ASGI app")
    ap.add_argument("address", help="unix:///path to listen on")
    args = ap.parse_args(argv)
    u = urllib.parse.urlparse(args.address)
    if u.scheme != "unix" or not u.path:
        ap.error("only unix:///path addresses")
    if args.loop == "uvloop":
        import uvloop

        runner = uvloop.run
    else:
        runner = asyncio.run
    with contextlib.suppress(KeyboardInterrupt):
        runner(_serve(u.path) if args.server == "canned" else _serve_pydockerd(args.address))
    return 0


if __name__ == "__main__":
    sys.exit(main())
