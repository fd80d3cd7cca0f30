"""RedisStateStore against the pure policies, on a real redis-server, with driven time.

Random operation sequences (takes on a few keys whose bucket shape changes between calls,
strikes, ban checks, acquires and releases on two nodes whose heartbeats may lapse) run
against the Lua scripts (`caller_clock=True`: the scripts use the given `now`) and against
the references, bit for bit (numbers cross as "%.17g" strings, and Lua's doubles do the same
arithmetic): `rate_limit.take` (plus the lowered-burst cap of `MemoryStateStore.take_now`),
`abuse.strike_record` / `check_record`, and a dict of per-node counts where a node counts
while its heartbeat (``now + ttl`` at its last registration or refresh) is in the future.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis.asyncio import Redis

from engine.policies.abuse import (
    AbuseOptions,
    Banned,
    SubjectRecord,
    canonical_subject,
    check_record,
    strike_record,
)
from engine.policies.rate_limit import BucketState, TokenBucket, take
from engine.state.redis import RedisStateStore
from tests.redis_server import RedisServer
from tests.strategies_policies import time_steps, token_buckets

pytestmark = pytest.mark.anyio

TTL = 4.0
BUCKET_KEYS = ["rate:a:1", "rate:a:2", "rate:b:x"]
SUBJECTS = ["ip:10.0.0.1", "ip:::ffff:10.0.0.1", "user:1", "user:2"]
COUNT_KEYS = ["conn:total", "conn:ip:1", "conn:ip:2", "conn:user:/:u"]
NODES = ("a", "b")


@st.composite
def abuse_options(draw: st.DrawFn) -> AbuseOptions:
    ladder = sorted(draw(st.lists(st.integers(1, 30), min_size=1, max_size=4)))
    return AbuseOptions(
        strikes=draw(st.integers(1, 4)),
        window_seconds=draw(st.sampled_from([1.0, 2.5, 7.0, 15.0])),
        ladder_seconds=tuple(float(d) for d in ladder),
        forgive_after_seconds=draw(st.sampled_from([0.0, 3.0, 40.0])),
    )


slots = st.lists(
    st.tuples(st.sampled_from(COUNT_KEYS), st.one_of(st.none(), st.integers(0, 3))),
    min_size=1,
    max_size=4,
    unique_by=lambda slot: slot[0],
)

# whole seconds too, so that "now == deadline" ties (ban end, heartbeat expiry) happen
gaps = st.one_of(time_steps(max_step=6.0), st.integers(1, 5).map(float))

operations = st.lists(
    st.tuples(
        gaps,
        st.one_of(
            st.tuples(st.just("take"), st.sampled_from(BUCKET_KEYS), token_buckets()),
            st.tuples(
                st.just("strike"),
                st.sampled_from(SUBJECTS),
                st.sampled_from(["rate_limited", "forbidden"]),
            ),
            st.tuples(st.just("banned"), st.lists(st.sampled_from(SUBJECTS), max_size=3)),
            st.tuples(st.just("acquire"), st.sampled_from(NODES), slots),
            st.tuples(st.just("release"), st.sampled_from(NODES), st.integers(0, 7)),
            st.tuples(st.just("refresh"), st.sampled_from(NODES)),
        ),
    ),
    min_size=1,
    max_size=60,
)


@dataclass
class Node:
    held: list[tuple[str, ...]] = field(default_factory=list)  # acquisitions, in order
    expiry: float | None = None  # heartbeat; None: not registered yet


@dataclass
class Reference:
    options: AbuseOptions
    buckets: dict[str, BucketState] = field(default_factory=dict)
    records: dict[str, SubjectRecord] = field(default_factory=dict)
    nodes: dict[str, Node] = field(default_factory=lambda: {n: Node() for n in NODES})

    def take(self, key: str, bucket: TokenBucket, now: float) -> tuple[bool, float]:
        state = self.buckets.get(key)
        if state is not None and state.tokens > bucket.burst:
            state = BucketState(float(bucket.burst), state.updated)
        admission, self.buckets[key] = take(bucket, state, now)
        return admission.allowed, admission.retry_after_seconds

    def strike(self, subject: str, now: float, kind: str) -> object:
        subject = canonical_subject(subject)
        verdict, self.records[subject] = strike_record(
            self.options, self.records.get(subject), now, kind
        )
        return verdict

    def banned(self, subjects: list[str], now: float) -> Banned | None:
        latest: Banned | None = None
        for subject in subjects:
            verdict = check_record(self.records.get(canonical_subject(subject)), now)
            if isinstance(verdict, Banned) and (latest is None or verdict.until > latest.until):
                latest = verdict
        return latest

    def count(self, key: str, now: float) -> int:
        return sum(
            held.count(key)
            for node in self.nodes.values()
            if node.expiry is not None and node.expiry > now
            for held in [[k for keys in node.held for k in keys]]
        )

    def acquire(self, name: str, wanted: list[tuple[str, int | None]], now: float) -> int | None:
        node = self.nodes[name]
        if node.expiry is None or node.expiry <= now:
            node.expiry = now + TTL  # the store re-registers with its counts, then decides
        for index, (key, cap) in enumerate(wanted):
            if cap is not None and self.count(key, now) >= cap:
                return index
        node.held.append(tuple(key for key, _ in wanted))
        return None

    def refresh(self, name: str, now: float) -> None:
        self.nodes[name].expiry = now + TTL  # a lapsed heartbeat is restored, so the same


@pytest.fixture
async def client(redis_server: RedisServer) -> AsyncIterator[Redis]:
    redis = Redis.from_url(redis_server.url)
    yield redis
    await redis.aclose()


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    options=abuse_options(),
    start=st.one_of(st.floats(0.0, 1000.0), st.integers(0, 1000).map(float)),
    ops=operations,
)
async def test_redis_store_agrees_with_the_pure_policies(
    client: Redis, options: AbuseOptions, start: float, ops: list[tuple[float, tuple]]
) -> None:
    prefix = f"t{secrets.token_hex(6)}:"  # a fresh keyspace per example
    stores = {
        name: RedisStateStore(
            client, prefix=prefix, node=name, lease_ttl_seconds=TTL, caller_clock=True
        )
        for name in NODES
    }
    ref = Reference(options)
    now = start
    for step, (gap, op) in enumerate(ops):
        now += gap
        where = f"op {step} {op!r} at {now!r}"
        kind = op[0]
        if kind == "take":
            _, key, bucket = op
            admission = await stores["a"].take(key, bucket, now)
            allowed, retry = ref.take(key, bucket, now)
            assert admission.allowed == allowed, where
            assert admission.retry_after_seconds == retry, where
            stored = await stores["a"].read_bucket(key)
            assert stored == ref.buckets[key], where
        elif kind == "strike":
            _, subject, why = op
            got = await stores["b"].strike(subject, options, now, why)
            want = ref.strike(subject, now, why)
            assert type(got) is type(want), where
            if isinstance(want, Banned):
                assert isinstance(got, Banned)
                assert got == want, where
        elif kind == "banned":
            _, subjects = op
            got_ban = await stores["a"].banned(subjects, now)
            want_ban = ref.banned(subjects, now)
            if want_ban is None:
                assert got_ban is None, where
            else:
                assert got_ban == want_ban, where
        elif kind == "acquire":
            _, name, wanted = op
            full = await stores[name].acquire(wanted, now=now)
            assert full == ref.acquire(name, wanted, now), where
        elif kind == "release":
            _, name, pick = op
            held = ref.nodes[name].held
            if held:
                keys = held.pop(pick % len(held))
                await stores[name].release(keys, now=now)
        else:
            _, name = op
            if ref.nodes[name].expiry is not None:  # a node refreshes only once started
                await stores[name].refresh(now=now)
                ref.refresh(name, now)
        for name, node in ref.nodes.items():
            for key in COUNT_KEYS:
                mine = sum(keys.count(key) for keys in node.held)
                assert stores[name].count(key) == mine, where
    for key in COUNT_KEYS:
        assert await stores["a"].total(key, now=now) == ref.count(key, now), key
