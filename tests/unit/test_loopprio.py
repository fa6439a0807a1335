"""The event loop thread's nice: raised for that thread alone, never for what it starts."""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import pytest

from daemon import loopprio

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="a negative nice needs root")


def _in_thread(fn) -> dict:
    """Runs fn in a fresh thread (the test process keeps its own priority) and returns what it saw."""
    out: dict = {}

    def run() -> None:
        try:
            out.update(fn())
        except BaseException as e:  # noqa: BLE001 - re-raised by the test
            out["error"] = e

    t = threading.Thread(target=run)
    t.start()
    t.join()
    if "error" in out:
        raise out["error"]
    return out


def test_only_the_calling_thread_is_raised_and_its_children_start_at_zero() -> None:
    def body() -> dict:
        nice = loopprio.raise_loop_priority(10)
        seen: dict = {"nice": nice, "own": os.getpriority(os.PRIO_PROCESS, 0)}
        # A thread and a process started from the raised thread: both back at 0.
        child_thread: list[int] = []
        t = threading.Thread(target=lambda: child_thread.append(os.getpriority(os.PRIO_PROCESS, 0)))
        t.start()
        t.join()
        seen["thread"] = child_thread[0]
        probe = "import os; print(os.getpriority(os.PRIO_PROCESS, 0))"
        seen["process"] = int(subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                                             check=True).stdout)
        return seen

    seen = _in_thread(body)
    assert seen == {"nice": -10, "own": -10, "thread": 0, "process": 0}
    assert os.getpriority(os.PRIO_PROCESS, 0) == 0  # the test's own thread was not touched


def test_left_alone_when_disabled_or_started_with_another_nice(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(loopprio.ENV, "0")
    assert _in_thread(lambda: {"nice": loopprio.raise_loop_priority(),
                               "own": os.getpriority(os.PRIO_PROCESS, 0)}) == {"nice": None, "own": 0}

    def niced() -> dict:
        os.setpriority(os.PRIO_PROCESS, 0, 5)  # as under `nice -n 5` or systemd's Nice=5
        return {"nice": loopprio.raise_loop_priority(10), "own": os.getpriority(os.PRIO_PROCESS, 0)}

    assert _in_thread(niced) == {"nice": None, "own": 5}


def test_boost_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(loopprio.ENV, "5")
    assert loopprio.boost_from_env() == 5
    monkeypatch.setenv(loopprio.ENV, "junk")
    assert loopprio.boost_from_env() == loopprio.LOOP_NICE_BOOST
    monkeypatch.delenv(loopprio.ENV)
    assert loopprio.boost_from_env() == loopprio.LOOP_NICE_BOOST
