"""Health assessment: status is monotone in every input."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given
from hypothesis import strategies as st

from engine.monitoring.health import STATUS_ORDER, HealthInputs, HealthOptions, assess


@st.composite
def thresholds(draw: st.DrawFn) -> HealthOptions:
    """Valid ``[monitoring.health]`` thresholds."""
    lag = draw(st.floats(0.001, 5.0))
    rate = draw(st.floats(0.0, 1.0))
    return HealthOptions(
        max_loop_lag_seconds=lag,
        unhealthy_loop_lag_seconds=draw(st.none() | st.floats(lag, 20.0)),
        max_handler_error_rate=rate,
        unhealthy_handler_error_rate=draw(st.none() | st.floats(rate, 1.0)),
        min_handler_calls=draw(st.integers(1, 50)),
        max_connections=draw(st.integers(0, 10_000)),
        capacity_warning_ratio=draw(st.floats(0.01, 1.0)),
    )


@st.composite
def inputs(draw: st.DrawFn) -> HealthInputs:
    """Measured values; errors never exceed calls."""
    calls = draw(st.integers(0, 10_000))
    return HealthInputs(
        loop_lag_seconds=draw(st.floats(0.0, 30.0)),
        handler_calls=calls,
        handler_errors=draw(st.integers(0, calls)),
        connections=draw(st.integers(0, 20_000)),
    )


def rank(i: HealthInputs, t: HealthOptions) -> int:
    return STATUS_ORDER[assess(i, t).status]


@given(inputs(), thresholds(), st.floats(0.0, 30.0))
def test_more_loop_lag_is_never_healthier(i: HealthInputs, t: HealthOptions, more: float) -> None:
    worse = replace(i, loop_lag_seconds=i.loop_lag_seconds + more)
    assert rank(worse, t) >= rank(i, t)


@given(inputs(), thresholds(), st.integers(0, 1000))
def test_more_errors_are_never_healthier(i: HealthInputs, t: HealthOptions, more: int) -> None:
    # same number of calls, more of them failing
    errors = min(i.handler_errors + more, i.handler_calls)
    assert rank(replace(i, handler_errors=errors), t) >= rank(i, t)


@given(inputs(), thresholds(), st.integers(0, 1000))
def test_more_connections_are_never_healthier(i: HealthInputs, t: HealthOptions, more: int) -> None:
    assert rank(replace(i, connections=i.connections + more), t) >= rank(i, t)


@given(inputs(), thresholds())
def test_deterministic_and_reasons_explain_status(i: HealthInputs, t: HealthOptions) -> None:
    report = assess(i, t)
    assert report == assess(i, t)
    assert (report.status == "healthy") == (report.reasons == ())


@given(thresholds())
def test_idle_server_is_healthy(t: HealthOptions) -> None:
    assert assess(HealthInputs(), t).status == "healthy"
