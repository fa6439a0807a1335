"""uvicorn's request cycle with less work per request (api/hijack.py's protocol starts it).

Three costs of uvicorn's RequestResponseCycle that a small answer pays in full:

- `send` checks every response header with two regular expressions (a name, a value), 14 searches
  for the 7 headers of a JSON answer. Both are classes of single characters, so a search over all
  the names joined (and one over all the values) finds exactly what the 14 searches find: one
  search each here. What is sent, and what is refused, is unchanged.
- the head and the body are two writes, two send() system calls, and the client wakes up for
  each. A response with a Content-Length of at most COALESCE_MAX holds its head back until its
  body comes, and both go in one write. Only when the start message promises that its body follows
  at once (BODY_FOLLOWS: api/responses.py's JSONResponse sends the two messages back to back,
  waiting on nothing in between); any other head is written as it comes. Should a promise be
  broken, the head goes out with the next message or when the app returns.
- the request's task leaves the server's task set through a done callback, which the event loop
  runs on a turn of its own; here the task takes itself out as it ends.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import (
    HEADER_RE,
    HEADER_VALUE_RE,
    STATUS_LINE,
    RequestResponseCycle,
)
from uvicorn.protocols.utils import get_client_addr, get_path_with_query_string

COALESCE_MAX = 1 << 16
# In an http.response.start message: the whole body follows in the very next message, sent
# without waiting on anything (servers ignore keys they do not know).
BODY_FOLLOWS = "pydockerd.body_follows"


class Cycle(RequestResponseCycle):
    _head: bytes | None = None
    # Set by start(): the request's task and the server's set it leaves as it ends.
    task: asyncio.Task[None] | None = None
    tasks: set[asyncio.Task[None]]

    async def send(self, message: Any) -> None:
        if self._head is not None:
            if (message["type"] == "http.response.body" and not self.disconnected
                    and not self.flow.write_paused):
                self._send_body(message)
                return
            self._flush_head()
        if self.response_started or self.disconnected or self.flow.write_paused:
            await super().send(message)
            return
        if message["type"] != "http.response.start":
            raise RuntimeError(f"Expected ASGI message 'http.response.start', but got '{message['type']}'.")
        self._start(message)

    async def run_asgi(self, app: Any) -> None:
        """RequestResponseCycle.run_asgi (uvicorn 0.54), a head whose promised body never came written
        before the end of the response is judged."""
        try:
            result = await app(self.scope, self.receive, self.send)
        except BaseException as exc:
            self._flush_head()
            self.logger.error("Exception in ASGI application\n", exc_info=exc)
            if not self.response_started:
                await self.send_500_response()
            else:
                self.transport.close()
        else:
            self._flush_head()
            if result is not None:
                self.logger.error("ASGI callable should return None, but returned '%s'.", result)
                self.transport.close()
            elif not self.response_started and not self.disconnected:
                self.logger.error("ASGI callable returned without starting response.")
                await self.send_500_response()
            elif not self.response_complete and not self.disconnected:
                self.logger.error("ASGI callable returned without completing response.")
                self.transport.close()
        finally:
            self.on_response = _nothing
            if self.task is not None:
                # Not asyncio.current_task(): it asks getpid() (fork check), a system call per request.
                self.tasks.discard(self.task)

    def _start(self, message: Any) -> None:
        """RequestResponseCycle.send for the response's head (uvicorn 0.54), headers checked at once."""
        self.response_started = True
        self.waiting_for_100_continue = False

        status_code = message["status"]
        headers = self.default_headers + list(message.get("headers", []))

        if self.access_log:
            self.access_logger.info(
                '%s - "%s %s HTTP/%s" %d',
                get_client_addr(self.scope),
                self.scope["method"],
                get_path_with_query_string(self.scope),
                self.scope["http_version"],
                status_code,
            )

        if HEADER_RE.search(b"".join([name for name, _ in headers])):
            raise RuntimeError("Invalid HTTP header name.")
        if HEADER_VALUE_RE.search(b"".join([value for _, value in headers])):
            raise RuntimeError("Invalid HTTP header value.")

        content = [STATUS_LINE[status_code]]
        has_connection_close = False
        for name, value in headers:
            name = name.lower()
            if name == b"content-length" and self.chunked_encoding is None:
                self.expected_content_length = int(value.decode())
                self.chunked_encoding = False
            elif name == b"transfer-encoding" and value.lower() == b"chunked":
                self.expected_content_length = 0
                self.chunked_encoding = True
            elif name == b"connection":
                connection = [token.lower().strip() for token in value.split(b",")]
                if b"close" in connection:
                    self.keep_alive = False
                    has_connection_close = True
            content.extend([name, b": ", value, b"\r\n"])

        if not self.keep_alive and not has_connection_close:
            content.append(b"connection: close\r\n")

        if self.chunked_encoding is None and self.scope["method"] != "HEAD" and status_code not in (204, 304):
            # Neither content-length nor transfer-encoding specified
            self.chunked_encoding = True
            content.append(b"transfer-encoding: chunked\r\n")

        content.append(b"\r\n")
        head = b"".join(content)
        if (self.chunked_encoding is False and 0 < self.expected_content_length <= COALESCE_MAX
                and message.get(BODY_FOLLOWS)):
            self._head = head  # written with the body (_send_body)
        else:
            self.transport.write(head)

    def _flush_head(self) -> None:
        head = self._head
        if head is not None:
            self._head = None
            if not self.disconnected:
                self.transport.write(head)

    def _send_body(self, message: Any) -> None:
        """RequestResponseCycle.send for a whole body given at once after a held-back head."""
        head = self._head
        self._head = None
        body = message.get("body", b"")
        more_body = message.get("more_body", False)
        if self.scope["method"] == "HEAD":
            self.expected_content_length = 0
            self.transport.write(head)
        else:
            num_bytes = len(body)
            if num_bytes > self.expected_content_length:
                self.transport.write(head)
                raise RuntimeError("Response content longer than Content-Length")
            self.expected_content_length -= num_bytes
            self.transport.write(head + body)
        if not more_body:
            if self.expected_content_length != 0:
                raise RuntimeError("Response content shorter than Content-Length")
            self.response_complete = True
            self.message_event.set()
            if not self.keep_alive:
                self.transport.close()
            self.on_response()


def start(loop: asyncio.AbstractEventLoop, cycle: Cycle, app: Any, tasks: set[asyncio.Task[None]]) -> None:
    """The request's task, in the server's task set (which shutdown waits on) until it ends."""
    task = loop.create_task(cycle.run_asgi(app))
    cycle.task = task
    cycle.tasks = tasks
    tasks.add(task)


def _nothing() -> None:
    pass
