"""`docker exec` inside a running container: join its namespaces, fork, become the command.

Single-threaded on purpose: setns into a mount namespace fails in a threaded process. The
pid namespace only applies to children, hence the fork; this process stays outside, waits
for the command and exits with its status (128+signal for a signal, as dockerd reports).
Stdio are pipes inherited from the daemon; for ``tty`` the pty is allocated here, inside
the container's own devpts (so `tty` names /dev/pts/N as in the container), and its master
goes back to the daemon over the socket whose fd is ``console_fd``.
"""

from __future__ import annotations

import fcntl
import os
import struct
import sys

from . import initproc, lean, libc, lookpath, users

# lean's stand-ins, not json/signal: their imports (re, enum) were a third of an exec's
# start-up time.
signal = lean.signal

# mnt last: after it, /proc/<pid>/ns paths would be the container's own /proc.
_NAMESPACES = ("ipc", "uts", "net", "pid", "cgroup", "mnt")
_TIOCSCTTY = 0x540E
_TIOCSWINSZ = 0x5414
_TIOCSPTLCK = 0x40045431
_TIOCGPTN = 0x80045430


def _open_console(spec: dict) -> None:
    """Allocates the exec's pty from the container's /dev/ptmx, hands the master to the
    daemon and makes the slave our stdio (the forked command inherits it)."""
    master = os.open("/dev/ptmx", os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    fcntl.ioctl(master, _TIOCSPTLCK, struct.pack("i", 0))
    (n,) = struct.unpack("I", fcntl.ioctl(master, _TIOCGPTN, b"\0\0\0\0"))
    slave = os.open(f"/dev/pts/{n}", os.O_RDWR | os.O_NOCTTY)
    size = spec.get("console_size")
    if size and size[0] and size[1]:
        fcntl.ioctl(slave, _TIOCSWINSZ, struct.pack("HHHH", size[0], size[1], 0, 0))
    chan = lean.Socket(lean.AF_UNIX, lean.SOCK_STREAM, 0, int(spec["console_fd"]))
    lean.send_fds(chan, b"m", [master])
    chan.close()
    os.close(master)
    for fd in (0, 1, 2):
        os.dup2(slave, fd)
    os.close(slave)


def _fail(message: str, code: int) -> None:
    os.write(2, f"OCI runtime exec failed: exec failed: unable to start container process: {message}: unknown\r\n"
             .encode())
    os._exit(code)


def _load_seccomp(spec: dict) -> None:
    try:
        initproc.load_seccomp(spec)
    except OSError as e:
        _fail(str(e), 126)


def _child(spec: dict) -> None:
    os.setsid()
    if spec.get("tty"):
        fcntl.ioctl(0, _TIOCSCTTY, 0)
    try:
        ident = users.resolve(spec.get("user") or "", extra_groups=spec.get("group_add") or ())
    except Exception as e:  # noqa: BLE001 - unknown user: reported like runc
        _fail(str(e), 126)
    if spec.get("tty"):
        os.fchown(0, ident.uid, -1)
    env = list(spec["env"])
    if not any(e.startswith("HOME=") for e in env):
        env.append(f"HOME={ident.home}")
    cwd = spec.get("cwd") or "/"
    try:
        os.chdir(cwd)
    except OSError as e:
        _fail(f"chdir to cwd (\"{cwd}\") set in config.json failed: {os.strerror(e.errno or 0).lower()}", 126)
    try:
        initproc._set_limits({"rlimits": spec.get("rlimits")})
    except OSError as e:
        _fail(str(e), 126)
    nnp = bool(spec.get("no_new_privileges"))
    # The container's seccomp filter, placed as in the container's init (see load_seccomp).
    if not nnp:
        _load_seccomp(spec)
    initproc._become(ident, initproc._cap_mask(spec["capabilities"], spec["privileged"]), nnp)
    args = spec["args"]
    path_env = next((e[5:] for e in env if e.startswith("PATH=")), initproc.DEFAULT_PATH)
    try:
        path = lookpath.find(args[0], path_env)
        if nnp:
            _load_seccomp(spec)
        os.execve(path, args, dict(e.split("=", 1) if "=" in e else (e, "") for e in env))
    except lookpath.ExecError as e:
        _fail(e.message, e.exit_code)
    except OSError as e:
        err = lookpath.execve_error(args[0], e)
        _fail(err.message, err.exit_code)


def main(argv: list[str]) -> int:
    spec = lean.loads(argv[0])
    if not isinstance(spec, dict):
        _fail("bad exec spec from the daemon", 126)
        return 126  # not reached: _fail exits
    pid = int(spec["pid"])
    try:
        # Join the container's cgroups first, while the host's /sys/fs/cgroup is still visible.
        # "0" (this thread, the only one) into v1's `tasks`: no global lock and no RCU grace
        # period to wait for (runtime/cgroups.py, join_files); a pid would take the lock.
        for procs in spec.get("cgroup_procs") or []:
            with open(procs, "w") as f:
                f.write("0")
        # The cgroup namespace only when the container has its own (--cgroupns private).
        names = [ns for ns in _NAMESPACES if ns != "cgroup"
                 or os.stat(f"/proc/{pid}/ns/cgroup").st_ino != os.stat("/proc/self/ns/cgroup").st_ino]
        fds = [(os.open(f"/proc/{pid}/ns/{ns}", os.O_RDONLY | os.O_CLOEXEC), ns) for ns in names]
        for fd, _ in fds:
            libc.setns(fd, 0)
            os.close(fd)
    except OSError as e:
        _fail(f"cannot join the container's namespaces: {e}", 126)
    if spec.get("tty"):
        try:
            _open_console(spec)
        except OSError as e:
            _fail(f"cannot allocate a terminal in the container: {e}", 126)
    child = os.fork()
    if child == 0:
        try:
            _child(spec)
        finally:
            os._exit(126)
    # Signals sent to this process (kill of the exec from outside) reach the command.
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2):
        signal.signal(sig, lambda s, _f: os.kill(child, s))
    for fd in (0, 1, 2):
        os.close(fd)  # only the command holds the stdio: EOF reaches the daemon when it exits
    while True:
        try:
            _, status = os.waitpid(child, 0)
            break
        except InterruptedError:
            continue
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.WEXITSTATUS(status)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
