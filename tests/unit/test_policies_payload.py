"""Concrete prescan/check examples."""

from __future__ import annotations

import dataclasses
import json
import re

import pytest

from engine.policies.payload import PayloadLimits, Violation, check, prescan, prescan_packet

LIMITS = PayloadLimits(
    max_bytes=1000,
    max_depth=3,
    max_keys=3,
    max_array_length=4,
    max_string_length=8,
    allow_binary=True,
    max_attachments=2,
    max_attachment_bytes=4,
    deny_patterns=(re.compile(r"<script", re.IGNORECASE),),
)


@pytest.mark.parametrize(
    "text",
    [
        '{"a": 1, "b": [1, 2, 3, 4], "c": {"d": "{{{[[[\\"\\\\"}}',
        '["\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9"]',  # 48 raw, 8 decoded
        '"\\ud83d\\ude00"',  # a surrogate pair escape is one code point
        "[[[]]]",
        "  123  ",
        "[1e308, -0.0, true, null]",
    ],
)
def test_prescan_accepts_payloads_within_limits(text: str) -> None:
    assert prescan(text, LIMITS) is None


@pytest.mark.parametrize(
    ("text", "reason", "path"),
    [
        ("x" * 1001, "payload exceeds 1000 bytes", "$"),
        ('"' + "é" * 500 + '"', "payload exceeds 1000 bytes", "$"),  # 1002 UTF-8 bytes
        ("[[[[]]]]", "nesting deeper than 3", "$[0][0][0]"),
        ('{"a":1,"b":2,"c":3,"d":4}', "object has more than 3 keys", "$"),
        ('{"a":[1,2,3,4,5]}', "array has more than 4 elements", "$.a"),
        ('{"a":"123456789"}', "string longer than 8 characters", "$.a"),
        ('{"123456789":1}', "key longer than 8 characters", "$"),
        ("[1, NaN]", "NaN is not a JSON number", "$[1]"),
        ('{"x": -Infinity}', "-Infinity is not a JSON number", "$.x"),
        ('["abc', "unterminated string", "$"),
        ("[1}", "unbalanced brackets", "$[0]"),
    ],
)
def test_prescan_refusals(text: str, reason: str, path: str) -> None:
    assert prescan(text, LIMITS) == Violation(reason, path)


def test_braces_and_escapes_inside_strings_are_not_structure() -> None:
    text = json.dumps(['{{{[[["', "\\", '"}]'])
    assert prescan(text, LIMITS) is None


def test_check_refusals() -> None:
    assert check({"a": "<SCRIPT>"}, LIMITS) == Violation("string matches a denied pattern", "$.a")
    assert check({"<script": 1}, LIMITS) == Violation("key matches a denied pattern", "$")
    assert check([float("nan")], LIMITS) == Violation("nan is not a JSON number", "$[0]")
    assert check({1: 2}, LIMITS) == Violation("object keys must be strings", "$")
    assert check({"a": {1, 2}}, LIMITS) == Violation("unsupported value type set", "$.a")
    assert check([b"12345"], LIMITS) == Violation("attachment larger than 4 bytes", "$[0]")
    assert check([b"", b"", b""], LIMITS) == Violation("more than 2 attachments", "$[0]")
    no_binary = dataclasses.replace(LIMITS, allow_binary=False)
    assert check({"f": b"x"}, no_binary) == Violation("binary attachments are not allowed", "$.f")
    assert check({"ok": [b"1234", None, True, "fine"]}, LIMITS) is None


def test_check_handles_nesting_deeper_than_the_recursion_limit() -> None:
    value: object = []
    for _ in range(100_000):
        value = [value]
    assert check(value, LIMITS) == Violation("nesting deeper than 3", "$[0][0][0]")


def test_prescan_stops_deep_nesting_that_would_crash_json_loads() -> None:
    text = "[" * 100_000 + "]" * 100_000
    with pytest.raises(RecursionError):
        json.loads(text)
    big = dataclasses.replace(LIMITS, max_bytes=10**6)
    assert prescan(text, big) == Violation("nesting deeper than 3", "$[0][0][0]")


def test_packet_header_is_skipped_and_attachments_counted() -> None:
    limits = dataclasses.replace(LIMITS, max_string_length=20)
    assert prescan_packet('2/chat,17["msg",{"a":1}]', limits) is None
    assert prescan_packet('2["msg",{"a":1,"b":2,"c":3,"d":4}]', limits) == Violation(
        "object has more than 3 keys", "$[1]"
    )
    assert prescan_packet('51-/chat,["up",{"_placeholder":true,"num":0}]', limits) is None
    assert prescan_packet('51-["up",{"_placeholder":true}]', limits) is None
    assert prescan_packet('53-["up",1]', limits) == Violation("more than 2 attachments", "$")
    assert prescan_packet("x", limits) == Violation("not a Socket.IO packet", "$")


def test_from_profile() -> None:
    limits = PayloadLimits.from_profile(
        {
            "max_bytes": 10,
            "max_depth": 1,
            "max_keys": 1,
            "max_array_length": 1,
            "max_string_length": 1,
            "allow_binary": False,
            "max_attachments": 0,
            "max_attachment_bytes": 0,
            "deny_patterns": ["a+b"],
        }
    )
    assert limits.deny_patterns == (re.compile("a+b"),)


@pytest.mark.parametrize("size", [999, 1000, 1001, 5000])
def test_large_flat_containers_are_counted_exactly(size: int) -> None:
    limits = PayloadLimits(10**7, 2, 1000, 1000, 64, False, 0, 0)
    array = json.dumps([*range(size // 2), *([True, None, -1.5e3] * size)][:size])
    obj = json.dumps({f"key:{i}" if i % 7 == 0 else f"k{i}": i for i in range(size)})
    expected = None if size <= 1000 else "$"
    for text in (array, obj, json.dumps({"nested": json.loads(obj)})):
        violation = prescan(text, limits)
        if expected is None:
            assert violation is None
        else:
            assert violation is not None
            assert violation.reason.endswith(("more than 1000 elements", "more than 1000 keys"))


@pytest.mark.parametrize(
    ("packet", "malformed"),
    [
        ('42["x"', True),
        ('42["x",NaN]', True),
        ('42["x"]]', True),
        ('42["x", "unterminated]', True),
        ("x", True),
        ('42["x",' + "[" * 40 + "]" * 40 + "]", False),
    ],
)
def test_not_json_is_told_apart_from_over_limit(packet: str, malformed: bool) -> None:
    limits = PayloadLimits(
        max_bytes=10_000,
        max_depth=8,
        max_keys=10,
        max_array_length=10,
        max_string_length=100,
        allow_binary=True,
        max_attachments=1,
        max_attachment_bytes=100,
    )
    violation = prescan_packet(packet, limits)
    assert violation is not None
    assert violation.malformed is malformed
