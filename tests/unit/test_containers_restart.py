"""Restart policy decisions (daemon/containers/restart.py), as dockerd makes them on exit and on boot."""

from __future__ import annotations

import pytest

from daemon.containers import restart

# (policy, max retries, manually stopped, exit code, restarts so far, on exit?, on boot?)
TABLE = [
    ("no", 0, False, 0, 0, False, False),
    ("no", 0, False, 1, 0, False, False),
    ("no", 0, True, 1, 0, False, False),
    ("always", 0, False, 0, 0, True, True),
    ("always", 0, False, 137, 0, True, True),
    ("always", 0, True, 0, 0, False, True),  # boot: `always` comes back even after docker stop
    ("always", 0, True, 1, 5, False, True),
    ("unless-stopped", 0, False, 0, 0, True, True),
    ("unless-stopped", 0, False, 2, 3, True, True),
    ("unless-stopped", 0, True, 0, 0, False, False),
    ("unless-stopped", 0, True, 1, 0, False, False),
    ("on-failure", 0, False, 0, 0, False, False),
    ("on-failure", 0, False, 1, 0, True, True),
    ("on-failure", 0, False, 1, 100, True, True),  # no limit
    ("on-failure", 0, True, 1, 0, False, True),
    ("on-failure", 3, False, 1, 2, True, True),
    ("on-failure", 3, False, 1, 3, False, False),  # retries used up
    ("on-failure", 3, False, 0, 0, False, False),
    ("on-failure", 3, True, 1, 2, False, True),
]


@pytest.mark.parametrize(("name", "retries", "stopped", "code", "count", "on_exit", "on_boot"), TABLE)
def test_should_restart(name: str, retries: int, stopped: bool, code: int, count: int, on_exit: bool,
                        on_boot: bool) -> None:
    policy = {"Name": name, "MaximumRetryCount": retries}
    kw = {"exit_code": code, "restart_count": count, "manually_stopped": stopped}
    assert restart.should_restart(policy, **kw, on_boot=False) is on_exit
    assert restart.should_restart(policy, **kw, on_boot=True) is on_boot


def test_delay_backs_off_and_resets() -> None:
    assert restart.delay(0, 1.0) == pytest.approx(0.1)
    assert restart.delay(3, 1.0) == pytest.approx(0.8)
    assert restart.delay(20, 1.0) == 60.0  # capped
    assert restart.delay(20, 10.0) == pytest.approx(0.1)  # ran long enough: starts over
