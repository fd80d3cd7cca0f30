"""`LeanQueue`: the send queue of an Engine.IO session, without asyncio.Queue's fixed cost.

An `asyncio.Queue` allocates three deques and an `asyncio.Event` (a fourth) when it is made:
about 2.5 KiB, held by every connection for its whole life although the queue is empty nearly
all the time. This queue has the subset of the `asyncio.Queue` API python-engineio's sessions
use (`put`, `put_nowait`, `get`, `get_nowait`, `task_done`, `join`, `qsize`, `empty`), with
the same semantics (FIFO, optionally bounded, FIFO wake-up of waiting getters and putters, a
cancelled waiter passes its wake-up on, `join` until every item is marked done), and allocates
its deque and its waiter lists only when they are needed. hypercorn's per-connection ASGI
receive queue is one too (`engine.transport.patches`).
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable
from typing import Any


class LeanQueue:
    __slots__ = ("_getters", "_items", "_joiners", "_putters", "_unfinished", "maxsize", "notify")

    def __init__(self, maxsize: int = 0) -> None:
        self.maxsize = maxsize  # 0: unbounded; otherwise `put` waits while the queue is full
        self._putters: list[asyncio.Future[None]] | None = None
        # called after each put: a WebSocket session starts its writer on demand with it
        self.notify: Callable[[], None] | None = None
        self._items: collections.deque[Any] | None = None
        self._getters: list[asyncio.Future[None]] | None = None
        self._joiners: list[asyncio.Future[None]] | None = None
        self._unfinished = 0

    def qsize(self) -> int:
        return len(self._items) if self._items else 0

    def empty(self) -> bool:
        return not self._items

    def full(self) -> bool:
        return 0 < self.maxsize <= self.qsize()

    def put_nowait(self, item: Any) -> None:
        if self.maxsize and self.full():
            raise asyncio.QueueFull
        if self._items is None:
            self._items = collections.deque()
        self._items.append(item)
        self._unfinished += 1
        if self._getters:
            self._wake_getter()
        if self.notify is not None:
            self.notify()

    async def put(self, item: Any) -> None:
        while self.maxsize and self.full():
            if self._putters is None:
                self._putters = []
            putter = asyncio.get_running_loop().create_future()
            self._putters.append(putter)
            try:
                await putter
            except BaseException:
                putter.cancel()
                if self._putters is not None and putter in self._putters:
                    self._putters.remove(putter)
                if not self.full() and not putter.cancelled():
                    self._wake(self._putters)
                raise
        self.put_nowait(item)

    def get_nowait(self) -> Any:
        if not self._items:
            raise asyncio.QueueEmpty
        item = self._items.popleft()
        if not self._items:
            self._items = None  # an idle connection holds no deque (~600 bytes)
        if self._putters:
            self._wake(self._putters)
        return item

    async def get(self) -> Any:
        while not self._items:
            if self._getters is None:
                self._getters = []
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
        return self.get_nowait()

    def _wake_getter(self) -> None:
        self._wake(self._getters)

    @staticmethod
    def _wake(waiters: list[asyncio.Future[None]] | None) -> None:
        while waiters:
            waiter = waiters.pop(0)
            if not waiter.done():
                waiter.set_result(None)
                break

    def task_done(self) -> None:
        if self._unfinished <= 0:
            raise ValueError("task_done() called too many times")
        self._unfinished -= 1
        if self._unfinished == 0:
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
