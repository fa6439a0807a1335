"""Giving freed memory back to the system now and then.

glibc keeps what the daemon frees in its heaps for reuse, and after the first big buffer is
freed it raises its mmap threshold, so later 1 MiB buffers (log batches, archive and upload
chunks, in several worker threads' arenas) also stay: one `docker logs` of a 100 MB log left
the daemon 26 MiB larger for good. A fixed, low mmap threshold would return them at once but
makes every big buffer a fresh mapping (page faults on the data paths); trimming the heaps
every ``interval`` seconds, in a worker thread, costs nothing on them.

glibc also gives every thread that allocates while another holds the heap's lock an arena of
its own (up to 8 per core), and what a worker frees in one is reusable by that arena only:
after a suite's worth of work the six default-executor workers' arenas held ~2-3 MiB more
than one shared arena does, and that shared arena still kept ~0.8 MiB more than none: every
thread now allocates from the main heap (bench_memory, A/B in one window: 48.7 against 49.5 MiB
of anonymous memory after work). Python threads allocate under the GIL, so sharing it costs
next to no contention; the few C libraries that allocate without it (zstd, sqlite) do so in
large blocks, seldom.
"""

from __future__ import annotations

import asyncio
import linecache

from runtime import libc

ARENAS = 1  # the main thread's heap, for every thread


def limit_arenas() -> None:
    """Called before the first thread starts: arenas are made as threads first allocate."""
    libc.mallopt(libc.M_ARENA_MAX, ARENAS)


async def trim_periodically(interval: float = 30.0) -> None:
    """Runs until cancelled."""
    while True:
        await asyncio.sleep(interval)
        # Every traceback formatted (the loop-lag watchdog's stall reports, logged exceptions)
        # leaves the whole source of each file it shows in linecache, for good: ~1 MiB after
        # a suite's worth of work. The next traceback reads them again.
        linecache.clearcache()
        await asyncio.to_thread(libc.malloc_trim, 0)
