"""A byte stream produced by blocking code in a thread and consumed on the event loop.

The writing counterpart of daemon.bodyreader: tar writers (export, cp, save) run in a thread
and their output becomes a response body. The loop side awaits an asyncio.Queue, never an
executor thread blocked on a queue: a client that goes away cancels that await, whereas a
worker waiting for an item that would never come was lost for good (a few abandoned downloads
hung the daemon). Back-pressure is a semaphore the writer takes per chunk and the reader
gives back, so a slow client holds the writer, not memory.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable
from typing import Any


class StreamCancelled(BrokenPipeError):
    """Raised in the writer thread once the reader has gone away."""


class ThreadWriter:
    """The file object the producing thread writes into."""

    def __init__(self, loop: asyncio.AbstractEventLoop, maxchunks: int) -> None:
        self.loop = loop
        self.q: asyncio.Queue[bytes | BaseException | None] = asyncio.Queue()
        self.room = threading.Semaphore(maxchunks)
        self.cancelled = threading.Event()

    def hand(self, item: bytes | BaseException | None) -> None:
        try:
            self.loop.call_soon_threadsafe(self.q.put_nowait, item)
        except RuntimeError:  # the loop is closed: nobody is reading any more
            self.cancelled.set()

    def write(self, data: bytes) -> int:
        while not self.room.acquire(timeout=0.5):
            if self.cancelled.is_set():
                raise StreamCancelled("the client went away")
        if self.cancelled.is_set():
            raise StreamCancelled("the client went away")
        self.hand(bytes(data))
        return len(data)

    def flush(self) -> None:
        pass


async def thread_stream(produce: Callable[[Any], None], *, name: str, maxchunks: int) -> AsyncIterator[bytes]:
    """Run `produce(fileobj)` in a thread of its own (it may wait on a slow client for as long as
    the download lasts) and yield what it writes. An error it raises is raised here; the thread
    has ended when this generator has."""
    w = ThreadWriter(asyncio.get_running_loop(), maxchunks)

    def run() -> None:
        try:
            produce(w)
            w.hand(None)
        except StreamCancelled:
            pass
        except BaseException as e:  # noqa: BLE001 - handed to the loop below
            if not w.cancelled.is_set():
                w.hand(e)

    t = threading.Thread(target=run, daemon=True, name=name)
    t.start()
    try:
        while True:
            item = await w.q.get()
            if item is None:
                return
            if isinstance(item, BaseException):
                raise item
            w.room.release()
            yield item
    finally:
        w.cancelled.set()
        w.room.release()  # a writer waiting for room wakes, sees the cancel and stops
        await asyncio.to_thread(t.join)
