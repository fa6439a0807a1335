"""`docker exec`: exec instances (create, start, inspect, resize) in a running container.

The process itself is started by runtime/exec (it enters the container's namespaces and
becomes the command); its stdio are pipes or a pty owned by the daemon, because the
exec's stream goes through the hijacked connection of `POST /exec/{id}/start`.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from daemon.containers import container_config, runtime_options
from daemon.containers.container import Container
from daemon.containers.health import ProbeOutcome
from daemon.containers.registry import ContainerRegistry
from daemon.containers.seccomp import SeccompProfiles
from daemon.errors import Conflict, InvalidParameter, NotFound
from daemon.events import EventBus
from daemon.util.gojson import fold_keys
from runtime.cgroups import Cgroups
from runtime.execclient import ExecProcess, spawn_exec
from runtime.launcher import ZygoteLauncher

log = logging.getLogger("pydockerd.exec")
# moby's ExecConfig (api/types/container/exec.go): what POST /containers/{id}/exec reads.
EXEC_CONFIG_FIELDS = ("User", "Privileged", "Tty", "ConsoleSize", "AttachStdin", "AttachStderr", "AttachStdout",
                      "DetachKeys", "Env", "WorkingDir", "Cmd")
_KEEP_FINISHED = 256  # exited exec instances kept for inspection, per daemon
_KILL_WAIT = 10.0  # seconds a killed probe has to be gone before it is given up on
_CHUNK = 1 << 16
_EXEC_FAILED = b"OCI runtime exec failed: "


@dataclass
class ExecInstance:
    id: str
    container_id: str
    cmd: list[str]
    tty: bool
    attach_stdin: bool
    attach_stdout: bool
    attach_stderr: bool
    env: list[str]
    user: str
    workdir: str
    privileged: bool
    detach_keys: str
    console_size: list[int] | None
    running: bool = False
    started: bool = False
    exit_code: int | None = None
    pid: int = 0
    process: ExecProcess | None = None
    done: asyncio.Event = field(default_factory=asyncio.Event)

    def inspect(self) -> dict[str, Any]:
        return {
            "ID": self.id, "Running": self.running, "ExitCode": self.exit_code,
            "ProcessConfig": {"tty": self.tty, "entrypoint": self.cmd[0], "arguments": self.cmd[1:],
                              "privileged": self.privileged, "user": self.user},
            "OpenStdin": self.attach_stdin, "OpenStderr": self.attach_stderr, "OpenStdout": self.attach_stdout,
            "CanRemove": False, "ContainerID": self.container_id, "DetachKeys": self.detach_keys,
            "Pid": self.pid,
        }


class ExecService:
    def __init__(self, registry: ContainerRegistry, events: EventBus, cgroups: Cgroups, seccomp: SeccompProfiles,
                 launcher: ZygoteLauncher | None = None, *, link_env: Callable[[Container], list[str]]) -> None:
        self.registry = registry
        self.events = events
        self.cgroups = cgroups
        self.seccomp = seccomp
        self.launcher = launcher
        self.link_env = link_env  # the legacy --link variables, as of now (dockerd computes them per exec)
        self.execs: dict[str, ExecInstance] = {}

    def create(self, ref: str, body: Any) -> str:
        c = self.registry.get(ref)
        if not isinstance(body, dict):
            raise InvalidParameter("invalid JSON: expected an object")
        body = fold_keys(body, EXEC_CONFIG_FIELDS)
        if not c.running:
            raise Conflict(f"Container {c.id} is not running")
        if c.state["Paused"]:
            raise Conflict(f"Container {c.id} is paused, unpause the container before exec")
        if c.state["Restarting"]:
            raise Conflict(f"Container {c.id} is restarting, wait until the container is running")
        cmd = body.get("Cmd")
        if isinstance(cmd, str):  # ExecConfig.Cmd is a plain []string in dockerd, not a StrSlice
            raise InvalidParameter("json: cannot unmarshal string into Go struct field ExecConfig.Cmd of type []string")
        if not cmd or not isinstance(cmd, list) or not all(isinstance(a, str) for a in cmd):
            raise InvalidParameter("No exec command specified")
        env = body.get("Env") or []
        if not isinstance(env, list) or not all(isinstance(e, str) for e in env):
            raise InvalidParameter("invalid Env: expected a list of strings")
        workdir = body.get("WorkingDir") or ""
        if workdir and not workdir.startswith("/"):
            raise InvalidParameter(f"the working directory '{workdir}' is invalid, it needs to be an absolute path")
        console = body.get("ConsoleSize")
        if console is not None and (not isinstance(console, list) or len(console) != 2
                                    or not all(isinstance(v, int) and v >= 0 for v in console)):
            raise InvalidParameter("invalid ConsoleSize: expected [height, width]")
        ex = ExecInstance(
            id=secrets.token_hex(32), container_id=c.id, cmd=cmd, tty=bool(body.get("Tty")),
            attach_stdin=bool(body.get("AttachStdin")), attach_stdout=bool(body.get("AttachStdout")),
            attach_stderr=bool(body.get("AttachStderr")), env=env, user=str(body.get("User") or ""),
            workdir=workdir, privileged=bool(body.get("Privileged")),
            detach_keys=str(body.get("DetachKeys") or ""), console_size=console)
        self._trim()
        self.execs[ex.id] = ex
        self.events.publish("container", f"exec_create: {' '.join(cmd)}", c.id,
                                       c.event_attrs(execID=ex.id))
        return ex.id

    def forget_container(self, c: Container) -> None:
        """A removed container's exec instances go with it, as in dockerd (and with them their
        processes' pipes and readers: ~3 KiB each)."""
        for e in [e for e in self.execs.values() if e.container_id == c.id]:
            del self.execs[e.id]

    def _trim(self) -> None:
        # Execs of removed containers go with them, as in dockerd (created-but-never-started
        # ones stayed for good); of the finished ones the newest few stay for inspection.
        for e in [e for e in self.execs.values() if self.registry.find(e.container_id) is None]:
            del self.execs[e.id]
        finished = [e for e in self.execs.values() if e.exit_code is not None]
        for e in finished[:max(0, len(finished) - _KEEP_FINISHED)]:
            del self.execs[e.id]

    def get(self, exec_id: str) -> ExecInstance:
        ex = self.execs.get(exec_id)
        if ex is None:
            raise NotFound(f"No such exec instance: {exec_id}")
        return ex

    def check_start(self, exec_id: str) -> ExecInstance:
        """The exec, if it could start now; raises what start() would refuse it with."""
        ex = self.get(exec_id)
        if ex.started:
            state = "is already running" if ex.running else "has already run"
            raise Conflict(f"Error: Exec command {ex.id} {state}")
        c = self.registry.get(ex.container_id)
        if not c.running:
            raise Conflict(f"Container {c.id} is not running")
        if c.state["Paused"]:
            raise Conflict(f"Container {c.id} is paused, unpause the container before exec")
        return ex

    async def start(self, exec_id: str, tty: bool | None = None) -> ExecInstance:
        """Starts the process (stdio not yet pumped); raises before anything is running."""
        ex = self.check_start(exec_id)
        c = self.registry.get(ex.container_id)
        if tty is not None:
            ex.tty = ex.tty or tty
        ex.started = True
        # As dockerd's CreateDaemonEnvironment: HOSTNAME (and TERM with a tty) first, the --link
        # variables, then the container's environment, then the exec's own; "NAME" alone (unset
        # on the client) is no variable at all.
        base = [f"HOSTNAME={c.config.get('Hostname') or c.id[:12]}"] + (["TERM=xterm"] if ex.tty else [])
        base += self.link_env(c)
        merged: dict[str, str] = {}  # a later value replaces an earlier one in its place
        for e in [*base, *(c.config.get("Env") or []), *ex.env]:
            if "=" in e:
                merged[e.split("=", 1)[0]] = e
        env = list(merged.values())
        hc = c.host_config
        privileged = ex.privileged or bool(hc.get("Privileged"))
        # The container's filter whatever the exec asks, as runc applies it to every process.
        caps = container_config.capabilities(hc)
        program = (self.seccomp.program(hc, caps) if self.seccomp.ready(hc, caps)  # no thread hop when cached
                   else await asyncio.to_thread(self.seccomp.program, hc, caps))
        spec = {
            "pid": c.state["Pid"],
            "args": ex.cmd,
            "env": env,
            "cwd": ex.workdir or c.config.get("WorkingDir") or "/",
            "user": ex.user or c.config.get("User") or "",
            "tty": ex.tty,
            "open_stdin": ex.attach_stdin,
            "console_size": ex.console_size,
            "capabilities": container_config.capabilities({**hc, "Privileged": privileged}),
            "privileged": privileged,
            "cgroup_procs": self.cgroups.join_files(c.id),
            # What dockerd's exec process inherits from the container's spec.
            "no_new_privileges": runtime_options.no_new_privileges(hc),
            "rlimits": runtime_options.rlimits(hc),
            "group_add": list(hc.get("GroupAdd") or []),
            "seccomp": base64.b64encode(program).decode() if program else "",
        }
        try:
            ex.process = await spawn_exec(spec, self.launcher)
        except Exception:
            ex.started = False
            raise
        ex.running = True
        ex.pid = ex.process.pid
        c.exec_ids.append(ex.id)
        self.events.publish("container", f"exec_start: {' '.join(ex.cmd)}", c.id,
                                       c.event_attrs(execID=ex.id))
        asyncio.create_task(self._reap(ex, c.id))
        return ex

    async def _reap(self, ex: ExecInstance, cid: str) -> None:
        assert ex.process is not None
        code = await ex.process.wait()
        ex.exit_code = code
        ex.running = False
        ex.done.set()
        c = self.registry.find(cid)
        if c is not None:
            if ex.id in c.exec_ids:
                c.exec_ids.remove(ex.id)
            self.events.publish("container", "exec_die", cid,
                                           c.event_attrs(execID=ex.id, exitCode=str(code)))

    async def run_probe(self, cid: str, cmd: list[str], timeout: float, output_limit: int) -> ProbeOutcome:
        """A health probe: an exec of `cmd` with stdout and stderr into one buffer of at most
        `output_limit` bytes (the rest is read and dropped, so a chatty probe never blocks),
        killed with everything it started past `timeout` seconds or when the caller is
        cancelled; either way it is gone (or given up on) before this returns."""
        exec_id = self.create(cid, {"Cmd": cmd, "AttachStdout": True, "AttachStderr": True})
        ex = await self.start(exec_id)
        assert ex.process is not None
        proc = ex.process.proc
        kept = bytearray()
        dropped = False

        async def collect(stream: asyncio.StreamReader | None) -> None:
            nonlocal dropped
            while stream is not None and (data := await stream.read(_CHUNK)):
                room = output_limit - len(kept)
                kept.extend(data[:max(room, 0)])
                dropped = dropped or len(data) > room

        readers = [asyncio.create_task(collect(s)) for s in (proc.stdout, proc.stderr)]
        try:
            # ex.done is set once the command has exited and its output has ended; what the
            # readers have not taken yet is already in their buffers.
            await asyncio.wait_for(ex.done.wait(), timeout)
            await asyncio.wait(readers, timeout=_KILL_WAIT)
        except TimeoutError:
            await self._kill_probe(ex)
            return ProbeOutcome(exit_code=-1, output=bytes(kept), truncated=dropped, timed_out=True)
        except asyncio.CancelledError:
            await asyncio.shield(self._kill_probe(ex))
            raise
        finally:
            for r in readers:
                r.cancel()
        code = ex.exit_code if ex.exit_code is not None else -1
        if code in (126, 127) and kept.startswith(_EXEC_FAILED):
            # The command could not be started (runtime/nsexec.py's report): dockerd records the
            # runtime's error with -1, not an exit code of the command.
            return ProbeOutcome(exit_code=-1, output=bytes(kept).rstrip(b"\r\n"))
        return ProbeOutcome(exit_code=code, output=bytes(kept), truncated=dropped)

    async def _kill_probe(self, ex: ExecInstance) -> None:
        if ex.process is not None and not ex.done.is_set():
            await asyncio.to_thread(ex.process.kill_all)
            try:
                await asyncio.wait_for(ex.done.wait(), _KILL_WAIT)
            except TimeoutError:
                log.warning("health probe %s of %s did not end after SIGKILL", ex.id, ex.container_id)

    async def resize(self, exec_id: str, height: int, width: int) -> None:
        ex = self.get(exec_id)
        process = ex.process
        await container_config.resize_terminal(height, width, what=f"Exec {ex.id}",
                                               running=ex.running and process is not None, tty=ex.tty,
                                               resize=lambda h, w: process.resize(h, w))
