"""Origin allow-listing for ``server.allowed_origins``.

Origins are compared as (scheme, host, port) after normalising case and default ports, never
as strings: ``https://App.Example.com:443`` is ``https://app.example.com``. A wildcard
``https://*.example.com`` covers subdomains at any depth but not ``example.com`` itself, and it
is matched on label boundaries so ``evil-example.com`` and ``example.com.evil.io`` stay out.
Anything that is not a plain ``scheme://host[:port]`` (paths, userinfo, ``null``, stray
whitespace) is refused rather than guessed at; ``allows`` never raises.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["OriginMatcher", "parse_origin", "pattern_error"]

DEFAULT_PORTS: Mapping[str, int] = {"http": 80, "https": 443, "ws": 80, "wss": 443}

_ORIGIN = re.compile(
    r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://"
    r"(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+)"
    r"(?::(?P<port>[0-9]{1,5}))?"
)
_WILDCARD = re.compile(
    r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://\*\.(?P<host>[A-Za-z0-9_.-]+)(?::(?P<port>[0-9]{1,5}))?"
)
_LABEL = re.compile(r"[a-z0-9_-]{1,63}")

Origin = tuple[str, str, int | None]
"""Canonical origin: lower-case scheme, lower-case host (IPv6 bracketed), effective port."""


def _dns_host(host: str) -> str | None:
    host = host.lower()
    if len(host) > 253:
        return None
    labels = host.split(".")
    if not all(_LABEL.fullmatch(label) for label in labels):
        return None
    return host


def _port(scheme: str, raw: str | None) -> tuple[bool, int | None]:
    if raw is None:
        return True, DEFAULT_PORTS.get(scheme)
    port = int(raw)
    return 1 <= port <= 65535, port


def parse_origin(origin: str) -> Origin | None:
    """Canonical form of an Origin header value, or None if it is not a well-formed origin."""
    match = _ORIGIN.fullmatch(origin)
    if match is None:
        return None
    scheme = match["scheme"].lower()
    raw_host = match["host"]
    host: str | None
    if raw_host.startswith("["):
        try:
            host = f"[{ipaddress.IPv6Address(raw_host[1:-1]).compressed}]"
        except ValueError:
            return None
    else:
        host = _dns_host(raw_host)
    ok, port = _port(scheme, match["port"])
    if host is None or not ok:
        return None
    return scheme, host, port


def _parse_wildcard(pattern: str) -> tuple[Origin | None, str | None]:
    match = _WILDCARD.fullmatch(pattern)
    if match is None:
        return None, "a wildcard must be written `scheme://*.domain[:port]`"
    scheme = match["scheme"].lower()
    suffix = _dns_host(match["host"])
    if suffix is None:
        return None, f"{match['host']!r} is not a valid domain"
    if suffix.rsplit(".", 1)[-1].isdigit():
        return None, "a wildcard needs a domain name, not an IP address"
    ok, port = _port(scheme, match["port"])
    if not ok:
        return None, "port must be between 1 and 65535"
    return (scheme, suffix, port), None


def pattern_error(pattern: str) -> str | None:
    """Why ``pattern`` is not a valid ``allowed_origins`` entry, or None if it is valid."""
    if pattern == "*":
        return None
    if "*" in pattern:
        return _parse_wildcard(pattern)[1]
    if parse_origin(pattern) is None:
        if pattern.rstrip("/") != pattern or pattern.count("/") > 2:
            return "an origin has no path: write `scheme://host[:port]` without a trailing `/`"
        return "expected `*`, `scheme://host[:port]` or `scheme://*.domain[:port]`"
    return None


@dataclass(frozen=True, slots=True)
class OriginMatcher:
    """Compiled ``allowed_origins``; build with :meth:`from_patterns`."""

    allow_all: bool
    exact: frozenset[Origin]
    wildcards: frozenset[Origin]
    """(scheme, domain suffix, port) for each ``scheme://*.suffix[:port]``."""

    @classmethod
    def from_patterns(cls, patterns: Iterable[str]) -> OriginMatcher:
        """Compile patterns; raises ValueError naming the first invalid one."""
        allow_all = False
        exact: set[Origin] = set()
        wildcards: set[Origin] = set()
        for pattern in patterns:
            error = pattern_error(pattern)
            if error is not None:
                raise ValueError(f"invalid origin pattern {pattern!r}: {error}")
            if pattern == "*":
                allow_all = True
            elif "*" in pattern:
                parsed, _ = _parse_wildcard(pattern)
                assert parsed is not None
                wildcards.add(parsed)
            else:
                origin = parse_origin(pattern)
                assert origin is not None
                exact.add(origin)
        return cls(allow_all, frozenset(exact), frozenset(wildcards))

    @classmethod
    def from_profile(cls, mapping: Mapping[str, Any]) -> OriginMatcher:
        """Build from the validated ``server`` table (its ``allowed_origins`` list)."""
        return cls.from_patterns(mapping.get("allowed_origins", ()))

    def allows(self, origin: str) -> bool:
        """Is a request carrying this Origin header value allowed? ``*`` allows any value."""
        if self.allow_all:
            return True
        parsed = parse_origin(origin)
        if parsed is None:
            return False
        if parsed in self.exact:
            return True
        scheme, host, port = parsed
        if not self.wildcards or host.startswith("["):
            return False
        # Try every proper suffix on a label boundary: a.b.example.com -> b.example.com, ...
        dot = host.find(".")
        while dot != -1:
            if (scheme, host[dot + 1 :], port) in self.wildcards:
                return True
            dot = host.find(".", dot + 1)
        return False
