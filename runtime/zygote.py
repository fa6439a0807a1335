"""The template process of monitors and exec processes: ``python3 -S -I <dir>/zygote.py
<exec-root>``, fd 0 a SEQPACKET socket to the daemon.

Why: a monitor started as a fresh interpreter holds ~4.3 MiB of private memory (its heap:
the interpreter's own objects and the modules it imports) and takes ~50 ms to be ready.
This process imports everything a monitor runs, freezes the garbage collector
(``gc.freeze()``: the collector never writes to those objects, so their pages stay clean)
and then forks one monitor per request. A forked monitor shares those pages copy-on-write
with the template and with every other monitor forked from it and only pays for the pages
it writes itself.

What a monitor writes: CPython 3.11 writes the reference count of every object it
touches, so each function, code object, constant and name a monitor uses costs it the page
that holds it, whatever its size; a bare fork whose child blocks at once already has
~0.2 MiB of its own, the way to the monitor's loop ~0.5 MiB. Before the freeze the template
therefore rehearses a monitor's life (shim.warm_up: the handover from its helper, wiring,
control requests, output, the start handshake, its ctypes call, on pipes and abstract
sockets) and sets the malloc tuning the monitors inherit, so that what a first run creates
and keeps (class attribute tables, caches, specialised bytecode, ctypes' call state) is
created once here: ~1.5 -> ~1.2 MiB per monitor. The creation of the container
(monitor.json, the log, the stdio, the pid namespace, the init's fork and setup, the
sockets) runs in a short-lived child of the monitor, its helper, which hands the fds over
and exits (runtime/shim.py, run()): what that work writes dies with the helper (measured in
one window, 50 `sleep` containers: private 1.16 -> 1.06 MiB per monitor; a fork and an
exit, ~2 ms more per `docker run`). The container's config.json is read by the init, not
the monitor (runtime/initproc.py).

Why the process model keeps the monitor's guarantees:

* Containers survive the daemon (SIGTERM, kill -9, restart): a monitor is forked once, calls
  setsid() and lives in its own session, like a monitor started from monitor.py. It is the
  template's child, never the daemon's, and the template ignores SIGCHLD, so the kernel
  reaps a monitor that ends (no zombie, no Python run in the template for it); when the
  template exits (with the daemon) its monitors are reparented as any orphan. Nothing ties
  a monitor's life to either process: no PDEATHSIG, no pipe or socket to them (all of its
  fds except its stdio are closed right after the fork; its stdout is the daemon's ready
  pipe, replaced by /dev/null once the ready line is written, exactly as before). It was
  forked twice before (the middle process exiting at once, as a daemon detaches): what the
  middle process wrote after its fork (its setsid, the second fork's bookkeeping) was each
  monitor's own copy to keep, ~44 kB (bench_footprint -n 50: private 1004 -> 960 kB per
  monitor, 1.03 -> 0.985 MiB per container).
* The template itself is tied to the daemon: it exits when its socket reaches EOF, which
  the kernel delivers when the daemon exits for any reason, kill -9 included. A restarted
  daemon starts a new template; monitors forked by the old one go on unaffected (the pages
  they shared stay shared between them, their memory is their own once written).
* A monitor crash loses no exit code: the monitor is the same code as before (runtime/shim.py)
  and records ``exit.json`` the same way; the template holds no state about it.
* The init is the monitor's child although its helper forks it, with no raw syscall: the
  monitor makes itself a child subreaper (PR_SET_CHILD_SUBREAPER) before it forks the
  helper, so when the helper exits the kernel reparents the init to the monitor, the
  nearest subreaper, and it is the monitor's to reap and record from then on. An init that
  dies before the helper has exited is the helper's zombie until then and is reparented as a
  zombie, with a SIGCHLD to the monitor: no exit code is lost. The helper is the only one
  to wait for the init before the handover (a failed setup: it kills and reaps it and hands
  over the error); after it, only the monitor. The init's PDEATHSIG would fire at the
  helper's exit, so the init arms it when the monitor tells it to start, and the monitor
  reaps the helper before it does: from then on the init dies with the monitor, as before.
  Before the start a monitor that dies closes the init's channel, and the init ends on EOF.
* A monitor that stops answering (deadlocked, stopped) does not keep its container: when a
  SIGKILL through it has no effect within 10 s, the daemon kills the processes of the
  container's cgroup and then the monitor itself (checked to be the bundle's through a
  pidfd), and records exit code 137 (daemon/containers/service.py, _kill_directly).
* With a shared pid namespace (``--pid host``, ``--pid container:X``) the container's
  orphans reach the monitor as subreaper, as they did before: it reaps them and ignores
  pids it does not know; _descendants() finds the container's processes below it.
* The template crashing costs no container either: the daemon sees EOF on the ready pipe of a
  request in flight (reported as a failed start), and starts monitors as fresh interpreters
  (runtime/launcher.py) until a new template is up. A template that stops reading (stopped,
  stuck) is killed 5 s after a request it left unread; what it was sent starts afresh.
* Nothing of one container is shared with another's: the template never reads a bundle,
  a config or a log; it only receives a bundle path and two fds (the log, the ready pipe),
  which it closes after the fork, so the next monitor inherits none of them. What the
  monitors share are the read-only pages of the interpreter and the imported modules. An
  exec's spec (its environment included) passes through the template's memory, and a later
  fork gets a copy of that memory; but only the daemon's own code runs there, which never
  looks at it, and every container process starts with execve (a fresh address space).

`docker exec` processes (runtime/nsexec.py) are forked the same way (~40 ms less than a
fresh interpreter per exec). The daemon is not their parent, so a small process between
the template and nsexec's reports the pid and then the exit code on a status pipe.
"""

