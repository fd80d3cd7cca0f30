"""engine.auth.client_ip: X-Forwarded-For behind trusted proxies only."""

from __future__ import annotations

import pytest

from engine.auth.client_ip import parse_trusted_proxies, resolve_client_ip

TRUSTED = parse_trusted_proxies(["10.0.0.0/8", "127.0.0.1", "fd00::/8"])


def _xff(value: str) -> dict[str, str]:
    return {"x-forwarded-for": value}


def test_without_trusted_proxies_xff_is_ignored() -> None:
    assert resolve_client_ip("203.0.113.9", _xff("1.2.3.4")) == "203.0.113.9"
    assert resolve_client_ip("10.0.0.1", _xff("1.2.3.4")) == "10.0.0.1"


def test_untrusted_peer_xff_is_ignored() -> None:
    assert resolve_client_ip("203.0.113.9", _xff("1.2.3.4"), TRUSTED) == "203.0.113.9"


@pytest.mark.parametrize(
    ("remote", "xff", "expected"),
    [
        ("10.0.0.1", "198.51.100.7", "198.51.100.7"),
        ("10.0.0.1", "1.1.1.1, 198.51.100.7", "198.51.100.7"),  # 1.1.1.1 is spoofable
        ("10.0.0.1", "1.1.1.1, 198.51.100.7, 10.0.0.2", "198.51.100.7"),
        ("127.0.0.1", "198.51.100.7,10.1.2.3 ,  10.9.9.9", "198.51.100.7"),
        ("10.0.0.1", "10.0.0.3, 10.0.0.2", "10.0.0.3"),  # all trusted: leftmost
        ("10.0.0.1", "", "10.0.0.1"),
        ("10.0.0.1", "unknown", "10.0.0.1"),
        ("10.0.0.1", "1.1.1.1, garbage, 10.0.0.2", "10.0.0.2"),  # stop at a bad entry
        ("10.0.0.1", "198.51.100.7:4711", "198.51.100.7"),
        ("10.0.0.1", "[2001:db8::1]:4711", "2001:db8::1"),
        ("fd00::1", "2001:db8::2", "2001:db8::2"),
        ("::ffff:10.0.0.1", "198.51.100.7", "198.51.100.7"),  # v4-mapped peer
        ("10.0.0.1", "::ffff:10.0.0.5, 198.51.100.7", "198.51.100.7"),
    ],
)
def test_trusted_chain(remote: str, xff: str, expected: str) -> None:
    assert resolve_client_ip(remote, _xff(xff), TRUSTED) == expected


def test_no_header_and_odd_peers() -> None:
    assert resolve_client_ip("10.0.0.1", {}, TRUSTED) == "10.0.0.1"
    assert resolve_client_ip("unix:/tmp/sock", _xff("1.2.3.4"), TRUSTED) == "unix:/tmp/sock"
    assert resolve_client_ip("2001:DB8::0001", {}) == "2001:db8::1"  # canonical form


def test_parse_trusted_proxies_errors() -> None:
    with pytest.raises(ValueError, match=r"not an IP address or CIDR: '10\.0\.0\.0/33'"):
        parse_trusted_proxies(["10.0.0.0/33"])
    assert parse_trusted_proxies([" 10.0.0.5/8 "])[0].with_prefixlen == "10.0.0.0/8"
