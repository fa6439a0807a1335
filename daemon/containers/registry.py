"""The containers this engine knows, by id and by name.

One object answers "which container is X" and "who uses Y" for every subsystem: the
container lifecycle adds and removes records, and networks, volumes, images, exec, cp and
stats look containers up here. It is built first in the composition root and handed to
each of them, so no service needs another service just to find a container.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator

from daemon.containers.container import Container
from daemon.errors import Conflict, InvalidParameter, NotFound
from daemon.revision import Revision
from daemon.store import Store


class ContainerRegistry:
    def __init__(self, store: Store, revision: Revision | None = None) -> None:
        self._store = store
        self._revision = revision or Revision()
        self._by_id: dict[str, Container] = {}
        self._names: dict[str, str] = {}  # "/name" -> id
        # Called with each removed container: what others keep per container goes with it.
        self.on_discard: list[Callable[[Container], None]] = []

    # -- look-up -----------------------------------------------------------------------------
    def find(self, ref: str) -> Container | None:
        """By full id, by name (with or without the "/"), or by a unique id prefix."""
        if not ref:
            return None
        c = self._by_id.get(ref)
        if c is not None:
            return c
        cid = self._names.get(ref if ref.startswith("/") else "/" + ref)
        if cid is not None:
            return self._by_id[cid]
        matches = [c for cid, c in self._by_id.items() if cid.startswith(ref)]
        if len(matches) > 1:
            raise InvalidParameter(f"multiple IDs found with provided prefix: {ref}")
        return matches[0] if matches else None

    def get(self, ref: str) -> Container:
        c = self.find(ref)
        if c is None:
            raise NotFound(f"No such container: {ref}")
        return c

    def __contains__(self, cid: object) -> bool:
        return cid in self._by_id

    def __iter__(self) -> Iterator[Container]:
        return iter(list(self._by_id.values()))

    def __len__(self) -> int:
        return len(self._by_id)

    def ids(self) -> set[str]:
        return set(self._by_id)

    def name_owner(self, name: str) -> str | None:
        return self._names.get(name)

    # -- membership and persistence --------------------------------------------------------------------------
    def load(self) -> list[Container]:
        """The records the store holds, registered (start-up)."""
        for doc in self._store.load_containers():
            self.add(Container.from_doc(doc))
        return list(self._by_id.values())

    async def persist(self, c: Container) -> None:
        """Writes the record, unless the container is gone or going (a late state change after its
        removal must not bring it back). During a removal nothing is written: a write queued
        behind the removal's delete (the exit of a container rm -f killed) would leave a row
        that holds the name forever; a removal that fails writes the state itself."""
        if c.removing:
            return
        if c.id in self._by_id or self._names.get(c.name) == c.id:
            await self._store.put_container(c.id, c.name, c.doc())

    def changed(self) -> None:
        """A container's state changed and is not written at once (daemon/revision.py)."""
        self._revision.bump()

    def add(self, c: Container) -> None:
        """A created (or loaded) container; its name must be reserved for it or free."""
        self._revision.bump()
        self._by_id[c.id] = c
        self._names[c.name] = c.id

    def discard(self, c: Container) -> None:
        """A removed container: its id and, if it still holds it, its name."""
        self._revision.bump()
        self._by_id.pop(c.id, None)
        self.release(c.name, c.id)
        for fn in self.on_discard:
            fn(c)

    def new_id(self) -> str:
        """A fresh id whose 12-char short form is unique: it names the runtime bundle (unix
        socket paths must stay short)."""
        while True:
            cid = secrets.token_hex(32)
            if not any(other.startswith(cid[:12]) for other in self._by_id):
                return cid

    def reserve(self, name: str, cid: str) -> None:
        """Takes `name` ("/x") for `cid` before any await, so two creates or renames cannot both win."""
        owner = self._names.get(name)
        if owner is not None:
            raise Conflict(f'Conflict. The container name "{name}" is already in use by container '
                           f'"{owner}". You have to remove (or rename) that container to be '
                           "able to reuse that name.")
        self._revision.bump()
        self._names[name] = cid

    def release(self, name: str, cid: str) -> None:
        if self._names.get(name) == cid:
            self._revision.bump()
            del self._names[name]

    def random_name(self) -> str:
        """dockerd's adjective_scientist names, free ones only."""
        for _ in range(100):
            name = f"{secrets.choice(_ADJECTIVES)}_{secrets.choice(_NAMES)}"
            if "/" + name not in self._names:
                return name
        return f"{secrets.choice(_ADJECTIVES)}_{secrets.choice(_NAMES)}{secrets.randbelow(1000)}"

    # -- who uses what -----------------------------------------------------------------------
    def volume_users(self, name: str) -> list[tuple[str, bool]]:
        """(id, running) of the containers whose mount points use the volume `name`."""
        return [(c.id, c.running) for c in self._by_id.values()
                if any(mp["Type"] == "volume" and mp["Name"] == name for mp in c.mount_points)]

    def layer_tops(self) -> set[str]:
        """The top layer (chain id) of every container's image, whether or not the image is still here."""
        return {c.top_chain for c in self._by_id.values() if c.top_chain}

    def image_users(self, image_id: str) -> list[tuple[str, bool]]:
        """(id, running) of the containers created from the image, running ones first."""
        users = [(c.id, c.running) for c in self._by_id.values() if c.image_id == image_id]
        return sorted(users, key=lambda u: not u[1])


_ADJECTIVES = ["admiring", "brave", "clever", "dazzling", "eager", "focused", "gallant", "happy", "jolly",
               "keen", "loving", "modest", "nifty", "optimistic", "peaceful", "quirky", "relaxed", "serene",
               "tender", "upbeat", "vibrant", "wizardly", "youthful", "zealous"]
_NAMES = ["albattani", "babbage", "curie", "darwin", "euclid", "feynman", "galileo", "hopper", "jepsen",
          "knuth", "lovelace", "meitner", "noether", "pasteur", "ritchie", "shannon", "tesla", "turing",
          "wozniak", "yalow"]