from __future__ import annotations

import fcntl
import gc
import os
import sys

TYPE_CHECKING = False  # not typing's: its import costs the template ~9 ms and memory
if TYPE_CHECKING:
    from collections.abc import Callable
    from socket import socket


# Requests: one SEQPACKET message each, a kind byte and its argument, with SCM_RIGHTS fds.
MONITOR = b"M"  # + bundle path; fds: monitor.log, the ready pipe
EXEC = b"E"  # + exec spec (JSON, runtime/nsexec.py); fds: stdin, stdout, stderr, status pipe[, console]
MAX_REQUEST = 1 << 18
MAX_FDS = 5
# Rounds of shim.warm_up() before the freeze: 8 calls of a function have the interpreter
# specialise its bytecode, which a monitor would otherwise do (and pay for) by itself.
# ~16 ms once; measured 1290 -> 1230 kB private per monitor (1 -> 10 rounds).
WARM_UP_ROUNDS = 10
_FS_ENCODING = sys.getfilesystemencoding()
# The runtime modules, set by _main() once the package is importable. Not imported where used:
# `from runtime import x` runs importlib's _handle_fromlist, Python code whose reference counts
# live in libpython's data pages, and every page the template writes between two forks is the
# previous monitor's to keep (measured ~40 kB a monitor).
lean = nsexec = shim = None
# /dev/null for the monitors' stdin, opened once (_main).
_NULL = -1
_FILLER: list[object] = []  # _fill_pools()
_BYTES_HEADER = sys.getsizeof(b"x") - 1  # a bytes object of n bytes takes this + n
_BIG_INT = 1 << 40


def serve(chan: socket, handlers: dict[bytes, Callable[[bytes, list[int]], None]]) -> int:
    """Answer requests until the daemon closes its end (EOF): returns 0 then.

    Written for what it touches between two forks: every page this loop writes after a fork is
    still shared with the monitor just forked, and the monitor keeps its copy. So no per-request
    closure, format string, import or /dev/null open (lean.recv_fds, _NULL): the pages the
    template copies per request went from ~195 to 124 kB (its frames, snapshotted)."""
    while True:
        try:
            data, fds = lean.recv_fds(chan, MAX_REQUEST, MAX_FDS)
        except InterruptedError:
            continue
        if not data:
            return 0
        try:
            handler = handlers.get(data[:1])
            if handler is not None:
                handler(data[1:], fds)
            else:
                print(f"zygote: unknown request {data[:1]!r}", file=sys.stderr, flush=True)
        except Exception as e:  # noqa: BLE001 - one bad request must not end the template
            print(f"zygote: request failed: {e!r}", file=sys.stderr, flush=True)
        finally:
            for fd in fds:
                os.close(fd)


