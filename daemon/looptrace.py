"""Slow loop callbacks, for investigating stalls on a dev daemon (PYDOCKERD_SLOW_CALLBACK_MS).

The loop-lag probe (daemon/looplag.py) says that the loop was late; this says which callback
ran long and why. For every callback of the loop thread slower than the threshold it logs
the wall time split by the thread's schedstat into

* cpu: the callback's own work (move it off the loop, or make it cheaper);
* runq: runnable but waiting for a CPU (the host is busy: priority, or less CPU overall);
* asleep: the rest, in a blocking call or waiting for the GIL held by another thread;

with the task and HTTP request it served. A sampling thread adds where the loop thread was
(2 ms samples) while a callback ran over the threshold, logged every 10 s; late wake-ups
from epoll with nothing to do (a wait for a CPU or the GIL between callbacks) are logged
too. It patches asyncio's Handle._run, so it is for investigating only.
"""

from __future__ import annotations

import asyncio
import asyncio.events
import collections
import gc
import logging
import os
import sys
import threading
import time
import traceback

log = logging.getLogger("pydockerd.looplag")

ENV = "PYDOCKERD_SLOW_CALLBACK_MS"


def _describe(handle: asyncio.events.Handle) -> str:
    """The task a callback stepped (and the HTTP request it serves)."""
    cb = handle._callback  # type: ignore[attr-defined]
    # A task's step is a C wrapper that only the garbage collector's view leads back from.
    task = next((r for r in gc.get_referents(cb) if isinstance(r, asyncio.Task)), getattr(cb, "__self__", None))
    if not isinstance(task, asyncio.Task):
        return repr(handle)
    coro = task.get_coro()
    what = getattr(coro, "__qualname__", repr(coro))
    frame = getattr(coro, "cr_frame", None)
    scope = getattr(frame.f_locals.get("self"), "scope", None) if frame is not None else None
    if isinstance(scope, dict):
        what += f" {scope.get('method')} {scope.get('path')}"
    return what


class SlowCallbackTracer:
    def __init__(self, threshold: float) -> None:
        self.threshold = threshold
        self._started = 0.0  # perf_counter when the running callback began; 0 between callbacks
        self._stop = threading.Event()
        self._undo: list = []
        self._fd = -1
        self._loop_thread = 0

    def _sched(self) -> tuple[int, int]:
        cpu, runq, _ = os.pread(self._fd, 100, 0).split()
        return int(cpu), int(runq)

    def start(self) -> None:
        """On the loop's thread."""
        self._loop_thread = threading.get_ident()
        self._fd = os.open(f"/proc/self/task/{threading.get_native_id()}/schedstat", os.O_RDONLY | os.O_CLOEXEC)
        run = asyncio.events.Handle._run

        def _run(handle: asyncio.events.Handle) -> None:
            if threading.get_ident() != self._loop_thread:  # loops of other threads
                return run(handle)
            w0, (c0, q0) = time.perf_counter(), self._sched()
            self._started = w0
            try:
                return run(handle)
            finally:
                self._started = 0.0
                wall = time.perf_counter() - w0
                if wall > self.threshold:
                    c1, q1 = self._sched()
                    cpu, runq = (c1 - c0) / 1e6, (q1 - q0) / 1e6
                    log.warning("slow callback: wall %.1f ms cpu %.1f runq %.1f asleep %.1f: %s", wall * 1000,
                                cpu, runq, wall * 1000 - cpu - runq, _describe(handle))

        asyncio.events.Handle._run = _run  # type: ignore[method-assign]
        self._undo.append(lambda: setattr(asyncio.events.Handle, "_run", run))

        selector = asyncio.get_running_loop()._selector  # type: ignore[attr-defined]
        select = selector.select

        def _select(timeout: float | None = None) -> list:
            w0, (c0, q0) = time.perf_counter(), self._sched()
            events = select(timeout)
            late = time.perf_counter() - w0 - (timeout or 0.0)
            if not events and timeout is not None and late > self.threshold:
                c1, q1 = self._sched()
                log.warning("late wake-up: %.1f ms after a %.1f ms timeout, cpu %.1f runq %.1f", late * 1000,
                            timeout * 1000, (c1 - c0) / 1e6, (q1 - q0) / 1e6)
            return events

        selector.select = _select
        self._undo.append(lambda: delattr(selector, "select"))
        sampler = threading.Thread(target=self._sample, name="looplag-sampler", daemon=True)
        sampler.start()
        self._undo.append(sampler.join)
        self._undo.append(self._stop.set)

    def stop(self) -> None:
        while self._undo:
            self._undo.pop()()
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def _sample(self) -> None:
        counts: collections.Counter[str] = collections.Counter()
        last = time.monotonic()
        while not self._stop.wait(0.002):
            t0 = self._started
            if t0 and time.perf_counter() - t0 > self.threshold:
                frame = sys._current_frames().get(self._loop_thread)
                if frame is not None:
                    stack = traceback.extract_stack(frame, limit=6)
                    counts[" < ".join(f"{os.path.basename(f.filename)}:{f.lineno} {f.name}"
                                      for f in reversed(stack))] += 1
            if counts and time.monotonic() - last > 10:
                log.warning("where slow callbacks were (2 ms samples):\n%s",
                            "\n".join(f"{n:5d} {k}" for k, n in counts.most_common(40)))
                counts.clear()
                last = time.monotonic()
