"""`MemoryRecoveryStore`: one process's history rings and disconnected sessions.

Each namespace has a ring of events with consecutive sequence numbers, so finding an offset is
arithmetic, not a search. Offsets read `<seq>-<epoch>`: the epoch is random per store, so an
offset from an earlier process is simply unknown (and the client is not recovered). Nothing
here awaits: every coroutine completes in one step.
"""

from __future__ import annotations

import json
import secrets
from collections import OrderedDict, deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from engine.recovery.options import RecoveryOptions
from engine.recovery.store import Fence, Restored, Session, Stored


def payload_size(args: Sequence[Any]) -> int:
    """Bytes of the arguments as JSON (binary attachments counted by length)."""
    try:
        return len(json.dumps(args, separators=(",", ":"), default=_binary_size))
    except (TypeError, ValueError):
        return 64 * len(args)


def _binary_size(value: object) -> str:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return "x" * len(value)
    raise TypeError(type(value).__name__)


@dataclass(slots=True)
class _History:
    first: int = 1  # sequence number of events[0]
    events: deque[Stored] = field(default_factory=deque)
    bytes: int = 0

    @property
    def last(self) -> int:
        return self.first + len(self.events) - 1

    def trim(self, options: RecoveryOptions, now: float) -> None:
        oldest = now - options.max_disconnection_seconds
        events = self.events
        while events and (
            len(events) > options.max_events
            or self.bytes > options.max_bytes
            or events[0].emitted_at < oldest
        ):
            self.bytes -= events.popleft().size
            self.first += 1


class MemoryRecoveryStore:
    """In-memory `RecoveryStore` (one process; see docs for the Redis layout)."""

    def __init__(self) -> None:
        self.epoch = secrets.token_hex(3)
        self._histories: dict[str, _History] = {}
        self._sessions: dict[str, OrderedDict[str, Session]] = {}

    def _offset(self, seq: int) -> str:
        return f"{seq}-{self.epoch}"

    def _seq(self, offset: str) -> int | None:
        seq, _, epoch = offset.partition("-")
        return int(seq) if epoch == self.epoch and seq.isdigit() else None

    def _sessions_of(self, namespace: str) -> OrderedDict[str, Session]:
        sessions = self._sessions.get(namespace)
        if sessions is None:
            sessions = self._sessions[namespace] = OrderedDict()
        return sessions

    def _history(self, namespace: str) -> _History:
        history = self._histories.get(namespace)
        if history is None:
            history = self._histories[namespace] = _History()
        return history

    async def append(
        self,
        namespace: str,
        event: str,
        args: Sequence[Any],
        rooms: frozenset[str] | None,
        exclude: frozenset[str],
        options: RecoveryOptions,
        now: float,
    ) -> str:
        history = self._history(namespace)
        offset = self._offset(history.last + 1)
        size = payload_size(args) + len(event) + len(offset)
        stored = Stored(offset, event, tuple(args), rooms, exclude, size, now)
        history.events.append(stored)
        history.bytes += size
        history.trim(options, now)
        return offset

    async def head(self, namespace: str) -> str | None:
        history = self._histories.get(namespace)
        if history is None or not history.events:
            return None if history is None else self._offset(history.last)
        return history.events[-1].offset

    def _expire(self, namespace: str, options: RecoveryOptions, now: float) -> None:
        sessions = self._sessions.get(namespace)
        oldest = now - options.max_disconnection_seconds
        while sessions:
            pid, session = next(iter(sessions.items()))
            if session.disconnected_at >= oldest:
                break
            del sessions[pid]

    async def persist(self, session: Session, options: RecoveryOptions, now: float) -> None:
        sessions = self._sessions.setdefault(session.namespace, OrderedDict())
        sessions.pop(session.pid, None)
        sessions[session.pid] = session  # disconnection order = expiry order
        self._expire(session.namespace, options, now)

    def _start(self, namespace: str, offset: str | None, session: Session) -> int | None:
        """Index in the ring of the first event after `offset` (or after the session's head)."""
        history = self._history(namespace)
        mark = offset if offset is not None else session.head
        if mark is None:  # the history was empty when the session started
            seq = 0
        else:
            found = self._seq(mark)
            if found is None:
                return None
            seq = found
        if not history.first - 1 <= seq <= history.last:
            return None  # events after it were trimmed (or it is from the future)
        return seq + 1 - history.first

    async def peek(
        self, namespace: str, pid: str, offset: str | None, options: RecoveryOptions, now: float
    ) -> Session | None:
        self._expire(namespace, options, now)
        session = self._sessions_of(namespace).get(pid)
        if session is None or self._start(namespace, offset, session) is None:
            return None
        return session

    async def restore(
        self,
        namespace: str,
        pid: str,
        offset: str | None,
        fence: Fence,
        options: RecoveryOptions,
        now: float,
    ) -> Restored | None:
        self._expire(namespace, options, now)
        session = self._sessions_of(namespace).pop(pid, None)
        if session is None:
            return None
        start = self._start(namespace, offset, session)
        if start is None:
            return None
        fenced = self._seq(fence.after) if fence.after is not None else 0
        events = self._history(namespace).events
        missed = []
        for index in range(start, len(events)):
            stored = events[index]
            if not stored.reaches(session.rooms):
                continue
            seq = self._seq(stored.offset)
            live = bool(fence.rooms) and fenced is not None and seq is not None and seq > fenced
            if live and stored.reaches(fence.rooms):
                continue  # sent to the connection while it was reconnecting: delivered live
            missed.append(stored)
        return Restored(session, tuple(missed), await self.head(namespace))

    async def after(
        self, namespace: str, offset: str | None, rooms: frozenset[str]
    ) -> list[Stored] | None:
        history = self._history(namespace)
        seq = 0 if offset is None else self._seq(offset)
        if seq is None or not history.first - 1 <= seq <= history.last:
            return None
        events = history.events
        return [
            events[index]
            for index in range(seq + 1 - history.first, len(events))
            if events[index].reaches(rooms)
        ]

    async def discard(self, namespace: str, pid: str) -> None:
        self._sessions_of(namespace).pop(pid, None)

    async def since(
        self, namespace: str, room: str | None, offset: str | None, limit: int
    ) -> list[Stored] | None:
        history = self._history(namespace)
        start = 0
        if offset is not None:
            seq = self._seq(offset)
            if seq is None or not history.first - 1 <= seq <= history.last:
                return None
            start = seq + 1 - history.first
        out: list[Stored] = []
        events = history.events
        for index in range(start, len(events)):
            stored = events[index]
            if room is None or stored.rooms is None or room in stored.rooms:
                out.append(stored)
                if len(out) >= limit:
                    break
        return out

    def usage(self, namespace: str) -> tuple[int, int, int]:
        history = self._histories.get(namespace)
        sessions = self._sessions_of(namespace)
        if history is None:
            return 0, 0, len(sessions)
        return len(history.events), history.bytes, len(sessions)

    async def aclose(self) -> None:
        """Nothing to release."""
