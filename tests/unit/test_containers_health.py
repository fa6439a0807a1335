"""Healthchecks: configuration (daemon/containers/health_config.py), and the state machine, the
schedule and the probe loop driven by a fake runner (daemon/containers/health.py)."""

from __future__ import annotations

import asyncio

import pytest

from daemon.containers import health, health_config
from daemon.containers.container import Container
from daemon.containers.health import HealthMonitor, ProbeOutcome
from daemon.containers.health_config import ProbeConfig
from daemon.errors import DaemonError, InvalidParameter
from daemon.events import EventBus
from daemon.util.timeutil import now_rfc3339

S = 1_000_000_000


def _cfg(**kw: object) -> ProbeConfig:
    base = dict(cmd=["true"], interval=30.0, timeout=30.0, start_period=0.0, start_interval=5.0, retries=3)
    base.update(kw)
    return ProbeConfig(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize(("hc", "message"), [
    ({"Interval": 1}, "Interval in Healthcheck cannot be less than 1ms"),
    ({"Timeout": -S}, "Timeout in Healthcheck cannot be less than 1ms"),
    ({"StartPeriod": 999_999}, "StartPeriod in Healthcheck cannot be less than 1ms"),
    ({"StartInterval": 5}, "StartInterval in Healthcheck cannot be less than 1ms"),
    ({"Retries": -1}, "Retries in Healthcheck cannot be negative"),
    ({"Interval": 2**63}, "HealthConfig.Healthcheck.Interval"),
    ({"Retries": True}, "HealthConfig.Healthcheck.Retries"),
    ({"Test": "CMD true"}, "Healthcheck.Test"),
    ("x", "Config.Healthcheck"),
])
def test_validate_refuses(hc: object, message: str) -> None:
    with pytest.raises(InvalidParameter, match=message):
        health_config.validate(hc)


def test_validate_accepts() -> None:
    health_config.validate(None)
    health_config.validate({"Test": ["CMD", "true"], "Interval": 1_000_000, "Timeout": 0, "Retries": 0})


def test_merge_takes_unset_fields_from_the_image() -> None:
    image = {"Test": ["CMD-SHELL", "img"], "Interval": 5 * S, "Timeout": 2 * S, "Retries": 4}
    assert health_config.merge(None, image) == image
    assert health_config.merge({}, image) == image
    assert health_config.merge({"Interval": S}, image) == {"Test": ["CMD-SHELL", "img"], "Interval": S,
                                                    "Timeout": 2 * S, "Retries": 4}
    assert health_config.merge({"Test": ["NONE"]}, image)["Test"] == ["NONE"]
    assert health_config.merge({"Test": ["CMD", "x"]}, None) == {"Test": ["CMD", "x"]}
    assert health_config.merge(None, None) is None


def test_probe_config() -> None:
    assert health_config.probe_config({}) is None
    assert health_config.probe_config({"Healthcheck": {"Test": ["NONE"]}}) is None
    assert health_config.probe_config({"Healthcheck": {"Test": ["BOGUS", "x"]}}) is None
    assert health_config.probe_config({"Healthcheck": {"Test": ["CMD"]}}) is None
    cfg = health_config.probe_config({"Healthcheck": {"Test": ["CMD-SHELL", "curl -f x"]}})
    assert cfg == _cfg(cmd=["/bin/sh", "-c", "curl -f x"])
    cfg = health_config.probe_config({"Shell": ["/bin/bash", "-ec"], "Healthcheck": {
        "Test": ["CMD-SHELL", "true"], "Interval": S // 2, "Timeout": 3 * S, "StartPeriod": 10 * S,
        "StartInterval": S, "Retries": 1}})
    assert cfg == ProbeConfig(cmd=["/bin/bash", "-ec", "true"], interval=0.5, timeout=3.0, start_period=10.0,
                              start_interval=1.0, retries=1)
    assert health_config.probe_config({"Healthcheck": {"Test": ["CMD", "a", "b"]}}).cmd == ["a", "b"]


def test_record_state_machine() -> None:
    cfg = _cfg(retries=2, start_period=10.0)
    h: dict = {"Status": "starting", "FailingStreak": 0, "Log": []}
    bad = {"ExitCode": 1, "Output": "", "Start": "", "End": ""}
    good = {"ExitCode": 0, "Output": "ok", "Start": "", "End": ""}
    health.record(h, bad, cfg, since_start_at_probe=3.0)  # within the start period: not counted
    assert h["Status"] == "starting" and h["FailingStreak"] == 0
    health.record(h, bad, cfg, since_start_at_probe=11.0)
    assert h["Status"] == "starting" and h["FailingStreak"] == 1
    health.record(h, bad, cfg, since_start_at_probe=12.0)
    assert h["Status"] == "unhealthy" and h["FailingStreak"] == 2
    health.record(h, good, cfg, since_start_at_probe=13.0)
    assert h["Status"] == "healthy" and h["FailingStreak"] == 0
    health.record(h, bad, cfg, since_start_at_probe=3.0)  # healthy: the start period no longer shields
    assert h["Status"] == "healthy" and h["FailingStreak"] == 1
    for _ in range(5):
        health.record(h, dict(good, Output="last"), cfg, since_start_at_probe=20.0)
    assert len(h["Log"]) == 5 and all(e["Output"] == "last" for e in h["Log"])


def test_next_delay_uses_start_interval_only_while_starting_in_the_start_period() -> None:
    cfg = _cfg(interval=30.0, start_period=60.0, start_interval=2.0)
    assert health.next_delay(cfg, 1.0, "starting") == 2.0
    assert health.next_delay(cfg, 1.0, "healthy") == 30.0
    assert health.next_delay(cfg, 61.0, "starting") == 30.0
    assert health.next_delay(_cfg(), 0.0, "starting") == 30.0


@pytest.mark.parametrize(("seconds", "text"), [
    (1, "1s"), (0.5, "500ms"), (1.5, "1.5s"), (30, "30s"), (90, "1m30s"), (3600, "1h0m0s"), (0.0015, "1.5ms"),
    (0, "0s")])
def test_go_duration(seconds: float, text: str) -> None:
    assert health_config.go_duration(seconds) == text


def test_result_entry() -> None:
    e = health.result_entry(ProbeOutcome(exit_code=0, output=b"x" * 10, truncated=True), 1.0, 2.5, 30)
    assert e["ExitCode"] == 0 and e["Output"] == "x" * 10 + "..."
    assert e["Start"] == "1970-01-01T00:00:01.000000000Z" and e["End"] == "1970-01-01T00:00:02.500000000Z"
    e = health.result_entry(ProbeOutcome(exit_code=137, output=b"", timed_out=True), 1.0, 2.0, 0.25)
    assert e == {"Start": e["Start"], "End": e["End"], "ExitCode": -1,
                 "Output": "Health check exceeded timeout (250ms)"}
    e = health.result_entry(ProbeOutcome(exit_code=137, output=b"partial\xff", timed_out=True), 1.0, 2.0, 2)
    assert e["Output"] == "Health check exceeded timeout (2s): partial\ufffd"


def test_status_texts() -> None:
    assert health.status_of({}) == "none"
    assert health.status_of({"Health": {"Status": ""}}) == "unhealthy"
    assert health.status_text({"Status": "starting"}) == "health: starting"
    assert health.status_text({"Status": "healthy"}) == "healthy"


class FakeRunner:
    def __init__(self, codes: list[int]) -> None:
        self.codes = codes
        self.running = 0
        self.most = 0
        self.calls = 0

    async def run_probe(self, cid: str, cmd: list[str], timeout: float, output_limit: int) -> ProbeOutcome:
        self.calls += 1
        self.running += 1
        self.most = max(self.most, self.running)
        try:
            await asyncio.sleep(0.01)
            code = self.codes[min(self.calls - 1, len(self.codes) - 1)]
            if code == -99:
                raise DaemonError("Container x is not running")
            return ProbeOutcome(exit_code=code, output=b"out")
        finally:
            self.running -= 1


class RecordingBus(EventBus):
    def __init__(self) -> None:
        super().__init__()
        self.actions: list[str] = []

    def publish(self, type_: str, action: str, actor_id: str, attributes: dict[str, str] | None = None) -> None:
        self.actions.append(action)
        super().publish(type_, action, actor_id, attributes)


def _container(**hc: object) -> Container:
    c = Container(id="c" * 64, name="/web", created=now_rfc3339(), path="sleep", args=["1"],
                  config={"Image": "busybox", "Healthcheck": {"Test": ["CMD", "true"], "Interval": 2_000_000,
                                                              **hc}},
                  host_config={}, image_id="sha256:x")
    c.state.update(Running=True, Status="running", StartedAt=now_rfc3339())
    return c


def test_monitor_runs_probes_one_at_a_time_and_reports() -> None:
    async def scenario() -> None:
        events = RecordingBus()
        persisted: list[str] = []

        async def persist(c: Container) -> None:
            persisted.append(c.state["Health"]["Status"])

        runner = FakeRunner([1, 0, 0, 2, 2, 2, -99])
        mon = HealthMonitor(runner=runner, events=events, persist=persist)
        c = _container(Retries=2)
        mon.started(c)
        assert c.state["Health"]["Status"] == "starting" and mon.probing(c.id)
        for _ in range(300):
            await asyncio.sleep(0.01)
            if c.state["Health"]["Status"] == "unhealthy":
                break
        assert persisted[:2] == ["healthy", "unhealthy"], persisted
        assert runner.most == 1
        log = c.state["Health"]["Log"]
        assert len(log) == 5 and log[-1]["Output"] == "out"
        await mon.stopped(c)
        assert not mon.probing(c.id) and c.state["Health"]["Status"] == "unhealthy"
        calls = runner.calls
        await asyncio.sleep(0.05)
        assert runner.calls == calls  # no probe after stop
        # A restart begins again from "starting"; a probe that cannot start is a failure (-1).
        mon.started(c)
        assert c.state["Health"]["Status"] == "starting"
        await asyncio.sleep(0.1)
        assert any(e["ExitCode"] == -1 and "not running" in e["Output"] for e in c.state["Health"]["Log"])
        await mon.shutdown()
        assert not mon.probing(c.id)
        assert events.actions[:2] == ["health_status: healthy", "health_status: unhealthy"], events.actions

    asyncio.run(scenario())


def test_monitor_ignores_containers_without_healthcheck() -> None:
    async def scenario() -> None:
        async def persist(c: Container) -> None:
            return None

        mon = HealthMonitor(runner=FakeRunner([0]), events=EventBus(), persist=persist)
        c = _container()
        c.config["Healthcheck"] = {"Test": ["NONE"]}
        mon.started(c)
        assert "Health" not in c.state and not mon.probing(c.id)
        await mon.stopped(c)
        assert "Health" not in c.state

    asyncio.run(scenario())


@pytest.mark.parametrize(("args", "expected"), [
    ("--interval=5s --retries=3 CMD curl -f http://x || exit 1",
     {"Test": ["CMD-SHELL", "curl -f http://x || exit 1"], "Interval": 5 * S, "Retries": 3}),
    ('CMD ["wget", "-q", "x"]', {"Test": ["CMD", "wget", "-q", "x"]}),
    ("none", {"Test": ["NONE"]}),
    ("--timeout=1m30s --start-period=0 --start-interval=500ms cmd true",
     {"Test": ["CMD-SHELL", "true"], "Timeout": 90 * S, "StartInterval": S // 2}),
])
def test_parse_instruction(args: str, expected: dict) -> None:
    assert health_config.parse_instruction(args) == expected


@pytest.mark.parametrize(("args", "message"), [
    ("FOO x", 'Unknown type "FOO" in HEALTHCHECK (try CMD)'),
    ("NONE x", "HEALTHCHECK NONE takes no arguments"),
    ("CMD", "Missing command after HEALTHCHECK CMD"),
    ("--interval 5s CMD x", "Missing a value on flag: interval"),
    ("--bogus=1 CMD x", "Unknown flag: bogus"),
    ("--retries=-1 CMD x", "--retries cannot be negative (-1)"),
    ("--retries=x CMD x", 'strconv.ParseInt: parsing "x": invalid syntax'),
    ("--interval=1us CMD x", 'Interval "interval" cannot be less than 1ms'),
    ("--interval=5 CMD x", 'time: missing unit in duration "5"'),
    ("--interval=5q CMD x", 'time: invalid duration "5q"'),
    ("", "HEALTHCHECK requires at least one argument"),
])
def test_parse_instruction_refuses(args: str, message: str) -> None:
    with pytest.raises(InvalidParameter) as e:
        health_config.parse_instruction(args)
    assert e.value.message == message


@pytest.mark.parametrize(("text", "ns"), [("0", 0), ("1s", S), ("1.5s", 3 * S // 2), ("2m3s", 123 * S),
                                          ("300ms", 3 * S // 10), ("1h", 3600 * S), ("10us", 10_000),
                                          ("7ns", 7), ("-1s", -S)])
def test_parse_go_duration(text: str, ns: int) -> None:
    assert health_config.parse_go_duration(text) == ns
