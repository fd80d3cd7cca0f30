"""The `RecoveryStore` protocol: a namespace's event history and its disconnected sessions.

Offsets are opaque strings chosen by the store (the official clients only require the last
argument of a recoverable event to be a string). Operations are coroutines so that a
networked store (`engine.recovery.redis`: streams, keys with a TTL) fits the same seam; a
store that cannot answer raises `RecoveryUnavailable`. The server holds back what it sends to
a resuming connection while the store is asked (see `engine.recovery.adapter`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from engine.auth import Identity
from engine.recovery.options import RecoveryOptions


@dataclass(frozen=True, slots=True)
class Session:
    """What a connection leaves behind when its transport is lost.

    :param rooms: every room the connection was in (its own sid room included).
    :param client_rooms: the subset joined with `join_room` (leave_room and the room cap need it).
    :param identity: who it authenticated as.
    :param head: the history's last offset when the connection became live; a client that
        received no recoverable event (so sends no offset) missed everything after it.
    """

    namespace: str
    pid: str
    sid: str
    rooms: frozenset[str]
    client_rooms: frozenset[str]
    identity: Identity
    head: str | None
    disconnected_at: float


@dataclass(frozen=True, slots=True)
class Stored:
    """One recoverable event as kept in the history.

    :param rooms: the rooms it was sent to; None for the whole namespace.
    :param exclude: sids (rooms) it was not sent to.
    """

    offset: str
    event: str
    args: tuple[Any, ...]
    rooms: frozenset[str] | None
    exclude: frozenset[str]
    size: int
    emitted_at: float

    def reaches(self, rooms: frozenset[str]) -> bool:
        """Whether a connection in `rooms` was a recipient (socket.io's shouldIncludePacket)."""
        included = self.rooms is None or not self.rooms.isdisjoint(rooms)
        return included and self.exclude.isdisjoint(rooms)

    def packet(self) -> list[Any]:
        """The EVENT packet's data: name, arguments, then the offset."""
        return [self.event, *self.args, self.offset]


@dataclass(frozen=True, slots=True)
class Fence:
    """What a reconnecting connection may already have received live before its rooms were
    restored: everything after `after` (None: the history was empty) sent to the whole
    namespace or to one of `rooms` (empty: nothing was received live)."""

    after: str | None
    rooms: frozenset[str]


@dataclass(frozen=True, slots=True)
class Restored:
    """A taken session and the events it missed.

    :param through: the history's head when `missed` was read (None: empty); events after it
        may still be owed (`RecoveryStore.after`) when the store awaited in between.
    """

    session: Session
    missed: tuple[Stored, ...]
    through: str | None = None


class RecoveryUnavailable(Exception):
    """The store could not answer (a networked store is unreachable)."""


class RecoveryStore(Protocol):
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
        """Keep one event in `namespace`'s history (bounded by `options`); its offset."""
        ...

    async def head(self, namespace: str) -> str | None:
        """The offset of the newest event in `namespace`'s history (None: empty)."""
        ...

    async def persist(self, session: Session, options: RecoveryOptions, now: float) -> None:
        """Keep a disconnected session for `options.max_disconnection_seconds`."""
        ...

    async def peek(
        self, namespace: str, pid: str, offset: str | None, options: RecoveryOptions, now: float
    ) -> Session | None:
        """The session `pid`, if it could be restored from `offset` now (nothing consumed)."""
        ...

    async def restore(
        self,
        namespace: str,
        pid: str,
        offset: str | None,
        fence: Fence,
        options: RecoveryOptions,
        now: float,
    ) -> Restored | None:
        """Take the session `pid` (once) and every event after `offset` it was a recipient of,
        in order, minus what `fence` says was delivered live; None when anything is missing
        (expired, unknown, offset trimmed): recovery is all or nothing."""
        ...

    async def after(
        self, namespace: str, offset: str | None, rooms: frozenset[str]
    ) -> list[Stored] | None:
        """Events after `offset` (None: from the start of an empty history) that a connection
        in `rooms` was a recipient of; None when any of them is no longer kept."""
        ...

    async def discard(self, namespace: str, pid: str) -> None:
        """Forget a session (it was taken over or refused)."""
        ...

    async def since(
        self, namespace: str, room: str | None, offset: str | None, limit: int
    ) -> list[Stored] | None:
        """Events after `offset` (all kept ones when None) sent to `room` or to the whole
        namespace (every event when `room` is None); None when `offset` is no longer kept."""
        ...

    def usage(self, namespace: str) -> tuple[int, int, int]:
        """(events, payload bytes, sessions) kept for `namespace` (best effort, for metrics)."""
        ...

    async def aclose(self) -> None:
        """Release connections (`engine.serve` calls it at shutdown)."""
        ...