def _detach(stdio: list[int], name: bytes, run: Callable[..., int], *args: object) -> None:
    """Run `run(*args)` in a child that has its own session and only `stdio` as its fds
    0, 1, 2...; it never returns from there. The template ignores SIGCHLD (_main): the kernel
    reaps the child when it ends."""
    if os.fork() == 0:
        code = 1
        try:
            os.setsid()
            # Out of the way first if a source may be another's target (an exec's 4 or 5 fds;
            # a monitor's 3 are never below 3, and every step here is a page it keeps).
            if min(stdio) < len(stdio):
                stdio = [fcntl.fcntl(fd, fcntl.F_DUPFD, 64) for fd in stdio]
            for target, fd in enumerate(stdio):
                os.dup2(fd, target)
            # The daemon's socket and this request's fds: keep only what was handed over.
            os.closerange(len(stdio), os.sysconf("SC_OPEN_MAX"))
            _name_process(name)
            code = run(*args)
        except BaseException:
            import traceback

            traceback.print_exc()
        finally:
            os._exit(code)


def fork_monitor(arg: bytes, fds: list[int]) -> None:
    """A detached monitor for the bundle `arg` (runtime/shim.py)."""
    if len(fds) != 2:
        raise ValueError(f"monitor request with {len(fds)} fds")
    log_fd, ready_fd = fds
    try:
        _detach([_NULL, ready_fd, log_fd], b"pyd-monitor", _monitor, arg)
    except OSError as e:
        # The daemon sees EOF on the ready pipe and reports monitor.log's tail.
        os.write(log_fd, f"cannot fork the container monitor: {e}\n".encode())


def _monitor(arg: bytes) -> int:
    # Decoded here, not with os.fsdecode: that is Python code of the frozen os module, whose
    # pages the monitor would keep.
    return shim.run(arg.decode(_FS_ENCODING, "surrogateescape"))


def fork_exec(arg: bytes, fds: list[int]) -> None:
    """`docker exec`: runtime/nsexec.py with the given stdio, in a process that writes its
    pid and then its exit code (decimal lines) to the status pipe: the daemon is not its
    parent, so it cannot wait for it."""
    if len(fds) not in (4, 5):
        raise ValueError(f"exec request with {len(fds)} fds")
    _detach(fds, b"pyd-exec", _run_exec, arg, len(fds) == 5)


def _run_exec(arg: bytes, console: bool) -> int:
    # The template's SIG_IGN would have the kernel reap the exec's process before the
    # waitpid below could read its status.
    lean.signal.signal(lean.signal.SIGCHLD, lean.signal.SIG_DFL)
    spec = lean.loads(arg)
    if console:
        spec["console_fd"] = 4
    pid = os.fork()
    if pid == 0:
        rc = 126
        try:
            os.close(3)  # the status pipe is this process's, not the command's
            rc = nsexec.main([lean.dumps(spec).decode()])
        finally:
            os._exit(rc)
    # Only the exec's process holds its stdio: EOF reaches the daemon when it ends.
    for fd in (0, 1, 2, 4):
        try:
            os.close(fd)
        except OSError:
            pass
    os.write(3, f"{pid}\n".encode())
    while True:
        try:
            _, status = os.waitpid(pid, 0)
            break
        except InterruptedError:
            continue
    code = 128 + os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
    os.write(3, f"{code}\n".encode())
    return code


