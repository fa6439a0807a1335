"""Restart policy: whether a container that stopped comes back, and after how long.

One decision for both moments dockerd makes it: when the container exits, and when the
daemon starts again (restore). They differ only in what a manual stop means.
"""

from __future__ import annotations

# dockerd's backoff: 100 ms doubling per consecutive quick restart, capped at a minute; a
# container that ran for at least 10 s starts over at 100 ms.
_BASE_DELAY = 0.1
_MAX_DELAY = 60.0
_RESET_AFTER = 10.0


def should_restart(policy: dict, *, exit_code: int, restart_count: int, manually_stopped: bool,
                   on_boot: bool) -> bool:
    """`policy` is HostConfig.RestartPolicy. On exit a manual stop (or a removal) keeps every
    policy down; on boot `always` comes back even after a manual stop, `unless-stopped` only
    if it was not stopped by hand."""
    name = policy["Name"]
    if manually_stopped and not on_boot:
        return False
    if name == "always":
        return True
    if name == "unless-stopped":
        return not manually_stopped
    if name == "on-failure" and exit_code != 0:
        limit = policy.get("MaximumRetryCount") or 0
        return not limit or restart_count < limit
    return False


def delay(restart_count: int, ran_for: float) -> float:
    """Seconds to wait before the next restart, given how long the last run lasted."""
    if ran_for >= _RESET_AFTER:
        return _BASE_DELAY
    return min(_BASE_DELAY * (2 ** min(restart_count, 10)), _MAX_DELAY)
