"""Attach: what an attach session may do, and connecting it to the container's monitor.

The decisions are dockerd's: a paused container refuses attach; logs replay only the
streams asked for (stdout when neither is); with StdinOnce and no TTY the client's end of
stdin closes the container's stdin. An attach may come before the container starts (`docker
run` attaches first): it waits, and the start connects it before the command runs, so no
output is lost. The HTTP layer only carries the bytes.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

from daemon.containers.container import Container
from daemon.errors import Conflict
from runtime.client import Monitor

Streams = tuple[asyncio.StreamReader, asyncio.StreamWriter]
# (ref, follow, tail, since, until, stdout, stderr) -> (container, log records), as ContainerService.logs
LogReader = Callable[..., tuple[Container, AsyncIterator[list[dict]]]]


class Attachment:
    """One attach session, decided; `connect` and `replay` do the work when the caller is ready."""

    def __init__(self, c: Container, *, stdin: bool, stdout: bool, stderr: bool, read_logs: LogReader) -> None:
        if c.state["Paused"]:
            raise Conflict(f"container {c.id} is paused, unpause the container before attach")
        self.container = c
        self.stdin, self.stdout, self.stderr = stdin, stdout, stderr
        self._read_logs = read_logs

    @property
    def id(self) -> str:
        return self.container.id

    @property
    def tty(self) -> bool:
        return self.container.tty

    @property
    def close_stdin(self) -> bool:
        """As dockerd: the client's end of stdin closes the container's stdin only for StdinOnce
        without a TTY (and the session goes on until the container exits); otherwise it ends the
        session, and the container keeps its stdin (and pty) open."""
        return self.stdin and bool(self.container.config.get("StdinOnce")) and not self.tty

    async def replay(self) -> AsyncIterator[tuple[bool, bytes]]:
        """The log so far, as (is_stderr, data), for the streams this session asked for."""
        _, records = self._read_logs(self.id, follow=False, tail="all", since="", until="",
                                     stdout=self.stdout or not self.stderr, stderr=self.stderr)
        async for batch in records:
            for rec in batch:
                is_err = rec.get("stream") == "stderr"
                if (self.stderr if is_err else self.stdout):
                    yield is_err, rec.get("log", "").encode()

    async def connect(self, *, stdin: bool | None = None) -> Streams:
        """The monitor's attach socket; `stdin=False` leaves stdin out (a plain HTTP attach has none)."""
        return await connect(self.container, self.stdin if stdin is None else stdin, self.stdout, self.stderr)


async def connect(c: Container, stdin: bool, stdout: bool, stderr: bool) -> Streams:
    """Connects to the container's monitor now, or at its next start."""
    if c.running and c.monitor is not None:
        return await c.monitor.attach(stdin, stdout, stderr)
    fut: asyncio.Future = asyncio.get_running_loop().create_future()
    entry = (fut, stdin, stdout, stderr)
    c.pending_attaches.append(entry)
    try:
        return await fut
    finally:
        if entry in c.pending_attaches:
            c.pending_attaches.remove(entry)


async def connect_pending(c: Container, monitor: Monitor) -> None:
    """Start: the attaches that came first, connected before the command runs."""
    for fut, stdin, stdout, stderr in list(c.pending_attaches):
        if fut.done():
            continue
        try:
            fut.set_result(await monitor.attach(stdin, stdout, stderr))
        except Exception as e:  # noqa: BLE001 - the attach client sees its stream end
            fut.set_exception(e)
    c.pending_attaches.clear()


def fail_pending(c: Container) -> None:
    """The container will not start (or is gone): waiting attaches end."""
    for fut, *_ in c.pending_attaches:
        if not fut.done():
            fut.set_exception(Conflict("container is not running"))
    c.pending_attaches.clear()
