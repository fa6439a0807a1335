"""Clean-up that must finish even when the build's request is cancelled.

A client that goes away cancels the request through a cancel scope (anyio) that cancels
again at every await of the cancelled task, and of tasks started in its context: a clean-up
awaited there would be cut at its first await and leave the build's container running.
It runs instead as a task of its own, in a fresh context, held here until it is done.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import Coroutine
from typing import Any

log = logging.getLogger("pydockerd.build")
_RUNNING: set[asyncio.Task] = set()


def _done(task: asyncio.Task) -> None:
    _RUNNING.discard(task)
    if not task.cancelled() and task.exception() is not None:
        log.error("build clean-up failed", exc_info=task.exception())


async def finish(coro: Coroutine[Any, Any, None]) -> None:
    """Runs `coro` to its end whatever happens to the caller; waits for it unless cancelled."""
    task = asyncio.get_running_loop().create_task(coro, context=contextvars.Context())
    _RUNNING.add(task)
    task.add_done_callback(_done)
    await asyncio.shield(task)
