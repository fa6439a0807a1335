"""The Dockerfile, parsed by BuildKit's own Go parser (PyPI `dockerfile`), into instructions
grouped by stage, with the checks the classic builder makes before it runs anything."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from daemon.errors import DaemonError, InvalidParameter

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


class Command(NamedTuple):
    """One parsed instruction, the fields of the library's `dockerfile.Command`."""
    cmd: str
    sub_cmd: str | None
    json: bool
    original: str
    start_line: int
    end_line: int
    flags: tuple[str, ...]
    value: tuple[str, ...]
    heredocs: tuple[tuple, ...]


_HELPER = Path(__file__).with_name("parsehelper.py")


def _parse_go(text: str) -> list[Command]:
    """The Go parser's commands for `text`, parsed in a process of its own (parsehelper.py says
    why); blocks for ~20 ms: called off the event loop."""
    spec = importlib.util.find_spec("dockerfile")
    if spec is None or not spec.origin:
        raise DaemonError("the Dockerfile parser (Python package dockerfile) is not installed")
    # One Go thread is plenty for one parse, and starts faster than one per core.
    env = {**os.environ, "GOMAXPROCS": "1"}
    proc = subprocess.run([sys.executable, "-S", "-I", str(_HELPER), os.path.dirname(spec.origin)],
                          input=json.dumps([text]).encode(), capture_output=True, env=env, check=False)
    if proc.returncode != 0:
        raise DaemonError(f"the Dockerfile parser failed (exit status {proc.returncode}): "
                          f"{proc.stderr.decode(errors='replace').strip()[-500:]}")
    (result,) = json.loads(proc.stdout)
    if "error" in result:
        raise InvalidParameter(f"Dockerfile parse error: {result['error']}")
    return [Command(c, sub, js, orig, start, end, tuple(flags), tuple(value), tuple(tuple(h) for h in heredocs))
            for c, sub, js, orig, start, end, flags, value, heredocs in result["commands"]]


def _instruction(cmd: Command) -> Instruction:
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
        sub = _instruction(Command(cmd.sub_cmd, None, cmd.json, text, line, line, (), cmd.value, ()))
    args = tuple(cmd.value)
    if name not in ("onbuild",) and (not args or args == ("",)) and name not in ("cmd", "entrypoint", "run"):
        raise InvalidParameter(f"Dockerfile parse error line {line}: {name.upper()} requires at least one argument")
    return Instruction(name, args, flags, bool(cmd.json), cmd.original, line, sub)


def parse_instructions(text: str) -> list[Instruction]:
    """Instructions of a Dockerfile text or an ONBUILD trigger list; parse errors as 400s.
    Blocks (a process runs the parser): off the event loop."""
    return [_instruction(c) for c in _parse_go(text)]


def parse(text: str) -> Dockerfile:
    """Blocks (a process runs the parser): off the event loop."""
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
