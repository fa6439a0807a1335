"""Overlay mounts and mount table queries for the host mount namespace (ctypes, no helper binaries).

mount(2) and umount2(2) act on the process's mount namespace, which every thread of the daemon
shares, so they are safe from any thread. What is not thread-safe is chdir (process-wide), which
dockerd uses to shorten lowerdir option strings; this module never depends on the cwd instead:

- "fsconfig": the new mount API (Linux >= 6.7 for overlayfs' "lowerdir+"): one fsconfig call per
  layer, so no option string and no page-size limit (overlayfs allows up to 500 lowers);
- "legacy": one mount(2) call, whose option string the kernel truncates at a page (4096 bytes).
  When the absolute paths do not fit (or contain ',' ':' or '\\', which would need escaping) each
  directory is named through an O_PATH fd of this process as /proc/self/fd/N: ~17 bytes per layer,
  about 230 layers, and no state on disk.
"""

from __future__ import annotations

import ctypes
import errno
import os
import re
from pathlib import Path

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
_libc.syscall.restype = ctypes.c_long

# Syscall numbers of the new mount API: the same on every architecture (added after the tables
# were unified at 424).
_SYS_MOVE_MOUNT = 429
_SYS_FSOPEN = 430
_SYS_FSCONFIG = 431
_SYS_FSMOUNT = 432
_FSOPEN_CLOEXEC = 0x1
_FSCONFIG_SET_STRING = 1
_FSCONFIG_CMD_CREATE = 6
_FSMOUNT_CLOEXEC = 0x1
_MOVE_MOUNT_F_EMPTY_PATH = 0x4
_AT_FDCWD = -100

MNT_DETACH = 0x2
UMOUNT_NOFOLLOW = 0x8
_PAGE = os.sysconf("SC_PAGESIZE")

API_FSCONFIG = "fsconfig"
API_LEGACY = "legacy"


def _check(ret: int, what: str, path: str | None = None) -> int:
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}", path)
    return ret


def mount_overlay(
    target: Path,
    lowers: list[Path],
    upper: Path,
    work: Path,
    *,
    options: dict[str, str] | None = None,
    api: str = API_FSCONFIG,
) -> None:
    """Mount an overlay on `target`: `lowers` topmost first, as overlayfs lists them."""
    if not lowers:
        raise ValueError("an overlay needs at least one lower directory")
    if api == API_FSCONFIG:
        _mount_fsconfig(target, lowers, upper, work, options or {})
    else:
        _mount_legacy(target, lowers, upper, work, options or {})


def _mount_fsconfig(target: Path, lowers: list[Path], upper: Path, work: Path, options: dict[str, str]) -> None:
    fs = _check(_libc.syscall(_SYS_FSOPEN, b"overlay", _FSOPEN_CLOEXEC), "fsopen overlay")
    try:

        def conf(key: str, value: str | os.PathLike[str]) -> None:
            ret = _libc.syscall(
                _SYS_FSCONFIG, fs, _FSCONFIG_SET_STRING, key.encode(), os.fsencode(value), ctypes.c_int(0)
            )
            if ret < 0:
                err = ctypes.get_errno()
                raise OSError(err, f"overlay option {key}={os.fsdecode(value)}: {_fs_log(fs) or os.strerror(err)}")

        conf("source", "overlay")
        for lower in lowers:
            conf("lowerdir+", lower)
        conf("upperdir", upper)
        conf("workdir", work)
        for key, value in options.items():
            conf(key, value)
        if _libc.syscall(_SYS_FSCONFIG, fs, _FSCONFIG_CMD_CREATE, None, None, ctypes.c_int(0)) < 0:
            err = ctypes.get_errno()
            raise OSError(err, f"overlay mount on {target}: {_fs_log(fs) or os.strerror(err)}")
        mnt = _check(_libc.syscall(_SYS_FSMOUNT, fs, _FSMOUNT_CLOEXEC, 0), "fsmount overlay")
        try:
            _check(
                _libc.syscall(
                    _SYS_MOVE_MOUNT, mnt, b"", _AT_FDCWD, os.fsencode(target), ctypes.c_uint(_MOVE_MOUNT_F_EMPTY_PATH)
                ),
                "move_mount",
                str(target),
            )
        finally:
            # Left open, this fd would keep the mount busy (umount fails with EBUSY).
            os.close(mnt)
    finally:
        os.close(fs)


