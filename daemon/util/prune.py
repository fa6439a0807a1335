"""The removal loop every prune shares: each candidate's size taken, then removed; one that
cannot be removed (in use, or gone meanwhile) is left out of the report, as in dockerd."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from typing import TypeVar

from daemon.errors import DaemonError

T = TypeVar("T")


async def remove_each(candidates: Iterable[T], name: Callable[[T], str], size: Callable[[T], int],
                      remove: Callable[[str], Awaitable[None]]) -> tuple[list[str], int]:
    """(names removed, bytes reclaimed). `size` blocks (it walks files): it runs in a thread."""
    deleted: list[str] = []
    reclaimed = 0
    for item in candidates:
        n = await asyncio.to_thread(size, item)
        try:
            await remove(name(item))
        except DaemonError:
            continue
        deleted.append(name(item))
        reclaimed += max(n, 0)
    return deleted, reclaimed
