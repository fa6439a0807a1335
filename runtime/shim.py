"""The per-container monitor (our containerd-shim / conmon): lifecycle of one container.

Forked from the template process (runtime/zygote.py), or started as
runtime/monitor.py (``python3 -S -I monitor.py <bundle>``) when there is none; either way
the process that started it exits at once, so the monitor is reparented away from the
daemon and survives it. Then it:

1. becomes a child subreaper, writes ``monitor.pid``, reads ``monitor.json`` (the init
   reads ``config.json``);
2. unshare(CLONE_NEWPID) and fork: the child is the container's PID 1 and prepares
   everything (runtime/initproc.py) while the monitor binds its sockets;
3. prints one JSON line on stdout (``{"ok": true, "pid": N}`` or ``{"ok": false, ...}``)
   and closes it;
4. serves ``control.sock`` (runtime/control.py) and ``attach.sock`` (runtime/attach.py),
   pumps output to the json-file log and attach clients, and reaps;
5. when the container has exited and its output is delivered: writes ``exit.json``
   atomically, closes attach clients, answers waiters, removes its sockets and exits.
"""

from __future__ import annotations

import fcntl
import os
import struct
import sys

from . import initproc, lean, libc, procfs
from .attach import AttachHub
from .control import ControlConn, ControlServer
from .jsonlog import JsonLog, rfc3339nano
from .reactor import Reactor
from .stdio import OutputPump, StdinSink, enlarge_pipe

signal = lean.signal

READY_TIMEOUT = 60.0
# After PID 1 exits the kernel kills the rest of the pid namespace, so the pipes reach EOF
# almost at once; this only bounds a writer that escaped the namespace.
OUTPUT_EOF_TIMEOUT = 5.0
CONTROL_SOCK = "control.sock"
ATTACH_SOCK = "attach.sock"
MONITOR_CONFIG = "monitor.json"  # runtime/spec.py's MONITOR_KEYS of config.json
MONITOR_CONFIG_MAX = 1 << 16


class StartFailure(Exception):
    def __init__(self, message: str, exit_code: int = 128) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code


def write_json_atomic(dir_fd: int, name: str, data: dict) -> None:
    """Whole or not at all (rename), and not fsynced: exit.json has to outlive the monitor and
    the daemon, which the page cache does; a host crash ends the container and its monitor too,
    and the bundle lives in the exec root (/run, a tmpfs, by default). The two fsyncs were
    ~9 ms (up to 44) of every container's exit on a busy ext4 exec root, before its waiters
    were answered."""
    tmp = f".{name}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644, dir_fd=dir_fd)
    try:
        os.write(fd, lean.dumps(data))
    finally:
        os.close(fd)
    os.rename(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)


def _listen(dir_fd: int, name: str) -> lean.Socket:
    try:
        os.unlink(name, dir_fd=dir_fd)
    except FileNotFoundError:
        pass
    # Through the directory fd: bundle paths can exceed sun_path's 108 bytes.
    sock = lean.unix_listener(f"/proc/self/fd/{dir_fd}/{name}")
    os.chmod(name, 0o600, dir_fd=dir_fd)
    return sock


def _noop(*_: object) -> None:
    pass


