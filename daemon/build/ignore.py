"""`.dockerignore` with Docker's pattern rules (moby's patternmatcher): patterns are cleaned
paths relative to the context root, `*` and `?` stay within one path component, `**` spans
any number of them, `!` re-includes, the last matching pattern decides, and a pattern that
matches a directory matches everything below it."""

from __future__ import annotations

import os
import posixpath
import re
import shutil
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Pattern:
    text: str
    exclusion: bool
    regex: re.Pattern[str]


def read_patterns(content: str) -> list[str]:
    """The lines of a .dockerignore: comments and blank lines dropped, paths cleaned."""
    out = []
    for raw in content.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        invert = line.startswith("!")
        if invert:
            line = line[1:].strip()
        if line:
            line = posixpath.normpath(line)
            line = line.lstrip("/") or "."
            if line == ".":
                line = "."
        out.append(("!" if invert else "") + line)
    return out


def _regex(pattern: str) -> re.Pattern[str]:
    out = ["^"]
    i = 0
    n = len(pattern)
    while i < n:
        ch = pattern[i]
        if ch == "*":
            if i + 1 < n and pattern[i + 1] == "*":
                i += 1
                # "**/" at a component boundary also matches no directory at all
                if i + 1 < n and pattern[i + 1] == "/":
                    i += 1
                    out.append("(.*/)?")
                else:
                    out.append(".*")
            else:
                out.append("[^/]*")
        elif ch == "?":
            out.append("[^/]")
        elif ch == "[":
            j = pattern.find("]", i + 1)
            if j < 0:
                out.append(re.escape(ch))
            else:
                body = pattern[i + 1:j]
                if body.startswith("^") or body.startswith("!"):
                    body = "^" + body[1:]
                out.append("[" + body.replace("\\", "\\\\") + "]")
                i = j
        elif ch == "\\" and i + 1 < n:
            i += 1
            out.append(re.escape(pattern[i]))
        else:
            out.append(re.escape(ch))
        i += 1
    out.append("$")
    return re.compile("".join(out))


class Matcher:
    def __init__(self, patterns: list[str]) -> None:
        self.patterns: list[Pattern] = []
        for p in patterns:
            exclusion = p.startswith("!")
            text = p[1:] if exclusion else p
            if not text:
                continue
            self.patterns.append(Pattern(text, exclusion, _regex(text)))

    @property
    def has_exclusions(self) -> bool:
        return any(p.exclusion for p in self.patterns)

    def excluded(self, path: str) -> bool:
        """Is the context path (relative, '/'-separated) ignored?"""
        path = posixpath.normpath(path).lstrip("/")
        parts = path.split("/")
        matched = False
        for p in self.patterns:
            if p.exclusion != matched:
                continue  # cannot change the answer
            hit = bool(p.regex.match(path))
            if not hit:
                for k in range(1, len(parts)):
                    if p.regex.match("/".join(parts[:k])):
                        hit = True
                        break
            if hit:
                matched = not p.exclusion
        return matched


def apply(root: Path, matcher: Matcher, keep: set[str]) -> None:
    """Removes what the patterns exclude from the extracted context at `root`; the paths in
    `keep` (the Dockerfile, while it is still to be read) stay."""
    if not matcher.patterns:
        return
    root_s = os.fspath(root)
    for dirpath, dirnames, filenames in os.walk(root_s):
        rel_dir = os.path.relpath(dirpath, root_s)
        rel_dir = "" if rel_dir == "." else rel_dir
        for name in list(dirnames):
            rel = f"{rel_dir}/{name}" if rel_dir else name
            full = os.path.join(dirpath, name)
            if os.path.islink(full):  # listed with the directories, removed as a file
                dirnames.remove(name)
                if rel not in keep and matcher.excluded(rel):
                    os.unlink(full)
            elif matcher.excluded(rel) and not matcher.has_exclusions \
                    and not any(k.startswith(rel + "/") for k in keep):
                shutil.rmtree(full)
                dirnames.remove(name)
        for name in filenames:
            rel = f"{rel_dir}/{name}" if rel_dir else name
            if rel not in keep and matcher.excluded(rel):
                os.unlink(os.path.join(dirpath, name))
    # With "!" patterns a directory is kept while something below it is re-included; one that
    # is excluded and ended up empty goes.
    if matcher.has_exclusions:
        for dirpath, _dirnames, _files in os.walk(root_s, topdown=False):
            rel = os.path.relpath(dirpath, root_s)
            if rel != "." and matcher.excluded(rel) and not os.listdir(dirpath) \
                    and not any(k.startswith(rel + "/") for k in keep):
                os.rmdir(dirpath)
