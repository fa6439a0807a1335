"""docker-py's own integration tests as a conformance check of pydockerd.

Starts a dedicated pydockerd from this work tree with the e2e harness (its own temp roots,
socket, bridge and unrouted /24; tests/helpers.py), imports the busybox test image, runs
run.sh (docker-py 6.1.3's tests/integration, downloaded at run time) against it, and
compares what passed with baseline-passing.txt: the tests that pass against dockerd 20.10
on this kind of machine. The check fails when a baseline test fails, unless
expected-failures.txt says it waits for a feature another issue brings. A baseline test
that fails is run once more on its own before it counts: the machine is shared and
docker-py's tests have tight timing (flaky-on-reference.txt lists two that flake on dockerd
itself). The session ends with the suite's leak check.

    python -m tests.conformance.dockerpy.check [--host unix:///sock] [-- extra pytest args]

--host runs against a daemon that is already running (it must be dedicated to the run)
instead of starting one. Output files are in $OUT (default: a temp dir, kept on failure).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests import leakcheck
from tests.helpers import (
    EXTRA_BRIDGE_PREFIX,
    MAIN_BRIDGE_PREFIX,
    Daemon,
    build_busybox_rootfs,
    import_busybox,
    new_daemon_obj,
    tmp_base,
)

HERE = Path(__file__).resolve().parent


def read_ids(path: Path) -> list[str]:
    """Test ids of a list file: the first tab-separated field, blank lines and # comments skipped."""
    ids = []
    for line in path.read_text().splitlines():
        line = line.split("\t", 1)[0].strip()
        if line and not line.startswith("#"):
            ids.append(line)
    return ids


def run_dockerpy(env: dict[str, str], out: Path, extra: list[str], only: list[str] | None = None) -> set[str]:
    env = dict(env, OUT=str(out))
    if only:
        env["DOCKERPY_TESTS"] = " ".join(only)
    subprocess.run(["bash", str(HERE / "run.sh"), *extra], env=env, check=True, stdin=subprocess.DEVNULL)
    passed = out / "passed.txt"
    return set(read_ids(passed)) if passed.exists() else set()


def compare(baseline: list[str], expected: set[str], passed: set[str]) -> tuple[list[str], list[str], list[str]]:
    """(baseline tests that failed and must not, expected failures that failed, expected ones that passed)."""
    failed = [t for t in baseline if t not in passed]
    return (
        [t for t in failed if t not in expected],
        [t for t in failed if t in expected],
        [t for t in baseline if t in expected and t in passed],
    )


def check(env: dict[str, str], out: Path, extra: list[str]) -> bool:
    baseline = read_ids(HERE / "baseline-passing.txt")
    expected = set(read_ids(HERE / "expected-failures.txt"))
    t0 = time.monotonic()
    passed = run_dockerpy(env, out, extra)
    bad, _, _ = compare(baseline, expected, passed)
    if bad:
        print(f"dockerpy: rerunning {len(bad)} failed baseline test(s) once: {' '.join(bad)}", flush=True)
        rerun_out = out / "rerun"
        rerun_out.mkdir(exist_ok=True)
        passed |= run_dockerpy(env, rerun_out, extra, only=bad)
    bad, waiting, now_passing = compare(baseline, expected, passed)
    n_pass = sum(1 for t in baseline if t in passed)
    print(f"dockerpy: {n_pass}/{len(baseline)} baseline tests passed in {time.monotonic() - t0:.0f}s "
          f"({len(waiting)} expected to fail until their issue lands)")
    for t in now_passing:
        print(f"dockerpy: {t} passes now: remove it from expected-failures.txt")
    for t in bad:
        print(f"dockerpy: FAILED {t}")
    return not bad


def remove_networks(daemon: Daemon) -> list[str]:
    """Remove the networks docker-py's tests left (a failed test skips its tearDown). A daemon
    keeps its networks' bridges when it stops, as dockerd does, so they would outlive the run;
    returns a problem line for each one that could not be removed."""
    problems = []
    r = daemon.api("GET", "/networks")
    for net in r.json() if r.status == 200 else []:
        if net["Name"] in ("bridge", "host", "none"):
            continue
        if daemon.api("DELETE", f"/networks/{net['Id']}").status not in (204, 404):
            problems.append(f"network {net['Name']} could not be removed")
    return problems


def ours(leak: str, daemon: Daemon, roots: list[str]) -> bool:
    """Whether a leak-check finding belongs to this run (other sessions on the host start and
    stop daemons and containers at the same time; their objects are theirs to report)."""
    marks = [*roots, daemon.bridge, f"pydockerd-test-{daemon.base.name}-{os.getpid()}", *daemon.seen_ids]
    if any(m in leak for m in marks):
        return True
    if leak.startswith("process "):
        pid = leak.split()[1]
        try:
            cgroups = Path(f"/proc/{pid}/cgroup").read_text()
        except OSError:
            return False
        return any(m in cgroups for m in marks)
    return False


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", help="run against this running daemon instead of starting one")
    ap.add_argument("pytest_args", nargs="*", help="extra arguments for docker-py's pytest run")
    args = ap.parse_args()
    out = Path(os.environ.get("OUT") or tempfile.mkdtemp(prefix="dockerpy-conformance-"))
    out.mkdir(parents=True, exist_ok=True)
    if args.host:
        env = dict(os.environ, DOCKER_HOST=args.host)
        ok = check(env, out, args.pytest_args)
        print(f"dockerpy: output in {out}")
        return 0 if ok else 1

    if os.geteuid() != 0:
        print("the conformance check starts pydockerd and must run as root", file=sys.stderr)
        return 2
    baseline = leakcheck.Snapshot.take()
    daemon: Daemon = new_daemon_obj("dockerpy", main=True)
    ok = False
    try:
        daemon.start()
        rootfs = build_busybox_rootfs(tmp_base() / "busybox-rootfs.tar")
        import_busybox(daemon, rootfs)
        ok = check(daemon.env, out, args.pytest_args)
    finally:
        problems: list[str] = []
        if daemon.running:
            problems += [f"container {c} could not be removed" for c in daemon.remove_containers()]
            problems += remove_networks(daemon)
        problems += daemon.close()
        roots = [str(tmp_base())]
        leaks: list[str] = []
        for _ in range(20):
            leaks = [leak for leak in leakcheck.find_leaks(baseline, roots, (MAIN_BRIDGE_PREFIX, EXTRA_BRIDGE_PREFIX),
                                                           daemon.seen_ids) if ours(leak, daemon, roots)]
            if not leaks:
                break
            time.sleep(0.25)
        for p in problems + leaks:
            print(f"dockerpy: LEAK {p}")
        ok = ok and not problems and not leaks
        shutil.copyfile(daemon.log_path, out / "daemon.log")
        base = os.path.realpath(tmp_base())
        # Never rm -rf through a mount: a leaked bind mount could point at host files.
        if not any(m == base or m.startswith(base + "/") for m in leakcheck.mount_points()):
            subprocess.run(["rm", "-rf", "--one-file-system", base], capture_output=True)
    if ok and "OUT" not in os.environ:
        shutil.rmtree(out, ignore_errors=True)
    else:
        print(f"dockerpy: output in {out}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
