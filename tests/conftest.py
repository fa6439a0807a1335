"""pytest wiring for the test suite: fixtures that hand tests pydockerd daemons, the
session hooks that mark e2e tests, attach daemon logs to failures, and the leak check
(tests/leakcheck.py) that runs last and fails the run. The harness itself (Daemon and
friends) is in tests/helpers.py.

Environment knobs:
  PYDOCKERD_KEEP_TMP  keep the temp roots after the session (for post-mortems)
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests import leakcheck, logcheck
from tests.helpers import (
    BUSYBOX,
    EXTRA_BRIDGE_PREFIX,
    MAIN_BRIDGE_PREFIX,
    STATE,
    Daemon,
    build_busybox_rootfs,
    free_tcp_port,
    import_busybox,
    new_daemon_obj,
    tmp_base,
)


def close_all_daemons() -> list[str]:
    problems = []
    for d in STATE.daemons:
        problems += d.close()
    return problems


def run_leak_check() -> list[str]:
    STATE.leak_check_ran = True
    problems = close_all_daemons()
    problems += [f"an unexpected error in a daemon's log:\n{tb}" for tb in _new_tracebacks(final=True)]
    if STATE.baseline is None:
        return problems
    roots = [str(STATE.tmp_base)] if STATE.tmp_base else []
    ids: set[str] = set()
    for d in STATE.daemons:
        ids |= d.seen_ids
    # A moment for monitors that were told to exit to finish, so a slow exit is not a leak.
    for _ in range(20):
        leaks = leakcheck.find_leaks(STATE.baseline, roots, (MAIN_BRIDGE_PREFIX, EXTRA_BRIDGE_PREFIX), ids)
        if not leaks:
            break
        time.sleep(0.25)
    return problems + leaks


def _remove_tmp_base() -> None:
    base = STATE.tmp_base
    if base is None or os.environ.get("PYDOCKERD_KEEP_TMP"):
        return
    real = os.path.realpath(base)
    if any(m == real or m.startswith(real + "/") for m in leakcheck.mount_points()):
        # Never rm -rf through a mount: a bind mount could point at host files.
        print(f"\nnot removing {base}: mounts remain under it", file=sys.stderr)
        return
    subprocess.run(["rm", "-rf", "--one-file-system", str(base)], capture_output=True)


# --------------------------------------------------------------------------- pytest hooks


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "e2e: end-to-end test against a real pydockerd (needs root)")
    config.addinivalue_line("markers", "slow: takes more than a few seconds")
    if STATE.baseline is None:
        STATE.baseline = leakcheck.Snapshot.take()


class LeakCheckItem(pytest.Item):
    """Runs last: stops every test daemon, then fails if anything was left on the host."""

    def runtest(self) -> None:
        leaks = run_leak_check()
        if leaks:
            raise AssertionError("the test session left these behind:\n  " + "\n  ".join(leaks))

    def reportinfo(self) -> tuple[Any, int, str]:
        return self.path, 0, "leak check"


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    e2e_dir = Path(__file__).parent / "e2e"
    has_e2e = False
    for item in items:
        if e2e_dir in Path(str(item.path)).parents:
            item.add_marker(pytest.mark.e2e)
            has_e2e = True
    if has_e2e:
        items.append(LeakCheckItem.from_parent(session, name="leak-check"))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    # Fallback for runs that never reached the leak-check item (-x, deselection, ^C).
    if STATE.daemons and not STATE.leak_check_ran:
        leaks = run_leak_check()
        if leaks:
            print("\nLEAK CHECK FAILED — the test session left these behind:\n  " + "\n  ".join(leaks),
                  file=sys.stderr)
            session.exitstatus = pytest.ExitCode.TESTS_FAILED
    _remove_tmp_base()


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    item.stash[_log_offsets] = {id(d): d.log_size() for d in STATE.daemons}


_log_offsets = pytest.StashKey[dict[int, int]]()
_log_checked: dict[int, int] = {}  # id(daemon) -> how far its log was read for tracebacks


def _new_tracebacks(final: bool = False) -> list[str]:
    """Unexpected tracebacks (tests/logcheck.py) logged since the last look, by any daemon."""
    found = []
    for d in STATE.daemons:
        start = _log_checked.get(id(d), 0)
        try:
            with open(d.log_path, "rb") as f:
                f.seek(start)
                data = f.read()
        except FileNotFoundError:
            continue
        part = data if final else logcheck.complete_part(data)
        _log_checked[id(d)] = start + len(part)
        found += logcheck.unexpected_tracebacks(part.decode(errors="replace"))
    return found


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    rep = yield
    if call.when == "teardown" and not isinstance(item, LeakCheckItem):
        # After teardown, so that what the test's own clean-up made the daemon do is seen;
        # work a daemon finishes later (a release) is blamed on the next test, at worst.
        tracebacks = _new_tracebacks()
        if tracebacks and rep.passed:
            rep.outcome = "failed"
            rep.longrepr = ("a daemon logged an unexpected error during this test (or right after the "
                            "previous one):\n\n" + "\n\n".join(tracebacks))
    if rep.failed and not isinstance(item, LeakCheckItem):
        offsets = item.stash.get(_log_offsets, {})
        for d in STATE.daemons:
            text = d.log_text(offsets.get(id(d), 0))
            if text.strip():
                lines = text.splitlines()[-150:]
                rep.sections.append((f"pydockerd log {d.base.name} ({call.when})", "\n".join(lines)))
    return rep


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def busybox_rootfs() -> Path:
    """The busybox rootfs tar the test image is imported from (also used by import tests)."""
    if not os.path.exists(BUSYBOX):
        pytest.fail("Debian's busybox-static is not installed (/bin/busybox missing)")
    out = subprocess.run(["file", "-L", BUSYBOX], capture_output=True, text=True).stdout
    if out and "statically linked" not in out and "static-pie" not in out:
        pytest.fail(f"{BUSYBOX} is not a static binary: install busybox-static ({out.strip()})")
    d = tmp_base() / "images"
    d.mkdir(exist_ok=True)
    return build_busybox_rootfs(d / "busybox-rootfs.tar")


def _require_root() -> None:
    if os.geteuid() != 0:
        pytest.fail("end-to-end tests start pydockerd and must run as root")
    if shutil.which("docker") is None:
        pytest.fail("the docker CLI is not installed (scripts/test.sh installs it)")


@pytest.fixture(scope="session")
def daemon() -> Iterator[Daemon]:
    """The shared session daemon, with a unix socket and a loopback TCP listener."""
    _require_root()
    d = new_daemon_obj("main", main=True, tcp_port=free_tcp_port())
    d.start()
    yield d
    d.close()


@pytest.fixture(scope="session")
def busybox(daemon: Daemon, busybox_rootfs: Path) -> str:
    """Import the busybox test image into the session daemon once; returns its id."""
    return import_busybox(daemon, busybox_rootfs)


@pytest.fixture
def d(daemon: Daemon, busybox: str) -> Iterator[Daemon]:
    """The session daemon with busybox present; containers and images a test leaves
    behind are removed afterwards so one failing test does not cascade into others."""
    before_ctrs = set(daemon.container_ids()) if daemon.running else set()
    before_imgs = _image_ids(daemon)
    yield daemon
    if not daemon.running:
        return
    daemon.remove_containers(keep=before_ctrs)
    for img in _image_ids(daemon) - before_imgs:
        with contextlib.suppress(OSError):
            daemon.api("DELETE", f"/images/{img}?force=1", timeout=60)


def _image_ids(d: Daemon) -> set[str]:
    with contextlib.suppress(OSError, ValueError):
        r = d.api("GET", "/images/json?all=1")
        if r.status == 200:
            return {i["Id"] for i in r.json()}
    return set()


@pytest.fixture
def new_daemon() -> Iterator[Callable[..., Daemon]]:
    """Factory for extra, independent daemons (own roots, bridge, subnet), closed at test end.

    new_daemon(start=True, tcp=False, **Daemon kwargs)
    """
    _require_root()
    made: list[Daemon] = []

    def make(start: bool = True, tcp: bool = False, **kw: Any) -> Daemon:
        dm = new_daemon_obj("extra", tcp_port=free_tcp_port() if tcp else None, **kw)
        made.append(dm)
        if start:
            dm.start()
        return dm

    yield make
    for dm in made:
        dm.close()


@pytest.fixture
def uname(request: pytest.FixtureRequest) -> Callable[[str], str]:
    """Unique, valid container/image names per test: uname("web") -> "t3f9a2-web"."""
    tag = hashlib.sha1(request.node.nodeid.encode()).hexdigest()[:6]
    return lambda s="c": f"t{tag}-{s}"
