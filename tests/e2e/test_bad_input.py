"""Bad input gets dockerd's status code and a clear message, and leaves nothing half-created."""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Callable
from typing import Any

import pytest

from tests.e2e.helpers import container_mounts, inspect, nothing_created, root_processes
from tests.helpers import Daemon, Response

pytestmark = pytest.mark.e2e

Name = Callable[[str], str]
NAME_RULE = "only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"


def _create(d: Daemon, body: Any, name: str | None = None, raw: bool = False) -> Response:
    path = "/v1.50/containers/create" + (f"?name={urllib.parse.quote(name)}" if name is not None else "")
    if raw:
        return d.api("POST", path, body=body, headers={"Content-Type": "application/json"})
    return d.api("POST", path, body=body)


def _assert_error(r: Response, status: int, contains: str = "") -> str:
    assert r.status == status, f"expected {status}, got {r.status}: {r.text[:500]}"
    if status == 304:
        assert r.body == b""
        return ""
    assert r.headers.get("Content-Type", "").startswith("application/json"), dict(r.headers)
    msg = r.message()
    assert msg, f"no message in error body: {r.text!r}"
    assert "Traceback" not in r.text and "pydantic" not in r.text.lower(), r.text
    assert contains in msg, f"{contains!r} not in {msg!r}"
    return msg


# --------------------------------------------------------------------------- malformed bodies


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b'{"Image": "busybox", "Cmd": ["true"]',  # truncated
        b"",
        b"null",
        b"[]",
        b'"busybox"',
        b"\xff\xfe garbage",
    ],
)
def test_malformed_json(d: Daemon, body: bytes) -> None:
    with nothing_created(d):
        r = _create(d, body, raw=True)
        assert 400 <= r.status < 500, f"{body!r}: {r.status} {r.text[:300]}"
        _assert_error(r, r.status)


@pytest.mark.parametrize(
    "body",
    [
        {"Image": 123},
        {"Image": "busybox", "Env": "A=1"},
        {"Image": "busybox", "Tty": "yes"},
        {"Image": "busybox", "Labels": ["a", "b"]},
        {"Image": "busybox", "Cmd": {"a": 1}},
        {"Image": "busybox", "HostConfig": {"Memory": "lots"}},
        {"Image": "busybox", "HostConfig": {"RestartPolicy": "always"}},
        {"Image": "busybox", "HostConfig": {"Binds": "/a:/b"}},
        {"Image": "busybox", "ExposedPorts": ["80/tcp"]},
        {"Image": "busybox", "StopSignal": "BOGUS"},
        {"Image": "busybox", "StopSignal": "99"},
    ],
)
def test_wrong_field_types(d: Daemon, body: dict[str, Any]) -> None:
    with nothing_created(d):
        r = _create(d, body)
        _assert_error(r, 400)


def test_unknown_fields_are_ignored(d: Daemon) -> None:
    # dockerd ignores fields it does not know (newer clients send more).
    r = _create(d, {"Image": "busybox", "Cmd": ["true"], "SomethingNew": {"x": 1}})
    assert r.status == 201, r.text
    d.api("DELETE", f"/containers/{r.json()['Id']}")


def test_missing_image_field(d: Daemon) -> None:
    with nothing_created(d):
        r = _create(d, {"Cmd": ["true"]})
        assert 400 <= r.status < 500, r.text
        _assert_error(r, r.status)


def test_unknown_image(d: Daemon) -> None:
    with nothing_created(d):
        r = _create(d, {"Image": "cap-nonexistent:nope", "Cmd": ["true"]})
        _assert_error(r, 404, "No such image: cap-nonexistent:nope")


# --------------------------------------------------------------------------- names


@pytest.mark.parametrize("bad", ["bad name!", "a", "-lead", ".dot", "_under", "x/y", "ünï", "a b"])
def test_invalid_names(d: Daemon, bad: str) -> None:
    with nothing_created(d):
        r = _create(d, {"Image": "busybox", "Cmd": ["true"]}, name=bad)
        _assert_error(r, 400, f"Invalid container name ({bad}), {NAME_RULE}")


def test_invalid_name_cli_text(d: Daemon) -> None:
    with nothing_created(d):
        r = d.docker("create", "--name", "cap bad!", "busybox", "true", check=False)
    assert r.returncode == 1
    assert r.stderr.strip() == f"Error response from daemon: Invalid container name (cap bad!), {NAME_RULE}"


def test_leading_slash_name_is_valid(d: Daemon, uname: Name) -> None:
    n = uname("slash")
    r = _create(d, {"Image": "busybox", "Cmd": ["true"]}, name=f"/{n}")
    assert r.status == 201, r.text
    assert inspect(d, n)["Name"] == f"/{n}"


