"""What a chain policy sees (`Request`) and what it is (`Policy`).

A chain policy is the adapter between one pure policy of `engine.policies` and the engine:
it picks the inputs out of the request, keys its state in the `StateStore`, and returns a
`Decision`. It does no socket I/O; the guard runs the chain and acts on the first `Deny`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

from engine.auth import Identity
from engine.policies.decision import Decision
from engine.profile.model import NamespaceSpec, Profile
from engine.state import StateStore

Stage = Literal["handshake", "connect", "event"]


@dataclass(frozen=True, slots=True)
class Request:
    """One thing a client asks for: a new Engine.IO session, a namespace, or an event."""

    stage: Stage
    ip: str
    namespace: NamespaceSpec | None = None
    sid: str | None = None
    identity: Identity | None = None
    event: str = ""
    args: Sequence[Any] = ()
    joined_rooms: int = 0

    @property
    def user(self) -> str | None:
        return self.identity.user_id if self.identity is not None else None


class Policy(Protocol):
    """One link of the chain; `stages` says which requests it decides."""

    @property
    def name(self) -> str: ...

    @property
    def stages(self) -> frozenset[Stage]: ...

    async def decide(self, request: Request, state: StateStore, now: float) -> Decision: ...


class PolicyFactory(Protocol):
    """A registered policy type: builds the policy for a profile, or None when it is off."""

    def __call__(self, profile: Profile) -> Policy | None: ...


@dataclass(frozen=True, slots=True)
class EventScope:
    """The event names of one namespace a policy decides: `names`, or all but them (`inverted`).

    Outside its scope the policy allows without looking at the request, the store or the
    clock, so the chain leaves it out for those events when it is built rather than asking it
    on every event.
    """

    names: frozenset[str] = frozenset()
    inverted: bool = False

    def covers(self, event: str) -> bool:
        return (event in self.names) != self.inverted


EVERY_EVENT = EventScope(inverted=True)


@runtime_checkable
class EventScoped(Protocol):
    """A policy that decides only some events of a namespace (the others it always allows)."""

    def event_scope(self, spec: NamespaceSpec) -> EventScope: ...
