"""What the SDKs (docker-py, dockerode, Portainer-style clients) rely on beyond the CLI: Swarm
endpoints answered as a node outside a swarm, attach and exec taken over without the upgrade
headers, the websocket attach, dockerd's events for stop, kill and rm -f, exec framing by the
start request, rm --link, load errors in the stream, and the races docker-py's tests hit
(kill then rm, commit of a container that is just exiting, rm during a restart policy's
pause). docker-py 7's models: test_dockerpy7.py."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable

import docker
import pytest
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    RejectConnection,
    RejectData,
    Request,
    TextMessage,
)

from tests.e2e.helpers import fmt, wait_for
from tests.e2e.interactive_util import Hijacked, demux, joined
from tests.helpers import Daemon

NOT_A_MANAGER = ('This node is not a swarm manager. Use "docker swarm init" or "docker swarm join" to connect '
                 "this node to swarm and try again.")


def test_swarm_endpoints_answer_as_a_node_outside_a_swarm(d: Daemon) -> None:
    for method, path in (("GET", "/swarm"), ("GET", "/v1.41/nodes"), ("GET", "/services"), ("GET", "/tasks"),
                         ("GET", "/secrets"), ("GET", "/configs"), ("POST", "/services/create"),
                         ("GET", "/services/x/logs"), ("DELETE", "/nodes/x"), ("POST", "/swarm/update"),
                         ("GET", "/swarm/unlockkey")):
        r = d.api(method, path)
        assert (r.status, r.message()) == (503, NOT_A_MANAGER), (method, path, r.status, r.text)
    r = d.api("POST", "/swarm/leave?force=1")
    assert (r.status, r.message()) == (503, "This node is not part of a swarm")
    r = d.api("PUT", "/volumes/some-volume", {"Spec": {}})
    assert (r.status, r.message()) == (503, "volume update only valid for cluster volumes, but swarm is unavailable")
    assert d.api("POST", "/swarm/init", {"ListenAddr": "0.0.0.0:2377"}).status == 503
    r = d.docker("node", "ls", check=False)
    assert r.returncode == 1 and NOT_A_MANAGER in r.stderr
    # docker-py's network tests leave the swarm in their tearDown: with force it takes the 503 for
    # "not in a swarm" (a 404 failed them all); without force it is an error.
    assert d.client.api.leave_swarm(force=True) is True
    with pytest.raises(docker.errors.APIError) as e:
        d.client.api.leave_swarm()
    assert e.value.status_code == 503


def _events(d: Daemon, cid: str, since: str, until_action: str) -> list[str]:
    until = str(time.time() + 0.5)
    out = d.docker("events", "--since", since, "--until", until, "--filter", f"container={cid}",
                   "--format", "{{json .}}").stdout
    seen = []
    for line in out.splitlines():
        e = json.loads(line)
        seen.append(f"kill:{e['Actor']['Attributes']['signal']}" if e["Action"] == "kill" else e["Action"])
    assert until_action in seen, seen
    return seen


def test_stop_kill_and_rm_events_as_dockerd(d: Daemon, uname: Callable[[str], str]) -> None:
    n = uname("ev")
    # A stop the command obeys: kill (SIGTERM), die, stop.
    d.docker("run", "-d", "--name", n, "busybox", "sh", "-c", "trap 'exit 0' TERM; while :; do sleep 0.1; done")
    since = str(time.time() - 1)
    d.docker("stop", "-t", "10", n)
    assert _events(d, n, since, "stop")[-3:] == ["kill:15", "die", "stop"]
    # One it ignores (PID 1 without a handler): the timeout adds SIGKILL before the die.
    n2 = uname("ev2")
    d.docker("run", "-d", "--name", n2, "busybox", "sleep", "300")
    since = str(time.time() - 1)
    d.docker("stop", "-t", "1", n2)
    assert _events(d, n2, since, "stop")[-4:] == ["kill:15", "kill:9", "die", "stop"]
    # restart: the stop's events, then start and restart.
    d.docker("start", n2)
    since = str(time.time())
    d.docker("restart", "-t", "0", n2)
    seen = _events(d, n2, since, "restart")
    assert seen[-6:] == ["kill:15", "kill:9", "die", "stop", "start", "restart"], seen
    # rm -f of a running container: kill (9), die, destroy.
    since = str(time.time() - 1)
    d.docker("rm", "-f", n2)
    assert _events(d, n2, since, "destroy")[-3:] == ["kill:9", "die", "destroy"]


def test_kill_with_sigkill_waits_for_the_exit(d: Daemon, uname: Callable[[str], str]) -> None:
    """docker-py's kill() then remove(): dockerd's SIGKILL kill returns once the container is
    down, whether the signal was named or not; another signal does not wait."""
    for sig in ("", "SIGKILL", "9", "KILL"):
        n = uname(f"k{sig}")
        d.docker("run", "-d", "--name", n, "busybox", "sleep", "300")
        assert d.api("POST", f"/containers/{n}/kill" + (f"?signal={sig}" if sig else "")).status == 204
        r = d.api("DELETE", f"/containers/{n}")
        assert r.status == 204, (sig, r.status, r.text)


def test_rm_of_a_container_between_two_restarts_is_refused(d: Daemon, uname: Callable[[str], str]) -> None:
    n = uname("rp")
    d.docker("run", "-d", "--name", n, "--restart", "always", "busybox", "sh", "-c", "exit 3")
    wait_for(lambda: fmt(d, n, "{{.RestartCount}}") not in ("", "0"), what="a restart")
    # Running or waiting for its next start, a container with a restart policy is refused.
    for _ in range(5):
        r = d.api("DELETE", f"/containers/{n}")
        assert r.status == 409 and "You cannot remove a " in r.message(), r.text
        time.sleep(0.1)
    assert d.api("DELETE", f"/containers/{n}?force=1").status == 204


def test_commit_of_a_container_that_is_exiting(d: Daemon, uname: Callable[[str], str]) -> None:
    """docker-py's test_commit: start `touch /test` and commit at once. A container that exits
    while commit has it paused is not an error (it was a 500 "is not paused")."""
    c = d.client.api
    for i in range(5):
        cid = c.create_container("busybox", ["touch", "/test"], name=uname(f"cm{i}"))["Id"]
        c.start(cid)
        img = c.commit(cid)["Id"]
        assert c.inspect_image(img)["Container"] == cid
        c.remove_image(img)
        c.remove_container(cid, force=True)
    # Unpausing what is not paused is a conflict, as dockerd, not a 500.
    n = uname("np")
    d.docker("run", "-d", "--name", n, "busybox", "sleep", "300")
    assert d.api("POST", f"/containers/{n}/unpause").status == 409


def test_attach_without_upgrade_takes_the_connection_over(d: Daemon, uname: Callable[[str], str]) -> None:
    """dockerode's container.attach({stream, stdin}): no Upgrade header, then stdin written on
    the same connection. dockerd answers a bare 200 raw-stream and reads stdin from it."""
    n = uname("att")
    d.docker("create", "--name", n, "-i", "busybox", "cat")
    with Hijacked(d, f"/containers/{n}/attach?stream=1&stdin=1&stdout=1&stderr=1", upgrade=False) as h:
        assert h.status == 200 and h.headers["content-type"] == "application/vnd.docker.raw-stream"
        assert "content-length" not in h.headers and "transfer-encoding" not in h.headers
        d.docker("start", n)
        h.sock.sendall(b"hello stdin\n")
        out = h.read_until(b"hello stdin\n")
        assert out.startswith(b"\x01\x00\x00\x00")  # framed: no TTY
        h.sock.sendall(b"more\n")
        h.read_until(b"more\n")
    # Output only, as curl asks: the stream until the container ends, then the connection closes.
    m = uname("att2")
    d.docker("create", "--name", m, "busybox", "sh", "-c", "sleep 0.5; echo out; echo err >&2")
    with Hijacked(d, f"/containers/{m}/attach?stream=1&stdout=1&stderr=1", upgrade=False) as h:
        assert h.status == 200
        d.docker("start", m)
        frames = demux(h.read_all())
    assert (joined(frames, 1), joined(frames, 2)) == (b"out\n", b"err\n")
    assert d.api("POST", "/containers/no-such-ctr-x/attach?stream=1&stdout=1").status == 404


def test_exec_start_without_upgrade_reads_stdin(d: Daemon, uname: Callable[[str], str]) -> None:
    """dockerode's exec.start({stdin: true}): the JSON body with its length, then stdin bytes."""
    n = uname("ex")
    d.docker("run", "-d", "--name", n, "busybox", "sleep", "300")
    eid = d.api("POST", f"/containers/{n}/exec", {"Cmd": ["sh", "-c", "read l; echo got:$l; echo e >&2"],
                                                   "AttachStdin": True, "AttachStdout": True,
                                                   "AttachStderr": True}).json()["Id"]
    with Hijacked(d, f"/exec/{eid}/start", {"Detach": False, "Tty": False}, upgrade=False) as h:
        assert h.status == 200 and h.headers["content-type"] == "application/vnd.docker.raw-stream"
        h.sock.sendall(b"abc\n")
        frames = demux(h.read_all())
    assert (joined(frames, 1), joined(frames, 2)) == (b"got:abc\n", b"e\n")
    assert d.api("GET", f"/exec/{eid}/json").json()["ExitCode"] == 0
    # A detached start without upgrade is a complete, empty 200 that ends the connection.
    eid = d.api("POST", f"/containers/{n}/exec", {"Cmd": ["true"]}).json()["Id"]
    with Hijacked(d, f"/exec/{eid}/start", {"Detach": True}, upgrade=False) as h:
        assert (h.status, h.headers.get("content-length"), h.read_all()) == (200, "0", b"")
    # Keep-alive: a plain request before the take-over on the same connection still works.
    sock = socket.socket(socket.AF_UNIX)
    sock.settimeout(20)
    sock.connect(str(d.sock))
    eid = d.api("POST", f"/containers/{n}/exec", {"Cmd": ["echo", "after-ping"], "AttachStdout": True}).json()["Id"]
    body = b'{"Detach":false,"Tty":false}'
    sock.sendall(b"GET /_ping HTTP/1.1\r\nHost: x\r\n\r\n")
    got = b""
    while not (b"\r\n\r\n" in got and got.endswith(b"OK")):
        got += sock.recv(4096)
    sock.sendall(f"POST /exec/{eid}/start HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    sock.close()
    head, _, rest = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and joined(demux(rest), 1) == b"after-ping\n"
    # A head whose blank line is split between two reads, its body and stdin in a third.
    eid = d.api("POST", f"/containers/{n}/exec", {"Cmd": ["sh", "-c", "read l; echo split:$l"], "AttachStdin": True,
                                                   "AttachStdout": True}).json()["Id"]
    sock = socket.socket(socket.AF_UNIX)
    sock.settimeout(20)
    sock.connect(str(d.sock))
    sock.sendall(f"POST /exec/{eid}/start HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 f"Content-Length: {len(body)}\r\n\r".encode())
    time.sleep(0.2)
    sock.sendall(b"\n")
    time.sleep(0.2)
    sock.sendall(body + b"xyz\n")
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    sock.close()
    head, _, rest = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and joined(demux(rest), 1) == b"split:xyz\n"


def test_exec_framing_follows_the_start_request(d: Daemon, uname: Callable[[str], str]) -> None:
    """An exec created with a TTY and started with Tty false (docker-py's exec_start default)
    gets its terminal's output as stdout frames, as dockerd gives it; Tty true gets it raw."""
    n = uname("tty")
    d.docker("run", "-d", "--name", n, "busybox", "sleep", "300")

    def exec_id() -> str:
        return str(d.api("POST", f"/containers/{n}/exec", {"Cmd": ["printf", "yay"], "Tty": True,
                                                           "AttachStdout": True}).json()["Id"])

    with Hijacked(d, f"/exec/{exec_id()}/start", {"Detach": False, "Tty": False}) as h:
        assert demux(h.read_all()) == [(1, b"yay")]
    with Hijacked(d, f"/exec/{exec_id()}/start", {"Detach": False, "Tty": True}) as h:
        assert h.read_all() == b"yay"
    c = d.client.api
    # docker-py reads the 101 through a buffer: output glued to it was lost (the command started
    # before the upgrade was written; now the stream starts first, as with dockerd).
    for _ in range(10):
        assert c.exec_start(c.exec_create(n, "printf fast", tty=True)) == b"fast"
    assert c.exec_start(c.exec_create(n, "sh -c 'echo out; echo err >&2'", tty=True), demux=True) == (
        b"out\r\nerr\r\n", None)


def test_exec_config_keys_ignore_case(d: Daemon, uname: Callable[[str], str]) -> None:
    """docker-py sends `detachKeys` (from ~/.docker/config.json); Go's decoder takes it."""
    n = uname("dk")
    d.docker("run", "-d", "--name", n, "-i", "busybox", "cat")
    eid = d.api("POST", f"/containers/{n}/exec", {"Cmd": ["cat"], "AttachStdin": True, "AttachStdout": True,
                                                   "Tty": True, "detachKeys": "ctrl-p"}).json()["Id"]
    assert d.api("GET", f"/exec/{eid}/json").json()["DetachKeys"] == "ctrl-p"
    with Hijacked(d, f"/exec/{eid}/start", {"Detach": False, "Tty": True}) as h:
        h.sock.sendall(b"\x10")
        h.sock.settimeout(10)
        h.read_all()  # the detach key ends the session
    assert d.api("GET", f"/exec/{eid}/json").json()["Running"] is True
    assert d.api("POST", f"/containers/{n}/exec", {"Cmd": ["cat"], "detachKeys": "nonsense-key"}).status == 400


def test_rm_link(d: Daemon, uname: Callable[[str], str]) -> None:
    db, web = uname("db"), uname("web")
    d.docker("run", "-d", "--name", db, "busybox", "sleep", "300")
    d.docker("create", "--name", web, "--link", f"{db}:data", "busybox", "true")
    r = d.docker("rm", "--link", f"{web}/data")
    assert r.stdout.strip() == f"{web}/data"
    assert fmt(d, web, "{{.HostConfig.Links}}") in ("[]", "<no value>")
    assert {fmt(d, db, "{{.Name}}"), fmt(d, web, "{{.Name}}")} == {f"/{db}", f"/{web}"}
    r = d.docker("rm", "--link", f"{web}/data", check=False)
    assert r.returncode == 1 and "No such container" in r.stderr
    r = d.docker("rm", "--link", web, check=False)
    assert r.returncode == 1 and "cannot remove the default link name" in r.stderr


def test_load_error_comes_in_the_stream(d: Daemon) -> None:
    r = d.api("POST", "/images/load", b"abc", headers={"Content-Type": "application/x-tar"})
    assert r.status == 200
    line = json.loads(r.body.splitlines()[0])
    assert line["error"] and line["errorDetail"]["message"] == line["error"]
    with pytest.raises(docker.errors.ImageLoadError):
        d.client.images.load(b"abc")
    r = d.docker("load", input=b"abc", check=False)
    assert r.returncode == 1 and r.stderr.strip()


class _WsClient:
    """A websocket client on the daemon's unix socket (wsproto does the framing)."""

    def __init__(self, d: Daemon, target: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.settimeout(20)
        self.sock.connect(str(d.sock))
        self.ws = WSConnection(ConnectionType.CLIENT)
        self.sock.sendall(self.ws.send(Request(host="localhost", target=target)))
        self.status = 0
        self.reject_body = b""
        self.messages: list[bytes | str] = []
        self.closed = False
        while not self.status:
            self._pump()

    def _pump(self) -> None:
        data = self.sock.recv(65536)
        self.ws.receive_data(data or None)
        for ev in self.ws.events():
            if isinstance(ev, AcceptConnection):
                self.status = 101
            elif isinstance(ev, RejectConnection):
                self.status = ev.status_code
            elif isinstance(ev, RejectData):
                self.reject_body += ev.data
            elif isinstance(ev, (BytesMessage, TextMessage)):
                self.messages.append(ev.data)
            elif isinstance(ev, CloseConnection):
                self.closed = True
        if not data:
            self.closed = True

    def send(self, data: bytes) -> None:
        self.sock.sendall(self.ws.send(BytesMessage(data=data)))

    def output_until(self, needle: bytes) -> bytes:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            out = b"".join(m if isinstance(m, bytes) else m.encode() for m in self.messages)
            if needle in out or self.closed:
                return out
            self._pump()
        raise AssertionError(f"no {needle!r} in {self.messages!r}")

    def read_to_close(self) -> list[bytes | str]:
        while not self.closed:
            self._pump()
        return self.messages


def test_attach_websocket(d: Daemon, uname: Callable[[str], str]) -> None:
    n = uname("ws")
    d.docker("run", "-d", "--name", n, "-i", "busybox", "sh", "-c", "echo ready; cat")
    ws = _WsClient(d, f"/containers/{n}/attach/ws?stream=1&stdin=1&stdout=1&stderr=1&logs=1")
    assert ws.status == 101
    assert ws.output_until(b"ready\n").startswith(b"ready\n")  # the log, raw: no stdcopy header
    ws.send(b"over websocket\n")
    assert b"over websocket\n" in ws.output_until(b"over websocket\n")
    assert all(isinstance(m, bytes) for m in ws.messages)  # binary messages from API 1.28 on
    ws.sock.close()
    # A TTY container (Portainer's console): its terminal's bytes both ways.
    t = uname("wstty")
    d.docker("run", "-d", "--name", t, "-it", "busybox", "sh")
    tty = _WsClient(d, f"/containers/{t}/attach/ws?stream=1&stdin=1&stdout=1&stderr=1")
    tty.send(b"echo in-$((6*7))\n")
    assert b"in-42" in tty.output_until(b"in-42\r\n")
    tty.sock.close()
    # Before API 1.28 the messages are text.
    m = uname("ws2")
    d.docker("run", "-d", "--name", m, "busybox", "sh", "-c", "echo old-api")
    wait_for(lambda: fmt(d, m, "{{.State.Status}}") == "exited", what="the container to exit")
    old = _WsClient(d, f"/v1.27/containers/{m}/attach/ws?logs=1&stdout=1")
    assert old.read_to_close() == ["old-api\n"]
    # A container that does not exist: refused with dockerd's 404 before the handshake.
    missing = _WsClient(d, "/containers/no-such-ctr-ws/attach/ws?stream=1")
    missing.read_to_close()
    assert missing.status == 404 and b"No such container" in missing.reject_body
