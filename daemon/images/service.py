"""The image service: import, list, inspect, tag, remove, history, prune.

Images are records in the store (config JSON + layer chain ids); their bytes live in the
content store (config blob) and the layer store (unpacked diffs), both in `storage`.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import platform
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from daemon.errors import Conflict, InvalidParameter, NotFound
from daemon.events import EventBus
from daemon.images import dockerfile_changes, reference
from daemon.store import Store
from daemon.util.bodyreader import ThreadReader
from daemon.util.filters import Filters
from daemon.util.timeutil import now_rfc3339, parse_time_filter, parse_timestamp
from storage.archive import ArchiveError
from storage.blobs import BlobStore
from storage.layers import LayerStore
from storage.layersource import LayerSources, import_layer

GOARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386", "ppc64le": "ppc64le",
          "s390x": "s390x", "riscv64": "riscv64"}.get(platform.machine(), platform.machine())

IMAGE_LIST_FILTERS = {"dangling", "label", "before", "since", "reference", "until"}


@dataclass
class Image:
    id: str  # sha256:<hex>
    config: dict  # the image config document (OCI/Docker), as stored in the blob
    chain_ids: list[str]
    size: int
    tags: list[str] = field(default_factory=list)
    last_tag_time: str = ""
    repo_digests: list[str] = field(default_factory=list)  # "name@sha256:..." it was pulled/pushed as
    parent: str = ""  # the local image a commit was made from (dockerd's Parent; not in the config)

    @property
    def created(self) -> str:
        return self.config.get("created", "")

    @property
    def created_unix(self) -> int:
        return int(self.created_ts)

    @property
    def created_ts(self) -> float:
        """Full precision: filters and ordering must tell apart images made in the same second."""
        return parse_timestamp(self.created) if self.created else 0.0

    @property
    def labels(self) -> dict[str, str]:
        return (self.config.get("config") or {}).get("Labels") or {}

    @property
    def top_chain_id(self) -> str | None:
        return self.chain_ids[-1] if self.chain_ids else None

    def doc(self) -> dict:
        return {"id": self.id, "config": self.config, "chain_ids": self.chain_ids, "size": self.size,
                "last_tag_time": self.last_tag_time, "repo_digests": self.repo_digests, "parent": self.parent}


class ImageUsers(Protocol):
    def image_users(self, image_id: str) -> list[tuple[str, bool]]:
        """(container id, running) of the containers created from the image, running first."""

    def layer_tops(self) -> set[str]:
        """The top layers containers stand on (their images may be gone: rmi -f of a stopped one's)."""


class ImageService:
    def __init__(self, store: Store, blobs: BlobStore, layers: LayerStore, sources: LayerSources,
                 users: ImageUsers, events: EventBus, driver_name: str,
                 on_delete: Callable[[str], None] | None = None) -> None:
        self.store = store
        self.blobs = blobs
        self.layers = layers
        self.events = events
        self.driver_name = driver_name
        self._on_delete = on_delete  # given the id of every image deleted
        self.images: dict[str, Image] = {}
        self.tags: dict[str, str] = {}  # "busybox:latest" -> image id
        self.users = users
        self.sources = sources
        self._lock = asyncio.Lock()

    def load(self) -> None:
        for doc in self.store.load_images():
            self.images[doc["id"]] = Image(doc["id"], doc["config"], doc["chain_ids"], doc["size"],
                                           last_tag_time=doc.get("last_tag_time", ""),
                                           repo_digests=doc.get("repo_digests") or [],
                                           parent=doc.get("parent") or "")
        self.tags = self.store.load_tags()
        for ref, iid in self.tags.items():
            if iid in self.images:
                self.images[iid].tags.append(ref)

    # -- look-up -----------------------------------------------------------------------------
    def find(self, name: str) -> Image | None:
        if not name:
            return None
        if name.startswith("sha256:"):
            hexpart = name[7:]
            if len(hexpart) == 64:
                return self.images.get(name)
            return self._by_prefix(hexpart)
        if ":" not in name.rsplit("/", 1)[-1] and "@" not in name:
            # a bare name may be an id prefix (docker accepts short ids) or a repo (tag latest)
            try:
                ref = reference.parse(name)
            except InvalidParameter:
                ref = None
            if ref is not None and str(ref) in self.tags:
                return self.images[self.tags[str(ref)]]
            if all(c in "0123456789abcdef" for c in name) and len(name) >= 4:
                return self._by_prefix(name)
            return None
        try:
            ref = reference.parse(name)
        except InvalidParameter:
            return None
        if ref.digest:  # name@sha256:...: the image pulled or pushed under that manifest digest
            want = f"{ref.name}@{ref.digest}"
            return next((img for img in self.images.values() if want in img.repo_digests), None)
        iid = self.tags.get(str(ref))
        return self.images.get(iid) if iid else None

    def _by_prefix(self, prefix: str) -> Image | None:
        matches = [img for iid, img in self.images.items() if iid[7:].startswith(prefix)]
        return matches[0] if len(matches) == 1 else None

    def get(self, name: str) -> Image:
        img = self.find(name)
        if img is None:
            raise NotFound(f"No such image: {name}")
        return img

    def display_name(self, image_id: str, given: str) -> str:
        """What `docker ps` shows in its IMAGE column: the name given if it still points there."""
        img = self.images.get(image_id)
        if img is None:
            return image_id
        found = self.find(given)
        if found is not None and found.id == image_id:
            return given
        return image_id

    # -- import ------------------------------------------------------------------------------
    async def import_image(self, body: AsyncIterator[bytes] | None, src: str, repo: str, tag: str,
                           changes: list[str], message: str, platform_: str = "") -> Image:
        ref = reference.parse_repo_tag(repo, tag or None) if repo else None
        # Validate changes before reading the upload, so a bad -c leaves nothing behind.
        base_cfg = dockerfile_changes.apply({}, changes)
        reader = ThreadReader()
        feeder: asyncio.Task | None = None
        if src == "-":
            if body is None:
                raise InvalidParameter("import from stdin requires a request body")
            feeder = asyncio.create_task(reader.feed(body))
        else:
            feeder = asyncio.create_task(reader.feed(_download(src)))
        try:
            layer = await asyncio.to_thread(self._import_layer, reader)
        except ArchiveError as e:
            raise InvalidParameter(f"invalid tar archive: {e}") from e
        except OSError as e:
            raise InvalidParameter(f"import failed: {e}") from e
        finally:
            reader.close()
            if feeder is not None:
                feeder.cancel()
        created = now_rfc3339()
        config = {
            "architecture": GOARCH,
            "os": "linux",
            "created": created,
            "config": base_cfg,
            "rootfs": {"type": "layers", "diff_ids": [layer.diff_id]},
            "history": [{"created": created, "comment": message or f"Imported from {src}"}],
        }
        if message:
            config["comment"] = message
        img = await self.register(config, [layer.chain_id], layer.size, [str(ref)] if ref else [])
        self.events.publish("image", "import", img.id, {"name": str(ref) if ref else img.id})
        return img

    def _import_layer(self, reader: ThreadReader) -> Any:
        if self.sources is not None:  # keep the tar: save and push must reproduce it exactly
            return import_layer(self.layers, self.sources, reader, None)
        return self.layers.import_tar(reader, None)

    async def register(self, config: dict, chain_ids: list[str], size: int, tags: list[str],
                       repo_digests: list[str] | None = None, raw: bytes | None = None,
                       parent: str = "") -> Image:
        """Records an image whose layers are in the layer store (import, pull, load, commit)."""
        # raw: the config exactly as pulled/loaded (its digest is the image id everywhere else)
        raw = raw if raw is not None else json.dumps(config, separators=(",", ":")).encode()
        image_id = "sha256:" + hashlib.sha256(raw).hexdigest()
        await asyncio.to_thread(self.blobs.put, raw)
        async with self._lock:
            img = self.images.get(image_id) or Image(image_id, config, chain_ids, size, parent=parent)
            for rd in repo_digests or []:
                name = rd.split("@", 1)[0]
                img.repo_digests = [d for d in img.repo_digests if d.split("@", 1)[0] != name] + [rd]
            if tags:
                img.last_tag_time = now_rfc3339()
            await self.store.put_image(image_id, img.doc(), tags)
            self.images[image_id] = img
            for t in tags:
                self._move_tag(t, image_id)
        return img

    def _move_tag(self, ref: str, image_id: str) -> None:
        old = self.tags.get(ref)
        if old and old in self.images and ref in self.images[old].tags:
            self.images[old].tags.remove(ref)
        self.tags[ref] = image_id
        if ref not in self.images[image_id].tags:
            self.images[image_id].tags.append(ref)

    # -- list / inspect ----------------------------------------------------------------------
    def list(self, all_: bool, filters_raw: str | None, digests: bool = False) -> list[dict]:
        f = Filters.parse(filters_raw, IMAGE_LIST_FILTERS)
        dangling = f.bool("dangling")
        before = [self.get(n).created_ts for n in f.get("before")]
        since = [self.get(n).created_ts for n in f.get("since")]
        until = [parse_time_filter(u) for u in f.get("until")]
        out = []
        parents = self._parents()
        for img in self.images.values():
            if not all_ and not img.tags and img.id in parents:
                continue  # an intermediate image: only `docker images -a` shows it, as dockerd
            if dangling is True and img.tags or dangling is False and not img.tags:
                continue
            if not f.match_labels(img.labels):
                continue
            if before and not all(img.created_ts < b for b in before):
                continue
            if since and not all(img.created_ts > s for s in since):
                continue
            if until and not all(img.created_unix <= u for u in until):
                continue
            tags = img.tags
            repo_digests = img.repo_digests
            if "reference" in f:
                tags = [t for t in img.tags if any(_ref_match(p, t) for p in f.get("reference"))]
                if not tags:
                    continue
                repo_digests = [r for r in repo_digests
                                if any(_ref_match(p, r.split("@")[0]) for p in f.get("reference"))]
            out.append((img.created_ts, {
                "Id": img.id,
                "ParentId": img.parent or img.config.get("parent", ""),
                "RepoTags": sorted(tags) if tags else [],
                "RepoDigests": list(repo_digests),
                "Created": img.created_unix,
                "Size": img.size,
                "SharedSize": -1,
                "VirtualSize": img.size,
                "Labels": img.labels or {},
                "Containers": -1,
            }))
        out.sort(key=lambda pair: pair[0], reverse=True)
        return [row for _, row in out]

    def inspect(self, name: str) -> dict:
        img = self.get(name)
        cfg = img.config
        top = img.top_chain_id
        return {
            "Id": img.id,
            "RepoTags": sorted(img.tags),
            "RepoDigests": list(img.repo_digests),
            "Parent": img.parent or cfg.get("parent", ""),
            "Comment": cfg.get("comment", ""),
            "Created": cfg.get("created", ""),
            "Container": cfg.get("container", ""),
            "ContainerConfig": _full_container_config(cfg.get("container_config") or {}),
            "DockerVersion": cfg.get("docker_version", ""),
            "Author": cfg.get("author", ""),
            "Config": _full_container_config(cfg.get("config") or {}),
            "Architecture": cfg.get("architecture", GOARCH),
            "Os": cfg.get("os", "linux"),
            "Size": img.size,
            "GraphDriver": {
                "Name": self.driver_name,
                "Data": {"LowerDir": ":".join(str(p) for p in self.layers.lowers(top)[1:]) or None,
                         "UpperDir": str(self.layers.diff_path(top)), "WorkDir": ""} if top else {},
            },
            "RootFS": {"Type": "layers", "Layers": list(cfg.get("rootfs", {}).get("diff_ids", []))},
            "Metadata": {"LastTagTime": img.last_tag_time or "0001-01-01T00:00:00Z"},
        }

    def history(self, name: str) -> list[dict]:
        img = self.get(name)
        hist = img.config.get("history") or []
        # Rows an ancestor made carry its id and tags, as in dockerd (the rest: <missing>).
        owners: dict[int, Image] = {len(hist) - 1: img}
        p = self.images.get(img.parent)
        while p is not None:
            n = len(p.config.get("history") or [])
            if 0 < n <= len(hist):
                owners.setdefault(n - 1, p)
            p = self.images.get(p.parent) if p.parent != p.id else None
        out = []
        layer_index = 0
        diff_ids = img.config.get("rootfs", {}).get("diff_ids", [])
        for i, h in enumerate(hist):
            size = 0
            if not h.get("empty_layer") and layer_index < len(img.chain_ids):
                try:
                    size = self.layers.get(img.chain_ids[layer_index]).size
                except Exception:  # noqa: BLE001 - a missing layer shows as 0 bytes
                    size = 0
                layer_index += 1
            out.append({
                "Id": owners[i].id if i in owners else "<missing>",
                "Created": int(parse_timestamp(h["created"])) if h.get("created") else 0,
                "CreatedBy": h.get("created_by", ""),
                "Tags": sorted(owners[i].tags) if i in owners else None,
                "Size": size,
                "Comment": h.get("comment", ""),
            })
        if not out and diff_ids:
            out.append({"Id": img.id, "Created": img.created_unix, "CreatedBy": "", "Tags": sorted(img.tags),
                        "Size": img.size, "Comment": ""})
        out.reverse()
        return out

    # -- tag / remove / prune ----------------------------------------------------------------
    async def tag(self, name: str, repo: str, tag: str | None) -> str:
        img = self.get(name)
        ref = reference.parse_repo_tag(repo, tag)
        if ref.digest:
            raise InvalidParameter("refusing to create a tag with a digest reference")
        async with self._lock:
            await self.store.set_tag(str(ref), img.id)
            img.last_tag_time = now_rfc3339()
            self._move_tag(str(ref), img.id)
        self.events.publish("image", "tag", img.id, {"name": str(ref)})
        return str(ref)

    async def remove(self, name: str, force: bool = False, prune: bool = True) -> list[dict]:
        img = self.get(name)
        out: list[dict] = []
        if "@" in name and await self._untag_digest(name, img, out):
            return out
        by_ref = self._is_reference(name, img)
        users = self.users.image_users(img.id)
        running = [cid for cid, is_running in users if is_running]
        async with self._lock:
            if by_ref:
                ref = str(reference.parse(name))
                if len(img.tags) > 1 or (force and users):
                    await self._untag(ref, out)
                    if img.tags or users:
                        await self._untag_repo_digests(img, reference.parse(ref).name, out)
                        return out
                elif users and not force:
                    raise Conflict(f'conflict: unable to remove repository reference "{name}" (must force) - '
                                   f"container {users[0][0][:12]} is using its referenced image {img.id[7:19]}")
            else:
                if img.id in self._parents():
                    raise Conflict(f"conflict: unable to delete {img.id[7:19]} (cannot be forced) - image has "
                                   "dependent child images")
                if running:
                    raise Conflict(f"conflict: unable to delete {img.id[7:19]} (cannot be forced) - image is "
                                   f"being used by running container {running[0][:12]}")
                if len(img.tags) > 1 and not force:
                    raise Conflict(f"conflict: unable to delete {img.id[7:19]} (must be forced) - image is "
                                   "referenced in multiple repositories")
                if users and not force:
                    raise Conflict(f"conflict: unable to delete {img.id[7:19]} (must be forced) - image is "
                                   f"being used by stopped container {users[0][0][:12]}")
            for ref in list(img.tags):
                await self._untag(ref, out)
            if running or img.id in self._parents():
                return out  # untagged; an image others were committed from stays for them
            out.extend({"Untagged": rd} for rd in img.repo_digests)
            await self.store.delete_image(img.id)
            del self.images[img.id]
        out.append({"Deleted": img.id})
        self.events.publish("image", "delete", img.id, {"name": img.id})
        if self._on_delete is not None:
            self._on_delete(img.id)
        await self.collect_layers(img.chain_ids)
        parent = self.images.get(img.parent)
        if prune and parent is not None and not parent.tags and not parent.repo_digests \
                and parent.id not in self._parents() and not self.users.image_users(parent.id):
            # An untagged parent nothing else needs goes too (`docker rmi --no-prune` keeps it).
            out += await self.remove(parent.id, prune=True)
        return out

    async def _untag_digest(self, name: str, img: Image, out: list[dict]) -> bool:
        """`rmi repo@sha256:...`: drops that digest reference; True if the image stays (other names)."""
        ref = reference.parse(name)
        want = f"{ref.name}@{ref.digest}"
        if want not in img.repo_digests:
            return False
        out.append({"Untagged": want})
        if not img.tags and len(img.repo_digests) == 1:
            return False  # its last name: the image itself goes (the caller carries on)
        async with self._lock:
            img.repo_digests.remove(want)
            await self.store.put_image(img.id, img.doc(), [])
        self.events.publish("image", "untag", img.id, {"name": want})
        return True

    def _parents(self) -> set[str]:
        return {i.parent for i in self.images.values() if i.parent}

    async def _untag_repo_digests(self, img: Image, repo: str, out: list[dict]) -> None:
        """After its last tag in `repo` went, the image's digest references in `repo` go too (as
        dockerd): `docker images` would otherwise keep listing `repo <none>`."""
        if any(reference.parse(t).name == repo for t in img.tags):
            return
        gone = [rd for rd in img.repo_digests if rd.split("@", 1)[0] == repo]
        if not gone:
            return
        img.repo_digests = [rd for rd in img.repo_digests if rd not in gone]
        await self.store.put_image(img.id, img.doc(), [])
        for rd in gone:
            out.append({"Untagged": rd})
            self.events.publish("image", "untag", img.id, {"name": rd})

    def _is_reference(self, name: str, img: Image) -> bool:
        if name.startswith("sha256:") or img.id[7:].startswith(name):
            return False
        try:
            return str(reference.parse(name)) in img.tags
        except InvalidParameter:
            return False

    async def _untag(self, ref: str, out: list[dict]) -> None:
        iid = self.tags.pop(ref, None)
        await self.store.delete_tag(ref)
        if iid and iid in self.images and ref in self.images[iid].tags:
            self.images[iid].tags.remove(ref)
        out.append({"Untagged": ref})
        self.events.publish("image", "untag", iid or ref, {"name": ref})

    async def release_layers(self, top_chain: str) -> None:
        chains: list[str] = []
        chain: str | None = top_chain
        while chain and self.layers.exists(chain):
            chains.append(chain)
            chain = self.layers.get(chain).parent
        await self.collect_layers(chains[::-1])

    async def collect_layers(self, chain_ids: list[str]) -> None:
        """Removes the layers no image or container uses any more (top first)."""
        used = {c for img in self.images.values() for c in img.chain_ids}
        # `rmi -f` deletes a stopped container's image, as dockerd; its layers stay for the container.
        for top in self.users.layer_tops():
            chain: str | None = top
            while chain and chain not in used and self.layers.exists(chain):
                used.add(chain)
                chain = self.layers.get(chain).parent
        gone: set[str] = set()  # diff ids of removed layers: their kept tars may go too
        for chain in reversed(chain_ids):
            if chain not in used:
                if self.sources is not None and self.layers.exists(chain):
                    gone.add(self.layers.get(chain).diff_id)
                await asyncio.to_thread(self.layers.remove, chain)
        if gone:
            diff_ids = {d for img in self.images.values() for d in img.config.get("rootfs", {}).get("diff_ids", [])}
            await asyncio.to_thread(self.sources.collect, diff_ids, gone)

    async def prune(self, filters_raw: str | None) -> dict:
        f = Filters.parse(filters_raw, {"dangling", "label", "label!", "until"})
        dangling_only = f.bool("dangling")
        dangling_only = True if dangling_only is None else dangling_only
        until = [parse_time_filter(u) for u in f.get("until")]
        deleted: list[dict] = []
        reclaimed = 0
        used_ids = set()
        for img in list(self.images.values()):
            if self.users.image_users(img.id):
                used_ids.add(img.id)
        for img in list(self.images.values()):
            if img.id in used_ids or (dangling_only and img.tags):
                continue
            if not f.match_label_filters(img.labels):
                continue
            if until and not all(img.created_unix <= u for u in until):
                continue
            try:
                deleted += await self.remove(img.id, force=True)
                reclaimed += img.size
            except (Conflict, NotFound):
                continue
        return {"ImagesDeleted": deleted or None, "SpaceReclaimed": reclaimed}

    def count(self) -> int:
        return len(self.images)

    def total_size(self) -> int:
        return sum(img.size for img in self.images.values())


def _ref_match(pattern: str, ref: str) -> bool:
    """docker's reference filter: a glob on the familiar name, with or without the tag."""
    import fnmatch

    if ":" not in pattern.rsplit("/", 1)[-1]:
        return fnmatch.fnmatchcase(ref.rsplit(":", 1)[0], pattern)
    return fnmatch.fnmatchcase(ref, pattern)


def _full_container_config(cfg: dict) -> dict:
    """Image inspect shows the config section with every field, as dockerd does."""
    base: dict[str, Any] = {
        "Hostname": "", "Domainname": "", "User": "", "AttachStdin": False, "AttachStdout": False,
        "AttachStderr": False, "Tty": False, "OpenStdin": False, "StdinOnce": False, "Env": None,
        "Cmd": None, "Image": "", "Volumes": None, "WorkingDir": "", "Entrypoint": None,
        "OnBuild": None, "Labels": None,
    }
    base.update(cfg)
    return base


async def _download(url: str) -> AsyncIterator[bytes]:
    """`docker import URL`: streams the remote file (http/https only)."""
    if not url.startswith(("http://", "https://")):
        raise InvalidParameter(f"unsupported import source {url!r}: use '-' or an http(s) URL")
    import urllib.request

    def _open() -> Any:
        return urllib.request.urlopen(url, timeout=30)  # noqa: S310 - scheme checked above

    try:
        resp = await asyncio.to_thread(_open)
    except OSError as e:
        raise InvalidParameter(f"import from {url}: {e}") from e
    try:
        while True:
            chunk = await asyncio.to_thread(resp.read, 1 << 20)
            if not chunk:
                return
            yield chunk
    finally:
        resp.close()


def image_created_unix(img: Image) -> float:
    return parse_timestamp(img.created) if img.created else time.time()


