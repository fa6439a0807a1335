"""storage.archive: decompression, safe extraction of hostile tars, whiteouts, tarring directories."""

from __future__ import annotations

import bz2
import gzip
import hashlib
import io
import lzma
import os
import resource
import socket
import stat
import tarfile
import threading
from pathlib import Path

import pytest
import zstandard

from storage.archive import ArchiveError, extract_tar
from storage.compression import decompress
from storage.rmtree import remove_tree
from storage.rootpath import resolve_in_root
from storage.tarwriter import tar_directory
from tests.unit.test_storage_support import (
    DEFAULT_MTIME,
    Pipe,
    dir_,
    hard,
    member,
    read_tar,
    reg,
    sym,
    tar_bytes,
    write_tree,
)

PAYLOAD = os.urandom(50_000) + b"tail" * 10_000


def _zstd_two_frames(data: bytes) -> bytes:
    c = zstandard.ZstdCompressor()
    return c.compress(data[:1000]) + c.compress(data[1000:])


COMPRESSORS = {
    "plain": lambda d: d,
    "gzip": gzip.compress,
    "bzip2": bz2.compress,
    "xz": lzma.compress,
    "zstd": _zstd_two_frames,
}


# -- decompress ------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", sorted(COMPRESSORS))
def test_decompress_detects_format_on_a_pipe(fmt: str) -> None:
    blob = COMPRESSORS[fmt](PAYLOAD)
    r, w = os.pipe()

    def feed() -> None:
        with os.fdopen(w, "wb") as f:
            f.write(blob)

    t = threading.Thread(target=feed)
    t.start()
    with os.fdopen(r, "rb", buffering=0) as src:
        out = decompress(src).read()
    t.join()
    assert out == PAYLOAD


@pytest.mark.parametrize("fmt", sorted(COMPRESSORS))
def test_decompress_survives_short_reads(fmt: str) -> None:
    reader = decompress(Pipe(COMPRESSORS[fmt](PAYLOAD), chunk=3))
    out = b""
    while chunk := reader.read(4096):
        out += chunk
    assert out == PAYLOAD


def test_decompress_short_input_and_source_left_open() -> None:
    src = io.BytesIO(b"ab")
    assert decompress(src).read() == b"ab"
    assert not src.closed
    assert decompress(io.BytesIO(b"")).read() == b""


