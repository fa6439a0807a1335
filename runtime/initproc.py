"""The container's init before exec: runs in the child the monitor forks into the new pid namespace.

Order matters and follows runc: namespaces, mounts and pivot_root, hostname, console,
working directory, user and capabilities, then block until the monitor says "start",
then find and exec the command. Everything the monitor must learn goes over ``chan``
(a SEQPACKET socket whose child end is close-on-exec, so EOF after ``{"exec": true}``
means the execve succeeded):

* ``{"ready": true}`` once set up (with the pty master attached for tty=True),
* ``{"exec": true}`` right before execve (an execve that fails after it is the command's
  failure, reported on its stderr with exit code 1, as runc does),
* ``{"error": "...", "exit_code": N, "stage": "setup" | "exec"}`` on failure.
"""

from __future__ import annotations

import binascii
import contextlib
import fcntl
import os
import resource
import select
import struct

from . import lean, libc, lookpath, rootfs, seccomp, users

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import NoReturn

signal = lean.signal

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

_TIOCSCTTY = 0x540E
_SIOCGIFFLAGS = 0x8913
_SIOCSIFFLAGS = 0x8914
_IFF_UP = 0x1
_IFREQ = "16sH22x"


def setup_exit_code(message: str) -> int:
    """The exit code dockerd records for a container whose runtime start failed."""
    if "executable file not found" in message or "no such file or directory" in message:
        return 127
    if "permission denied" in message:
        return 126
    if "not a directory" in message:
        return 127
    return 128


def _send(chan: lean.Socket, msg: dict, fds: list[int] | None = None) -> None:
    data = lean.dumps(msg)
    if fds:
        lean.send_fds(chan, data, fds)
    else:
        chan.send(data)


def _reset_signals() -> None:
    # The monitor ignores SIGHUP/SIGPIPE and Python installs handlers: the container must
    # start with default dispositions and nothing blocked, as after runc.
    signal.set_wakeup_fd(-1)
    for sig in signal.valid_signals():
        if sig in (signal.SIGKILL, signal.SIGSTOP):
            continue
        try:
            signal.signal(sig, signal.SIG_DFL)
        except (OSError, ValueError):
            pass
    signal.pthread_sigmask(signal.SIG_SETMASK, [])


def _loopback_up() -> None:
    sock = lean.Socket(lean.AF_INET, lean.SOCK_DGRAM)
    try:
        raw = fcntl.ioctl(sock.fileno(), _SIOCGIFFLAGS, struct.pack(_IFREQ, b"lo", 0))
        flags = struct.unpack(_IFREQ, raw)[1]
        fcntl.ioctl(sock.fileno(), _SIOCSIFFLAGS, struct.pack(_IFREQ, b"lo", flags | _IFF_UP))
    finally:
        sock.close()


def _join(path: str, nstype: int) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        libc.setns(fd, nstype)
    finally:
        os.close(fd)


def _enter_cgroups(cfg: dict) -> int:
    """Moves the init into the container's cgroups ("0" is the writer itself, whatever its pid in
    the new pid namespace): a cgroup namespace made next is rooted there. The flag to unshare."""
    for procs in cfg.get("cgroup_procs") or []:
        with open(procs, "w") as f:
            f.write("0")
    return libc.CLONE_NEWCGROUP if cfg.get("cgroupns") == "private" else 0


def _namespaces(cfg: dict) -> None:
    network = cfg["network"]
    flags = libc.CLONE_NEWNS | libc.CLONE_NEWUTS | _enter_cgroups(cfg)
    if network == "new":
        flags |= libc.CLONE_NEWNET
    elif network != "host":
        _join(network, libc.CLONE_NEWNET)
    ipc = cfg.get("ipc_ns", "new")
    if ipc == "new":
        flags |= libc.CLONE_NEWIPC
    elif ipc != "host":
        _join(ipc, libc.CLONE_NEWIPC)
    libc.unshare(flags)
    if network == "new":
        _loopback_up()


