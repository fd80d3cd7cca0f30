"""RedisStateStore on a real redis-server: float helpers, ties, expiry, leases, prefixes."""

from __future__ import annotations

import math
import random
from collections.abc import AsyncIterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis.asyncio import Redis

from engine.policies._expiry import delay_until
from engine.policies.abuse import ALLOWED, AbuseOptions, Banned, check_record, strike_record
from engine.policies.rate_limit import BucketState, TokenBucket, take
from engine.state.redis import RedisStateStore, script_source
from tests.redis_server import RedisServer

pytestmark = pytest.mark.anyio

OPTIONS = AbuseOptions(
    strikes=2, window_seconds=10.0, ladder_seconds=(5.0, 60.0), forgive_after_seconds=100.0
)


@pytest.fixture
async def client(redis_server: RedisServer) -> AsyncIterator[Redis]:
    redis = Redis.from_url(redis_server.url)
    yield redis
    await redis.aclose()


def store(client: Redis, node: str = "a", **kwargs: object) -> RedisStateStore:
    return RedisStateStore(client, node=node, caller_clock=True, **kwargs)  # type: ignore[arg-type]


# -- the float helpers of _common.lua, exactly as Python's -----------------------------------

HELPERS = """
local out = {}
for i = 1, #ARGV, 2 do
  local a, b = tonumber(ARGV[i]), tonumber(ARGV[i + 1])
  out[#out + 1] = num(nextup(a))
  out[#out + 1] = num(delay_until(a, b))
end
return out
"""

finite = st.floats(allow_nan=False, allow_infinity=False, width=64)
times = st.one_of(
    finite,
    st.floats(-1e9, 1e9),
    st.sampled_from([0.0, -0.0, 0.5, 1.0, 2.0, 1e-300, 5e-324, 2.0**-1022, 1.5, -1.0, -2.0]),
)


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(pairs=st.lists(st.tuples(times, times), min_size=1, max_size=50))
async def test_nextup_and_delay_until_match_python(
    client: Redis, pairs: list[tuple[float, float]]
) -> None:
    script = client.register_script(script_source("take").split("local now =")[0] + HELPERS)
    args = [repr(x) for pair in pairs for x in pair]
    out = [float(v) for v in await script(keys=[], args=args)]
    for index, (a, b) in enumerate(pairs):
        assert out[2 * index] == math.nextafter(a, math.inf), (a, out[2 * index])
        if math.isfinite(b - a):
            assert out[2 * index + 1] == delay_until(a, b), (a, b)


async def test_take_nudges_retry_after_like_python(client: Redis) -> None:
    """Cases where the closed form of retry_after lands short and needs nudging (large clock
    values at a high rate), through the script and through `take`."""
    rng = random.Random(7)
    found = 0
    for attempt in range(3000):
        rate = rng.choice([333.0, 1000.0, 777.7])
        now = rng.uniform(1e8, 1e9)
        state = BucketState(rng.uniform(0.0, 0.9), now - rng.uniform(0.0, 1e-4))
        bucket = TokenBucket(rate, 2)
        admission, current = take(bucket, state, now)
        if admission.allowed or admission.retry_after_seconds == (1.0 - current.tokens) / rate:
            continue
        found += 1
        key = f"nudge:{attempt}"
        saved = {"t": repr(state.tokens), "u": repr(state.updated)}
        await client.hset(f"engine:socketio:b:{key}", mapping=saved)  # type: ignore[misc]
        assert await store(client).take(key, bucket, now) == admission, (rate, now, state)
    assert found >= 10  # the search found cases that exercise the nudge loop


# -- ties: a ban ends exactly at its deadline --------------------------------------------------


