"""Hypothesis strategies for the pure policies (engine.policies)."""

from __future__ import annotations

import re
from typing import Any

from hypothesis import strategies as st

from engine.policies.payload import PayloadLimits
from engine.policies.rate_limit import TokenBucket


@st.composite
def token_buckets(draw: st.DrawFn) -> TokenBucket:
    """Bucket shapes from slow (0.1/s) to fast (1000/s), small bursts so limits bite."""
    rate = draw(st.sampled_from([0.1, 0.5, 1.0, 2.0, 3.0, 7.0, 10.0, 100.0, 1000.0]))
    return TokenBucket(rate_per_second=rate, burst=draw(st.integers(1, 8)))


def time_steps(max_step: float = 5.0) -> st.SearchStrategy[float]:
    """Gaps between requests: often zero (same instant), often tiny, sometimes long."""
    return st.one_of(
        st.just(0.0),
        st.floats(0.0, 0.01),
        st.floats(0.0, max_step),
    )


def timelines(max_size: int = 40) -> st.SearchStrategy[list[float]]:
    """Non-decreasing request times starting in [0, 1000]."""
    return st.tuples(
        st.floats(0.0, 1000.0), st.lists(time_steps(), min_size=1, max_size=max_size)
    ).map(_accumulate)


def _accumulate(args: tuple[float, list[float]]) -> list[float]:
    start, steps = args
    times, now = [], start
    for step in steps:
        now += step
        times.append(now)
    return times


# ---- payload -------------------------------------------------------------------------------

TRICKY_CHARS = st.sampled_from(
    [
        "{",
        "}",
        "[",
        "]",
        '"',
        "\\",
        ":",
        ",",
        " ",
        "\n",
        "\t",
        "\x00",
        "\x1f",
        "é",
        "€",
        "\U0001f600",
        "\U00010348",
        "\ud800",
        "\udfff",
        "NaN",
        "Infinity",
        "\\u0041",
        "bad",
    ]
)


def tricky_text(max_size: int = 12) -> st.SearchStrategy[str]:
    """Strings mixing JSON syntax, escapes, multi-byte, 4-byte and lone-surrogate characters."""
    return st.lists(st.one_of(TRICKY_CHARS, st.characters()), max_size=max_size).map("".join)


def json_values(long_strings: bool = False) -> st.SearchStrategy[Any]:
    """Decoded JSON values, including NaN/Infinity (which Python's json emits and accepts).

    ``long_strings`` adds strings of 60-70 characters, around the 64-character bound of the
    prescan's fast path for simple object members.
    """
    text = tricky_text()
    keys = tricky_text(6)
    if long_strings:
        near_64 = st.one_of(
            st.text(alphabet="abé", min_size=60, max_size=70),
            st.text(alphabet='ab:,\\"é', min_size=60, max_size=70),
        )
        simple = st.text(alphabet="abé\U0001f600", max_size=6)
        text = st.one_of(text, near_64, simple)
        keys = st.one_of(keys, near_64, simple, simple)
    scalars = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(10**30), 10**30),
        st.floats(allow_nan=True, allow_infinity=True),
        text,
    )
    return st.recursive(
        scalars,
        lambda children: st.one_of(
            st.lists(children, max_size=7),
            st.dictionaries(keys, children, max_size=7),
        ),
        max_leaves=40,
    )


DENY_CHOICES = (re.compile(r"\{"), re.compile("bad"), re.compile(r"\\"), re.compile("^$"))


@st.composite
def payload_limits(draw: st.DrawFn, long_strings: bool = False) -> PayloadLimits:
    """Small limits so that generated values land on both sides of every bound."""
    return PayloadLimits(
        max_bytes=draw(st.integers(0, 2000 if long_strings else 400)),
        max_depth=draw(st.integers(0, 5)),
        max_keys=draw(st.integers(0, 6)),
        max_array_length=draw(st.integers(0, 6)),
        max_string_length=draw(st.integers(60, 70) if long_strings else st.integers(0, 12)),
        allow_binary=draw(st.booleans()),
        max_attachments=draw(st.integers(0, 3)),
        max_attachment_bytes=draw(st.integers(0, 16)),
        deny_patterns=tuple(draw(st.lists(st.sampled_from(DENY_CHOICES), max_size=2, unique=True))),
    )


