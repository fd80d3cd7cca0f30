"""The policy chain: one registry of policy types, run in the order listed here.

Adding a policy is one module (a class with `name`, `stages`, `decide` and a `from_profile`
factory registered in `POLICIES`) plus one line in `ORDER`. A policy that decides only some
event names of a namespace says which in an `event_scope`; the chain then leaves it out for the
others when it is built (`Chain.for_event`), not on every event.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from engine.chain.base import (
    EVERY_EVENT,
    EventScope,
    EventScoped,
    Policy,
    PolicyFactory,
    Request,
    Stage,
)
from engine.profile.model import NamespaceSpec, Profile
from engine.registry import Registry

POLICIES: Registry[PolicyFactory] = Registry("policy")

# import order registers; ORDER decides. Bans and rate limits first (a flood is refused, and
# counted, before anything else looks at it); `connections` counts the connection it admits,
# so it must come last at connect time.
from engine.chain import (  # noqa: E402
    access,
    bans,
    connections,
    maintenance,
    payload,
    progress,
    rate_limits,
    rooms,
)

ORDER: tuple[str, ...] = (
    "ban",
    "connects_per_ip",
    "events_per_connection",
    "event_rate",
    "events_per_user",
    "access",
    "maintenance",
    "rooms",
    "progress",
    "payload",
    "connections",
)

__all__ = [
    "EVERY_EVENT",
    "ORDER",
    "POLICIES",
    "Chain",
    "EventChains",
    "EventScope",
    "Policy",
    "Request",
    "Stage",
    "build_chain",
]
_ = (access, bans, connections, maintenance, payload, progress, rate_limits, rooms)


@dataclass(frozen=True, slots=True)
class EventChains:
    """The event policies one namespace runs, per event name, fixed when the chain is built.

    `named` holds every name some policy scopes itself to; any other name runs `other`.
    """

    spec: NamespaceSpec
    named: Mapping[str, tuple[Policy, ...]]
    other: tuple[Policy, ...]


@dataclass(frozen=True, slots=True)
class Chain:
    """The policies of one runtime, pre-split by stage (and, for events, by namespace and name)."""

    policies: tuple[Policy, ...]
    by_stage: dict[Stage, tuple[Policy, ...]] = field(default_factory=dict)
    events: Mapping[str, EventChains] = field(default_factory=dict)

    def at(self, stage: Stage) -> tuple[Policy, ...]:
        return self.by_stage.get(stage, ())

    def for_event(self, spec: NamespaceSpec, event: str) -> tuple[Policy, ...]:
        """The policies that decide `event` in `spec`, in chain order.

        A spec this chain was not built from (a namespace a reload removed, still serving its
        last connections) runs every event policy, as a chain without scopes would.
        """
        chains = self.events.get(spec.name)
        if chains is None or chains.spec is not spec:
            return self.at("event")
        found = chains.named.get(event)
        return chains.other if found is None else found

    def names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.policies)

    def __iter__(self) -> Iterator[Policy]:
        return iter(self.policies)


def build_chain(profile: Profile) -> Chain:
    policies = []
    for name in ORDER:
        policy = POLICIES.get(name)(profile)
        if policy is not None:
            policies.append(policy)
    stages: tuple[Stage, ...] = ("handshake", "connect", "event")
    by_stage = {s: tuple(p for p in policies if s in p.stages) for s in stages}
    events = {
        name: _event_chains(spec, by_stage["event"]) for name, spec in profile.namespaces.items()
    }
    return Chain(tuple(policies), by_stage, events)


def _event_chains(spec: NamespaceSpec, policies: tuple[Policy, ...]) -> EventChains:
    scopes: list[tuple[Policy, EventScope]] = [
        (p, p.event_scope(spec) if isinstance(p, EventScoped) else EVERY_EVENT) for p in policies
    ]
    names = frozenset().union(*(scope.names for _, scope in scopes))
    named = {name: tuple(p for p, scope in scopes if scope.covers(name)) for name in names}
    other = tuple(p for p, scope in scopes if scope.inverted)
    return EventChains(spec, named, other)
