"""Unit tests for the HostConfig runtime options: spec fields, --group-add, json-file rotation,
create-time validation and reading rotated logs."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from daemon.containers import runtime_options
from daemon.containers import spec as container_spec
from daemon.containers.container import Container
from daemon.containers.logs import read_log
from daemon.errors import InvalidParameter
from runtime import jsonlog, spec, users

BASE = {"id": "a" * 64, "rootfs": "/r", "args": ["sh"]}


def test_spec_defaults_and_fields() -> None:
    s = spec.normalize(BASE)
    assert (s["readonly_rootfs"], s["rlimits"], s["group_add"], s["oom_score_adj"]) == (False, [], [], None)
    assert (s["pid_ns"], s["ipc_ns"], s["devices"], s["log_max_size"], s["log_max_file"]) == ("new", "new", [], 0, 1)
    s = spec.normalize({**BASE, "rlimits": [{"type": "nofile", "soft": 1, "hard": -1}], "pid_ns": "host",
                        "ipc_ns": "/proc/1/ns/ipc", "oom_score_adj": -5,
                        "devices": [{"source": "/dev/null", "destination": "/dev/x"}]})
    assert s["rlimits"] == [{"type": "nofile", "soft": 1, "hard": -1}] and s["oom_score_adj"] == -5


@pytest.mark.parametrize("bad", [
    {"rlimits": [{"type": "bogus", "soft": 1, "hard": 1}]},
    {"rlimits": [{"type": "nofile", "soft": 3, "hard": 2}]},
    {"oom_score_adj": 1001},
    {"pid_ns": "relative"},
    {"devices": [{"source": "dev/null", "destination": "/dev/x"}]},
    {"log_max_file": 0},
])
def test_spec_rejects(bad: dict) -> None:
    with pytest.raises(spec.SpecError):
        spec.normalize({**BASE, **bad})


def test_group_add(tmp_path: Path) -> None:
    passwd = tmp_path / "passwd"
    group = tmp_path / "group"
    passwd.write_text("root:x:0:0:root:/root:/bin/sh\n")
    group.write_text("root:x:0:\naudio:x:29:\nstaff:x:50:root\n")
    ident = users.resolve("root", str(passwd), str(group), extra_groups=["audio", "777", "50"])
    assert ident.groups == [0, 50, 29, 777]
    with pytest.raises(users.UserError, match="Unable to find group nope"):
        users.resolve("", str(passwd), str(group), extra_groups=["nope"])


def test_jsonlog_rotation(tmp_path: Path) -> None:
    path = tmp_path / "c-json.log"
    log = jsonlog.JsonLog(str(path), max_size=1000, max_file=3)
    for i in range(100):
        log.write("stdout", f"{i:03d} {'x' * 40}\n".encode())
    log.close()
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["c-json.log", "c-json.log.1", "c-json.log.2"]
    seen = []
    for name in ("c-json.log.2", "c-json.log.1", "c-json.log"):
        data = (tmp_path / name).read_bytes()
        assert len(data) < 1000 + 120
        seen += [int(json.loads(line)["log"][:3]) for line in data.splitlines()]
    assert seen == list(range(seen[0], 100))


def test_jsonlog_single_file_truncates(tmp_path: Path) -> None:
    path = tmp_path / "log"
    log = jsonlog.JsonLog(str(path), max_size=500, max_file=1)
    log.write("stdout", b"".join(f"{i:03d} {'y' * 40}\n".encode() for i in range(50)))
    log.close()
    assert [p.name for p in tmp_path.iterdir()] == ["log"] and path.stat().st_size < 500 + 120


def test_read_log_across_rotated_files(tmp_path: Path) -> None:
    path = tmp_path / "c-json.log"
    log = jsonlog.JsonLog(str(path), max_size=600, max_file=4)
    for i in range(40):
        log.write("stdout", f"{i:02d} {'z' * 30}\n".encode())
    log.close()

    async def collect(tail: int | None) -> list[int]:
        it = read_log(path, follow=False, tail=tail, since=0, until=None, stdout=True, stderr=True,
                      is_running=lambda: False)
        return [int(rec["log"][:2]) async for batch in it for rec in batch]

    everything = asyncio.run(collect(None))
    assert everything == list(range(everything[0], 40)) and everything[0] > 0
    assert asyncio.run(collect(15)) == list(range(25, 40))


@pytest.mark.parametrize(("hc", "message"), [
    ({"SecurityOpt": ["bogus"]}, 'invalid --security-opt 1: "bogus"'),
    ({"SecurityOpt": ["seccomp:x:y", "apparmor=z", "foo=1"]}, 'invalid --security-opt 2: "foo=1"'),
    ({"Ulimits": [{"Name": "nofile", "Soft": 5, "Hard": 4}]}, "soft limit must be less than or equal"),
    ({"OomScoreAdj": -1001}, "range for oom score adj is [-1000, 1000]"),
    ({"PidMode": "bogus"}, "Invalid PID mode: bogus"),
    ({"Devices": [{"PathOnHost": "/dev/null", "CgroupPermissions": "rwx"}]}, "invalid device mode: rwx"),
    ({"LogConfig": {"Type": "syslogx"}}, "no log driver named 'syslogx'"),
    ({"LogConfig": {"Type": "none", "Config": {"max-size": "1m"}}}, "unknown log opt 'max-size' for none"),
])
def test_validate_refuses(hc: dict, message: str) -> None:
    with pytest.raises(InvalidParameter) as exc:
        runtime_options.validate(hc)
    assert message in exc.value.message


def _spec_for(hc: dict) -> dict:
    c = Container(id="b" * 64, name="/x", created="", path="sh", args=[], config={"Hostname": "h"},
                  host_config=hc, image_id="")
    prepared = container_spec.Prepared(rootfs=Path("/r"), name_files={k: Path(f"/f/{k}") for k in
                                       ("hostname", "hosts", "resolv")}, log_path=Path("/l/log"),
                                       user_mounts=[], namespaces=container_spec.namespaces(c, lambda ref: c))
    return dict(container_spec.build(c, prepared, netns=None, link_env=[], init_path=None,
                                     confinement=container_spec.Confinement(seccomp=None, cgroup_procs=[],
                                                                            cgroup_hierarchies=[])))


def test_spec_fields() -> None:
    hc = {"ReadonlyRootfs": True, "SecurityOpt": ["no-new-privileges:true"], "PidMode": "host",
          "LogConfig": {"Type": "json-file", "Config": {"max-size": "10k", "max-file": "3"}}}
    runtime_options.validate(hc)
    fields = _spec_for(hc)
    assert fields["readonly_rootfs"] and fields["no_new_privileges"] and fields["pid_ns"] == "host"
    assert (fields["log_max_size"], fields["log_max_file"], fields["ipc_ns"]) == (10240, 3, "new")
    assert fields["log_path"] == "/l/log"
    none = {"LogConfig": {"Type": "none"}}
    runtime_options.validate(none)
    assert _spec_for(none)["log_path"] == ""
    assert runtime_options.parse_size("1.5m") == 1572864
