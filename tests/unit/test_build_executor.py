"""The step executor's decisions against fakes of the image store: which stages run, what the
cache reuses, the stream's records, build-arg warnings, tags only after success. Config-only
Dockerfiles need no container, so no root and no daemon."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from daemon.build import dockerfile, options
from daemon.build.cache import BuildCache
from daemon.build.context import BuildContext
from daemon.build.executor import BuildRun
from daemon.build.state import BuildFailed, Engine
from daemon.errors import InvalidParameter
from daemon.images.service import Image
from storage.layers import Layer

BASE = Image(id="sha256:" + "b" * 64, config={"config": {"Env": ["PATH=/bin"], "Cmd": ["sh"]},
                                               "rootfs": {"type": "layers", "diff_ids": ["sha256:d"]},
                                               "history": [{"created_by": "import"}]},
             chain_ids=["sha256:c"], size=100, tags=["base:1"])


class FakeImages:
    def __init__(self) -> None:
        self.images: dict[str, Image] = {BASE.id: BASE}
        self.tagged: list[tuple[str, str, str | None]] = []

    def find(self, name: str) -> Image | None:
        return BASE if name in ("base:1", "base") else self.images.get(name)

    async def register(self, config: dict, chain_ids: list[str], size: int, tags: list[str],
                       repo_digests: list[str] | None = None, raw: bytes | None = None, parent: str = "") -> Image:
        iid = "sha256:" + hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()
        img = Image(iid, config, chain_ids, size, parent=parent)
        self.images[iid] = img
        return img

    async def tag(self, name: str, repo: str, tag: str | None) -> str:
        self.tagged.append((name, repo, tag))
        return f"{repo}:{tag}"

    async def remove(self, name: str, force: bool = False, prune: bool = True) -> list[dict]:
        return []


class Unused:
    """Collaborators a config-only build never calls."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"unexpected call: {name}")


class NoPulls:
    def pull(self, from_image: str, tag: str, platform: str, auth: str | None) -> AsyncIterator[dict]:
        raise AssertionError("no pull expected")


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    images = FakeImages()
    return Engine(images=images, containers=Unused(), rootfs=Unused(), commits=Unused(), pulls=NoPulls(),
                  blobs=Unused(), layers=Unused(), sources=Unused(),
                  cache=BuildCache(tmp_path / "cache.json", lambda iid: iid in images.images))


def _run(engine: Engine, tmp_path: Path, text: str, **query: str) -> list[dict]:
    tags = query.pop("t", "").split(",") if "t" in query else []
    opts = options.parse(query, tags, [])
    ctx = BuildContext(tmp_path, tmp_path, text, "Dockerfile")

    async def go() -> list[dict]:
        run = BuildRun(engine, opts, ctx, dockerfile.parse(text))
        return [rec async for rec in run.run()]

    return asyncio.run(go())


def _text(records: list[dict]) -> str:
    return "".join(r.get("stream", "") for r in records)


DF = "FROM base:1\nARG V=1\nENV A=$V\nLABEL x=y\nCMD [\"run\"]\n"


def test_steps_then_cache_then_no_cache(engine: Engine, tmp_path: Path) -> None:
    first = _run(engine, tmp_path, DF, t="app:v1")
    out = _text(first)
    assert "Step 1/5 : FROM base:1\n ---> bbbbbbbbbbbb\n" in out and "Step 5/5 : CMD [\"run\"]" in out
    assert "Using cache" not in out and "Successfully tagged app:v1" in out
    final = first[[i for i, r in enumerate(first) if "aux" in r][0]]["aux"]["ID"]
    img = engine.images.images[final]
    assert img.config["config"]["Env"] == ["PATH=/bin", "A=1"] and img.config["config"]["Labels"] == {"x": "y"}
    assert [h["created_by"] for h in img.config["history"][1:]] == [
        "/bin/sh -c #(nop)  ARG V=1", "/bin/sh -c #(nop)  ENV A=1", "/bin/sh -c #(nop)  LABEL x=y",
        '/bin/sh -c #(nop)  CMD ["run"]']
    assert all(h.get("empty_layer") for h in img.config["history"][1:])
    assert engine.images.tagged == [(final, "app", "v1")]
    again = _run(engine, tmp_path, DF)
    assert _text(again).count(" ---> Using cache") == 4
    assert [r for r in again if "aux" in r] == [{"aux": {"ID": final}}]  # the very same image
    assert "Using cache" not in _text(_run(engine, tmp_path, DF, nocache="1"))
    # Another build arg value: the ARG line itself is the same step; ENV A=2 and on are not.
    other = _text(_run(engine, tmp_path, DF, buildargs='{"V": "2"}'))
    assert other.count("Using cache") == 1 and "Step 2/5 : ARG V=1\n ---> Using cache" in other