def test_duplicate_name(d: Daemon, uname: Name) -> None:
    n = uname("dup")
    cid = d.docker("create", "--name", n, "busybox", "true").stdout.strip()
    want = (f'Conflict. The container name "/{n}" is already in use by container "{cid}". '
            "You have to remove (or rename) that container to be able to reuse that name.")
    with nothing_created(d):
        r = d.docker("create", "--name", n, "busybox", "true", check=False)
        assert r.returncode == 1 and r.stderr.strip() == f"Error response from daemon: {want}", r
        _assert_error(_create(d, {"Image": "busybox"}, name=n), 409, want)
        r = d.docker("run", "--name", n, "busybox", "true", check=False)
        assert r.returncode == 125 and want in r.stderr


# --------------------------------------------------------------------------- unknown / ambiguous ids


@pytest.mark.parametrize(
    "method,path",
    [
        ("GET", "/containers/cap-nope/json"),
        ("GET", "/containers/cap-nope/logs?stdout=1"),
        ("POST", "/containers/cap-nope/start"),
        ("POST", "/containers/cap-nope/stop"),
        ("POST", "/containers/cap-nope/restart"),
        ("POST", "/containers/cap-nope/kill"),
        ("POST", "/containers/cap-nope/wait"),
        ("POST", "/containers/cap-nope/rename?name=x-y"),
        ("GET", "/containers/cap-nope/top"),
        ("GET", "/containers/cap-nope/changes"),
        ("DELETE", "/containers/cap-nope"),
    ],
)
def test_unknown_container(d: Daemon, method: str, path: str) -> None:
    _assert_error(d.api(method, "/v1.50" + path), 404, "No such container: cap-nope")


@pytest.mark.parametrize(
    "method,path",
    [
        ("GET", "/images/cap-nope:x/json"),
        ("GET", "/images/cap-nope:x/history"),
        ("DELETE", "/images/cap-nope:x"),
        ("POST", "/images/cap-nope:x/tag?repo=foo&tag=bar"),
    ],
)
def test_unknown_image_routes(d: Daemon, method: str, path: str) -> None:
    _assert_error(d.api(method, "/v1.50" + path), 404, "No such image: cap-nope:x")


def test_ambiguous_id_prefix(d: Daemon) -> None:
    # 17 ids over 16 hex digits: two must share their first character.
    ids = [d.docker("create", "busybox", "true").stdout.strip() for _ in range(17)]
    by_first: dict[str, list[str]] = {}
    for cid in ids:
        by_first.setdefault(cid[0], []).append(cid)
    prefix = next(k for k, v in by_first.items() if len(v) > 1)
    r = d.api("GET", f"/v1.50/containers/{prefix}/json")
    assert r.status != 200, "an ambiguous prefix resolved to one container"
    assert 400 <= r.status < 600
    msg = r.message().lower()
    assert "multiple ids found with provided prefix" in msg or "ambiguous" in msg, msg
    assert prefix in r.message()
    r = d.docker("rm", prefix, check=False)
    assert r.returncode == 1
    assert len(d.docker("ps", "-aq").stdout.split()) >= 17, "an ambiguous rm removed something"
    # The full id and a unique longer prefix still work.
    for cid in by_first[prefix]:
        assert d.api("GET", f"/containers/{cid[:12]}/json").json()["Id"] == cid
    for cid in ids:
        d.api("DELETE", f"/containers/{cid}")


# --------------------------------------------------------------------------- restart policies


@pytest.mark.parametrize(
    "policy,needle",
    [
        ({"Name": "sometimes"}, "sometimes"),
        ({"Name": "always", "MaximumRetryCount": 3}, "on-failure"),
        ({"Name": "unless-stopped", "MaximumRetryCount": 1}, "on-failure"),
        ({"Name": "on-failure", "MaximumRetryCount": -1}, "negative"),
    ],
)
def test_invalid_restart_policy(d: Daemon, policy: dict[str, Any], needle: str) -> None:
    with nothing_created(d):
        r = _create(d, {"Image": "busybox", "Cmd": ["true"], "HostConfig": {"RestartPolicy": policy}})
        msg = _assert_error(r, 400)
        assert needle in msg and ("restart" in msg.lower() or "retry" in msg.lower()), msg


def test_invalid_restart_policy_cli(d: Daemon) -> None:
    with nothing_created(d):
        r = d.docker("run", "--restart", "sometimes", "busybox", "true", check=False)
    assert r.returncode == 125 and "sometimes" in r.stderr, r


def test_restart_policy_with_autoremove(d: Daemon) -> None:
    with nothing_created(d):
        r = _create(d, {"Image": "busybox", "Cmd": ["true"],
                        "HostConfig": {"AutoRemove": True, "RestartPolicy": {"Name": "always"}}})
        _assert_error(r, 400)


# --------------------------------------------------------------------------- filters


