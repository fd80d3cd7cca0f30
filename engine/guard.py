"""The security adapter: runs the policy chain, counts strikes, reports every denial.

`EngineServer` calls the guard at three points (a new Engine.IO handshake, a namespace
CONNECT, an event) and on every violation it detects itself (malformed packets, oversize
frames). Each call reads the current runtime once, so a reload never splits a decision.
The guard turns the first `Deny` of the chain into a `Refusal`, counts strikes and issues
bans in the `StateStore`, and hands a structured security event to the monitor and the
`engine.security` JSON log. It does no socket I/O and takes the time from one clock.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.cookies import CookieError, SimpleCookie
from typing import Any

from engine.auth import AuthFailure, Credentials, Identity, check_csrf
from engine.auth.client_ip import resolve_client_ip
from engine.chain import Policy, Request
from engine.chain.connections import connection_keys
from engine.monitoring import Monitor
from engine.policies.abuse import Banned, ip_subject, listed_verdict, user_subject
from engine.policies.decision import Deny
from engine.policies.rate_limit import KeyedLimiter, KeyedLimiterOptions, TokenBucket
from engine.profile.model import NamespaceSpec
from engine.refusal import Refusal
from engine.runtime import Runtime, RuntimeRef
from engine.state import MemoryStateStore, StateStore, StoreUnavailable

security_log = logging.getLogger("engine.security")
ANONYMOUS = Identity(user_id=None)


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
    identity: Identity
    eio_sid: str = ""
    counted: tuple[str, ...] = ()


class BannedPeers:
    """The IP bans this process knows of, readable synchronously at TCP accept.

    The transport (`engine.transport.patches`) closes a connection from an address in here
    before hypercorn parses a byte of HTTP: a banned flood costs an accept and a close. Filled
    when this guard issues an IP ban and when the ban policy refuses a handshake (a ban another
    node issued through a shared store); an entry leaves at its expiry. Addresses of trusted
    proxies are never added (a proxy speaks for many clients), and a runtime swap (reload)
    empties the view: the next refused handshake refills it under the new policy.
    """

    __slots__ = ("clock", "max_entries", "ref", "refused", "runtime", "until")

    def __init__(self, ref: RuntimeRef, clock: Callable[[], float], max_entries: int) -> None:
        self.ref = ref
        self.runtime = ref.runtime
        self.clock = clock
        self.max_entries = max_entries
        self.until: dict[str, float] = {}
        self.refused = 0

    def add(self, ip: str, until: float) -> None:
        if self.ref.runtime is not self.runtime:
            self.until.clear()
            self.runtime = self.ref.runtime
        if len(self.until) >= self.max_entries and ip not in self.until:
            now = self.clock()
            for key in [k for k, t in self.until.items() if t <= now]:
                del self.until[key]
            if len(self.until) >= self.max_entries:
                return  # the handshake gate still refuses it, at a higher price
        try:
            address = ipaddress.ip_address(ip)
        except ValueError:
            return
        if any(
            address.version == net.version and address in net
            for net in self.runtime.server.trusted_proxies
        ):
            return
        self.until[ip] = max(until, self.until.get(ip, 0.0))

    def refuses(self, ip: str) -> bool:
        """True if `ip` is banned now (the caller closes the connection)."""
        until = self.until.get(ip)
        if until is None:
            return False
        if self.ref.runtime is not self.runtime:
            self.until.clear()
            self.runtime = self.ref.runtime
            return False
        if self.clock() >= until:
            del self.until[ip]
            return False
        self.refused += 1
        return True


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
    """Runs the chain of the current runtime against one process's sessions."""

    def __init__(
        self,
        ref: RuntimeRef,
        monitor: Monitor,
        store: StateStore | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ref = ref
        self.monitor = monitor
        self.clock = clock
        self.wall_clock: Callable[[], float] = time.time
        keys = ref.runtime.security.max_tracked_keys
        self.store: StateStore = store if store is not None else MemoryStateStore(max_keys=keys)
        # a flood must not become a log flood: per (type, ip), 5 lines at once, then 1/s
        self.log_budget = KeyedLimiter(
            KeyedLimiterOptions(bucket=TokenBucket(rate_per_second=1.0, burst=5), max_keys=10_000)
        )
        self.log_suppressed: dict[str, int] = {}
        self.peers: dict[str, Peer] = {}
        self.members: dict[tuple[str, str], Member] = {}
        self.on_ban: Callable[[str], None] = lambda eio_sid: None
        self.banned_peers = BannedPeers(ref, clock, max_entries=keys)
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def runtime(self) -> Runtime:
        return self.ref.runtime

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
        """One structured security event: monitor stream plus one JSON log line.

        A flood must not become a log flood: per (kind, ip), 5 events at once, then 1 a second
        reach the streams (monitor sinks, dashboard, the `engine.security` log); the rest are
        counted (metrics stay exact) and the next event that passes carries
        `suppressed_before`.
        """
        self.monitor.policy_decision(policy, "deny")
        key = f"{kind}|{ip}"
        if not self.log_budget.take(key, self.clock()).allowed:
            if len(self.log_suppressed) >= 10_000:
                self.log_suppressed.clear()  # counts are a courtesy; memory is not
            self.log_suppressed[key] = self.log_suppressed.get(key, 0) + 1
            self.monitor.security_event_suppressed(kind)
            return
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
        suppressed = self.log_suppressed.pop(key, 0)
        if suppressed:
            event["suppressed_before"] = suppressed
        self.monitor.security_event(event)
        security_log.warning(json.dumps(event, sort_keys=True, default=str))

    # -- the chain ---------------------------------------------------------------------------

    async def decide(
        self,
        runtime: Runtime,
        request: Request,
        now: float,
        policies: tuple[Policy, ...] | None = None,
    ) -> Deny | None:
        """The first `Deny` of `policies` (default: all of `request.stage`), with its policy."""
        for policy in runtime.chain.at(request.stage) if policies is None else policies:
            try:
                decision = await policy.decide(request, self.store, now)
            except StoreUnavailable as exc:
                return Deny(
                    "unavailable",
                    "shared policy state is unavailable; retry shortly",
                    exc.retry_after_seconds,
                    policy.name,
                )
            if isinstance(decision, Deny):
                return decision if decision.policy else decision.by(policy.name)
        return None

    async def strike(self, ip: str, user: str | None, kind: str, now: float) -> Refusal | None:
        """Count a violation; a resulting ban is returned as a refusal that disconnects."""
        security = self.runtime.security
        abuse = security.abuse
        if abuse is None:
            return None
        subjects: list[str] = []
        if "ip" in security.ban_by and listed_verdict(abuse, ip_subject(ip)) is None:
            subjects.append(ip_subject(ip))
        if "user" in security.ban_by and user is not None:
            subjects.append(user_subject(user))
        worst: Refusal | None = None
        for subject in subjects:
            already = await self.store.banned([subject], now)
            verdict = await self.store.strike(subject, abuse, now, kind)
            if isinstance(verdict, Banned):
                if subject == ip_subject(ip):
                    self.banned_peers.add(ip, now + verdict.retry_after_seconds)
                worst = Refusal(
                    "banned",
                    "temporarily banned after repeated violations",
                    verdict.retry_after_seconds,
                    disconnect=True,
                    policy="ban",
                )
                if already is None:
                    self.report("ban_issued", worst, policy="ban", ip=ip, user=user, reason=kind)
                    self.monitor.set_active_bans(self.active_bans(now))
        return worst

    async def _refuse(
        self, deny: Deny, request: Request, kind: str, now: float, reason: str = ""
    ) -> Refusal:
        refusal = Refusal.of(deny)
        spec = request.namespace
        self.report(
            kind,
            refusal,
            policy=deny.policy,
            ip=request.ip,
            namespace=spec.name if spec is not None else None,
            sid=request.sid,
            user=request.user,
            reason=reason,
        )
        if deny.strike:
            ban = await self.strike(request.ip, request.user, deny.code, now)
            if ban is not None:
                return ban
        return refusal

    def active_bans(self, now: float) -> list[dict[str, object]]:
        return [
            {
                "subject": subject,
                "reason": ban.reason,
                "retry_after_seconds": round(ban.retry_after_seconds, 3),
                "bans": served,
            }
            for subject, ban, served in self.store.active_bans(now)
        ]

    # -- handshake (before Engine.IO does any work) ------------------------------------------

    def client_ip(self, remote_addr: str, headers: Mapping[str, str]) -> str:
        return resolve_client_ip(remote_addr, headers, self.runtime.server.trusted_proxies)

    async def admit_handshake(self, ip: str) -> Refusal | None:
        """Bans and the per-IP connect rate, checked on the raw HTTP request."""
        now = self.clock()
        request = Request("handshake", ip)
        deny = await self.decide(self.runtime, request, now)
        if deny is None:
            return None
        if deny.code == "banned" and deny.retry_after_seconds:
            # the ban policy checks the IP only at this stage: the next attempt ends at accept
            self.banned_peers.add(ip, now + deny.retry_after_seconds)
        refusal = await self._refuse(deny, request, "handshake_refused", now)
        self.monitor.connect_refused("/", refusal.code)
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

    async def admit_connect(
        self,
        spec: NamespaceSpec,
        peer: Peer,
        sid: str,
        auth: Any,
        eio_sid: str = "",
        identity: Identity | None = None,
    ) -> Member:
        """Identity and the connect chain for one namespace connection; raises `Refusal`.

        :param identity: an identity kept from a recovered session (`skip_auth_on_recovery`):
            the connect chain runs, authentication does not.
        """
        runtime = self.runtime
        now = self.clock()
        deny: Deny | None = None
        if identity is None:
            identity, deny = self._identify(runtime, peer, auth)
        request = Request("connect", peer.ip, spec, sid, identity)
        if deny is None:
            deny = await self.decide(runtime, request, now)
        if deny is not None:
            refusal = await self._refuse(deny, request, "connect_refused", now)
            self.monitor.connect_refused(spec.name, refusal.code)
            raise refusal
        member = Member(
            spec.name,
            sid,
            peer,
            identity,
            eio_sid,
            connection_keys(spec.name, identity.user_id, peer.ip),
        )
        self.members[(spec.name, sid)] = member
        peer.namespaces.add(spec.name)
        self.monitor.policy_decision("connect", "allow")
        return member

    def identify(self, peer: Peer, auth: Any) -> Identity | None:
        """Who these credentials authenticate as (None: they do not); no strike, no report."""
        identity, deny = self._identify(self.runtime, peer, auth)
        return identity if deny is None else None

    def _identify(self, runtime: Runtime, peer: Peer, auth: Any) -> tuple[Identity, Deny | None]:
        credentials = Credentials(
            auth_payload=auth if isinstance(auth, Mapping) else None,
            headers=peer.headers,
            cookies=peer.cookies,
            remote_addr=peer.ip,
        )
        # tokens carry wall-clock times (exp, nbf); limits and bans use the monotonic clock
        result = runtime.auth.authenticator.authenticate(credentials, self.wall_clock())
        if isinstance(result, AuthFailure):
            return ANONYMOUS, Deny("unauthorized", result.message, policy="auth", strike=True)
        if result.cookie_authenticated and runtime.security.csrf is not None:
            failure = check_csrf(credentials, runtime.security.csrf)
            if failure is not None:
                return result, Deny("forbidden", failure.message, policy="csrf", strike=True)
        return result, None

    async def disconnected(self, namespace: str, sid: str) -> Member | None:
        member = self.members.pop((namespace, sid), None)
        if member is not None:
            await self.store.release(member.counted)
            member.peer.namespaces.discard(namespace)
        return member

    def member(self, namespace: str, sid: str) -> Member | None:
        return self.members.get((namespace, sid))

    # -- events ------------------------------------------------------------------------------

    async def admit_event(
        self,
        spec: NamespaceSpec,
        member: Member,
        event: str,
        args: list[Any],
        joined_rooms: int = 0,
    ) -> None:
        """The event chain for one event (built-in or declared); raises `Refusal`."""
        runtime = self.runtime
        now = self.clock()
        request = Request(
            "event", member.peer.ip, spec, member.sid, member.identity, event, args, joined_rooms
        )
        deny = await self.decide(runtime, request, now, runtime.chain.for_event(spec, event))
        if deny is None:
            return
        refusal = await self._refuse(
            deny, request, "event_refused", now, f"{event[:64]}: {deny.message}"
        )
        raise refusal

    async def refused_by_handler(self, member: Member, event: str, refusal: Refusal) -> Refusal:
        """A refusal raised after the chain (room bookkeeping): reported and struck alike."""
        deny = Deny(
            refusal.code,
            refusal.message,
            refusal.retry_after_seconds,
            refusal.policy or "rooms",
            refusal.disconnect,
            strike=refusal.code in ("forbidden", "invalid_payload"),
        )
        spec = self.runtime.namespaces.get(member.namespace)
        request = Request("event", member.peer.ip, spec, member.sid, member.identity, event)
        return await self._refuse(
            deny, request, "event_refused", self.clock(), f"{event[:64]}: {deny.message}"
        )

    async def charge_error(self, member: Member) -> Refusal | None:
        """One refusal or handler error against the connection's error budget."""
        budget = self.runtime.errors.budget
        if budget is None:
            return None
        bucket = TokenBucket(budget.max_errors / budget.window_seconds, budget.max_errors)
        # one connection's budget: this node's own store, never a round trip
        admission = await self.store.local.take(f"errors:{member.sid}", bucket, self.clock())
        if admission.allowed:
            return None
        refusal = Refusal(
            "error_budget_exceeded",
            f"more than {budget.max_errors} errors within {budget.window_seconds:g} s",
            disconnect=True,
            policy="errors",
        )
        self.report(
            "error_budget_exceeded",
            refusal,
            policy="errors",
            ip=member.peer.ip,
            namespace=member.namespace,
            sid=member.sid,
            user=member.identity.user_id,
        )
        return refusal

    # -- violations the transport detects ----------------------------------------------------

    def violation(
        self, eio_sid: str, kind: str, reason: str, code: str = "invalid_payload"
    ) -> None:
        """A protocol violation by an Engine.IO session (malformed, oversize): strike it.

        Synchronous for the transport's sake; the strike runs as a task and a resulting ban
        closes the session through `on_ban`.
        """
        peer = self.peers.get(eio_sid)
        ip = peer.ip if peer else "unknown"
        self.report(
            kind, Refusal("invalid_payload", reason), policy="protocol", ip=ip, reason=reason
        )
        if self.runtime.security.abuse is None:
            return
        task = asyncio.get_running_loop().create_task(self._violation_strike(eio_sid, ip, kind))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _violation_strike(self, eio_sid: str, ip: str, kind: str) -> None:
        if await self.strike(ip, None, kind, self.clock()) is not None:
            self.on_ban(eio_sid)
