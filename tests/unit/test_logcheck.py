"""The harness's reading of daemon logs (tests/logcheck.py): which tracebacks fail a test."""

from __future__ import annotations

from tests.logcheck import complete_part, unexpected_tracebacks

LOG = """\
2026-12-05 17:25:34,210 ERROR pydockerd.api: POST /images/create answered 500: refused
Traceback (most recent call last):
  File "storage/registry.py", line 193, in ping
storage.registry.RegistryError: refused

The above exception was the direct cause of the following exception:

Traceback (most recent call last):
  File "daemon/distribution/pull.py", line 163, in _pull_one
daemon.errors.DaemonError: refused
2026-12-05 17:25:34,294 DEBUG pydockerd.containers: create: total 3.9 ms
2026-12-05 17:25:35,000 ERROR pydockerd.api: GET /x failed unexpectedly (answered 500)
Traceback (most recent call last):
  File "api/routers/x.py", line 1, in x
KeyError: 'a'
2026-12-05 17:25:36,000 ERROR asyncio: Task exception was never retrieved
future: <Task finished name='Task-9' coro=<release()>>
Traceback (most recent call last):
  File "daemon/containers/service.py", line 470, in release
OSError: [Errno 16] Device or resource busy
"""


def test_a_5xx_the_api_answered_on_purpose_is_expected_anything_else_is_not() -> None:
    found = unexpected_tracebacks(LOG)
    assert len(found) == 2
    assert found[0].startswith("2026-12-05 17:25:35,000 ERROR") and found[0].endswith("KeyError: 'a'")
    assert "Task exception was never retrieved" in found[1] and "future: <Task" in found[1]


def test_the_last_record_waits_for_the_next_look() -> None:
    data = LOG.encode()
    part = complete_part(data)
    assert data.startswith(part) and part.endswith(b"KeyError: 'a'\n")
    assert complete_part(b"half a line with no record") == b""