def _cap_mask(names: list[str], privileged: bool) -> int:
    mask = 0
    for name in names:
        mask |= 1 << libc.CAPABILITIES.index(name)
    mask &= (1 << (libc.cap_last_cap() + 1)) - 1
    if privileged:
        # "All capabilities" means all we have: a monitor that runs without some (a
        # restricted host) cannot grant them, and capset would fail.
        mask &= libc.capget()[1]
    return mask


def _become(ident: users.Identity, cap_mask: int, no_new_privs: bool) -> None:
    libc.drop_bounding_set(cap_mask)
    # Keep the permitted set across setuid so capset can still grant the configured set.
    libc.prctl(libc.PR_SET_KEEPCAPS, 1)
    os.setgroups(ident.groups)
    os.setgid(ident.gid)
    os.setuid(ident.uid)
    libc.prctl(libc.PR_SET_KEEPCAPS, 0)
    libc.capset(cap_mask, cap_mask, 0)
    libc.clear_ambient()
    if no_new_privs:
        libc.prctl(libc.PR_SET_NO_NEW_PRIVS, 1)


def _set_limits(cfg: dict) -> None:
    """oom_score_adj and rlimits: before the capabilities go (lowering the score and raising
    a hard limit need CAP_SYS_RESOURCE), inherited by the command."""
    if cfg.get("oom_score_adj") is not None:
        try:
            with open("/proc/self/oom_score_adj", "w") as f:
                f.write(str(cfg["oom_score_adj"]))
        except OSError as e:  # lowering it needs CAP_SYS_RESOURCE, which the host may lack
            raise OSError(f"cannot set oom_score_adj to {cfg['oom_score_adj']}: "
                          f"{(e.strerror or str(e)).lower()}") from e
    for rl in cfg.get("rlimits") or []:
        number = getattr(resource, "RLIMIT_" + rl["type"].upper())
        soft = resource.RLIM_INFINITY if rl["soft"] < 0 else rl["soft"]
        hard = resource.RLIM_INFINITY if rl["hard"] < 0 else rl["hard"]
        try:
            resource.setrlimit(number, (soft, hard))
        except (OSError, ValueError) as e:
            # Python turns EPERM/EINVAL into ValueErrors with its own words: say it as runc does.
            reason = "operation not permitted" if "not allowed" in str(e) else "invalid argument"
            raise OSError(f"error setting rlimit type {number}: {reason}") from e


def _monitor_gone(chan: lean.Socket) -> bool:
    poller = select.poll()
    poller.register(chan, select.POLLHUP)
    return bool(poller.poll(0))


def _bind_to_monitor(chan: lean.Socket) -> None:
    """If the monitor dies the container must too (nobody would reap, log or report it).
    Armed only now: this process was forked by the monitor's helper (runtime/shim.py), and
    a parent death signal fires when the parent exits, the helper's exit included; the
    monitor reaps the helper before it sends "start", so the parent is the monitor by now.
    Until then a monitor that dies closes the channel, on which setup ends (EOF, EPIPE).
    getppid() is 0 in a new pid namespace, so the check that the monitor was still there
    when the signal was armed looks at its end of the channel instead."""
    libc.prctl(libc.PR_SET_PDEATHSIG, signal.SIGKILL)
    if _monitor_gone(chan):
        os._exit(1)


def _prepare(cfg: dict, stdio: tuple[int, int, int] | None,
             chan: lean.Socket) -> tuple[rootfs.Console | None, list[str]]:
    os.setsid()
    os.umask(0)
    if stdio is not None:
        for target, fd in enumerate(stdio):
            os.dup2(fd, target)
    _namespaces(cfg)
    console = rootfs.setup(cfg)
    libc.sethostname(cfg["hostname"])
    if cfg["domainname"]:
        libc.setdomainname(cfg["domainname"])
    ident = users.resolve(cfg["user"], extra_groups=cfg.get("group_add") or [])
    if console is not None:
        os.fchown(console.slave, ident.uid, -1)
        fcntl.ioctl(console.slave, _TIOCSCTTY, 0)
        for target in (0, 1, 2):
            os.dup2(console.slave, target)
        os.close(console.slave)
    cwd = cfg["cwd"]
    os.makedirs(cwd, 0o755, exist_ok=True)  # before --read-only takes effect, as runc
    os.chdir(cwd)
    if cfg.get("readonly_rootfs"):
        rootfs.make_root_readonly()
    _set_limits(cfg)
    env = list(cfg["env"])
    if not any(e.startswith("HOME=") for e in env):
        env.append(f"HOME={ident.home}")
    if not cfg["no_new_privileges"]:
        load_seccomp(cfg)
    _become(ident, _cap_mask(cfg["capabilities"], cfg["privileged"]), cfg["no_new_privileges"])
    os.umask(0o022)
    return console, env


