"""The build context: the uploaded tar (plain, gzip, bzip2, xz) or a remote URL, unpacked into
the build's own directory with the safe extractor, the Dockerfile found inside it, and the
.dockerignore applied. The context is untrusted: names, symlinks and hard links cannot reach
outside its directory, and nothing outside it is read."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import stat
import subprocess
import tarfile
import urllib.parse
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from daemon.build import cleanup, ignore
from daemon.build.contexts import ContextStore, Unpacked
from daemon.build.copying import is_archive
from daemon.errors import InvalidParameter
from daemon.util.bodyreader import ThreadReader
from storage.archive import ArchiveError, extract_tar
from storage.compression import decompress
from storage.digest import sha256
from storage.rootpath import resolve_in_root

MAX_DOCKERFILE = 16 << 20
SPARSE_LIMIT = 1 << 30  # a sparse file in a context is written out whole: no more than this
# dockerd's urlutil.IsGitURL: never a local path (that would read the daemon's own files).
_GIT_URL = re.compile(r"^(git://|git@|github\.com/|https?://[^#]*\.git(#.*)?$)")


@dataclass
class BuildContext:
    workdir: Path  # the build's own directory: removed with close()
    root: Path  # the unpacked context (read-only: it may be shared with other builds)
    dockerfile: str  # the Dockerfile's text
    dockerfile_name: str
    memo: dict[Any, Any] = field(default_factory=dict)  # COPY/ADD source plans, kept with the context
    store: ContextStore | None = None
    kept: Unpacked | None = None

    def release(self) -> list[Path]:
        """On the loop: gives the kept context back; returns evicted directories to remove."""
        if self.store is None or self.kept is None:
            return []
        gone, self.kept = self.store.release(self.kept), None
        return gone

    def close(self, gone: list[Path]) -> None:
        """Off the loop: removes the build's own directory and the evicted ones."""
        for p in [self.workdir, *gone]:
            shutil.rmtree(p, ignore_errors=True)

    def scratch(self, name: str) -> Path:
        """A fresh directory of the build's own (downloads, layers of FROM scratch)."""
        p = self.workdir / f"{name}-{uuid.uuid4().hex[:8]}"
        p.mkdir(mode=0o700)
        return p


async def receive(body: AsyncIterator[bytes] | None, remote: str, dockerfile_name: str, tmp_root: Path,
                  store: ContextStore) -> BuildContext:
    """Unpacks the context; InvalidParameter (a 400) when it cannot be used, leaving nothing behind."""
    tmp_root.mkdir(parents=True, exist_ok=True, mode=0o700)
    workdir = tmp_root / uuid.uuid4().hex
    workdir.mkdir(mode=0o700)
    root = workdir / "context"
    root.mkdir(mode=0o755)
    name = dockerfile_name or "Dockerfile"
    try:
        if not remote and body is not None:
            return await _from_upload(body, name, workdir, root, store)
        text: str | None = None
        if remote:
            text = await _remote(remote, root, workdir)
            if text is not None:
                name = "Dockerfile"
        if text is None:
            text = await asyncio.to_thread(_read_dockerfile, root, name)
        await asyncio.to_thread(_apply_dockerignore, root)
        return BuildContext(workdir, root, text, name)
    except BaseException:
        # Off the loop (an unpacked context can be large), and to its end even when cancelled.
        await cleanup.finish(asyncio.to_thread(shutil.rmtree, workdir, True))
        raise


async def _from_upload(body: AsyncIterator[bytes], name: str, workdir: Path, root: Path,
                       store: ContextStore) -> BuildContext:
    spool = workdir / "upload"
    digest = await _spool(body, spool)
    key = f"{digest}:{name}"
    kept = store.acquire(key)
    if kept is None:
        await asyncio.to_thread(_complete_padding, spool)
        with open(spool, "rb") as f:
            size = await asyncio.to_thread(_extract, f, root)
        text = await asyncio.to_thread(_read_dockerfile, root, name)
        await asyncio.to_thread(_apply_dockerignore, root)
        kept, gone = store.add(key, root, text, size)
        for g in gone:
            await asyncio.to_thread(shutil.rmtree, g, True)
    await asyncio.to_thread(spool.unlink)
    return BuildContext(workdir, kept.root, kept.dockerfile, name, kept.memo, store, kept)


