"""Waiting for work started on a thread to end, whatever happens to the waiter."""

from __future__ import annotations

import asyncio
import contextlib


async def settled(fut: asyncio.Future) -> None:
    """Waits until `fut` is done, whatever its outcome (which it consumes), even if cancelled
    meanwhile: a thread's work is not undone by leaving it, and what is released after it
    (an unmount, a namespace) must not start before it ends."""
    with contextlib.suppress(BaseException):
        await asyncio.shield(fut)
    while not fut.done():
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait([fut])
    if not fut.cancelled():
        fut.exception()
