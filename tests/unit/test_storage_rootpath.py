"""make_dirs: mkdir -p inside a tree treated as '/', telling a change from "already there"."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from storage.rootpath import make_dirs


def test_make_dirs_reports_whether_it_created(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "tmp").mkdir(parents=True)
    assert make_dirs(root, "/app/sub") is True
    assert (root / "app" / "sub").is_dir() and (root / "app" / "sub").stat().st_mode & 0o777 == 0o755 & ~_umask()
    assert make_dirs(root, "/app/sub") is False
    assert make_dirs(root, "/tmp") is False and make_dirs(root, "/") is False


def test_make_dirs_stays_inside_the_root(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "srv").mkdir(parents=True)
    (root / "link").symlink_to("/srv/app")  # absolute: the root's /srv, not the host's
    (root / "up").symlink_to("../../../outside")
    assert make_dirs(root, "/link/x") is True and (root / "srv" / "app" / "x").is_dir()
    assert make_dirs(root, "/up") is True and (root / "outside").is_dir()
    assert not (tmp_path / "outside").exists()
    assert make_dirs(root, "/../../escape") is True and (root / "escape").is_dir()


def test_make_dirs_refuses_a_file_on_the_way(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    with pytest.raises(NotADirectoryError):
        make_dirs(tmp_path, "/f/sub")


def _umask() -> int:
    old = os.umask(0)
    os.umask(old)
    return old
