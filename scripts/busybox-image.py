#!/usr/bin/env python3
"""Write the rootfs tar of a `busybox` image made from Debian's busybox-static.

    scripts/busybox-image.py | docker import -c 'CMD ["sh"]' - busybox:latest
    scripts/busybox-image.py -o busybox.tar

The layout follows the busybox image people know from Docker Hub: every applet in /bin,
/tmp 1777, /root 0700, /home, /var/spool/mail, /var/www, and /etc/passwd, /etc/group and
/etc/shadow with its users and groups (root, daemon, bin, sys, ..., nobody), so
`whoami`, `docker exec -w /tmp`, `docker cp f C:/tmp/` and `-u nobody` behave as there.
Entries are owned by 0:0 with a fixed mtime: the same busybox binary gives the same tar,
hence the same layer digest. Only the standard library: it runs before pydockerd is
installed. The test suite imports its image from this script too.
"""

from __future__ import annotations

import argparse
import io
import struct
import subprocess
import sys
import tarfile
from typing import BinaryIO

MTIME = 1_700_000_000

DIRS = [
    ("bin", 0o755), ("dev", 0o755), ("etc", 0o755), ("etc/network", 0o755), ("home", 0o755),
    ("proc", 0o755), ("root", 0o700), ("sbin", 0o755), ("sys", 0o755), ("tmp", 0o1777),
    ("usr", 0o755), ("usr/bin", 0o755), ("usr/sbin", 0o755), ("var", 0o755), ("var/log", 0o755),
    ("var/spool", 0o755), ("var/spool/mail", 0o755), ("var/tmp", 0o1777), ("var/www", 0o755),
]

# name, uid, gid, gecos, home, shell: the busybox image's accounts.
USERS = [
    ("root", 0, 0, "root", "/root", "/bin/sh"),
    ("daemon", 1, 1, "daemon", "/usr/sbin", "/bin/false"),
    ("bin", 2, 2, "bin", "/bin", "/bin/false"),
    ("sys", 3, 3, "sys", "/dev", "/bin/false"),
    ("sync", 4, 100, "sync", "/bin", "/bin/sync"),
    ("mail", 8, 8, "mail", "/var/spool/mail", "/bin/false"),
    ("www-data", 33, 33, "www-data", "/var/www", "/bin/false"),
    ("operator", 37, 37, "Operator", "/var", "/bin/false"),
    ("nobody", 65534, 65534, "nobody", "/home", "/bin/false"),
]

GROUPS = [
    ("root", 0, ""), ("daemon", 1, ""), ("bin", 2, ""), ("sys", 3, ""), ("adm", 4, ""), ("tty", 5, ""),
    ("disk", 6, ""), ("lp", 7, ""), ("mail", 8, ""), ("kmem", 9, ""), ("wheel", 10, "root"),
    ("cdrom", 11, ""), ("dialout", 18, ""), ("floppy", 19, ""), ("video", 28, ""), ("audio", 29, ""),
    ("tape", 32, ""), ("www-data", 33, ""), ("operator", 37, ""), ("utmp", 43, ""), ("staff", 50, ""),
    ("users", 100, ""), ("nobody", 65534, ""),
]


def passwd() -> bytes:
    return "".join(f"{n}:x:{u}:{g}:{gecos}:{home}:{sh}\n" for n, u, g, gecos, home, sh in USERS).encode()


def group() -> bytes:
    return "".join(f"{n}:x:{g}:{members}\n" for n, g, members in GROUPS).encode()


def shadow() -> bytes:
    # "*": no password login for anyone; root gets in through `docker exec`, as in the busybox image.
    return "".join(f"{n}:*:19000:0:99999:7:::\n" for n, *_ in USERS).encode()


def _add(tf: tarfile.TarFile, name: str, kind: bytes, mode: int, data: bytes = b"", link: str = "") -> None:
    ti = tarfile.TarInfo(name)
    ti.type, ti.mode, ti.mtime, ti.uid, ti.gid = kind, mode, MTIME, 0, 0
    ti.uname = ti.gname = "root"
    ti.linkname = link
    ti.size = len(data) if kind == tarfile.REGTYPE else 0
    tf.addfile(ti, io.BytesIO(data) if kind == tarfile.REGTYPE else None)


class NotStatic(Exception):
    pass


def _interpreter(elf: bytes) -> str | None:
    """The PT_INTERP of a 64-bit little-endian ELF: a dynamic binary cannot run in an image without its libc."""
    if elf[:4] != b"\x7fELF" or elf[4] != 2 or elf[5] != 1:
        return None
    phoff, = struct.unpack_from("<Q", elf, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", elf, 0x36)
    for i in range(phnum):
        p_type, _, p_offset, _, _, p_filesz = struct.unpack_from("<IIQQQQ", elf, phoff + i * phentsize)
        if p_type == 3:  # PT_INTERP
            return elf[p_offset:p_offset + p_filesz].rstrip(b"\0").decode(errors="replace")
    return None


def write_rootfs(out: BinaryIO, busybox: str = "/bin/busybox") -> None:
    with open(busybox, "rb") as f:
        binary = f.read()
    interp = _interpreter(binary)
    if interp:
        raise NotStatic(f"{busybox} is dynamically linked (needs {interp}): install busybox-static")
    applets = subprocess.run([busybox, "--list"], capture_output=True, text=True, check=True).stdout.split()
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tf:
        for d, mode in DIRS:
            _add(tf, d, tarfile.DIRTYPE, mode)
        _add(tf, "bin/busybox", tarfile.REGTYPE, 0o755, binary)
        for a in sorted(set(applets) - {"busybox"}):
            _add(tf, f"bin/{a}", tarfile.SYMTYPE, 0o777, link="busybox")
        # `#!/usr/bin/env sh` scripts are common enough to be worth the one link.
        _add(tf, "usr/bin/env", tarfile.SYMTYPE, 0o777, link="../../bin/busybox")
        _add(tf, "etc/passwd", tarfile.REGTYPE, 0o644, passwd())
        _add(tf, "etc/group", tarfile.REGTYPE, 0o644, group())
        _add(tf, "etc/shadow", tarfile.REGTYPE, 0o640, shadow())
        _add(tf, "etc/nsswitch.conf", tarfile.REGTYPE, 0o644, b"hosts: files dns\nnetworks: files\n")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("-o", "--output", default="-", help="tar file to write (default: standard output)")
    p.add_argument("--busybox", default="/bin/busybox", help="a static busybox (Debian: busybox-static)")
    args = p.parse_args(argv)
    try:
        if args.output == "-":
            if sys.stdout.isatty():
                p.error("refusing to write a tar to a terminal: pipe it into `docker import` or use -o")
            write_rootfs(sys.stdout.buffer, args.busybox)
        else:
            with open(args.output, "wb") as f:
                write_rootfs(f, args.busybox)
    except NotStatic as e:
        print(f"busybox-image: {e}", file=sys.stderr)
        return 1
    except (OSError, subprocess.CalledProcessError) as e:
        print(f"busybox-image: {e} (is busybox-static installed?)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