@pytest.mark.parametrize("route", ["/containers/json", "/images/json", "/containers/prune", "/images/prune"])
def test_invalid_filter(d: Daemon, route: str) -> None:
    method = "POST" if route.endswith("prune") else "GET"
    q = urllib.parse.quote(json.dumps({"bogus": {"1": True}}))
    _assert_error(d.api(method, f"/v1.50{route}?filters={q}"), 400, "Invalid filter 'bogus'")
    r = d.api(method, f"/v1.50{route}?filters={urllib.parse.quote('{not json')}")
    assert r.status == 400, r.text
    _assert_error(r, 400)


def test_invalid_filter_values(d: Daemon) -> None:
    for flt in ({"status": {"sleeping": True}}, {"exited": {"abc": True}}, {"before": {"cap-nope": True}}):
        q = urllib.parse.quote(json.dumps(flt))
        r = d.api("GET", f"/v1.50/containers/json?all=1&filters={q}")
        assert r.status in (400, 404), f"{flt}: {r.status} {r.text[:200]}"
        _assert_error(r, r.status)


def test_invalid_filter_cli(d: Daemon) -> None:
    r = d.docker("ps", "--filter", "bogus=1", check=False)
    assert r.returncode == 1 and r.stderr.strip() == "Error response from daemon: Invalid filter 'bogus'"


# --------------------------------------------------------------------------- state conflicts


def test_stop_stopped_is_304(d: Daemon, uname: Name) -> None:
    n = uname("stopped")
    d.docker("create", "--name", n, "busybox", "true")
    _assert_error(d.api("POST", f"/containers/{n}/stop"), 304)
    d.docker("start", "-a", n)
    _assert_error(d.api("POST", f"/containers/{n}/stop"), 304)
    assert d.docker("stop", n).stdout.strip() == n


def test_start_running_is_304(d: Daemon, uname: Name) -> None:
    n = uname("running")
    d.docker("run", "-d", "--name", n, "busybox", "sleep", "300")
    pid = inspect(d, n)["State"]["Pid"]
    _assert_error(d.api("POST", f"/containers/{n}/start"), 304)
    assert d.docker("start", n).stdout.strip() == n
    assert inspect(d, n)["State"]["Pid"] == pid


def test_rm_running_is_409(d: Daemon, uname: Name) -> None:
    n = uname("rmrun")
    cid = d.docker("run", "-d", "--name", n, "busybox", "sleep", "300").stdout.strip()
    want = (f"You cannot remove a running container {cid}. Stop the container before attempting removal "
            "or force remove")
    _assert_error(d.api("DELETE", f"/containers/{n}"), 409, want)
    assert inspect(d, n)["State"]["Running"] is True


def test_kill_not_running_is_409(d: Daemon, uname: Name) -> None:
    n = uname("killstopped")
    cid = d.docker("create", "--name", n, "busybox", "true").stdout.strip()
    _assert_error(d.api("POST", f"/containers/{n}/kill"), 409,
                  f"Cannot kill container: {n}: Container {cid} is not running")


def test_kill_bad_signal(d: Daemon, uname: Name) -> None:
    n = uname("killbad")
    d.docker("run", "-d", "--name", n, "busybox", "sleep", "300")
    r = d.api("POST", f"/containers/{n}/kill?signal=SIGBOGUS")
    assert r.status == 400, r.text
    _assert_error(r, 400)
    assert inspect(d, n)["State"]["Running"] is True


def test_rename_to_invalid_name(d: Daemon, uname: Name) -> None:
    n = uname("renbad")
    d.docker("create", "--name", n, "busybox", "true")
    _assert_error(d.api("POST", f"/containers/{n}/rename?name=bad%20name!"), 400, "Invalid container name")
    assert inspect(d, n)["Name"] == f"/{n}"


def test_failed_start_leaves_no_mount_or_process(d: Daemon, uname: Name) -> None:
    n = uname("failstart")
    mounts, procs = set(container_mounts(d)), set(root_processes(d))
    cid = d.docker("create", "--name", n, "busybox", "/nonexistent-binary").stdout.strip()
    r = d.api("POST", f"/containers/{cid}/start")
    # dockerd's translateContainerdStartErr: a command that does not exist is the caller's
    # mistake (startInvalidConfigError, an InvalidParameter: 400) and sets exit code 127.
    assert r.status == 400 and "no such file or directory" in r.message(), r.text
    st = inspect(d, n)["State"]
    assert st["Status"] == "created" and st["ExitCode"] == 127 and st["Pid"] == 0
    assert not [m for m in set(container_mounts(d)) - mounts if cid in m], "mount left after failed start"
    assert set(root_processes(d)) <= procs, "monitor left after failed start"
    d.docker("rm", n)
    assert not [m for m in container_mounts(d) if cid in m]
