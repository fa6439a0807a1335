"""Reading the json-file log: --tail and --since find their start without a full scan,
across rotated files, and return exactly what a full scan would."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest

from daemon.containers import logs

T0 = 1_700_000_000.0


def _stamp(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{round(t * 1e6) % 1_000_000:06d}000Z"


def _write(path: Path, first: int, count: int) -> None:
    """Records `first`..`first+count-1`, one ms apart, as the monitor writes them."""
    with open(path, "w") as f:
        for i in range(first, first + count):
            f.write(json.dumps({"log": f"line {i}\n", "stream": "stderr" if i % 3 == 0 else "stdout",
                                "time": _stamp(T0 + i / 1000)}) + "\n")


def _read(path: Path, **kw: object) -> list[str]:
    async def collect() -> list[str]:
        out: list[str] = []
        args = {"follow": False, "tail": None, "since": 0.0, "until": None, "stdout": True, "stderr": True,
                "is_running": lambda: False, **kw}
        async for batch in logs.read_log(path, **args):
            assert isinstance(batch, list)
            out += [rec["log"] for rec in batch]
        return out

    return asyncio.run(collect())


@pytest.fixture()
def big(tmp_path: Path) -> Path:
    path = tmp_path / "c-json.log"
    _write(path, 0, 30_000)  # ~3 MB: several 1 MiB batches, a real binary search
    return path


@pytest.mark.parametrize("first", [0, 1, 7_777, 29_999])
def test_since_starts_at_the_first_record_not_older(big: Path, first: int) -> None:
    got = _read(big, since=T0 + first / 1000 - 1e-7)
    assert len(got) == 30_000 - first
    assert got[0] == f"line {first}\n"


def test_since_after_the_last_record_sends_nothing(big: Path) -> None:
    assert _read(big, since=T0 + 3600) == []


def test_since_does_not_read_the_whole_file(big: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    decoded = 0
    real, real_all = logs._decode, logs._decode_all

    def counting(line: bytes) -> dict | None:
        nonlocal decoded
        decoded += 1
        return real(line)

    def counting_all(lines: list[bytes]) -> list[dict]:
        nonlocal decoded
        decoded += len(lines)
        return real_all(lines)

    monkeypatch.setattr(logs, "_decode", counting)
    monkeypatch.setattr(logs, "_decode_all", counting_all)
    assert _read(big, since=T0 + 29_990 / 1000 - 1e-7) == [f"line {i}\n" for i in range(29_990, 30_000)]
    assert decoded < 3_000  # a full scan decodes 30 000


@pytest.mark.parametrize("n", [1, 10, 29_999, 30_000, 50_000])
def test_tail(big: Path, n: int) -> None:
    got = _read(big, tail=n)
    assert got == [f"line {i}\n" for i in range(max(0, 30_000 - n), 30_000)]


def test_tail_and_since_take_the_later_start(big: Path) -> None:
    assert len(_read(big, tail=100, since=T0 + 29_995 / 1000 - 1e-7)) == 5
    assert len(_read(big, tail=5, since=T0)) == 5


def test_until_and_streams(big: Path) -> None:
    got = _read(big, until=T0 + 9 / 1000 + 1e-7, stderr=False)
    assert got == [f"line {i}\n" for i in range(10) if i % 3]


def test_rotated_files(tmp_path: Path) -> None:
    path = tmp_path / "c-json.log"
    _write(path.with_name(path.name + ".2"), 0, 1_000)
    _write(path.with_name(path.name + ".1"), 1_000, 1_000)
    _write(path, 2_000, 1_000)
    assert _read(path) == [f"line {i}\n" for i in range(3_000)]
    assert _read(path, tail=1_500) == [f"line {i}\n" for i in range(1_500, 3_000)]
    assert _read(path, tail=2_500)[0] == "line 500\n"
    assert _read(path, since=T0 + 1.2 - 1e-7)[0] == "line 1200\n"
    assert _read(path, since=T0 + 0.5 - 1e-7)[0] == "line 500\n"
    assert len(_read(path, since=T0 + 2.5 - 1e-7)) == 500


def test_a_broken_line_costs_only_itself(tmp_path: Path) -> None:
    path = tmp_path / "c-json.log"
    _write(path, 0, 10)
    with open(path, "a") as f:
        f.write('{"log":"cut in the middle\n\n')
    _write(path.with_name("more"), 10, 5)
    with open(path, "a") as f:
        f.write(path.with_name("more").read_text())
    assert _read(path) == [f"line {i}\n" for i in range(15)]


def test_transform_applies_to_each_batch(big: Path) -> None:
    async def collect() -> list[object]:
        return [b async for b in logs.read_log(big, follow=False, tail=None, since=0.0, until=None, stdout=True,
                                              stderr=False, is_running=lambda: False, transform=len)]

    counts = asyncio.run(collect())
    assert len(counts) > 1 and sum(counts) == 20_000  # stdout only: 2 of 3