async def test_ban_ends_exactly_at_its_deadline(client: Redis) -> None:
    s = store(client)
    assert await s.strike("ip:1.2.3.4", OPTIONS, 100.0, "x") == ALLOWED
    ban = await s.strike("ip:1.2.3.4", OPTIONS, 101.0, "rate_limited")
    assert ban == Banned(106.0, 5.0, "rate_limited")
    assert await s.banned(["ip:1.2.3.4"], 105.999) == Banned(106.0, 106.0 - 105.999, "rate_limited")
    assert await s.banned(["ip:1.2.3.4"], 106.0) is None
    record = strike_record(OPTIONS, strike_record(OPTIONS, None, 100.0, "x")[1], 101.0, "r")[1]
    assert check_record(record, 106.0) == ALLOWED
    # the next ban climbs the ladder; after forgiveness it starts again at the first rung
    await s.strike("ip:1.2.3.4", OPTIONS, 106.0, "x")
    assert await s.strike("ip:1.2.3.4", OPTIONS, 107.0, "x") == Banned(167.0, 60.0, "x")
    await s.strike("ip:1.2.3.4", OPTIONS, 267.0, "x")
    assert await s.strike("ip:1.2.3.4", OPTIONS, 267.5, "x") == Banned(272.5, 5.0, "x")
    # ::ffff:1.2.3.4 is the same client
    assert await s.banned(["ip:::ffff:1.2.3.4"], 270.0) == Banned(272.5, 2.5, "x")


# -- expiry on Redis's clock -------------------------------------------------------------------


async def test_keys_expire_when_equivalent_to_absent(client: Redis) -> None:
    s = RedisStateStore(client, node="a")  # Redis's clock
    bucket = TokenBucket(rate_per_second=2.0, burst=4)
    for _ in range(4):
        assert (await s.take("k", bucket, 0.0)).allowed
    refused = await s.take("k", bucket, 0.0)
    assert not refused.allowed
    assert 0.0 < refused.retry_after_seconds <= 0.5
    ttl = await client.pttl("engine:socketio:b:k")
    assert 1900 <= ttl <= 2000  # empty -> full at 2 tokens/s takes 2 s
    await s.strike("user:9", OPTIONS, 0.0, "x")
    assert 9_900 <= await client.pttl("engine:socketio:s:user:9") <= 10_000  # strike window
    await s.strike("user:9", OPTIONS, 0.0, "x")  # banned 5 s, remembered 100 s after that
    assert 104_900 <= await client.pttl("engine:socketio:s:user:9") <= 105_000
    await s.aclose()


async def test_a_lowered_burst_caps_an_existing_bucket(client: Redis) -> None:
    s = store(client)
    assert (await s.take("k", TokenBucket(1.0, 10), 0.0)).allowed  # 9 left
    assert (await s.take("k", TokenBucket(1.0, 2), 0.0)).allowed  # capped to 2, 1 left
    assert (await s.take("k", TokenBucket(1.0, 2), 0.0)).allowed
    refused = await s.take("k", TokenBucket(1.0, 2), 0.0)
    assert refused.allowed is False
    assert refused.retry_after_seconds == 1.0
    assert await s.read_bucket("k") == BucketState(0.0, 0.0)


async def test_prefixes_keep_engines_apart(client: Redis) -> None:
    one, two = store(client, prefix="engine:one:"), store(client, prefix="engine:two:")
    bucket = TokenBucket(1.0, 1)
    assert (await one.take("k", bucket, 0.0)).allowed
    assert (await two.take("k", bucket, 0.0)).allowed
    assert not (await one.take("k", bucket, 0.0)).allowed
    await one.strike("user:1", OPTIONS, 0.0, "x")
    await one.strike("user:1", OPTIONS, 0.0, "x")
    assert await one.banned(["user:1"], 1.0) is not None
    assert await two.banned(["user:1"], 1.0) is None
    assert await one.acquire([("conn:ip:1", 1)], now=0.0) is None
    assert await two.acquire([("conn:ip:1", 1)], now=0.0) is None


# -- leases --------------------------------------------------------------------------------------


