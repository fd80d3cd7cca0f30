"""Concrete examples for engine.profile.locate: one test per TOML construct."""

from __future__ import annotations

import tomllib

import pytest

from engine.profile.locate import KeyPath, Position, format_path, locate, nearest


def at(text: str, *path: str | int) -> tuple[int, int]:
    """Position of `path` as (line, col), after checking tomllib accepts the text."""
    tomllib.loads(text)
    found = locate(text)[path]
    return found.line, found.col


def test_simple_keys_and_values() -> None:
    text = 'a = 1\n  b = "x"\n\tc = true\n'
    assert at(text, "a") == (1, 1)
    assert at(text, "b") == (2, 3)
    assert at(text, "c") == (3, 2)  # a tab is one column


def test_quoted_keys_with_dots_and_escapes() -> None:
    text = '"a.b" = 1\n\'c.d\' = 2\n"q\\"uote\\u00e9" = 3\n"" = 4\n'
    assert at(text, "a.b") == (1, 1)
    assert at(text, "c.d") == (2, 1)
    assert at(text, 'q"uote\u00e9') == (3, 1)
    assert at(text, "") == (4, 1)
    assert ("a",) not in locate(text)


def test_dotted_keys_each_prefix_at_its_own_segment() -> None:
    text = 'x = 0\na . "b.c" .\td = 1\na.e = 2\n'
    assert at(text, "a") == (2, 1)
    assert at(text, "a", "b.c") == (2, 5)
    assert at(text, "a", "b.c", "d") == (2, 13)
    assert at(text, "a", "e") == (3, 3)  # ("a",) keeps its first definition
    assert at(text, "a") == (2, 1)


def test_table_headers() -> None:
    text = '[server]\nport = 1\n\n[ a . "b.c" ]\nk = 2\n[a]\nz = 3\n'
    assert at(text, "server") == (1, 2)
    assert at(text, "server", "port") == (2, 1)
    assert at(text, "a") == (4, 3)  # first seen in [a."b.c"], not at the later [a]
    assert at(text, "a", "b.c") == (4, 7)
    assert at(text, "a", "b.c", "k") == (5, 1)
    assert at(text, "a", "z") == (7, 1)


def test_dotted_keys_inside_a_table() -> None:
    text = '[namespaces."/chat"]\nevents.message.permission = "x"\n'
    assert at(text, "namespaces", "/chat") == (1, 13)
    assert at(text, "namespaces", "/chat", "events") == (2, 1)
    assert at(text, "namespaces", "/chat", "events", "message") == (2, 8)
    assert at(text, "namespaces", "/chat", "events", "message", "permission") == (2, 16)


def test_comments_are_not_keys() -> None:
    text = '# a = [x]\n[t] # [u] b = 1\n# "c" = 2\nd = 1 # e = [f]\n'
    found = locate(text)
    assert set(found) == {("t",), ("t", "d")}
    assert found["t", "d"] == Position(4, 1)


def test_strings_are_not_keys() -> None:
    text = (
        's1 = "[x] a = b # c"\n'
        "s2 = 'it\\s [y]'\n"
        's3 = """\n[x]\na = b\n\\""" still in "" string\n"""\n'
        "s4 = '''\n[z]\nc = d\n'''\n"
        's5 = """ends with quotes"""""\n'
        "k = 1\n"
    )
    found = locate(text)
    assert set(found) == {("s1",), ("s2",), ("s3",), ("s4",), ("s5",), ("k",)}
    assert at(text, "k") == (13, 1)


def test_line_ending_backslash_in_multiline_string() -> None:
    text = 'a = """one \\\n   two"""\nb = 2\n'
    assert at(text, "b") == (3, 1)


def test_arrays_of_tables() -> None:
    text = (
        "[[aot]]\nk = 1\n"
        "[[aot]]\n[aot.sub]\nk = 2\n"
        "[[aot.items]]\nv = 1\n[[aot.items]]\nv = 2\n"
        "[[ aot ]]\n"
    )
    assert at(text, "aot") == (1, 3)
    assert at(text, "aot", 0) == (1, 3)
    assert at(text, "aot", 0, "k") == (2, 1)
    assert at(text, "aot", 1) == (3, 3)
    assert at(text, "aot", 1, "sub") == (4, 6)
    assert at(text, "aot", 1, "sub", "k") == (5, 1)
    assert at(text, "aot", 1, "items") == (6, 7)
    assert at(text, "aot", 1, "items", 0, "v") == (7, 1)
    assert at(text, "aot", 1, "items", 1) == (8, 7)
    assert at(text, "aot", 1, "items", 1, "v") == (9, 1)
    assert at(text, "aot", 2) == (10, 4)


