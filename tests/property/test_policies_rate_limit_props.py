"""Properties of the token bucket and the bounded keyed limiter."""

from __future__ import annotations

import copy
import math

from hypothesis import given, settings
from hypothesis import strategies as st

from engine.policies.rate_limit import (
    BucketState,
    KeyedLimiter,
    KeyedLimiterOptions,
    TokenBucket,
    take,
)
from tests.strategies_policies import timelines, token_buckets

SLACK = 1e-3  # float rounding; any real violation is a whole request


def run(options: TokenBucket, times: list[float]) -> list[float]:
    """Admitted times of a single client sending one request at each time."""
    state: BucketState | None = None
    admitted = []
    for now in times:
        admission, state = take(options, state, now)
        if admission.allowed:
            admitted.append(now)
    return admitted


def assert_interval_bound(options: TokenBucket, admitted: list[float]) -> None:
    """Brute force: every interval [a, b] spanned by admitted requests holds few enough."""
    for i in range(len(admitted)):
        for j in range(i, len(admitted)):
            count = j - i + 1
            bound = options.burst + options.rate_per_second * (admitted[j] - admitted[i])
            assert count <= bound + SLACK, (i, j, count, bound)


@settings(max_examples=300)
@given(token_buckets(), timelines(60))
def test_any_interval_admits_at_most_burst_plus_rate_times_length(
    options: TokenBucket, times: list[float]
) -> None:
    assert_interval_bound(options, run(options, times))


@settings(max_examples=300)
@given(token_buckets(), st.lists(st.floats(0, 100), min_size=1, max_size=60))
def test_clock_going_backwards_never_mints_tokens(options: TokenBucket, times: list[float]) -> None:
    admitted = run(options, times)
    # Tokens only accrue while the newest time seen advances.
    horizon = max(times) - times[0]
    assert len(admitted) <= options.burst + options.rate_per_second * horizon + SLACK


@settings(max_examples=300)
@given(
    token_buckets(),
    st.floats(0, 1000),
    st.lists(st.sampled_from([1.0, 1.0, 1.5, 2.0, 10.0]), min_size=1, max_size=60),
)
def test_client_spacing_requests_at_least_one_over_rate_is_always_admitted(
    options: TokenBucket, start: float, factors: list[float]
) -> None:
    interval = 1.0 / options.rate_per_second
    times, now = [start], start
    for factor in factors:
        now += interval * factor
        times.append(now)
    assert run(options, times) == times


@settings(max_examples=300)
@given(token_buckets(), st.floats(0, 1000), st.data())
def test_bursts_within_burst_after_full_refill_are_admitted(
    options: TokenBucket, start: float, data: st.DataObject
) -> None:
    refill = options.burst / options.rate_per_second
    times, now = [], start
    for _ in range(data.draw(st.integers(1, 5))):
        size = data.draw(st.integers(1, options.burst))
        times.extend([now] * size)
        now += refill * data.draw(st.sampled_from([1.0, 1.01, 3.0]))
    assert run(options, times) == times


@settings(max_examples=300)
@given(token_buckets(), timelines(40), st.sampled_from([0.5, 1.0, 1.0, 2.5]))
def test_retry_after_is_exact(options: TokenBucket, times: list[float], cost: float) -> None:
    state: BucketState | None = None
    for now in times:
        before = state
        admission, state = take(options, state, now, cost)
        if admission.allowed:
            assert admission.retry_after_seconds == 0.0
            continue
        assert state.tokens == take(options, before, now, 0.0)[1].tokens  # refusal costs nothing
        wait = admission.retry_after_seconds
        if cost > options.burst:
            assert math.isinf(wait)
            continue
        assert wait > 0
        assert take(options, state, now + wait, cost)[0].allowed
        # Not much earlier either: 1% sooner is short by more than the float tolerance.
        if wait * 0.01 * options.rate_per_second > 1e-4:
            assert not take(options, state, now + wait * 0.99, cost)[0].allowed


@settings(max_examples=200)
@given(
    token_buckets(),
    st.lists(
        st.tuples(st.integers(0, 5), st.floats(0, 3)),  # (key, time step)
        min_size=1,
        max_size=80,
    ),
)
def test_keyed_limiter_with_room_matches_unbounded_buckets(
    options: TokenBucket, ops: list[tuple[int, float]]
) -> None:
    limiter = KeyedLimiter(KeyedLimiterOptions(options, max_keys=6))
    model: dict[str, BucketState] = {}
    now = 0.0
    for key_index, step in ops:
        now += step
        key = f"k{key_index}"
        expected, model[key] = take(options, model.get(key), now)
        assert limiter.take(key, now) == expected
        assert len(limiter) <= 6


@settings(max_examples=200)
@given(
    token_buckets(),
    st.integers(1, 4),
    st.lists(st.tuples(st.integers(0, 7), st.floats(0, 3)), min_size=1, max_size=80),
)
def test_keyed_limiter_under_memory_pressure_never_exceeds_any_key_limit(
    options: TokenBucket, max_keys: int, ops: list[tuple[int, float]]
) -> None:
    limiter = KeyedLimiter(KeyedLimiterOptions(options, max_keys=max_keys))
    admitted: dict[str, list[float]] = {}
    now = 0.0
    for key_index, step in ops:
        now += step
        key = f"k{key_index}"
        admission = limiter.take(key, now)
        assert len(limiter) <= max_keys
        if admission.allowed:
            admitted.setdefault(key, []).append(now)
        elif limiter.state(key) is None:
            # Refused for lack of room: retrying after the hint finds room.
            assert admission.retry_after_seconds > 0
            probe = copy.deepcopy(limiter)
            assert probe.evict_full(now + admission.retry_after_seconds) >= 1
    for times in admitted.values():
        assert_interval_bound(options, times)
