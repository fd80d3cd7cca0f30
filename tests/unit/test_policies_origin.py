"""Concrete origin matching examples."""

from __future__ import annotations

import pytest

from engine.policies.origin import OriginMatcher, parse_origin, pattern_error

MATCHER = OriginMatcher.from_patterns(
    ["https://app.example.com", "https://*.example.com", "http://localhost:3000", "http://[::1]"]
)


@pytest.mark.parametrize(
    "origin",
    [
        "https://app.example.com",
        "https://APP.Example.COM",
        "HTTPS://app.example.com:443",
        "https://a.example.com",
        "https://a.b.c.example.com",
        "http://localhost:3000",
        "http://[0:0::1]:80",
    ],
)
def test_allowed(origin: str) -> None:
    assert MATCHER.allows(origin)


@pytest.mark.parametrize(
    "origin",
    [
        "https://example.com",  # the apex is not a subdomain
        "https://evil-example.com",
        "https://example.com.evil.io",
        "https://app.example.com.",
        "http://app.example.com",  # scheme differs
        "https://app.example.com:8443",
        "https://app.example.com/",
        "https://user@app.example.com",
        "https://evil.io@app.example.com",
        " https://app.example.com",
        "https://app.example.com\n",
        "null",
        "",
        "http://localhost:3001",
        "http://localhost:03000x",
        "https://app.example.com:99999",
        "https://app..example.com",
        "https://[::1%25eth0]",
    ],
)
def test_refused_never_raises(origin: str) -> None:
    assert not MATCHER.allows(origin)


def test_star_allows_anything() -> None:
    matcher = OriginMatcher.from_patterns(["*"])
    assert matcher.allows("https://anything.test")
    assert matcher.allows("null")


def test_empty_list_allows_nothing() -> None:
    assert not OriginMatcher.from_patterns([]).allows("https://app.example.com")


def test_parse_origin_normalises() -> None:
    assert parse_origin("HTTP://Example.COM:80") == ("http", "example.com", 80)
    assert parse_origin("https://example.com:8443") == ("https", "example.com", 8443)
    assert parse_origin("chrome-extension://abc") == ("chrome-extension", "abc", None)
    assert parse_origin("https://example.com:0") is None


@pytest.mark.parametrize(
    ("pattern", "fragment"),
    [
        ("https://app.example.com/", "no path"),
        ("https://*example.com", "wildcard"),
        ("https://app.*.example.com", "wildcard"),
        ("*.example.com", "wildcard"),
        ("https://*.1.2.3", "IP address"),
        ("https://*.exa mple.com", "wildcard"),
        ("https://*.example.com:0", "port"),
        ("null", "expected"),
        ("example.com", "expected"),
    ],
)
def test_pattern_errors(pattern: str, fragment: str) -> None:
    error = pattern_error(pattern)
    assert error is not None
    assert fragment in error
    with pytest.raises(ValueError, match="invalid origin pattern"):
        OriginMatcher.from_patterns([pattern])


@pytest.mark.parametrize("pattern", ["*", "https://a.b", "https://*.b.c:8443", "http://[::1]:8"])
def test_valid_patterns(pattern: str) -> None:
    assert pattern_error(pattern) is None


def test_from_profile() -> None:
    matcher = OriginMatcher.from_profile({"allowed_origins": ["https://*.example.com"]})
    assert matcher.allows("https://x.example.com")