def _fs_log(fs: int) -> str:
    """The kernel's explanation of a failed fsconfig, read from the fs context ("e overlay: ...")."""
    lines = []
    while True:
        try:
            msg = os.read(fs, 4096)
        except OSError:
            break
        if not msg:
            break
        lines.append(msg.decode(errors="replace").strip())
    return "; ".join(lines)


def _mount_legacy(target: Path, lowers: list[Path], upper: Path, work: Path, options: dict[str, str]) -> None:
    extra = "".join(f",{k}={v}" for k, v in options.items())
    paths = [os.fspath(p) for p in (*lowers, upper, work)]
    opts = _legacy_options(paths, extra)
    fds: list[int] = []
    if len(opts) >= _PAGE or any(c in p for p in paths for c in ",:\\"):
        fds = [os.open(p, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC) for p in paths]
        opts = _legacy_options([f"/proc/self/fd/{fd}" for fd in fds], extra)
        if len(opts) >= _PAGE:
            for fd in fds:
                os.close(fd)
            raise OSError(errno.E2BIG, f"too many layers ({len(lowers)}) for this kernel's overlay mount")
    try:
        _check(_libc.mount(b"overlay", os.fsencode(target), b"overlay", 0, opts.encode()), "mount overlay", str(target))
    finally:
        for fd in fds:
            os.close(fd)


def _legacy_options(paths: list[str], extra: str) -> str:
    *lowers, upper, work = paths
    return f"lowerdir={':'.join(lowers)},upperdir={upper},workdir={work}{extra}"


def unmount(target: Path) -> None:
    """Unmount `target` (every mount stacked on it); not mounted is fine. A busy mount is detached
    (MNT_DETACH): it vanishes from the namespace now and is freed when its last user goes."""
    path = os.fsencode(target)
    for _ in range(64):
        if _libc.umount2(path, UMOUNT_NOFOLLOW) == 0:
            continue
        err = ctypes.get_errno()
        if err in (errno.EINVAL, errno.ENOENT):
            return  # not (or no longer) a mount point
        if err == errno.EBUSY:
            _check(_libc.umount2(path, MNT_DETACH | UMOUNT_NOFOLLOW), "umount2 detach", str(target))
            continue
        raise OSError(err, f"umount2: {os.strerror(err)}", str(target))
    raise OSError(errno.EBUSY, "too many mounts stacked", str(target))


def _unescape(field: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as \ooo (octal).
    if "\\" not in field:
        return field
    raw = re.sub(rb"\\([0-7]{3})", lambda m: bytes([int(m.group(1), 8)]), field.encode("utf-8", "surrogateescape"))
    return raw.decode("utf-8", "surrogateescape")


def mount_points() -> list[Path]:
    """Mount points of this process's namespace, in mount order (parents before children)."""
    with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as f:
        return [Path(_unescape(line.split(" ", 5)[4])) for line in f if line.strip()]


def propagation(path: str | os.PathLike[str]) -> tuple[Path, str]:
    """(mount point, "shared" | "slave" | "private") of the mount that holds `path`."""
    real = Path(os.path.realpath(path))
    found: tuple[Path, str] = (Path("/"), "private")
    with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as f:
        for line in f:
            fields = line.split(" ")
            point = Path(_unescape(fields[4]))
            if point != real and point not in real.parents:
                continue
            optional = fields[6:fields.index("-")] if "-" in fields else []
            kind = ("shared" if any(o.startswith("shared:") for o in optional)
                    else "slave" if any(o.startswith("master:") for o in optional) else "private")
            # Later lines are mounted later: a mount over the same point hides the earlier one.
            if len(point.parts) >= len(found[0].parts):
                found = (point, kind)
    return found


def mounted_under(root: str | os.PathLike[str]) -> list[Path]:
    """Mount points at or below `root`, innermost first (the order to unmount them in)."""
    base = Path(os.path.realpath(root))
    found = [p for p in mount_points() if p == base or base in p.parents]
    return found[::-1]


def is_mount_point(path: str | os.PathLike[str]) -> bool:
    return Path(os.path.realpath(path)) in set(mount_points())