def _complete_padding(path: Path) -> None:
    """The CLI's `docker build -f - DIR` appends the Dockerfile to the context's tar and ends the
    stream right after its data, without the padding to the 512-byte block or the end blocks.
    Go's tar reader takes that for the end; Python's calls it truncated. When the last entry's
    data ends exactly at the end of an uncompressed upload, the missing zeros are added; a
    stream cut inside an entry's data stays what it is (and fails)."""
    size = path.stat().st_size
    if size % tarfile.BLOCKSIZE == 0:
        return
    last_end = -1
    try:
        with tarfile.open(path, "r:") as tf:  # seekable: headers only, data is skipped
            for m in tf:
                last_end = m.offset_data + m.size
    except tarfile.TarError:
        pass
    if last_end == size:
        with open(path, "ab") as f:
            f.write(b"\0" * (-size % tarfile.BLOCKSIZE + 2 * tarfile.BLOCKSIZE))


async def _spool(body: AsyncIterator[bytes], path: Path) -> str:
    """Writes the upload to `path`; returns its sha256. A thread hashes and writes while the
    loop goes on reading the upload."""
    reader = ThreadReader()
    feeder = asyncio.create_task(reader.feed(body))

    def drain() -> str:
        h = sha256()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "wb") as out:
            while chunk := reader.read(1 << 20):
                h.update(chunk)
                out.write(chunk)
        return h.hexdigest()

    try:
        return await asyncio.to_thread(drain)
    except OSError as e:
        if e.errno is None:  # the upload broke off
            raise InvalidParameter(f"failed to read the build context: {e}") from None
        raise
    finally:
        reader.close()
        feeder.cancel()
        with contextlib.suppress(BaseException):
            await feeder


def _extract(fileobj: Any, root: Path) -> int:
    """The bytes of file data unpacked."""
    try:
        return extract_tar(decompress(fileobj), root, devices=False, sparse_limit=SPARSE_LIMIT)
    except ArchiveError as e:
        raise InvalidParameter(f"failed to read the build context: {e}") from None
    except OSError as e:
        if e.errno is None or "upload interrupted" in str(e):
            raise InvalidParameter(f"failed to read the build context: {e}") from None
        raise


