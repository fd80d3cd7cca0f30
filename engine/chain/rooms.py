"""`rooms`: which rooms a client may enter with the built-in `join_room` event."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from engine.chain import POLICIES
from engine.chain.base import EventScope, Request, Stage
from engine.policies.decision import ALLOW, Decision, Deny
from engine.profile.model import NamespaceSpec, Profile
from engine.rooms import valid_room_name
from engine.state import StateStore

BUILTIN_EVENTS = frozenset({"join_room", "leave_room"})


def room_of(args: Any) -> str | None:
    """The room a `join_room`/`leave_room` names (`"room"` or `{"room": "room"}`), if valid."""
    data = args[0] if args else None
    room = data.get("room") if isinstance(data, dict) else data
    return room if valid_room_name(room) and isinstance(room, str) else None


@dataclass(frozen=True, slots=True)
class RoomsPolicy:
    name: str = "rooms"
    stages: frozenset[Stage] = frozenset({"event"})

    def event_scope(self, spec: NamespaceSpec) -> EventScope:
        """Only the built-in room events; any other name is allowed unseen."""
        return EventScope(BUILTIN_EVENTS)

    async def decide(self, request: Request, state: StateStore, now: float) -> Decision:
        if request.event not in BUILTIN_EVENTS or request.namespace is None:
            return ALLOW
        room = room_of(request.args)
        if room is None:
            return Deny("invalid_payload", "room must be a non-empty printable string", strike=True)
        if request.event == "leave_room":
            return ALLOW
        if room.startswith("@"):  # the engine's own rooms (task subscriptions: join_task)
            return Deny("forbidden", f"room '{room[:64]}' may not be joined", strike=True)
        spec = request.namespace
        facts = {"sid": request.sid, "namespace": spec.name, "user.id": request.user}
        if not any(p.matches(room, facts) for p in spec.client_join):
            return Deny("forbidden", f"room '{room[:64]}' may not be joined", strike=True)
        if request.joined_rooms >= spec.max_client_rooms:
            return Deny(
                "forbidden", f"at most {spec.max_client_rooms} rooms per connection", strike=True
            )
        return ALLOW


def _rooms(profile: Profile) -> RoomsPolicy:
    return RoomsPolicy()


POLICIES.register("rooms")(_rooms)
