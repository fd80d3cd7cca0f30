"""FallbackStateStore with a real redis-server that goes down and comes back.

The fallback's clock is injected, so when it probes Redis again is decided by the test.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Literal

import pytest

from engine.cluster.options import ClusterOptions
from engine.policies.abuse import ALLOWED, AbuseOptions, Banned
from engine.policies.rate_limit import TokenBucket
from engine.state import MemoryStateStore, StoreUnavailable, build_store
from engine.state.fallback import FallbackStateStore
from engine.state.redis import RedisStateStore
from tests.redis_server import RedisServer

pytestmark = pytest.mark.anyio

BUCKET = TokenBucket(rate_per_second=0.001, burst=2)
OPTIONS = AbuseOptions(
    strikes=1, window_seconds=10.0, ladder_seconds=(60.0,), forgive_after_seconds=0.0
)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def cluster(server: RedisServer, mode: Literal["local", "deny"]) -> ClusterOptions:
    return ClusterOptions(adapter="redis", url=server.url, on_store_error=mode)


async def fallback(
    server: RedisServer, mode: Literal["local", "deny"], clock: Clock
) -> AsyncIterator[FallbackStateStore]:
    store = FallbackStateStore(
        RedisStateStore.from_options(cluster(server, mode)),
        MemoryStateStore(),
        mode,
        probe_interval_seconds=5.0,
        clock=clock,
    )
    await store.start()
    yield store
    await store.aclose()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def local_mode(redis_server: RedisServer, clock: Clock) -> AsyncIterator[FallbackStateStore]:
    async for store in fallback(redis_server, "local", clock):
        yield store


@pytest.fixture
async def deny_mode(redis_server: RedisServer, clock: Clock) -> AsyncIterator[FallbackStateStore]:
    async for store in fallback(redis_server, "deny", clock):
        yield store


def test_build_store_follows_the_adapter(redis_server: RedisServer) -> None:
    assert isinstance(build_store(ClusterOptions(), max_keys=10), MemoryStateStore)
    store = build_store(cluster(redis_server, "deny"), max_keys=10)
    assert isinstance(store, FallbackStateStore)
    assert store.mode == "deny"
    assert store.primary.prefix == "engine:socketio:"
    assert store.local.max_keys == 10


async def test_local_mode_decides_per_node_while_redis_is_down(
    local_mode: FallbackStateStore, redis_server: RedisServer, clock: Clock
) -> None:
    store = local_mode
    assert (await store.take("k", BUCKET, 0.0)).allowed
    assert (await store.take("k", BUCKET, 0.0)).allowed
    assert not (await store.take("k", BUCKET, 0.0)).allowed  # shared bucket empty
    assert await store.acquire([("conn:ip:1", 5)]) is None  # counted in Redis
    assert isinstance(await store.strike("ip:::ffff:10.0.0.7", OPTIONS, 0.0, "x"), Banned)
    assert store.degraded is None

    redis_server.stop()
    ban = await store.banned(["user:2", "ip:10.0.0.7"], 0.0)  # known from the shared state
    assert ban is not None
    assert 59.0 < ban.retry_after_seconds <= 60.0
    assert (await store.take("k", BUCKET, 0.0)).allowed  # a fresh local bucket
    assert store.degraded is not None
    assert "per-node" in store.degraded
    assert (store.failures_total, store.fallbacks_total) == (1, 2)
    assert (await store.take("k", BUCKET, 0.0)).allowed
    assert not (await store.take("k", BUCKET, 0.0)).allowed  # the local limit holds
    assert store.failures_total == 1  # no probe before the interval has passed
    assert store.fallbacks_total == 4
    assert await store.strike("user:1", OPTIONS, 0.0, "x") != ALLOWED  # banned locally
    assert await store.banned(["user:1"], 1.0) is not None
    assert await store.acquire([("conn:ip:1", 5)]) is None  # counted locally
    await store.release(["conn:ip:1"])  # released where it was counted
    assert store.local.count("conn:ip:1") == 0
    await store.release(["conn:ip:1"])  # counted in Redis: forgotten, restored later
    assert store.primary.count("conn:ip:1") == 0

    clock.now = 5.0  # probe: still down
    assert (await store.take("other", BUCKET, 0.0)).allowed
    assert store.failures_total == 2

    redis_server.start()
    assert (await store.take("other", BUCKET, 0.0)).allowed  # not yet probed: local
    assert store.degraded is not None
    clock.now = 10.0
    assert (await store.take("k2", BUCKET, 0.0)).allowed  # probed: Redis again
    assert store.degraded is None
    assert store.outages_total == 1
    assert (await store.take("k2", BUCKET, 0.0)).allowed
    assert not (await store.take("k2", BUCKET, 0.0)).allowed
    assert await store.primary.read_bucket("k2") is not None
    assert await store.acquire([("conn:ip:1", 1)]) is None  # counts re-registered
    assert await store.primary.total("conn:ip:1") == 1


async def test_deny_mode_refuses_while_redis_is_down(
    deny_mode: FallbackStateStore, redis_server: RedisServer, clock: Clock
) -> None:
    store = deny_mode
    assert (await store.take("k", BUCKET, 0.0)).allowed
    redis_server.stop()
    clock.now = 1.0
    with pytest.raises(StoreUnavailable) as refused:
        await store.take("k", BUCKET, 0.0)
    assert refused.value.retry_after_seconds == 5.0  # until the next probe
    assert store.degraded is not None
    assert "refusing" in store.degraded
    clock.now = 2.0
    with pytest.raises(StoreUnavailable) as refused:
        await store.take("k", BUCKET, 0.0)
    assert refused.value.retry_after_seconds == 4.0
    with pytest.raises(StoreUnavailable):
        await store.acquire([("conn:total", None)])
    assert await store.strike("user:1", OPTIONS, 0.0, "x") == ALLOWED  # not held against anyone
    assert await store.banned(["user:1"], 0.0) is None
    redis_server.start()
    clock.now = 6.0
    assert (await store.take("k", BUCKET, 0.0)).allowed
    assert store.degraded is None
