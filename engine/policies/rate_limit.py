"""Token-bucket rate limiting as a pure function, plus a bounded per-key container.

A bucket holds at most ``burst`` tokens and refills continuously at ``rate_per_second``; a
request costs ``cost`` tokens. Over any interval of length ``t`` at most
``burst + rate_per_second * t`` unit-cost requests are admitted, whatever the arrival pattern
(up to ``TOLERANCE``, a millionth of a token of float slack).

The clock is an argument. If it goes backwards (NTP step, a non-monotonic source) the bucket
does not refill and keeps its newest timestamp, so replaying old times can never mint tokens.
Pass a monotonic clock of modest magnitude (``time.monotonic()``): epoch seconds only resolve
to ~2e-7 s, which at high rates is coarser than the admission TOLERANCE.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from engine.policies._expiry import ExpiryIndex, delay_until

__all__ = [
    "Admission",
    "BucketState",
    "KeyedLimiter",
    "KeyedLimiterOptions",
    "TokenBucket",
    "full_at",
    "take",
]

_MAX_NUDGES = 64
TOLERANCE = 1e-6
"""Tokens of float slack when admitting: a client spacing requests exactly ``1 / rate`` apart
must not be refused because ``(t2 - t1) * rate`` rounded to 0.9999999999. The bucket can go at
most this far below zero, so the slack never accumulates across requests."""


@dataclass(frozen=True, slots=True)
class TokenBucket:
    """Options of one bucket.

    :param rate_per_second: sustained admission rate (tokens added per second), > 0.
    :param burst: bucket capacity; also the size of the burst a fresh client may send, >= 1.
    """

    rate_per_second: float
    burst: int

    def __post_init__(self) -> None:
        if not (math.isfinite(self.rate_per_second) and self.rate_per_second > 0):
            raise ValueError(
                f"rate_per_second must be a finite number > 0, got {self.rate_per_second!r}"
            )
        if self.burst < 1:
            raise ValueError(f"burst must be >= 1, got {self.burst!r}")

    @classmethod
    def from_profile(cls, mapping: Mapping[str, Any]) -> TokenBucket:
        """Build from a validated table with ``rate_per_second`` and ``burst``."""
        return cls(rate_per_second=float(mapping["rate_per_second"]), burst=int(mapping["burst"]))


@dataclass(frozen=True, slots=True)
class BucketState:
    """Tokens available as of ``updated`` (the newest time the bucket has seen)."""

    tokens: float
    updated: float


@dataclass(frozen=True, slots=True)
class Admission:
    """Outcome of one request.

    ``retry_after_seconds`` is 0 when allowed; otherwise the exact wait after which the same
    request is admitted if nothing else consumes tokens meanwhile (``inf`` if ``cost > burst``).
    """

    allowed: bool
    retry_after_seconds: float


_ADMITTED = Admission(True, 0.0)  # immutable: one for every admission


def _level(options: TokenBucket, state: BucketState, at: float) -> float:
    """Tokens the bucket would hold at ``at`` (no refill for times not after ``updated``)."""
    if at <= state.updated:
        return state.tokens
    return min(float(options.burst), state.tokens + (at - state.updated) * options.rate_per_second)


def _delay_until_level(
    options: TokenBucket, state: BucketState, now: float, target: float, slack: float
) -> float:
    """Smallest float delay ``d`` such that the bucket holds ``target`` tokens at ``now + d``.

    The closed form can land one ulp short after rounding; nudging up makes "retry at
    now + retry_after" succeed exactly rather than approximately.
    """
    deficit = max(0.0, target - state.tokens)
    delay = max(0.0, state.updated - now) + deficit / options.rate_per_second
    for _ in range(_MAX_NUDGES):
        if _level(options, state, now + delay) >= target - slack:
            return delay
        delay = max(math.nextafter(delay, math.inf), math.nextafter(now + delay, math.inf) - now)
    return delay  # pragma: no cover - float arithmetic converges within a few ulps


def take(
    options: TokenBucket, state: BucketState | None, now: float, cost: float = 1.0
) -> tuple[Admission, BucketState]:
    """Try to spend ``cost`` tokens at ``now``; return the admission and the next state.

    ``state=None`` is a key never seen before, which starts full. A refused request consumes
    nothing, so hammering a limited key does not extend its wait.
    """
    if not math.isfinite(now):
        raise ValueError(f"now must be finite, got {now!r}")
    if not (math.isfinite(cost) and cost >= 0):
        raise ValueError(f"cost must be a finite number >= 0, got {cost!r}")
    if state is None:
        tokens, updated = float(options.burst), now
    else:
        tokens, updated = _level(options, state, now), max(state.updated, now)
    if tokens >= cost - TOLERANCE:
        return _ADMITTED, BucketState(tokens - cost, updated)
    current = BucketState(tokens, updated)
    if cost > options.burst:
        return Admission(False, math.inf), current
    return Admission(False, _delay_until_level(options, current, now, cost, TOLERANCE)), current


def full_at(options: TokenBucket, state: BucketState) -> float:
    """Earliest time at which the bucket is full again, i.e. indistinguishable from no state."""
    return state.updated + _delay_until_level(
        options, state, state.updated, float(options.burst), 0.0
    )


@dataclass(frozen=True, slots=True)
class KeyedLimiterOptions:
    """A bucket shape applied per key, with at most ``max_keys`` buckets held at once."""

    bucket: TokenBucket
    max_keys: int

    def __post_init__(self) -> None:
        if self.max_keys < 1:
            raise ValueError(f"max_keys must be >= 1, got {self.max_keys!r}")

    @classmethod
    def from_profile(cls, mapping: Mapping[str, Any]) -> KeyedLimiterOptions:
        """Build from a validated table with ``rate_per_second``, ``burst``, ``max_keys``."""
        return cls(bucket=TokenBucket.from_profile(mapping), max_keys=int(mapping["max_keys"]))


class KeyedLimiter:
    """One token bucket per key (IP, sid, user, event name) in bounded memory.

    Only buckets that are full again are evicted: a full bucket behaves exactly like a key
    never seen, so eviction cannot hand anyone extra tokens. When all ``max_keys`` buckets are
    still refilling, a *new* key is refused (fail closed) with ``retry_after_seconds`` set to
    when the first bucket becomes evictable; existing keys keep working. Evicting a partly
    drained bucket instead would let a client reset its own limit by flooding the table with
    fresh keys. The price is that a flood of distinct keys can delay new keys for at most
    ``burst / rate_per_second`` seconds; ``overflow_refusals`` counts these for monitoring.
    """

    __slots__ = ("_buckets", "_expiry", "options", "overflow_refusals")

    def __init__(self, options: KeyedLimiterOptions) -> None:
        self.options = options
        self._buckets: dict[str, BucketState] = {}
        self._expiry = ExpiryIndex()
        self.overflow_refusals = 0

    def take(self, key: str, now: float, cost: float = 1.0) -> Admission:
        """Charge ``cost`` to ``key`` at ``now``; the decision is :func:`take`'s."""
        self.evict_full(now)
        state = self._buckets.get(key)
        if state is None and len(self._buckets) >= self.options.max_keys:
            self.overflow_refusals += 1
            top = self._expiry.peek()
            assert top is not None  # the table is full, so some bucket has a deadline
            return Admission(False, delay_until(now, top[0]))
        admission, new_state = take(self.options.bucket, state, now, cost)
        self._buckets[key] = new_state
        self._expiry.set(key, full_at(self.options.bucket, new_state))
        return admission

    def evict_full(self, now: float) -> int:
        """Forget every bucket that is full at ``now``; return how many were forgotten."""
        due = self._expiry.pop_due(now)
        for key in due:
            del self._buckets[key]
        return len(due)

    def state(self, key: str) -> BucketState | None:
        """The stored state of ``key`` (None if unknown or evicted)."""
        return self._buckets.get(key)

    def __len__(self) -> int:
        return len(self._buckets)