@pytest.mark.parametrize("fmt", ["gzip", "bzip2", "xz", "zstd"])
def test_corrupt_compressed_stream_is_an_archive_error(fmt: str) -> None:
    blob = COMPRESSORS[fmt](PAYLOAD)
    with pytest.raises(ArchiveError):
        decompress(io.BytesIO(blob[: len(blob) // 2])).read()


# -- extraction: what is kept ----------------------------------------------------------------


def test_extract_keeps_metadata(tmp_path: Path) -> None:
    cap = bytes([1, 0, 0, 2, 0x20, 0, 0, 0]) + bytes(12)  # cap_net_bind_service, binary value
    data = tar_bytes(
        dir_("d", mode=0o750, uid=12, gid=34, mtime=1000),
        reg(
            "d/suid",
            b"#!/bin/sh\n",
            mode=0o4755,
            uid=5,
            gid=6,
            mtime=2000,
            pax_headers={
                "SCHILY.xattr.user.note": "hello",
                "SCHILY.xattr.security.capability": cap.decode("utf-8", "surrogateescape"),
                "SCHILY.xattr.trusted.overlay.redirect": "/etc",  # never taken from an archive
            },
        ),
        hard("d/hard", "d/suid"),
        sym("d/link", "suid", uid=7, gid=8, mtime=3000),
        member("dev/null", tarfile.CHRTYPE, devmajor=1, devminor=3, mode=0o666),
        member("dev/loop0", tarfile.BLKTYPE, devmajor=7, devminor=0, mode=0o660, gid=6),
        member("fifo", tarfile.FIFOTYPE, mode=0o640),
    )
    dest = tmp_path / "out"
    dest.mkdir()
    assert extract_tar(io.BytesIO(data), dest) == len(b"#!/bin/sh\n")

    d = os.lstat(dest / "d")
    assert (stat.S_IMODE(d.st_mode), d.st_uid, d.st_gid, d.st_mtime) == (0o750, 12, 34, 1000)
    f = os.lstat(dest / "d/suid")
    assert (stat.S_IMODE(f.st_mode), f.st_uid, f.st_gid, f.st_mtime) == (0o4755, 5, 6, 2000)
    assert os.getxattr(dest / "d/suid", "user.note") == b"hello"
    assert os.getxattr(dest / "d/suid", "security.capability") == cap
    assert "trusted.overlay.redirect" not in os.listxattr(dest / "d/suid")
    assert os.lstat(dest / "d/hard").st_ino == f.st_ino
    link = os.lstat(dest / "d/link")
    assert stat.S_ISLNK(link.st_mode) and os.readlink(dest / "d/link") == "suid"
    assert (link.st_uid, link.st_gid, link.st_mtime) == (7, 8, 3000)
    null = os.lstat(dest / "dev/null")
    assert stat.S_ISCHR(null.st_mode) and null.st_rdev == os.makedev(1, 3) and stat.S_IMODE(null.st_mode) == 0o666
    loop = os.lstat(dest / "dev/loop0")
    assert stat.S_ISBLK(loop.st_mode) and loop.st_rdev == os.makedev(7, 0) and loop.st_gid == 6
    assert stat.S_ISFIFO(os.lstat(dest / "fifo").st_mode)


def test_extract_can_skip_devices_and_owners(tmp_path: Path) -> None:
    data = tar_bytes(reg("f", b"x", uid=5, gid=6), member("null", tarfile.CHRTYPE, devmajor=1, devminor=3))
    extract_tar(io.BytesIO(data), tmp_path, devices=False, same_owner=False)
    assert not (tmp_path / "null").exists()
    assert os.lstat(tmp_path / "f").st_uid == os.getuid()


def test_later_entries_replace_earlier_ones_and_dirs_merge(tmp_path: Path) -> None:
    data = tar_bytes(
        reg("a", b"first"),
        reg("a", b"second"),
        dir_("d"),
        reg("d/keep", b"k"),
        dir_("d", mode=0o700),  # merges, keeps d/keep
        reg("x/y", b"y"),
        reg("x", b"file now"),  # replaces the directory
    )
    extract_tar(io.BytesIO(data), tmp_path)
    assert (tmp_path / "a").read_bytes() == b"second"
    assert (tmp_path / "d/keep").read_bytes() == b"k"
    assert stat.S_IMODE(os.lstat(tmp_path / "d").st_mode) == 0o700
    assert (tmp_path / "x").read_bytes() == b"file now"


def test_implicit_parents_and_dir_mtimes(tmp_path: Path) -> None:
    data = tar_bytes(dir_("a", mtime=1234), reg("a/b/c/file", b"z"))
    extract_tar(io.BytesIO(data), tmp_path)
    assert (tmp_path / "a/b/c/file").read_bytes() == b"z"
    assert os.lstat(tmp_path / "a").st_mtime == 1234  # set after its content was written
    assert stat.S_IMODE(os.lstat(tmp_path / "a/b").st_mode) == 0o755


# -- extraction: hostile archives ------------------------------------------------------------


@pytest.fixture
def box(tmp_path: Path) -> tuple[Path, Path]:
    """(dest, outside): an extraction target and a sibling directory no entry may reach."""
    dest, outside = tmp_path / "dest", tmp_path / "outside"
    dest.mkdir()
    outside.mkdir()
    (outside / "secret").write_bytes(b"secret")
    return dest, outside


def _untouched(outside: Path) -> None:
    assert sorted(os.listdir(outside)) == ["secret"]
    assert (outside / "secret").read_bytes() == b"secret"


@pytest.mark.parametrize("name", ["../outside/pwned", "a/../../outside/pwned", "./../pwned", "a/b/../../../x"])
def test_dotdot_escape_is_rejected(box: tuple[Path, Path], name: str) -> None:
    dest, outside = box
    with pytest.raises(ArchiveError, match="outside"):
        extract_tar(io.BytesIO(tar_bytes(reg(name, b"x"))), dest)
    _untouched(outside)


def test_absolute_names_are_made_relative(box: tuple[Path, Path]) -> None:
    dest, outside = box
    extract_tar(io.BytesIO(tar_bytes(reg(f"{outside}/pwned", b"x"), reg("/etc/issue.pyd", b"y"))), dest)
    assert (dest / str(outside).lstrip("/") / "pwned").read_bytes() == b"x"
    assert (dest / "etc/issue.pyd").read_bytes() == b"y"
    assert not Path("/etc/issue.pyd").exists()
    _untouched(outside)


def test_write_through_symlink_stays_inside(box: tuple[Path, Path]) -> None:
    dest, outside = box
    data = tar_bytes(
        sym("evil", str(outside)),  # absolute: allowed, it means <dest>/<outside>
        reg("evil/pwned", b"x"),
        sym("l1", "l2"),
        sym("l2", "evil"),  # a chain
        reg("l1/pwned2", b"y"),
        sym("d/up", ".."),  # relative but inside: fine
        reg("d/up/evil/pwned3", b"z"),
    )
    extract_tar(io.BytesIO(data), dest)
    inside = dest / str(outside).lstrip("/")
    assert sorted(os.listdir(inside)) == ["pwned", "pwned2", "pwned3"]
    _untouched(outside)


def test_relative_symlink_escape_is_rejected(box: tuple[Path, Path]) -> None:
    dest, outside = box
    with pytest.raises(ArchiveError, match="symlink"):
        extract_tar(io.BytesIO(tar_bytes(sym("a/evil", "../../outside"), reg("a/evil/pwned", b"x"))), dest)
    _untouched(outside)


def test_layer_symlink_climbing_above_root_is_kept_and_contained(box: tuple[Path, Path]) -> None:
    """In a layer (a root filesystem) such a link resolves to "/": kept, and writes through it
    stay inside the root."""
    dest, outside = box
    data = tar_bytes(sym("usr/lib/x", "../../../../lib/x"), sym("a/evil", "../../outside"), reg("a/evil/pwned", b"x"))
    extract_tar(io.BytesIO(data), dest, layer=True)
    assert os.readlink(dest / "usr/lib/x") == "../../../../lib/x"
    assert (dest / "outside/pwned").read_bytes() == b"x"
    _untouched(outside)


def test_hardlink_to_host_file_is_rejected(box: tuple[Path, Path]) -> None:
    dest, outside = box
    nlink = os.lstat("/etc/passwd").st_nlink
    for target in ("/etc/passwd", "../outside/secret", f"{outside}/secret"):
        with pytest.raises(ArchiveError):
            extract_tar(io.BytesIO(tar_bytes(hard("h", target))), dest)
    assert os.lstat("/etc/passwd").st_nlink == nlink
    assert os.lstat(outside / "secret").st_nlink == 1


def test_hardlink_through_symlink_stays_inside(box: tuple[Path, Path]) -> None:
    dest, outside = box
    data = tar_bytes(sym("evil", str(outside)), hard("h", "evil/secret"))
    with pytest.raises(ArchiveError):  # <dest>/<outside>/secret does not exist
        extract_tar(io.BytesIO(data), dest)
    assert os.lstat(outside / "secret").st_nlink == 1


def test_file_over_symlink_replaces_the_symlink(box: tuple[Path, Path]) -> None:
    dest, outside = box
    data = tar_bytes(sym("s", str(outside / "secret")), reg("s", b"overwritten?"))
    extract_tar(io.BytesIO(data), dest)
    assert not (dest / "s").is_symlink() and (dest / "s").read_bytes() == b"overwritten?"
    _untouched(outside)


def test_symlink_loop_is_an_archive_error(box: tuple[Path, Path]) -> None:
    dest, _ = box
    with pytest.raises(ArchiveError):
        extract_tar(io.BytesIO(tar_bytes(sym("a", "b"), sym("b", "a"), reg("a/x", b"x"))), dest)


def test_extract_into_subdir_resolves_symlinks_in_root(box: tuple[Path, Path]) -> None:
    rootfs, outside = box
    (rootfs / "usr/lib").mkdir(parents=True)
    os.symlink("/usr/lib", rootfs / "lib")  # absolute link inside a container rootfs
    extract_tar(io.BytesIO(tar_bytes(reg("libx.so", b"x"), sym("abs", "/etc"))), rootfs, subdir="/lib")
    assert (rootfs / "usr/lib/libx.so").read_bytes() == b"x"
    # inside the root but outside the target dir: refused, like dockerd
    for hostile in (reg("../../etc/x", b"x"), sym("rel", "../usr")):
        with pytest.raises(ArchiveError):
            extract_tar(io.BytesIO(tar_bytes(hostile)), rootfs, subdir="/lib")
    _untouched(outside)


def test_invalid_and_truncated_tars(tmp_path: Path) -> None:
    data = tar_bytes(reg("a", b"x" * 5000), reg("b", b"y" * 5000))
    for name in ("t", "empty", "zeros"):
        (tmp_path / name).mkdir()
    for bad in (data[:3000], data[: 5632 + 100], b"this is not a tar archive" * 40):
        with pytest.raises(ArchiveError):
            extract_tar(io.BytesIO(bad), tmp_path / "t")
    assert extract_tar(io.BytesIO(b""), tmp_path / "empty") == 0
    assert extract_tar(io.BytesIO(bytes(1024)), tmp_path / "zeros") == 0


def test_unsupported_member_type_is_rejected(tmp_path: Path) -> None:
    ti = tarfile.TarInfo("vol")
    ti.type = b"V"  # a GNU volume header
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tf:
        tf.addfile(ti)
    with pytest.raises(ArchiveError, match="unsupported"):
        extract_tar(io.BytesIO(buf.getvalue()), tmp_path)


# -- whiteouts -------------------------------------------------------------------------------


def test_layer_whiteouts_become_overlay_format(tmp_path: Path) -> None:
    data = tar_bytes(
        reg(".wh.gone"),
        dir_("dir"),
        reg("dir/.wh..wh..opq"),
        reg("dir/new", b"n"),
        reg(".wh..wh.plnk"),  # AUFS bookkeeping: dropped
    )
    extract_tar(io.BytesIO(data), tmp_path, layer=True)
    gone = os.lstat(tmp_path / "gone")
    assert stat.S_ISCHR(gone.st_mode) and gone.st_rdev == 0
    assert os.getxattr(tmp_path / "dir", "trusted.overlay.opaque") == b"y"
    assert sorted(os.listdir(tmp_path)) == ["dir", "gone"]
    assert sorted(os.listdir(tmp_path / "dir")) == ["new"]


def test_whiteouts_are_plain_files_outside_layers(tmp_path: Path) -> None:
    extract_tar(io.BytesIO(tar_bytes(reg(".wh.gone", b"w"))), tmp_path)
    assert (tmp_path / ".wh.gone").read_bytes() == b"w"


def test_tar_directory_layer_converts_whiteouts(tmp_path: Path) -> None:
    upper = tmp_path / "upper"
    write_tree(upper, {"gone": "whiteout", "dir": "opaque", "dir/new": b"n", "keep": b"k"})
    out = io.BytesIO()
    tar_directory(upper, out, layer=True)
    members = read_tar(out.getvalue())
    assert sorted(members) == [".wh.gone", "dir", "dir/.wh..wh..opq", "dir/new", "keep"]
    assert members[".wh.gone"].isreg() and members[".wh.gone"].size == 0
    assert not any(k.startswith("SCHILY.xattr.trusted.overlay") for m in members.values() for k in m.pax_headers)
    # and back: the same overlay tree
    again = tmp_path / "again"
    again.mkdir()
    extract_tar(io.BytesIO(out.getvalue()), again, layer=True)
    assert stat.S_ISCHR(os.lstat(again / "gone").st_mode)
    assert os.getxattr(again / "dir", "trusted.overlay.opaque") == b"y"
    assert (again / "dir/new").read_bytes() == b"n"

    plain = read_tar(_tar(upper))
    assert plain["gone"].ischr() and "dir/.wh..wh..opq" not in plain


def _tar(path: Path, **kwargs: object) -> bytes:
    out = io.BytesIO()
    tar_directory(path, out, **kwargs)  # type: ignore[arg-type]
    return out.getvalue()


# -- tar_directory ---------------------------------------------------------------------------


def test_tar_directory_round_trip(tmp_path: Path) -> None:
    src = tmp_path / "src"
    write_tree(src, {"bin/busybox": b"\x7fELF" + bytes(3000), "bin/sh": ("->", "busybox"), "empty": None})
    os.link(src / "bin/busybox", src / "bin/ls")
    os.mknod(src / "null", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    os.mkfifo(src / "fifo")
    os.chown(src / "bin/busybox", 10, 20)
    os.chmod(src / "bin/busybox", 0o4711)
    os.setxattr(src / "bin/busybox", "user.k", b"v")
    os.utime(src / "empty", (DEFAULT_MTIME, DEFAULT_MTIME))
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(src / "sock"))
    sock.close()

    data = _tar(src)
    members = read_tar(data)
    assert "sock" not in members and "" not in members and "." not in members
    assert members["bin/ls"].islnk() or members["bin/busybox"].islnk()
    assert members["bin/sh"].issym() and members["bin/sh"].linkname == "busybox"
    assert members["null"].ischr() and (members["null"].devmajor, members["null"].devminor) == (1, 3)

    dst = tmp_path / "dst"
    dst.mkdir()
    extract_tar(io.BytesIO(data), dst)
    a, b = os.lstat(src / "bin/busybox"), os.lstat(dst / "bin/busybox")
    assert (stat.S_IMODE(b.st_mode), b.st_uid, b.st_gid, b.st_size) == (0o4711, 10, 20, a.st_size)
    assert os.lstat(dst / "bin/ls").st_ino == b.st_ino
    assert os.getxattr(dst / "bin/busybox", "user.k") == b"v"
    assert stat.S_ISFIFO(os.lstat(dst / "fifo").st_mode)
    assert os.lstat(dst / "empty").st_mtime == DEFAULT_MTIME
    assert _tar(src) == data  # deterministic


def test_tar_directory_prefix(tmp_path: Path) -> None:
    write_tree(tmp_path / "etc", {"hosts": b"h", "sub/x": b"x"})
    names = sorted(read_tar(_tar(tmp_path / "etc", prefix="etc")))
    assert names == ["etc", "etc/hosts", "etc/sub", "etc/sub/x"]


# -- resolve_in_root -------------------------------------------------------------------------


def test_resolve_in_root(tmp_path: Path) -> None:
    root = tmp_path
    write_tree(
        root,
        {
            "usr/lib/libc.so": b"c",
            "lib": ("->", "/usr/lib"),
            "up": ("->", "../../../.."),
            "abs": ("->", "/etc/passwd"),
            "loop": ("->", "loop"),
            "file": b"f",
        },
    )
    assert resolve_in_root(root, "/lib/libc.so") == root / "usr/lib/libc.so"
    assert resolve_in_root(root, "lib") == root / "usr/lib"
    assert resolve_in_root(root, "lib", follow_last=False) == root / "lib"
    assert resolve_in_root(root, "up/up/etc") == root / "etc"
    assert resolve_in_root(root, "../../..") == root
    assert resolve_in_root(root, "abs") == root / "etc/passwd"  # not the host's
    assert resolve_in_root(root, "lib/missing/../libc.so") == root / "usr/lib/libc.so"
    assert resolve_in_root(root, "file/x") == root / "file/x"
    with pytest.raises(OSError):
        resolve_in_root(root, "loop/x")


def test_extract_large_archive_content_is_exact(tmp_path: Path) -> None:
    blobs = {f"f{i}": hashlib.sha256(str(i).encode()).digest() * (i * 97) for i in range(40)}
    data = tar_bytes(*(reg(name, content) for name, content in blobs.items()))
    for fmt in ("gzip", "zstd"):
        dest = tmp_path / fmt
        dest.mkdir()
        extract_tar(decompress(Pipe(COMPRESSORS[fmt](data), chunk=65536)), dest)
        assert {p.name: p.read_bytes() for p in dest.iterdir()} == blobs


def test_zstd_frames_checksums_and_skippable_frames() -> None:
    c = zstandard.ZstdCompressor(write_checksum=True)
    skippable = (0x184D2A5A).to_bytes(4, "little") + (5).to_bytes(4, "little") + b"meta!"
    frames = [c.compress(PAYLOAD[:20_000]), c.compress(b""), c.compress(PAYLOAD[20_000:])]
    blob = skippable + frames[0] + frames[1] + frames[2]
    assert decompress(Pipe(blob, chunk=1000)).read() == PAYLOAD
    boundaries = {len(skippable), len(skippable) + len(frames[0]), len(skippable) + len(frames[0]) + len(frames[1])}
    for cut in [*range(4, 40), *range(len(blob) - 40, len(blob)), *boundaries]:  # 1-3 bytes: not zstd yet
        if cut in boundaries:
            decompress(io.BytesIO(blob[:cut])).read()  # ends between frames: fine
        else:
            with pytest.raises(ArchiveError):
                decompress(io.BytesIO(blob[:cut])).read()


def test_deep_trees_need_no_fd_per_level(tmp_path: Path) -> None:
    deep = "/".join(["d"] * 1500)
    data = tar_bytes(reg(f"{deep}/f", b"1"), sym(f"{deep}/up", "../../x"), reg(f"{deep}/up/g", b"2"))
    soft, hard_limit = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (128, hard_limit))
    try:
        extract_tar(io.BytesIO(data), tmp_path)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard_limit))
    fd = os.open(tmp_path, os.O_PATH)
    try:  # the paths are too long for one lookup: check the content relative to a deep fd
        for _ in range(1498):
            fd2 = os.open("d", os.O_PATH, dir_fd=fd)
            os.close(fd)
            fd = fd2
        assert os.stat("x/g", dir_fd=fd).st_size == 1
        assert os.stat("d/d/f", dir_fd=fd).st_size == 1
    finally:
        os.close(fd)
    # and it can be deleted again (shutil.rmtree would hit the recursion limit)
    resource.setrlimit(resource.RLIMIT_NOFILE, (128, hard_limit))
    try:
        remove_tree(tmp_path / "d")
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard_limit))
    assert os.listdir(tmp_path) == []