class Shim:
    def __init__(self, bundle: str) -> None:
        self.bundle = bundle
        self.dir_fd = os.open(bundle, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        self.cfg: dict = {}
        self.pid = 0
        self.status = "created"
        self.started_at = ""
        self.finished_at = ""
        self.exit_code: int | None = None
        self.error = ""
        self.reactor = Reactor()
        self.chan: lean.Socket | None = None
        self.log: JsonLog | None = None
        self.pumps: list[OutputPump] = []
        self.stdin: StdinSink | None = None
        self.master = -1
        self.hub: AttachHub | None = None
        self.control: ControlServer | None = None
        self._listeners: list[str] = []
        self._exec_seen = False
        self._start_error: tuple[str, int] | None = None
        self._start_sent = False
        self._start_waiters: list[ControlConn] = []
        self._exit_waiters: list[ControlConn] = []
        self._finishing = False
        self._done = False
        self._wakeup_r = -1

    # -- creation

    def create(self) -> None:
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        signal.signal(signal.SIGPIPE, signal.SIG_IGN)
        libc.prctl(libc.PR_SET_CHILD_SUBREAPER, 1)
        self._write_pid_file()
        # Only the few fields of config.json the monitor itself needs: the init reads the
        # whole of it (initproc.run), in memory that is not the monitor's.
        try:
            fd = os.open(MONITOR_CONFIG, os.O_RDONLY | os.O_CLOEXEC, dir_fd=self.dir_fd)
            try:
                cfg = lean.loads(os.read(fd, MONITOR_CONFIG_MAX))
            finally:
                os.close(fd)
            if not isinstance(cfg, dict):
                raise ValueError("expected an object")
        except (OSError, ValueError) as e:
            raise StartFailure(f"cannot read {MONITOR_CONFIG}: {e}") from e
        self.cfg = cfg
        try:
            self.log = JsonLog(cfg["log_path"], cfg.get("log_max_size", 0), cfg.get("log_max_file", 1))
        except OSError as e:
            raise StartFailure(f"cannot open log {cfg['log_path']}: {e.strerror}") from e

        child_stdio, mine = self._make_stdio(cfg)
        self.chan, chan_child = lean.socketpair(lean.SOCK_SEQPACKET)
        self._wakeup_r, wakeup_w = os.pipe()
        os.set_blocking(self._wakeup_r, False)
        os.set_blocking(wakeup_w, False)
        signal.set_wakeup_fd(wakeup_w)
        # SIGCHLD reaps; SIGTERM/SIGINT (e.g. a service manager stopping everything in
        # the daemon's cgroup) kill the container but still go through the normal exit
        # path, so its exit status is recorded.
        for signum in (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, _noop)

        self._enter_pid_namespace(cfg.get("pid_ns", "new"))
        pid = os.fork()
        if pid == 0:
            self.chan.close()  # so the child sees EOF if the monitor dies before start
            initproc.run(self.dir_fd, child_stdio, chan_child)
        self.pid = pid
        chan_child.close()
        if child_stdio is not None:
            for fd in set(child_stdio):
                os.close(fd)
        # Bind the sockets while the child sets up the container.
        control = _listen(self.dir_fd, CONTROL_SOCK)
        self._listeners.append(CONTROL_SOCK)
        attach = _listen(self.dir_fd, ATTACH_SOCK)
        self._listeners.append(ATTACH_SOCK)
        self._wait_ready()
        self._wire(cfg, mine, control, attach)

    @staticmethod
    def _enter_pid_namespace(mode: str) -> None:
        # Both only affect children: the init forked next is the first process inside.
        if mode == "new":
            libc.unshare(libc.CLONE_NEWPID)
        elif mode != "host":
            try:
                fd = os.open(mode, os.O_RDONLY | os.O_CLOEXEC)
            except OSError as e:
                raise StartFailure(f"cannot join pid namespace {mode}: {e.strerror}") from e
            try:
                libc.setns(fd, libc.CLONE_NEWPID)
            finally:
                os.close(fd)

    def _write_pid_file(self) -> None:
        fd = os.open(".monitor.pid.tmp", os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644,
                     dir_fd=self.dir_fd)
        try:
            os.write(fd, f"{os.getpid()}\n".encode())
        finally:
            os.close(fd)
        os.rename(".monitor.pid.tmp", "monitor.pid", src_dir_fd=self.dir_fd, dst_dir_fd=self.dir_fd)

    def _make_stdio(self, cfg: dict) -> tuple[tuple[int, int, int] | None, tuple[int, int, int]]:
        """(the child's stdin/stdout/stderr, the monitor's ends); a tty's come from the child."""
        if cfg["tty"]:
            return None, (-1, -1, -1)
        if cfg["open_stdin"]:
            stdin_r, stdin_w = os.pipe()
        else:
            stdin_r, stdin_w = os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC), -1
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        for fd in (stdin_w, out_w, err_w):
            if fd >= 0:
                enlarge_pipe(fd)
        return (stdin_r, out_w, err_w), (stdin_w, out_r, err_r)

    def _wait_ready(self) -> None:
        self.chan.settimeout(READY_TIMEOUT)
        try:
            data, fds = lean.recv_fds(self.chan, 65536, 1)
        except TimeoutError:
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
            raise StartFailure("timed out waiting for the container init to set up") from None
        if not data:
            _, status = os.waitpid(self.pid, 0)
            raise StartFailure(f"container init exited during setup (status {status})")
        msg = lean.loads(data)
        if "error" in msg:
            os.waitpid(self.pid, 0)
            raise StartFailure(msg["error"], msg.get("exit_code", 128))
        if fds:
            self.master = fds[0]
        self.chan.setblocking(False)

    def _wire(self, cfg: dict, mine: tuple[int, int, int], control: lean.Socket,
              attach: lean.Socket) -> None:
        r = self.reactor
        r.set_reader(self._wakeup_r, self._on_signal)
        r.set_reader(self.chan.fileno(), self._on_chan)
        if cfg["tty"]:
            if cfg["open_stdin"]:
                self.stdin = StdinSink(r, self.master, True, self._stdin_drained)
            self.pumps = [OutputPump(r, self.master, "stdout", self._on_output, self._on_pump_eof)]
        else:
            stdin_w, out_r, err_r = mine
            if stdin_w >= 0:
                self.stdin = StdinSink(r, stdin_w, False, self._stdin_drained)
            self.pumps = [OutputPump(r, out_r, "stdout", self._on_output, self._on_pump_eof),
                          OutputPump(r, err_r, "stderr", self._on_output, self._on_pump_eof)]
        self.hub = AttachHub(r, attach, cfg["tty"], self.stdin, cfg["stdin_once"], self._congestion_changed)
        # A signal that came before this point is still in the wakeup pipe: nothing is lost.
        self.control = ControlServer(r, control, self._handle)

    def cleanup_failed_create(self) -> None:
        for name in self._listeners:
            try:
                os.unlink(name, dir_fd=self.dir_fd)
            except OSError:
                pass
        self._remove_pid_file()

    def _remove_pid_file(self) -> None:
        try:
            os.unlink("monitor.pid", dir_fd=self.dir_fd)
        except OSError:
            pass

    # -- output

    def _on_output(self, stream: str, data: bytes) -> None:
        self.log.write(stream, data)
        self.hub.broadcast(stream, data)
        if self.hub.congested:
            for pump in self.pumps:
                pump.pause()

    def _congestion_changed(self) -> None:
        if not self.hub.congested:
            for pump in self.pumps:
                pump.resume()

    def _on_pump_eof(self, pump: OutputPump) -> None:
        self.log.flush(pump.stream)
        if pump.fd == self.master and self.stdin is not None:
            self.stdin.close(now=True)
        self.reactor.call_later(0, self._maybe_finish)

    def _stdin_drained(self) -> None:
        if self.hub is not None:
            self.hub.stdin_drained()

    # -- the init process

    def _on_chan(self) -> None:
        while self.chan is not None:
            try:
                data = self.chan.recv(65536)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:
                self._chan_closed()
                return
            msg = lean.loads(data)
            if msg.get("exec"):
                self._exec_seen = True
            elif "error" in msg:
                self._start_error = (msg["error"], int(msg.get("exit_code", 128)))

    def _chan_closed(self) -> None:
        self.reactor.forget(self.chan.fileno())
        self.chan.close()
        self.chan = None
        if self._start_error is None and self._exec_seen:
            self.started_at = rfc3339nano()
            if self.status == "created":
                self.status = "running"
            for conn in self._start_waiters:
                conn.reply({"ok": True, "pid": self.pid})
            self._start_waiters = []
        else:
            self._fail_starts()

    def _fail_starts(self) -> None:
        if self._start_error is not None:
            message, code = self._start_error
        else:
            message, code = "container exited before it was started", self.exit_code or 128
        for conn in self._start_waiters:
            conn.reply({"ok": False, "error": message, "exit_code": code})
        self._start_waiters = []

    def _on_signal(self) -> None:
        received = b""
        try:
            while chunk := os.read(self._wakeup_r, 4096):
                received += chunk
        except BlockingIOError:
            pass
        if (signal.SIGTERM in received or signal.SIGINT in received) and self.status != "exited":
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if pid == self.pid:
                self._init_exited(status)

    def _init_exited(self, status: int) -> None:
        if self.chan is not None:
            self._on_chan()  # the dead child's last messages (and EOF) are all queued
        code = os.waitstatus_to_exitcode(status)
        if code < 0:
            code = 128 - code
        if self._start_error is not None:
            self.error, code = self._start_error
        self.exit_code = code
        self.finished_at = rfc3339nano()
        self.status = "exited"
        if self._shared_pid_ns:
            # No pid namespace dies with the init here: end its leftovers as runc does.
            for pid in self._descendants():
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        self._fail_starts()
        if self.stdin is not None:
            self.stdin.close(now=True)
        self.reactor.call_later(OUTPUT_EOF_TIMEOUT, self._force_eof)
        self._maybe_finish()

    def _force_eof(self) -> None:
        for pump in self.pumps:
            pump.close()

    # -- the end

    def exit_info(self) -> dict:
        return {"exit_code": self.exit_code, "finished_at": self.finished_at, "oom_killed": False,
                "error": self.error, "started_at": self.started_at, "pid": self.pid}

    def _maybe_finish(self) -> None:
        if self.status != "exited" or self._finishing or any(p.open for p in self.pumps):
            return
        self._finishing = True
        self.log.close()
        write_json_atomic(self.dir_fd, "exit.json", self.exit_info())
        self.hub.finish(self._attach_closed)

    def _attach_closed(self) -> None:
        info = self.exit_info()
        for conn in self._exit_waiters:
            conn.reply(info)
        self._exit_waiters = []
        self._done = True
        for name in self._listeners:
            try:
                os.unlink(name, dir_fd=self.dir_fd)
            except OSError:
                pass
        self._remove_pid_file()
        self.control.shutdown(self.reactor.stop)

    # -- control requests

    def state(self) -> dict:
        return {"status": self.status, "pid": self.pid, "monitor_pid": os.getpid(),
                "started_at": self.started_at, "finished_at": self.finished_at,
                "exit_code": self.exit_code, "error": self.error, "tty": bool(self.cfg.get("tty"))}

    def _handle(self, conn: ControlConn, req: dict) -> dict | None:
        op = req.get("op")
        try:
            if op == "state":
                return self.state()
            if op == "wait":
                if self._done:
                    return self.exit_info()
                self._exit_waiters.append(conn)
                return None
            if op == "start":
                return self._op_start(conn)
            if op == "kill":
                return self._op_kill(int(req.get("signal", signal.SIGKILL)), bool(req.get("all")))
            if op == "resize":
                return self._op_resize(int(req["height"]), int(req["width"]))
            if op == "close_stdin":
                if self.stdin is not None:
                    self.stdin.close()
                return {"ok": True}
        except (KeyError, TypeError, ValueError) as e:
            return {"ok": False, "error": f"bad request: {e}"}
        return {"ok": False, "error": f"unknown op {op!r}"}

    def _op_start(self, conn: ControlConn) -> dict | None:
        if self.status == "running":
            return {"ok": True, "pid": self.pid}
        if self.status == "exited":
            return {"ok": False, "error": self.error or "container has exited", "exit_code": self.exit_code}
        # Answered when the exec outcome is known (or by the init's exit if it is dying).
        self._start_waiters.append(conn)
        if self.chan is not None and not self._start_sent:
            self._start_sent = True
            try:
                self.chan.send(b"start")
            except OSError:
                pass
        return None

    def _op_kill(self, sig: int, all_processes: bool) -> dict:
        if self.status == "exited":
            return {"ok": False, "error": "container is not running"}
        try:
            if all_processes and (sig != signal.SIGKILL or self._shared_pid_ns):
                for pid in self._namespace_pids():
                    try:
                        os.kill(pid, sig)
                    except ProcessLookupError:
                        pass
            else:
                # SIGKILL to PID 1 makes the kernel kill the whole pid namespace.
                os.kill(self.pid, sig)
        except ProcessLookupError:
            return {"ok": False, "error": "container is not running"}
        return {"ok": True}

    @property
    def _shared_pid_ns(self) -> bool:
        return self.cfg.get("pid_ns", "new") != "new"

    def _namespace_pids(self) -> list[int]:
        if self._shared_pid_ns:
            # The namespace is the host's or another container's: only what we started is ours.
            return self._descendants()
        pids = procfs.pid_namespace_members(self.pid)
        if not pids:
            raise ProcessLookupError(self.pid)
        return pids

    def _descendants(self) -> list[int]:
        """The container's processes without a pid namespace of its own: the monitor is a
        subreaper, so everything the init started (orphans too) descends from it."""
        return procfs.descendants(os.getpid())

    def _op_resize(self, height: int, width: int) -> dict:
        if self.master < 0 or self.status == "exited":
            return {"ok": False, "error": "container has no tty" if self.master < 0 else "container is not running"}
        fcntl.ioctl(self.master, 0x5414, struct.pack("HHHH", height, width, 0, 0))  # TIOCSWINSZ
        return {"ok": True}

    # -- main loop

    def run(self) -> None:
        try:
            self.reactor.run()
        except BaseException:
            _print_exc()
            self._crash()
            raise

    def _crash(self) -> None:
        """The monitor is failing: take the container down and leave a record of why."""
        if self.status != "exited":
            try:
                os.kill(self.pid, signal.SIGKILL)
                os.waitpid(self.pid, 0)
            except OSError:
                pass
            self.exit_code = 137 if self.exit_code is None else self.exit_code
            self.finished_at = self.finished_at or rfc3339nano()
            self.error = self.error or "container monitor failed"
        try:
            write_json_atomic(self.dir_fd, "exit.json", self.exit_info())
        except OSError:
            pass
        self.cleanup_failed_create()


