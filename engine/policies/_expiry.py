"""A min-heap of per-key deadlines with lazy invalidation.

Bounded-memory containers need to find "the entry that stops mattering first" in O(log n)
without rescanning every key; rescans would turn eviction into a CPU amplification vector.
"""

from __future__ import annotations

import heapq
import math


class ExpiryIndex:
    """Deadline per key; superseded heap entries are skipped when they surface."""

    __slots__ = ("_current", "_heap", "_seq")

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, str]] = []
        self._current: dict[str, int] = {}
        self._seq = 0

    def set(self, key: str, deadline: float) -> None:
        self._seq += 1
        self._current[key] = self._seq
        heapq.heappush(self._heap, (deadline, self._seq, key))
        # Hot keys push one entry per update; rebuild so stale entries never dominate memory.
        if len(self._heap) > 2 * len(self._current) + 64:
            self._heap = [e for e in self._heap if self._current.get(e[2]) == e[1]]
            heapq.heapify(self._heap)

    def discard(self, key: str) -> None:
        self._current.pop(key, None)

    def peek(self) -> tuple[float, str] | None:
        """Earliest live deadline, dropping stale entries on the way."""
        heap = self._heap
        while heap:
            deadline, seq, key = heap[0]
            if self._current.get(key) == seq:
                return deadline, key
            heapq.heappop(heap)
        return None

    def pop_due(self, now: float) -> list[str]:
        """Remove and return every key whose deadline is at or before ``now``."""
        heap = self._heap
        if not heap or heap[0][0] > now:
            return []  # every entry, stale or live, is later: nothing is due
        due: list[str] = []
        while (top := self.peek()) is not None and top[0] <= now:
            heapq.heappop(self._heap)
            del self._current[top[1]]
            due.append(top[1])
        return due

    def __len__(self) -> int:
        return len(self._current)


def delay_until(now: float, deadline: float) -> float:
    """Smallest float delay ``d >= 0`` with ``now + d >= deadline``.

    ``deadline - now`` can round one ulp short; a client told to retry after ``d`` must find
    the deadline passed when it does.
    """
    delay = max(0.0, deadline - now)
    for _ in range(64):
        if now + delay >= deadline:
            return delay
        delay = max(math.nextafter(delay, math.inf), math.nextafter(now + delay, math.inf) - now)
    return delay  # pragma: no cover - converges within a few ulps