def test_nested_inline_tables() -> None:
    text = 'p = { x = 1, "y.z" = { z = [1, {w = 2}] }, a.b = 3 }\n'
    assert at(text, "p") == (1, 1)
    assert at(text, "p", "x") == (1, 7)
    assert at(text, "p", "y.z") == (1, 14)
    assert at(text, "p", "y.z", "z") == (1, 24)
    assert at(text, "p", "y.z", "z", 0) == (1, 29)
    assert at(text, "p", "y.z", "z", 1) == (1, 32)
    assert at(text, "p", "y.z", "z", 1, "w") == (1, 33)
    assert at(text, "p", "a") == (1, 44)
    assert at(text, "p", "a", "b") == (1, 46)


def test_multiline_arrays_with_comments_and_nesting() -> None:
    text = (
        "[server]\n"
        "transports = [  # [not, a = key]\n"
        '  "polling", # "x" = 1\n'
        "  # a comment line, with ] and [\n"
        '  "websocket",\n'
        "  [ 1,\n"
        "    [2] ],\n"
        "]\n"
        "after = 1\n"
    )
    assert at(text, "server", "transports") == (2, 1)
    assert at(text, "server", "transports", 0) == (3, 3)
    assert at(text, "server", "transports", 1) == (5, 3)
    assert at(text, "server", "transports", 2) == (6, 3)
    assert at(text, "server", "transports", 2, 0) == (6, 5)
    assert at(text, "server", "transports", 2, 1) == (7, 5)
    assert at(text, "server", "transports", 2, 1, 0) == (7, 6)
    assert at(text, "server", "after") == (9, 1)
    assert ("server", "transports", 3) not in locate(text)


def test_scalars_with_spaces_and_signs() -> None:
    text = "d = 1979-05-27 07:32:00Z\nl = [1979-05-27 07:32:00, -inf, +17, 0x1F, 1_000]\nz = 1\n"
    assert at(text, "l", 0) == (2, 6)
    assert at(text, "l", 1) == (2, 27)
    assert at(text, "l", 3) == (2, 38)
    assert at(text, "l", 4) == (2, 44)
    assert at(text, "z") == (3, 1)


def test_crlf_line_endings() -> None:
    text = '# c\r\n[a]\r\nb = [\r\n  1,\r\n  2,\r\n]\r\nc = """x\r\ny"""\r\nd = 1\r\n'
    assert at(text, "a") == (2, 2)
    assert at(text, "a", "b", 1) == (5, 3)
    assert at(text, "a", "d") == (9, 1)


def test_columns_count_characters_not_bytes() -> None:
    text = '"é" = "ü→€"\n'
    text += '"ключ" = { "ü" = "日本", k = 1 }\n'
    text += 'arr = ["→→", "😀", 3]\n'
    assert at(text, "é") == (1, 1)
    assert at(text, "ключ", "ü") == (2, 12)
    assert at(text, "ключ", "k") == (2, 24)
    assert at(text, "arr", 1) == (3, 14)
    assert at(text, "arr", 2) == (3, 19)


def test_never_raises_on_odd_input() -> None:
    for text in ["a = ", "[a", "a = [1,", 'a = "x', "= 1", "a = {x = 1", '"\\q" = 1', "[[a]\n"]:
        locate(text)
    assert locate("a = 1\n[b\nc = 2") == {("a",): Position(1, 1), ("b",): Position(2, 2)}
    assert locate("") == {}


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ((), "<root>"),
        (("server", "port"), "server.port"),
        (("namespaces", "/chat", "events", "message"), 'namespaces."/chat".events.message'),
        (("server", "transports", 1), "server.transports[1]"),
        (("monitoring", "sinks", "a", 0), "monitoring.sinks.a[0]"),
        (("a", 0, 1, "b-c_9"), "a[0][1].b-c_9"),
        (("", 'q"', "a.b", "é"), '"".' + '"q\\"".' + '"a.b".' + '"é"'),
        ((0,), "[0]"),
    ],
)
def test_format_path(path: KeyPath, expected: str) -> None:
    assert format_path(path) == expected


def test_nearest() -> None:
    positions: dict[KeyPath, Position] = {("a",): Position(1, 1), ("a", "b"): Position(2, 1)}
    assert nearest(positions, ("a", "b")) == (("a", "b"), Position(2, 1))
    assert nearest(positions, ("a", "b", "c", 0)) == (("a", "b"), Position(2, 1))
    assert nearest(positions, ("a", "x")) == (("a",), Position(1, 1))
    assert nearest(positions, ("z",)) is None
    assert nearest({(): Position(1, 1)}, ("z",)) == ((), Position(1, 1))
    assert nearest({}, ()) is None