def test_quiet_warnings_and_labels(engine: Engine, tmp_path: Path) -> None:
    recs = _run(engine, tmp_path, DF, q="1", buildargs='{"NOPE": "x", "HTTP_PROXY": "p"}', labels='{"l": "v"}')
    streams = [r["stream"] for r in recs if "stream" in r]
    final = next(r["aux"]["ID"] for r in recs if "aux" in r)
    assert streams == ["[Warning] One or more build-args [NOPE] were not consumed\n", final + "\n"]
    assert engine.images.images[final].config["config"]["Labels"] == {"x": "y", "l": "v"}


def test_target_and_unused_stages(engine: Engine, tmp_path: Path) -> None:
    text = ("FROM base:1 AS a\nLABEL stage=a\nFROM base:1 AS b\nLABEL stage=b\n"
            "FROM a AS c\nLABEL stage=c\n")
    out = _text(_run(engine, tmp_path, text))
    assert "stage=b" not in out and "Step 1/4 : FROM base:1 AS a" in out and "Step 3/4 : FROM a AS c" in out
    out = _text(_run(engine, tmp_path, text, target="b"))
    assert "stage=a" not in out and "Step 2/2 : LABEL stage=b" in out
    with pytest.raises(InvalidParameter, match="failed to reach build target"):
        _run(engine, tmp_path, text, target="zzz")


def test_a_failing_step_tags_nothing(engine: Engine, tmp_path: Path) -> None:
    with pytest.raises(InvalidParameter, match="Invalid signal"):
        _run(engine, tmp_path, "FROM base:1\nLABEL ok=1\nSTOPSIGNAL NOPE\n", t="app:bad")
    assert engine.images.tagged == []


def test_onbuild_triggers_run_once(engine: Engine, tmp_path: Path) -> None:
    parent = _run(engine, tmp_path, "FROM base:1\nONBUILD LABEL from=trigger\n")
    pid = next(r["aux"]["ID"] for r in parent if "aux" in r)
    assert engine.images.images[pid].config["config"]["OnBuild"] == ["LABEL from=trigger"]
    child = _run(engine, tmp_path, f"FROM {pid}\nLABEL own=1\n")
    cid = next(r["aux"]["ID"] for r in child if "aux" in r)
    cfg = engine.images.images[cid].config["config"]
    assert "# Executing 1 build trigger\n" in _text(child)
    assert cfg["Labels"] == {"from": "trigger", "own": "1"} and not cfg.get("OnBuild")


class NoUsers:
    def image_users(self, image_id: str) -> list[tuple[str, bool]]:
        return []

    def layer_tops(self) -> set[str]:
        return set()


def test_prune_keeps_what_tagged_images_are_built_on(engine: Engine, tmp_path: Path) -> None:
    from daemon.build.contexts import ContextStore
    from daemon.build.service import BuildService

    svc = BuildService(engine, NoUsers(), tmp_path / "tmp", ContextStore(tmp_path / "kept"))
    images = engine.images
    kept = next(r["aux"]["ID"] for r in _run(engine, tmp_path, "FROM base:1\nLABEL keep=1\n") if "aux" in r)
    images.images[kept].tags.append("kept:1")
    loose = next(r["aux"]["ID"] for r in _run(engine, tmp_path, "FROM base:1\nLABEL loose=1\nLABEL x=2\n")
                 if "aux" in r)
    rows = {r["Description"]: r for r in svc.usage()}
    assert rows["LABEL keep=1"]["Shared"] and not rows["LABEL loose=1"]["Shared"]
    removed: list[str] = []

    async def remove(name: str, force: bool = False, prune: bool = True) -> list[dict]:
        removed.append(name)
        images.images.pop(name, None)
        return [{"Deleted": name}]

    images.remove = remove  # type: ignore[method-assign]
    out = asyncio.run(svc.prune(None, False))
    assert len(out["CachesDeleted"]) == 2 and removed[0] == loose  # newest first: children before parents
    assert [r["Description"] for r in svc.usage()] == ["LABEL keep=1"]
    with pytest.raises(InvalidParameter):
        asyncio.run(svc.prune('{"bogus": {"x": true}}', True))
    assert asyncio.run(svc.prune('{"id": {"nomatch": true}}', True))["CachesDeleted"] is None
    out = asyncio.run(svc.prune(None, True))
    assert out["CachesDeleted"] and svc.usage() == [] and kept in images.images  # a tagged image stays


