"""`RedisRecoveryStore` on a real redis-server: all or nothing, once, bounds, expiry, gaps.

The store's clock is Redis's (stream entry times, session TTLs): expiry tests use TTLs of a
few hundred milliseconds and wait for Redis itself to drop the key, with a deadline.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import pytest
from redis.asyncio import Redis

from engine.auth import Identity
from engine.cluster.options import ClusterOptions
from engine.recovery import Fence, RecoveryOptions, RecoveryUnavailable, Session
from engine.recovery.redis import RedisRecoveryStore
from engine.state.redis import redis_client
from tests.redis_server import RedisServer

pytestmark = pytest.mark.anyio
OPTIONS = RecoveryOptions(max_disconnection_seconds=60, max_events=5, max_bytes=10_000)
NOBODY: frozenset[str] = frozenset()
NOTHING_LIVE = Fence(None, NOBODY)
PREFIX = "engine:test:rec:"


@pytest.fixture
async def redis(redis_server: RedisServer) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_server.url)
    yield client
    await client.aclose()


@pytest.fixture
async def store(redis_server: RedisServer) -> AsyncIterator[RedisRecoveryStore]:
    cluster = ClusterOptions(adapter="redis", url=redis_server.url, channel="test")
    found = RedisRecoveryStore(redis_client(cluster), prefix=PREFIX)
    yield found
    await found.aclose()


def session(head: str | None, rooms: frozenset[str] = frozenset({"a", "sid"})) -> Session:
    identity = Identity("u", frozenset({"ops"}), {"sub": "u", "n": 1}, "token")
    return Session("/", "pid", "sid", rooms, frozenset({"a"}), identity, head, 0.0)


async def fill(
    store: RedisRecoveryStore, rooms: list[str | None], options: RecoveryOptions = OPTIONS
) -> list[str]:
    return [
        await store.append("/", "e", [i], frozenset({r}) if r else None, NOBODY, options, 0.0)
        for i, r in enumerate(rooms)
    ]


@asynccontextmanager
async def expiry_of(redis: Redis, key: str) -> AsyncIterator[None]:
    """Wait, on leaving the block, until Redis has expired `key` (its own expired-key event,
    keyspace notifications), at most 5 s."""
    await redis.config_set("notify-keyspace-events", "Ex")
    pubsub = redis.pubsub()
    await pubsub.subscribe("__keyevent@0__:expired")
    try:
        yield
        with anyio.fail_after(5):
            async for message in pubsub.listen():
                if message["type"] == "message" and message["data"] == key.encode():
                    break
    finally:
        await pubsub.aclose()


async def test_restore_is_all_or_nothing_and_once(store: RedisRecoveryStore) -> None:
    offsets = await fill(store, ["a", "b", None, "a"])
    assert len(set(offsets)) == 4
    assert await store.head("/") == offsets[-1]
    await store.persist(session(None), OPTIONS, 0.0)
    peeked = await store.peek("/", "pid", offsets[0], OPTIONS, 0.0)
    assert peeked == session(None)  # identity, rooms and all, through JSON
    restored = await store.restore("/", "pid", offsets[0], NOTHING_LIVE, OPTIONS, 0.0)
    assert restored is not None
    assert [s.args for s in restored.missed] == [(2,), (3,)]  # not room b
    assert [s.offset for s in restored.missed] == [offsets[2], offsets[3]]
    assert restored.through == offsets[-1]
    assert restored.session.identity.claims == {"sub": "u", "n": 1}
    again = await store.restore("/", "pid", offsets[0], NOTHING_LIVE, OPTIONS, 0.0)
    assert again is None  # a session is taken once
    later = await fill(store, ["a", "b"])
    caught = await store.after("/", restored.through, restored.session.rooms)
    assert caught is not None
    assert [s.offset for s in caught] == [later[0]]


async def test_trimmed_history_means_no_recovery(store: RedisRecoveryStore) -> None:
    offsets = await fill(store, ["a"] * 7)  # max_events 5: the first two are gone
    await store.persist(session(None), OPTIONS, 0.0)
    assert await store.peek("/", "pid", offsets[0], OPTIONS, 0.0) is None
    assert await store.peek("/", "pid", offsets[1], OPTIONS, 0.0) is not None  # next ones kept
    assert await store.peek("/", "pid", None, OPTIONS, 0.0) is None  # head None: from the start
    assert await store.peek("/", "pid", "3-otherepoch", OPTIONS, 0.0) is None
    epoch = offsets[0].split("-")[0]
    assert await store.peek("/", "pid", f"{epoch}-99", OPTIONS, 0.0) is None  # the future
    assert await store.peek("/", "pid", f"{int(epoch) + 1}-3", OPTIONS, 0.0) is None
    # a restore that fails still takes the session
    assert await store.restore("/", "pid", offsets[0], NOTHING_LIVE, OPTIONS, 0.0) is None
    assert await store.peek("/", "pid", offsets[1], OPTIONS, 0.0) is None
    assert await store.since("/", None, None, 100) is not None
    assert [s.args for s in await store.since("/", None, None, 100) or []] == [
        (i,) for i in range(2, 7)
    ]
    assert await store.since("/", None, offsets[0], 100) is None
    assert store.usage("/")[0] == 5


async def test_max_bytes_trims_too(store: RedisRecoveryStore) -> None:
    small = RecoveryOptions(max_disconnection_seconds=60, max_events=1000, max_bytes=100)
    offsets = [await store.append("/", "e", ["x" * 30], None, NOBODY, small, 0.0) for _ in range(5)]
    kept = await store.since("/", None, None, 100)
    assert kept is not None
    assert 0 < len(kept) < 5
    assert sum(s.size for s in kept) <= 100
    assert await store.since("/", None, offsets[-len(kept) - 1], 100) is not None
    assert await store.since("/", None, offsets[-len(kept) - 2], 100) is None


async def test_without_an_offset_replay_starts_at_the_sessions_head(
    store: RedisRecoveryStore,
) -> None:
    await store.persist(session(None), OPTIONS, 0.0)  # connected before any event
    offsets = await fill(store, ["a", "a"])
    restored = await store.restore("/", "pid", None, NOTHING_LIVE, OPTIONS, 0.0)
    assert restored is not None
    assert [s.args for s in restored.missed] == [(0,), (1,)]
    await store.persist(session(offsets[0]), OPTIONS, 0.0)
    restored = await store.restore("/", "pid", None, NOTHING_LIVE, OPTIONS, 0.0)
    assert restored is not None
    assert [s.args for s in restored.missed] == [(1,)]


async def test_sessions_expire_after_max_disconnection_seconds(
    store: RedisRecoveryStore, redis: Redis
) -> None:
    short = RecoveryOptions(max_disconnection_seconds=0.3, max_events=100, max_bytes=10_000)
    offsets = await fill(store, ["a", "a"], short)
    key = f"{PREFIX}s:/:pid"
    async with expiry_of(redis, key):
        await store.persist(session(offsets[0]), short, 0.0)
        ttl = await redis.pttl(key)
        assert 0 < ttl <= 300
        assert await store.peek("/", "pid", offsets[0], short, 0.0) is not None
    assert await store.peek("/", "pid", offsets[0], short, 0.0) is None
    # events older than max_disconnection_seconds are trimmed at the next append
    later = await fill(store, ["a"], short)
    assert await store.since("/", None, offsets[0], 10) is None  # the second one is gone
    assert await store.since("/", None, offsets[1], 10) == await store.since("/", None, None, 10)
    assert [s.offset for s in await store.since("/", None, None, 10) or []] == later


async def test_a_lost_history_is_a_new_epoch(store: RedisRecoveryStore, redis: Redis) -> None:
    offsets = await fill(store, ["a", "a"])
    await redis.flushall()
    await store.persist(session(None), OPTIONS, 0.0)
    again = await fill(store, ["a", "a", "a"])
    assert again[0].split("-")[0] != offsets[0].split("-")[0]
    assert await store.peek("/", "pid", offsets[1], OPTIONS, 0.0) is None


async def test_an_append_that_failed_cuts_the_history(
    store: RedisRecoveryStore, redis: Redis
) -> None:
    """An event emitted while Redis did not answer was sent without an offset: no client may
    be restored across it (never a partial replay)."""
    offsets = await fill(store, ["a", "a"])
    await store.persist(session(offsets[0]), OPTIONS, 0.0)
    await redis.execute_command("CLIENT", "PAUSE", "2000", "WRITE")
    try:
        with pytest.raises(RecoveryUnavailable):  # the store client's 0.5 s timeout
            await store.append("/", "e", ["lost"], None, NOBODY, OPTIONS, 0.0)
    finally:
        await redis.execute_command("CLIENT", "UNPAUSE")
    after = await store.append("/", "e", [9], None, NOBODY, OPTIONS, 0.0)
    assert await store.peek("/", "pid", offsets[1], OPTIONS, 0.0) is None
    assert await store.peek("/", "pid", None, OPTIONS, 0.0) is None  # the session's head
    assert await store.since("/", None, after, 10) == []


async def test_binary_arguments_and_exclusions_round_trip(store: RedisRecoveryStore) -> None:
    head = await store.head("/")
    assert head is None
    await store.append(
        "/", "blob", [b"\x00\xff", {"k": [1.5, "x"]}], None, frozenset({"sid"}), OPTIONS, 0.0
    )
    offset = await store.append("/", "blob", [{"b": b"raw"}], frozenset({"a"}), NOBODY, OPTIONS, 0)
    kept = await store.since("/", None, None, 10)
    assert kept is not None
    assert kept[0].args == (b"\x00\xff", {"k": [1.5, "x"]})
    assert kept[0].exclude == frozenset({"sid"})
    assert kept[0].rooms is None
    assert kept[1].args == ({"b": b"raw"},)
    assert kept[1].rooms == frozenset({"a"})
    assert kept[1].packet() == ["blob", {"b": b"raw"}, offset]
    assert not kept[0].reaches(frozenset({"a", "sid"}))  # excluded
    assert await store.since("/", "b", None, 10) == [kept[0]]


async def test_unreachable_redis_raises_recovery_unavailable(
    store: RedisRecoveryStore, redis_server: RedisServer
) -> None:
    redis_server.stop()
    with pytest.raises(RecoveryUnavailable):
        await store.head("/")
    with pytest.raises(RecoveryUnavailable):
        await store.persist(session(None), OPTIONS, 0.0)