def _name_process(name: bytes) -> None:
    # What ps and top show: the monitors' command line is the template's. Plain os calls:
    # a file object would dirty the monitor's memory for nothing.
    try:
        fd = os.open("/proc/self/comm", os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.write(fd, name)
        finally:
            os.close(fd)
    except OSError:
        pass


def _ensure_bytecode(package: str) -> None:
    """Byte-compile the package in a child first when a module's .pyc is missing or older
    than its source. Compiling in this process scatters the code objects and constants the
    monitors use among the compiler's freed memory, so each monitor's writes land on more
    pages: measured +120 kB private per monitor (1.06 -> 1.18 MiB, 50 containers) on the
    first start of a checkout without runtime/__pycache__."""
    cache = os.path.join(package, "__pycache__")
    tag = sys.implementation.cache_tag
    try:
        stale = any(
            name.endswith(".py") and _older(os.path.join(cache, f"{name[:-3]}.{tag}.pyc"),
                                             os.path.join(package, name))
            for name in os.listdir(package))
    except OSError:
        return
    if not stale:
        return
    pid = os.fork()
    if pid == 0:
        try:
            os.execv(sys.executable, [sys.executable, "-I", "-S", "-m", "compileall", "-q", "-l", package])
        finally:
            os._exit(127)
    os.waitpid(pid, 0)  # a failure (read-only install): the imports compile, as before


def _older(path: str, than: str) -> bool:
    try:
        return os.stat(path).st_mtime < os.stat(than).st_mtime
    except OSError:
        return True


def free_blocks() -> dict[int, int]:
    """{block size: blocks free in its pools} from sys._debugmallocstats() (empty if its table
    is not the one known here)."""
    fd = os.memfd_create("pymalloc-stats", os.MFD_CLOEXEC)
    saved = os.dup(2)
    try:
        os.dup2(fd, 2)
        sys._debugmallocstats()
    finally:
        os.dup2(saved, 2)
        os.close(saved)
    text = os.pread(fd, 1 << 20, 0).decode(errors="replace")
    os.close(fd)
    free = {}
    for line in text.splitlines():
        # "class size num-pools blocks-in-use avail-blocks", under that header
        parts = line.split()
        if len(parts) == 5 and all(p.isdigit() for p in parts):
            free[int(parts[1])] = int(parts[4])
    return free


def _fill_pools() -> list[object]:
    """Objects that take every free block of the allocator's (pymalloc's) partly used pools,
    kept for the template's life.

    Why: a block a monitor allocates comes from the first pool of its size class that has
    one free, and after the imports and the warm-up those free blocks are scattered over many
    pages that every monitor shares with the template: each allocation then copies a page
    that holds one new object. With the free blocks taken here, a monitor's objects go to
    empty pools, next to each other. Measured (bench_footprint, 50 containers): 1.05 -> 1.01
    MiB per container, ~150 kB more (shared) in the template. The free blocks per size class
    are read from sys._debugmallocstats() (CPython's own table; nothing is filled if its
    format is not the one known here)."""
    keep: list[object] = []
    for size, avail in free_blocks().items():
        if size >= 48:
            keep += [bytes(size - _BYTES_HEADER) for _ in range(avail)]
        elif size == 32:
            keep += [_BIG_INT + i for i in range(avail)]  # not a cached small int: 28 bytes
    return keep


def _main() -> int:
    package = os.path.dirname(os.path.realpath(__file__))
    sys.path.append(os.path.dirname(package))
    _ensure_bytecode(package)
    global lean, nsexec, shim, _NULL
    from runtime import lean, nsexec, shim  # imported here so that forks share them

    _NULL = os.open("/dev/null", os.O_RDWR | os.O_CLOEXEC)

    chan = lean.Socket(lean.AF_UNIX, lean.SOCK_SEQPACKET, 0, 0)
    os.chdir("/")
    shim.tune_malloc()
    try:
        shim.warm_up(WARM_UP_ROUNDS)
    except Exception as e:  # noqa: BLE001 - an optimisation: the template works without it
        print(f"zygote: warm-up failed: {e!r}", file=sys.stderr, flush=True)
    gc.collect()  # what the warm-up freed is free before the pools are filled
    try:
        _FILLER[:] = _fill_pools()
    except (OSError, ValueError) as e:  # an optimisation, as the warm-up
        print(f"zygote: cannot fill the allocator's pools: {e!r}", file=sys.stderr, flush=True)
    # Everything imported so far is what the monitors share: no collection may touch it again.
    gc.collect()
    gc.freeze()
    # The monitors and exec processes are this process's children (_detach): reaped by the
    # kernel, not by a waitpid between two requests.
    lean.signal.signal(lean.signal.SIGCHLD, lean.signal.SIG_IGN)
    chan.send(b"ready")
    return serve(chan, {MONITOR: fork_monitor, EXEC: fork_exec})


if __name__ == "__main__":
    sys.exit(_main())
