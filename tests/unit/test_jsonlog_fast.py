"""The json-file log's bulk fast path must write exactly the records of the per-line loop."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from runtime import jsonlog


def _records(path: Path) -> list[tuple[str, str]]:
    # Split at b"\n" only, as the daemon's log reader does (not str.splitlines).
    return [(r["stream"], r["log"]) for r in map(json.loads, path.read_bytes().split(b"\n")[:-1])]


def _write(path: Path, chunks: list[tuple[str, bytes]], fast: bool) -> list[tuple[str, str]]:
    log = jsonlog.JsonLog(str(path))
    if not fast:
        log._write_fast = lambda *_: 0  # type: ignore[method-assign]
    for stream, data in chunks:
        log.write(stream, data)
    log.close()
    return _records(path)


ALPHABETS = [
    b"ab\n", bytes(range(256)), "é€\u2028\n\"x\x01\t".encode(), "é€\u2029\n\\\"x".encode(), b"\n", b"x",
    b"x" * 30 + b"\n", b"plain text line\n",
]


@pytest.mark.parametrize("seed", range(4))
def test_fast_path_matches_line_loop(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    for trial in range(25):
        chunks = []
        for _ in range(rng.randint(1, 8)):
            n = rng.choice([0, 1, 5, 100, 5000, 20000, 40000])
            alphabet = rng.choice(ALPHABETS)
            chunks.append((rng.choice(["stdout", "stderr"]), bytes(rng.choice(alphabet) for _ in range(n))))
        fast = _write(tmp_path / f"f{trial}", chunks, fast=True)
        slow = _write(tmp_path / f"s{trial}", chunks, fast=False)
        assert fast == slow, (seed, trial)


def test_fast_path_is_taken_for_plain_lines(tmp_path: Path) -> None:
    log = jsonlog.JsonLog(str(tmp_path / "log"))
    assert log._write_fast("stdout", b"a\nb\n", "T") == 4
    assert log._write_fast("stdout", b"a\\b\xff\n", "T") == 5  # escapes and invalid UTF-8 too
    assert log._write_fast("stdout", b"x" * jsonlog.MAX_LINE + b"\n", "T") == 0  # needs splitting
    log.close()
    assert (tmp_path / "log").read_bytes() == (b'{"log":"a\\n","stream":"stdout","time":"T"}\n'
                                               b'{"log":"b\\n","stream":"stdout","time":"T"}\n'
                                               b'{"log":"a\\\\b\xef\xbf\xbd\\n","stream":"stdout","time":"T"}\n')
