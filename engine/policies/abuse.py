"""Strikes and an escalating ban ladder, with CIDR allow/deny lists.

A subject (``ip:1.2.3.4``, ``user:42``) that collects ``strikes`` strikes within
``window_seconds`` is banned; its k-th ban on the ladder (k from 0) lasts
``ladder_seconds[min(k, len - 1)]``. A subject whose last ban ended at least
``forgive_after_seconds`` ago starts again at the first rung, so one bad day is not punished
forever while persistent abusers escalate.

Rules, in precedence order:

1. a deny-listed IP is always refused (deny wins over allow, the safe reading of an overlap);
2. an allow-listed IP subject is never banned and its strikes are ignored (user subjects are
   not covered: a banned account stays banned from a trusted network);
3. a ban holds while ``now < until`` and ends exactly at ``until``; strikes during a ban are
   ignored rather than extending it, so the ladder, not the strike rate, sets ban length.

A strike at ``t`` counts while ``now < t + window_seconds``. If the clock goes backwards,
strikes "in the future" still count and bans are not shortened, so a skewed clock cannot cut a
ban short; a strike already seen expired is not revived, though.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from engine.policies._expiry import delay_until

__all__ = [
    "AbuseOptions",
    "AbuseState",
    "Allowed",
    "Banned",
    "Denied",
    "SubjectRecord",
    "Verdict",
    "canonical_subject",
    "check",
    "ip_subject",
    "listed_verdict",
    "strike",
    "user_subject",
]

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@functools.lru_cache(maxsize=4096)  # pure; every stage of every request asks (bans, strikes)
def _parse_ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped  # ::ffff:1.2.3.4 is the same client as 1.2.3.4
    return address


@functools.lru_cache(maxsize=4096)
def ip_subject(ip: str) -> str:
    """Subject for a client IP, canonicalised so one address cannot appear under many names."""
    address = _parse_ip(ip)
    return f"ip:{address if address is not None else ip}"


def user_subject(user_id: str) -> str:
    return f"user:{user_id}"


def canonical_subject(subject: str) -> str:
    """``ip:`` subjects in canonical address form; other subjects unchanged."""
    return ip_subject(subject[3:]) if subject.startswith("ip:") else subject


@dataclass(frozen=True, slots=True)
class AbuseOptions:
    """Options from ``[security.abuse]``."""

    strikes: int
    window_seconds: float
    ladder_seconds: tuple[float, ...]
    forgive_after_seconds: float
    allow_cidrs: tuple[Network, ...] = ()
    deny_cidrs: tuple[Network, ...] = ()
    max_subjects: int = 100_000

    def __post_init__(self) -> None:
        if self.strikes < 1:
            raise ValueError("strikes must be >= 1")
        if not self.window_seconds > 0:
            raise ValueError("window_seconds must be > 0")
        if not self.ladder_seconds or not all(d > 0 for d in self.ladder_seconds):
            raise ValueError("ladder_seconds must be a non-empty list of durations > 0")
        if any(a > b for a, b in zip(self.ladder_seconds, self.ladder_seconds[1:], strict=False)):
            raise ValueError("ladder_seconds must not decrease")
        if not self.forgive_after_seconds >= 0:
            raise ValueError("forgive_after_seconds must be >= 0")
        if self.max_subjects < 1:
            raise ValueError("max_subjects must be >= 1")

    @classmethod
    def from_profile(cls, mapping: Mapping[str, Any]) -> AbuseOptions:
        """Build from the validated ``security.abuse`` table (CIDRs as strings)."""
        return cls(
            strikes=int(mapping["strikes"]),
            window_seconds=float(mapping["window_seconds"]),
            ladder_seconds=tuple(float(d) for d in mapping["ladder_seconds"]),
            forgive_after_seconds=float(mapping["forgive_after_seconds"]),
            allow_cidrs=_networks(mapping.get("allow_cidrs", ())),
            deny_cidrs=_networks(mapping.get("deny_cidrs", ())),
            max_subjects=int(mapping.get("max_subjects", 100_000)),
        )

    def _listed(self, subject: str, networks: tuple[Network, ...]) -> bool:
        if not networks or not subject.startswith("ip:"):
            return False
        address = _parse_ip(subject[3:])
        return address is not None and any(address in net for net in networks)

    def denied(self, subject: str) -> bool:
        return self._listed(subject, self.deny_cidrs)

    def allowed(self, subject: str) -> bool:
        return self._listed(subject, self.allow_cidrs)


def _networks(items: Iterable[str]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(item, strict=False) for item in items)


@dataclass(frozen=True, slots=True)
class Allowed:
    """No ban applies."""


@dataclass(frozen=True, slots=True)
class Banned:
    """Banned until ``until``; ``reason`` is the strike kind that triggered the ban."""

    until: float
    retry_after_seconds: float
    reason: str


@dataclass(frozen=True, slots=True)
class Denied:
    """The IP is deny-listed; no amount of waiting helps."""

    reason: str = "deny-listed"


Verdict = Allowed | Banned | Denied

ALLOWED = Allowed()
DENIED = Denied()


def listed_verdict(options: AbuseOptions, subject: str) -> Verdict | None:
    """`Denied`/`Allowed` for deny-/allow-listed subjects (no strike counts), else None."""
    subject = canonical_subject(subject)
    if options.denied(subject):
        return DENIED
    if options.allowed(subject):
        return ALLOWED
    return None


@dataclass(frozen=True, slots=True)
class SubjectRecord:
    """Everything remembered about one subject.

    :param strikes: times of strikes since the last ban (pruned lazily).
    :param bans: bans served on the current ladder; the next ban uses rung ``bans``.
    :param banned_until: end of the latest ban (kept after it ends, for forgiveness).
    """

    strikes: tuple[float, ...] = ()
    bans: int = 0
    banned_until: float | None = None
    reason: str = ""

    def forget_at(self, options: AbuseOptions) -> float:
        """From this time on the record is equivalent to no record at all."""
        deadline = -float("inf")
        if self.strikes:
            deadline = max(self.strikes) + options.window_seconds
        if self.banned_until is not None:
            deadline = max(deadline, self.banned_until + options.forgive_after_seconds)
        return deadline


_EMPTY_RECORD = SubjectRecord()


def _ban_verdict(record: SubjectRecord, now: float) -> Banned | None:
    until = record.banned_until
    if until is not None and now < until:
        return Banned(until, delay_until(now, until), record.reason)
    return None


def strike_record(
    options: AbuseOptions, record: SubjectRecord | None, now: float, kind: str
) -> tuple[Verdict, SubjectRecord]:
    """Add one strike to a subject that is neither allow- nor deny-listed."""
    record = record or _EMPTY_RECORD
    banned = _ban_verdict(record, now)
    if banned is not None:
        return banned, record
    strikes = (*(t for t in record.strikes if t + options.window_seconds > now), now)
    if len(strikes) < options.strikes:
        return ALLOWED, SubjectRecord(strikes, record.bans, record.banned_until, record.reason)
    rung = record.bans
    last = record.banned_until
    if last is not None and now >= last + options.forgive_after_seconds:
        rung = 0
    ladder = options.ladder_seconds
    until = now + ladder[min(rung, len(ladder) - 1)]
    return Banned(until, delay_until(now, until), kind), SubjectRecord((), rung + 1, until, kind)


def check_record(record: SubjectRecord | None, now: float) -> Verdict:
    """Verdict for one subject without a strike."""
    if record is None:
        return ALLOWED
    return _ban_verdict(record, now) or ALLOWED


def _combine(verdicts: Iterable[Verdict]) -> Verdict:
    latest: Banned | None = None
    for verdict in verdicts:
        if isinstance(verdict, Banned) and (latest is None or verdict.until > latest.until):
            latest = verdict
    return latest or ALLOWED


@dataclass(frozen=True, slots=True)
class AbuseState:
    """Immutable snapshot of all subjects; each :func:`strike` returns a new one."""

    options: AbuseOptions
    records: Mapping[str, SubjectRecord] = field(default_factory=lambda: MappingProxyType({}))

    @classmethod
    def empty(cls, options: AbuseOptions) -> AbuseState:
        return cls(options)


def strike(
    state: AbuseState, subject: str, now: float, kind: str = "strike"
) -> tuple[Verdict, AbuseState]:
    """Record a strike of ``kind`` against ``subject`` at ``now``."""
    options = state.options
    subject = canonical_subject(subject)
    if options.denied(subject):
        return DENIED, state
    if options.allowed(subject):
        return ALLOWED, state
    verdict, record = strike_record(options, state.records.get(subject), now, kind)
    records = dict(state.records)
    records[subject] = record
    return verdict, AbuseState(options, MappingProxyType(records))


def _check(
    options: AbuseOptions,
    lookup: Mapping[str, SubjectRecord],
    ip: str | None,
    user: str | None,
    now: float,
) -> Verdict:
    verdicts: list[Verdict] = []
    if ip is not None:
        subject = ip_subject(ip)
        if options.denied(subject):
            return DENIED
        if not options.allowed(subject):
            verdicts.append(check_record(lookup.get(subject), now))
    if user is not None:
        verdicts.append(check_record(lookup.get(user_subject(user)), now))
    return _combine(verdicts)


def check(state: AbuseState, ip: str | None, user: str | None, now: float) -> Verdict:
    """May a client at ``ip`` (raw address), logged in as ``user`` (raw id), proceed?

    When both subjects are banned the later deadline is reported, since that is when the
    client can actually return.
    """
    return _check(state.options, state.records, ip, user, now)
