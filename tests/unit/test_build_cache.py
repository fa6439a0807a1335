"""daemon/build/cache.py: the index keeps no step whose image is gone."""

from __future__ import annotations

import json
from pathlib import Path

from daemon.build.cache import BuildCache


def test_save_drops_steps_of_removed_images(tmp_path: Path) -> None:
    images = {"sha256:a", "sha256:b"}
    cache = BuildCache(tmp_path / "cache.json", lambda iid: iid in images)
    cache.add("k1", "sha256:a", "", "RUN a", 1)
    cache.add("k2", "sha256:b", "sha256:a", "RUN b", 2)
    images.discard("sha256:b")
    cache.save()
    assert [e["key"] for e in json.loads((tmp_path / "cache.json").read_text())["entries"]] == ["k1"]
    assert cache.lookup("k1") == "sha256:a" and cache.lookup("k2") is None


def test_an_image_deleted_takes_its_steps_with_it(tmp_path: Path) -> None:
    cache = BuildCache(tmp_path / "cache.json", lambda iid: True)
    cache.add("k1", "sha256:a", "", "RUN a", 1)
    cache.add("k2", "sha256:b", "sha256:a", "RUN b", 2)
    cache.image_gone("sha256:b")
    assert [e.key for e in cache.entries()] == ["k1"]
