"""The cost of connection state recovery with `[cluster] adapter = "redis"`.

    .venv/bin/python -m bench.recovery_redis

Starts its own redis-server (tests/redis_server.py) on a free port, then:

1. memory: `MEMORY USAGE` of a namespace's history stream (and its meta hash) holding 10,000
   events of the payload of bench.recovery (`{"n": i, "text": <100 chars>}` to one room);
2. append: one recoverable emit's store call (one Lua script, a loopback round trip);
3. restore of 1,000 missed events in the store alone (GET+DEL of the session, check, XRANGE,
   decode, filter by room), median of 5;
4. replay: a real engine with adapter "redis" and the official socket.io-client (Node) cut off
   while 1,000 events are sent to its room; time from its reconnect to `connect` with all
   1,000 replayed, median of 5 (bench.recovery.replay with another profile).
"""

from __future__ import annotations

import asyncio
import os
import statistics
import tempfile
import time
from pathlib import Path

from redis.asyncio import Redis

from bench import recovery
from engine.auth import Identity
from engine.cluster.options import ClusterOptions
from engine.recovery import Fence, RecoveryOptions, Session
from engine.recovery.redis import RedisRecoveryStore
from tests.redis_server import RedisServer

TEXT = recovery.TEXT
OPTIONS = RecoveryOptions(max_events=10_000, max_bytes=100_000_000)
ROOMS = frozenset({"feed:1"})


def store_for(url: str, channel: str) -> RedisRecoveryStore:
    return RedisRecoveryStore.from_options(
        ClusterOptions(adapter="redis", url=url, channel=channel)
    )


async def memory(url: str, events: int) -> tuple[float, float]:
    store = store_for(url, "memory")
    for n in range(events):
        await store.append("/", "tick", [{"n": n, "text": TEXT}], ROOMS, frozenset(), OPTIONS, 0)
    client = Redis.from_url(url)
    stream = await client.memory_usage("engine:memory:rec:h:/", samples=0) or 0
    meta = await client.memory_usage("engine:memory:rec:m:/", samples=0) or 0
    await client.aclose()
    await store.aclose()
    return stream / events, (stream + meta) / 1e6


async def append_cost(url: str, events: int) -> float:
    store = store_for(url, "append")
    started = time.perf_counter()
    for n in range(events):
        await store.append("/", "tick", [{"n": n, "text": TEXT}], ROOMS, frozenset(), OPTIONS, 0)
    elapsed = (time.perf_counter() - started) / events
    await store.aclose()
    return elapsed


async def restore_alone(url: str, events: int, channel: str) -> float:
    store = store_for(url, channel)
    rooms = frozenset({"feed:1", "sid-1"})
    first = await store.append("/", "tick", [{"n": -1}], rooms, frozenset(), OPTIONS, 0)
    for n in range(events):
        await store.append("/", "tick", [{"n": n, "text": TEXT}], rooms, frozenset(), OPTIONS, 0)
    session = Session("/", "pid", "sid-1", rooms, frozenset(), Identity("u"), None, 0.0)
    await store.persist(session, OPTIONS, 0)
    started = time.perf_counter()
    restored = await store.restore("/", "pid", first, Fence(None, frozenset()), OPTIONS, 0)
    elapsed = time.perf_counter() - started
    assert restored is not None
    assert len(restored.missed) == events
    await store.aclose()
    return elapsed


async def main(url: str) -> None:
    per_event, full = await memory(url, 10_000)
    print(f"history in Redis: {per_event:.0f} bytes per event (MEMORY USAGE of the stream);")
    print(f"  a full default history (10,000 events): {full:.1f} MB")
    append = statistics.median([await append_cost(url, 2_000) for _ in range(3)])
    print(f"append (per recoverable emit): {append * 1e6:.0f} us")
    alone = statistics.median([await restore_alone(url, 1000, f"r{i}") for i in range(5)])
    print(f"store.restore of 1,000 events: {alone * 1000:.1f} ms")
    recovery.PROFILE += f'\n[cluster]\nadapter = "redis"\nurl = "{url}"\n'
    baseline = await recovery.replay(0, 5)
    print(
        "reconnect -> connect, nothing missed (recovered): "
        f"median {statistics.median(baseline) * 1000:.0f} ms"
    )
    times = await recovery.replay(1000, 5)
    print(
        "reconnect -> connect with 1,000 replayed (official client, websocket): "
        f"median {statistics.median(times) * 1000:.0f} ms "
        f"[{min(times) * 1000:.0f}-{max(times) * 1000:.0f}]"
    )


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        server = RedisServer(Path(tmp))
        server.start()
        try:
            asyncio.run(main(os.environ.get("BENCH_REDIS_URL", server.url)))
        finally:
            server.stop()