def test_extraction_across_mount_points(tmp_path: Path) -> None:
    from storage.archive import MountTarget

    root, vol, ro = tmp_path / "root", tmp_path / "vol", tmp_path / "ro"
    for p in (root / "data" / "v", root / "data" / "r", vol, ro):
        p.mkdir(parents=True)
    mounts = {("v",): MountTarget(vol, False, "/data/v"), ("r",): MountTarget(ro, True, "/data/r")}
    extract_tar(io.BytesIO(tar_bytes(dir_("v"), reg("v/a", b"A"), hard("v/b", "v/a"), reg("c", b"C"))), root,
                subdir="/data", mounts=mounts)
    assert (vol / "a").read_bytes() == b"A" and os.stat(vol / "b").st_ino == os.stat(vol / "a").st_ino
    assert (root / "data" / "c").read_bytes() == b"C" and not (root / "data" / "v" / "a").exists()
    with pytest.raises(ArchiveError, match="read-only"):
        extract_tar(io.BytesIO(tar_bytes(reg("r/x", b"x"))), root, subdir="/data", mounts=mounts)
    with pytest.raises(ArchiveError, match="cross-device"):
        extract_tar(io.BytesIO(tar_bytes(reg("c2", b"C"), hard("v/c2", "c2"))), root, subdir="/data", mounts=mounts)
    with pytest.raises(ArchiveError, match="mount point"):
        extract_tar(io.BytesIO(tar_bytes(reg("v", b"file over a mount"))), root, subdir="/data", mounts=mounts)
    assert sorted(os.listdir(ro)) == []
