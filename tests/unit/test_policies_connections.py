"""Connection caps."""

from __future__ import annotations

from engine.policies.connections import ConnectionCaps, ConnectionCounts
from engine.policies.decision import ALLOW, Deny

CAPS = ConnectionCaps.from_profile({"max_per_user": 2, "max_per_ip": 3, "max_total": 4})


def test_per_user_cap_is_per_namespace() -> None:
    counts = ConnectionCounts()
    counts.add("/chat", "u", "1.1.1.1")
    counts.add("/chat", "u", "2.2.2.2")
    assert CAPS.admit(counts, "/chat", "u", "3.3.3.3") == Deny(
        "too_many_connections", "too many connections for this user"
    )
    assert CAPS.admit(counts, "/other", "u", "3.3.3.3") == ALLOW
    assert CAPS.admit(counts, "/chat", None, "3.3.3.3") == ALLOW  # anonymous: no user cap
    assert CAPS.admit(counts, "/chat", "u", "3.3.3.3", namespace_max_per_user=5) == ALLOW


def test_ip_and_global_caps() -> None:
    counts = ConnectionCounts()
    for ns in ("/a", "/b", "/c"):
        counts.add(ns, None, "1.1.1.1")
    denied = CAPS.admit(counts, "/d", None, "1.1.1.1")
    assert isinstance(denied, Deny)
    assert denied.message == "too many connections from your address"
    counts.add("/a", None, "2.2.2.2")
    denied = CAPS.admit(counts, "/a", None, "3.3.3.3")
    assert isinstance(denied, Deny)
    assert denied.message == "the server is at its connection limit"


def test_remove_frees_memory_and_tolerates_double_disconnect() -> None:
    counts = ConnectionCounts()
    counts.add("/", "u", "1.1.1.1")
    counts.remove("/", "u", "1.1.1.1")
    counts.remove("/", "u", "1.1.1.1")
    assert counts.total == 0
    assert counts.tracked_ips == 0
    assert counts.for_user("/", "u") == 0


def test_no_caps() -> None:
    counts = ConnectionCounts()
    for _ in range(100):
        counts.add("/", "u", "1.1.1.1")
    assert ConnectionCaps.from_profile({}).admit(counts, "/", "u", "1.1.1.1") == ALLOW