def test_finish_outlives_a_cancelled_caller() -> None:
    from daemon.build import cleanup

    async def main() -> None:
        done = asyncio.Event()

        async def work() -> int:
            await asyncio.sleep(0.05)
            await asyncio.sleep(0)  # a second await: a re-cancelling scope would cut it here
            done.set()
            return 1

        async def caller() -> None:
            await cleanup.finish(work())

        task = asyncio.create_task(caller())
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.wait_for(done.wait(), 2)
        assert await cleanup.finish(work()) == 1

    asyncio.run(main())


class RootfsContainers:
    """Created containers whose rootfs is a fresh copy of a small tree (/tmp a directory, /etc/x
    a file); commits record what the rootfs held at commit time."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.made: list[str] = []
        self.removed: list[str] = []
        self.committed: list[set[str]] = []

    async def create(self, body: dict, name: str | None) -> dict:
        cid = f"{len(self.made) + 1:064x}"
        rootfs = self.root / cid
        (rootfs / "tmp").mkdir(parents=True)
        (rootfs / "etc").mkdir()
        (rootfs / "etc" / "x").write_text("file")
        self.made.append(cid)
        return {"Id": cid}

    def get(self, ref: str) -> str:
        return ref

    async def remove(self, ref: str, force: bool = False, volumes: bool = False) -> None:
        self.removed.append(ref)

    def mount(self, c: str) -> Path:
        return self.root / c

    def unmount_quietly(self, c: str) -> None:
        pass

    async def container_layer(self, cid: str, parent: str | None) -> Layer:
        top = self.root / cid
        self.committed.append({"/" + str(p.relative_to(top)) for p in top.rglob("*")})
        diff = "sha256:" + hashlib.sha256(cid.encode()).hexdigest()
        return Layer(diff, diff, parent, 10)


def test_workdir_makes_its_directory_as_a_layer_and_is_cached(engine: Engine, tmp_path: Path) -> None:
    ctrs = RootfsContainers(tmp_path / "rootfs")
    engine.containers = engine.rootfs = engine.commits = ctrs  # type: ignore[assignment]
    text = "FROM base:1\nWORKDIR /app\nWORKDIR sub\nWORKDIR /tmp\n"
    first = _run(engine, tmp_path, text)
    img = engine.images.images[next(r["aux"]["ID"] for r in first if "aux" in r)]
    hist = img.config["history"][1:]
    assert [h["created_by"] for h in hist] == ["/bin/sh -c #(nop) WORKDIR /app", "/bin/sh -c #(nop) WORKDIR /app/sub",
                                               "/bin/sh -c #(nop) WORKDIR /tmp"]
    # A directory made is a layer; one already in the image (/tmp) is an empty layer.
    assert [bool(h.get("empty_layer")) for h in hist] == [False, False, True]
    assert len(img.config["rootfs"]["diff_ids"]) == 3 and len(img.chain_ids) == 3
    assert "/app" in ctrs.committed[0] and "/app/sub" in ctrs.committed[1] and len(ctrs.committed) == 2
    assert img.config["config"]["WorkingDir"] == "/tmp"
    assert sorted(ctrs.removed) == sorted(ctrs.made) and len(ctrs.made) == 3
    out = _text(first)
    for cid in ctrs.made:  # each step's container shown and removed, as dockerd's
        assert f" ---> Running in {cid[:12]}\n" in out and f"Removing intermediate container {cid[:12]}\n" in out
    again = _run(engine, tmp_path, text)
    assert _text(again).count(" ---> Using cache") == 3 and len(ctrs.made) == 3
    assert next(r["aux"]["ID"] for r in again if "aux" in r) == img.id
    # --rm=false keeps the step's container, as it keeps a RUN's.
    _run(engine, tmp_path, "FROM base:1\nWORKDIR /kept\n", rm="0")
    assert len(ctrs.made) == 4 and ctrs.made[-1] not in ctrs.removed


def test_workdir_over_a_file_fails_and_leaves_no_container(engine: Engine, tmp_path: Path) -> None:
    ctrs = RootfsContainers(tmp_path / "rootfs")
    engine.containers = engine.rootfs = engine.commits = ctrs  # type: ignore[assignment]
    with pytest.raises(BuildFailed, match="^Cannot mkdir: /etc/x is not a directory$"):
        _run(engine, tmp_path, "FROM base:1\nWORKDIR /etc/x\n", t="app:bad")
    # A file on the way: named inside the image (dockerd would show its own host path).
    with pytest.raises(BuildFailed, match="^Cannot mkdir: /etc/x/y/z: /etc/x is not a directory$"):
        _run(engine, tmp_path, "FROM base:1\nWORKDIR /etc/x/y/z\n", t="app:bad")
    assert len(ctrs.made) == 2 and ctrs.removed == ctrs.made and ctrs.committed == []
    assert engine.images.tagged == []
