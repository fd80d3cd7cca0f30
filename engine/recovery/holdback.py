"""What a resuming connection must not receive yet, or not again (pure bookkeeping).

While a claimed session is being restored, the store is asked (a networked one awaits), so
live events can be sent to the connection before its replay: `Holdback` queues every packet
for that Engine.IO session until the replay is sent, then hands them back minus the
recoverable events the replay already carried (recognised by the offset, their last
argument). Copies of replayed events can also come late (from another node, through the
broker, after the replay): the latest `LATE_COPIES` replayed offsets of each namespace are
kept and dropped once more each, until seen or until the connection ends.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

LATE_COPIES = 256


def event_offset(text: str) -> tuple[str, str, int] | None:
    """`(namespace, offset, attachments)` of an encoded Socket.IO EVENT or BINARY_EVENT that
    asks no acknowledgement and ends with a string argument; None for any other packet."""
    if len(text) < 4 or text[0] not in "25" or not text.endswith('"]'):
        return None
    i, attachments = 1, 0
    if text[0] == "5":
        dash = text.find("-", 1)
        if dash < 0 or not text[1:dash].isdigit():
            return None
        attachments, i = int(text[1:dash]), dash + 1
    namespace = "/"
    if text.startswith("/", i):
        comma = text.find(",", i)
        if comma < 0:
            return None
        namespace, i = text[i:comma], comma + 1
    if not text.startswith("[", i):
        return None  # an acknowledgement id: not a recoverable event
    quote = text.rfind('"', i, len(text) - 2)
    if quote <= i or text[quote - 1] != ",":
        return None
    return namespace, text[quote + 1 : -2], attachments


@dataclass(slots=True)
class _Held:
    waiting: set[str] = field(default_factory=set)  # namespaces still restoring
    queue: deque[tuple[bool, Any]] = field(default_factory=deque)  # (raw eio packet?, packet)
    replayed: dict[str, set[str]] = field(default_factory=dict)
    flushing: bool = False


class Holdback:
    """Per Engine.IO session: held packets while restoring, then late copies to drop."""

    def __init__(self) -> None:
        self._held: dict[str, _Held] = {}
        self._late: dict[str, dict[str, set[str]]] = {}
        self._skip: dict[str, int] = {}  # attachments of a dropped binary event still to come

    def hold(self, eio_sid: str, namespace: str) -> None:
        self._held.setdefault(eio_sid, _Held()).waiting.add(namespace)

    def holding(self, eio_sid: str) -> bool:
        return eio_sid in self._held

    def put(self, eio_sid: str, raw: bool, pkt: Any) -> bool:
        """Queue a packet if the session is held; False when it may be sent now."""
        held = self._held.get(eio_sid)
        if held is None:
            return False
        held.queue.append((raw, pkt))
        return True

    def done(self, eio_sid: str, namespace: str, replayed: Iterable[str]) -> bool:
        """`namespace` has sent its replay; True when the caller should `flush` now."""
        held = self._held.get(eio_sid)
        if held is None:
            return False
        offsets = list(replayed)
        held.waiting.discard(namespace)
        held.replayed.setdefault(namespace, set()).update(offsets)
        if offsets:
            late = self._late.setdefault(eio_sid, {}).setdefault(namespace, set())
            late.update(offsets[-LATE_COPIES:])
        if held.waiting or held.flushing:
            return False
        held.flushing = True
        return True

    def next(self, eio_sid: str) -> tuple[bool, Any] | None:
        """The next held packet to send, duplicates skipped; None (and the hold ends) when the
        queue is empty, or another namespace started restoring (its `done` flushes)."""
        held = self._held.get(eio_sid)
        if held is None:
            return None
        while held.queue and not held.waiting:
            raw, pkt = held.queue.popleft()
            if not (raw and self._replayed(eio_sid, pkt, held.replayed)):
                return raw, pkt
        held.flushing = False
        if not held.waiting:
            del self._held[eio_sid]
        return None

    def late_copy(self, eio_sid: str, pkt: Any) -> bool:
        """Whether a raw Engine.IO packet sent now is a late copy of a replayed event."""
        late = self._late.get(eio_sid)
        if late is None and eio_sid not in self._skip:
            return False
        dropped = self._replayed(eio_sid, pkt, late or {}, once=True)
        if late is not None and not any(late.values()):
            del self._late[eio_sid]
        return dropped

    def forget(self, eio_sid: str) -> None:
        self._held.pop(eio_sid, None)
        self._late.pop(eio_sid, None)
        self._skip.pop(eio_sid, None)

    def _replayed(
        self, eio_sid: str, pkt: Any, replayed: dict[str, set[str]], once: bool = False
    ) -> bool:
        data = getattr(pkt, "data", None)
        if isinstance(data, bytes | bytearray):
            left = self._skip.get(eio_sid, 0)
            if left <= 0:
                return False
            if left == 1:
                del self._skip[eio_sid]
            else:
                self._skip[eio_sid] = left - 1
            return True
        if not isinstance(data, str):
            return False
        found = event_offset(data)
        if found is None:
            return False
        namespace, offset, attachments = found
        offsets = replayed.get(namespace)
        if offsets is None or offset not in offsets:
            return False
        if once:
            offsets.discard(offset)
        if attachments:
            self._skip[eio_sid] = attachments
        return True
