"""`ban`: deny-listed addresses and running bans (by IP, and by user once known)."""

from __future__ import annotations

from dataclasses import dataclass

from engine.chain import POLICIES
from engine.chain.base import Request, Stage
from engine.policies.abuse import AbuseOptions, ip_subject, user_subject
from engine.policies.decision import ALLOW, Decision, Deny
from engine.profile.model import Profile
from engine.state import StateStore


@dataclass(frozen=True, slots=True)
class BanPolicy:
    options: AbuseOptions
    name: str = "ban"
    stages: frozenset[Stage] = frozenset({"handshake", "connect", "event"})

    @staticmethod
    def from_profile(profile: Profile) -> BanPolicy | None:
        abuse = profile.security.abuse
        return BanPolicy(abuse) if abuse is not None else None

    async def decide(self, request: Request, state: StateStore, now: float) -> Decision:
        subject = ip_subject(request.ip)
        if self.options.denied(subject):
            return Deny("forbidden", "this address may not connect", disconnect=True)
        subjects = [] if self.options.allowed(subject) else [subject]
        if request.user is not None:
            subjects.append(user_subject(request.user))
        if not subjects:
            return ALLOW
        ban = await state.banned(subjects, now)
        if ban is None:
            return ALLOW
        return Deny("banned", "temporarily banned", ban.retry_after_seconds, disconnect=True)


POLICIES.register("ban")(BanPolicy.from_profile)
