"""`docker cp` (the archive API: stat, get, put) and `docker export`, on running or stopped containers.

Container paths are resolved as dockerd does, with the container's filesystem as '/': a path
under a volume or bind mount is resolved inside that mount's host directory, anything else inside
the rootfs; symlinks never lead out of either (storage.rootpath). Files are then opened relative
to directory fds found by the same symlink-safe walk, because a running container can rename
things between our resolving a path and our using it.

A stopped container's rootfs is not mounted: it is mounted for the time of the operation (a
lease) and unmounted after the last lease goes, unless the container was started meanwhile.
"""

from __future__ import annotations

import asyncio
import os
import posixpath
import stat
import weakref
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

from daemon.containers.collaborators import ContainerVolumes
from daemon.containers.container import Container
from daemon.containers.ctrpath import Located, Mount, locate
from daemon.containers.files import ContainerFiles
from daemon.containers.registry import ContainerRegistry
from daemon.errors import DaemonError, InvalidParameter, NotFound
from daemon.events import EventBus
from daemon.util.bodyreader import ThreadReader
from daemon.util.threadstream import thread_stream
from storage.archive import ArchiveError, MountTarget, extract_tar
from storage.fsmeta import proc_path
from storage.rootpath import resolve_in_root, split
from storage.tarwriter import tar_directory, tar_entry

# Go's os.FileMode type bits, which X-Docker-Container-Path-Stat carries.
_GO_DIR, _GO_SYMLINK, _GO_DEVICE, _GO_PIPE, _GO_SOCKET = 1 << 31, 1 << 27, 1 << 26, 1 << 25, 1 << 24
_GO_SETUID, _GO_SETGID, _GO_CHARDEV, _GO_STICKY = 1 << 23, 1 << 22, 1 << 21, 1 << 20
_CHUNKS = 32  # queued 1 MiB tar chunks between the writer thread and the response


def go_file_mode(mode: int) -> int:
    out = mode & 0o777
    kind = stat.S_IFMT(mode)
    out |= {stat.S_IFDIR: _GO_DIR, stat.S_IFLNK: _GO_SYMLINK, stat.S_IFBLK: _GO_DEVICE,
            stat.S_IFCHR: _GO_DEVICE | _GO_CHARDEV, stat.S_IFIFO: _GO_PIPE, stat.S_IFSOCK: _GO_SOCKET}.get(kind, 0)
    if mode & stat.S_ISUID:
        out |= _GO_SETUID
    if mode & stat.S_ISGID:
        out |= _GO_SETGID
    if mode & stat.S_ISVTX:
        out |= _GO_STICKY
    return out


