"""Typed options of the ``[monitoring]`` profile table."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from engine.monitoring.health import HealthOptions
from engine.monitoring.sinks import SINKS, SinkConfig

__all__ = [
    "AdminUIOptions",
    "DashboardOptions",
    "HealthOptions",
    "MonitoringOptions",
]

_SINK_ID = re.compile(r"^[a-z][a-z0-9_]*$")


def _table(mapping: Mapping[str, object], key: str) -> Mapping[str, object]:
    value = mapping.get(key)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise TypeError(f"monitoring.{key} must be a table")
    return value


def _str(mapping: Mapping[str, object], key: str, default: str) -> str:
    value = mapping.get(key, default)
    if not isinstance(value, str):
        raise TypeError(f"{key} must be a string")
    return value


def _opt_str(mapping: Mapping[str, object], key: str) -> str | None:
    value = mapping.get(key)
    if value is not None and not isinstance(value, str):
        raise TypeError(f"{key} must be a string")
    return value


def _bool(mapping: Mapping[str, object], key: str, default: bool) -> bool:
    value = mapping.get(key, default)
    if not isinstance(value, bool):
        raise TypeError(f"{key} must be a boolean")
    return value


def _number(mapping: Mapping[str, object], key: str, default: float) -> float:
    value = mapping.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{key} must be a number")
    return float(value)


@dataclass(frozen=True, slots=True, kw_only=True)
class DashboardOptions:
    """``[monitoring.dashboard]``: the live HTML dashboard and its stats endpoint.

    :param enabled: serve the dashboard and stats endpoint.
    :param path: dashboard page path.
    :param stats_path: JSON stats endpoint path.
    :param token: admin token (Bearer header or ``engine_admin_token`` cookie); secret.
    """

    enabled: bool = False
    path: str = "/engine/dashboard"
    stats_path: str = "/engine/api/stats"
    token: str | None = field(default=None, repr=False)

    @classmethod
    def from_profile(cls, mapping: Mapping[str, object]) -> DashboardOptions:
        """Build from ``[monitoring.dashboard]``."""
        return cls(
            enabled=_bool(mapping, "enabled", False),
            path=_str(mapping, "path", "/engine/dashboard"),
            stats_path=_str(mapping, "stats_path", "/engine/api/stats"),
            token=_opt_str(mapping, "token"),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class AdminUIOptions:
    """``[monitoring.admin_ui]``: the official Socket.IO Admin UI, via python-socketio's
    ``instrument()``.

    :param enabled: serve the Admin UI namespace.
    :param namespace: the namespace the Admin UI connects to.
    :param username: login name.
    :param password: login password (secret; required when enabled).
    :param read_only: hide the Admin UI's actions.
    :param mode: ``production`` sends less detail.
    """

    enabled: bool = False
    namespace: str = "/socketio-admin"
    username: str = "admin"
    password: str | None = field(default=None, repr=False)
    read_only: bool = True
    mode: str = "production"

    @classmethod
    def from_profile(cls, mapping: Mapping[str, object]) -> AdminUIOptions:
        """Build from ``[monitoring.admin_ui]``."""
        return cls(
            enabled=_bool(mapping, "enabled", False),
            namespace=_str(mapping, "namespace", "/socketio-admin"),
            username=_str(mapping, "username", "admin"),
            password=_opt_str(mapping, "password"),
            read_only=_bool(mapping, "read_only", True),
            mode=_str(mapping, "mode", "production"),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class MonitoringOptions:
    """The whole ``[monitoring]`` table.

    :param sinks: configured sinks, in profile order.
    :param health: health thresholds.
    :param dashboard: dashboard options.
    :param admin_ui: admin UI options.
    :param metrics_interval_seconds: how often metric snapshots go to ``metrics`` streams.
    :param loop_lag_interval_seconds: event-loop lag probe period.
    :param series_seconds: length of the per-second series kept for the dashboard.
    :param recent_security_events: how many security events the stats endpoint returns.
    """

    sinks: tuple[SinkConfig, ...] = ()
    health: HealthOptions = field(default_factory=HealthOptions)
    dashboard: DashboardOptions = field(default_factory=DashboardOptions)
    admin_ui: AdminUIOptions = field(default_factory=AdminUIOptions)
    metrics_interval_seconds: float = 10.0
    loop_lag_interval_seconds: float = 0.5
    series_seconds: int = 600
    recent_security_events: int = 100

    @classmethod
    def from_profile(cls, mapping: Mapping[str, object]) -> MonitoringOptions:
        """Build from the (schema-valid, defaults-filled) ``[monitoring]`` table.

        :raises engine.registry.UnknownType: for an unknown sink ``type``.
        """
        sinks: list[SinkConfig] = []
        for sink_id, table in _table(mapping, "sinks").items():
            if not _SINK_ID.match(sink_id):
                raise ValueError(f"monitoring.sinks.{sink_id}: id must match {_SINK_ID.pattern}")
            if not isinstance(table, Mapping):
                raise TypeError(f"monitoring.sinks.{sink_id} must be a table")
            kind = table.get("type")
            if not isinstance(kind, str):
                raise ValueError(f"monitoring.sinks.{sink_id}.type is required")
            sink_cls = SINKS.get(kind)
            options = sink_cls.options_type.from_profile(
                {k: v for k, v in table.items() if k != "type"}
            )
            sinks.append(SinkConfig(sink_id, kind, options))
        return cls(
            sinks=tuple(sinks),
            health=HealthOptions.from_profile(_table(mapping, "health")),
            dashboard=DashboardOptions.from_profile(_table(mapping, "dashboard")),
            admin_ui=AdminUIOptions.from_profile(_table(mapping, "admin_ui")),
            metrics_interval_seconds=_number(mapping, "metrics_interval_seconds", 10.0),
            loop_lag_interval_seconds=_number(mapping, "loop_lag_interval_seconds", 0.5),
            series_seconds=int(_number(mapping, "series_seconds", 600)),
            recent_security_events=int(_number(mapping, "recent_security_events", 100)),
        )
