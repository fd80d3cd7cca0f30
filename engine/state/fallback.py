"""A shared store that degrades instead of failing: `[cluster] on_store_error`.

While the primary (Redis) answers, every operation goes to it. When a call fails (connection
refused, a 0.5 s socket timeout, any Redis error) the store is *degraded*: that call and every
call until the next probe is answered without the primary, and the primary is tried again at
most every `probe_interval_seconds`; the first call that succeeds ends the outage.

- ``local``: the per-node `MemoryStateStore` decides (limits and bans hold per node; a client
  spread over several nodes gets each node's budget); bans the cluster had issued stay in
  force as far as the last heartbeat's snapshot (`RedisStateStore.active_bans`) lists them;
- ``deny``: `take` and `acquire` raise `StoreUnavailable` (retry after the next probe), which
  the guard turns into code ``unavailable`` from the asking policy; strikes are not recorded
  (refusing was the store's fault, not the client's) and `banned` finds no ban.

A connection counted locally during an outage is released locally (per key, while this node
holds local counts of it); connections counted in Redis are released there, and a release
that fails is repaired by the primary's next heartbeat (`RedisStateStore.restore`).
`fallbacks_total` counts operations answered without the primary, `degraded` is the reason
the monitor's health report shows.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Literal, TypeVar

from engine.policies.abuse import ALLOWED, AbuseOptions, Banned, Verdict, canonical_subject
from engine.policies.rate_limit import Admission, TokenBucket
from engine.state.memory import MemoryStateStore
from engine.state.redis import RedisStateStore
from engine.state.store import StoreUnavailable

__all__ = ["PROBE_INTERVAL_SECONDS", "FallbackStateStore"]

log = logging.getLogger("engine.state")

PROBE_INTERVAL_SECONDS = 1.0
T = TypeVar("T")

try:
    from redis.exceptions import RedisError

    FAILURES: tuple[type[BaseException], ...] = (RedisError, OSError, TimeoutError)
except ImportError:  # pragma: no cover
    FAILURES = (OSError, TimeoutError)


class _Unavailable(Exception):
    """The primary is degraded and not due for a probe."""


class FallbackStateStore:
    """`primary` while it answers; `local` (or refusals) while it does not."""

    def __init__(
        self,
        primary: RedisStateStore,
        local: MemoryStateStore,
        mode: Literal["local", "deny"] = "local",
        *,
        probe_interval_seconds: float = PROBE_INTERVAL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.primary = primary
        self.local = local
        self.mode = mode
        self.probe_interval_seconds = probe_interval_seconds
        self.clock = clock
        self.fallbacks_total = 0
        self.failures_total = 0
        self.outages_total = 0
        self.degraded: str | None = None
        self._probe_at = 0.0
        self._local_held: dict[str, int] = {}

    async def _primary(self, call: Callable[[], Awaitable[T]]) -> T:
        if self.degraded is not None and self.clock() < self._probe_at:
            self.fallbacks_total += 1
            raise _Unavailable
        try:
            result = await call()
        except FAILURES as exc:
            self.failures_total += 1
            self.fallbacks_total += 1
            self._probe_at = self.clock() + self.probe_interval_seconds
            if self.degraded is None:
                self.outages_total += 1
                log.warning(
                    "state store unavailable (%s: %s); policies use %s until it answers",
                    type(exc).__name__,
                    exc,
                    "per-node state" if self.mode == "local" else "refusals",
                )
            verdict = "per-node limits" if self.mode == "local" else "refusing requests"
            self.degraded = f"shared state store unavailable ({type(exc).__name__}): {verdict}"
            raise _Unavailable from exc
        if self.degraded is not None:
            log.warning("state store available again; policies use the shared state")
            self.degraded = None
        return result

    def _wait(self) -> float:
        return max(self._probe_at - self.clock(), 0.0)

    async def take(self, key: str, bucket: TokenBucket, now: float) -> Admission:
        try:
            return await self._primary(lambda: self.primary.take(key, bucket, now))
        except _Unavailable:
            if self.mode == "deny":
                raise StoreUnavailable(self._wait()) from None
            return await self.local.take(key, bucket, now)

    async def strike(self, subject: str, options: AbuseOptions, now: float, kind: str) -> Verdict:
        try:
            return await self._primary(lambda: self.primary.strike(subject, options, now, kind))
        except _Unavailable:
            if self.mode == "deny":
                return ALLOWED
            return await self.local.strike(subject, options, now, kind)

    async def banned(self, subjects: Sequence[str], now: float) -> Banned | None:
        try:
            return await self._primary(lambda: self.primary.banned(subjects, now))
        except _Unavailable:
            if self.mode == "deny":
                return None
            # bans issued here during the outage, and the cluster's as of the last heartbeat
            # (the two use different clocks: compare what is left of them)
            latest = await self.local.banned(subjects, now)
            known = {subject: ban for subject, ban, _ in self.primary.active_bans(now)}
            for subject in subjects:
                ban = known.get(canonical_subject(subject))
                if ban is not None and (
                    latest is None or ban.retry_after_seconds > latest.retry_after_seconds
                ):
                    latest = ban
            return latest

    async def acquire(self, slots: Sequence[tuple[str, int | None]]) -> int | None:
        try:
            return await self._primary(lambda: self.primary.acquire(slots))
        except _Unavailable:
            if self.mode == "deny":
                raise StoreUnavailable(self._wait()) from None
            full = await self.local.acquire(slots)
            if full is None:
                for key, _ in slots:
                    self._local_held[key] = self._local_held.get(key, 0) + 1
            return full

    async def release(self, keys: Sequence[str]) -> None:
        held = self._local_held
        if keys and all(held.get(key, 0) > 0 for key in keys):
            for key in keys:
                if held[key] == 1:
                    del held[key]
                else:
                    held[key] -= 1
            await self.local.release(keys)
            return
        try:
            await self._primary(lambda: self.primary.release(keys))
        except _Unavailable as exc:
            if exc.__cause__ is None:  # not attempted (an attempt already forgot the keys)
                self.primary.forget(keys)  # its next heartbeat rewrites this node's counts

    def active_bans(self, now: float) -> list[tuple[str, Banned, int]]:
        if self.degraded is not None and self.mode == "local":
            return self.local.active_bans(now)
        return self.primary.active_bans(now)

    def count(self, key: str) -> int:
        return self.primary.count(key) + self.local.count(key)

    async def start(self) -> None:
        await self.primary.start()

    async def aclose(self) -> None:
        await self.primary.aclose()
        await self.local.aclose()
