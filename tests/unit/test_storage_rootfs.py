"""storage.rootfs: overlay2 and vfs drivers on real overlayfs (run as root)."""

from __future__ import annotations

import io
import os
import shutil
import stat
import subprocess
import tarfile
from pathlib import Path

import pytest

from storage import mounts
from storage.layers import LayerStore
from storage.mounts import mounted_under
from storage.overlay import OverlayDriver
from storage.rmtree import remove_tree
from storage.rootfs import RootfsDriver, make_driver
from storage.tarwriter import tar_directory
from tests.unit.test_storage_support import dir_, hard, member, no_leaked_mounts, reg, sym, tar_bytes

__all__ = ["no_leaked_mounts"]  # a fixture, used by name

MODIFIED, ADDED, DELETED = 0, 1, 2

BASE = tar_bytes(
    reg("etc/passwd", b"root:x:0:0::/root:/bin/sh\n"),
    reg("etc/hostname", b"h\n"),
    reg("etc/group", b"root:x:0:\n"),
    reg("bin/sh", b"#!sh", mode=0o755),
    hard("bin/ls", "bin/sh"),
    dir_("tmp", mode=0o1777),
    reg("opt/old/file", b"old"),
    member("dev/null", tarfile.CHRTYPE, devmajor=1, devminor=3, mode=0o666),
    sym("lnk", "/etc"),
    reg("usr/cap", b"c", pax_headers={"SCHILY.xattr.user.k": "v"}),
)
TOP = tar_bytes(
    reg("etc/.wh.group"),
    dir_("opt"),
    reg("opt/.wh..wh..opq"),
    reg("opt/new", b"new"),
    reg("etc/motd", b"motd\n"),
)
IMAGE_VIEW = {
    "bin": "dir",
    "bin/ls": b"#!sh",
    "bin/sh": b"#!sh",
    "dev": "dir",
    "dev/null": "chr",
    "etc": "dir",
    "etc/hostname": b"h\n",
    "etc/motd": b"motd\n",
    "etc/passwd": b"root:x:0:0::/root:/bin/sh\n",
    "lnk": "-> /etc",
    "opt": "dir",
    "opt/new": b"new",
    "tmp": "dir",
    "usr": "dir",
    "usr/cap": b"c",
}


def view(root: Path) -> dict[str, object]:
    """What a process in the rootfs would see: type or content of every entry."""
    out: dict[str, object] = {}
    for dirpath, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(dirpath, name)
            st = os.lstat(path)
            rel = str(path.relative_to(root))
            if stat.S_ISDIR(st.st_mode):
                out[rel] = "dir"
            elif stat.S_ISLNK(st.st_mode):
                out[rel] = "-> " + os.readlink(path)
            elif stat.S_ISCHR(st.st_mode):
                out[rel] = "chr"
            else:
                out[rel] = path.read_bytes()
    return out


@pytest.fixture
def image(tmp_path: Path) -> tuple[LayerStore, list[Path]]:
    """The layer store and the lowers of a two-layer image (its top layer is store.top)."""
    store = LayerStore(tmp_path / "layers", durable=False)
    base = store.import_tar(io.BytesIO(BASE), None)
    top = store.import_tar(io.BytesIO(TOP), base.chain_id)
    store.top = top.chain_id  # type: ignore[attr-defined]
    return store, store.lowers(top.chain_id)


@pytest.fixture(params=["overlay2", "vfs"])
def driver(request: pytest.FixtureRequest, no_leaked_mounts: Path) -> RootfsDriver:
    return make_driver(request.param, no_leaked_mounts / "containers")


def _container(driver: RootfsDriver, cid: str, lowers: list[Path]) -> Path:
    driver.create(cid, lowers)
    return driver.mount(cid, lowers)


def test_make_driver() -> None:
    with pytest.raises(ValueError, match="unknown storage driver"):
        make_driver("aufs", Path("/nonexistent"))


def test_overlay_probe_picks_new_mount_api(no_leaked_mounts: Path) -> None:
    d = make_driver("overlay2", no_leaked_mounts / "c")
    assert isinstance(d, OverlayDriver) and d.name == "overlay2"
    assert d.api == mounts.API_FSCONFIG  # this kernel (>= 6.7) has lowerdir+
    assert os.listdir(no_leaked_mounts / "c") == []  # the probe cleaned up


