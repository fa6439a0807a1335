"""The builder's decisions without a daemon: Dockerfile parsing and its refusals, word
expansion, .dockerignore matching, the config-only instructions, build args, options, the
cache index and COPY's source rules (on temp directories)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from daemon.build import copying, dockerfile, ignore, instructions, options
from daemon.build.cache import BuildCache, step_key
from daemon.build.shellwords import process_word, process_words
from daemon.errors import InvalidParameter

# --------------------------------------------------------------------------- Dockerfile


def test_parse_stages_meta_args_and_continuations() -> None:
    df = dockerfile.parse("ARG B=busybox\n# comment\nFROM ${B} AS Build\nRUN echo a \\\n  && echo b\n"
                          "FROM scratch\nCOPY --from=build /x /y\n")
    assert [a.original for a in df.meta_args] == ["ARG B=busybox"]
    assert [s.name for s in df.stages] == ["build", ""]
    assert df.stages[0].steps[0].name == "run" and df.stages[0].steps[0].line == 4
    assert df.stages[1].steps[0].flags == {"from": "build"}
    assert df.stage_index("BUILD") == 0 and df.stage_index("1") == 1 and df.stage_index("nope") is None


def test_escape_directive_and_json_forms() -> None:
    df = dockerfile.parse("# escape=`\nFROM busybox\nRUN echo a `\n  b\nCMD [\"x\", \"y\"]\n")
    assert df.escape == "`"
    run, cmd = df.stages[0].steps
    assert not run.json and "echo a" in run.args[0] and cmd.json and cmd.args == ("x", "y")
    with pytest.raises(InvalidParameter, match="invalid ESCAPE"):
        dockerfile.parse("# escape=x\nFROM busybox\n")


@pytest.mark.parametrize("text,msg", [
    ("FROM busybox\nFROBNICATE x\n", "unknown instruction: FROBNICATE"),
    ("FROM busybox\nCOPY --bogus=1 a b\n", "unknown flag: bogus"),
    ("FROM busybox\nRUN <<EOF\necho\nEOF\n", "heredocs"),
    ("RUN true\nFROM busybox\n", "no build stage in current context"),
    ("FROM a b\n", "either one or three arguments"),
    ("FROM busybox AS 1x\n", "invalid name for build stage"),
    ("ARG X=1\n", "No image was generated"),
    ("FROM busybox\nONBUILD FROM x\n", "isn't allowed as an ONBUILD trigger"),
])
def test_parse_refusals(text: str, msg: str) -> None:
    with pytest.raises(InvalidParameter, match=msg):
        dockerfile.parse(text)


def test_onbuild_trigger_is_parsed() -> None:
    ins = dockerfile.parse("FROM busybox\nONBUILD RUN echo x\n").stages[0].steps[0]
    assert ins.sub is not None and ins.sub.name == "run" and ins.sub.original == "RUN echo x"


# --------------------------------------------------------------------------- words


@pytest.mark.parametrize("word,want", [
    ("$A", "1"), ("${A}", "1"), ("${UNSET:-d}", "d"), ("${EMPTY:-d}", "d"), ("${EMPTY-d}", ""),
    ("${A:+set}", "set"), ("${UNSET:+set}", ""), ("'$A'", "$A"), ('"$A b"', "1 b"), ("\\$A", "$A"),
    ('"x\\"y"', 'x"y'), ("a${A}b", "a1b"), ("$", "$"), ("${A:-${B}}", "1"), ("${UNSET:-$B}", "two"),
])
def test_process_word(word: str, want: str) -> None:
    assert process_word(word, {"A": "1", "B": "two", "EMPTY": ""}) == want


def test_process_words_and_errors() -> None:
    assert process_words('a "b c" $A', {"A": "x y"}) == ["a", "b c", "x y"]
    with pytest.raises(InvalidParameter):
        process_word("${A", {})
    with pytest.raises(InvalidParameter, match="must be set"):
        process_word("${A:?must be set}", {})
    with pytest.raises(InvalidParameter):
        process_word("'unterminated", {})
    assert process_word("`$A", {"A": "1"}, escape="`") == "$A"


# --------------------------------------------------------------------------- .dockerignore


def test_dockerignore_rules() -> None:
    m = ignore.Matcher(ignore.read_patterns("# c\n\nnode_modules\n**/*.log\n/docs/*.md\n!docs/keep.md\n"
                                            "tmp?\n*.key\n!pub.key\n"))
    assert m.excluded("node_modules") and m.excluded("node_modules/a/b.js")  # parent directory rule
    assert m.excluded("a.log") and m.excluded("x/y/z.log")  # ** spans zero or more directories
    assert m.excluded("docs/a.md") and not m.excluded("docs/keep.md") and not m.excluded("docs/sub/a.md")
    assert m.excluded("tmp1") and not m.excluded("tmp12")
    assert m.excluded("a.key") and not m.excluded("pub.key") and not m.excluded("dir/a.key")
    assert not m.excluded("src/main.py")
    assert ignore.read_patterns("./a/../b\n/c/\n") == ["b", "c"]


def test_dockerignore_apply(tmp_path: Path) -> None:
    for name in ("keep.txt", "logs/a.log", "logs/keep.me", "deep/x.log"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x")
    os.symlink("/etc", tmp_path / "link-dir")
    ignore.apply(tmp_path, ignore.Matcher(["**/*.log", "link-dir"]), keep=set())
    left = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*"))
    assert left == ["deep", "keep.txt", "logs", "logs/keep.me"]
    ignore.apply(tmp_path, ignore.Matcher(["logs", "!logs/keep.me"]), keep=set())
    assert (tmp_path / "logs" / "keep.me").exists()


# --------------------------------------------------------------------------- instructions


def _ins(line: str) -> dockerfile.Instruction:
    return dockerfile.parse_instructions(line)[0]


def test_config_instructions() -> None:
    sh = list(instructions.DEFAULT_SHELL)
    step = instructions.apply_config(_ins('ENV A=1 B="x y"'), {"Env": ["A=0", "P=p"]}, {}, "\\", sh, False)
    assert step.config["Env"] == ["P=p", "A=1", "B=x y"] and step.comment == "ENV A=1 B=x y"
    step = instructions.apply_config(_ins("ENV OLD form value"), {}, {}, "\\", sh, False)
    assert step.config["Env"] == ["OLD=form value"]
    step = instructions.apply_config(_ins("CMD echo hi"), {}, {}, "\\", sh, False)
    assert step.config["Cmd"] == ["/bin/sh", "-c", "echo hi"] and step.cmd_set
    step = instructions.apply_config(_ins('ENTRYPOINT ["run"]'), {"Cmd": ["inherited"]}, {}, "\\", sh, False)
    assert step.config == {"Entrypoint": ["run"], "Cmd": None}  # an inherited CMD goes
    step = instructions.apply_config(_ins('ENTRYPOINT ["run"]'), {"Cmd": ["mine"]}, {}, "\\", sh, True)
    assert step.config["Cmd"] == ["mine"]
    step = instructions.apply_config(_ins("WORKDIR b"), {"WorkingDir": "/a"}, {}, "\\", sh, False)
    assert step.config["WorkingDir"] == "/a/b"
    step = instructions.apply_config(_ins("EXPOSE 80 53/udp 8000-8001"), {}, {}, "\\", sh, False)
    assert set(step.config["ExposedPorts"]) == {"80/tcp", "53/udp", "8000/tcp", "8001/tcp"}
    step = instructions.apply_config(_ins('SHELL ["/bin/bash", "-c"]'), {}, {}, "\\", sh, False)
    assert step.shell == ["/bin/bash", "-c"]
    step = instructions.apply_config(_ins("USER $U"), {}, {"U": "app"}, "\\", sh, False)
    assert step.config["User"] == "app"
    for bad in ("EXPOSE 70000", "EXPOSE 80/bogus", "STOPSIGNAL SIGNOPE", "SHELL /bin/sh", "VOLUME \"\""):
        with pytest.raises(InvalidParameter):
            instructions.apply_config(_ins(bad), {}, {}, "\\", sh, False)


def test_healthcheck() -> None:
    sh = list(instructions.DEFAULT_SHELL)
    hc = instructions.healthcheck(_ins("HEALTHCHECK --interval=1m30s --timeout=3s --start-period=500ms "
                                       "--retries=4 CMD curl -f x"), sh)
    assert hc == {"Test": ["CMD-SHELL", "curl -f x"], "Interval": 90_000_000_000, "Timeout": 3_000_000_000,
                  "StartPeriod": 500_000_000, "Retries": 4}
    assert instructions.healthcheck(_ins('HEALTHCHECK CMD ["a", "b"]'), sh) == {"Test": ["CMD", "a", "b"]}
    assert instructions.healthcheck(_ins("HEALTHCHECK NONE"), sh) == {"Test": ["NONE"]}
    for bad in ("HEALTHCHECK --interval=5 CMD x", "HEALTHCHECK --retries=0 CMD x", "HEALTHCHECK WAT x"):
        with pytest.raises(InvalidParameter):
            instructions.healthcheck(_ins(bad), sh)


def test_build_args() -> None:
    args = instructions.BuildArgs({"A": "given", "B": None, "HTTP_PROXY": "p", "UNUSED": "u"})
    args.declare_meta("V", "1")
    args.new_stage()
    args.declare("A", "default")
    args.declare("C", "c")
    args.declare("V", None)  # re-declared meta ARG keeps its value
    assert args.in_effect({}) == {"A": "given", "C": "c", "V": "1", "HTTP_PROXY": "p"}
    assert args.in_effect({"A": "env"}) == {"C": "c", "V": "1", "HTTP_PROXY": "p"}  # ENV wins
    assert args.unconsumed() == ["B", "UNUSED"]
    args.new_stage()
    assert args.in_effect({}) == {"HTTP_PROXY": "p"}  # ARGs are per stage


def test_options() -> None:
    o = options.parse({"buildargs": '{"A":"1","B":null}', "labels": '{"l":"v"}', "q": "1", "rm": "0",
                       "networkmode": "host", "shmsize": "1024", "cachefrom": '["x"]'},
                      ["name:tag", "other"], ["h:1.2.3.4,i:5.6.7.8"])
    assert [str(t) for t in o.tags] == ["name:tag", "other:latest"] and o.quiet and not o.rm
    assert o.build_args == {"A": "1", "B": None} and o.labels == {"l": "v"} and o.cache_from == ["x"]
    assert o.host_config["NetworkMode"] == "host" and o.host_config["ExtraHosts"] == ["h:1.2.3.4", "i:5.6.7.8"]
    assert o.host_config["ShmSize"] == 1024
    import base64
    import json

    hdr = base64.urlsafe_b64encode(json.dumps({"https://index.docker.io/v1/": {"username": "u"},
                                                "reg.local:5000": {"username": "r"}}).encode()).decode()
    o = options.parse({}, [], [], hdr)
    assert json.loads(base64.urlsafe_b64decode(o.auth_header("docker.io") or "")) == {"username": "u"}
    assert json.loads(base64.urlsafe_b64decode(o.auth_header("reg.local:5000") or "")) == {"username": "r"}
    assert o.auth_header("other.io") is None and options.parse({}, [], [], "%%%").registry_auths == {}
    for q, tags in (({"squash": "1"}, []), ({"buildargs": "{"}, []), ({"memory": "lots"}, []),
                    ({"version": "2"}, []), ({}, ["Bad:Name:x"]), ({"labels": '{"a": 1}'}, [])):
        with pytest.raises(InvalidParameter):
            options.parse(q, tags, [])


# --------------------------------------------------------------------------- cache


def test_cache_index(tmp_path: Path) -> None:
    present = {"sha256:a", "sha256:b"}
    cache = BuildCache(tmp_path / "c.json", lambda iid: iid in present)
    k1 = step_key("sha256:p", "RUN x", {"Env": ["A=1"]})
    assert k1 != step_key("sha256:p", "RUN x", {"Env": ["A=2"]}) != step_key("sha256:q", "RUN x", {})
    cache.add(k1, "sha256:a", "sha256:p", "RUN x", 10)
    cache.add("k2", "sha256:gone", "sha256:a", "RUN y", 0)
    cache.save()
    again = BuildCache(tmp_path / "c.json", lambda iid: iid in present)
    again.load()
    assert again.lookup(k1) == "sha256:a"
    assert again.lookup("k2") is None  # its image went: the entry goes too
    assert [e.key for e in again.entries()] == [k1] and again.entries()[0].usage == 2
    again.forget([k1])
    assert again.entries() == []
    (tmp_path / "c.json").write_text("{broken")
    BuildCache(tmp_path / "c.json", lambda iid: True).load()  # a damaged index is only a lost cache


# --------------------------------------------------------------------------- COPY sources


def test_copy_sources_stay_in_the_context(tmp_path: Path) -> None:
    ctx = tmp_path / "ctx"
    (ctx / "d").mkdir(parents=True)
    (ctx / "d" / "f").write_text("f")
    (ctx / "a.txt").write_text("a")
    (ctx / "b.txt").write_text("b")
    os.symlink("/etc/passwd", ctx / "abs-link")
    os.symlink("d/f", ctx / "rel-link")
    assert [s.name for s in copying.select(ctx, "*.txt", in_context=True)] == ["a.txt", "b.txt"]
    assert copying.select(ctx, "/d", in_context=True)[0].is_dir
    assert copying.select(ctx, "rel-link", in_context=True)[0].path == ctx / "d" / "f"
    with pytest.raises(copying.CopyError, match="forbidden path outside the build context"):
        copying.select(ctx, "../x", in_context=True)
    with pytest.raises(copying.CopyError, match="file not found in build context"):
        copying.select(ctx, "abs-link", in_context=True)  # /etc/passwd inside the context: not there
    with pytest.raises(copying.CopyError, match="no source files were specified"):
        copying.select(ctx, "*.none", in_context=True)


def test_copy_checksum_and_destination(tmp_path: Path) -> None:
    (tmp_path / "x").write_text("one")
    src = copying.select(tmp_path, "x", in_context=True)
    first = copying.checksum(src)
    os.utime(tmp_path / "x", (1, 1))
    assert copying.checksum(src) == first and first.startswith("file:")
    (tmp_path / "x").write_text("two")
    assert copying.checksum(src) != first
    os.chmod(tmp_path / "x", 0o600)
    assert copying.checksum(src) != first
    assert copying.destination("rel/", "/w") == "/w/rel/" and copying.destination("/abs", "/w") == "/abs"
    assert copying.destination(".", "/w") == "/w"


def test_copy_into_a_root(tmp_path: Path) -> None:
    ctx, root = tmp_path / "ctx", tmp_path / "root"
    (ctx / "dir" / "sub").mkdir(parents=True)
    (ctx / "dir" / "sub" / "f").write_text("f")
    (ctx / "g").write_text("g")
    root.mkdir()
    os.symlink("/", root / "escape")  # a symlink in the target root resolves inside it
    copying.copy_into(copying.select(ctx, "dir", in_context=True), root, "/escape/out/", (0, 0))
    assert (root / "out" / "sub" / "f").read_text() == "f"
    copying.copy_into(copying.select(ctx, "g", in_context=True), root, "/renamed", (0, 0))
    assert (root / "renamed").read_text() == "g"
    (root / "exists").mkdir()
    copying.copy_into(copying.select(ctx, "g", in_context=True), root, "/exists/new/deeper/", (7, 8))
    st_new, st_old = os.stat(root / "exists" / "new"), os.stat(root / "exists")
    assert (st_new.st_uid, st_new.st_gid) == (7, 8) and (st_old.st_uid, st_old.st_gid) == (0, 0)
    assert os.stat(root / "exists" / "new" / "deeper" / "g").st_uid == 7
    with pytest.raises(copying.CopyError, match="must be a directory and end with a /"):
        copying.copy_into(copying.select(ctx, "*", in_context=True), root, "/nodir", (0, 0))
    assert copying.lookup_owner(None, "5:6") == (5, 6) and copying.lookup_owner(None, "7") == (7, 7)
    (root / "etc").mkdir()
    (root / "etc" / "passwd").write_text("app:x:100:101::/:/bin/sh\n")
    (root / "etc" / "group").write_text("grp:x:102:\n")
    assert copying.lookup_owner(root, "app") == (100, 101) and copying.lookup_owner(root, "app:grp") == (100, 102)
    with pytest.raises(copying.CopyError, match="no such user"):
        copying.lookup_owner(root, "nobody-here")


# --------------------------------------------------------------------------- kept contexts


def test_context_store_keeps_evicts_and_never_takes_one_in_use(tmp_path: Path) -> None:
    from daemon.build.contexts import ContextStore

    store = ContextStore(tmp_path / "kept", keep=2, max_bytes=100)
    store.reset()

    def tree(name: str) -> Path:
        p = tmp_path / name
        p.mkdir()
        return p

    a, gone = store.add("a", tree("a"), "FROM a", 10)
    assert gone == [] and a.root.parent == tmp_path / "kept" and store.acquire("a") is a
    store.release(a)
    store.release(a)
    b, _ = store.add("b", tree("b"), "FROM b", 10)
    c, gone = store.add("c", tree("c"), "FROM c", 10)
    assert gone == [a.root] and store.acquire("a") is None  # the least recently used idle one goes
    d, gone = store.add("d", tree("d"), "FROM d", 10)
    assert gone == [] and store.acquire("b") is b  # b and c are in use: kept beyond the count
    big, gone = store.add("big", tree("big"), "FROM big", 1000)
    assert not big.kept and store.acquire("big") is None and store.release(big) == [tmp_path / "big"]
    dup, gone = store.add("d", tree("d2"), "FROM d", 10)
    assert dup is d and gone == [tmp_path / "d2"]  # a concurrent unpack of the same context
