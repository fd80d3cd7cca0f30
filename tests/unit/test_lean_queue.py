"""LeanQueue keeps asyncio.Queue's semantics for what python-engineio's sessions use."""

from __future__ import annotations

import asyncio

import pytest

from engine.transport.lean import LeanQueue


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


def test_fifo_and_empty() -> None:
    q = LeanQueue()
    assert q.empty()
    assert q.qsize() == 0
    with pytest.raises(asyncio.QueueEmpty):
        q.get_nowait()
    for i in range(3):
        q.put_nowait(i)
    assert q.qsize() == 3
    assert [q.get_nowait() for _ in range(3)] == [0, 1, 2]


def test_getters_are_woken_in_order_and_join_waits_for_task_done() -> None:
    async def main() -> list[object]:
        q = LeanQueue()
        got: list[object] = []

        async def getter(tag: str) -> None:
            got.append((tag, await q.get()))
            q.task_done()

        tasks = [asyncio.create_task(getter(t)) for t in "ab"]
        await asyncio.sleep(0)
        await q.put(1)
        q.put_nowait(2)
        await asyncio.wait_for(q.join(), 1)
        await asyncio.gather(*tasks)
        return got

    assert run(main()) == [("a", 1), ("b", 2)]


def test_a_cancelled_getter_passes_its_wakeup_on() -> None:
    async def main() -> object:
        q = LeanQueue()
        first = asyncio.create_task(q.get())
        second = asyncio.create_task(q.get())
        await asyncio.sleep(0)
        q.put_nowait("x")  # wakes `first` ...
        first.cancel()  # ... which is cancelled before it runs
        return await asyncio.wait_for(second, 1)

    assert run(main()) == "x"


def test_task_done_too_often_raises_and_idle_queue_drops_its_deque() -> None:
    q = LeanQueue()
    q.put_nowait(1)
    q.get_nowait()
    q.task_done()
    with pytest.raises(ValueError, match="too many"):
        q.task_done()


def test_wait_for_timeout_leaves_no_getter() -> None:
    async def main() -> None:
        q = LeanQueue()
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(q.get(), 0.01)
        assert not q._getters
        q.put_nowait(5)
        assert await q.get() == 5

    run(main())


def test_bounded_put_waits_until_a_get() -> None:
    async def main() -> list[int]:
        q = LeanQueue(2)
        q.put_nowait(1)
        await q.put(2)
        assert q.full()
        with pytest.raises(asyncio.QueueFull):
            q.put_nowait(3)
        putter = asyncio.create_task(q.put(3))
        await asyncio.sleep(0)
        assert not putter.done()
        first = await q.get()
        await asyncio.wait_for(putter, 1)
        return [first, q.get_nowait(), q.get_nowait()]

    assert run(main()) == [1, 2, 3]
