"""`LeanQueue`: the send queue of an Engine.IO session, without asyncio.Queue's fixed cost.

An `asyncio.Queue` allocates three deques and an `asyncio.Event` (a fourth) when it is made:
about 2.5 KiB, held by every connection for its whole life although the queue is empty nearly
all the time. This queue has the subset of the `asyncio.Queue` API python-engineio's sessions
use (`put`, `put_nowait`, `get`, `get_nowait`, `task_done`, `join`, `qsize`, `empty`), with
the same semantics (FIFO, unbounded, FIFO wake-up of waiting getters, a cancelled getter
passes its wake-up on, `join` until every item is marked done), and allocates its deque and its
waiter lists only when they are needed.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable
from typing import Any


class LeanQueue:
    __slots__ = ("_getters", "_items", "_joiners", "_unfinished", "notify")

    def __init__(self) -> None:
        # called after each put: a WebSocket session starts its writer on demand with it
        self.notify: Callable[[], None] | None = None
        self._items: collections.deque[Any] | None = None
        self._getters: collections.deque[asyncio.Future[None]] | None = None
        self._joiners: list[asyncio.Future[None]] | None = None
        self._unfinished = 0

    def qsize(self) -> int:
        return len(self._items) if self._items else 0

    def empty(self) -> bool:
        return not self._items

    def full(self) -> bool:
        return False

    def put_nowait(self, item: Any) -> None:
        if self._items is None:
            self._items = collections.deque()
        self._items.append(item)
        self._unfinished += 1
        if self._getters:
            self._wake_getter()
        if self.notify is not None:
            self.notify()

    async def put(self, item: Any) -> None:
        self.put_nowait(item)

    def get_nowait(self) -> Any:
        if not self._items:
            raise asyncio.QueueEmpty
        return self._items.popleft()

    async def get(self) -> Any:
        while not self._items:
            if self._getters is None:
                self._getters = collections.deque()
            getter = asyncio.get_running_loop().create_future()
            self._getters.append(getter)
            try:
                await getter
            except BaseException:
                getter.cancel()  # just in case getter is not done yet
                if self._getters is not None and getter in self._getters:
                    self._getters.remove(getter)
                # woken before the cancellation: pass the wake-up on to the next getter
                if self._items and not getter.cancelled():
                    self._wake_getter()
                raise
        return self._items.popleft()

    def _wake_getter(self) -> None:
        getters = self._getters
        while getters:
            getter = getters.popleft()
            if not getter.done():
                getter.set_result(None)
                break
        if getters is not None and not getters:
            self._getters = None

    def task_done(self) -> None:
        if self._unfinished <= 0:
            raise ValueError("task_done() called too many times")
        self._unfinished -= 1
        if self._unfinished == 0:
            if self._items is not None and not self._items:
                self._items = None  # an idle connection holds no deque
            joiners, self._joiners = self._joiners, None
            for joiner in joiners or ():
                if not joiner.done():
                    joiner.set_result(None)

    async def join(self) -> None:
        if self._unfinished > 0:
            if self._joiners is None:
                self._joiners = []
            joiner = asyncio.get_running_loop().create_future()
            self._joiners.append(joiner)
            await joiner