def load_seccomp(cfg: dict) -> None:
    """The container's seccomp filter, as runc places it: without no_new_privs the kernel wants
    CAP_SYS_ADMIN for it, so it goes right before the capabilities are dropped; with
    no_new_privs right before execve, so that as few of our own syscalls as possible pass it."""
    if cfg.get("seccomp"):
        seccomp.load(binascii.a2b_base64(cfg["seccomp"]))


def _exec(cfg: dict, env: list[str], chan: lean.Socket) -> NoReturn:
    args = list(cfg["args"])
    if cfg["init"]:
        args = [rootfs.INIT_PATH, "--", *args]
    path_env = next((e[5:] for e in env if e.startswith("PATH=")), DEFAULT_PATH)
    try:
        path = lookpath.find(args[0], path_env)
    except lookpath.ExecError as e:
        _send(chan, {"error": e.message, "exit_code": e.exit_code, "stage": "exec"})
        os._exit(e.exit_code)
    environ = dict(e.split("=", 1) for e in env)
    if cfg["no_new_privileges"]:
        try:
            load_seccomp(cfg)
        except OSError as e:
            _send(chan, {"error": str(e), "exit_code": 128, "stage": "exec"})
            os._exit(128)
    _send(chan, {"exec": True})
    try:
        os.execve(path, args, environ)
    except OSError as exc:
        # The file was found and is executable; what the kernel refuses now (a binary for another
        # architecture, a script whose interpreter is missing) is the command's own failure, as
        # with runc: the container has started, says why on its stderr and exits 1.
        err = lookpath.execve_error(path, exc)
        with contextlib.suppress(OSError):
            os.write(2, f"{err.message}\n".encode())
        os._exit(1)


def read_config(dir_fd: int) -> dict:
    """The bundle's config.json (runtime/spec.py); raises OSError or ValueError."""
    fd = os.open("config.json", os.O_RDONLY | os.O_CLOEXEC, dir_fd=dir_fd)
    try:
        chunks = []
        while chunk := os.read(fd, 1 << 16):
            chunks.append(chunk)
    finally:
        os.close(fd)
    cfg = lean.loads(b"".join(chunks))
    if not isinstance(cfg, dict):
        raise ValueError("expected an object")
    return cfg


def run(bundle_fd: int, stdio: tuple[int, int, int] | None, chan: lean.Socket) -> NoReturn:
    """Never returns: the process becomes the container's command or exits.

    The config is read here, not by the monitor: this process is a fork of the monitor,
    so whatever memory reading it takes is this process's own and goes with its execve."""
    try:
        _reset_signals()
        try:
            cfg = read_config(bundle_fd)
        except (OSError, ValueError) as e:
            _send(chan, {"error": f"cannot read config.json: {e}", "exit_code": 128, "stage": "setup"})
            os._exit(128)
        try:
            console, env = _prepare(cfg, stdio, chan)
        except Exception as e:  # every setup failure is reported, whatever raised it
            message = getattr(e, "strerror", None) if isinstance(e, OSError) else None
            message = str(message or e) or type(e).__name__
            _send(chan, {"error": message, "exit_code": setup_exit_code(message), "stage": "setup"})
            os._exit(setup_exit_code(message))
        if console is not None:
            _send(chan, {"ready": True}, [console.master])
            os.close(console.master)
        else:
            _send(chan, {"ready": True})
        if not chan.recv(16):  # the monitor gave up (or died) before start
            os._exit(1)
        _bind_to_monitor(chan)
        _exec(cfg, env, chan)
    except BaseException as e:
        try:
            _send(chan, {"error": f"container init failed: {e!r}", "exit_code": 125, "stage": "exec"})
        finally:
            os._exit(125)
