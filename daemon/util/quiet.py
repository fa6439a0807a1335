"""Work that can wait, waiting for the starts in flight.

A `docker run --rm` leaves a release behind it (unmount, veth deletion, cgroup and directory
removal: 10-50 ms of threads, netlink under the kernel's rtnl lock and Python under the GIL),
and scripts start the next container at once: run back to back, the release of one fell on
the next one's start and made it 20-60% slower. Background work asks `after_starts()` between
its steps: it goes on as soon as no start is in flight, or after `patience` seconds whatever
happens, so that a steady stream of starts still gets everything released.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator


class Starts:
    def __init__(self, patience: float = 1.0) -> None:
        self.patience = patience
        self._in_flight = 0
        self._idle: asyncio.Event | None = None

    def _event(self) -> asyncio.Event:
        if self._idle is None:  # made on the loop that uses it
            self._idle = asyncio.Event()
            self._idle.set()
        return self._idle

    @contextlib.contextmanager
    def starting(self) -> Iterator[None]:
        """Around a container start."""
        self._in_flight += 1
        self._event().clear()
        try:
            yield
        finally:
            self._in_flight -= 1
            if not self._in_flight:
                self._event().set()

    async def after_starts(self) -> None:
        """Returns once no start is in flight (or after `patience` seconds)."""
        idle = self._event()
        if not idle.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(idle.wait(), self.patience)
