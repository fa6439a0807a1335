"""The monitors' template process: ``python3 -S -I <dir>/zygote.py <exec-root>``, fd 0 a
SEQPACKET socket to the daemon.

Why: a monitor started as a fresh interpreter holds ~4.3 MiB of private memory (its heap:
the interpreter's own objects and the modules it imports) and takes ~50 ms to be ready.
This process imports everything a monitor runs, freezes the garbage collector
(``gc.freeze()``: the collector never writes to those objects, so their pages stay clean)
and then forks one monitor per request. A forked monitor shares those pages copy-on-write
with the template and with every other monitor forked from it and only pays for the pages
it writes itself (~0.5 MiB).

Why the process model keeps the monitor's guarantees:

* Containers survive the daemon (SIGTERM, kill -9, restart): each request is forked twice,
  the intermediate calls setsid() and exits at once and the template reaps it, so a
  monitor is the child of neither the daemon nor the template; it lives in its own session
  like a monitor started from monitor.py. Nothing ties its life to either process: no
  PDEATHSIG, no pipe or socket to them (all of its fds except its stdio are closed right
  after the fork; its stdout is the daemon's ready pipe, replaced by /dev/null once the
  ready line is written, exactly as before).
* The template itself is tied to the daemon: it exits when its socket reaches EOF, which
  the kernel delivers when the daemon exits for any reason, kill -9 included. A restarted
  daemon starts a new template; monitors forked by the old one go on unaffected (the pages
  they shared stay shared between them, their memory is their own once written).
* A monitor crash loses no exit code: the monitor is the same code as before (runtime/shim.py)
  and records ``exit.json`` the same way; the template holds no state about it. The
  template crashing costs no container either: the daemon sees EOF on the ready pipe of a
  request in flight (reported as a failed start), and starts monitors as fresh interpreters
  (runtime/launcher.py) until a new template is up.
* Nothing of one container is shared with another's: the template never reads a bundle,
  a config or a log; it only receives a bundle path and two fds (the log, the ready pipe),
  which it closes after the fork, so the next monitor inherits none of them. What the
  monitors share are the read-only pages of the interpreter and the imported modules.
"""

from __future__ import annotations

import gc
import os
import sys

TYPE_CHECKING = False  # not typing's: its import costs the template ~9 ms and memory
if TYPE_CHECKING:
    from collections.abc import Callable
    from socket import socket


def serve(chan: socket, fork_monitor: Callable[[str, int, int], None]) -> int:
    """Answer spawn requests until the daemon closes its end (EOF): returns 0 then."""
    from runtime import lean

    while True:
        try:
            data, fds = lean.recv_fds(chan, 4096, 2)
        except InterruptedError:
            continue
        if not data:
            return 0
        try:
            if len(fds) == 2:
                fork_monitor(os.fsdecode(data), fds[0], fds[1])
            else:
                print(f"zygote: bad request ({len(fds)} fds)", file=sys.stderr, flush=True)
        finally:
            for fd in fds:
                os.close(fd)


def fork_monitor(bundle: str, log_fd: int, ready_fd: int) -> None:
    """Fork a detached monitor for `bundle`; returns once the intermediate child is reaped."""
    from runtime import shim

    try:
        pid = os.fork()
    except OSError as e:
        # The daemon sees EOF on the ready pipe and reports monitor.log's tail.
        os.write(log_fd, f"cannot fork the container monitor: {e}\n".encode())
        return
    if pid == 0:
        code = 1
        try:
            os.setsid()
            if os.fork() != 0:
                os._exit(0)
            null = os.open("/dev/null", os.O_RDWR)
            os.dup2(null, 0)
            os.dup2(ready_fd, 1)
            os.dup2(log_fd, 2)
            # The daemon's socket and this request's fds: the monitor keeps only its stdio.
            os.closerange(3, os.sysconf("SC_OPEN_MAX"))
            _name_process(b"pyd-monitor")
            code = shim.run(bundle)
        except BaseException:
            shim._print_exc()
        finally:
            os._exit(code)
    while True:
        try:
            os.waitpid(pid, 0)
            return
        except InterruptedError:
            continue
        except ChildProcessError:
            return


def _name_process(name: bytes) -> None:
    # What ps and top show: the monitors' command line is the template's.
    try:
        with open("/proc/self/comm", "wb") as f:
            f.write(name)
    except OSError:
        pass


def _main() -> int:
    sys.path.append(os.path.dirname(os.path.dirname(os.path.realpath(__file__))))
    from runtime import lean, shim  # noqa: F401 - imported here so that forks share it

    chan = lean.Socket(lean.AF_UNIX, lean.SOCK_SEQPACKET, 0, 0)
    os.chdir("/")
    # Everything imported so far is what the monitors share: no collection may touch it again.
    gc.collect()
    gc.freeze()
    chan.send(b"ready")
    return serve(chan, fork_monitor)


if __name__ == "__main__":
    sys.exit(_main())
