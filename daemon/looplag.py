"""Event-loop lag: how late the loop runs a callback that was due.

Every request, stream and container event of the daemon is served by one asyncio loop, so
anything that blocks it (a synchronous file, SQLite, subprocess or netlink call, a large
JSON encode) delays every client at once. The probe sleeps ``interval`` seconds again and
again and records by how much each wake-up was late. It keeps

* a cumulative histogram (fixed bucket bounds, in seconds: ``histogram()``), for Prometheus
  and for clients that diff two readings (bench/bench_load.py via ``GET /debug/vars``);
* the last ``window`` samples, for ``percentiles()``;
* ``observers``: callables given every sample (the Prometheus histogram of --metrics-addr).

A watchdog thread logs the loop's stack when a wake-up is more than ``stall_report``
seconds overdue: that names what blocks the loop, where the histogram only says that
something did. It only reads the main thread's frames (sys._current_frames), and at most
once per stall.
"""

from __future__ import annotations

import asyncio
import bisect
import collections
import contextlib
import logging
import os
import sys
import threading
import time
import traceback
from collections.abc import Callable

from daemon import looptrace

log = logging.getLogger("pydockerd.looplag")

# PYDOCKERD_STALL_REPORT_MS: the watchdog's threshold (default 250 ms), lower while investigating.
STALL_REPORT_ENV = "PYDOCKERD_STALL_REPORT_MS"


def _env_ms(name: str) -> float | None:
    try:
        return float(os.environ[name]) / 1000
    except (KeyError, ValueError):
        return None


# Upper bounds in seconds: 0.1 ms to 10 s in steps of about 1.26x (10 per decade).
BUCKETS: tuple[float, ...] = tuple(round(10 ** (e / 10) / 10_000, 7) for e in range(0, 51))


class LoopLag:
    def __init__(self, interval: float = 0.02, window: int = 3000, stall_report: float = 0.25) -> None:
        self.interval = interval
        self.stall_report = _env_ms(STALL_REPORT_ENV) or stall_report
        self.counts = [0] * (len(BUCKETS) + 1)  # the last one: above BUCKETS[-1]
        self.total = 0.0
        self.samples = 0
        self.max = 0.0
        self.recent: collections.deque[float] = collections.deque(maxlen=window)
        self.observers: list[Callable[[float], None]] = []
        self._task: asyncio.Task | None = None
        self._due = 0.0  # monotonic time the current sleep should end; 0 while not sleeping
        self._stop = threading.Event()
        self._watchdog: threading.Thread | None = None
        self._loop_thread = 0
        self._tracer: looptrace.SlowCallbackTracer | None = None

    def record(self, lag: float) -> None:
        lag = max(lag, 0.0)
        self.counts[bisect.bisect_left(BUCKETS, lag)] += 1
        self.total += lag
        self.samples += 1
        self.max = max(self.max, lag)
        self.recent.append(lag)
        for observe in self.observers:
            observe(lag)

    def percentiles(self, qs: tuple[float, ...] = (0.5, 0.9, 0.99)) -> dict[str, float]:
        """Percentiles (seconds) of the last ``window`` samples: {"p50": ..., "p99": ..., "max": ...}."""
        data = sorted(self.recent)
        out: dict[str, float] = {}
        for q in qs:
            out[f"p{q * 100:g}"] = data[min(len(data) - 1, int(q * len(data)))] if data else 0.0
        out["max"] = data[-1] if data else 0.0
        return out

    def histogram(self) -> dict:
        """Cumulative since start: bucket upper bounds (seconds), counts per bucket, sum, count."""
        return {"buckets": list(BUCKETS), "counts": list(self.counts), "sum": self.total,
                "count": self.samples, "max": self.max}

    # -- running

    def start(self) -> None:
        """Start probing on the running loop (and the watchdog thread)."""
        if self._task is not None:
            return
        self._loop_thread = threading.get_ident()
        if (slow := _env_ms(looptrace.ENV)) is not None:
            self._tracer = looptrace.SlowCallbackTracer(slow)
            self._tracer.start()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="looplag")
        if self.stall_report > 0:
            self._stop.clear()
            self._watchdog = threading.Thread(target=self._watch, name="looplag-watchdog", daemon=True)
            self._watchdog.start()

    async def stop(self) -> None:
        self._stop.set()
        if self._tracer is not None:
            self._tracer.stop()
            self._tracer = None
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._watchdog is not None:
            self._watchdog.join()
            self._watchdog = None

    async def _run(self) -> None:
        while True:
            self._due = time.monotonic() + self.interval
            await asyncio.sleep(self.interval)
            self.record(time.monotonic() - self._due)

    def _watch(self) -> None:
        reported = 0.0
        while not self._stop.wait(self.stall_report / 2):
            due = self._due
            late = time.monotonic() - due
            if late < self.stall_report or due == reported:
                continue
            reported = due
            frame = sys._current_frames().get(self._loop_thread)
            if frame is None:
                continue
            stack = "".join(traceback.format_stack(frame, limit=12))
            log.warning("event loop blocked for %.0f ms so far, at:\n%s", late * 1000, stack)
