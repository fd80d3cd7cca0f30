"""The security adapter: holds policy state, asks the pure policies, reports every denial.

`EngineServer` calls the guard at three points (a new Engine.IO handshake, a namespace
CONNECT, an event) and on every violation it detects itself (malformed packets, oversize
frames). The guard turns policy decisions into `Refusal`s, counts strikes, issues bans and
hands a structured security event to the monitor and the `engine.security` JSON log.
It does no socket I/O and takes the time from one injectable clock.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.cookies import CookieError, SimpleCookie
from typing import Any

from engine.auth import AuthFailure, Credentials, check_csrf
from engine.auth import Identity as AuthIdentity
from engine.auth.client_ip import resolve_client_ip
from engine.monitoring import Monitor
from engine.policies.abuse import AbuseLedger, Banned, Denied, ip_subject, user_subject
from engine.policies.access import Identity, decide_connect, decide_event
from engine.policies.connections import ConnectionCounts
from engine.policies.decision import Deny
from engine.policies.payload import check as check_payload
from engine.policies.rate_limit import KeyedLimiter, KeyedLimiterOptions, TokenBucket
from engine.profile.model import NamespaceSpec, Profile, RateLimit
from engine.refusal import Refusal

security_log = logging.getLogger("engine.security")
ANONYMOUS = AuthIdentity(user_id=None)


@dataclass(slots=True)
class Peer:
    """One Engine.IO session: where it comes from and what it presented."""

    ip: str
    headers: Mapping[str, str]
    cookies: Mapping[str, str]
    opened: float
    namespaces: set[str] = field(default_factory=set)
    attachment_bytes: int = 0


@dataclass(slots=True)
class Member:
    """One connection to one namespace (a Socket.IO sid)."""

    namespace: str
    sid: str
    peer: Peer
    identity: AuthIdentity


def environ_headers(environ: Mapping[str, Any]) -> dict[str, str]:
    return {
        key[5:].replace("_", "-").lower(): str(value)
        for key, value in environ.items()
        if key.startswith("HTTP_")
    }


def parse_cookies(header: str) -> dict[str, str]:
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(header)
    except CookieError:
        return {}
    return {name: morsel.value for name, morsel in jar.items()}


class Guard:
    """Policy state for one server process."""

    def __init__(
        self, profile: Profile, monitor: Monitor, clock: Callable[[], float] = time.monotonic
    ) -> None:
        security = profile.security
        self.profile = profile
        self.monitor = monitor
        self.clock = clock
        self.wall_clock: Callable[[], float] = time.time
        keys = security.max_tracked_keys
        self.connects = self._limiter(security.connects_per_ip, keys)
        self.per_connection = self._limiter(security.events_per_connection, keys)
        self.per_user = self._limiter(security.events_per_user, keys)
        self.per_event: dict[tuple[str, str], KeyedLimiter] = {}
        for spec in profile.namespaces.values():
            for event in (spec.events or {}).values():
                limiter = self._limiter(event.rate_limit, keys)
                if limiter is not None:
                    self.per_event[(spec.name, event.name)] = limiter
        self.abuse = AbuseLedger(security.abuse) if security.abuse is not None else None
        # a flood must not become a log flood: per (type, ip), 5 lines at once, then 1/s
        self.log_budget = KeyedLimiter(
            KeyedLimiterOptions(bucket=TokenBucket(rate_per_second=1.0, burst=5), max_keys=10_000)
        )
        self.log_suppressed: dict[str, int] = {}
        self.counts = ConnectionCounts()
        self.peers: dict[str, Peer] = {}
        self.members: dict[tuple[str, str], Member] = {}

    @staticmethod
    def _limiter(limit: RateLimit | None, keys: int) -> KeyedLimiter | None:
        if limit is None:
            return None
        return KeyedLimiter(KeyedLimiterOptions(bucket=limit.bucket, max_keys=keys))

    # -- reporting ---------------------------------------------------------------------------

    def report(
        self,
        kind: str,
        refusal: Refusal | None,
        *,
        policy: str,
        ip: str | None,
        namespace: str | None = None,
        sid: str | None = None,
        user: str | None = None,
        reason: str = "",
    ) -> None:
        """One structured security event: monitor stream plus one JSON log line."""
        event: dict[str, object] = {
            "type": kind,
            "namespace": namespace,
            "sid": sid,
            "user": user,
            "ip": ip,
            "policy": policy,
            "code": refusal.code if refusal else None,
            "reason": reason or (refusal.message if refusal else ""),
        }
        self.monitor.policy_decision(policy, "deny")
        self.monitor.security_event(event)
        key = f"{kind}|{ip}"
        if not self.log_budget.take(key, self.clock()).allowed:
            if len(self.log_suppressed) >= 10_000:
                self.log_suppressed.clear()  # counts are a courtesy; memory is not
            self.log_suppressed[key] = self.log_suppressed.get(key, 0) + 1
            return
        suppressed = self.log_suppressed.pop(key, 0)
        if suppressed:
            event["suppressed_before"] = suppressed
        security_log.warning(json.dumps(event, sort_keys=True, default=str))

    # -- strikes and bans --------------------------------------------------------------------

    def strike(self, ip: str, user: str | None, kind: str, now: float) -> Refusal | None:
        """Count a violation; a resulting ban is returned as a refusal that disconnects."""
        if self.abuse is None:
            return None
        ban_by = self.profile.security.ban_by
        subjects = []
        if "ip" in ban_by:
            subjects.append(ip_subject(ip))
        if "user" in ban_by and user is not None:
            subjects.append(user_subject(user))
        worst: Refusal | None = None
        for subject in subjects:
            before = self.abuse.record(subject)
            verdict = self.abuse.strike(subject, now, kind)
            if isinstance(verdict, Banned):
                worst = Refusal(
                    "banned",
                    "temporarily banned after repeated violations",
                    verdict.retry_after_seconds,
                    disconnect=True,
                )
                after = self.abuse.record(subject)
                if after is not None and (before is None or after.bans > before.bans):
                    self.report("ban_issued", worst, policy="abuse", ip=ip, user=user, reason=kind)
                    self.monitor.set_active_bans(self.active_bans(now))
        return worst

    def ban_refusal(self, ip: str, user: str | None, now: float) -> Refusal | None:
        if self.abuse is None:
            return None
        verdict = self.abuse.check(ip, user, now)
        if isinstance(verdict, Denied):
            return Refusal("forbidden", "this address may not connect", disconnect=True)
        if isinstance(verdict, Banned):
            return Refusal(
                "banned", "temporarily banned", verdict.retry_after_seconds, disconnect=True
            )
        return None

    def active_bans(self, now: float) -> list[dict[str, object]]:
        if self.abuse is None:
            return []
        bans = []
        for subject, record in self.abuse.banned(now):
            if record.banned_until is not None:
                bans.append(
                    {
                        "subject": subject,
                        "reason": record.reason,
                        "retry_after_seconds": round(record.banned_until - now, 3),
                        "bans": record.bans,
                    }
                )
        return bans

    # -- handshake (before Engine.IO does any work) ------------------------------------------

    def client_ip(self, remote_addr: str, headers: Mapping[str, str]) -> str:
        return resolve_client_ip(remote_addr, headers, self.profile.server.trusted_proxies)

    def admit_handshake(self, ip: str) -> Refusal | None:
        """Bans and the per-IP connect rate, checked on the raw HTTP request."""
        now = self.clock()
        refusal = self.ban_refusal(ip, None, now)
        if refusal is None and self.connects is not None:
            admission = self.connects.take(ip, now)
            if not admission.allowed:
                refusal = Refusal(
                    "rate_limited", "too many connection attempts", admission.retry_after_seconds
                )
                self.strike(ip, None, "connect_rate", now)
        if refusal is not None:
            self.monitor.connect_refused("/", refusal.code)
            self.report("handshake_refused", refusal, policy=_policy(refusal), ip=ip)
        return refusal

    def open_peer(self, eio_sid: str, environ: Mapping[str, Any]) -> Peer:
        headers = environ_headers(environ)
        # engineio's ASGI environ hard-codes REMOTE_ADDR; the ASGI scope has the real peer
        client = (environ.get("asgi.scope") or {}).get("client") or (environ.get("REMOTE_ADDR"),)
        remote = str(client[0] or "")
        peer = Peer(
            ip=self.client_ip(remote, headers),
            headers=headers,
            cookies=parse_cookies(headers.get("cookie", "")),
            opened=self.clock(),
        )
        self.peers[eio_sid] = peer
        return peer

    def close_peer(self, eio_sid: str) -> None:
        self.peers.pop(eio_sid, None)

    # -- namespace CONNECT -------------------------------------------------------------------

    def admit_connect(self, spec: NamespaceSpec, peer: Peer, sid: str, auth: Any) -> Member:
        """Identity and access for one namespace connection; raises `Refusal`."""
        now = self.clock()
        try:
            identity = self._identify(spec, peer, auth, now)
            refusal = self.ban_refusal(peer.ip, identity.user_id, now)
            if refusal is not None:
                raise refusal
            access_identity = Identity(identity.user_id, identity.roles, identity.claims)
            if spec.require_auth and identity.user_id is None:
                raise Refusal("unauthorized", "authentication required")
            decision = decide_connect(spec.access, self.profile.auth.roles, access_identity)
            if isinstance(decision, Deny):
                raise Refusal(decision.code, decision.message)
            caps = self.profile.security.caps.admit(
                self.counts,
                spec.name,
                identity.user_id,
                peer.ip,
                namespace_max_per_user=spec.access.max_connections_per_user,
            )
            if isinstance(caps, Deny):
                raise Refusal(caps.code, caps.message)
        except Refusal as refusal:
            self.monitor.connect_refused(spec.name, refusal.code)
            self.report(
                "connect_refused",
                refusal,
                policy=_policy(refusal),
                ip=peer.ip,
                namespace=spec.name,
                sid=sid,
            )
            if refusal.code in ("unauthorized", "forbidden"):
                ban = self.strike(peer.ip, None, "auth", now)
                if ban is not None:
                    raise ban from None
            raise
        member = Member(spec.name, sid, peer, identity)
        self.members[(spec.name, sid)] = member
        self.counts.add(spec.name, identity.user_id, peer.ip)
        peer.namespaces.add(spec.name)
        self.monitor.policy_decision("connect", "allow")
        return member

    def _identify(self, spec: NamespaceSpec, peer: Peer, auth: Any, now: float) -> AuthIdentity:
        credentials = Credentials(
            auth_payload=auth if isinstance(auth, Mapping) else None,
            headers=peer.headers,
            cookies=peer.cookies,
            remote_addr=peer.ip,
        )
        # tokens carry wall-clock times (exp, nbf); limits and bans use the monotonic clock
        result = self.profile.auth.authenticator.authenticate(credentials, self.wall_clock())
        if isinstance(result, AuthFailure):
            raise Refusal("unauthorized", result.message)
        if result.cookie_authenticated and self.profile.security.csrf is not None:
            failure = check_csrf(credentials, self.profile.security.csrf)
            if failure is not None:
                raise Refusal("forbidden", failure.message)
        return result

    def disconnected(self, namespace: str, sid: str) -> Member | None:
        member = self.members.pop((namespace, sid), None)
        if member is not None:
            self.counts.remove(namespace, member.identity.user_id, member.peer.ip)
            member.peer.namespaces.discard(namespace)
        return member

    def member(self, namespace: str, sid: str) -> Member | None:
        return self.members.get((namespace, sid))

    # -- events ------------------------------------------------------------------------------

    def admit_event(self, spec: NamespaceSpec, member: Member, event: str, args: list[Any]) -> None:
        """Bans, rate limits, access and payload contracts for one event; raises `Refusal`."""
        now = self.clock()
        user = member.identity.user_id
        refusal = self.ban_refusal(member.peer.ip, user, now)
        if refusal is None:
            refusal = self._rate(member, spec, event, now)
        if refusal is None:
            refusal = self._access(spec, member, event)
        if refusal is None:
            refusal = self._contract(spec, event, args)
        if refusal is None:
            return
        self.report(
            "event_refused",
            refusal,
            policy=_policy(refusal),
            ip=member.peer.ip,
            namespace=spec.name,
            sid=member.sid,
            user=user,
            reason=f"{event[:64]}: {refusal.message}",
        )
        if refusal.code != "banned":
            ban = self.strike(member.peer.ip, user, refusal.code, now)
            if ban is not None:
                raise ban
        raise refusal

    def _rate(self, member: Member, spec: NamespaceSpec, event: str, now: float) -> Refusal | None:
        security = self.profile.security
        checks: list[tuple[KeyedLimiter | None, str, RateLimit | None]] = [
            (self.per_connection, member.sid, security.events_per_connection),
            (self.per_event.get((spec.name, event)), member.sid, _event_limit(spec, event)),
        ]
        if member.identity.user_id is not None:
            checks.append((self.per_user, member.identity.user_id, security.events_per_user))
        for limiter, key, limit in checks:
            if limiter is None or limit is None:
                continue
            admission = limiter.take(key, now)
            if not admission.allowed:
                return Refusal(
                    "rate_limited",
                    "too many events",
                    admission.retry_after_seconds,
                    disconnect=limit.action == "disconnect",
                )
        return None

    def _access(self, spec: NamespaceSpec, member: Member, event: str) -> Refusal | None:
        identity = member.identity
        decision = decide_event(
            spec.access,
            self.profile.auth.roles,
            Identity(identity.user_id, identity.roles, identity.claims),
            event,
        )
        if isinstance(decision, Deny):
            return Refusal(decision.code, decision.message)
        return None

    def _contract(self, spec: NamespaceSpec, event: str, args: list[Any]) -> Refusal | None:
        violation = check_payload(args, self.profile.security.payload)
        if violation is not None:
            return Refusal("invalid_payload", f"{violation.reason} at {violation.path}")
        declared = (spec.events or {}).get(event)
        if declared is not None and declared.schema is not None:
            payload = args[0] if len(args) == 1 else args
            error = next(iter(declared.schema.iter_errors(payload)), None)
            if error is not None:
                where = "/".join(str(p) for p in error.absolute_path) or "payload"
                return Refusal("invalid_payload", f"{where}: {error.message}"[:200])
        return None

    def violation(self, eio_sid: str, kind: str, reason: str) -> Refusal | None:
        """A protocol violation by an Engine.IO session (malformed, oversize): strike it."""
        peer = self.peers.get(eio_sid)
        ip = peer.ip if peer else "unknown"
        refusal = Refusal("invalid_payload", reason)
        self.report(kind, refusal, policy="protocol", ip=ip, reason=reason)
        return self.strike(ip, None, kind, self.clock())


def _event_limit(spec: NamespaceSpec, event: str) -> RateLimit | None:
    declared = (spec.events or {}).get(event)
    return declared.rate_limit if declared is not None else None


def _policy(refusal: Refusal) -> str:
    return {
        "rate_limited": "rate_limit",
        "banned": "abuse",
        "unauthorized": "auth",
        "forbidden": "access",
        "unknown_event": "access",
        "too_many_connections": "connections",
        "invalid_payload": "payload",
    }.get(refusal.code, refusal.code)