def _open_regular(root: Path, name: str) -> BinaryIO | None:
    """A regular file of the context, or None. O_NONBLOCK: a FIFO planted under that name must
    not hang the build on its open."""
    try:
        fd = os.open(resolve_in_root(root, name), os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        return None
    return os.fdopen(fd, "rb")


def _read_dockerfile(root: Path, name: str) -> str:
    f = _open_regular(root, name)
    if f is None:
        raise InvalidParameter(f"Cannot locate specified Dockerfile: {name}")
    with f:
        data = f.read(MAX_DOCKERFILE + 1)
    if len(data) > MAX_DOCKERFILE:
        raise InvalidParameter(f"the Dockerfile {name} is larger than {MAX_DOCKERFILE >> 20} MB")
    if not data.strip():
        raise InvalidParameter(f"the Dockerfile ({name}) cannot be empty")
    return data.decode("utf-8", errors="replace").removeprefix("\ufeff")


def _apply_dockerignore(root: Path) -> None:
    f = _open_regular(root, ".dockerignore")
    if f is None:
        return
    with f:
        text = f.read(MAX_DOCKERFILE).decode("utf-8", errors="replace")
    ignore.apply(root, ignore.Matcher(ignore.read_patterns(text)), keep=set())


async def _remote(url: str, root: Path, workdir: Path) -> str | None:
    """remote=: a git repository (cloned with the host's git), a tarball, or a plain Dockerfile
    (returned as text, with an empty context)."""
    if _GIT_URL.match(url):
        await asyncio.to_thread(_git_clone, url, root)
        return None
    if not url.startswith(("http://", "https://")):
        raise InvalidParameter(f"unable to prepare context: unsupported remote context {url!r}: use an http(s) URL "
                               "or a git repository")
    dest = workdir / "remote"
    await asyncio.to_thread(download, url, dest)
    if await asyncio.to_thread(is_archive, dest):
        with open(dest, "rb") as raw:
            await asyncio.to_thread(_extract, raw, root)
        dest.unlink()
        return None
    # Neither an archive nor small enough for a Dockerfile: refused before it is read.
    if dest.stat().st_size > MAX_DOCKERFILE:
        raise InvalidParameter("the remote Dockerfile is too large")
    data = await asyncio.to_thread(dest.read_bytes)
    dest.unlink()
    return data.decode("utf-8", errors="replace")


def download(url: str, dest: Path, limit: int = 8 << 30) -> str:
    """Fetches an http(s) URL into dest; returns its Last-Modified header ('' if none)."""
    # Imported with the first remote context or ADD <url>: its handlers and opener classes are
    # ~0.3 MiB that builds from a local context never use.
    import urllib.request

    try:
        resp = urllib.request.urlopen(url, timeout=60)  # noqa: S310 - the scheme is checked by callers
    except (OSError, ValueError) as e:
        raise InvalidParameter(f"failed to GET {url}: {e}") from None
    size = 0
    with resp, open(dest, "wb") as out:
        while chunk := resp.read(1 << 20):
            size += len(chunk)
            if size > limit:
                raise InvalidParameter(f"{url}: larger than {limit} bytes")
            out.write(chunk)
        return resp.headers.get("Last-Modified", "")


def _git_clone(url: str, root: Path) -> None:
    git = shutil.which("git")
    if git is None:
        raise InvalidParameter(f"unable to prepare context: git is not installed on the daemon's host ({url})")
    repo, _, frag = url.partition("#")
    ref, _, sub = frag.partition(":")
    if repo.startswith("github.com/"):
        repo = "https://" + repo
    clone = root.parent / "git"
    # Submodules must not reach the daemon's own files (file://) or run commands (ext::).
    argv = [git, "-c", "protocol.file.allow=never", "-c", "protocol.ext.allow=never", "clone", "--quiet",
            "--recurse-submodules"]
    if ref:
        argv += ["--branch", ref]
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0"}
    r = subprocess.run([*argv, "--depth", "1", "--", repo, os.fspath(clone)], capture_output=True, text=True,
                       env=env, timeout=600)
    if r.returncode != 0:
        # Servers without shallow support (git's dumb HTTP) need a full clone, as dockerd falls back to.
        shutil.rmtree(clone, ignore_errors=True)
        r = subprocess.run([*argv, "--", repo, os.fspath(clone)], capture_output=True, text=True, env=env,
                           timeout=600)
    if r.returncode != 0:
        raise InvalidParameter(f"unable to prepare context: unable to 'git clone' to temporary context directory: "
                               f"{r.stderr.strip()}")
    shutil.rmtree(clone / ".git", ignore_errors=True)
    src = resolve_in_root(clone, sub) if sub else clone
    if not src.is_dir():
        raise InvalidParameter(f"unable to prepare context: subdirectory {sub!r} not found in {repo}")
    root.rmdir()
    os.rename(src, root)
    shutil.rmtree(clone, ignore_errors=True)


def url_basename(url: str) -> str:
    """The file name ADD gives a download: the URL path's last component."""
    return urllib.parse.urlparse(url).path.rstrip("/").rsplit("/", 1)[-1] or "__unnamed__"
