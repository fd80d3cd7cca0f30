"""Concrete strike/ban ladder examples."""

from __future__ import annotations

import pytest

from engine.policies.abuse import (
    AbuseOptions,
    AbuseState,
    Allowed,
    Banned,
    Denied,
    check,
    ip_subject,
    listed_verdict,
    strike,
)
from engine.state import MemoryStateStore

PROFILE = {
    "strikes": 3,
    "window_seconds": 10,
    "ladder_seconds": [60, 600, 3600],
    "forgive_after_seconds": 86400,
    "allow_cidrs": ["10.0.0.0/8"],
    "deny_cidrs": ["203.0.113.0/24", "2001:db8::/32"],
    "max_subjects": 3,
}
OPTIONS = AbuseOptions.from_profile(PROFILE)


def strikes(state: AbuseState, subject: str, times: list[float]) -> tuple[object, AbuseState]:
    verdict: object = None
    for now in times:
        verdict, state = strike(state, subject, now, "flood")
    return verdict, state


def test_three_strikes_in_the_window_ban_for_the_first_rung() -> None:
    verdict, state = strikes(AbuseState.empty(OPTIONS), "ip:1.2.3.4", [0, 5, 9])
    assert verdict == Banned(until=69.0, retry_after_seconds=60.0, reason="flood")
    late = check(state, "1.2.3.4", None, 68.9)
    assert isinstance(late, Banned)
    assert late.until == 69.0
    assert late.retry_after_seconds == pytest.approx(0.1)
    assert check(state, "1.2.3.4", None, 69.0) == Allowed()


def test_strikes_outside_the_window_do_not_add_up() -> None:
    verdict, _ = strikes(AbuseState.empty(OPTIONS), "user:1", [0, 5, 10])
    assert verdict == Allowed()  # the strike at 0 expired exactly at 10


def test_ladder_escalates_then_forgives() -> None:
    state = AbuseState.empty(OPTIONS)
    verdict, state = strikes(state, "user:42", [0, 0, 0])
    assert isinstance(verdict, Banned)
    assert verdict.until == 60
    verdict, state = strikes(state, "user:42", [60, 60, 60])
    assert isinstance(verdict, Banned)
    assert verdict.until == 660
    verdict, state = strikes(state, "user:42", [660, 660, 660])
    assert isinstance(verdict, Banned)
    assert verdict.until == 4260
    verdict, state = strikes(state, "user:42", [4260, 4260, 4260])
    assert isinstance(verdict, Banned)
    assert verdict.until == 4260 + 3600
    later = 7860 + 86400
    verdict, state = strikes(state, "user:42", [later] * 3)
    assert verdict == Banned(later + 60, 60, "flood")  # forgiven: back to the first rung


def test_strikes_during_a_ban_do_not_extend_it() -> None:
    _verdict, state = strikes(AbuseState.empty(OPTIONS), "user:1", [0, 0, 0])
    again, state = strike(state, "user:1", 30, "flood")
    assert again == Banned(60, 30, "flood")
    assert check(state, None, "1", 60) == Allowed()


def test_allow_and_deny_lists() -> None:
    state = AbuseState.empty(OPTIONS)
    verdict, state = strikes(state, "ip:10.1.2.3", [0, 0, 0, 0])
    assert verdict == Allowed()
    assert check(state, "10.1.2.3", None, 0) == Allowed()
    assert strike(state, "ip:203.0.113.9", 0, "x")[0] == Denied()
    assert check(state, "203.0.113.9", "1", 0) == Denied()
    assert check(state, "::ffff:203.0.113.9", None, 0) == Denied()  # v4-mapped spelling
    assert check(state, "2001:DB8::5", None, 0) == Denied()


def test_banned_user_stays_banned_from_an_allow_listed_network() -> None:
    _, state = strikes(AbuseState.empty(OPTIONS), "user:7", [0, 0, 0])
    assert isinstance(check(state, "10.0.0.1", "7", 1), Banned)


def test_check_reports_the_later_of_ip_and_user_bans() -> None:
    state = AbuseState.empty(OPTIONS)
    _, state = strikes(state, "ip:1.1.1.1", [0, 0, 0])
    _, state = strikes(state, "user:9", [5, 5, 5])
    assert check(state, "1.1.1.1", "9", 6) == Banned(65, 59, "flood")


def test_ip_subjects_are_canonical() -> None:
    assert ip_subject("::ffff:1.2.3.4") == "ip:1.2.3.4"
    assert ip_subject("2001:DB8:0::1") == "ip:2001:db8::1"
    _, state = strikes(AbuseState.empty(OPTIONS), "ip:::ffff:1.2.3.4", [0, 0, 0])
    assert isinstance(check(state, "1.2.3.4", None, 1), Banned)


def test_listed_subjects_never_count_strikes() -> None:
    assert listed_verdict(OPTIONS, "ip:203.0.113.9") == Denied()
    assert listed_verdict(OPTIONS, "ip:::ffff:10.1.2.3") == Allowed()
    assert listed_verdict(OPTIONS, "ip:192.0.2.1") is None
    assert listed_verdict(OPTIONS, "user:10.1.2.3") is None


@pytest.mark.anyio
async def test_store_forgets_irrelevant_subjects_and_never_live_bans() -> None:
    store = MemoryStateStore(max_subjects=3)
    for now in (0, 0, 0):
        await store.strike("user:1", OPTIONS, now, "flood")  # banned until 60, kept to forgive
    await store.strike("user:2", OPTIONS, 0, "flood")  # one strike, irrelevant from t=10
    await store.strike("user:3", OPTIONS, 0, "flood")
    assert store.sizes()["subjects"] == 3
    assert await store.strike("user:4", OPTIONS, 5, "flood") == Allowed()
    assert store.untracked_subjects == 1  # full of records that still matter: not tracked
    assert store.record("user:4") is None
    assert isinstance(await store.banned(["user:1"], 10), Banned)
    await store.strike("user:4", OPTIONS, 11, "flood")  # 2 and 3 are forgotten by now
    assert store.record("user:4") is not None
    assert store.sizes()["subjects"] == 2


@pytest.mark.parametrize(
    "change",
    [
        {"strikes": 0},
        {"window_seconds": 0},
        {"ladder_seconds": []},
        {"ladder_seconds": [600, 60]},
        {"forgive_after_seconds": -1},
        {"max_subjects": 0},
    ],
)
def test_invalid_options_are_rejected(change: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="must"):
        AbuseOptions.from_profile({**PROFILE, **change})
