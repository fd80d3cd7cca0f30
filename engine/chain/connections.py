"""`connections`: caps on live connections per user and namespace, per IP, and in total.

Deciding *is* counting: an admitted connection holds one count on each of its keys until the
guard releases them at disconnect (`connection_keys`), so it must be the last connect policy.
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.chain import POLICIES
from engine.chain.base import Request, Stage
from engine.policies.connections import ConnectionCaps
from engine.policies.decision import ALLOW, Decision, Deny
from engine.profile.model import Profile
from engine.state import StateStore

TOTAL = "conn:total"


def connection_keys(namespace: str, user: str | None, ip: str) -> tuple[str, ...]:
    keys = (TOTAL, f"conn:ip:{ip}")
    return keys if user is None else (*keys, f"conn:user:{namespace}:{user}")


_MESSAGES = (
    "the server is at its connection limit",
    "too many connections from your address",
    "too many connections for this user",
)


@dataclass(frozen=True, slots=True)
class ConnectionsPolicy:
    caps: ConnectionCaps
    name: str = "connections"
    stages: frozenset[Stage] = frozenset({"connect"})

    @staticmethod
    def from_profile(profile: Profile) -> ConnectionsPolicy:
        return ConnectionsPolicy(profile.security.caps)

    async def decide(self, request: Request, state: StateStore, now: float) -> Decision:
        spec = request.namespace
        assert spec is not None
        per_user = spec.access.max_connections_per_user
        if per_user is None:
            per_user = self.caps.max_per_user
        keys = connection_keys(spec.name, request.user, request.ip)
        caps = (self.caps.max_total, self.caps.max_per_ip, per_user)
        full = await state.acquire(list(zip(keys, caps, strict=False)))
        if full is None:
            return ALLOW
        return Deny("too_many_connections", _MESSAGES[full])


POLICIES.register("connections")(ConnectionsPolicy.from_profile)
