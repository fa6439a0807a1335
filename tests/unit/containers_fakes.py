"""Fakes of the container lifecycle's seams (images, networking, volumes, storage driver,
cgroups) for unit tests that build a real ContainerService without root."""

from __future__ import annotations

from pathlib import Path

from daemon.containers.container import Container
from daemon.containers.registry import ContainerRegistry
from daemon.containers.seccomp import DEFAULT_PROFILE, SeccompProfiles
from daemon.containers.service import ContainerService
from daemon.events import EventBus
from daemon.images.service import Image
from daemon.store import Store
from runtime.launcher import FreshLauncher

IMAGE = Image(id="sha256:" + "1" * 64, config={"config": {"Cmd": ["sh"], "Env": ["PATH=/bin"]}},
              chain_ids=[], size=0, tags=["busybox:latest"])


class FakeLayers:
    def lowers(self, chain_id: str) -> list[Path]:
        return []


class FakeImages:
    def __init__(self) -> None:
        self.images = {IMAGE.id: IMAGE}
        self.layers = FakeLayers()
        self.released: list[str] = []

    def find(self, ref: str) -> Image | None:
        return IMAGE if ref in ("busybox", "busybox:latest", IMAGE.id) else None

    def display_name(self, image_id: str, given: str) -> str:
        return given

    async def release_layers(self, top_chain: str) -> None:
        self.released.append(top_chain)


class FakeNetworking:
    def check_mode(self, requested: dict, host_config: dict) -> list[str]:
        return []

    def endpoints_for_create(self, config: dict, host_config: dict, networking: dict | None) -> dict:
        return {"bridge": {}}

    async def setup(self, c: Container) -> tuple[str | None, list[str]]:
        return None, []

    async def ready(self, c: Container) -> None:
        pass

    async def teardown(self, c: Container) -> None:
        return None

    def extra_hosts(self, c: Container) -> list[tuple[str, str]]:
        return []

    def ipv6_enabled(self, c: Container) -> bool:
        return False

    def uses_internal_dns(self, c: Container) -> bool:
        return False

    def settings(self, c: Container) -> dict:
        return {"Networks": c.networks}

    def summary_ports(self, c: Container) -> list[dict]:
        return []

    def public_networks(self, c: Container) -> dict:
        return c.networks

    async def renamed(self, c: Container, old_name: str) -> None:
        return None

    async def links_changed(self, c: Container) -> None:
        return None


class FakeVolumes:
    def __init__(self, fail_attach: bool = False) -> None:
        self.fail_attach = fail_attach
        self.removed: list[str] = []

    async def attach(self, points: list[dict]) -> None:
        if self.fail_attach:
            raise OSError("volume driver failed")

    async def remove_anonymous(self, names: list[str]) -> None:
        self.removed += names

    def source(self, mp: dict) -> str:
        return mp.get("Source", "")

    def spec_mounts(self, points: list[dict], rootfs: Path) -> list[dict]:
        return []

    def release(self, points: list[dict]) -> None:
        return None


class FakeDriver:
    name = "vfs"

    def __init__(self, root: Path) -> None:
        self.root = root
        self.created: set[str] = set()

    def create(self, cid: str, lowers: list[Path]) -> None:
        (self.root / cid).mkdir(parents=True)
        self.created.add(cid)

    def remove(self, cid: str) -> None:
        if cid not in self.created:
            raise FileNotFoundError(cid)
        (self.root / cid).rmdir()
        self.created.discard(cid)


class FakeHealth:
    """Records what the lifecycle tells the health monitor."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    def started(self, c: Container) -> None:
        self.calls.append(("started", c.id))

    def resumed(self, c: Container) -> None:
        self.calls.append(("resumed", c.id))

    async def stopped(self, c: Container) -> None:
        self.calls.append(("stopped", c.id))

    async def shutdown(self) -> None:
        self.calls.append(("shutdown", ""))


def fake_seccomp() -> SeccompProfiles:
    """dockerd's default profile with a stand-in compiler: one instruction per rule."""
    return SeccompProfiles(DEFAULT_PROFILE.read_text(), lambda flt: b"\0" * 8 * (1 + len(flt.rules)),
                           enabled=True, arch="amd64", kernel=(6, 1))


def make_service(tmp: Path, volumes: FakeVolumes | None = None,
                 store_cls: type[Store] = Store) -> tuple[ContainerService, Store, FakeDriver]:
    store = store_cls(tmp / "db.sqlite")
    store.open()
    driver = FakeDriver(tmp / "rootfs")
    svc = ContainerService(store=store, registry=ContainerRegistry(store), images=FakeImages(),
                           volumes=volumes or FakeVolumes(), networks=FakeNetworking(), events=EventBus(),
                           driver=driver, data_root=tmp / "data", exec_root=tmp / "exec", init_path=None,
                           cgroups=None,  # type: ignore[arg-type] - create and remove never reach cgroups
                           health=FakeHealth(), seccomp=fake_seccomp(), launcher=FreshLauncher())
    return svc, store, driver
