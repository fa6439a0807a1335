"""daemon/util/quiet.py: background work waits for the starts in flight, and for a start
expected right after a create, but never longer than its patience."""

from __future__ import annotations

import asyncio

from daemon.util.quiet import Starts


def test_waits_for_the_starts_in_flight() -> None:
    async def scenario() -> None:
        starts = Starts(patience=5)
        await starts.after_starts()  # nothing in flight: at once
        order: list[str] = []

        async def background() -> None:
            await starts.after_starts()
            order.append("release")

        with starts.starting():
            task = asyncio.ensure_future(background())
            await asyncio.sleep(0.01)
            order.append("start done")
        await task
        assert order == ["start done", "release"]

    asyncio.run(scenario())


def test_an_expected_start_is_waited_for_briefly() -> None:
    async def scenario() -> None:
        starts = Starts(patience=5)
        starts.expect(0.2)
        task = asyncio.ensure_future(starts.after_starts())
        await asyncio.sleep(0.01)
        assert not task.done()  # the start a create announced may come any moment
        await task  # and it did not: the wait ends by itself

    asyncio.run(scenario())


def test_patience_bounds_the_wait() -> None:
    async def scenario() -> None:
        starts = Starts(patience=0.05)
        with starts.starting():
            await starts.after_starts()  # returns although the start is still in flight

    asyncio.run(scenario())
