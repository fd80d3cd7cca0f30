"""`access`: authentication requirements, roles and permissions, the event allow-list."""

from __future__ import annotations

from dataclasses import dataclass, field

from engine.chain import POLICIES
from engine.chain.base import EventScope, Request, Stage
from engine.policies.access import (
    BUILTIN_EVENTS,
    Identity,
    RolePermissions,
    decide_connect,
    decide_event,
)
from engine.policies.decision import ALLOW, Decision, Deny
from engine.profile.model import NamespaceSpec, Profile
from engine.progress.options import ProgressOptions, serves_tasks
from engine.progress.task import TASK_EVENTS
from engine.state import StateStore

_UNAUTHORIZED = Deny("unauthorized", "authentication required", strike=True)


@dataclass(frozen=True, slots=True)
class AccessPolicy:
    roles: RolePermissions
    progress: ProgressOptions = field(default_factory=ProgressOptions)
    name: str = "access"
    stages: frozenset[Stage] = frozenset({"connect", "event"})

    @staticmethod
    def from_profile(profile: Profile) -> AccessPolicy:
        return AccessPolicy(profile.auth.roles, profile.progress)

    def event_scope(self, spec: NamespaceSpec) -> EventScope:
        """Every event but the built-in room events and, where served, the task events."""
        tasks = TASK_EVENTS if serves_tasks(self.progress, spec.name) else frozenset()
        return EventScope(BUILTIN_EVENTS | tasks, inverted=True)

    async def decide(self, request: Request, state: StateStore, now: float) -> Decision:
        spec, who = request.namespace, request.identity
        if spec is None or who is None:
            return ALLOW
        identity = Identity(who.user_id, who.roles, who.claims)
        if request.stage == "connect":
            if spec.require_auth and who.user_id is None:
                return _UNAUTHORIZED
            decision = decide_connect(spec.access, self.roles, identity)
        elif request.event in TASK_EVENTS and serves_tasks(self.progress, spec.name):
            return ALLOW  # built-ins here: decided by the progress policy and the task's owner
        else:
            decision = decide_event(spec.access, self.roles, identity, request.event)
        if isinstance(decision, Deny):
            return decision.by(self.name, strike=True)
        return ALLOW


POLICIES.register("access")(AccessPolicy.from_profile)
