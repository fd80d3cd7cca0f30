"""The cost of connection state recovery: history memory and replay time.

    .venv/bin/python -m bench.recovery

1. memory: `tracemalloc` around a namespace history filled with N events of a typical payload
   (`{"n": i, "text": <100 chars>}` to one room), per event and for a full default ring;
2. replay: a real engine, the official socket.io-client (Node, tests/js/session.mjs) cut off
   while 1,000 events are sent to its room; time from its reconnect to `connect` with all
   1,000 replayed (median of 5), and the store's `restore` alone.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
import tracemalloc
from pathlib import Path

from engine.auth import Identity
from engine.recovery import Fence, MemoryRecoveryStore, RecoveryOptions, Session

TEXT = "x" * 100
OPTIONS = RecoveryOptions(max_events=10_000, max_bytes=100_000_000)


async def memory(events: int) -> float:
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    store = MemoryRecoveryStore()
    rooms = frozenset({"feed:1"})
    for n in range(events):
        await store.append("/", "tick", [{"n": n, "text": TEXT}], rooms, frozenset(), OPTIONS, 0)
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    grown = sum(s.size_diff for s in after.compare_to(before, "filename"))
    return grown / events


async def append_cost(events: int) -> float:
    store = MemoryRecoveryStore()
    rooms = frozenset({"feed:1"})
    started = time.perf_counter()
    for n in range(events):
        await store.append("/", "tick", [{"n": n, "text": TEXT}], rooms, frozenset(), OPTIONS, 0)
    return (time.perf_counter() - started) / events


async def restore_alone(events: int) -> float:
    store = MemoryRecoveryStore()
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
    return elapsed


PROFILE = """
[engine]
name = "bench-recovery"
environment = "development"
[server]
allowed_origins = ["*"]
[namespaces."/"]
handler = "tests.handlers:WatchedNamespace"
client_join = ["feed:*"]
[namespaces."/".recovery]
max_events = 10000
"""


async def replay(events: int, rounds: int) -> list[float]:
    from tests.conftest import serving
    from tests.handlers import WatchedNamespace
    from tests.integration.js_session import js_session

    out = []
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "profile.toml"
        path.write_text(PROFILE)
        async with serving(path) as running, js_session(running.url) as client:
            await client.send(cmd="connect")
            await client.until_type("connect")
            await client.send(cmd="emit", event="join_room", args=["feed:1"])
            await client.until_type("ack")
            await running.engine.sio.emit("tick", {"n": -1}, room="feed:1")
            await client.events("tick", 1)
            for _ in range(rounds):
                sid = client.seen[-1].get("id") or [s for s in client.seen if "id" in s][-1]["id"]
                await client.send(cmd="cut")
                await client.until_type("disconnect")
                await WatchedNamespace.ended(sid).wait()
                for n in range(events):
                    await running.engine.sio.emit("tick", {"n": n, "text": TEXT}, room="feed:1")
                start = len(client.seen)
                started = time.perf_counter()
                await client.send(cmd="connect")
                connect = await client.until_type("connect")
                elapsed = time.perf_counter() - started
                got = sum(1 for line in client.seen[start:] if line.get("event") == "tick")
                assert connect["recovered"] is True, connect
                assert got == events, got
                out.append(elapsed)
    return out


async def main() -> None:
    per_event = await memory(10_000)
    print(f"history memory: {per_event:.0f} bytes per event ({len(TEXT) + 10}-byte payload); ")
    print(f"  a full default ring (10,000 events): {per_event * 10_000 / 1e6:.1f} MB")
    append = statistics.median([await append_cost(10_000) for _ in range(3)])
    print(f"append (per recoverable emit): {append * 1e6:.1f} us")
    alone = statistics.median([await restore_alone(1000) for _ in range(5)])
    print(f"store.restore of 1,000 events: {alone * 1000:.2f} ms")
    baseline = await replay(0, 5)
    print(
        "reconnect -> connect, nothing missed (recovered): "
        f"median {statistics.median(baseline) * 1000:.0f} ms"
    )
    times = await replay(1000, 5)
    print(
        "reconnect -> connect with 1,000 replayed (official client, websocket): "
        f"median {statistics.median(times) * 1000:.0f} ms "
        f"[{min(times) * 1000:.0f}-{max(times) * 1000:.0f}]"
    )


if __name__ == "__main__":
    asyncio.run(main())
