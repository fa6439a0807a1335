"""Work that must finish even when the build's request is cancelled: clean-up, and a step's
commit once its layer is being made (else the layer would be left in the store, unowned).

A client that goes away cancels the request through a cancel scope (anyio) that cancels
again at every await of the cancelled task, and of tasks started in its context: such work
awaited there would be cut at its first await. It runs instead as a task of its own, in a
fresh context, held here until it is done.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import Coroutine
from typing import Any, TypeVar

log = logging.getLogger("pydockerd.build")
_RUNNING: set[asyncio.Task] = set()
T = TypeVar("T")


def _orphan_done(task: asyncio.Task) -> None:
    # Nobody awaits it any more: its failure would otherwise go unseen.
    if not task.cancelled() and task.exception() is not None:
        log.error("build work finished after its request went away, and failed", exc_info=task.exception())


async def finish(coro: Coroutine[Any, Any, T]) -> T:
    """Runs `coro` to its end whatever happens to the caller; returns its result unless the
    caller is cancelled meanwhile."""
    task = asyncio.get_running_loop().create_task(coro, context=contextvars.Context())
    _RUNNING.add(task)
    task.add_done_callback(_RUNNING.discard)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        if not task.done():
            task.add_done_callback(_orphan_done)
        raise
