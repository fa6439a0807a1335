"""A minimal single-threaded event loop for the monitor: epoll readiness callbacks and timers.

asyncio (or even selectors) would cost the monitor more import time than everything else
it does at start-up, and one thread with non-blocking fds is all it needs.
"""

from __future__ import annotations

import heapq
import select
import time

TYPE_CHECKING = False  # typing costs import time; type checkers treat this name as True
if TYPE_CHECKING:
    from collections.abc import Callable

    Callback = Callable[[], None]

_IN = select.EPOLLIN
_OUT = select.EPOLLOUT
# Hang-up and error wake both directions: the callbacks see EOF/EPIPE and clean up.
_HUP = select.EPOLLHUP | select.EPOLLERR


class Timer:
    __slots__ = ("when", "callback", "cancelled")

    def __init__(self, when: float, callback: Callback) -> None:
        self.when = when
        self.callback = callback
        self.cancelled = False

    def __lt__(self, other: Timer) -> bool:
        return self.when < other.when

    def cancel(self) -> None:
        self.cancelled = True


class Reactor:
    def __init__(self) -> None:
        self._epoll = select.epoll()
        self._handlers: dict[int, list[Callback | None]] = {}
        self._masks: dict[int, int] = {}
        self._timers: list[Timer] = []
        self._stopped = False

    def _update(self, fd: int) -> None:
        reader, writer = self._handlers.get(fd, (None, None))
        mask = (_IN if reader else 0) | (_OUT if writer else 0)
        old = self._masks.get(fd)
        if not mask:
            self._handlers.pop(fd, None)
            if old is not None:
                del self._masks[fd]
                self._epoll.unregister(fd)
        elif old is None:
            self._epoll.register(fd, mask)
            self._masks[fd] = mask
        elif old != mask:
            self._epoll.modify(fd, mask)
            self._masks[fd] = mask

    def set_reader(self, fd: int, callback: Callback | None) -> None:
        self._handlers.setdefault(fd, [None, None])[0] = callback
        self._update(fd)

    def set_writer(self, fd: int, callback: Callback | None) -> None:
        self._handlers.setdefault(fd, [None, None])[1] = callback
        self._update(fd)

    def forget(self, fd: int) -> None:
        """Drop every callback of ``fd``; call before closing it."""
        self._handlers.pop(fd, None)
        if self._masks.pop(fd, None) is not None:
            self._epoll.unregister(fd)

    def call_later(self, delay: float, callback: Callback) -> Timer:
        timer = Timer(time.monotonic() + delay, callback)
        heapq.heappush(self._timers, timer)
        return timer

    def stop(self) -> None:
        self._stopped = True

    def _run_timers(self) -> float:
        """Run due timers; return the epoll timeout until the next one (-1: none)."""
        now = time.monotonic()
        while self._timers and (self._timers[0].cancelled or self._timers[0].when <= now):
            timer = heapq.heappop(self._timers)
            if not timer.cancelled:
                timer.callback()
                if self._stopped:
                    return 0
        while self._timers and self._timers[0].cancelled:
            heapq.heappop(self._timers)
        return max(0.0, self._timers[0].when - time.monotonic()) if self._timers else -1

    def run(self) -> None:
        try:
            while not self._stopped:
                timeout = self._run_timers()
                if self._stopped:
                    break
                for fd, events in self._epoll.poll(timeout):
                    # Look the handlers up again for each step: an earlier callback may
                    # have removed them (or closed the fd).
                    if events & (_IN | _HUP):
                        handlers = self._handlers.get(fd)
                        if handlers and handlers[0]:
                            handlers[0]()
                    if events & (_OUT | _HUP):
                        handlers = self._handlers.get(fd)
                        if handlers and handlers[1]:
                            handlers[1]()
                    if self._stopped:
                        break
        finally:
            self._epoll.close()
