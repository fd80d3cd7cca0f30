"""Map TOML key paths to line:column positions.

The validator reports errors as ``FILE:LINE:COL: toml.path: message``, but ``tomllib`` only
returns plain dicts with no positions. This module is a small scanner that walks the same text
a second time and records where every key, table header and array element starts.

It is deliberately not a TOML parser: it is only ever called on text that ``tomllib`` has
already accepted, so it checks nothing and decodes only what it needs (key names). What it must
get right is *skipping* things that look like structure but are not: strings (basic, literal
and both multi-line forms, with escapes) and comments may contain ``=``, ``[x]``, ``#`` or
quotes. If it meets anything it does not understand it stops and returns what it has: a
position is a convenience for the error message and must never turn into a second error.

Positions are 1-based; columns count characters (not bytes) and a tab counts as one.
"""

from __future__ import annotations

import contextlib
import json
import re
from bisect import bisect_right
from collections.abc import Mapping
from dataclasses import dataclass

Key = str | int
KeyPath = tuple[Key, ...]

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_ESCAPES = {"b": "\b", "t": "\t", "n": "\n", "f": "\f", "r": "\r", '"': '"', "\\": "\\"}
_HEX_ESCAPE_LEN = {"u": 4, "U": 8, "x": 2}
_SCALAR_END = frozenset(",]}#\r\n")


@dataclass(frozen=True, slots=True)
class Position:
    """Where a key or element starts in the source text."""

    line: int  # 1-based
    col: int  # 1-based


def locate(text: str) -> dict[KeyPath, Position]:
    """Return the position of every key path in ``text`` (a document tomllib accepted).

    Keys map to their key token (each segment of a dotted key or header to its own segment),
    ``[[aot]]`` entries map ``("aot", i)`` to the i-th header, array elements map ``(..., i)``
    to the element's first character. The first definition of a path wins. Never raises.
    """
    scanner = _Scanner(text)
    with contextlib.suppress(Exception):  # best effort by contract: keep what was found
        scanner.document()
    return scanner.found


def format_path(path: KeyPath) -> str:
    """Render a key path the way a user would write it: ``namespaces."/chat".events[0]``."""
    if not path:
        return "<root>"
    parts: list[str] = []
    for key in path:
        if isinstance(key, int):
            parts.append(f"[{key}]")
            continue
        name = key if _BARE_KEY.fullmatch(key) else json.dumps(key, ensure_ascii=False)
        parts.append(f".{name}" if parts else name)
    return "".join(parts)


def nearest(
    positions: Mapping[KeyPath, Position], path: KeyPath
) -> tuple[KeyPath, Position] | None:
    """Position of `path` or of its longest ancestor that has one.

    Schema errors often name a key that is *missing* (its parent table is the best place to
    point at) or a default-filled value that has no text at all.
    """
    for end in range(len(path), -1, -1):
        prefix = path[:end]
        found = positions.get(prefix)
        if found is not None:
            return prefix, found
    return None


class _Stop(Exception):
    """End of input, or something the scanner does not understand: stop scanning."""


