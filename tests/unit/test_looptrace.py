"""The slow-callback tracer: which callback ran long, and whether it worked or waited."""

from __future__ import annotations

import asyncio
import asyncio.events
import logging
import re
import time

import pytest

from daemon.looptrace import SlowCallbackTracer


def test_slow_callbacks_logged_with_their_split_and_the_patch_undone(caplog: pytest.LogCaptureFixture) -> None:
    original = asyncio.events.Handle._run

    async def busy() -> None:
        end = time.thread_time() + 0.06
        while time.thread_time() < end:
            pass

    async def asleep() -> None:
        time.sleep(0.06)

    async def main() -> None:
        tracer = SlowCallbackTracer(0.03)
        tracer.start()
        try:
            await asyncio.create_task(busy())
            await asyncio.create_task(asleep())
            await asyncio.sleep(0)  # a quick one: not logged
        finally:
            tracer.stop()

    with caplog.at_level(logging.WARNING, logger="pydockerd.looplag"):
        asyncio.run(main())
    assert asyncio.events.Handle._run is original
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("slow callback")]
    parsed = {}
    for line in lines:
        m = re.search(r"cpu ([\d.]+) runq ([\d.-]+) asleep ([\d.-]+): (\S+)", line)
        assert m, line
        parsed[m[4].rpartition(".")[2]] = (float(m[1]), float(m[3]))
    # A busy host can make any callback slow; these two are slow anywhere.
    # Work shows as CPU, a blocking call as asleep (a busy host adds run-queue time to either).
    assert parsed["busy"][0] >= 50
    assert parsed["asleep"][0] < 30
