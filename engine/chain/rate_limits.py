"""Token buckets: `connects_per_ip`, `events_per_connection`, `event_rate`, `events_per_user`.

Bucket keys name the policy and the subject, never the limit, so a reload that changes a
limit applies it to the existing bucket. Buckets of one connection (`events_per_connection`,
`event_rate`) live in the process's own store (`StateStore.local`) even when the cluster
shares state: the connection lives on this node, and a shared bucket would cost a round trip
per event.
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.chain import POLICIES
from engine.chain.base import EventScope, Request, Stage
from engine.policies.decision import ALLOW, Decision, Deny
from engine.profile.model import NamespaceSpec, Profile, RateLimit
from engine.state import StateStore


async def _charge(
    state: StateStore, key: str, limit: RateLimit, now: float, message: str
) -> Decision:
    """Spend one token of `key`'s bucket; a refusal is a strike (and a disconnect if declared)."""
    admission = await state.take(key, limit.bucket, now)
    if admission.allowed:
        return ALLOW
    disconnect = limit.action == "disconnect"
    return Deny(
        "rate_limited", message, admission.retry_after_seconds, disconnect=disconnect, strike=True
    )


@dataclass(frozen=True, slots=True)
class ConnectsPerIp:
    limit: RateLimit
    name: str = "connects_per_ip"
    stages: frozenset[Stage] = frozenset({"handshake"})

    async def decide(self, request: Request, state: StateStore, now: float) -> Decision:
        key = f"rate:{self.name}:{request.ip}"
        return await _charge(state, key, self.limit, now, "too many connection attempts")


@dataclass(frozen=True, slots=True)
class EventsPerConnection:
    limit: RateLimit
    name: str = "events_per_connection"
    stages: frozenset[Stage] = frozenset({"event"})

    async def decide(self, request: Request, state: StateStore, now: float) -> Decision:
        key = f"rate:{self.name}:{request.sid}"
        return await _charge(state.local, key, self.limit, now, "too many events")


@dataclass(frozen=True, slots=True)
class EventsPerUser:
    limit: RateLimit
    name: str = "events_per_user"
    stages: frozenset[Stage] = frozenset({"event"})

    async def decide(self, request: Request, state: StateStore, now: float) -> Decision:
        user = request.user
        if user is None:
            return ALLOW
        return await _charge(state, f"rate:{self.name}:{user}", self.limit, now, "too many events")


@dataclass(frozen=True, slots=True)
class EventRate:
    """The per-event `rate_limit` of declared events, per connection."""

    name: str = "event_rate"
    stages: frozenset[Stage] = frozenset({"event"})

    def event_scope(self, spec: NamespaceSpec) -> EventScope:
        """The namespace's declared events with a `rate_limit`."""
        events = spec.events or {}
        return EventScope(frozenset(n for n, e in events.items() if e.rate_limit is not None))

    async def decide(self, request: Request, state: StateStore, now: float) -> Decision:
        spec = request.namespace
        declared = (spec.events or {}).get(request.event) if spec is not None else None
        if declared is None or declared.rate_limit is None:
            return ALLOW
        assert spec is not None
        key = f"rate:{self.name}:{spec.name}:{request.event}:{request.sid}"
        return await _charge(state.local, key, declared.rate_limit, now, "too many events")


def _connects(profile: Profile) -> ConnectsPerIp | None:
    limit = profile.security.connects_per_ip
    return ConnectsPerIp(limit) if limit is not None else None


def _per_connection(profile: Profile) -> EventsPerConnection | None:
    limit = profile.security.events_per_connection
    return EventsPerConnection(limit) if limit is not None else None


def _per_user(profile: Profile) -> EventsPerUser | None:
    limit = profile.security.events_per_user
    return EventsPerUser(limit) if limit is not None else None


def _event_rate(profile: Profile) -> EventRate | None:
    for spec in profile.namespaces.values():
        if any(e.rate_limit is not None for e in (spec.events or {}).values()):
            return EventRate()
    return None


POLICIES.register("connects_per_ip")(_connects)
POLICIES.register("events_per_connection")(_per_connection)
POLICIES.register("events_per_user")(_per_user)
POLICIES.register("event_rate")(_event_rate)
