"""Whiteouts in the two formats that meet here: AUFS-style names in layer tars, overlayfs on disk."""

from __future__ import annotations

import os
import stat

# Tar (image layer) format: ".wh.NAME" deletes NAME, ".wh..wh..opq" hides the lower layers' children.
PREFIX = ".wh."
META_PREFIX = ".wh..wh."
OPAQUE_MARKER = ".wh..wh..opq"

# overlayfs format: a 0/0 character device deletes, this xattr makes a directory opaque.
OPAQUE_XATTR = "trusted.overlay.opaque"
OVERLAY_XATTR_PREFIX = "trusted.overlay."


def is_whiteout(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def is_opaque(path: str | int) -> bool:
    """Whether the directory (path or fd, never followed if a symlink) is an overlay opaque dir."""
    try:
        if isinstance(path, int):
            value = os.getxattr(path, OPAQUE_XATTR)
        else:
            value = os.getxattr(path, OPAQUE_XATTR, follow_symlinks=False)
    except OSError:
        return False
    return value == b"y"
