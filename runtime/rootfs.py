"""The container's filesystem view: mounts, /dev, pivot_root, masked and read-only paths.

Runs in the container's init (a child of the monitor) after unshare(CLONE_NEWNS), before
the command is exec'd. The rootfs is image content, so it is untrusted: mount points are
resolved with the rootfs as "/" (a symlink can never lead to the host), and mounting goes
through an O_PATH descriptor checked to be inside the rootfs, as runc does.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
import struct

from . import libc
from .libc import (
    MNT_DETACH,
    MS_BIND,
    MS_DIRSYNC,
    MS_MANDLOCK,
    MS_NOATIME,
    MS_NODEV,
    MS_NODIRATIME,
    MS_NOEXEC,
    MS_NOSUID,
    MS_PRIVATE,
    MS_RDONLY,
    MS_REC,
    MS_RELATIME,
    MS_REMOUNT,
    MS_SHARED,
    MS_SLAVE,
    MS_STRICTATIME,
    MS_SYNCHRONOUS,
    MS_UNBINDABLE,
)

INIT_PATH = "/sbin/docker-init"

_TIOCSPTLCK = 0x40045431
_TIOCGPTPEER = 0x5441
_TIOCSWINSZ = 0x5414

_DEVICES = (("null", 1, 3), ("zero", 1, 5), ("full", 1, 7), ("random", 1, 8), ("urandom", 1, 9),
            ("tty", 5, 0))
_DEV_LINKS = (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1"),
              ("stderr", "/proc/self/fd/2"), ("ptmx", "pts/ptmx"), ("core", "/proc/kcore"))

# mount(8) option words -> (flag, set?); everything else is filesystem data.
_FLAG_WORDS = {
    "ro": (MS_RDONLY, True), "rw": (MS_RDONLY, False),
    "nosuid": (MS_NOSUID, True), "suid": (MS_NOSUID, False),
    "nodev": (MS_NODEV, True), "dev": (MS_NODEV, False),
    "noexec": (MS_NOEXEC, True), "exec": (MS_NOEXEC, False),
    "sync": (MS_SYNCHRONOUS, True), "async": (MS_SYNCHRONOUS, False),
    "dirsync": (MS_DIRSYNC, True), "mand": (MS_MANDLOCK, True), "nomand": (MS_MANDLOCK, False),
    "noatime": (MS_NOATIME, True), "atime": (MS_NOATIME, False),
    "nodiratime": (MS_NODIRATIME, True), "diratime": (MS_NODIRATIME, False),
    "relatime": (MS_RELATIME, True), "norelatime": (MS_RELATIME, False),
    "strictatime": (MS_STRICTATIME, True),
}
_PROPAGATION_WORDS = {
    "private": MS_PRIVATE, "rprivate": MS_PRIVATE | MS_REC,
    "slave": MS_SLAVE, "rslave": MS_SLAVE | MS_REC,
    "shared": MS_SHARED, "rshared": MS_SHARED | MS_REC,
    "unbindable": MS_UNBINDABLE, "runbindable": MS_UNBINDABLE | MS_REC,
}
# statvfs f_flag bits that a bind remount must repeat or the kernel refuses it (locked flags).
_KEPT_FLAGS = ((2, MS_NOSUID), (4, MS_NODEV), (8, MS_NOEXEC), (1024, MS_NOATIME),
               (2048, MS_NODIRATIME), (4096, MS_RELATIME))


class MountError(Exception):
    pass


class Console:
    """The container's pty, created in its own devpts instance."""

    def __init__(self, master: int, slave: int) -> None:
        self.master = master
        self.slave = slave


def resolve(root: str, path: str) -> str:
    """Host path of the container path ``path``, symlinks evaluated as if ``root`` were "/".

    Like Go's securejoin: ``..`` and absolute symlink targets stop at ``root``. Missing
    components are kept as they are (the caller may create them).
    """
    pending = [p for p in path.split("/") if p and p != "."]
    pending.reverse()
    done: list[str] = []
    links = 0
    while pending:
        part = pending.pop()
        if part == "..":
            if done:
                done.pop()
            continue
        host = os.path.join(root, *done, part)
        try:
            st = os.lstat(host)
        except FileNotFoundError:
            done.append(part)
            continue
        if stat.S_ISLNK(st.st_mode):
            links += 1
            if links > 40:
                raise OSError(errno.ELOOP, f"{path}: too many levels of symbolic links")
            target = os.readlink(host)
            if target.startswith("/"):
                done = []
            pending.extend(reversed([p for p in target.split("/") if p and p != "."]))
            continue
        done.append(part)
    return os.path.join(root, *done)


