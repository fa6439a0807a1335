"""Dockerfile word processing as the classic builder does it (moby's shell/lex.go): quote
removal, escapes, and `$VAR` / `${VAR}` / `${VAR:-word}` / `${VAR:+word}` (and the forms
without ':') expanded from the build's environment. RUN's shell form is left to the shell."""

from __future__ import annotations

from collections.abc import Mapping

from daemon.errors import InvalidParameter


class _Scanner:
    def __init__(self, text: str, escape: str) -> None:
        self.text = text
        self.pos = 0
        self.escape = escape

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def next(self) -> str:
        ch = self.peek()
        if ch:
            self.pos += 1
        return ch


def process_word(word: str, env: Mapping[str, str], escape: str = "\\") -> str:
    """One word, quotes removed and variables expanded (ENV values, COPY sources, WORKDIR...)."""
    words = _process(word, env, escape, split=False)
    return words[0] if words else ""


def process_words(text: str, env: Mapping[str, str], escape: str = "\\") -> list[str]:
    """A line split into words on unquoted blanks, each processed (dockerd's ProcessWords)."""
    return _process(text, env, escape, split=True)


def _process(text: str, env: Mapping[str, str], escape: str, *, split: bool) -> list[str]:
    sc = _Scanner(text, escape)
    words: list[str] = []
    cur: list[str] = []
    in_word = False
    while sc.peek():
        ch = sc.peek()
        if split and ch in " \t\n" :
            sc.next()
            if in_word:
                words.append("".join(cur))
                cur, in_word = [], False
            continue
        in_word = True
        if ch == "'":
            sc.next()
            cur.append(_single_quoted(sc))
        elif ch == '"':
            sc.next()
            cur.append(_double_quoted(sc, env))
        elif ch == "$":
            cur.append(_dollar(sc, env))
        elif ch == escape:
            sc.next()
            nxt = sc.next()
            cur.append(nxt if nxt else escape)
        else:
            cur.append(sc.next())
    if in_word or not split:
        words.append("".join(cur))
    return words


def _single_quoted(sc: _Scanner) -> str:
    out = []
    while True:
        ch = sc.next()
        if not ch:
            raise InvalidParameter("unexpected end of statement while looking for matching single-quote")
        if ch == "'":
            return "".join(out)
        out.append(ch)


def _double_quoted(sc: _Scanner, env: Mapping[str, str]) -> str:
    out = []
    while True:
        ch = sc.peek()
        if not ch:
            raise InvalidParameter("unexpected end of statement while looking for matching double-quote")
        if ch == '"':
            sc.next()
            return "".join(out)
        if ch == "$":
            out.append(_dollar(sc, env))
            continue
        sc.next()
        if ch == sc.escape and sc.peek() in ('"', "$", sc.escape):
            out.append(sc.next())
        else:
            out.append(ch)


def _name(sc: _Scanner) -> str:
    out = []
    while (ch := sc.peek()) and (ch.isalnum() or ch == "_"):
        out.append(sc.next())
    return "".join(out)


def _dollar(sc: _Scanner, env: Mapping[str, str]) -> str:
    sc.next()  # the '$'
    ch = sc.peek()
    if ch != "{":
        name = _name(sc)
        if not name:
            return "$"
        return env.get(name, "")
    sc.next()
    name = _name(sc)
    if not name:
        raise InvalidParameter("missing ':' in substitution" if sc.peek() else "bad substitution")
    ch = sc.next()
    if ch == "}":
        return env.get(name, "")
    colon = ch == ":"
    if colon:
        ch = sc.next()
    if ch not in ("-", "+", "?"):
        raise InvalidParameter(f"unsupported modifier ({ch}) in substitution")
    word = _until_brace(sc, env)
    value = env.get(name)
    unset = value is None or (colon and value == "")
    if ch == "-":
        return word if unset else value or ""
    if ch == "+":
        return "" if unset else word
    if unset:
        raise InvalidParameter(f"{name}: {word or 'is not allowed to be unset'}")
    return value or ""


def _until_brace(sc: _Scanner, env: Mapping[str, str]) -> str:
    out = []
    while True:
        ch = sc.peek()
        if not ch:
            raise InvalidParameter("syntax error: missing '}'")
        if ch == "}":
            sc.next()
            return "".join(out)
        if ch == "$":
            out.append(_dollar(sc, env))
        elif ch == "'":
            sc.next()
            out.append(_single_quoted(sc))
        elif ch == '"':
            sc.next()
            out.append(_double_quoted(sc, env))
        elif ch == sc.escape:
            sc.next()
            out.append(sc.next())
        else:
            out.append(sc.next())
