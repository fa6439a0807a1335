"""The per-container monitor (our containerd-shim / conmon): lifecycle of one container.

Forked from the template process (runtime/zygote.py), or started as
runtime/monitor.py (``python3 -S -I monitor.py <bundle>``) when there is none; either way
the process that started it exits at once, so the monitor is reparented away from the
daemon and survives it. Then it:

1. sets up its signal handling, becomes a child subreaper and forks a helper (run()),
   which creates the container and exits (Shim.prepare: the memory that work writes is not
   the monitor's to keep): it writes ``monitor.pid``, reads ``monitor.json`` (the init
   reads ``config.json``), opens the log, makes the stdio, unshare(CLONE_NEWPID) and fork:
   its child is the container's PID 1 and prepares everything (runtime/initproc.py) while
   the helper binds the sockets; once the init is ready the helper hands the fds and the
   init's pid over and exits, and the init is reparented to the monitor (the nearest
   subreaper), which reaps it from then on;
2. takes the fds over (Shim.adopt);
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
from .jsonlog import open_file as open_log
from .reactor import Reactor
from .stdio import OutputPump, StdinSink, enlarge_pipe

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import NoReturn

signal = lean.signal

READY_TIMEOUT = 60.0
# After PID 1 exits the kernel kills the rest of the pid namespace, so the pipes reach EOF
# almost at once; this only bounds a writer that escaped the namespace.
OUTPUT_EOF_TIMEOUT = 5.0
CONTROL_SOCK = "control.sock"
ATTACH_SOCK = "attach.sock"
MONITOR_CONFIG = "monitor.json"  # runtime/spec.py's MONITOR_KEYS of config.json
MONITOR_CONFIG_MAX = 1 << 16
# What the helper hands over (run()): a message and at most dir, log, chan, control,
# attach, stdin, stdout, stderr (or the pty master).
HANDOVER_MAX = 1 << 17
HANDOVER_FDS = 9


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
    def __init__(self, bundle: str, dir_fd: int = -1) -> None:
        self.bundle = bundle
        self.dir_fd = dir_fd if dir_fd >= 0 else os.open(bundle, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
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
        # The helper that created the container (run()), until it is reaped: the init is
        # only the monitor's child once the helper has exited.
        self.helper = 0
        self._handed_over: tuple[lean.Socket, ...] = ()

    # -- creation: prepare() runs in the monitor's helper process, adopt() in the monitor

    def prepare(self, helper_sock: int) -> tuple[dict, list[int]]:
        """Everything creating the container takes, in the monitor's short-lived child (see
        run()): the pid file, monitor.json, the log, the stdio, the init (this process's
        child until this process exits, the monitor's then) and its setup, the sockets.
        Returns what the monitor needs: a message and the fds it names. On failure the
        init, if any, is killed and reaped here and StartFailure says why."""
        self._write_pid_file(os.getppid())
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
            log_fd = open_log(cfg["log_path"]) if cfg["log_path"] else -1
        except OSError as e:
            raise StartFailure(f"cannot open log {cfg['log_path']}: {e.strerror}") from e

        child_stdio, mine = self._make_stdio(cfg)
        self.chan, chan_child = lean.socketpair(lean.SOCK_SEQPACKET)
        self._enter_pid_namespace(cfg.get("pid_ns", "new"))
        pid = os.fork()
        if pid == 0:
            # So that the init sees EOF if the monitor dies before start, and the monitor
            # sees EOF on the handover if this helper dies: neither end is the init's.
            self.chan.close()
            os.close(helper_sock)
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
        names = ["dir", "chan", "control", "attach"]
        fds = [self.dir_fd, self.chan.fileno(), control.fileno(), attach.fileno()]
        optional = (("log", log_fd), ("stdin", mine[0]), ("stdout", mine[1]), ("stderr", mine[2]),
                    ("master", self.master))
        for name, fd in optional:
            if fd >= 0:
                names.append(name)
                fds.append(fd)
        # The sockets stay open (in this process) until it exits, after the handover.
        self._handed_over = (control, attach)
        return {"pid": pid, "cfg": cfg, "fds": names}, fds

    def adopt(self, msg: dict, fds: list[int]) -> None:
        """Take over what prepare() made in the helper: the fds in the order msg["fds"]
        names them (the dir fd, first, is already this Shim's)."""
        got = dict(zip(msg["fds"], fds, strict=True))
        cfg = self.cfg = msg["cfg"]
        self.pid = msg["pid"]
        self.log = JsonLog(cfg["log_path"], cfg.get("log_max_size", 0), cfg.get("log_max_file", 1),
                           fd=got.get("log", -1))
        self.chan = lean.Socket(lean.AF_UNIX, lean.SOCK_SEQPACKET, 0, got["chan"])
        self.chan.setblocking(False)
        control = lean.Socket(lean.AF_UNIX, lean.SOCK_STREAM, 0, got["control"])
        attach = lean.Socket(lean.AF_UNIX, lean.SOCK_STREAM, 0, got["attach"])
        self._listeners = [CONTROL_SOCK, ATTACH_SOCK]
        self.master = got.get("master", -1)
        self._wire(cfg, (got.get("stdin", -1), got.get("stdout", -1), got.get("stderr", -1)), control, attach)

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

    def _write_pid_file(self, pid: int) -> None:
        fd = os.open(".monitor.pid.tmp", os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644,
                     dir_fd=self.dir_fd)
        try:
            os.write(fd, f"{pid}\n".encode())
        finally:
            os.close(fd)
        os.rename(".monitor.pid.tmp", "monitor.pid", src_dir_fd=self.dir_fd, dst_dir_fd=self.dir_fd)

    @staticmethod
    def _make_stdio(cfg: dict) -> tuple[tuple[int, int, int] | None, tuple[int, int, int]]:
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
            _reap(self.pid)
            self.pid = 0
            raise StartFailure("timed out waiting for the container init to set up") from None
        if not data:
            status = _reap(self.pid)
            self.pid = 0
            raise StartFailure(f"container init exited during setup (status {status})")
        msg = lean.loads(data)
        if "error" in msg:
            _reap(self.pid)
            self.pid = 0
            raise StartFailure(msg["error"], msg.get("exit_code", 128))
        if fds:
            self.master = fds[0]

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
            elif pid == self.helper:
                self.helper = 0
            # Anything else is an orphan of a container sharing a pid namespace (the monitor
            # is a subreaper): reaped, nothing to record.

    def reap_helper(self) -> None:
        """Wait for the helper's end: from then on the init is this process's child (its
        PDEATHSIG, armed at start, follows the monitor; it is reaped here)."""
        if self.helper:
            _reap(self.helper)
            self.helper = 0

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
            # The init arms its PDEATHSIG when told to start: its parent must be the
            # monitor by then, not the helper that is exiting (whose exit would fire it).
            self.reap_helper()
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
                self.reap_helper()
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
    # The monitor's side only (its signal handling and ctypes call, undone at once, and from
    # the handover on): what the helper writes is not kept. A first call through ctypes
    # dirties ~100 kB (~60 kB once the same call has run before the fork).
    _rehearse_signals()
    libc.set_child_subreaper(False)
    made: list[int] = []
    socks: list[lean.Socket] = []
    shim: Shim | None = None
    try:
        cfg = {"log_path": "", "tty": False, "open_stdin": True, "stdin_once": False, "pid_ns": "new"}
        theirs, mine = Shim._make_stdio(cfg)
        _, out_w, err_w = theirs
        made += [*theirs, *mine]
        wakeup_r, wakeup_w = os.pipe()
        made += [wakeup_r, wakeup_w]
        chan, init_end = lean.socketpair(lean.SOCK_SEQPACKET)
        name = f"\0pydockerd-warm-up-{os.getpid()}-"
        control = lean.unix_listener(name + "c")
        attach = lean.unix_listener(name + "a")
        socks += [chan, init_end, control, attach]
        made.append(os.open("/", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC))
        fds = [made[-1], chan.fileno(), control.fileno(), attach.fileno(), *mine]
        msg = {"pid": 0, "cfg": cfg, "fds": ["dir", "chan", "control", "attach", "stdin", "stdout", "stderr"]}
        helper_end, monitor_end = lean.socketpair(lean.SOCK_SEQPACKET)
        socks += [helper_end, monitor_end]
        lean.send_fds(helper_end, lean.dumps(msg), fds)
        data, got = lean.recv_fds(monitor_end, HANDOVER_MAX, HANDOVER_FDS)
        made += got
        shim = Shim("/", dir_fd=got[0])
        shim._wakeup_r = wakeup_r
        shim.adopt(lean.loads(data), got)
        client = lean.Socket(lean.AF_UNIX, lean.SOCK_STREAM)
        socks.append(client)
        client.connect(name + "c")
        # The daemon's requests to a new container: its start, and a wait left pending.
        client.sendall(b'{"op": "state"}\n{"op": "start"}\n{"op": "wait"}\n')
        os.write(out_w, b"warm-up\n")
        os.write(err_w, b"warm-up \xe2\x9c\x93\n")
        init_end.send(lean.dumps({"exec": True}))
        init_end.close()
        client.setblocking(False)
        shim.reactor.call_later(0, lambda: _step(shim, client, [0], 100))
        shim.reactor.run()
    finally:
        # The fds adopted as sockets close with them: detach those first.
        if shim is not None:
            for sock in (shim.chan, shim.control and shim.control.listener, shim.hub and shim.hub.listener):
                if sock is not None:
                    sock.detach()
            if shim.control is not None:
                socks += [conn.sock for conn in shim.control.conns if conn.sock is not None]
        for sock in socks:
            sock.close()
        for fd in made:
            try:
                os.close(fd)
            except OSError:
                pass


def _rehearse_signals() -> None:
    """_catch_signals(), then back to the dispositions and wakeup fd this process had."""
    saved = {signum: signal.getsignal(signum) for signum in
             (signal.SIGHUP, signal.SIGPIPE, signal.SIGCHLD, signal.SIGTERM, signal.SIGINT)}
    previous = signal.set_wakeup_fd(-1)
    wakeup_r = _catch_signals()
    wakeup_w = signal.set_wakeup_fd(previous)
    for signum, handler in saved.items():
        if handler is not None:  # None: not installed from Python, so not ours to put back
            signal.signal(signum, handler)
    os.close(wakeup_r)
    os.close(wakeup_w)


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
    the pipe the daemon reads the ready line from, stderr goes to monitor.log.

    The container is created in a child of the monitor that exits once it is done (_helper,
    Shim.prepare): of the memory that work writes (its Python objects, the pages of code it
    runs, ctypes' call state) the monitor, which lives as long as the container, keeps none.
    The init is the helper's child; the monitor is a child subreaper, so when the helper
    exits the init is reparented to the monitor, which reaps it and records its exit as if
    it had forked it (an init that died before is a zombie then, handed over the same way)."""
    # Pin no directory of the daemon's, and create files with predictable modes.
    os.chdir("/")
    os.umask(0o022)
    helper = 0
    try:
        # All before the helper exists: the init's exit can reach this process as soon as
        # the helper has exited, and only a subreaper gets the helper's orphans.
        wakeup_r = _catch_signals()
        libc.set_child_subreaper(True)
        mine, theirs = lean.socketpair(lean.SOCK_SEQPACKET)
        helper = os.fork()
        if helper == 0:
            mine.close()
            _helper(bundle, theirs)
        theirs.close()
        try:
            data, fds = lean.recv_fds(mine, HANDOVER_MAX, HANDOVER_FDS)
        except OSError:
            data, fds = b"", []
        mine.close()
    except BaseException as e:
        _print_exc()
        if helper:
            _reap(helper)
        _ready_line({"ok": False, "error": f"container monitor failed: {e}", "exit_code": 128})
        return 1
    msg = lean.loads(data) if data else {"error": "container monitor failed: its helper died", "exit_code": 128}
    if "error" in msg:
        _reap(helper)
        for fd in fds:
            os.close(fd)
        if not data:
            # Whatever the helper left: an init it forked sees EOF (its channel's other end
            # died with the helper) and exits.
            try:
                Shim(bundle).cleanup_failed_create()
            except OSError:
                pass
        _ready_line({"ok": False, "error": msg["error"], "exit_code": msg.get("exit_code", 128)})
        return 0
    # The helper is reaped with the other children (_on_signal), or before the start at the
    # latest: the ready line does not wait for the end of its exit.
    shim = Shim(bundle, dir_fd=fds[0])
    shim._wakeup_r = wakeup_r
    shim.helper = helper
    try:
        shim.adopt(msg, fds)
    except BaseException as e:
        _print_exc()
        shim.reap_helper()
        os.kill(msg["pid"], signal.SIGKILL)
        _reap(msg["pid"])
        shim.cleanup_failed_create()
        _ready_line({"ok": False, "error": f"container monitor failed: {e}", "exit_code": 128})
        return 1
    if not _ready_line({"ok": True, "pid": shim.pid, "monitor_pid": os.getpid()}):
        # The daemon gave up (or died) before it learnt about this container: nobody would
        # ever start, wait for or remove it.
        shim.reap_helper()
        os.kill(shim.pid, signal.SIGKILL)
        _reap(shim.pid)
        shim.cleanup_failed_create()
        return 1
    shim.run()
    return 0


def _helper(bundle: str, sock: lean.Socket) -> NoReturn:
    """The monitor's child that creates the container (Shim.prepare) and hands the result
    over on `sock`: fds and a message, or an error message. On failure the init, its child,
    is killed and reaped here."""
    code = 0
    shim: Shim | None = None
    try:
        # The daemon's ready pipe is the monitor's to write and close: the daemon waits for
        # its EOF, which must not wait for this process (nor reach the init).
        null = os.open("/dev/null", os.O_WRONLY | os.O_CLOEXEC)
        os.dup2(null, 1)
        os.close(null)
        # The monitor's wakeup pipe is not this process's to write to; its own children
        # are reaped by waitpid (SIGCHLD's default is fine). SIGTERM stays the monitor's
        # no-op: a stop of everything reaches the monitor too, which kills the init.
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        try:
            shim = Shim(bundle)
            msg, fds = shim.prepare(sock.fileno())
        except StartFailure as e:
            msg, fds = {"error": e.message, "exit_code": e.exit_code}, []
        except BaseException as e:
            _print_exc()
            msg, fds, code = {"error": f"container monitor failed: {e}", "exit_code": 128}, [], 1
        if "error" in msg:
            _kill_init(shim)
        try:
            lean.send_fds(sock, lean.dumps(msg), fds)
        except OSError:
            # The monitor is gone: nobody would reap, log or report the container.
            _kill_init(shim)
            code = 1
    except BaseException:
        _print_exc()
        code = 1
    finally:
        os._exit(code)


def _kill_init(shim: Shim | None) -> None:
    """In the helper, on failure: the init (its child) goes, and what the start left behind."""
    if shim is None:
        return
    if shim.pid:
        try:
            os.kill(shim.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        _reap(shim.pid)
        shim.pid = 0
    shim.cleanup_failed_create()


def _reap(pid: int) -> int:
    """waitpid(pid): its wait status (0 if it is not, or no longer, our child)."""
    while True:
        try:
            return os.waitpid(pid, 0)[1]
        except InterruptedError:
            continue
        except ChildProcessError:
            return 0


def _catch_signals() -> int:
    """The monitor's signal handling; returns the wakeup pipe's read end. SIGCHLD reaps;
    SIGTERM/SIGINT (e.g. a service manager stopping everything in the daemon's cgroup) kill
    the container but still go through the normal exit path, so its exit status is recorded."""
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    wakeup_r, wakeup_w = os.pipe()
    os.set_blocking(wakeup_r, False)
    os.set_blocking(wakeup_w, False)
    signal.set_wakeup_fd(wakeup_w)
    for signum in (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, _noop)
    return wakeup_r