def test_image_view(driver: RootfsDriver, image: tuple[LayerStore, list[Path]]) -> None:
    _, lowers = image
    merged = _container(driver, "c1", lowers)
    assert view(merged) == IMAGE_VIEW
    assert os.lstat(merged / "bin/ls").st_ino == os.lstat(merged / "bin/sh").st_ino
    assert os.lstat(merged / "dev/null").st_rdev == os.makedev(1, 3)
    assert os.getxattr(merged / "usr/cap", "user.k") == b"v"
    assert stat.S_IMODE(os.lstat(merged / "tmp").st_mode) == 0o1777
    driver.remove("c1")


def test_copy_on_write_isolation(driver: RootfsDriver, image: tuple[LayerStore, list[Path]]) -> None:
    _, lowers = image
    before = [view(lower) for lower in lowers]
    m1, m2 = _container(driver, "c1", lowers), _container(driver, "c2", lowers)
    with open(m1 / "etc/passwd", "a") as f:
        f.write("evil::0:0::/:/bin/sh\n")
    (m1 / "etc/hostname").unlink()
    shutil.rmtree(m1 / "opt")
    (m1 / "tmp/new").write_bytes(b"n")
    os.chmod(m1 / "bin/sh", 0o700)
    assert view(m2) == IMAGE_VIEW
    assert [view(lower) for lower in lowers] == before
    assert os.lstat(m2 / "bin/sh").st_mode & 0o777 == 0o755
    driver.remove("c1")
    driver.remove("c2")


def test_changes_and_size(driver: RootfsDriver, image: tuple[LayerStore, list[Path]]) -> None:
    _, lowers = image
    merged = _container(driver, "c1", lowers)
    assert driver.changes("c1", lowers) == []
    (merged / "tmp/new").write_bytes(b"n" * 1000)
    with open(merged / "etc/passwd", "a") as f:
        f.write("x\n")
    (merged / "etc/hostname").unlink()
    shutil.rmtree(merged / "bin")
    (merged / "bin").mkdir()
    (merged / "bin/x").write_bytes(b"x")
    (merged / "new/dir/deep").mkdir(parents=True)
    (merged / "new/dir/deep/f").write_bytes(b"f")
    assert driver.changes("c1", lowers) == [
        ("/bin", MODIFIED),
        ("/bin/ls", DELETED),
        ("/bin/sh", DELETED),
        ("/bin/x", ADDED),
        ("/etc", MODIFIED),
        ("/etc/hostname", DELETED),
        ("/etc/passwd", MODIFIED),
        ("/new", ADDED),
        ("/new/dir", ADDED),
        ("/new/dir/deep", ADDED),
        ("/new/dir/deep/f", ADDED),
        ("/tmp", MODIFIED),
        ("/tmp/new", ADDED),
    ]
    size = driver.size_rw("c1")
    assert 1000 + 1 + 1 + len(b"root:x:0:0::/root:/bin/sh\nx\n") <= size < 10_000
    driver.remove("c1")


def test_changes_for_metadata_only(driver: RootfsDriver, image: tuple[LayerStore, list[Path]]) -> None:
    _, lowers = image
    merged = _container(driver, "c1", lowers)
    os.chown(merged / "usr/cap", 1000, 1000)
    os.unlink(merged / "opt/new")
    assert driver.changes("c1", lowers) == [
        ("/opt", MODIFIED),
        ("/opt/new", DELETED),
        ("/usr", MODIFIED),
        ("/usr/cap", MODIFIED),
    ]
    driver.remove("c1")


def test_mount_lifecycle(driver: RootfsDriver, image: tuple[LayerStore, list[Path]], no_leaked_mounts: Path) -> None:
    _, lowers = image
    with pytest.raises(FileNotFoundError):
        driver.mount("c1", lowers)
    driver.create("c1", lowers)
    with pytest.raises(FileExistsError):
        driver.create("c1", lowers)
    merged = driver.mount("c1", lowers)
    assert driver.mount("c1", lowers) == merged  # idempotent
    assert driver.is_mounted("c1")
    if driver.name == "overlay2":
        assert mounted_under(no_leaked_mounts) == [merged]
        driver.unmount("c1")
        driver.unmount("c1")
        assert not driver.is_mounted("c1") and mounted_under(no_leaked_mounts) == []
        assert driver.mount("c1", lowers) == merged and (merged / "etc/passwd").exists()
    (merged.parent / "config.v2.json").write_text("{}")  # the daemon's own file stays
    driver.remove("c1")
    driver.remove("c1")
    assert os.listdir(merged.parent) == ["config.v2.json"]
    assert not driver.is_mounted("c1")
    for bad in ("../x", "", ".hidden", "a/b"):
        with pytest.raises(ValueError):
            driver.create(bad, lowers)


