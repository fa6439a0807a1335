"""Event-loop lag: how late a sleeping task wakes up. Every request, stream and container
event of the daemon runs on one loop, so this is the latency all of them pay on top.

Kept apart from the metrics so that another probe can replace it: anything with
`run(observe)` will do.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

INTERVAL = 0.5


class LoopLagProbe:
    def __init__(self, interval: float = INTERVAL) -> None:
        self.interval = interval

    async def run(self, observe: Callable[[float], None]) -> None:
        """Until cancelled: sleeps `interval` and reports how much longer than that it took."""
        while True:
            start = time.monotonic()
            await asyncio.sleep(self.interval)
            observe(max(0.0, time.monotonic() - start - self.interval))
