"""Where the milliseconds of one operation go: named steps, logged as one debug line.

Costs nothing measurable when debug logging is off (the marks are not even taken), so it can
stay in the hot paths it explains (container start, exit and removal).
"""

from __future__ import annotations

import logging
import time


class Steps:
    def __init__(self, log: logging.Logger, what: str) -> None:
        self._log = log
        self._what = what
        self._on = log.isEnabledFor(logging.DEBUG)
        self._t0 = self._last = time.perf_counter() if self._on else 0.0
        self._marks: list[str] = []

    def mark(self, step: str) -> None:
        """The step that just ended."""
        if self._on:
            now = time.perf_counter()
            self._marks.append(f"{step} {(now - self._last) * 1000:.1f}")
            self._last = now

    def done(self) -> None:
        if self._on:
            total = (time.perf_counter() - self._t0) * 1000
            self._log.debug("%s: %s; total %.1f ms", self._what, ", ".join(self._marks), total)