async def test_caps_count_across_nodes_all_or_none(client: Redis) -> None:
    a, b = store(client, "a"), store(client, "b")
    slots: list[tuple[str, int | None]] = [("conn:total", None), ("conn:ip:1", 2)]
    assert await a.acquire(slots, now=0.0) is None
    assert await b.acquire(slots, now=0.0) is None
    assert await a.acquire(slots, now=0.0) == 1  # at the IP cap: nothing counted
    assert await a.total("conn:total", now=0.0) == 2
    await b.release(["conn:total", "conn:ip:1"], now=0.0)
    assert await a.acquire(slots, now=0.0) is None
    assert (a.count("conn:ip:1"), b.count("conn:ip:1")) == (2, 0)
    await b.release(["conn:ip:1"], now=0.0)  # not b's: ignored
    assert await a.total("conn:ip:1", now=0.0) == 2


async def test_a_dead_nodes_leases_expire_and_are_swept(client: Redis) -> None:
    a, b = store(client, "a", lease_ttl_seconds=15.0), store(client, "b", lease_ttl_seconds=15.0)
    await a.refresh(now=0.0)
    await b.refresh(now=0.0)
    cap: list[tuple[str, int | None]] = [("conn:ip:1", 1)]
    assert await a.acquire(cap, now=1.0) is None
    assert await b.acquire(cap, now=1.0) == 0
    # a dies (no more heartbeats); b keeps refreshing
    for t in (5.0, 10.0):
        await b.refresh(now=t)
        assert await b.acquire(cap, now=t) == 0
    assert await b.acquire(cap, now=15.0) is None  # a's heartbeat ended at 15: not counted
    assert await client.hget("engine:socketio:c:conn:ip:1", "a") is None  # pruned
    await b.refresh(now=16.0)  # sweeps a: its heartbeat and key set are gone
    assert await client.zscore("engine:socketio:nodes", "a") is None
    assert not await client.exists("engine:socketio:n:a")
    # a comes back (a long pause, not a crash): its heartbeat lapsed, so it restores its count
    await a.refresh(now=17.0)
    assert await a.total("conn:ip:1", now=17.0) == 2
    assert a.count("conn:ip:1") == 1


async def test_a_lapsed_node_restores_its_counts_before_deciding(client: Redis) -> None:
    a = store(client, "a", lease_ttl_seconds=5.0)
    assert await a.acquire([("conn:ip:1", 3)], now=0.0) is None
    assert await a.acquire([("conn:ip:1", 3)], now=100.0) is None  # lapsed at 5, restored
    assert await a.total("conn:ip:1", now=100.0) == 2


async def test_retire_drops_a_stopping_nodes_counts(client: Redis) -> None:
    a = RedisStateStore(Redis(connection_pool=client.connection_pool), node="a")
    await a.start()
    assert await a.acquire([("conn:total", None), ("conn:ip:1", 5)]) is None
    await a.aclose()
    assert await client.keys("engine:socketio:*") == []


async def test_start_registers_and_the_refresher_keeps_the_lease(client: Redis) -> None:
    a = RedisStateStore(Redis.from_url(_url(client)), node="a", lease_ttl_seconds=0.3)
    await a.start()
    assert await a.acquire([("conn:ip:1", 1)]) is None
    expiry = await client.zscore("engine:socketio:nodes", "a")
    assert expiry is not None
    await a.next_heartbeat()  # the background task's, on its real timer
    assert (await client.zscore("engine:socketio:nodes", "a") or 0) > expiry
    assert await a.total("conn:ip:1") == 1
    await a.stop_refresher()  # a "crash": leases are left to expire
    assert await client.hget("engine:socketio:c:conn:ip:1", "a") == b"1"
    await a.aclose(retire=False)


def _url(client: Redis) -> str:
    kwargs = client.connection_pool.connection_kwargs
    return f"redis://{kwargs['host']}:{kwargs['port']}/0"
