"""storage.tempfiles: temporaries a crash cannot leave looking complete, and that a concurrent
clean-up never takes from under their user."""

from __future__ import annotations

import os
from pathlib import Path

from storage import tempfiles


def test_anonymous_file_has_no_name_and_survives_remove_stale(tmp_path: Path) -> None:
    fd = tempfiles.anonymous_file(tmp_path)
    try:
        assert os.listdir(tmp_path) == []
        tempfiles.remove_stale(tmp_path)  # as another thread's spool clean-up does meanwhile
        os.write(fd, b"payload")
        os.lseek(fd, 0, os.SEEK_SET)
        assert os.read(fd, 100) == b"payload"
        assert os.fstat(fd).st_nlink == 0
    finally:
        os.close(fd)
    assert os.listdir(tmp_path) == []


def test_remove_stale_takes_unlocked_leftovers_only(tmp_path: Path) -> None:
    (tmp_path / (tempfiles.PREFIX + "crashed")).write_bytes(b"x")
    (tmp_path / "kept").write_bytes(b"y")
    with tempfiles.locked_dir(tmp_path) as live:
        tempfiles.remove_stale(tmp_path)
        assert live.exists()
    assert sorted(os.listdir(tmp_path)) == ["kept"]
