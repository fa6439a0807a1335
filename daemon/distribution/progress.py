"""The progress records of pulls and pushes, as dockerd writes them and the CLI draws them."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

_TICK = 0.1  # seconds between two progress records of one layer


def human_size(n: float) -> str:
    """Go's units.HumanSize: decimal units, 4 significant digits ("36.56kB", "1.032MB")."""
    units = ["B", "kB", "MB", "GB", "TB", "PB"]
    i = 0
    while n >= 1000 and i < len(units) - 1:
        n /= 1000
        i += 1
    return f"{n:.4g}{units[i]}"


def progress(status: str, ident: str, current: int, total: int) -> dict:
    """A progress record as dockerd writes it (the bar is 50 wide, as jsonmessage draws it)."""
    rec: dict[str, Any] = {"status": status, "progressDetail": {"current": current}}
    if total > 0:
        rec["progressDetail"]["total"] = total
        bars = min(50, int(50 * current / total))
        rec["progress"] = f"[{'=' * bars}>{' ' * (50 - bars)}]  {human_size(current)}/{human_size(total)}"
    else:
        rec["progress"] = human_size(current)
    rec["id"] = ident
    return rec


def status(text: str, ident: str) -> dict:
    """A record without a bar: `Pulling fs layer`, `Pushed`..."""
    return {"status": text, "progressDetail": {}, "id": ident}


def reporter(loop: asyncio.AbstractEventLoop, q: asyncio.Queue[dict | None], text: str, ident: str,
             total: int) -> Callable[[int], None]:
    """A callback for a worker thread: queues `progress` records for the loop, at most one per
    tick (and always the last), none when nothing moved."""
    last = [0.0, -1]

    def report(done: int) -> None:
        now = time.monotonic()
        if done != last[1] and (now - last[0] >= _TICK or done >= total):
            last[0], last[1] = now, done
            loop.call_soon_threadsafe(q.put_nowait, progress(text, ident, done, total))
    return report
