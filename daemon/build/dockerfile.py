"""The Dockerfile, parsed by BuildKit's own Go parser (PyPI `dockerfile`), into instructions
grouped by stage, with the checks the classic builder makes before it runs anything."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from daemon.errors import InvalidParameter

if TYPE_CHECKING:
    import dockerfile as _parser

INSTRUCTIONS = {"add", "arg", "cmd", "copy", "entrypoint", "env", "expose", "from", "healthcheck", "label",
                "maintainer", "onbuild", "run", "shell", "stopsignal", "user", "volume", "workdir"}
# The flags each instruction accepts in the classic builder (dockerd 20.10's BFlags).
_FLAGS = {"add": {"chown", "chmod"}, "copy": {"chown", "chmod", "from"}, "from": {"platform"},
          "healthcheck": {"interval", "timeout", "start-period", "start-interval", "retries"}}
_ESCAPE_RE = re.compile(r"^#\s*escape\s*=\s*(\S+)\s*$", re.IGNORECASE)
_DIRECTIVE_RE = re.compile(r"^#\s*([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$")


@dataclass(frozen=True)
class Instruction:
    name: str  # lower case: "run"
    args: tuple[str, ...]  # raw words as the parser split them (not yet expanded)
    flags: dict[str, str]
    json: bool  # exec (JSON array) form
    original: str  # the line as written, continuations joined: what "Step N/M :" shows
    line: int
    sub: Instruction | None = None  # ONBUILD's trigger


@dataclass
class Stage:
    index: int
    base: str  # FROM's image (unexpanded)
    name: str  # "AS name", lower case, or ""
    platform: str
    from_: Instruction
    steps: list[Instruction] = field(default_factory=list)


@dataclass
class Dockerfile:
    escape: str
    meta_args: list[Instruction]  # ARGs before the first FROM
    stages: list[Stage]

    def stage_index(self, name: str) -> int | None:
        for st in self.stages:
            if st.name and st.name == name.lower():
                return st.index
        if name.isdigit() and int(name) < len(self.stages):
            return int(name)
        return None


def escape_of(text: str) -> str:
    """The `# escape=` parser directive (before any instruction or other comment)."""
    for line in text.splitlines():
        m = _DIRECTIVE_RE.match(line)
        if not m:
            break
        e = _ESCAPE_RE.match(line)
        if e:
            if e.group(1) not in ("\\", "`"):
                raise InvalidParameter(f"invalid ESCAPE '{e.group(1)}'. Must be ` or \\")
            return e.group(1)
    return "\\"


def _instruction(cmd: _parser.Command) -> Instruction:
    name = cmd.cmd.lower()
    line = cmd.start_line
    if name not in INSTRUCTIONS:
        raise InvalidParameter(f"Dockerfile parse error line {line}: unknown instruction: {cmd.cmd.upper()}")
    if cmd.heredocs:
        raise InvalidParameter(f"Dockerfile parse error line {line}: heredocs are not supported by the legacy "
                               "builder: enable BuildKit to use them")
    flags: dict[str, str] = {}
    for raw in cmd.flags:
        key, sep, value = raw[2:].partition("=")
        if key not in _FLAGS.get(name, set()):
            raise InvalidParameter(f"Dockerfile parse error line {line}: unknown flag: {key}")
        flags[key] = value if sep else "true"
    sub = None
    if name == "onbuild":
        if not cmd.sub_cmd:
            raise InvalidParameter(f"Dockerfile parse error line {line}: ONBUILD requires at least one argument")
        trigger = cmd.sub_cmd.lower()
        if trigger in ("onbuild", "from", "maintainer"):
            raise InvalidParameter(f"Dockerfile parse error line {line}: {trigger.upper()} isn't allowed as an "
                                   "ONBUILD trigger")
        text = cmd.original.split(None, 1)[1] if " " in cmd.original.strip() else ""
        import dockerfile as _parser

        sub = _instruction(_parser.Command(cmd.sub_cmd, None, cmd.json, text, line, line, (), cmd.value, ()))
    args = tuple(cmd.value)
    if name not in ("onbuild",) and (not args or args == ("",)) and name not in ("cmd", "entrypoint", "run"):
        raise InvalidParameter(f"Dockerfile parse error line {line}: {name.upper()} requires at least one argument")
    return Instruction(name, args, flags, bool(cmd.json), cmd.original, line, sub)


def parse_instructions(text: str) -> list[Instruction]:
    """Instructions of a Dockerfile text or an ONBUILD trigger list; parse errors as 400s."""
    # Imported on the first build: the parser is a Go library whose runtime (heap, threads)
    # starts when it is loaded, ~3 MiB a daemon that never builds need not carry.
    import dockerfile as _parser

    try:
        cmds = _parser.parse_string(text)
    except _parser.GoParseError as e:
        raise InvalidParameter(f"Dockerfile parse error: {e}") from None
    return [_instruction(c) for c in cmds]


def parse(text: str) -> Dockerfile:
    escape = escape_of(text)
    meta: list[Instruction] = []
    stages: list[Stage] = []
    for ins in parse_instructions(text):
        if ins.name == "from":
            words = list(ins.args)
            name = ""
            if len(words) == 3 and words[1].lower() == "as":
                name = words[2].lower()
                if not re.fullmatch(r"[a-z][a-z0-9\-_.]*", name):
                    raise InvalidParameter(f"invalid name for build stage: {words[2]!r}, name can't start with a "
                                           "number or contain symbols")
            elif len(words) != 1:
                raise InvalidParameter("FROM requires either one or three arguments")
            stages.append(Stage(len(stages), words[0], name, ins.flags.get("platform", ""), ins))
        elif not stages:
            if ins.name != "arg":
                raise InvalidParameter(f"Dockerfile parse error line {ins.line}: no build stage in current context")
            meta.append(ins)
        else:
            stages[-1].steps.append(ins)
    if not stages:
        raise InvalidParameter("the Dockerfile (Dockerfile) cannot be empty" if not meta else
                               "No image was generated. Is your Dockerfile empty?")
    return Dockerfile(escape, meta, stages)
