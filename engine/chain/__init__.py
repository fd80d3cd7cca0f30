"""The policy chain: one registry of policy types, run in the order listed here.

Adding a policy is one module (a class with `name`, `stages`, `decide` and a `from_profile`
factory registered in `POLICIES`) plus one line in `ORDER`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from engine.chain.base import Policy, PolicyFactory, Request, Stage
from engine.profile.model import Profile
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
    "payload",
    "connections",
)

__all__ = ["ORDER", "POLICIES", "Chain", "Policy", "Request", "Stage", "build_chain"]
_ = (access, bans, connections, maintenance, payload, rate_limits, rooms)


@dataclass(frozen=True, slots=True)
class Chain:
    """The policies of one runtime, pre-split by stage."""

    policies: tuple[Policy, ...]
    by_stage: dict[Stage, tuple[Policy, ...]] = field(default_factory=dict)

    def at(self, stage: Stage) -> tuple[Policy, ...]:
        return self.by_stage.get(stage, ())

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
    return Chain(tuple(policies), by_stage)
