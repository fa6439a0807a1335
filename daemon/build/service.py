"""The builder as the API sees it: POST /build (a stream of progress records), POST /build/prune
and the build cache rows of /system/df."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from daemon.build import cleanup, context, dockerfile, options
from daemon.build.cache import BuildCache, Entry, usage_record
from daemon.build.contexts import ContextStore
from daemon.build.executor import BuildRun
from daemon.build.state import BuildFailed, Engine
from daemon.errors import Conflict, DaemonError, InvalidParameter, NotFound
from daemon.images.service import ImageUsers
from daemon.util.filters import Filters
from daemon.util.timeutil import parse_time_filter

log = logging.getLogger("pydockerd.build")

PRUNE_FILTERS = {"until", "unused-for", "id", "type", "description", "inuse", "shared", "private"}


def error_record(message: str, code: int | None = None) -> dict:
    detail: dict = {"message": message}
    if code is not None:
        detail["code"] = code
    return {"errorDetail": detail, "error": message}


@dataclass
class BuildService:
    engine: Engine
    users: ImageUsers
    tmp_root: Path  # the builds' own directories (uploads, downloads)
    contexts: ContextStore  # unpacked contexts kept for the next build of the same one

    @property
    def cache(self) -> BuildCache:
        return self.engine.cache

    def load(self) -> None:
        self.cache.load()
        self.contexts.reset()
        # A crash during a build left its context behind: nothing else uses these directories.
        if self.tmp_root.exists():
            import shutil

            for leftover in self.tmp_root.iterdir():
                shutil.rmtree(leftover, ignore_errors=True)

    async def build(self, query: Mapping[str, str], tags: Sequence[str], extra_hosts: Sequence[str],
                    body: AsyncIterator[bytes] | None, registry_config: str | None = None) -> AsyncIterator[dict]:
        """The progress records. Bad options, an unusable context or Dockerfile fail before the
        first record (an error response); a failing step ends the stream with its error."""
        opts = options.parse(query, tags, extra_hosts, registry_config)
        ctx = await context.receive(None if opts.remote else body, opts.remote, opts.dockerfile, self.tmp_root,
                                    self.contexts)
        try:
            run = BuildRun(self.engine, opts, ctx, await asyncio.to_thread(dockerfile.parse, ctx.dockerfile))
        except BaseException:
            await cleanup.finish(asyncio.to_thread(ctx.close, ctx.release()))
            raise
        try:
            async for rec in run.run():
                yield rec
        except BuildFailed as e:
            yield error_record(e.message, e.code)
        except DaemonError as e:
            yield error_record(e.message)
        finally:
            await cleanup.finish(asyncio.to_thread(ctx.close, ctx.release()))

    # -- cache views ---------------------------------------------------------------------------
    def _shared(self) -> set[str]:
        """Images that tagged images are built on (or are): their cache is not reclaimable."""
        images = self.engine.images.images
        out: set[str] = set()
        for img in images.values():
            if not img.tags:
                continue
            cur = img
            while cur is not None and cur.id not in out:
                out.add(cur.id)
                cur = images.get(cur.parent) if cur.parent else None
        return out

    def usage(self) -> list[dict]:
        shared = self._shared()
        return [usage_record(e, bool(self.users.image_users(e.image)), e.image in shared)
                for e in self.cache.entries()]

    async def prune(self, filters_raw: str | None, all_: bool) -> dict:
        f = Filters.parse(filters_raw, PRUNE_FILTERS)
        until = [parse_time_filter(u) for u in f.get("until")]
        unused_for = [parse_time_filter(u) for u in f.get("unused-for")]
        ids, descriptions = f.get("id"), f.get("description")
        want_in_use, want_shared, want_private = f.bool("inuse"), f.bool("shared"), f.bool("private")
        shared = self._shared()
        gone: list[Entry] = []
        for e in self.cache.entries():
            in_use = bool(self.users.image_users(e.image))
            is_shared = e.image in shared
            if in_use or want_in_use:
                continue  # what a container uses is never pruned
            if not all_ and is_shared:
                continue
            if (want_shared is not None and is_shared != want_shared) or \
                    (want_private is not None and is_shared == want_private):
                continue
            if until and not all(e.created <= u for u in until):
                continue
            if unused_for and not all(e.last_used <= u for u in unused_for):
                continue
            if ids and not any(e.key.startswith(i) for i in ids):
                continue
            if descriptions and not any(d in e.description for d in descriptions):
                continue
            if not f.match_any("type", "regular"):
                continue
            gone.append(e)
        await asyncio.to_thread(self.cache.forget, [e.key for e in gone])
        reclaimed = 0
        for e in sorted(gone, key=lambda e: e.created, reverse=True):
            img = self.engine.images.images.get(e.image)
            if img is None or img.tags:
                continue
            try:
                await self.engine.images.remove(e.image, force=False, prune=False)
                reclaimed += e.size
            except (Conflict, NotFound, InvalidParameter):
                continue
        return {"CachesDeleted": [e.key[:25] for e in gone] or None, "SpaceReclaimed": reclaimed}