# ---- origin --------------------------------------------------------------------------------

SCHEMES = st.sampled_from(
    ["https", "http", "HTTPS", "Http", "wss", "ftp", "chrome-extension", "1http", ""]
)
LABELS = st.sampled_from(
    [
        "example",
        "EXAMPLE",
        "com",
        "app",
        "api",
        "evil-example",
        "evil",
        "io",
        "a",
        "xn--bcher-kva",
        "127",
        "0",
        "1",
        "_x",
        "-",
        "a" * 63,
        "a" * 64,
        "",
        "exämple",
        "ex ample",
        "x@y",
        "%2e",
        "*",
    ]
)
PORTS = st.sampled_from(
    [None, None, None, "443", "80", "8080", "0", "65535", "65536", "08080", "", "x", "+1", "123456"]
)


@st.composite
def hosts(draw: st.DrawFn) -> str:
    """DNS-ish hosts (sometimes malformed), IP literals and IPv6 brackets."""
    kind = draw(st.integers(0, 9))
    if kind == 0:
        return draw(
            st.sampled_from(
                [
                    "[::1]",
                    "[2001:DB8::1]",
                    "[::ffff:1.2.3.4]",
                    "[zz::1]",
                    "[]",
                    "127.0.0.1",
                    "localhost",
                    "[::1%eth0]",
                ]
            )
        )
    labels = draw(st.lists(LABELS, min_size=1, max_size=4))
    host = ".".join(labels)
    if draw(st.integers(0, 9)) == 0:
        host += draw(st.sampled_from([".", "..", " ", "\n", "/", "/path", "?q", "#f", ":"]))
    return host


GOOD_LABELS = st.sampled_from(["example", "EXAMPLE", "com", "app", "evil-example", "io", "a", "1"])


@st.composite
def clean_origins(draw: st.DrawFn) -> str:
    """Well-formed origins over a small alphabet, so patterns and origins often collide."""
    scheme = draw(st.sampled_from(["https", "http", "HTTPS", "wss"]))
    host = ".".join(draw(st.lists(GOOD_LABELS, min_size=1, max_size=4)))
    port = draw(st.sampled_from([None, None, "443", "80", "8080"]))
    return f"{scheme}://{host}" + ("" if port is None else f":{port}")


@st.composite
def origins(draw: st.DrawFn) -> str:
    """Origin header values: half well-formed, half every kind of near-miss."""
    if draw(st.booleans()):
        return draw(clean_origins())
    if draw(st.integers(0, 19)) == 0:
        return draw(
            st.sampled_from(
                [
                    "null",
                    "*",
                    "",
                    "https://",
                    "https:///",
                    "//example.com",
                    "https:example.com",
                    " https://example.com",
                ]
            )
        )
    scheme = draw(SCHEMES)
    sep = draw(st.sampled_from(["://"] * 8 + [":/", ":///", "://user@", "://user:pw@"]))
    port = draw(PORTS)
    text = f"{scheme}{sep}{draw(hosts())}"
    if port is not None:
        text += f":{port}"
    return text


@st.composite
def origin_patterns(draw: st.DrawFn) -> str:
    """allowed_origins entries: exact origins, wildcards (valid or not), and `*`."""
    kind = draw(st.integers(0, 9))
    if kind == 0:
        return "*"
    if kind <= 4:
        clean = draw(st.booleans())
        scheme = draw(st.sampled_from(["https", "http"]) if clean else SCHEMES)
        suffix = ".".join(draw(st.lists(GOOD_LABELS if clean else LABELS, min_size=1, max_size=3)))
        port = draw(PORTS)
        text = f"{scheme}://*.{suffix}"
        return text if port is None else f"{text}:{port}"
    return draw(origins())
