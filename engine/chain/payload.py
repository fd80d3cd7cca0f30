"""`payload`: size and shape limits on every event, and declared events' JSON Schemas."""

from __future__ import annotations

from dataclasses import dataclass

from engine.chain import POLICIES
from engine.chain.base import Request, Stage
from engine.policies.decision import ALLOW, Decision, Deny
from engine.policies.payload import PayloadLimits
from engine.policies.payload import check as check_payload
from engine.profile.model import Profile
from engine.state import StateStore


@dataclass(frozen=True, slots=True)
class PayloadPolicy:
    limits: PayloadLimits
    name: str = "payload"
    stages: frozenset[Stage] = frozenset({"event"})

    @staticmethod
    def from_profile(profile: Profile) -> PayloadPolicy:
        return PayloadPolicy(profile.security.payload)

    async def decide(self, request: Request, state: StateStore, now: float) -> Decision:
        args = list(request.args)
        violation = check_payload(args, self.limits)
        if violation is not None:
            return Deny("invalid_payload", f"{violation.reason} at {violation.path}", strike=True)
        spec = request.namespace
        declared = (spec.events or {}).get(request.event) if spec is not None else None
        if declared is not None and declared.schema is not None:
            payload = args[0] if len(args) == 1 else args
            if declared.schema_check is not None and declared.schema_check(payload):
                return ALLOW  # the fast yes (engine.policies.schema_fast)
            error = next(iter(declared.schema.iter_errors(payload)), None)
            if error is not None:
                where = "/".join(str(p) for p in error.absolute_path) or "payload"
                return Deny("invalid_payload", f"{where}: {error.message}"[:200], strike=True)
        return ALLOW


POLICIES.register("payload")(PayloadPolicy.from_profile)
