"""Reloads never split a decision: each event is decided by the profile active at that instant.

A reference model replays the same sequence of events and reloads with nothing but a token
bucket per connection (refill at the *current* profile's rate, capped at its burst, forgotten
once full under the limit it was last charged with) and the current allow-list, and must agree
with the engine's guard decision for decision. State is
kept across reloads, so a limit tightened mid-sequence applies to the existing buckets.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import anyio
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.app import declared_events
from engine.auth import Identity
from engine.guard import Guard, Member, Peer
from engine.monitoring import Monitor
from engine.policies.rate_limit import BucketState, TokenBucket, full_at
from engine.profile.build import load_profile
from engine.profile.model import Profile
from engine.refusal import Refusal
from engine.runtime import Runtime, RuntimeRef

TOLERANCE = 1e-6

VARIANTS = [
    # (rate_per_second, burst, allowed events)
    (1.0, 3, ("echo",)),
    (0.5, 1, ("echo", "move")),
    (5.0, 8, ("move",)),
    (2.0, 2, ("echo", "move", "chat")),
]


def _profile(tmp: Path, index: int) -> Profile:
    rate, burst, events = VARIANTS[index]
    path = tmp / f"v{index}.toml"
    path.write_text(
        f"""
[engine]
name = "v{index}"
environment = "development"

[security.rate_limits]
events_per_connection = {{ rate_per_second = {rate}, burst = {burst} }}

[namespaces."/"]
events = {list(events)!r}
""".replace("'", '"')
    )
    return load_profile(path, {})


@dataclass
class Bucket:
    tokens: float
    updated: float
    full_at: float  # full again under the limit it was last charged with: forgotten then


class Reference:
    """Just the rules: a bucket per client at the current limit, then the allow-list."""

    def __init__(self) -> None:
        self.variant = 0
        self.buckets: dict[int, Bucket] = {}

    def decide(self, client: int, event: str, now: float) -> str | None:
        rate, burst, events = VARIANTS[self.variant]
        bucket = self.buckets.get(client)
        if bucket is not None and now >= bucket.full_at:
            bucket = None
        if bucket is None:
            level = float(burst)
        else:
            level = min(float(burst), bucket.tokens)
            if now > bucket.updated:
                level = min(float(burst), level + (now - bucket.updated) * rate)
        updated = now if bucket is None else max(bucket.updated, now)
        allowed = level >= 1 - TOLERANCE
        tokens = level - 1 if allowed else level
        shape = TokenBucket(rate, burst)
        self.buckets[client] = Bucket(tokens, updated, full_at(shape, BucketState(tokens, updated)))
        if not allowed:
            return "rate_limited"
        if event not in events:
            return "unknown_event"
        return None


operations = st.lists(
    st.one_of(
        st.tuples(
            st.just("event"),
            st.integers(0, 2),
            st.sampled_from(["echo", "move", "chat"]),
            st.sampled_from([0.0, 0.1, 0.25, 0.5, 1.0, 3.0]),
        ),
        st.tuples(st.just("reload"), st.integers(0, len(VARIANTS) - 1), st.just(""), st.just(0.0)),
    ),
    min_size=1,
    max_size=80,
)


@settings(max_examples=200, deadline=None)
@given(operations)
def test_each_decision_is_the_active_profiles(ops: list[tuple[str, int, str, float]]) -> None:
    anyio.run(_replay, ops)


PROFILES: list[Profile] = []


def _profiles() -> list[Profile]:
    if not PROFILES:
        import tempfile

        tmp = Path(tempfile.mkdtemp(prefix="reload-props-"))
        PROFILES.extend(_profile(tmp, i) for i in range(len(VARIANTS)))
    return PROFILES


async def _replay(ops: list[tuple[str, int, str, float]]) -> None:
    profiles = _profiles()
    clock = [1000.0]
    ref_model = Reference()
    first = profiles[0]
    monitor = Monitor(
        first.monitoring,
        profile_name="props",
        config_hash=first.config_hash,
        declared_events=declared_events(first),
    )
    ref = RuntimeRef(Runtime.build(first))
    guard = Guard(ref, monitor, clock=lambda: clock[0])
    peer = Peer("10.0.0.1", {}, {}, 0.0)
    members = {k: Member("/", f"sid{k}", peer, Identity(user_id=f"user{k}")) for k in range(3)}
    for op, a, event, dt in ops:
        if op == "reload":
            ref.swap(Runtime.build(profiles[a]))
            ref_model.variant = a
            continue
        clock[0] += dt
        expected = ref_model.decide(a, event, clock[0])
        spec = ref.runtime.namespaces["/"]
        try:
            await guard.admit_event(spec, members[a], event, [])
            got = None
        except Refusal as refusal:
            got = refusal.code
        assert got == expected, (op, a, event, clock[0], ref_model.variant)
