"""Network namespaces as files: created by a short-lived helper, configured from outside.

The daemon is multi-threaded, so it never unshares itself, nor enters a namespace on a
thread that does other work. `unshare --net=FILE true` makes the namespace and bind-mounts
it on FILE; `nsenter --net=FILE ip -batch -` configures its inside. Both are plain
subprocesses (fork/exec in C, no preexec_fn). Unmounting a bind mount is an ordinary
umount2() on the host's mount table and is safe from any thread. The one exception,
`sockets_in`, enters a network namespace (never a mount namespace: that fails in a threaded
process) on a thread of its own that ends right after: a socket belongs for life to the
namespace it was created in, which is how the embedded DNS resolver listens inside
containers while the daemon's loop serves it.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import errno
import json
import os
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

_MNT_DETACH = 2
_CLONE_NEWNET = 0x40000000
T = TypeVar("T")
_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


class NetnsError(Exception):
    pass


async def _run(*argv: str, stdin: bytes | None = None) -> None:
    # In a worker thread: the event loop would otherwise wait for each fork and exec
    # (0.6 ms, over 10 ms on a busy host; two per container start).
    try:
        proc = await asyncio.to_thread(subprocess.run, argv, input=stdin, stdout=subprocess.DEVNULL,
                                       stderr=subprocess.PIPE,
                                       stdin=None if stdin is not None else subprocess.DEVNULL)
    except FileNotFoundError:
        raise NetnsError(f"{argv[0]} is not installed (util-linux)") from None
    if proc.returncode != 0:
        raise NetnsError(f"{' '.join(argv[:3])}: {proc.stderr.decode(errors='replace').strip()}")


async def create(path: Path) -> None:
    """A fresh netns bind-mounted on `path` (only `lo`, down)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(exist_ok=True)
    try:
        await _run("unshare", f"--net={path}", "true")
    except BaseException:
        remove(path)
        raise


# /proc/sys/net follows the netns of the task reading it, so the shell nsenter starts sees
# the container's. IPv6 off as dockerd does for networks without IPv6: no link-local
# addresses, and `ip addr` inside shows what it shows under dockerd.
_NO_IPV6 = ("echo 1 > /proc/sys/net/ipv6/conf/all/disable_ipv6 && "
            "echo 1 > /proc/sys/net/ipv6/conf/default/disable_ipv6; ")


async def configure(path: Path, commands: list[str], disable_ipv6: bool = False,
                    enable_ipv6_on: tuple[str, ...] = ()) -> None:
    """Runs `ip` commands (batch syntax, one per item) inside the namespace; optionally
    turns IPv6 off everywhere first, or back on for some interfaces (a later connect to an
    IPv6 network)."""
    script = _NO_IPV6 if disable_ipv6 else ""
    for ifname in enable_ipv6_on:
        if not ifname.replace("_", "").replace("-", "").isalnum():
            raise NetnsError(f"invalid interface name {ifname!r}")
        script += f"echo 0 > /proc/sys/net/ipv6/conf/{ifname}/disable_ipv6; "
    argv = ["sh", "-c", script + "exec ip -batch -"] if script else ["ip", "-batch", "-"]
    await _run("nsenter", f"--net={path}", *argv, stdin=("\n".join(commands) + "\n").encode())


async def addresses(path: Path) -> dict[str, str]:
    """IPv4 address -> interface name inside the namespace (empty when it cannot be read)."""
    try:
        proc = await asyncio.to_thread(subprocess.run, ["nsenter", f"--net={path}", "ip", "-j", "-4", "addr", "show"],
                                       stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    except FileNotFoundError:
        return {}
    try:
        links = json.loads(proc.stdout or b"[]")
    except ValueError:
        return {}
    return {a["local"]: link["ifname"] for link in links for a in link.get("addr_info", [])
            if "local" in a and "ifname" in link}


def is_mounted(path: Path) -> bool:
    target = str(path)
    try:
        with open("/proc/self/mountinfo") as f:
            return any(line.split()[4] == target for line in f)
    except OSError:
        return False


def remove(path: Path) -> None:
    """Unmounts and deletes the namespace file; the namespace dies with its last user."""
    for _ in range(4):  # a file may carry stacked mounts after a crash mid-create
        if _libc.umount2(os.fsencode(str(path)), _MNT_DETACH) != 0:
            err = ctypes.get_errno()
            if err in (errno.EINVAL, errno.ENOENT):
                break
            raise NetnsError(f"umount {path}: {os.strerror(err)}")
    try:
        path.unlink()
    except FileNotFoundError:
        pass


def leftovers(directory: Path, keep: set[str]) -> list[Path]:
    """Namespace files in `directory` whose name is not in `keep` (crash reconciliation)."""
    try:
        return [p for p in directory.iterdir() if p.name not in keep]
    except FileNotFoundError:
        return []


def _setns(fd: int) -> None:
    if _libc.setns(fd, _CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


async def sockets_in(path: Path, make: Callable[[], T], close: Callable[[T], None]) -> T:
    """Runs `make` (which creates sockets) inside the namespace file `path` and returns its
    result. It runs on a fresh thread, never a pooled one: a thread that failed to return to
    the daemon's namespace must not go on to serve anything else, and this one ends at once.
    `close` undoes `make` when the caller stopped waiting meanwhile."""
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[T] = loop.create_future()

    def deliver(ok: bool, value: object) -> None:
        if fut.cancelled():
            if ok:
                close(value)  # type: ignore[arg-type]
            return
        if ok:
            fut.set_result(value)  # type: ignore[arg-type]
        else:
            fut.set_exception(value)  # type: ignore[arg-type]

    def run() -> None:
        try:
            own = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
            try:
                target = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
                try:
                    _setns(target)
                    try:
                        result = make()
                    except BaseException:
                        _setns(own)
                        raise
                    try:
                        _setns(own)
                    except BaseException:
                        close(result)
                        raise
                finally:
                    os.close(target)
            finally:
                os.close(own)
        except BaseException as e:  # handed to the awaiting coroutine
            loop.call_soon_threadsafe(deliver, False, e)
        else:
            loop.call_soon_threadsafe(deliver, True, result)

    threading.Thread(target=run, name="netns-sockets", daemon=True).start()
    return await fut
