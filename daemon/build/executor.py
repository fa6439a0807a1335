"""One build: the stages the target needs, step by step, as dockerd's classic builder runs them.

Each step starts from the image the previous one made. RUN runs in a container of the engine
and its changes become a layer; COPY and ADD copy into a created (never started) container's
rootfs and commit that; WORKDIR makes its directory there the same way (an empty layer when it
was already there); every other instruction only changes the config. Every step is an
(intermediate) image, recorded in the build cache under its key, so that the next build with
the same parent and instruction reuses it. Progress is yielded as the JSON records the CLI
renders ("Step N/M : ...", " ---> id", the RUN's output, errorDetail).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import dataclasses
import email.utils
import functools
import hashlib
import json
import logging
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, TypeVar

from daemon.build import cleanup, copying, instructions
from daemon.build.cache import step_key
from daemon.build.context import BuildContext, download, url_basename
from daemon.build.dockerfile import Dockerfile, Instruction, Stage, parse_instructions
from daemon.build.instructions import BuildArgs
from daemon.build.options import BuildOptions
from daemon.build.shellwords import process_word
from daemon.build.state import BuildFailed, Engine, StageState
from daemon.errors import DaemonError, InvalidParameter
from daemon.images import reference
from daemon.images.service import GOARCH, Image
from daemon.util.timeutil import now_rfc3339
from daemon.version import VERSION
from storage.layers import Layer
from storage.layersource import MEDIA_TAR, import_blob
from storage.rootpath import make_dirs
from storage.tarwriter import tar_directory

log = logging.getLogger("pydockerd.build")
T = TypeVar("T")


def _stream(text: str) -> dict:
    return {"stream": text}


_USING_CACHE = _stream(" ---> Using cache\n")


class BuildRun:
    def __init__(self, engine: Engine, opts: BuildOptions, ctx: BuildContext, df: Dockerfile) -> None:
        self.e = engine
        self.opts = opts
        self.ctx = ctx
        self.df = df
        self.args = BuildArgs(dict(opts.build_args))
        self.stage_images: dict[int, str] = {}
        self.live: set[str] = set()  # containers of this build not removed yet
        self.kept: set[str] = set()  # a failed RUN's container, kept as dockerd keeps it
        self.step_no = 0
        self.cache_images: list[Image] = []  # --cache-from's images, for their history
        self.cache_from = self._cache_sources()
        # Checked before the first record: a bad target is the request's error.
        self.plan = self._plan()
        self.extra_label: Instruction | None = None  # --label's step, parsed when the run starts
        self.total = sum(1 + len(s.steps) for s in self.plan) + (1 if self.opts.labels else 0)

    def _label_step(self) -> Instruction | None:
        """--label: one more LABEL step at the end, as dockerd adds it. Blocks (the parser runs
        in a process): off the event loop."""
        if not self.opts.labels:
            return None
        pairs = sorted(self.opts.labels.items())
        ins = parse_instructions("LABEL " + " ".join(f"{json.dumps(k)}={json.dumps(v)}" for k, v in pairs))[0]
        return dataclasses.replace(ins, original="LABEL " + " ".join(f"{k}={v}" for k, v in pairs))

    # -- plan --------------------------------------------------------------------------------
    def _plan(self) -> list[Stage]:
        """The stages the target needs, in order: unused stages are skipped."""
        stages = self.df.stages
        target = len(stages) - 1
        if self.opts.target:
            idx = self.df.stage_index(self.opts.target)
            if idx is None or not stages[idx].name:
                raise InvalidParameter(f"failed to reach build target {self.opts.target} in Dockerfile")
            target = idx
        need = {target}
        for st in reversed(stages[: target + 1]):
            if st.index not in need:
                continue
            refs = [st.base] + [i.flags["from"] for i in st.steps if "from" in i.flags]
            for r in refs:
                dep = self.df.stage_index(r)
                if dep is not None and dep < st.index:
                    need.add(dep)
        return [s for s in stages[: target + 1] if s.index in need]

    # -- the run -----------------------------------------------------------------------------
    async def run(self) -> AsyncIterator[dict]:
        plan = self.plan
        if self.opts.labels:
            self.extra_label = await asyncio.to_thread(self._label_step)
        meta_env: dict[str, str] = {}
        for ins in self.df.meta_args:
            for name, default in instructions.parse_arg(ins, meta_env, self.df.escape):
                self.args.declare_meta(name, default)
                if self.args.meta[name] is not None:
                    meta_env[name] = self.args.meta[name] or ""
        final = ""
        try:
            for stage in plan:
                st = None
                async for rec in self._stage(stage, self.extra_label if stage is plan[-1] else None):
                    if isinstance(rec, StageState):
                        st = rec
                    elif not (self.opts.quiet and "stream" in rec):  # -q: the image id only
                        yield rec
                assert st is not None
                if not st.image_id:
                    raise BuildFailed("No image was generated. Is your Dockerfile empty?")
                self.stage_images[stage.index] = st.image_id
                final = st.image_id
        except BaseException:
            await self._cleanup(failed=True)
            raise
        finally:
            await cleanup.finish(asyncio.to_thread(self.e.cache.save))
        await self._cleanup(failed=False)
        yield {"aux": {"ID": final}}
        unused = self.args.unconsumed()
        if unused:
            yield _stream(f"[Warning] One or more build-args [{' '.join(unused)}] were not consumed\n")
        if self.opts.quiet:
            yield _stream(final + "\n")
        else:
            yield _stream(f"Successfully built {final[7:19]}\n")
        for ref in self.opts.tags:
            await self.e.images.tag(final, ref.name, ref.tag)
            if not self.opts.quiet:
                yield _stream(f"Successfully tagged {ref}\n")

    async def _stage(self, stage: Stage, extra: Instruction | None) -> AsyncIterator[Any]:
        self.args.new_stage()
        self.step_no += 1
        yield _stream(f"Step {self.step_no}/{self.total} : {stage.from_.original}\n")
        meta_env = {k: v for k, v in self.args.meta.items() if v is not None}
        base = process_word(stage.base, meta_env, self.df.escape)
        img: Image | None = None
        if base.lower() != "scratch":
            idx = self.df.stage_index(base)
            if idx is not None and idx < stage.index:
                img = self.e.images.images.get(self.stage_images[idx])
            else:
                platform = process_word(stage.platform, meta_env, self.df.escape) or self.opts.platform
                async for rec in self._base_image(base, platform):
                    if isinstance(rec, dict):
                        yield rec
                    else:
                        img = rec
        st = StageState.of(img)
        yield _stream(f" ---> {img.id[7:19] if img else ''}\n")
        triggers = list(st.config.get("OnBuild") or [])
        if triggers:
            st.config["OnBuild"] = None
            yield _stream(f"# Executing {len(triggers)} build trigger{'s' if len(triggers) > 1 else ''}\n")
            for trig in triggers:
                for ins in await asyncio.to_thread(parse_instructions, trig):
                    async for rec in self._dispatch(st, ins):
                        yield rec
        for ins in [*stage.steps, *([extra] if extra else [])]:
            self.step_no += 1
            yield _stream(f"Step {self.step_no}/{self.total} : {ins.original}\n")
            async for rec in self._dispatch(st, ins):
                yield rec
            yield _stream(f" ---> {st.image_id[7:19]}\n")
        yield st

    async def _base_image(self, name: str, platform: str = "") -> AsyncIterator[Any]:
        try:
            ref = reference.parse(name)
        except InvalidParameter:
            raise BuildFailed(f"invalid reference format: {name}") from None
        img = self.e.images.find(name)
        if img is None or self.opts.pull:
            try:
                async for rec in self.e.pulls.pull(ref.name, ref.tag or ref.digest or "latest",
                                                   platform or self.opts.platform,
                                                   self.opts.auth_header(ref.domain)):
                    if not self.opts.quiet:
                        yield rec
            except DaemonError as e:
                if img is None:
                    raise BuildFailed(e.message) from None
            img = self.e.images.find(name)
            if img is None:
                raise BuildFailed(f"No such image: {name}")
        yield img

    # -- steps -------------------------------------------------------------------------------
    async def _dispatch(self, st: StageState, ins: Instruction) -> AsyncIterator[dict]:
        name = ins.name
        if name == "run":
            async for rec in self._run(st, ins):
                yield rec
        elif name in ("copy", "add"):
            async for rec in self._copy(st, ins):
                yield rec
        elif name == "arg":
            env = instructions.expansion_env(st.config, self.args)
            pairs = instructions.parse_arg(ins, env, self.df.escape)
            for k, default in pairs:
                self.args.declare(k, default)
            text = " ".join(k if d is None else f"{k}={d}" for k, d in pairs)
            if await self._config_step(st, st.config, "ARG " + text):
                yield _USING_CACHE
        elif name == "maintainer":
            author = " ".join(ins.args)
            if await self._config_step(st, st.config, "MAINTAINER " + author, author=author):
                yield _USING_CACHE
        elif name == "workdir":
            async for rec in self._workdir(st, ins):
                yield rec
        elif name == "from":
            raise BuildFailed("FROM is not allowed here")
        else:
            env = instructions.expansion_env(st.config, self.args)
            step = instructions.apply_config(ins, st.config, env, self.df.escape, st.shell, st.cmd_set)
            hit = await self._config_step(st, step.config, step.comment)
            if step.shell is not None:
                st.shell = step.shell
            st.cmd_set = step.cmd_set
            if hit:
                yield _USING_CACHE

    def _nop(self, st: StageState, comment: str, *, two_spaces: bool = True) -> list[str]:
        # dockerd's withCmdComment / withCmdCommentString: how history shows a step that ran nothing.
        return [*st.shell, "#(nop) ", comment] if two_spaces else [*st.shell, f"#(nop) {comment}"]

    async def _config_step(self, st: StageState, new_config: dict, comment: str, author: str = "") -> bool:
        """A step that only changes the config; True when it came from the cache."""
        cmd = self._nop(st, comment)
        key = step_key(st.image_id, " ".join(cmd), st.config)
        if await self._from_cache(st, key, cmd, new_config):
            return True
        st.doc["config"] = new_config
        if author:
            st.doc["author"] = author
        await self._commit(st, cmd, None, "", key, comment)
        return False

    def _cache_sources(self) -> set[str] | None:
        """With --cache-from only those images (and what they were built on) may be reused, as
        dockerd does; None: any cached step may."""
        if not self.opts.cache_from:
            return None
        out: set[str] = set()
        for name in self.opts.cache_from:
            img = self.e.images.find(name)
            if img is not None:
                self.cache_images.append(img)
            while img is not None and img.id not in out:
                out.add(img.id)
                img = self.e.images.images.get(img.parent) if img.parent else None
        return out

    async def _from_cache(self, st: StageState, key: str, cmd: list[str], new_config: dict | None = None) -> bool:
        """Moves the stage onto the cached image of this step, if there is one: a step built
        here before, or (--cache-from) the same step in the history of a given image."""
        if self.opts.no_cache:
            return False
        iid = self.e.cache.lookup(key)
        img = self.e.images.images.get(iid) if iid else None
        if img is not None and self.cache_from is not None and img.id not in self.cache_from:
            img = None
        if img is None:
            img = await self._from_history(st, key, cmd, new_config if new_config is not None else st.config)
        if img is None:
            return False
        new = StageState.of(img)
        st.image_id, st.doc, st.chain_ids, st.size = new.image_id, new.doc, new.chain_ids, new.size
        return True

    async def _from_history(self, st: StageState, key: str, cmd: list[str], config: dict) -> Image | None:
        """dockerd's cache-from for images without their build's parents here (pulled, loaded):
        an image whose history starts with this stage's and goes on with this very step gives
        the step's image: its history and layers up to there, with the config the step makes."""
        hist = st.doc.get("history") or []
        diffs = st.doc.get("rootfs", {}).get("diff_ids") or []
        shown = [(h.get("created_by", ""), bool(h.get("empty_layer"))) for h in hist]
        for src in self.cache_images:
            s_hist = src.config.get("history") or []
            s_diffs = src.config.get("rootfs", {}).get("diff_ids") or []
            if len(s_hist) <= len(hist) or s_diffs[: len(diffs)] != diffs or \
                    [(h.get("created_by", ""), bool(h.get("empty_layer"))) for h in s_hist[: len(hist)]] != shown:
                continue
            step = s_hist[len(hist)]
            if step.get("created_by") != " ".join(cmd):
                continue
            n_layers = len(diffs) + (0 if step.get("empty_layer") else 1)
            if n_layers > len(s_diffs) or n_layers > len(src.chain_ids):
                continue
            chain_ids = src.chain_ids[:n_layers]
            size = sum(self.e.layers.get(c).size for c in chain_ids) if chain_ids else 0
            doc = {k: v for k, v in st.doc.items() if k not in ("history", "rootfs", "config", "created")}
            doc.update({"config": config, "created": step.get("created") or now_rfc3339(),
                        "history": [*hist, step], "rootfs": {"type": "layers", "diff_ids": s_diffs[:n_layers]}})
            img = await self.e.images.register(doc, chain_ids, size, [], parent=st.image_id)
            self.e.cache.add(key, img.id, st.image_id, "cache-from " + " ".join(cmd), 0)
            if self.cache_from is not None:
                self.cache_from.add(img.id)
            return img
        return None

    async def _commit(self, st: StageState, cmd: list[str], layer: Layer | None, container: str, key: str,
                      description: str) -> None:
        created = now_rfc3339()
        entry: dict[str, Any] = {"created": created, "created_by": " ".join(cmd)}
        if layer is None:
            entry["empty_layer"] = True
        doc = {k: v for k, v in st.doc.items() if k not in ("container", "container_config", "created", "history",
                                                             "rootfs", "docker_version", "id", "parent")}
        doc.update({
            "architecture": st.doc.get("architecture", GOARCH), "os": st.doc.get("os", "linux"),
            "config": st.config, "container": container,
            "container_config": {**st.config, "Cmd": cmd, "Image": st.image_id},
            "created": created, "docker_version": VERSION,
            "history": [*(st.doc.get("history") or []), entry],
            "rootfs": {"type": "layers", "diff_ids": [*st.doc.get("rootfs", {}).get("diff_ids", []),
                                                      *([layer.diff_id] if layer else [])]},
        })
        chain_ids = [*st.chain_ids, *([layer.chain_id] if layer else [])]
        size = st.size + (layer.size if layer else 0)
        img = await self.e.images.register(doc, chain_ids, size, [], parent=st.image_id)
        self.e.cache.add(key, img.id, st.image_id, description, layer.size if layer else 0)
        st.image_id, st.doc, st.chain_ids, st.size = img.id, copy.deepcopy(doc), chain_ids, size

    # -- RUN -----------------------------------------------------------------------------------
    async def _run(self, st: StageState, ins: Instruction) -> AsyncIterator[dict]:
        cmd = instructions.command_form(ins, st.shell)
        if not cmd:
            raise BuildFailed("RUN requires at least one argument")
        env = instructions.env_map(st.config)
        args = self.args.in_effect(env)
        shown = {k: v for k, v in args.items() if k not in instructions.PROXY_ARGS}
        saved = ([f"|{len(shown)}", *sorted(f"{k}={v}" for k, v in shown.items())] if shown else []) + cmd
        key = step_key(st.image_id, "RUN " + json.dumps(saved), st.config)
        if await self._from_cache(st, key, saved):
            yield _USING_CACHE
            return
        if not st.image_id:
            raise BuildFailed("failed to run the command: the image has no files (FROM scratch): "
                              f"exec: \"{cmd[0]}\": executable file not found")
        # No health probes while a step runs: the image's HEALTHCHECK is for its containers.
        body = {"Image": st.image_id, "Cmd": cmd, "Entrypoint": [""], "Healthcheck": {"Test": ["NONE"]},
                "Env": [f"{k}={v}" for k, v in args.items()], "User": st.config.get("User", ""),
                "WorkingDir": st.config.get("WorkingDir", ""), "AttachStdout": True, "AttachStderr": True,
                "HostConfig": self.opts.host_config}
        cid = await self._create(body)
        yield _stream(f" ---> Running in {cid[:12]}\n")
        fut = await self.e.containers.wait_future(cid, "next-exit")
        try:
            await self.e.containers.start(cid)
        except DaemonError as e:
            fut.cancel()
            self.kept.add(cid)
            raise BuildFailed(e.message) from None
        _, records = self.e.containers.logs(cid, follow=True, tail="all", since="", until="", stdout=True,
                                            stderr=True)
        async for item in records:
            # One record at a time, or a batch of them (what was read at once).
            for rec in item if isinstance(item, list) else (item,):
                text = rec.get("log")
                if text and rec.get("stream") == "stderr":
                    text = f"\x1b[91m{text}\x1b[0m"  # dockerd shows a step's stderr in red
                if text:
                    yield _stream(text)
        code, _err = await fut
        if code != 0:
            self.kept.add(cid)
            raise BuildFailed(f"The command '{' '.join(cmd)}' returned a non-zero code: {code}", code)
        await cleanup.finish(self._commit_container(st, cid, saved, key, "RUN " + " ".join(saved)))
        if self.opts.rm or self.opts.force_rm:
            await self._remove(cid)
            yield _stream(f"Removing intermediate container {cid[:12]}\n")
        else:
            self.live.discard(cid)  # --rm=false: kept, as asked

    async def _create(self, body: dict) -> str:
        try:
            cid = (await self.e.containers.create(body, None))["Id"]
        except DaemonError as e:
            raise BuildFailed(e.message) from None
        self.live.add(cid)
        return cid

    async def _remove(self, cid: str) -> None:
        with contextlib.suppress(DaemonError):
            await self.e.containers.remove(cid, force=True, volumes=True)
        self.live.discard(cid)
        self.kept.discard(cid)

    async def _cleanup(self, failed: bool) -> None:
        """Removes this build's containers: all of them when it was cancelled or after success;
        a failed RUN's container stays unless --force-rm (as dockerd)."""
        gone = [c for c in self.live if not (failed and c in self.kept and not self.opts.force_rm)]

        async def remove_all() -> None:
            for cid in gone:
                await self._remove(cid)

        if gone:
            await cleanup.finish(remove_all())

    # -- WORKDIR -------------------------------------------------------------------------------
    async def _workdir(self, st: StageState, ins: Instruction) -> AsyncIterator[dict]:
        """WORKDIR sets the working directory and, as dockerd's ContainerCreateWorkdir, makes it
        in the image (root's, 0755) as a layer of its own; one that is already there changes
        nothing, and the step is an empty layer as dockerd records it."""
        env = instructions.expansion_env(st.config, self.args)
        step = instructions.apply_config(ins, st.config, env, self.df.escape, st.shell, st.cmd_set)
        cmd = self._nop(st, step.comment, two_spaces=False)  # dockerd: withCmdCommentString
        key = step_key(st.image_id, " ".join(cmd), st.config)
        if await self._from_cache(st, key, cmd, step.config):
            yield _USING_CACHE
            return
        path = step.config["WorkingDir"]
        tree, cid, created = await self._change_rootfs(st, cmd, functools.partial(_make_workdir, path=path))
        if cid:
            yield _stream(f" ---> Running in {cid[:12]}\n")
        st.doc["config"] = step.config
        if created and tree is not None:
            await cleanup.finish(self._commit_tree(st, tree, cmd, key, step.comment))
        elif created:
            await cleanup.finish(self._commit_container(st, cid, cmd, key, step.comment))
        else:
            await cleanup.finish(self._commit(st, cmd, None, cid, key, step.comment))
        if not cid:
            return
        # As a RUN step's: dockerd's dispatch removes the step's container unless --rm=false.
        if self.opts.rm or self.opts.force_rm:
            await self._remove(cid)
            yield _stream(f"Removing intermediate container {cid[:12]}\n")
        else:
            self.live.discard(cid)

    # -- COPY / ADD ----------------------------------------------------------------------------
    async def _copy(self, st: StageState, ins: Instruction) -> AsyncIterator[dict]:
        what = ins.name.upper()
        if "chmod" in ins.flags:
            raise BuildFailed("the --chmod option requires BuildKit. Refer to https://docs.docker.com/go/buildkit/ "
                              "to learn how to build images with BuildKit enabled")
        if ins.name == "add" and "from" in ins.flags:
            raise BuildFailed("ADD does not support the --from flag")
        env = instructions.expansion_env(st.config, self.args)
        words = [process_word(w, env, self.df.escape) for w in ins.args]
        if len(words) < 2:
            raise BuildFailed(f"{what} requires at least two arguments, but only one was provided. Destination "
                              "could not be determined.")
        srcs, dest = words[:-1], copying.destination(words[-1], st.config.get("WorkingDir", ""))
        if words[-1].endswith("/") and not dest.endswith("/"):
            dest += "/"
        chown = process_word(ins.flags.get("chown", ""), env, self.df.escape)
        src_root: Path = self.ctx.root
        from_ctr = None
        try:
            if "from" in ins.flags:
                from_ctr, src_root = await self._source_rootfs(process_word(ins.flags["from"], env, self.df.escape))
            # The same sources of the same (kept) context: the same plan and checksums.
            memo_key = (ins.name, tuple(srcs)) if from_ctr is None and not any(
                s.startswith(("http://", "https://")) for s in srcs) else None
            plan = self.ctx.memo.get(memo_key) if memo_key else None
            if plan is None:
                plan = await asyncio.to_thread(self._copy_plan, ins, srcs, src_root, from_ctr is None)
                if memo_key:
                    self.ctx.memo[memo_key] = plan
            src_hash = plan[0][1] if len(plan) == 1 else \
                "multi:" + hashlib.sha256(",".join(c for _, c, _ in plan).encode()).hexdigest()
            comment = f"{what} {src_hash} in {dest.rstrip('/') or '/'} "
            cmd = self._nop(st, comment, two_spaces=False)
            key = step_key(st.image_id, " ".join(cmd) + f" chown={chown}", st.config)
            if await self._from_cache(st, key, cmd):
                yield _USING_CACHE
                return
            desc = f"{what} {' '.join(srcs)} {words[-1]}"
            tree, cid = await self._copy_files(st, cmd, plan, dest, chown, what)
            if tree is not None:
                await cleanup.finish(self._commit_tree(st, tree, cmd, key, desc))
            else:
                await cleanup.finish(self._commit_container(st, cid, cmd, key, desc))
                await self._remove(cid)
        finally:
            if from_ctr is not None:
                await self._release_rootfs(from_ctr)

    def _copy_plan(self, ins: Instruction, srcs: list[str], root: Path, in_context: bool
                   ) -> list[tuple[str, str, Any]]:
        """(kind, checksum, what) per source: ("copy", sum, [Source]) or ("archive", sum, Path)."""
        what = ins.name.upper()
        plan: list[tuple[str, str, Any]] = []
        for src in srcs:
            if ins.name == "add" and src.startswith(("http://", "https://")):
                dl = self.ctx.scratch("download") / url_basename(src)
                modified = download(src, dl)
                os.chmod(dl, 0o600)  # as dockerd: a download is 0600, dated by its Last-Modified
                if modified:
                    with contextlib.suppress(TypeError, ValueError):
                        ts = email.utils.parsedate_to_datetime(modified).timestamp()
                        os.utime(dl, (ts, ts))
                source = copying.Source(dl, dl.name, False)
                plan.append(("copy", copying.checksum([source]), [source]))
                continue
            if ins.name == "add" and src.startswith(("git@", "git://")):
                raise BuildFailed("ADD of a git repository requires BuildKit")
            sources = copying.select(root, src, in_context=in_context, what=what)
            for s in sources:
                if ins.name == "add" and not s.is_dir and copying.is_archive(s.path):
                    plan.append(("archive", copying.checksum([s]), s.path))
                else:
                    plan.append(("copy", copying.checksum([s]), [s]))
        return plan

    async def _commit_container(self, st: StageState, cid: str, cmd: list[str], key: str, desc: str) -> None:
        """The container's changes as a layer, and the step's image on top of it."""
        layer = await self.e.commits.container_layer(cid, st.top_chain)
        await self._commit(st, cmd, layer, cid, key, desc)

    async def _commit_tree(self, st: StageState, tree: Path, cmd: list[str], key: str, desc: str) -> None:
        layer = await asyncio.to_thread(self._dir_layer, tree)
        await self._commit(st, cmd, layer, "", key, desc)

    async def _copy_files(self, st: StageState, cmd: list[str], plan: list[tuple[str, str, Any]], dest: str,
                          chown: str, what: str) -> tuple[Path | None, str]:
        sources_n = sum(len(p[2]) if p[0] == "copy" else 1 for p in plan)
        if sources_n > 1 and not dest.endswith("/"):
            raise BuildFailed(f"When using {what} with more than one source file, the destination must be a "
                              "directory and end with a /")
        tree, cid, _ = await self._change_rootfs(
            st, cmd, functools.partial(self._fill, plan=plan, dest=dest, chown=chown, what=what))
        return tree, cid

    async def _change_rootfs(self, st: StageState, cmd: list[str], change: Callable[[Path], T]
                             ) -> tuple[Path | None, str, T]:
        """Runs change(rootfs) (in a thread) on a created, never started, container's rootfs
        (its id is returned), or on a plain directory when there is no image yet (FROM scratch)."""
        if not st.image_id:
            tmp = self.ctx.scratch("layer")
            return tmp, "", await asyncio.to_thread(change, tmp)
        body = {"Image": st.image_id, "Cmd": cmd, "Entrypoint": [""], "HostConfig": {"NetworkMode": "none"}}
        cid = await self._create(body)
        c = self.e.containers.get(cid)
        rootfs = await asyncio.to_thread(self.e.rootfs.mount, c)
        try:
            result = await asyncio.to_thread(change, rootfs)
        except BaseException:
            await asyncio.to_thread(self.e.rootfs.unmount_quietly, c)
            await self._remove(cid)
            raise
        await asyncio.to_thread(self.e.rootfs.unmount_quietly, c)
        return None, cid, result

    @staticmethod
    def _fill(rootfs: Path, plan: list[tuple[str, str, Any]], dest: str, chown: str, what: str) -> None:
        owner = copying.lookup_owner(rootfs, chown) if chown else (0, 0)
        for kind, _sum, item in plan:
            if kind == "archive":
                copying.extract_archive(item, rootfs, dest)
            else:
                copying.copy_into(item, rootfs, dest, owner, what)

    def _dir_layer(self, tree: Path) -> Layer:
        """A layer made of a plain directory (the first files of a FROM scratch image)."""
        with self.e.blobs.writer() as w:
            tar_directory(tree, w)
        assert w.digest is not None
        return import_blob(self.e.layers, self.e.sources, w.digest, MEDIA_TAR, None)

    async def _source_rootfs(self, name: str) -> tuple[str, Path]:
        """COPY --from: a created container of the stage's (or image's) result, its rootfs mounted."""
        idx = self.df.stage_index(name)
        if idx is not None and idx in self.stage_images:
            iid = self.stage_images[idx]
        else:
            img = self.e.images.find(name)
            if img is None:
                async for _rec in self._base_image(name):
                    pass
                img = self.e.images.find(name)
            assert img is not None
            iid = img.id
        cid = await self._create({"Image": iid, "Cmd": ["/bin/sh"], "Entrypoint": [""],
                                  "HostConfig": {"NetworkMode": "none"}})
        c = self.e.containers.get(cid)
        return cid, await asyncio.to_thread(self.e.rootfs.mount, c)

    async def _release_rootfs(self, cid: str) -> None:
        with contextlib.suppress(DaemonError):
            await asyncio.to_thread(self.e.rootfs.unmount_quietly, self.e.containers.get(cid))
        await self._remove(cid)



def _make_workdir(rootfs: Path, path: str) -> bool:
    try:
        return make_dirs(rootfs, path)
    except NotADirectoryError as e:
        # dockerd's message when the path itself is a file; for a file on the way it would show
        # its own host path: this names the component inside the image instead.
        blocker = "/" + str(e.filename or "").strip("/")
        if blocker in ("/", path):
            raise BuildFailed(f"Cannot mkdir: {path} is not a directory") from None
        raise BuildFailed(f"Cannot mkdir: {path}: {blocker} is not a directory") from None
