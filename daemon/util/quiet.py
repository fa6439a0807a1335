"""Work that can wait, waiting for the creates and starts in flight.

A `docker run --rm` leaves a release behind it (unmount, veth deletion, cgroup and directory
removal: 10-50 ms of threads, netlink under the kernel's rtnl lock and Python under the GIL),
and scripts start the next container at once: run back to back, the release of one fell on
the next one's start and made it 20-60% slower. Background work asks `after_starts()` between
its steps: it goes on as soon as no create or start is in flight (nor a start expected right
after a create), or after `patience` seconds whatever happens, so that a steady stream of starts
still gets everything released.
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
        self._expected_until = 0.0  # loop time

    def _event(self) -> asyncio.Event:
        if self._idle is None:  # made on the loop that uses it
            self._idle = asyncio.Event()
            self._idle.set()
        return self._idle

    @contextlib.contextmanager
    def starting(self) -> Iterator[None]:
        """Around a container start (or create)."""
        self._in_flight += 1
        self._event().clear()
        try:
            yield
        finally:
            self._in_flight -= 1
            if not self._in_flight:
                self._event().set()

    def expect(self, seconds: float) -> None:
        """A start is likely within `seconds`: `docker run` sends it 3-5 ms after its create
        was answered, and a release step begun in between (a veth deletion: 15-25 ms) would
        still be running when it comes."""
        loop = asyncio.get_running_loop()
        self._expected_until = max(self._expected_until, loop.time() + seconds)

    async def after_starts(self) -> None:
        """Returns once no start is in flight or expected (or after `patience` seconds)."""
        loop = asyncio.get_running_loop()
        give_up = loop.time() + self.patience
        idle = self._event()
        while (now := loop.time()) < give_up:
            if not idle.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(idle.wait(), give_up - now)
            elif now < self._expected_until:
                await asyncio.sleep(min(self._expected_until, give_up) - now)
            else:
                return
