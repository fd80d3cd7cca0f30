"""Concrete token-bucket and keyed-limiter examples."""

from __future__ import annotations

import math

import pytest

from engine.policies.rate_limit import (
    Admission,
    BucketState,
    KeyedLimiter,
    KeyedLimiterOptions,
    TokenBucket,
    take,
)

TWO_PER_SECOND = TokenBucket(rate_per_second=2.0, burst=3)


def test_fresh_key_gets_the_full_burst_then_waits_one_token() -> None:
    state = None
    for _ in range(3):
        admission, state = take(TWO_PER_SECOND, state, 10.0)
        assert admission.allowed
    admission, state = take(TWO_PER_SECOND, state, 10.0)
    assert admission == Admission(False, 0.5)
    assert take(TWO_PER_SECOND, state, 10.5)[0].allowed


def test_refill_is_capped_at_burst() -> None:
    _, state = take(TWO_PER_SECOND, None, 0.0)
    admission, state = take(TWO_PER_SECOND, state, 1000.0)
    assert admission.allowed
    assert state == BucketState(tokens=2.0, updated=1000.0)


def test_cost_above_burst_is_never_admitted() -> None:
    admission, state = take(TWO_PER_SECOND, None, 0.0, cost=4.0)
    assert admission == Admission(False, math.inf)
    assert state.tokens == 3.0


def test_clock_going_backwards_does_not_refill_and_retry_accounts_for_it() -> None:
    state = BucketState(tokens=0.0, updated=100.0)
    admission, state = take(TWO_PER_SECOND, state, 50.0)
    assert not admission.allowed
    assert state == BucketState(0.0, 100.0)
    assert admission.retry_after_seconds == pytest.approx(50.5)
    assert take(TWO_PER_SECOND, state, 50.0 + admission.retry_after_seconds)[0].allowed


@pytest.mark.parametrize(
    ("rate", "burst"), [(0.0, 1), (-1.0, 1), (math.inf, 1), (math.nan, 1), (1.0, 0)]
)
def test_invalid_options_are_rejected(rate: float, burst: int) -> None:
    with pytest.raises(ValueError, match="must"):
        TokenBucket(rate, burst)


def test_invalid_time_and_cost_are_rejected() -> None:
    with pytest.raises(ValueError, match="must"):
        take(TWO_PER_SECOND, None, math.nan)
    with pytest.raises(ValueError, match="must"):
        take(TWO_PER_SECOND, None, 0.0, cost=-1.0)


def test_from_profile() -> None:
    options = KeyedLimiterOptions.from_profile({"rate_per_second": 5, "burst": 10, "max_keys": 7})
    assert options == KeyedLimiterOptions(TokenBucket(5.0, 10), 7)


def test_full_buckets_are_evicted_and_behave_like_new_keys() -> None:
    limiter = KeyedLimiter(KeyedLimiterOptions(TokenBucket(1.0, 2), max_keys=10))
    assert limiter.take("a", 0.0).allowed
    assert limiter.take("b", 0.0).allowed
    assert len(limiter) == 2
    assert limiter.evict_full(0.99) == 0
    assert limiter.evict_full(1.0) == 2
    assert len(limiter) == 0


def test_new_keys_are_refused_when_every_bucket_is_still_refilling() -> None:
    limiter = KeyedLimiter(KeyedLimiterOptions(TokenBucket(1.0, 2), max_keys=2))
    limiter.take("a", 0.0)
    limiter.take("b", 0.5)
    refused = limiter.take("c", 0.5)
    assert refused == Admission(False, 0.5)  # "a" is full again at t=1.0
    assert limiter.overflow_refusals == 1
    assert limiter.take("a", 0.6).allowed  # known keys keep working
    assert limiter.take("c", 1.5).allowed  # "b" full again at 1.5 and evicted


def test_drained_bucket_is_not_forgotten_under_pressure() -> None:
    limiter = KeyedLimiter(KeyedLimiterOptions(TokenBucket(1.0, 1), max_keys=1))
    assert limiter.take("a", 0.0).allowed
    assert not limiter.take("b", 0.1).allowed
    assert not limiter.take("a", 0.2).allowed  # still limited: no reset through eviction
