"""Extended attributes and /proc fd paths: the metadata helpers shared by extraction, copying and tarring.

Every helper takes either an open fd or a path that is never followed if it is a symlink, so that
metadata lands on the entry this package created and not on whatever a symlink points to.
"""

from __future__ import annotations

import errno
import os

from .whiteout import OVERLAY_XATTR_PREFIX

# Like dockerd: a filesystem or namespace that refuses an xattr does not fail the whole operation.
_REFUSED = {errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENODATA}


def proc_path(fd: int, name: str | None = None) -> str:
    """A path naming `fd` (or `name` inside the directory `fd`) for calls that have no *at() form."""
    return f"/proc/self/fd/{fd}" if name is None else f"/proc/self/fd/{fd}/{name}"


def carried(name: str) -> bool:
    """Whether an xattr travels with a file: overlayfs' own (trusted.overlay.*) never does, since
    copying opaque/redirect/origin markers between layers would change what other layers show."""
    return not name.startswith(OVERLAY_XATTR_PREFIX)


def read_xattrs(target: str | int) -> dict[str, bytes]:
    """The carried xattrs of an fd, or of a path without following a final symlink."""
    try:
        if isinstance(target, int):
            names = os.listxattr(target)
        else:
            names = os.listxattr(target, follow_symlinks=False)
    except OSError as e:
        if e.errno in _REFUSED:
            return {}
        raise
    out: dict[str, bytes] = {}
    for name in names:
        if not carried(name):
            continue
        try:
            if isinstance(target, int):
                out[name] = os.getxattr(target, name)
            else:
                out[name] = os.getxattr(target, name, follow_symlinks=False)
        except OSError as e:
            if e.errno not in _REFUSED:
                raise
    return out


def write_xattrs(target: str | int, xattrs: dict[str, bytes]) -> None:
    """Set carried xattrs on an fd, or on a path without following a final symlink."""
    for name, value in xattrs.items():
        if not carried(name):
            continue
        try:
            if isinstance(target, int):
                os.setxattr(target, name, value)
            else:
                os.setxattr(target, name, value, follow_symlinks=False)
        except OSError as e:
            if e.errno not in _REFUSED:
                raise
