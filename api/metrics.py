"""HTTP side of the metrics: the middleware that times every API request by route, and the
`--metrics-addr` listener that serves the Prometheus text at /metrics."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import Awaitable, Callable, Generator
from typing import Any

import uvicorn

from api.backends.metrics import RequestObserver
from api.server import parse_host

log = logging.getLogger(__name__)


class RequestMetrics:
    """ASGI middleware: one observation per HTTP request, labelled with the route's template
    (`/containers/{name}/start`, not the id) so that label values stay few. Hijacked
    attach/exec sessions do not pass through the ASGI app and are not counted."""

    def __init__(self, app: Any, observer: RequestObserver) -> None:
        self.app = app
        self.observer = observer

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.monotonic()
        status = 500

        async def send_status(message: dict) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = scope.get("route")
            # Starlette puts the matched route in the scope; no match is one label, not one per path.
            template = getattr(route, "path", None) or "unmatched"
            self.observer.observe_request(scope.get("method", ""), template, status, time.monotonic() - start)


class MetricsServer:
    """The `--metrics-addr` listener: GET /metrics, nothing else."""

    def __init__(self, sock: socket.socket, url: str) -> None:
        self.sock = sock
        self.url = url
        self._server: _QuietServer | None = None
        self._task: asyncio.Task[None] | None = None

    @classmethod
    def bind(cls, address: str) -> MetricsServer:
        """Binds now (OSError if the address is taken), so a start can fail before anything runs."""
        listener = parse_host(f"tcp://{address}")
        assert listener.host is not None and listener.port is not None
        family, socktype, proto, _, sockaddr = socket.getaddrinfo(
            listener.host, listener.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
        sock = socket.socket(family, socktype, proto)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(sockaddr)
            sock.listen(128)
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        host, port = sock.getsockname()[:2]
        return cls(sock, f"http://{host}:{port}/metrics")

    def start(self, scrape: Callable[[], Awaitable[bytes]]) -> None:
        # Imported here, not with the module: prometheus_client costs ~5 MiB, which only a daemon
        # with --metrics-addr pays (api.app imports this module for the middleware).
        from prometheus_client import CONTENT_TYPE_LATEST

        async def app(scope: dict, receive: Callable, send: Callable) -> None:
            if scope["type"] != "http":
                return
            if scope["path"] != "/metrics" or scope["method"] not in ("GET", "HEAD"):
                await _reply(send, 404, b"404 page not found\n", "text/plain; charset=utf-8")
                return
            try:
                body = await scrape()
            except Exception:
                log.exception("metrics scrape failed")
                await _reply(send, 500, b"metrics scrape failed\n", "text/plain; charset=utf-8")
                return
            await _reply(send, 200, b"" if scope["method"] == "HEAD" else body, CONTENT_TYPE_LATEST)

        config = uvicorn.Config(app, lifespan="off", log_config=None, access_log=False, server_header=False,
                                timeout_graceful_shutdown=1)
        self._server = _QuietServer(config)
        self._task = asyncio.create_task(self._server.serve(sockets=[self.sock]), name="metrics")
        log.info("metrics listen on %s", self.url)

    async def stop(self) -> None:
        if self._server is not None and self._task is not None:
            self._server.should_exit = True
            with contextlib.suppress(Exception):
                await self._task
        self.sock.close()


async def _reply(send: Callable, status: int, body: bytes, content_type: str) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", content_type.encode()), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


class _QuietServer(uvicorn.Server):
    """Signals stay with the daemon."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield
