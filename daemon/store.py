"""The metadata store: one SQLite database (WAL) for containers, images and tags.

Services keep their objects in memory and write every change here before they answer,
so a crash loses nothing that was acknowledged. All calls go through one worker thread:
SQLite connections are not shared across threads and the event loop must not block on fsync.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from daemon.revision import Revision

SCHEMA_VERSION = 3  # 2: volumes, 3: networks

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS containers (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    doc TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS images (id TEXT PRIMARY KEY, doc TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS tags (
    ref TEXT PRIMARY KEY,
    image_id TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE
);
CREATE TABLE IF NOT EXISTS volumes (name TEXT PRIMARY KEY, doc TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS networks (id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, doc TEXT NOT NULL);
"""


class Store:
    def __init__(self, path: Path, revision: Revision | None = None) -> None:
        self._path = path
        self._revision = revision or Revision()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store")
        self._db: sqlite3.Connection | None = None

    def open(self) -> None:
        """Opens (and migrates) the database; blocking, called once at start-up."""
        self._pool.submit(self._open).result()

    def _open(self) -> None:
        db = sqlite3.connect(self._path, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        # FULL: a commit is on disk before the API answers (the durability rule).
        db.execute("PRAGMA synchronous=FULL")
        db.execute("PRAGMA foreign_keys=ON")
        # SQLite's page cache would grow to 2 MiB (its default) and stay: the services hold every
        # object in memory and read the database only at start-up, the kernel caches the file.
        db.execute("PRAGMA cache_size=-256")
        db.executescript(_SCHEMA)
        row = db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        if row is None:
            db.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
        elif int(row[0]) > SCHEMA_VERSION:
            raise RuntimeError(f"{self._path}: schema version {row[0]} is newer than this pydockerd supports")
        elif int(row[0]) < SCHEMA_VERSION:
            # Migrations so far only add tables, which _SCHEMA just created.
            db.execute("UPDATE meta SET value=? WHERE key='schema_version'", (str(SCHEMA_VERSION),))
        self._db = db

    def close(self) -> None:
        def _close() -> None:
            if self._db is not None:
                self._db.close()
                self._db = None

        self._pool.submit(_close).result()
        self._pool.shutdown()

    async def _run(self, fn: Any, *args: Any) -> Any:
        # Every call here writes: the services change their objects in memory just before or
        # just after it (daemon/revision.py).
        self._revision.bump()
        try:
            return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)
        finally:
            self._revision.bump()

    def _sync(self, fn: Any, *args: Any) -> Any:
        return self._pool.submit(fn, *args).result()

    # -- containers --------------------------------------------------------------------------
    def load_containers(self) -> list[dict]:
        return self._sync(lambda: [json.loads(d) for (d,) in self._conn().execute("SELECT doc FROM containers")])

    async def put_container(self, cid: str, name: str, doc: dict) -> None:
        """Insert or update; raises sqlite3.IntegrityError when the name belongs to another id."""
        await self._run(self._put_container, cid, name, json.dumps(doc))

    def _put_container(self, cid: str, name: str, doc: str) -> None:
        self._conn().execute(
            "INSERT INTO containers (id, name, doc) VALUES (?, ?, ?) "
            "ON CONFLICT(id) DO UPDATE SET name=excluded.name, doc=excluded.doc",
            (cid, name, doc),
        )

    async def delete_container(self, cid: str) -> None:
        await self._run(lambda: self._conn().execute("DELETE FROM containers WHERE id=?", (cid,)))

    # -- images and tags ---------------------------------------------------------------------
    def load_images(self) -> list[dict]:
        return self._sync(lambda: [json.loads(d) for (d,) in self._conn().execute("SELECT doc FROM images")])

    def load_tags(self) -> dict[str, str]:
        return self._sync(lambda: dict(self._conn().execute("SELECT ref, image_id FROM tags").fetchall()))

    async def put_image(self, image_id: str, doc: dict, tags: list[str] = ()) -> None:  # type: ignore[assignment]
        """Stores the image and moves the given tags to it, in one transaction."""
        await self._run(self._put_image, image_id, json.dumps(doc), list(tags))

    def _put_image(self, image_id: str, doc: str, tags: list[str]) -> None:
        db = self._conn()
        with _tx(db):
            db.execute("INSERT INTO images (id, doc) VALUES (?, ?) ON CONFLICT(id) DO UPDATE SET doc=excluded.doc",
                       (image_id, doc))
            for ref in tags:
                db.execute("INSERT INTO tags (ref, image_id) VALUES (?, ?) "
                           "ON CONFLICT(ref) DO UPDATE SET image_id=excluded.image_id", (ref, image_id))

    async def set_tag(self, ref: str, image_id: str) -> None:
        await self._run(self._put_image_tag, ref, image_id)

    def _put_image_tag(self, ref: str, image_id: str) -> None:
        self._conn().execute("INSERT INTO tags (ref, image_id) VALUES (?, ?) "
                             "ON CONFLICT(ref) DO UPDATE SET image_id=excluded.image_id", (ref, image_id))

    async def delete_tag(self, ref: str) -> None:
        await self._run(lambda: self._conn().execute("DELETE FROM tags WHERE ref=?", (ref,)))

    async def delete_image(self, image_id: str) -> None:
        def _delete() -> None:
            db = self._conn()
            with _tx(db):
                db.execute("DELETE FROM tags WHERE image_id=?", (image_id,))
                db.execute("DELETE FROM images WHERE id=?", (image_id,))

        await self._run(_delete)

    # -- volumes -----------------------------------------------------------------------------
    def load_volumes(self) -> list[dict]:
        return self._sync(lambda: [json.loads(d) for (d,) in self._conn().execute("SELECT doc FROM volumes")])

    async def put_volume(self, name: str, doc: dict) -> None:
        await self._run(lambda: self._conn().execute(
            "INSERT INTO volumes (name, doc) VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET doc=excluded.doc",
            (name, json.dumps(doc))))

    async def delete_volume(self, name: str) -> None:
        await self._run(lambda: self._conn().execute("DELETE FROM volumes WHERE name=?", (name,)))

    # -- networks ----------------------------------------------------------------------------
    def load_networks(self) -> list[dict]:
        return self._sync(lambda: [json.loads(d) for (d,) in self._conn().execute("SELECT doc FROM networks")])

    async def put_network(self, nid: str, name: str, doc: dict) -> None:
        """Insert or update; raises sqlite3.IntegrityError when the name belongs to another id."""
        await self._run(lambda: self._conn().execute(
            "INSERT INTO networks (id, name, doc) VALUES (?, ?, ?) "
            "ON CONFLICT(id) DO UPDATE SET name=excluded.name, doc=excluded.doc", (nid, name, json.dumps(doc))))

    async def delete_network(self, nid: str) -> None:
        await self._run(lambda: self._conn().execute("DELETE FROM networks WHERE id=?", (nid,)))

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise RuntimeError("store is not open")
        return self._db


class _tx:
    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, *_: object) -> None:
        self.db.execute("ROLLBACK" if exc_type else "COMMIT")