def tune_malloc() -> None:
    """Output and stdin move in chunks of up to a few hundred KiB. With glibc's defaults
    each such buffer is a fresh mmap (or a heap that is trimmed at once), so every chunk paid
    for page faults and zeroed pages: a third of the monitor's CPU time in `docker run -i
    cat`. Keep freed memory for reuse instead: at most the trim threshold stays with an idle
    monitor after a burst (RSS ~15 MB instead of ~10).

    Called before the monitor runs: by the template (runtime/zygote.py) before it forks any
    (the settings are libc's process state, inherited by fork, and a monitor making the
    calls itself dirtied ~90 kB of its memory), by main() otherwise."""
    libc.mallopt(libc.M_MMAP_THRESHOLD, 8 << 20)
    libc.mallopt(libc.M_TRIM_THRESHOLD, 8 << 20)


def warm_up(rounds: int = 1) -> None:
    """Rehearse a monitor's life in this process: wiring, a control request, output, the
    start handshake; on pipes and abstract sockets, with no container, no file and no
    signal. The template (runtime/zygote.py) runs this before it freezes its memory, so
    that what a first run creates once and keeps (the instance attribute tables of the
    classes, caches, specialised bytecode) is created there and shared, not in each
    monitor's own copy-on-write pages."""
    for _ in range(rounds):
        _rehearse()