def _inside(root: str, fd: int) -> bool:
    real = os.readlink(f"/proc/self/fd/{fd}")
    return real == root or real.startswith(root + "/")


def _mountpoint(root: str, dest: str, is_dir: bool, no_symlinks: bool = False) -> int:
    """O_PATH descriptor of ``dest`` in ``root``, created (as a dir or empty file) if missing."""
    host = resolve(root, dest)
    if no_symlinks and host != os.path.join(root, *[p for p in dest.split("/") if p]):
        raise MountError(f"{dest} in the rootfs is a symbolic link: refusing to mount over it")
    rel = os.path.relpath(host, root)
    parts = [] if rel == "." else rel.split("/")
    current = root
    for i, part in enumerate(parts):
        current = os.path.join(current, part)
        last = i == len(parts) - 1
        try:
            if last and not is_dir:
                os.close(os.open(current, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_NOFOLLOW
                                 | os.O_CLOEXEC, 0o755))
            else:
                os.mkdir(current, 0o755)
        except FileExistsError:
            pass
    fd = os.open(host, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC)
    if not _inside(root, fd):
        os.close(fd)
        raise MountError(f"{dest} resolves outside the rootfs")
    return fd


def _mount_at(root: str, dest: str, source: str | None, fstype: str | None, flags: int,
              data: str | None, is_dir: bool = True, no_symlinks: bool = False) -> None:
    try:
        fd = _mountpoint(root, dest, is_dir, no_symlinks)
        try:
            libc.mount(source, f"/proc/self/fd/{fd}", fstype, flags, data)
        finally:
            os.close(fd)
    except OSError as e:
        reason = (e.strerror or str(e)).split(": ")[-1]
        reason = reason[:1].lower() + reason[1:]  # Go-style, as runc words it
        raise MountError(f'error mounting "{source}" to rootfs at "{dest}": {reason}') from e


def _remount_flags(path_or_fd: str | int) -> int:
    st = os.statvfs(path_or_fd)
    flags = 0
    for vfs_bit, ms_flag in _KEPT_FLAGS:
        if st.f_flag & vfs_bit:
            flags |= ms_flag
    return flags


def parse_options(options: str) -> tuple[int, int, int, str]:
    """Split mount(8)-style options into (flags to set, flags to clear, propagation, data)."""
    set_flags = clear_flags = propagation = 0
    data = []
    for word in filter(None, (w.strip() for w in options.split(","))):
        if word in _FLAG_WORDS:
            flag, on = _FLAG_WORDS[word]
            if on:
                set_flags, clear_flags = set_flags | flag, clear_flags & ~flag
            else:
                set_flags, clear_flags = set_flags & ~flag, clear_flags | flag
        elif word in _PROPAGATION_WORDS:
            propagation = _PROPAGATION_WORDS[word]
        elif word not in ("bind", "rbind"):
            data.append(word)
    return set_flags, clear_flags, propagation, ",".join(data)


def _bind(root: str, mount: dict) -> None:
    source, dest = mount["source"], mount["destination"]
    try:
        is_dir = stat.S_ISDIR(os.stat(source).st_mode)
    except OSError as e:
        raise MountError(f'error mounting "{source}" to rootfs at "{dest}": '
                         f"stat {source}: {os.strerror(e.errno or errno.EIO).lower()}") from e
    set_flags, _, propagation, _ = parse_options(mount.get("options", ""))
    words = mount.get("options", "").split(",")
    recursive = "bind" not in words
    _mount_at(root, dest, source, None, MS_BIND | (MS_REC if recursive else 0), None, is_dir)
    if mount.get("readonly"):
        set_flags |= MS_RDONLY
    if set_flags or propagation:
        # Bind mounts ignore flags on creation: they take effect in a remount of the new mount.
        fd = _mountpoint(root, dest, is_dir)
        try:
            target = f"/proc/self/fd/{fd}"
            if set_flags:
                flags = MS_BIND | MS_REMOUNT | set_flags | _remount_flags(fd)
                libc.mount(None, target, None, flags, None)
            if propagation:
                libc.mount(None, target, None, propagation, None)
        except OSError as e:
            raise MountError(f'error mounting "{source}" to rootfs at "{dest}": {e.strerror}') from e
        finally:
            os.close(fd)


def _other(root: str, mount: dict) -> None:
    set_flags, _, propagation, data = parse_options(mount.get("options", ""))
    if mount.get("readonly"):
        set_flags |= MS_RDONLY
    _mount_at(root, mount["destination"], mount.get("source") or mount["type"], mount["type"],
              set_flags, data or None)
    if propagation:
        fd = _mountpoint(root, mount["destination"], True)
        try:
            libc.mount(None, f"/proc/self/fd/{fd}", None, propagation, None)
        finally:
            os.close(fd)


