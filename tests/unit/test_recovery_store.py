"""`MemoryRecoveryStore` and the progress task rules, without I/O (time is an argument)."""

from __future__ import annotations

import pytest

from engine.auth import Identity
from engine.progress.task import TaskState, eta, next_send
from engine.recovery import Fence, MemoryRecoveryStore, RecoveryOptions, Session

pytestmark = pytest.mark.anyio
OPTIONS = RecoveryOptions(max_disconnection_seconds=60, max_events=5, max_bytes=10_000)
NOBODY: frozenset[str] = frozenset()


def session(head: str | None, rooms: frozenset[str] = frozenset({"a", "sid"})) -> Session:
    return Session("/", "pid", "sid", rooms, frozenset(), Identity("u"), head, 0.0)


async def fill(store: MemoryRecoveryStore, rooms: list[str | None]) -> list[str]:
    return [
        await store.append("/", "e", [i], frozenset({r}) if r else None, NOBODY, OPTIONS, float(i))
        for i, r in enumerate(rooms)
    ]


async def test_restore_is_all_or_nothing_and_once() -> None:
    store = MemoryRecoveryStore()
    offsets = await fill(store, ["a", "b", None, "a"])
    await store.persist(session(None), OPTIONS, 10)
    restored = await store.restore("/", "pid", offsets[0], Fence(None, NOBODY), OPTIONS, 10)
    assert restored is not None
    assert [s.args for s in restored.missed] == [(2,), (3,)]  # not room b
    again = await store.restore("/", "pid", offsets[0], Fence(None, NOBODY), OPTIONS, 10)
    assert again is None  # a session is taken once
    assert restored.through == offsets[-1]
    later = await fill(store, ["b", "a"])
    assert await store.after("/", restored.through, frozenset({"a"})) == [
        s for s in await store.since("/", None, offsets[-1], 10) or [] if s.offset == later[1]
    ]
    await fill(store, ["a"] * 5)
    assert await store.after("/", restored.through, frozenset({"a"})) is None  # trimmed


async def test_trimmed_history_or_expiry_means_no_recovery() -> None:
    store = MemoryRecoveryStore()
    offsets = await fill(store, ["a"] * 7)  # max_events 5: the first two are gone
    await store.persist(session(None), OPTIONS, 10)
    assert await store.peek("/", "pid", offsets[0], OPTIONS, 10) is None
    assert await store.peek("/", "pid", offsets[1], OPTIONS, 10) is not None  # next ones kept
    assert await store.peek("/", "pid", offsets[1], OPTIONS, 71) is None  # 61 s later
    assert await store.peek("/", "pid", "3-otherepoch", OPTIONS, 10) is None


async def test_without_an_offset_replay_starts_at_the_sessions_head() -> None:
    store = MemoryRecoveryStore()
    offsets = await fill(store, ["a", "a"])
    await store.persist(session(offsets[0]), OPTIONS, 10)
    restored = await store.restore("/", "pid", None, Fence(None, NOBODY), OPTIONS, 10)
    assert restored is not None
    assert [s.args for s in restored.missed] == [(1,)]


async def test_the_fence_leaves_out_what_was_delivered_live() -> None:
    store = MemoryRecoveryStore()
    offsets = await fill(store, ["a", "a"])
    await store.persist(session(None), OPTIONS, 10)
    head = await store.head("/")
    later = await fill(store, ["sid", "a", None])  # while reconnecting: to its sid, a, everyone
    fence = Fence(head, frozenset({"sid"}))
    restored = await store.restore("/", "pid", offsets[0], fence, OPTIONS, 10)
    assert restored is not None
    assert [s.offset for s in restored.missed] == [offsets[1], later[1]]


def test_eta_and_coalescing_rule() -> None:
    assert eta((0.0, 0.0), 10.0, 25.0) == 30.0
    assert eta(None, 10.0, 25.0) is None
    assert next_send(None, 5.0, 10) == 5.0
    assert next_send(5.0, 5.01, 10) == pytest.approx(5.1)
    state = TaskState("t", "u").update(0.0, percent=0).update(10.0, percent=50)
    assert state.eta_seconds == 10.0
    done = state.update(11.0, status="completed")
    assert done.percent == 100
    with pytest.raises(ValueError, match="already completed"):
        done.update(12.0, percent=1)