def _rehearse() -> None:
    # The monitor's two ctypes calls, as no-ops: a first call through ctypes dirties ~100 kB
    # (~60 kB once the same call has run before the fork).
    libc.prctl(libc.PR_SET_CHILD_SUBREAPER, 0)
    libc.unshare(0)
    shim = Shim("/")
    fds: list[int] = [shim.dir_fd]
    socks: list[lean.Socket] = []
    try:
        shim.cfg = {"tty": False, "open_stdin": True, "stdin_once": False, "pid_ns": "new"}
        shim.log = JsonLog("")
        theirs, mine = shim._make_stdio(shim.cfg)
        _, out_w, err_w = theirs
        fds += [*theirs, *mine]
        shim._wakeup_r, wakeup_w = os.pipe()
        fds += [shim._wakeup_r, wakeup_w]
        shim.chan, init_end = lean.socketpair(lean.SOCK_SEQPACKET)
        socks += [shim.chan, init_end]
        name = f"\0pydockerd-warm-up-{os.getpid()}-"
        control = lean.unix_listener(name + "c")
        attach = lean.unix_listener(name + "a")
        socks += [control, attach]
        init_end.send(lean.dumps({"ready": True}))
        shim._wait_ready()
        shim._wire(shim.cfg, mine, control, attach)
        client = lean.Socket(lean.AF_UNIX, lean.SOCK_STREAM)
        socks.append(client)
        client.connect(name + "c")
        client.sendall(b'{"op": "state"}\n{"op": "start"}\n')
        os.write(out_w, b"warm-up\n")
        os.write(err_w, b"warm-up \xe2\x9c\x93\n")
        init_end.send(lean.dumps({"exec": True}))
        init_end.close()
        client.setblocking(False)
        shim.reactor.call_later(0, lambda: _step(shim, client, [0], 100))
        shim.reactor.run()
    finally:
        if shim.control is not None:
            socks += [conn.sock for conn in shim.control.conns if conn.sock is not None]
        for sock in socks:
            sock.close()
        for fd in fds:
            try:
                os.close(fd)
            except OSError:
                pass


