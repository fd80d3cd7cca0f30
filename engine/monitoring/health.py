"""Health model: a pure assessment of runtime inputs against profile thresholds.

Rule: everything that decides healthy/degraded/unhealthy lives in :func:`assess`; the
:class:`~engine.monitoring.monitor.Monitor` only gathers :class:`HealthInputs`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

Status = Literal["healthy", "degraded", "unhealthy"]

STATUS_ORDER: Mapping[Status, int] = {"healthy": 0, "degraded": 1, "unhealthy": 2}


@dataclass(frozen=True, slots=True, kw_only=True)
class HealthOptions:
    """Thresholds of ``[monitoring.health]``.

    :param max_loop_lag_seconds: degraded when the event-loop lag is above this.
    :param unhealthy_loop_lag_seconds: unhealthy above this (default 4x ``max_loop_lag_seconds``).
    :param max_handler_error_rate: degraded when the handler error ratio over the window is above.
    :param unhealthy_handler_error_rate: unhealthy above this ratio (``None``: never unhealthy).
    :param window_seconds: sliding window for the error rate.
    :param min_handler_calls: error rate is only assessed with at least this many calls.
    :param max_connections: connection capacity (0: unlimited).
    :param capacity_warning_ratio: degraded when connections >= ratio * max_connections.
    """

    max_loop_lag_seconds: float = 0.25
    unhealthy_loop_lag_seconds: float | None = None
    max_handler_error_rate: float = 0.05
    unhealthy_handler_error_rate: float | None = None
    window_seconds: float = 60.0
    min_handler_calls: int = 20
    max_connections: int = 0
    capacity_warning_ratio: float = 0.8

    @property
    def effective_unhealthy_loop_lag_seconds(self) -> float:
        """The unhealthy loop-lag threshold, defaulting to 4x the degraded one."""
        if self.unhealthy_loop_lag_seconds is not None:
            return self.unhealthy_loop_lag_seconds
        return 4.0 * self.max_loop_lag_seconds

    @classmethod
    def from_profile(cls, mapping: Mapping[str, object]) -> HealthOptions:
        """Build from the (schema-valid) ``[monitoring.health]`` table."""
        unhealthy_lag = mapping.get("unhealthy_loop_lag_seconds")
        unhealthy_rate = mapping.get("unhealthy_handler_error_rate")
        return cls(
            max_loop_lag_seconds=_float(mapping, "max_loop_lag_seconds", 0.25),
            unhealthy_loop_lag_seconds=None if unhealthy_lag is None else _as_float(unhealthy_lag),
            max_handler_error_rate=_float(mapping, "max_handler_error_rate", 0.05),
            unhealthy_handler_error_rate=(
                None if unhealthy_rate is None else _as_float(unhealthy_rate)
            ),
            window_seconds=_float(mapping, "window_seconds", 60.0),
            min_handler_calls=int(_float(mapping, "min_handler_calls", 20)),
            max_connections=int(_float(mapping, "max_connections", 0)),
            capacity_warning_ratio=_float(mapping, "capacity_warning_ratio", 0.8),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class HealthInputs:
    """What the runtime measured.

    :param loop_lag_seconds: recent (max over a few seconds) event-loop lag.
    :param handler_calls: handler completions in the window.
    :param handler_errors: of which failed.
    :param connections: currently open connections (all namespaces).
    :param degraded: reasons components gave for running degraded (a shared state store
        that is unreachable, say).
    """

    loop_lag_seconds: float = 0.0
    handler_calls: int = 0
    handler_errors: int = 0
    connections: int = 0
    degraded: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class HealthReport:
    """Outcome of :func:`assess`: a status and the human-readable reasons for it."""

    status: Status
    reasons: tuple[str, ...] = ()

    def to_json(self) -> dict[str, object]:
        """JSON-ready form."""
        return {"status": self.status, "reasons": list(self.reasons)}


def worst(a: Status, b: Status) -> Status:
    """The more severe of two statuses."""
    return a if STATUS_ORDER[a] >= STATUS_ORDER[b] else b


def assess(inputs: HealthInputs, thresholds: HealthOptions) -> HealthReport:
    """Assess health; pure and monotone (a worse input never gives a better status).

    :param inputs: measured values.
    :param thresholds: the profile's thresholds.
    """
    status: Status = "healthy"
    reasons: list[str] = []

    lag = inputs.loop_lag_seconds
    unhealthy_lag = thresholds.effective_unhealthy_loop_lag_seconds
    if lag > unhealthy_lag:
        status = worst(status, "unhealthy")
        reasons.append(f"event loop lag {lag:.3f}s > {unhealthy_lag:g}s")
    elif lag > thresholds.max_loop_lag_seconds:
        status = worst(status, "degraded")
        reasons.append(f"event loop lag {lag:.3f}s > {thresholds.max_loop_lag_seconds:g}s")

    calls = max(inputs.handler_calls, inputs.handler_errors)
    if calls >= max(thresholds.min_handler_calls, 1):
        rate = inputs.handler_errors / calls
        bad = thresholds.unhealthy_handler_error_rate
        if bad is not None and rate > bad:
            status = worst(status, "unhealthy")
            reasons.append(f"handler error rate {rate:.1%} > {bad:.1%}")
        elif rate > thresholds.max_handler_error_rate:
            status = worst(status, "degraded")
            reasons.append(
                f"handler error rate {rate:.1%} > {thresholds.max_handler_error_rate:.1%}"
            )

    limit = thresholds.max_connections
    if limit > 0:
        if inputs.connections >= limit:
            status = worst(status, "degraded")
            reasons.append(f"at connection capacity ({inputs.connections}/{limit})")
        elif inputs.connections >= thresholds.capacity_warning_ratio * limit:
            status = worst(status, "degraded")
            reasons.append(
                f"connections {inputs.connections}/{limit} >= "
                f"{thresholds.capacity_warning_ratio:.0%} of capacity"
            )
    for reason in inputs.degraded:
        status = worst(status, "degraded")
        reasons.append(reason)
    return HealthReport(status, tuple(reasons))


def _as_float(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"expected a number, got {value!r}")
    return float(value)


def _float(mapping: Mapping[str, object], key: str, default: float) -> float:
    value = mapping.get(key)
    return default if value is None else _as_float(value)
