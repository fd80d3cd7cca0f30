"""Properties of engine.profile.locate over generated TOML documents.

The invariant: for every path to a dict key or list element in ``tomllib.loads(text)``,
``locate(text)`` has that path, and the text at a key's position is that key (bare or quoted;
the quoted token is decoded by tomllib, not by the code under test). Documents come from
``tomli_w.dumps`` and from a small hand-written emitter that also uses dotted keys, inline
tables, odd whitespace, comments, all four string forms and CRLF line endings.
"""

from __future__ import annotations

import datetime as dt
import re
import tomllib
from collections.abc import Iterator
from typing import Any

import tomli_w
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.profile.locate import KeyPath, locate

BARE = re.compile(r"[A-Za-z0-9_-]+")
TRICKY = "ab_-.=\"'#[]{}, \t\n\\é日😀"

keys = st.one_of(st.text(alphabet=TRICKY, max_size=6), st.text(max_size=4))
texts = st.one_of(st.text(alphabet=TRICKY, max_size=20), st.text(max_size=8))


def documents(scalars: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    """Nested dicts of ``scalars``, lists, dicts and (non-empty) lists of dicts."""
    values = st.recursive(
        scalars,
        lambda children: st.one_of(
            st.lists(children, max_size=4),
            st.dictionaries(keys, children, max_size=4),
            st.lists(st.dictionaries(keys, children, max_size=3), min_size=1, max_size=3),
        ),
        max_leaves=16,
    )
    return st.dictionaries(keys, values, max_size=5)


# -- the invariant -----------------------------------------------------------------------


def walk(value: Any, prefix: KeyPath = ()) -> Iterator[tuple[KeyPath, Any]]:
    """Every (path, value) below `value`: dict keys and list elements."""
    if isinstance(value, dict | list):
        items: Any = value.items() if isinstance(value, dict) else enumerate(value)
        for key, child in items:
            yield (*prefix, key), child
            yield from walk(child, (*prefix, key))


def key_token(rest: str) -> str | None:
    """Decode the key written at the start of `rest` (bare, "basic" or 'literal')."""
    if rest[:1] in ('"', "'"):
        quote, j = rest[0], 1
        while j < len(rest) and rest[j] != quote:
            j += 2 if quote == '"' and rest[j] == "\\" else 1
        loaded = tomllib.loads(rest[: j + 1] + " = 0")
        return next(iter(loaded))
    match = BARE.match(rest)
    return match.group() if match else None


def starts_element(rest: str, value: Any) -> bool:
    """Does `rest` start with an inline value of the same kind as `value`?"""
    if isinstance(value, bool):
        return rest.startswith(str(value).lower())
    if isinstance(value, dict):
        return rest.startswith("{")
    if isinstance(value, list):
        return rest.startswith("[")
    if isinstance(value, str):
        return rest[:1] in ('"', "'")
    if isinstance(value, int | float):
        return rest[:1] in set("+-0123456789in")
    return rest[:1].isdigit()  # dates and times


def check(text: str) -> None:
    data = tomllib.loads(text)
    found = locate(text)
    lines = text.split("\n")
    for path, value in walk(data):
        assert path in found, (path, text)
        position = found[path]
        rest = lines[position.line - 1][position.col - 1 :]
        last = path[-1]
        if isinstance(last, str):
            assert key_token(rest) == last, (path, position, text)
        else:
            # Either an inline element, or a [[header]] naming the array's key.
            is_header = isinstance(value, dict) and key_token(rest) == path[-2]
            assert is_header or starts_element(rest, value), (path, position, text)


# -- documents written by tomli_w -----------------------------------------------------------

w_scalars = st.one_of(
    texts,
    st.integers(),
    st.floats(),
    st.booleans(),
    st.datetimes(),
    st.dates(),
    st.times(),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(doc=documents(w_scalars), multiline_strings=st.booleans(), indent=st.integers(0, 4))
def test_tomli_w_documents(doc: dict[str, Any], multiline_strings: bool, indent: int) -> None:
    check(tomli_w.dumps(doc, multiline_strings=multiline_strings, indent=indent))


# -- documents written by hand, in every style TOML allows ----------------------------------

CONTROL = {"\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}
COMMENTS = ["", "", " # a = [b]", '\t# "x" = 1 [[y]] {z}', " #", " # '''"]


def basic(s: str, multiline: bool = False) -> str:
    """A basic string body. Multi-line bodies keep quotes raw unless they would close it."""
    out: list[str] = []
    raw_quotes = 0
    for c in s:
        raw_quotes = raw_quotes + 1 if c == '"' else 0
        if c == '"' and multiline and raw_quotes < 3:
            out.append(c)
            continue
        raw_quotes = 0
        if c in '\\"':
            out.append("\\" + c)
        elif c == "\n" and multiline:
            out.append(c)
        elif c in CONTROL:
            out.append(CONTROL[c])
        elif ord(c) < 0x20 or ord(c) == 0x7F:
            out.append(f"\\u{ord(c):04x}")
        else:
            out.append(c)
    return "".join(out)


def literal_ok(s: str, multiline: bool = False) -> bool:
    """Can `s` be written as a literal string? (Multi-line ones may hold `'` and `''`.)"""
    allowed = {"\t", "\n"} if multiline else {"\t"}
    quotes_ok = "'''" not in s if multiline else "'" not in s
    return quotes_ok and all(c in allowed or (ord(c) >= 0x20 and c != "\x7f") for c in s)


class Emitter:
    """Writes a dict as TOML, drawing every stylistic choice from hypothesis."""

    def __init__(self, data: st.DataObject) -> None:
        self.data = data
        self.lines: list[str] = []

    def pick(self, options: list[str]) -> str:
        return self.data.draw(st.sampled_from(options))

    def flip(self) -> bool:
        return self.data.draw(st.booleans())

    def ws(self) -> str:
        return self.pick(["", " ", "\t", "  "])

    def line(self, text: str) -> None:
        self.lines.append(text + self.pick(COMMENTS))
        self.lines.extend([self.pick(["", "# [c] d = e", "  # 'x'"])] if self.flip() else [])

    def key(self, key: str) -> str:
        options = [f'"{basic(key)}"']
        options += [key] if BARE.fullmatch(key) else []
        options += [f"'{key}'"] if literal_ok(key) else []
        return self.pick(options)

    def dotted(self, path: list[str]) -> str:
        return (self.ws() + "." + self.ws()).join(self.key(k) for k in path)

    def scalar(self, value: Any) -> str:
        if isinstance(value, bool):
            return str(value).lower()
        if isinstance(value, int):
            options = [str(value), f"{value:_}", f"+{value}" if value >= 0 else str(value)]
            return self.pick(options + ([hex(value)] if value >= 0 else []))
        if isinstance(value, float):
            return repr(value)
        if isinstance(value, dt.datetime):
            return value.isoformat(sep=self.pick(["T", " "]))
        if isinstance(value, dt.date):
            return value.isoformat()
        options = [f'"{basic(value)}"', f'"""\n{basic(value, multiline=True)}"""']
        options += [f"'{value}'"] if literal_ok(value) else []
        options += [f"'''\n{value}'''"] if literal_ok(value, multiline=True) else []
        return self.pick(options)

    def pair(self, key: str, value: Any) -> str:
        return f"{key}{self.ws()}={self.ws()}{self.inline(value)}"

    def inline(self, value: Any) -> str:
        if isinstance(value, dict):
            pairs = [
                f"{self.key(k)}{self.ws()}={self.ws()}{self.inline(v)}" for k, v in value.items()
            ]
            return "{" + self.ws() + ("," + self.ws()).join(pairs) + self.ws() + "}"
        if isinstance(value, list):
            if self.flip():
                parts = ("," + self.ws()).join(self.inline(v) for v in value)
                return "[" + self.ws() + parts + self.ws() + "]"
            body = "".join(f"  {self.inline(v)},{self.pick(COMMENTS)}\n" for v in value)
            return "[" + self.pick(COMMENTS) + "\n" + body + "]"
        return self.scalar(value)

    def table(self, path: list[str], table: dict[str, Any], aot: bool = False) -> None:
        if path:
            open_, close = ("[[", "]]") if aot else ("[", "]")
            self.line(open_ + self.ws() + self.dotted(path) + self.ws() + close)
        deferred: list[tuple[str, Any, bool]] = []
        for key, value in table.items():
            is_aot = (
                isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)
            )
            style = "inline"
            if isinstance(value, dict) and value:
                style = self.pick(["table", "dotted", "inline"])
            elif is_aot:
                style = self.pick(["aot", "inline"])
            if style in ("table", "aot"):
                deferred.append((key, value, style == "aot"))
            elif style == "dotted":
                self.dotted_pairs([key], value)
            else:
                self.line(self.pair(self.key(key), value))
        for key, value, is_aot in deferred:
            for item in value if is_aot else [value]:
                self.table([*path, key], item, aot=is_aot)

    def dotted_pairs(self, prefix: list[str], table: dict[str, Any]) -> None:
        for key, value in table.items():
            if isinstance(value, dict) and value and self.flip():
                self.dotted_pairs([*prefix, key], value)
            else:
                self.line(
                    f"{self.dotted([*prefix, key])}{self.ws()}={self.ws()}{self.inline(value)}"
                )


hand_scalars = st.one_of(
    texts,
    st.integers(),
    st.floats(allow_nan=False),
    st.booleans(),
    st.datetimes(),
    st.dates(),
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(doc=documents(hand_scalars), crlf=st.booleans(), data=st.data())
def test_hand_written_documents(doc: dict[str, Any], crlf: bool, data: st.DataObject) -> None:
    emitter = Emitter(data)
    emitter.table([], doc)
    text = "\n".join(emitter.lines) + "\n"
    if crlf:
        text = text.replace("\n", "\r\n")
    assert tomllib.loads(text) == doc, text  # the emitter itself is right
    check(text)