class _Scanner:
    """A cursor over the text plus the positions found so far.

    Each method starts at the first character of its construct and leaves the cursor just
    past it. Table headers are resolved like tomllib does: a segment naming an array of
    tables refers to its latest element, so ``[fruit.info]`` after the second ``[[fruit]]``
    is ``("fruit", 1, "info")``.
    """

    def __init__(self, text: str) -> None:
        self.text = text
        self.i = 0
        self.found: dict[KeyPath, Position] = {}
        self.aot_last: dict[KeyPath, int] = {}  # array-of-tables path -> index of last entry
        self.line_starts = [0, *(m.end() for m in re.finditer("\n", text))]

    # -- cursor helpers ------------------------------------------------------------------

    def peek(self, ahead: int = 0) -> str:
        j = self.i + ahead
        return self.text[j] if j < len(self.text) else ""

    def expect(self, char: str) -> None:
        if self.peek() != char:
            raise _Stop
        self.i += 1

    def mark(self, path: KeyPath, index: int) -> None:
        """Record ``path`` at text index ``index`` unless an earlier definition exists."""
        if path not in self.found:
            line = bisect_right(self.line_starts, index)
            self.found[path] = Position(line, index - self.line_starts[line - 1] + 1)

    def skip_blanks(self) -> None:
        """Skip spaces and tabs (never newlines)."""
        while self.peek() in (" ", "\t"):
            self.i += 1

    def skip_trivia(self) -> None:
        """Skip whitespace, newlines (LF or CRLF) and comments."""
        while True:
            char = self.peek()
            if char in (" ", "\t", "\r", "\n"):
                self.i += 1
            elif char == "#":
                end = self.text.find("\n", self.i)
                self.i = len(self.text) if end < 0 else end
            else:
                return

    # -- document structure ----------------------------------------------------------------

    def document(self) -> None:
        table: KeyPath = ()
        while True:
            self.skip_trivia()
            if not self.peek():
                return
            if self.peek() == "[":
                table = self.header()
            else:
                self.keyval(table)

    def header(self) -> KeyPath:
        """``[a.b]`` or ``[[a.b]]``: record each segment, return the table's resolved path."""
        aot = self.peek(1) == "["
        self.i += 2 if aot else 1
        segments = self.key()
        path: KeyPath = ()
        for n, (name, start) in enumerate(segments, 1):
            path = (*path, name)
            self.mark(path, start)
            if aot and n == len(segments):
                index = self.aot_last.get(path, -1) + 1
                self.aot_last[path] = index
                path = (*path, index)
                self.mark(path, start)
            elif path in self.aot_last:
                path = (*path, self.aot_last[path])
        self.skip_blanks()
        self.expect("]")
        if aot:
            self.expect("]")
        return path

    def keyval(self, table: KeyPath) -> None:
        """``a . "b" = value``: every prefix of the dotted key gets its own segment."""
        path = table
        for name, start in self.key():
            path = (*path, name)
            self.mark(path, start)
        self.skip_blanks()
        self.expect("=")
        self.skip_blanks()
        self.value(path)

    def key(self) -> list[tuple[str, int]]:
        """A possibly dotted key, as (decoded segment, start index) pairs."""
        segments: list[tuple[str, int]] = []
        while True:
            self.skip_blanks()
            start = self.i
            if self.peek() in ('"', "'"):
                name = self.string()
            else:
                match = _BARE_KEY.match(self.text, self.i)
                if match is None:
                    raise _Stop
                name = match.group()
                self.i = match.end()
            segments.append((name, start))
            self.skip_blanks()
            if self.peek() != ".":
                return segments
            self.i += 1

    # -- values ----------------------------------------------------------------------------

    def value(self, path: KeyPath) -> None:
        char = self.peek()
        if char in ('"', "'"):
            self.string()
        elif char == "[":
            self.array(path)
        elif char == "{":
            self.inline_table(path)
        elif char and char not in _SCALAR_END:
            # Numbers, booleans, dates. A date-time may contain a space, so scan to a delimiter.
            while self.peek() and self.peek() not in _SCALAR_END:
                self.i += 1
        else:
            raise _Stop

    def array(self, path: KeyPath) -> None:
        self.i += 1
        index = 0
        while True:
            self.skip_trivia()
            if self.peek() == "]":
                self.i += 1
                return
            self.mark((*path, index), self.i)
            self.value((*path, index))
            index += 1
            self.skip_trivia()
            if self.peek() == ",":
                self.i += 1
            elif self.peek() != "]":
                raise _Stop

    def inline_table(self, path: KeyPath) -> None:
        self.i += 1
        while True:
            self.skip_trivia()
            if self.peek() == "}":
                self.i += 1
                return
            self.keyval(path)
            self.skip_trivia()
            if self.peek() == ",":
                self.i += 1
            elif self.peek() != "}":
                raise _Stop

    def string(self) -> str:
        """Skip any string form; return its value for single-line ones (keys need it)."""
        quote = self.peek()
        if self.text.startswith(quote * 3, self.i):
            self.i += 3
            self.multiline_string(quote)
            return ""
        self.i += 1
        chars: list[str] = []
        while True:
            char = self.peek()
            if not char or char == "\n":
                raise _Stop
            self.i += 1
            if char == quote:
                return "".join(chars)
            if char == "\\" and quote == '"':
                chars.append(self.escape())
            else:
                chars.append(char)

    def escape(self) -> str:
        """Decode the escape whose backslash was just consumed."""
        char = self.peek()
        self.i += 1
        if char in _ESCAPES:
            return _ESCAPES[char]
        if char == "e":
            return "\x1b"
        width = _HEX_ESCAPE_LEN.get(char)
        if width is None:
            raise _Stop
        digits = self.text[self.i : self.i + width]
        self.i += width
        return chr(int(digits, 16))

    def multiline_string(self, quote: str) -> None:
        """Skip to the closing triple quote; up to two extra quotes belong to the content."""
        while True:
            char = self.peek()
            if not char:
                raise _Stop
            if char == "\\" and quote == '"':
                self.i += 2  # an escape or a line-ending backslash: never a delimiter
            elif self.text.startswith(quote * 3, self.i):
                self.i += 3
                for _ in range(2):
                    if self.peek() == quote:
                        self.i += 1
                return
            else:
                self.i += 1
