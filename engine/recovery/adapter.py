"""`Recovery`: the server side of connection state recovery, between `EngineServer` and a store.

The wire format is socket.io's (4.6+):

- the CONNECT reply of a namespace with recovery is `{"sid": ..., "pid": ...}`; `pid` is a
  private session id that only this client learns;
- every recoverable event (sent to a room or to the namespace, without an acknowledgement)
  carries its offset, a string, as its last argument;
- a reconnecting client sends `{"pid", "offset", ...auth}` in its CONNECT; if the session is
  restorable it gets its old sid, its rooms and identity, and every missed event, in order,
  before the CONNECT reply carrying the *same* pid (`socket.recovered === true`); otherwise a
  fresh session with a new pid and nothing replayed.

Order and exactly-once: a CONNECT that names a restorable session *claims* it (before the sid
exists); from then on the server holds back every packet to that Engine.IO session. The
connection is admitted (authentication runs again unless `skip_auth_on_recovery`), then
`resume` takes the session and reads the events it missed (the history's head `through`), the
server joins its rooms and reads what was appended between that read and the join (`catch_up`:
with a networked store, awaits let events in), sends the replay, and releases the held
packets, dropping the recoverable events it has just replayed (by offset; the server keeps
checking for late copies of them, e.g. delivered by another node through the broker). An
event appended after the catch-up read reaches the connection live, since it joined its rooms
before that read. Recovery stays all or nothing: a store that cannot answer means no recovery.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from engine.auth import Identity
from engine.recovery.options import RecoveryOptions
from engine.recovery.store import (
    Fence,
    RecoveryStore,
    RecoveryUnavailable,
    Restored,
    Session,
    Stored,
)

log = logging.getLogger("engine.recovery")

UNKNOWN_HEAD = "?"  # a head the store could not tell: no offset-less restore from it
NOTHING_LIVE = Fence(None, frozenset())  # the server holds packets back instead of fencing


def new_pid() -> str:
    """A private session id: 15 random bytes, base64url (as socket.io's base64id)."""
    return secrets.token_urlsafe(15)


@dataclass(frozen=True, slots=True)
class Claim:
    """A CONNECT naming a restorable session: what `resume` will try to take."""

    pid: str
    offset: str | None
    session: Session
    fence: Fence


def requested(auth: Any) -> tuple[str, str | None] | None:
    """The `(pid, offset)` a reconnecting official client sends in its CONNECT payload."""
    if not isinstance(auth, Mapping):
        return None
    pid, offset = auth.get("pid"), auth.get("offset")
    if not isinstance(pid, str) or not 0 < len(pid) <= 64:
        return None
    if offset is not None and (not isinstance(offset, str) or len(offset) > 64):
        return None
    return pid, offset


def targets(to: Any) -> frozenset[str] | None:
    """python-socketio's `to`/`room` argument as a room set; None for the whole namespace."""
    if to is None:
        return None
    if isinstance(to, str):
        return frozenset({to})
    return frozenset(str(room) for room in to)


def excluded(skip_sid: Any) -> frozenset[str]:
    if skip_sid is None:
        return frozenset()
    if isinstance(skip_sid, str):
        return frozenset({skip_sid})
    return frozenset(str(sid) for sid in skip_sid)


def arguments(data: Any) -> list[Any]:
    """python-socketio's `data`: a tuple is several arguments, None none, anything else one."""
    if isinstance(data, tuple):
        return list(data)
    return [] if data is None else [data]


class Recovery:
    """Sessions and history of every namespace that declares `recovery`.

    :param options: the current runtime's recovery options of a namespace (None: off).
    :param store: where history and sessions live.
    """

    def __init__(
        self,
        options: Callable[[str], RecoveryOptions | None],
        store: RecoveryStore,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.options = options
        self.store = store
        self.clock = clock
        self.claims: dict[tuple[str, str], Claim] = {}
        self.pids: dict[tuple[str, str], str] = {}  # live connections: (namespace, sid) -> pid
        self.heads: dict[tuple[str, str], str | None] = {}
        self.recovered: set[tuple[str, str]] = set()

    def enabled(self, namespace: str) -> bool:
        return self.options(namespace) is not None

    # -- emit --------------------------------------------------------------------------------

    async def stamp(
        self, namespace: str, event: str, data: Any, to: Any, skip_sid: Any
    ) -> tuple[Any, ...] | None:
        """Keep a recoverable event; its arguments with the offset appended (None: off)."""
        options = self.options(namespace)
        if options is None:
            return None
        args = arguments(data)
        try:
            offset = await self.store.append(
                namespace, event, args, targets(to), excluded(skip_sid), options, self.clock()
            )
        except RecoveryUnavailable as exc:
            # sent live without an offset; the store marks the gap on its next append
            log.warning("recovery store: %s not kept (%s)", event, exc)
            return None
        return (*args, offset)

    # -- CONNECT -----------------------------------------------------------------------------

    async def claim(
        self, namespace: str, auth: Any, identify: Callable[[], Identity | None]
    ) -> Claim | None:
        """Phase one, before the sid exists: is the session named in `auth` restorable for
        this client? `identify` authenticates it (not called with skip_auth_on_recovery)."""
        options = self.options(namespace)
        asked = requested(auth)
        if options is None or asked is None:
            return None
        pid, offset = asked
        try:
            session = await self.store.peek(namespace, pid, offset, options, self.clock())
        except RecoveryUnavailable as exc:
            log.warning("recovery store: cannot restore sessions (%s)", exc)
            return None
        if session is None:
            return None
        if not options.skip_auth_on_recovery:
            identity = identify()
            if identity is None or identity.user_id != session.identity.user_id:
                return None
        return Claim(pid, offset, session, NOTHING_LIVE)

    def hold(self, namespace: str, sid: str, claim: Claim) -> None:
        self.claims[(namespace, sid)] = claim

    def identity_for(self, namespace: str, sid: str) -> Identity | None:
        """The session's identity when it is to be kept without authenticating again."""
        claim = self.claims.get((namespace, sid))
        options = self.options(namespace)
        if claim is None or options is None or not options.skip_auth_on_recovery:
            return None
        return claim.session.identity

    async def resume(self, namespace: str, sid: str, identity: Identity) -> Restored | None:
        """Phase two, once admitted: take the claimed session and the events it missed.

        The caller joins the rooms and sends the events without awaiting anything else first.
        """
        claim = self.claims.pop((namespace, sid), None)
        options = self.options(namespace)
        if claim is None or options is None:
            return None
        try:
            if identity.user_id != claim.session.identity.user_id:
                await self.store.discard(namespace, claim.pid)
                return None
            restored = await self.store.restore(
                namespace, claim.pid, claim.offset, claim.fence, options, self.clock()
            )
        except RecoveryUnavailable as exc:
            log.warning("recovery store: cannot restore sessions (%s)", exc)
            return None
        if restored is not None:
            self.pids[(namespace, sid)] = claim.pid
            self.recovered.add((namespace, sid))
        return restored

    async def catch_up(self, namespace: str, restored: Restored) -> list[Stored] | None:
        """Events appended after `restored` was read, for its rooms (None: the store cannot
        tell, or some are gone: no recovery)."""
        try:
            return await self.store.after(namespace, restored.through, restored.session.rooms)
        except RecoveryUnavailable as exc:
            log.warning("recovery store: cannot restore sessions (%s)", exc)
            return None

    def forget(self, namespace: str, sid: str) -> None:
        """A resumed session could not be completed: the connection is not a recovered one."""
        self.recovered.discard((namespace, sid))
        self.pids.pop((namespace, sid), None)

    def abandon(self, namespace: str, sid: str) -> None:
        """The CONNECT was refused: the claim lapses (the session stays for another try)."""
        self.claims.pop((namespace, sid), None)

    async def connected(self, namespace: str, sid: str) -> str:
        """The pid of the CONNECT reply: the recovered session's, or a new one."""
        key = (namespace, sid)
        pid = self.pids.get(key)
        if pid is None:
            pid = self.pids[key] = new_pid()
        try:
            self.heads[key] = await self.store.head(namespace)
        except RecoveryUnavailable:
            self.heads[key] = UNKNOWN_HEAD
        return pid

    # -- disconnect --------------------------------------------------------------------------

    async def suspend(
        self,
        namespace: str,
        sid: str,
        *,
        recoverable: bool,
        rooms: Sequence[str],
        client_rooms: Sequence[str],
        identity: Identity | None,
    ) -> None:
        """A connection ends: keep its session if its transport was lost (not a disconnect the
        client or the server asked for, as socket.io's RECOVERABLE_DISCONNECT_REASONS)."""
        key = (namespace, sid)
        self.claims.pop(key, None)
        self.recovered.discard(key)
        pid = self.pids.pop(key, None)
        head = self.heads.pop(key, None)
        options = self.options(namespace)
        if pid is None or options is None or not recoverable or identity is None:
            return
        now = self.clock()
        session = Session(
            namespace=namespace,
            pid=pid,
            sid=sid,
            rooms=frozenset(r for r in rooms if r is not None),
            client_rooms=frozenset(client_rooms),
            identity=identity,
            head=head,
            disconnected_at=now,
        )
        try:
            await self.store.persist(session, options, now)
        except RecoveryUnavailable as exc:
            log.warning("recovery store: session of %s not kept (%s)", sid, exc)