def _step(shim: Shim, client: lean.Socket, replies: list[int], left: int) -> None:
    """Stop once both replies are back (or after `left` more turns)."""
    try:
        replies[0] += client.recv(4096).count(b"\n")
    except BlockingIOError:
        pass
    if replies[0] >= 2 or left <= 0:
        shim.reactor.stop()
    else:
        shim.reactor.call_later(0.001, lambda: _step(shim, client, replies, left - 1))


def _print_exc() -> None:
    import traceback  # only on failure: it costs more import time than the whole monitor

    traceback.print_exc()


def _ready_line(message: dict) -> bool:
    """Tell the daemon; False if it is no longer listening."""
    try:
        os.write(1, lean.dumps(message) + b"\n")
        delivered = True
    except OSError:
        delivered = False
    # The daemon may go away at any time: keep nothing of its pipe.
    null = os.open("/dev/null", os.O_RDWR)
    os.dup2(null, 1)
    os.dup2(null, 0)
    os.close(null)
    return delivered


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: monitor.py BUNDLE_DIR", file=sys.stderr)
        return 2
    # The daemon reaps this process at once; the monitor lives on, no child of the daemon.
    bundle = os.path.abspath(argv[0])
    if os.fork() != 0:
        os._exit(0)
    tune_malloc()
    return run(bundle)


