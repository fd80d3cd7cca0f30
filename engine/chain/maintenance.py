"""`maintenance`: while `[maintenance] enabled`, only admitted roles and namespaces connect."""

from __future__ import annotations

from dataclasses import dataclass

from engine.chain import POLICIES
from engine.chain.base import Request, Stage
from engine.policies.decision import ALLOW, Decision, Deny
from engine.profile.model import MaintenanceOptions, Profile
from engine.state import StateStore


@dataclass(frozen=True, slots=True)
class MaintenancePolicy:
    options: MaintenanceOptions
    name: str = "maintenance"
    stages: frozenset[Stage] = frozenset({"connect"})

    @staticmethod
    def from_profile(profile: Profile) -> MaintenancePolicy | None:
        options = profile.maintenance
        return MaintenancePolicy(options) if options.enabled else None

    async def decide(self, request: Request, state: StateStore, now: float) -> Decision:
        spec, who = request.namespace, request.identity
        roles = who.roles if who is not None else frozenset()
        if spec is None or self.options.admits(spec.name, roles):
            return ALLOW
        return Deny("maintenance", self.options.message, self.options.retry_after_seconds)


POLICIES.register("maintenance")(MaintenancePolicy.from_profile)