def test_busy_overlay_is_detached(image: tuple[LayerStore, list[Path]], no_leaked_mounts: Path) -> None:
    _, lowers = image
    d = make_driver("overlay2", no_leaked_mounts / "containers")
    merged = _container(d, "c1", lowers)
    fd = os.open(merged / "etc", os.O_RDONLY)  # keeps the mount busy
    try:
        d.remove("c1")
        assert not d.is_mounted("c1")
    finally:
        os.close(fd)


def test_empty_image(driver: RootfsDriver) -> None:
    merged = _container(driver, "scratch", [])
    (merged / "file").write_bytes(b"x")
    assert driver.changes("scratch", []) == [("/file", ADDED)]
    driver.remove("scratch")


@pytest.mark.parametrize("api", [mounts.API_FSCONFIG, mounts.API_LEGACY])
def test_many_layers_beyond_a_page_of_options(tmp_path: Path, api: str, no_leaked_mounts: Path) -> None:
    layer_root = tmp_path / ("layers-with-a-rather-long-directory-name-to-fill-the-page")
    lowers = []
    for i in range(150):
        d = layer_root / f"{i:064x}" / "diff"
        d.mkdir(parents=True)
        (d / f"f{i}").write_bytes(b"%d" % i)
        (d / "shadowed").write_bytes(b"%d" % i)
        lowers.append(d)
    assert len(":".join(map(str, lowers))) > 4096
    d = OverlayDriver(tmp_path / "containers", api=api)
    merged = _container(d, "c1", lowers)
    assert len(os.listdir(merged)) == 151
    assert (merged / "shadowed").read_bytes() == b"0"  # topmost first
    d.remove("c1")


def test_mount_point_with_odd_characters(image: tuple[LayerStore, list[Path]], no_leaked_mounts: Path) -> None:
    _, lowers = image
    for api in (mounts.API_FSCONFIG, mounts.API_LEGACY):
        d = OverlayDriver(no_leaked_mounts / f"odd dir,with:chars {api}", api=api)
        merged = _container(d, "c1", lowers)
        assert d.is_mounted("c1") and merged in mounted_under(no_leaked_mounts)
        d.remove("c1")


def test_commit_round_trip(image: tuple[LayerStore, list[Path]], no_leaked_mounts: Path) -> None:
    """The upper dir as a layer tar, imported on top of the image, shows what the container saw."""
    store, lowers = image
    d = make_driver("overlay2", no_leaked_mounts / "containers")
    merged = _container(d, "c1", lowers)
    (merged / "etc/hostname").unlink()
    shutil.rmtree(merged / "opt")
    (merged / "opt").mkdir()
    (merged / "opt/fresh").write_bytes(b"f")
    (merged / "tmp/new").write_bytes(b"n")
    expected = view(merged)
    buf = io.BytesIO()
    tar_directory(no_leaked_mounts / "containers/c1/upper", buf, layer=True)
    committed = store.import_tar(io.BytesIO(buf.getvalue()), store.top)  # type: ignore[attr-defined]
    merged2 = _container(d, "c2", store.lowers(committed.chain_id))
    assert view(merged2) == expected
    d.remove("c1")
    d.remove("c2")


def test_removal_never_descends_into_a_mount(no_leaked_mounts: Path) -> None:
    """A volume still bind-mounted inside a tree being deleted keeps its data."""
    volume, tree = no_leaked_mounts / "volume", no_leaked_mounts / "tree"
    (volume / "data").mkdir(parents=True)
    (volume / "data/precious").write_bytes(b"p")
    (tree / "a/mnt").mkdir(parents=True)
    (tree / "a/file").write_bytes(b"f")
    subprocess.run(["mount", "--bind", str(volume), str(tree / "a/mnt")], check=True)
    try:
        with pytest.raises(OSError, match="mount point"):
            remove_tree(tree)
    finally:
        mounts.unmount(tree / "a/mnt")
    assert (volume / "data/precious").read_bytes() == b"p"
    remove_tree(tree)
    assert not tree.exists()
