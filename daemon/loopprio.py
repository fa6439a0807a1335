"""The event loop thread's CPU priority.

Every request is served by the one loop thread, and on a busy host it spent more time
runnable but waiting for a CPU than running: under bench/bench_load.py's 16 clients on 2
cores its schedstat showed ~250 ms/s on a CPU and ~460 ms/s waiting in the run queue, and
the slow callbacks it logged were mostly that wait (see daemon/looplag.py's
PYDOCKERD_SLOW_CALLBACK_MS). A lower nice value for that thread alone lets the kernel run
it as soon as it wakes; it uses a fraction of one core, so it cannot starve the containers.

Only the loop thread is raised. SCHED_RESET_ON_FORK makes every thread and process it
creates (worker threads, the monitor template and so the monitors and containers, exec
processes, `ps`, `iptables`) start at nice 0 again, as they would without this.

PYDOCKERD_LOOP_NICE sets the boost (0: leave the thread as it is), for measuring.
"""

from __future__ import annotations

import logging
import os

log = logging.getLogger("pydockerd")

LOOP_NICE_BOOST = 10  # nice 0 → -10: CFS weight 9548 against 1024 for a nice-0 thread
ENV = "PYDOCKERD_LOOP_NICE"


def boost_from_env(default: int = LOOP_NICE_BOOST) -> int:
    try:
        return max(0, min(20, int(os.environ[ENV])))
    except (KeyError, ValueError):
        return default


def raise_loop_priority(boost: int | None = None) -> int | None:
    """Lower the calling thread's nice from 0 to -``boost``; returns the new nice, None when
    left as it is. A daemon started with another nice (systemd's Nice=, `nice`) keeps it:
    somebody chose it, and the fork reset would give the children 0 instead."""
    boost = boost_from_env() if boost is None else boost
    if boost <= 0:
        return None
    try:
        base = os.getpriority(os.PRIO_PROCESS, 0)  # on Linux: this thread's nice
        if base != 0:
            return None
        target = -min(boost, 20)
        # Before the nice: the reset on fork must already hold for the first child.
        os.sched_setscheduler(0, os.SCHED_OTHER | os.SCHED_RESET_ON_FORK, os.sched_param(0))
        os.setpriority(os.PRIO_PROCESS, 0, target)
    except (OSError, AttributeError) as e:
        log.info("event loop thread keeps its CPU priority: %s", e)
        return None
    return target
