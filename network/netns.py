"""Network namespaces as files: created and configured from a thread of their own.

The daemon is multi-threaded, so it never unshares itself, nor enters a namespace on a
thread that does other work. A network namespace is per thread, though (unlike a mount
namespace, whose setns fails in a threaded process): `create` unshares one on a fresh
thread, bind-mounts it on FILE from there and returns the thread to the daemon's namespace;
`run_in` and `sockets_in` enter one on a fresh thread the same way. Each such thread ends
right after: one that failed to return to the daemon's namespace must not go on to serve
anything else. No process is forked for this (`unshare --net=FILE` and `nsenter ... ip`
cost 4-30 ms each of a container start on a busy host): the inside of a new container's
namespace is set through netlink from such a thread (network/inside.py). `configure`
(`nsenter --net=FILE ip -batch -`, a plain subprocess) stays for the rarer changes of a
running container's namespace (connect, disconnect, IPv6). Unmounting a bind mount is an
ordinary umount2() on the host's mount table and is safe from any thread. Sockets belong for
life to the namespace they were created in, which is how the embedded DNS resolver listens
inside containers while the daemon's loop serves it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import errno
import functools
import json
import os
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

_MNT_DETACH = 2
_MS_BIND = 0x1000
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


async def create(path: Path, inside: Callable[[], None] | None = None) -> None:
    """A fresh netns bind-mounted on `path` (only `lo`, down); `inside` runs in it first (on
    the thread that made it). On failure nothing is left."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(exist_ok=True)

    def enter() -> None:
        if _libc.unshare(_CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"unshare: {os.strerror(err)}")
        # This thread's namespace, not the process's: the daemon's own stays where it is.
        if _libc.mount(b"/proc/thread-self/ns/net", os.fsencode(str(path)), None, _MS_BIND, None) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"bind mount of a network namespace on {path}: {os.strerror(err)}")

    try:
        await _on_fresh_thread(enter, inside or _nothing, lambda _: remove(path), "netns-create")
    except BaseException:
        # Cancelled, the thread may still mount it: then the callback above removes it again.
        with contextlib.suppress(OSError, NetnsError):
            remove(path)
        raise


def _nothing() -> None:
    return None


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


def rebind(source: Path, target: Path) -> None:
    """Moves a namespace file (blocking): `target` gets the namespace (bind mount), `source`
    goes (a mount point cannot be renamed). The namespace lives on throughout."""
    target.touch(exist_ok=True)
    if _libc.mount(os.fsencode(str(source)), os.fsencode(str(target)), None, _MS_BIND, None) != 0:
        err = ctypes.get_errno()
        with contextlib.suppress(OSError):
            target.unlink()
        raise NetnsError(f"bind mount of {source} on {target}: {os.strerror(err)}")
    remove(source)


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

    return await _on_fresh_thread(functools.partial(_enter, path), make, close, "netns-sockets")


async def run_in(path: Path, work: Callable[[], T], before: Callable[[], None] | None = None) -> T:
    """Runs `work` inside the namespace file `path` (on a fresh thread, as sockets_in);
    `before` first, on that thread in the daemon's namespace (one thread hop for both)."""

    def enter() -> None:
        if before is not None:
            before()
        _enter(path)

    return await _on_fresh_thread(enter, work, lambda _: None, "netns-run")


def _enter(path: Path) -> None:
    """Moves the calling thread into the namespace file `path`."""
    target = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        _setns(target)
    finally:
        os.close(target)


async def _on_fresh_thread(enter: Callable[[], None], make: Callable[[], T], close: Callable[[T], None],
                           name: str) -> T:
    """`enter` moves a fresh thread into a network namespace, `make` runs there, and the
    thread returns to the namespace it started in before it delivers the result and ends."""
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
                enter()
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
                os.close(own)
        except BaseException as e:  # handed to the awaiting coroutine
            loop.call_soon_threadsafe(deliver, False, e)
        else:
            loop.call_soon_threadsafe(deliver, True, result)

    threading.Thread(target=run, name=name, daemon=True).start()
    return await fut