def _populate_dev(dev: str) -> None:
    dev_fd = os.open(dev, os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        for name, major, minor in _DEVICES:
            os.mknod(name, stat.S_IFCHR | 0o666, os.makedev(major, minor), dir_fd=dev_fd)
        for name, target in _DEV_LINKS:
            os.symlink(target, name, dir_fd=dev_fd)
        for name in ("pts", "shm", "mqueue"):
            os.mkdir(name, 0o755, dir_fd=dev_fd)
    finally:
        os.close(dev_fd)


def _standard_mounts(root: str, cfg: dict) -> None:
    nse = MS_NOSUID | MS_NOEXEC | MS_NODEV
    _mount_at(root, "/proc", "proc", "proc", nse, None, no_symlinks=True)
    sys_flags = nse if cfg["privileged"] else nse | MS_RDONLY
    _mount_at(root, "/sys", "sysfs", "sysfs", sys_flags, None, no_symlinks=True)
    _cgroup_mounts(os.path.join(root, "sys/fs/cgroup"), cfg)
    _mount_at(root, "/dev", "tmpfs", "tmpfs", MS_NOSUID | MS_STRICTATIME, "mode=755,size=65536k",
              no_symlinks=True)
    dev = os.path.join(root, "dev")
    # A fresh tmpfs that nothing else can see yet: plain paths below it are safe.
    _populate_dev(dev)
    libc.mount("devpts", f"{dev}/pts", "devpts", MS_NOSUID | MS_NOEXEC,
               "newinstance,ptmxmode=0666,mode=0620,gid=5")
    if cfg.get("ipc_ns") == "host":
        # dockerd shares the host's /dev/shm along with its IPC namespace.
        libc.mount("/dev/shm", f"{dev}/shm", None, MS_BIND | MS_REC, None)
    else:
        libc.mount("shm", f"{dev}/shm", "tmpfs", nse, f"mode=1777,size={cfg['shm_size']}")
    libc.mount("mqueue", f"{dev}/mqueue", "mqueue", nse, None)


def _cgroup_mounts(target: str, cfg: dict) -> None:
    """/sys/fs/cgroup as runc makes it, showing the container's own cgroups: with a cgroup
    namespace the hierarchies are mounted afresh (rooted at the container's cgroup), else the
    container's cgroup directories are bound; read-only unless privileged. ``target`` is in a
    fresh sysfs, so plain paths below it are safe."""
    mounts = cfg.get("cgroup_mounts") or []
    if not mounts:
        return
    nse = MS_NOSUID | MS_NOEXEC | MS_NODEV
    ro = 0 if cfg["privileged"] else MS_RDONLY
    private = cfg.get("cgroupns") == "private"

    def mount_one(hierarchy: str, source: str, dest: str) -> None:
        if private:
            fstype = "cgroup" if hierarchy else "cgroup2"
            libc.mount(fstype, dest, fstype, nse | ro, hierarchy or None)
        else:
            libc.mount(source, dest, None, MS_BIND, None)
            if ro:
                libc.mount(None, dest, None, MS_BIND | MS_REMOUNT | MS_RDONLY | nse, None)

    try:
        if len(mounts) == 1 and not mounts[0]["hierarchy"]:  # v2: one hierarchy
            mount_one("", mounts[0]["source"], target)
            return
        libc.mount("tmpfs", target, "tmpfs", nse, "mode=755")
        for m in mounts:
            dest = os.path.join(target, m["hierarchy"])
            os.mkdir(dest, 0o755)
            mount_one(m["hierarchy"], m["source"], dest)
            for name in m["hierarchy"].split(","):  # cpu -> cpu,cpuacct where co-mounted
                if name != m["hierarchy"] and not os.path.lexists(os.path.join(target, name)):
                    os.symlink(m["hierarchy"], os.path.join(target, name))
        if ro:
            libc.mount(None, target, None, MS_REMOUNT | MS_RDONLY | nse, "mode=755")
    except OSError as e:
        raise MountError(f"cannot mount /sys/fs/cgroup: {e.strerror or e}") from e


def _add_devices(root: str, devices: list[dict]) -> None:
    """``--device``: a node like the host's (type, numbers, mode, owner), as runc creates it."""
    for device in devices:
        source, dest = device["source"], device["destination"]
        try:
            st = os.stat(source)
        except OSError as e:
            raise MountError(f'error gathering device information while adding custom device "{source}": '
                             f"{os.strerror(e.errno or errno.EIO).lower()}") from e
        if not (stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode) or stat.S_ISFIFO(st.st_mode)):
            raise MountError(f'error gathering device information while adding custom device "{source}": '
                             "not a device node")
        host = resolve(root, dest)
        os.makedirs(os.path.dirname(host), 0o755, exist_ok=True)
        try:
            os.unlink(host)  # runc replaces whatever the image has there
        except FileNotFoundError:
            pass
        os.mknod(host, st.st_mode, st.st_rdev)
        fd = os.open(host, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            if not _inside(root, fd):
                raise MountError(f"{dest} resolves outside the rootfs")
        finally:
            os.close(fd)
        os.chown(host, st.st_uid, st.st_gid, follow_symlinks=False)
        os.chmod(host, stat.S_IMODE(st.st_mode))  # mknod's mode went through the umask


def _console(root: str, cfg: dict) -> Console:
    dev = os.path.join(root, "dev")
    master = os.open(f"{dev}/pts/ptmx", os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    fcntl.ioctl(master, _TIOCSPTLCK, struct.pack("i", 0))
    slave = fcntl.ioctl(master, _TIOCGPTPEER, os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    if cfg.get("console_size"):
        height, width = cfg["console_size"]
        fcntl.ioctl(master, _TIOCSWINSZ, struct.pack("HHHH", height, width, 0, 0))
    os.close(os.open(f"{dev}/console", os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_CLOEXEC, 0o600))
    libc.mount(f"/proc/self/fd/{slave}", f"{dev}/console", None, MS_BIND, None)
    return Console(master, slave)


def _pivot(root: str) -> None:
    old = os.open("/", os.O_DIRECTORY | os.O_RDONLY | os.O_CLOEXEC)
    new = os.open(root, os.O_DIRECTORY | os.O_RDONLY | os.O_CLOEXEC)
    try:
        # pivot_root(".", ".") stacks the old root on the new one, so no directory has to
        # be created in the image; the old root is then unmounted from where it landed.
        os.fchdir(new)
        libc.pivot_root(".", ".")
        os.fchdir(old)
        libc.mount(None, ".", None, MS_SLAVE | MS_REC, None)
        libc.umount2(".", MNT_DETACH)
    finally:
        os.close(old)
        os.close(new)
    os.chdir("/")


def _mask(paths: list[str]) -> None:
    for path in paths:
        try:
            if os.path.isdir(path):
                libc.mount("tmpfs", path, "tmpfs", MS_RDONLY, None)
            elif os.path.lexists(path):
                libc.mount("/dev/null", path, None, MS_BIND, None)
        except OSError as e:
            if e.errno != errno.ENOENT:
                raise MountError(f"cannot mask {path}: {e.strerror}") from e


def _readonly(paths: list[str]) -> None:
    for path in paths:
        try:
            libc.mount(path, path, None, MS_BIND | MS_REC, None)
            libc.mount(None, path, None, MS_BIND | MS_REMOUNT | MS_RDONLY | _remount_flags(path), None)
        except OSError as e:
            if e.errno != errno.ENOENT:
                raise MountError(f"cannot make {path} read-only: {e.strerror}") from e


def setup(cfg: dict) -> Console | None:
    """Build the mount tree for ``cfg`` and pivot into it; returns the console for tty=True."""
    root = os.path.realpath(cfg["rootfs"])
    if not os.path.isdir(root):
        raise MountError(f"rootfs {cfg['rootfs']}: no such file or directory")
    libc.mount(None, "/", None, MS_REC | MS_PRIVATE, None)
    libc.mount(root, root, None, MS_BIND | MS_REC, None)
    _standard_mounts(root, cfg)
    console = _console(root, cfg) if cfg["tty"] else None
    for mount in cfg["mounts"]:
        if mount["type"] == "bind":
            _bind(root, mount)
        else:
            _other(root, mount)
    if cfg.get("init"):
        _bind(root, {"source": cfg["init"], "destination": INIT_PATH, "readonly": True, "options": ""})
    _add_devices(root, cfg.get("devices") or [])
    _pivot(root)
    _mask(cfg["masked_paths"])
    _readonly(cfg["readonly_paths"])
    return console


def make_root_readonly() -> None:
    """``--read-only``: after pivot, only the root mount itself; the mounts on it keep their flags."""
    try:
        libc.mount(None, "/", None, MS_BIND | MS_REMOUNT | MS_RDONLY | _remount_flags("/"), None)
    except OSError as e:
        raise MountError(f"cannot make the rootfs read-only: {e.strerror}") from e
