"""The ban ladder against a list-of-strike-times reference model."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

import anyio
from hypothesis import event, given, settings
from hypothesis import strategies as st

from engine.auth import Identity
from engine.chain import Request
from engine.chain.bans import BanPolicy
from engine.policies.abuse import (
    AbuseOptions,
    AbuseState,
    Allowed,
    Banned,
    Denied,
    Verdict,
    check,
    listed_verdict,
    strike,
)
from engine.policies.decision import Allow, Deny
from engine.state import MemoryStateStore

IPS = ["10.0.0.1", "10.0.0.2", "10.0.0.9", "192.168.1.5", "::ffff:10.0.0.9", "2001:db8::1",
       "2001:DB8:0::1", "203.0.113.7", "not-an-ip"]  # fmt: skip
USERS = ["1", "2", "42"]
ALLOW = ["10.0.0.0/30", "2001:db8::/32"]
DENY = ["192.168.0.0/16", "10.0.0.2/32"]


@st.composite
def abuse_options(draw: st.DrawFn) -> AbuseOptions:
    """Integer times so that ties (now == deadline) are exercised exactly."""
    ladder = sorted(draw(st.lists(st.integers(1, 30), min_size=1, max_size=4)))
    return AbuseOptions(
        strikes=draw(st.integers(1, 4)),
        window_seconds=draw(st.integers(1, 15)),
        ladder_seconds=tuple(float(d) for d in ladder),
        forgive_after_seconds=draw(st.integers(0, 40)),
        allow_cidrs=tuple(ipaddress.ip_network(c) for c in draw(st.sets(st.sampled_from(ALLOW)))),
        deny_cidrs=tuple(ipaddress.ip_network(c) for c in draw(st.sets(st.sampled_from(DENY)))),
    )


def canon_ip(ip: str) -> str:
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return ip
    mapped = getattr(addr, "ipv4_mapped", None)
    return str(mapped or addr)


@dataclass
class RefSubject:
    strike_times: list[float] = field(default_factory=list)
    bans: list[tuple[float, float, str]] = field(default_factory=list)  # (start, end, kind)
    first_live_strike: int = 0  # strikes before the latest ban no longer count


class Reference:
    """Keeps every strike and every ban; decides by scanning the full history."""

    def __init__(self, options: AbuseOptions) -> None:
        self.o = options
        self.subjects: dict[str, RefSubject] = {}

    def _in(self, ip: str, nets: tuple[object, ...]) -> bool:
        try:
            addr = ipaddress.ip_address(canon_ip(ip))
        except ValueError:
            return False
        return any(addr in net for net in nets)  # type: ignore[operator]

    def strike(self, subject: str, now: float, kind: str) -> Verdict:
        if subject.startswith("ip:"):
            ip = subject[3:]
            subject = "ip:" + canon_ip(ip)
            if self._in(ip, self.o.deny_cidrs):
                return Denied()
            if self._in(ip, self.o.allow_cidrs):
                return Allowed()
        s = self.subjects.setdefault(subject, RefSubject())
        if s.bans and now < s.bans[-1][1]:
            start, end, k = s.bans[-1]
            return Banned(end, end - now, k)
        s.strike_times.append(now)
        # A strike stops counting once any strike call (this one included) sees it expired;
        # after the clock steps back, an already forgotten strike stays forgotten.
        live = s.strike_times[s.first_live_strike :]
        recent = [t for i, t in enumerate(live) if max(live[i:]) - t < self.o.window_seconds]
        if len(recent) < self.o.strikes:
            return Allowed()
        # rung: consecutive bans, walking back, while each gap to the next ban is unforgiven
        rung, later_start = 0, now
        for start, end, _ in reversed(s.bans):
            if later_start - end >= self.o.forgive_after_seconds:
                break
            rung += 1
            later_start = start
        ladder = self.o.ladder_seconds
        end = now + ladder[min(rung, len(ladder) - 1)]
        s.bans.append((now, end, kind))
        s.first_live_strike = len(s.strike_times)
        return Banned(end, end - now, kind)

    def check(self, ip: str | None, user: str | None, now: float) -> Verdict:
        found: list[Banned] = []
        if ip is not None:
            if self._in(ip, self.o.deny_cidrs):
                return Denied()
            if not self._in(ip, self.o.allow_cidrs):
                ban = self._last_ban("ip:" + canon_ip(ip), now)
                if ban:
                    found.append(ban)
        if user is not None:
            ban = self._last_ban("user:" + user, now)
            if ban:
                found.append(ban)
        if not found:
            return Allowed()
        return max(found, key=lambda b: b.until)

    def _last_ban(self, subject: str, now: float) -> Banned | None:
        s = self.subjects.get(subject)
        if not s or not s.bans or not now < s.bans[-1][1]:
            return None
        _start, end, kind = s.bans[-1]
        return Banned(end, end - now, kind)


subjects = st.one_of(
    st.sampled_from(IPS).map(lambda ip: f"ip:{ip}"),
    st.sampled_from(USERS).map(lambda u: f"user:{u}"),
)
operations = st.lists(
    st.one_of(
        st.tuples(
            st.just("strike"), subjects, st.integers(0, 6), st.sampled_from(["flood", "bad"])
        ),
        st.tuples(
            st.just("check"),
            st.one_of(st.none(), st.sampled_from(IPS)),
            st.one_of(st.none(), st.sampled_from(USERS)),
            st.integers(0, 6),
        ),
    ),
    max_size=60,
)


@settings(max_examples=300)
@given(abuse_options(), operations, st.booleans())
def test_pure_state_and_store_agree_with_reference(
    options: AbuseOptions, ops: list[tuple[str, object, object, object]], time_jumps_back: bool
) -> None:
    """The pure functions, and the engine's in-memory store behind the `ban` chain policy,
    decide every strike and check exactly as the reference model does."""
    anyio.run(_agree, options, ops, time_jumps_back)


async def _agree(
    options: AbuseOptions, ops: list[tuple[str, object, object, object]], time_jumps_back: bool
) -> None:
    ref = Reference(options)
    state = AbuseState.empty(options)
    store = MemoryStateStore()
    policy = BanPolicy(options)
    now = 100.0
    monotonic = True
    for index, (op, a, b, c) in enumerate(ops):
        # Non-decreasing time, except an optional jump back which the reference also sees.
        # The store forgets at the newest time it has seen, so it is only compared while
        # time has not gone backwards.
        if time_jumps_back and index == len(ops) // 2:
            now -= 50.0
            monotonic = False
        if op == "strike":
            assert isinstance(a, str)
            assert isinstance(c, str)
            assert isinstance(b, int)
            now += b
            expected = ref.strike(a, now, c)
            got, state = strike(state, a, now, c)
            event(f"strike -> {type(expected).__name__}")
            assert got == expected, (op, a, now)
            stored = listed_verdict(options, a) or await store.strike(a, options, now, c)
            assert not monotonic or stored == expected
        else:
            assert isinstance(c, int)
            now += c
            ip = a if isinstance(a, str) else None
            user = b if isinstance(b, str) else None
            expected = ref.check(ip, user, now)
            assert check(state, ip, user, now) == expected, (op, ip, user, now)
            if ip is None or not monotonic:
                continue
            request = Request("event", ip, identity=Identity(user))
            decision = await policy.decide(request, store, now)
            if isinstance(expected, Banned):
                assert decision == Deny(
                    "banned", "temporarily banned", expected.retry_after_seconds, disconnect=True
                )
            elif isinstance(expected, Denied):
                assert isinstance(decision, Deny)
                assert decision.code == "forbidden"
            else:
                assert isinstance(decision, Allow)


@settings(max_examples=300)
@given(abuse_options(), st.lists(st.integers(0, 3), min_size=1, max_size=8))
def test_ban_durations_climb_the_ladder_and_end_exactly_at_the_deadline(
    options: AbuseOptions, idle_after_ban: list[int]
) -> None:
    state = AbuseState.empty(options)
    now = 0.0
    durations: list[float] = []
    for idle in idle_after_ban:
        verdict: Verdict = Allowed()
        for _ in range(options.strikes):
            verdict, state = strike(state, "user:7", now, "flood")
        assert isinstance(verdict, Banned)
        durations.append(verdict.until - now)
        assert check(state, None, "7", verdict.until - 0.5) == Banned(verdict.until, 0.5, "flood")
        assert check(state, None, "7", verdict.until) == Allowed()
        # Come back right when the ban ends (plus a little, still short of forgiveness).
        now = verdict.until + min(idle, max(0.0, options.forgive_after_seconds - 1))
    if options.forgive_after_seconds >= 1:
        ladder = options.ladder_seconds
        assert durations == [ladder[min(k, len(ladder) - 1)] for k in range(len(durations))]
    assert durations == sorted(durations)


@settings(max_examples=200)
@given(abuse_options(), st.lists(st.integers(0, 3), max_size=30))
def test_allow_listed_ips_are_never_banned_and_deny_listed_always_refused(
    options: AbuseOptions, steps: list[int]
) -> None:
    state = AbuseState.empty(options)
    now = 0.0
    for step in steps:
        now += step
        for ip in IPS:
            verdict, state = strike(state, f"ip:{ip}", now, "flood")
            listed_deny = (
                any(ipaddress.ip_address(canon_ip(ip)) in n for n in options.deny_cidrs)
                if ip != "not-an-ip"
                else False
            )
            listed_allow = (
                any(ipaddress.ip_address(canon_ip(ip)) in n for n in options.allow_cidrs)
                if ip != "not-an-ip"
                else False
            )
            if listed_deny:
                assert verdict == Denied()
                assert check(state, ip, None, now) == Denied()
            elif listed_allow:
                assert verdict == Allowed()
                assert check(state, ip, None, now) == Allowed()
