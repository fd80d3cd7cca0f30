"""The in-memory `StateStore` against the pure policies it stores state for.

Buckets: for any sequence of requests over a few keys, with the bucket shape changing between
requests (a reload tightening or loosening a limit), the store admits exactly what the pure
`take` admits when each key's state is carried over, a lowered burst caps it, and a bucket
that was full again under the shape it was last charged with is forgotten (the store's
documented eviction, which the Redis store's key expiry shares). Connection caps:
`acquire`/`release` agree with the pure `ConnectionCaps.admit` over `ConnectionCounts`.
"""

from __future__ import annotations

import anyio
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.chain.connections import connection_keys
from engine.policies.connections import ConnectionCaps, ConnectionCounts
from engine.policies.rate_limit import BucketState, TokenBucket, take
from engine.policies.rate_limit import full_at as pure_full_at
from engine.state import MemoryStateStore
from tests.strategies_policies import time_steps, token_buckets

KEYS = ["a", "b", "c"]


@settings(max_examples=300, deadline=None)
@given(
    st.lists(token_buckets(), min_size=1, max_size=3),
    st.lists(
        st.tuples(st.sampled_from(KEYS), time_steps(), st.integers(0, 2)), min_size=1, max_size=60
    ),
)
def test_store_admits_what_the_pure_bucket_admits(
    shapes: list[TokenBucket], requests: list[tuple[str, float, int]]
) -> None:
    anyio.run(_buckets, shapes, requests)


async def _buckets(shapes: list[TokenBucket], requests: list[tuple[str, float, int]]) -> None:
    store = MemoryStateStore()
    states: dict[str, BucketState] = {}
    full_at: dict[str, float] = {}
    now = 100.0
    for key, step, shape_index in requests:
        now += step
        bucket = shapes[shape_index % len(shapes)]
        state = states.get(key)
        if state is not None and now >= full_at[key]:
            state = None  # full under the shape it was last charged with: forgotten
        if state is not None and state.tokens > bucket.burst:
            state = BucketState(float(bucket.burst), state.updated)
        expected, states[key] = take(bucket, state, now)
        full_at[key] = pure_full_at(bucket, states[key])
        got = await store.take(key, bucket, now)
        assert got.allowed == expected.allowed, (key, now, bucket)
        if not got.allowed:
            assert abs(got.retry_after_seconds - expected.retry_after_seconds) <= 1e-9


operations = st.lists(
    st.one_of(
        st.tuples(
            st.just("connect"),
            st.sampled_from(["/", "/admin"]),
            st.sampled_from([None, "u1", "u2"]),
            st.sampled_from(["1.1.1.1", "2.2.2.2"]),
        ),
        st.tuples(st.just("disconnect"), st.integers(0, 50), st.none(), st.none()),
    ),
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from([None, 1, 2, 3]),
    st.sampled_from([None, 1, 2, 4]),
    st.sampled_from([None, 2, 5]),
    operations,
)
def test_connection_counts_agree_with_the_pure_caps(
    per_user: int | None,
    per_ip: int | None,
    total: int | None,
    ops: list[tuple[str, object, object, object]],
) -> None:
    anyio.run(_caps, ConnectionCaps(per_user, per_ip, total), ops)


async def _caps(caps: ConnectionCaps, ops: list[tuple[str, object, object, object]]) -> None:
    store = MemoryStateStore()
    counts = ConnectionCounts()
    live: list[tuple[str, str | None, str]] = []
    for op, a, b, c in ops:
        if op == "disconnect":
            if live:
                assert isinstance(a, int)
                ns, user, ip = live.pop(a % len(live))
                counts.remove(ns, user, ip)
                await store.release(connection_keys(ns, user, ip))
            continue
        assert isinstance(a, str)
        assert isinstance(c, str)
        user = b if isinstance(b, str) else None
        expected_ok = caps.admit(counts, a, user, c).__class__.__name__ == "Allow"
        keys = connection_keys(a, user, c)
        limits = (caps.max_total, caps.max_per_ip, caps.max_per_user)
        full = await store.acquire(list(zip(keys, limits, strict=False)))
        assert (full is None) == expected_ok, (a, user, c, live)
        if expected_ok:
            counts.add(a, user, c)
            live.append((a, user, c))
        assert store.count("conn:total") == counts.total