def run(bundle: str) -> int:
    """The monitor proper, in a process already detached from whoever started it: stdout is
    the pipe the daemon reads the ready line from, stderr goes to monitor.log."""
    # Pin no directory of the daemon's, and create files with predictable modes.
    os.chdir("/")
    os.umask(0o022)
    shim: Shim | None = None
    try:
        shim = Shim(bundle)
        shim.create()
    except StartFailure as e:
        if shim is not None:
            shim.cleanup_failed_create()
        _ready_line({"ok": False, "error": e.message, "exit_code": e.exit_code})
        return 0
    except BaseException as e:
        _print_exc()
        if shim is not None:
            if shim.pid:
                try:
                    os.kill(shim.pid, signal.SIGKILL)
                    os.waitpid(shim.pid, 0)
                except OSError:
                    pass
            shim.cleanup_failed_create()
        _ready_line({"ok": False, "error": f"container monitor failed: {e}", "exit_code": 128})
        return 1
    if not _ready_line({"ok": True, "pid": shim.pid, "monitor_pid": os.getpid()}):
        # The daemon gave up (or died) before it learnt about this container: nobody would
        # ever start, wait for or remove it.
        os.kill(shim.pid, signal.SIGKILL)
        os.waitpid(shim.pid, 0)
        shim.cleanup_failed_create()
        return 1
    shim.run()
    return 0
