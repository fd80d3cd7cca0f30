"""OriginMatcher against a reference built on urllib.parse and explicit string checks."""

from __future__ import annotations

import ipaddress
import string
from urllib.parse import urlsplit

from hypothesis import event, given, settings
from hypothesis import strategies as st

from engine.policies.origin import OriginMatcher, parse_origin, pattern_error
from tests.strategies_policies import origin_patterns, origins

HOST_CHARS = set(string.ascii_lowercase + string.digits + "-_")
DEFAULTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}


def ref_parse(origin: str) -> tuple[str, str, int | None] | None:
    """Accept only `scheme://host[:port]`, rebuilt exactly from urlsplit's pieces."""
    if any(ord(c) < 33 or ord(c) > 126 for c in origin):
        return None  # urlsplit silently strips whitespace and control characters
    try:
        parts = urlsplit(origin)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme
    if not scheme or not scheme[0].isalpha():
        return None
    if origin[: len(scheme)].lower() != scheme or origin[len(scheme) :] != "://" + parts.netloc:
        return None
    netloc = parts.netloc
    if "@" in netloc or netloc.endswith(":"):
        return None
    if ":" in netloc and not netloc.endswith("]"):
        port_text = netloc.rsplit(":", 1)[1]
        if not (port_text.isascii() and port_text.isdigit() and len(port_text) <= 5):
            return None
    if port == 0:
        return None
    host = parts.hostname
    if not host:
        return None
    if netloc.startswith("["):
        if "%" in host:
            return None  # zone ids never appear in an Origin header
        try:
            host = "[" + str(ipaddress.IPv6Address(host)) + "]"
        except ValueError:
            return None
    else:
        labels = host.split(".")
        if len(host) > 253 or any(
            not label or len(label) > 63 or not set(label) <= HOST_CHARS for label in labels
        ):
            return None
    return scheme, host, port if port is not None else DEFAULTS.get(scheme)


class RefMatcher:
    def __init__(self, patterns: list[str]) -> None:
        self.any = "*" in patterns
        self.exact = set()
        self.wild = set()
        for p in patterns:
            if p == "*":
                continue
            if p.split("://", 1)[-1].startswith("*."):
                parsed = ref_parse(p.replace("*.", "placeholder.", 1))
                assert parsed is not None
                scheme, host, port = parsed
                self.wild.add((scheme, host.split(".", 1)[1], port))
            else:
                self.exact.add(ref_parse(p))

    def allows(self, origin: str) -> bool:
        if self.any:
            return True
        parsed = ref_parse(origin)
        if parsed is None:
            return False
        if parsed in self.exact:
            return True
        scheme, host, port = parsed
        return any(
            scheme == ws and port == wp and host.endswith("." + suffix)
            for ws, suffix, wp in self.wild
        )


@settings(max_examples=500)
@given(origins())
def test_parse_origin_matches_reference(origin: str) -> None:
    got = parse_origin(origin)
    event(f"well-formed={got is not None}")
    assert got == ref_parse(origin), origin


@settings(max_examples=300)
@given(st.lists(origin_patterns(), max_size=5), st.lists(origins(), min_size=1, max_size=10))
def test_matcher_matches_reference(patterns: list[str], candidates: list[str]) -> None:
    valid = [p for p in patterns if pattern_error(p) is None]
    matcher = OriginMatcher.from_patterns(valid)
    reference = RefMatcher(valid)
    for origin in candidates:
        allowed = matcher.allows(origin)
        event(f"allowed={allowed}")
        assert allowed == reference.allows(origin), (valid, origin)


@settings(max_examples=300)
@given(
    st.sampled_from(["https", "http"]), st.lists(st.sampled_from(["a", "b-c", "x1"]), max_size=3)
)
def test_wildcard_covers_every_subdomain_depth_but_not_the_apex(
    scheme: str, prefix: list[str]
) -> None:
    matcher = OriginMatcher.from_patterns([f"{scheme}://*.example.com"])
    host = ".".join([*prefix, "example.com"])
    assert matcher.allows(f"{scheme}://{host}") == bool(prefix)
    assert not matcher.allows(f"{scheme}://{'.'.join([*prefix, 'evil-example.com'])}")
    assert not matcher.allows(f"{scheme}://{host}.evil.io")
