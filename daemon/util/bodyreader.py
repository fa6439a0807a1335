"""A blocking file object fed from an async byte iterator (a request body), for code running in a thread.

Tar extraction is blocking and runs in a worker thread, while the request body arrives on
the event loop; this bridges the two with a bounded queue so a fast client cannot make the
daemon buffer the whole upload.
"""

from __future__ import annotations

import asyncio
import io
import queue
from collections.abc import AsyncIterator

_EOF = b""


class ThreadReader(io.RawIOBase):
    def __init__(self, maxchunks: int = 64) -> None:
        self._q: queue.Queue[bytes | BaseException] = queue.Queue(maxsize=maxchunks)
        self._buf = memoryview(b"")
        self._pos = 0  # an offset, not re-slicing: re-slicing copied the rest of the chunk per read
        self._eof = False
        self.closed_by_reader = False

    def readable(self) -> bool:
        return True

    def _fill(self) -> None:
        while self._pos >= len(self._buf) and not self._eof:
            item = self._q.get()
            if isinstance(item, BaseException):
                raise OSError(f"upload interrupted: {item}") from item
            if item == _EOF:
                self._eof = True
            self._buf = memoryview(item)
            self._pos = 0

    def read(self, size: int = -1, /) -> bytes:
        # RawIOBase.read would copy twice (into a bytearray, then into bytes); a whole chunk
        # goes out as the very object that came in.
        if size is None or size < 0:
            return self.readall()
        self._fill()
        buf, pos = self._buf, self._pos
        if pos == 0 and size >= len(buf):
            self._pos = len(buf)
            return buf.obj if isinstance(buf.obj, bytes) else bytes(buf)
        n = min(size, len(buf) - pos)
        self._pos = pos + n
        return bytes(buf[pos : pos + n])

    def readinto(self, b: memoryview) -> int:  # type: ignore[override]
        self._fill()
        n = min(len(b), len(self._buf) - self._pos)
        b[:n] = self._buf[self._pos : self._pos + n]
        self._pos += n
        return n

    def close(self) -> None:
        self.closed_by_reader = True
        # Unblock a feeder waiting on a full queue.
        while True:
            try:
                self._q.get_nowait()
            except queue.Empty:
                break
        super().close()

    async def feed(self, chunks: AsyncIterator[bytes]) -> None:
        """Runs on the loop: copies the body into the queue, waiting (off-loop) when it is full."""
        try:
            async for chunk in chunks:
                if self.closed_by_reader:
                    return
                if chunk:
                    await self._put(chunk)
            await self._put(_EOF)
        except Exception as e:  # client went away: the reader sees an error, not a short tar
            await self._put(e)

    async def _put(self, item: bytes | BaseException) -> None:
        try:
            self._q.put_nowait(item)
        except queue.Full:
            while not self.closed_by_reader:
                try:
                    await asyncio.to_thread(self._q.put, item, True, 0.5)
                    return
                except queue.Full:
                    continue
