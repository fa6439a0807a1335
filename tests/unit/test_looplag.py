"""The event-loop lag probe: histogram and percentiles, and the watchdog naming what blocks."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from daemon.looplag import BUCKETS, LoopLag


def test_record_fills_buckets_and_percentiles() -> None:
    lag = LoopLag()
    for ms in [1] * 98 + [50, 400]:
        lag.record(ms / 1000)
    h = lag.histogram()
    assert h["count"] == 100 and sum(h["counts"]) == 100
    assert h["max"] == pytest.approx(0.4)
    # Each sample lands in the first bucket whose bound is not below it.
    assert h["counts"][BUCKETS.index(min(b for b in BUCKETS if b >= 0.001))] == 98
    p = lag.percentiles()
    assert p["p50"] == pytest.approx(0.001)
    assert p["p99"] == pytest.approx(0.4)
    assert p["max"] == pytest.approx(0.4)


def test_beyond_the_last_bucket_and_negative() -> None:
    lag = LoopLag()
    lag.record(60.0)
    lag.record(-0.001)  # clock granularity: counted as no lag
    assert lag.counts[-1] == 1 and lag.counts[0] == 1


def test_empty_percentiles() -> None:
    assert LoopLag().percentiles() == {"p50": 0.0, "p90": 0.0, "p99": 0.0, "max": 0.0}


def test_blocked_loop_is_measured_and_its_stack_logged(caplog: pytest.LogCaptureFixture) -> None:
    def block_the_loop() -> None:
        time.sleep(0.3)

    async def scenario() -> LoopLag:
        lag = LoopLag(interval=0.01, stall_report=0.1)
        lag.start()
        await asyncio.sleep(0.05)
        block_the_loop()
        await asyncio.sleep(0.05)
        await lag.stop()
        return lag

    with caplog.at_level(logging.WARNING, logger="pydockerd.looplag"):
        lag = asyncio.run(scenario())
    assert lag.max >= 0.25
    assert lag.samples >= 3
    blocked = [r.getMessage() for r in caplog.records if "event loop blocked" in r.getMessage()]
    assert len(blocked) == 1, blocked  # one report per stall
    assert "block_the_loop" in blocked[0]
