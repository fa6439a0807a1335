"""Transparent decompression of archive streams (plain, gzip, bzip2, xz, zstd), detected by magic bytes.

Works on non-seekable streams (pipes, HTTP bodies): the magic is read, not peeked with seek, and
handed back in front of the rest of the stream. The returned reader never closes the source.
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import zlib
from typing import BinaryIO, Protocol, cast

import zstandard

from .errors import ArchiveError

_READ_SIZE = 1 << 20
_MAGIC_LEN = 6

_GZIP = b"\x1f\x8b"
_BZIP2 = b"BZh"
_XZ = b"\xfd7zXZ\x00"
_ZSTD = b"\x28\xb5\x2f\xfd"


class Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


class _Prefixed(io.RawIOBase):
    """`prefix` followed by the rest of `source`; closing it leaves `source` open."""

    def __init__(self, prefix: bytes, source: Readable) -> None:
        self._prefix = prefix
        self._source = source

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1, /) -> bytes:
        # Straight through once the prefix is gone: no copy into a caller's buffer.
        if not self._prefix:
            return self._source.read(size)
        if size < 0:
            data, self._prefix = self._prefix + self._source.read(), b""
            return data
        n = min(size, len(self._prefix))
        data, self._prefix = self._prefix[:n], self._prefix[n:]
        return data

    def readinto(self, b: memoryview | bytearray) -> int:  # type: ignore[override]
        if self._prefix:
            n = min(len(b), len(self._prefix))
            b[:n] = self._prefix[:n]
            self._prefix = self._prefix[n:]
            return n
        data = self._source.read(len(b))
        n = len(data)
        b[:n] = data
        return n


def _read_magic(source: Readable) -> bytes:
    # A pipe or socket may return fewer bytes than asked for; only an empty read is the end.
    magic = b""
    while len(magic) < _MAGIC_LEN:
        chunk = source.read(_MAGIC_LEN - len(magic))
        if not chunk:
            break
        magic += chunk
    return magic


def detect(magic: bytes) -> str:
    """The compression named by the first bytes of a stream: 'gzip', 'bzip2', 'xz', 'zstd' or 'none'."""
    if magic.startswith(_GZIP):
        return "gzip"
    if magic.startswith(_BZIP2):
        return "bzip2"
    if magic.startswith(_XZ):
        return "xz"
    if magic.startswith(_ZSTD) or _is_skippable_frame(magic):
        return "zstd"
    return "none"


def _is_skippable_frame(magic: bytes) -> bool:
    # pzstd starts its output with a skippable frame (magic 0x184D2A50..0x184D2A5F, little-endian).
    return len(magic) >= 4 and magic[0] & 0xF0 == 0x50 and magic[1:4] == b"\x2a\x4d\x18"


class _ZstdFrames:
    """Follows zstd frame boundaries in the compressed bytes flowing through it.

    zstandard's stream reader ends quietly when its input stops inside a frame; this notices,
    from the frame and block headers (RFC 8878), whether the input ended between frames.
    """

    def __init__(self, source: Readable) -> None:
        self._source = source
        self._pending = b""  # bytes of a header being collected
        self._need = 4  # header bytes wanted in the current state
        self._skip = 0  # payload bytes to pass over before the next header
        self._state = "magic"
        self._checksum = False

    def read(self, size: int = -1, /) -> bytes:
        data = self._source.read(size)
        if data:
            self._feed(data)
        elif self._state != "magic" or self._pending or self._skip:
            raise ArchiveError("corrupt zstd stream: truncated")
        return data

    def _feed(self, data: bytes) -> None:
        i, n = 0, len(data)
        while i < n:
            if self._skip:
                step = min(self._skip, n - i)
                self._skip -= step
                i += step
                continue
            take = min(self._need - len(self._pending), n - i)
            self._pending += data[i : i + take]
            i += take
            if len(self._pending) == self._need:
                header, self._pending = self._pending, b""
                self._header(int.from_bytes(header, "little"))

    def _header(self, value: int) -> None:
        state = self._state
        if state == "magic":
            if value == 0xFD2FB528:
                self._state, self._need = "frame", 1
            elif value & 0xFFFFFFF0 == 0x184D2A50:  # skippable frame
                self._state, self._need = "skippable", 4
            else:
                raise ArchiveError("corrupt zstd stream: bad frame magic")
        elif state == "skippable":
            self._skip, self._state, self._need = value, "magic", 4
        elif state == "frame":
            fcs_flag, single, dict_flag = value >> 6, (value >> 5) & 1, value & 3
            self._checksum = bool((value >> 2) & 1)
            fcs_size = (1 if single else 0, 2, 4, 8)[fcs_flag]
            self._skip = (0 if single else 1) + (0, 1, 2, 4)[dict_flag] + fcs_size
            self._state, self._need = "block", 3
        elif state == "block":
            last, kind, size = value & 1, (value >> 1) & 3, value >> 3
            if kind == 3:
                raise ArchiveError("corrupt zstd stream: reserved block type")
            self._skip = 1 if kind == 1 else size  # an RLE block stores one byte
            if last:
                self._skip += 4 if self._checksum else 0
                self._state, self._need = "magic", 4


class _Checked(io.RawIOBase):
    """Turns a decompressor's complaints about its input into ArchiveError."""

    def __init__(self, inner: Readable, kind: str) -> None:
        self._inner = inner
        self._kind = kind

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1, /) -> bytes:
        try:
            return self._inner.read(size)
        except (EOFError, zlib.error, lzma.LZMAError, zstandard.ZstdError) as e:
            raise ArchiveError(f"corrupt {self._kind} stream: {e}") from None
        except OSError as e:
            # gzip and bz2 report bad data as OSError without errno; I/O errors of the source
            # carry one and stay what they are.
            if e.errno is not None:
                raise
            raise ArchiveError(f"corrupt {self._kind} stream: {e}") from None

    def readinto(self, b: memoryview | bytearray) -> int:  # type: ignore[override]
        data = self.read(len(b))
        b[: len(data)] = data
        return len(data)


def peek(fileobj: Readable) -> tuple[str, Readable]:
    """The compression of a stream (see detect) and the stream itself, its first bytes put back."""
    magic = _read_magic(fileobj)
    return detect(magic), _Prefixed(magic, fileobj)


def decompress(fileobj: Readable) -> BinaryIO:
    """A streaming reader of the decompressed content of `fileobj` (returned as is if not compressed).

    Corrupt or truncated compressed data raises ArchiveError when read.
    """
    kind, stream = peek(fileobj)
    if kind == "none":  # the tar reader buffers by itself
        return cast(BinaryIO, stream)
    raw = io.BufferedReader(cast(io.RawIOBase, stream), buffer_size=_READ_SIZE)
    inner: Readable
    if kind == "gzip":
        inner = gzip.GzipFile(fileobj=raw, mode="rb")
    elif kind == "bzip2":
        inner = bz2.BZ2File(raw, mode="rb")
    elif kind == "xz":
        inner = lzma.LZMAFile(raw, mode="rb")
    elif kind == "zstd":
        # Multi-frame streams (pzstd, concatenated writes) are one logical stream.
        inner = zstandard.ZstdDecompressor().stream_reader(
            cast(BinaryIO, _ZstdFrames(raw)), read_size=_READ_SIZE, read_across_frames=True, closefd=False
        )
    return cast(BinaryIO, _Checked(inner, kind))