def _go_time(ns: int) -> str:
    sec, frac = divmod(ns, 1_000_000_000)
    base = datetime.fromtimestamp(sec, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return base + (f".{frac:09d}".rstrip("0") if frac else "") + "Z"


class ArchiveService:
    def __init__(self, *, registry: ContainerRegistry, files: ContainerFiles, volumes: ContainerVolumes,
                 events: EventBus) -> None:
        self.registry = registry
        self.files = files
        self.volumes = volumes
        self.events = events
        self._leases: dict[str, int] = {}

    # -- rootfs leases -----------------------------------------------------------------------
    async def _acquire(self, c: Container) -> Path:
        async with c.lock:
            self._leases[c.id] = self._leases.get(c.id, 0) + 1
            try:
                return await asyncio.to_thread(self.files.mount, c)
            except BaseException:
                self._leases[c.id] -= 1
                raise

    async def _release(self, c: Container) -> None:
        async with c.lock:
            left = self._leases.get(c.id, 1) - 1
            if left > 0:
                self._leases[c.id] = left
                return
            self._leases.pop(c.id, None)
            if not c.running and not c.state["Restarting"] and c.id in self.registry:
                await asyncio.to_thread(self.files.unmount_quietly, c)

    def _leased(self, c: Container, produce: Callable[[Any], None]) -> AsyncIterator[bytes]:
        """The stream of `produce`, releasing the lease taken for it when it ends, or, should the
        response never start iterating it (client gone before the body), when it is collected."""
        done = False

        async def release() -> None:
            nonlocal done
            if not done:
                done = True
                await self._release(c)

        async def body() -> AsyncIterator[bytes]:
            try:
                async for chunk in thread_stream(produce, name="tar-writer", maxchunks=_CHUNKS):
                    yield chunk
            except DaemonError:
                raise
            except Exception as e:
                # Headers are gone already: cutting the stream is all that is left (as dockerd).
                raise DaemonError(f"archive stream failed: {e}") from e
            finally:
                await release()

        gen = body()
        loop = asyncio.get_running_loop()
        weakref.finalize(gen, lambda: None if done or loop.is_closed() else
                         loop.call_soon_threadsafe(lambda: loop.create_task(release())))
        return gen

    # -- resolution --------------------------------------------------------------------------
    def _mounts(self, c: Container) -> list[Mount]:
        """The container's volumes and binds, and the files the daemon bind-mounts into every
        container, seen as the container sees them."""
        points = [m for m in c.mount_points if m["Type"] != "tmpfs"]
        mounts = [Mount(m["Destination"], Path(self.volumes.source(m)), m) for m in points]
        taken = {m["Destination"] for m in points}
        files = self.files.paths(c)
        mounts += [Mount(dest, files[key], {"Type": "bind", "Destination": dest, "RW": True})
                   for key, dest in (("hostname", "/etc/hostname"), ("hosts", "/etc/hosts"),
                                     ("resolv", "/etc/resolv.conf")) if dest not in taken]
        return mounts

    def _locate(self, c: Container, rootfs: Path, path: str, follow_last: bool) -> Located:
        """Resolve `path` inside the container's filesystem (rootfs plus volumes and binds)."""
        return locate(rootfs, self._mounts(c), path, follow_last=follow_last)

    def _below(self, c: Container, cpath: str) -> dict[tuple[str, ...], Mount]:
        """The mounts strictly below the container directory `cpath`, by their path relative to it:
        a copy of that directory goes through them, not into what they hide."""
        top = split(cpath)
        return {tuple(m.parts[len(top):]): m for m in self._mounts(c)
                if m.parts[: len(top)] == top and len(m.parts) > len(top)}

    def _find(self, c: Container, rootfs: Path, ref: str, path: str, follow_last: bool
              ) -> tuple[Located, os.stat_result]:
        """Locate `path` and lstat what is there; NotFound with dockerd's message if nothing is."""
        try:
            loc = self._locate(c, rootfs, path, follow_last=follow_last)
            root_fd, parent = loc.open_parent()
        except (FileNotFoundError, NotADirectoryError):
            raise NotFound(f"Could not find the file {path} in container {ref}") from None
        try:
            return loc, os.stat(loc.rel[-1], dir_fd=parent, follow_symlinks=False) if loc.rel else os.fstat(root_fd)
        except (FileNotFoundError, NotADirectoryError):
            raise NotFound(f"Could not find the file {path} in container {ref}") from None
        finally:
            os.close(parent)
            os.close(root_fd)

    def _stat(self, c: Container, rootfs: Path, ref: str, path: str) -> tuple[Located, dict]:
        # Like dockerd's ResolvePath: the last component is not followed unless the path ends
        # in "/" or "/." (then it names the directory a symlink points to).
        as_dir = path.endswith("/") or path.endswith("/.")
        loc, st = self._find(c, rootfs, ref, path, as_dir)
        if as_dir and not stat.S_ISDIR(st.st_mode):
            # "file/" names nothing (lstat: not a directory); the CLI then says "no such
            # directory" for a copy into it, instead of overwriting the file.
            raise NotFound(f"Could not find the file {path} in container {ref}: not a directory")
        link = ""
        if stat.S_ISLNK(st.st_mode):
            link = self._locate(c, rootfs, loc.cpath, follow_last=True).cpath
        name = posixpath.basename(posixpath.normpath("/" + path)) or "/"
        info = {"name": name, "size": st.st_size, "mode": go_file_mode(st.st_mode),
                "mtime": _go_time(st.st_mtime_ns), "linkTarget": link}
        return loc, info

    # -- API ---------------------------------------------------------------------------------
    async def stat(self, ref: str, path: str) -> dict:
        c = self.registry.get(ref)
        _check_path(path)
        rootfs = await self._acquire(c)
        try:
            _, info = await asyncio.to_thread(self._stat, c, rootfs, ref, path)
        finally:
            await self._release(c)
        return info

    async def get(self, ref: str, path: str) -> tuple[dict, AsyncIterator[bytes]]:
        """The stat of `path` and the tar stream of it (top entry named after its base name)."""
        c = self.registry.get(ref)
        _check_path(path)
        rootfs = await self._acquire(c)
        try:
            loc, info = await asyncio.to_thread(self._stat, c, rootfs, ref, path)
        except BaseException:
            await self._release(c)
            raise
        arcname = "." if path.endswith("/.") else info["name"].strip("/") or "."
        self.events.publish("container", "archive-path", c.id, c.event_attrs())

        below = {rel: m.source for rel, m in self._below(c, loc.cpath).items()}
        return info, self._leased(c, lambda out: _write_tar(loc, arcname, out, below))

    async def put(self, ref: str, path: str, body: AsyncIterator[bytes], *, no_overwrite_dir_nondir: bool,
                  copy_uid_gid: bool) -> None:
        c = self.registry.get(ref)
        _check_path(path)
        rootfs = await self._acquire(c)
        reader = ThreadReader()
        feeder = asyncio.create_task(reader.feed(_coalesce(body)))
        try:
            await asyncio.to_thread(self._put, c, rootfs, ref, path, reader, no_overwrite_dir_nondir,
                                    copy_uid_gid)
        except ArchiveError as e:
            raise InvalidParameter(str(e)) from None
        finally:
            reader.close()
            feeder.cancel()
            await self._release(c)
        self.events.publish("container", "extract-to-dir", c.id, c.event_attrs())

    def _put(self, c: Container, rootfs: Path, ref: str, path: str, reader: BinaryIO, no_overwrite: bool,
             copy_uid_gid: bool) -> None:
        loc, st = self._find(c, rootfs, ref, path, True)  # extracting "into a symlink" follows it
        if not stat.S_ISDIR(st.st_mode):
            raise InvalidParameter("extraction point is not a directory")
        if loc.mount is not None and not loc.mount.point["RW"]:
            raise InvalidParameter("mounted volume is marked read-only")
        if loc.mount is None and c.host_config.get("ReadonlyRootfs"):
            raise InvalidParameter("container rootfs is marked read-only")
        owner = _container_user(rootfs, c.config.get("User") or "") if copy_uid_gid else None
        mounts = {rel: MountTarget(m.source, not m.point["RW"], m.destination)
                  for rel, m in self._below(c, loc.cpath).items()}
        extract_tar(reader, loc.root, subdir="/" + "/".join(loc.rel), no_overwrite_dir_nondir=no_overwrite,
                    owner=owner, mounts=mounts)

    async def export(self, ref: str) -> AsyncIterator[bytes]:
        c = self.registry.get(ref)
        rootfs = await self._acquire(c)
        self.events.publish("container", "export", c.id, c.event_attrs())

        return self._leased(c, lambda out: tar_directory(rootfs, out))


def _check_path(path: str) -> None:
    if not path:
        raise InvalidParameter("Path cannot be empty")


def _write_tar(loc: Located, arcname: str, out: Any, below: dict[tuple[str, ...], Path]) -> None:
    root_fd, parent = loc.open_parent()
    try:
        if not loc.rel:
            # The root itself (rootfs or a mount's source) is the daemon's own path, no symlink.
            tar_directory(loc.root, out, prefix=arcname, mounts=below)
            return
        name = loc.rel[-1]
        st = os.stat(name, dir_fd=parent, follow_symlinks=False)
        if stat.S_ISDIR(st.st_mode):
            # proc_path(parent, name) is opened with O_NOFOLLOW: a swapped-in symlink fails.
            tar_directory(proc_path(parent, name), out, prefix=arcname, mounts=below)
        else:
            tar_entry(parent, name, out, arcname)
    finally:
        os.close(parent)
        os.close(root_fd)


def _container_user(rootfs: Path, user: str) -> tuple[int, int] | None:
    """The uid/gid `docker cp -a` gives files: the container's configured user, if any (else the
    archive's own, as dockerd)."""
    if not user:
        return None
    name, _, group = user.partition(":")

    def entries(file: str) -> list[list[str]]:
        try:
            fd = os.open(resolve_in_root(rootfs, file), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            return []
        with os.fdopen(fd, "r", errors="replace") as f:
            return [line.split(":") for line in f.read(1 << 20).splitlines() if line.count(":") >= 2]

    pw = next((f for f in entries("/etc/passwd") if f[0] == name or (name.isdigit() and f[2] == name)), None)
    if pw is None and not name.isdigit():
        raise InvalidParameter(f"unable to find user {name}: no matching entries in passwd file")
    uid = int(name) if name.isdigit() else int(pw[2])  # type: ignore[index]
    gid = int(pw[3]) if pw and len(pw) > 3 and pw[3].isdigit() else 0
    if group:
        gr = next((f for f in entries("/etc/group") if f[0] == group or f[2] == group), None)
        if gr is None and not group.isdigit():
            raise InvalidParameter(f"unable to find group {group}: no matching entries in group file")
        gid = int(group) if group.isdigit() else int(gr[2])  # type: ignore[index]
    return uid, gid


async def _coalesce(body: AsyncIterator[bytes], size: int = 256 << 10) -> AsyncIterator[bytes]:
    """Regroup small request body chunks (the CLI's can be 16-32 KiB) into ~256 KiB ones, so the
    extracting thread is not woken per chunk. Bigger groups measured slower: tarfile reads 64 KiB
    at a time anyway."""
    buf = bytearray()
    async for chunk in body:
        buf += chunk
        if len(buf) >= size:
            yield bytes(buf)
            buf.clear()
    if buf:
        yield bytes(buf)
